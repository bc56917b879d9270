"""Streaming and batching: outputs do not depend on how the lattices are grouped, and every
pruned expansion stays within --max-arcs."""
import json
import os
import random
import threading

import k2
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from lattices.lattice_batch import LatticeBatch
from lattices.validate import select_lattices
from lattices.writer import write_lattices
from models.checkpoint import save_checkpoint
from models.config import LMConfig
from models.lm import AFPLanguageModel
from models.vocab import Vocabulary
from rescore.cli import rescore_command
from rescore.fit import expand_within
from rescore.pipeline import RescoreOptions, rescore_batch
from rescore.scorers import load_scorer
from rescore.stream import prefetch
from tests.lattice_utils import fsa_from_arcs, make_symbols, random_lattice_arcs

BOS = 100


def noisy_lattices(seed: int, n: int):
    """Random lattices with continuous scores (no exact ties between hypotheses)."""
    rng = random.Random(seed)
    fsas = []
    for _ in range(n):
        arcs, final = random_lattice_arcs(rng, num_states=rng.randint(2, 7))
        arcs = [(s, d, w, am - rng.random(), lm - rng.random()) for s, d, w, am, lm in arcs]
        fsas.append(fsa_from_arcs(arcs, final))
    return k2.create_fsa_vec(fsas)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stream")
    symbols = make_symbols()
    batch = LatticeBatch(noisy_lattices(1, 15), [f"utt{i:02d}" for i in range(15)], symbols)
    write_lattices(batch, str(tmp / "lats"), "slf")
    vocab = Vocabulary([("<eps>", 0), ("<s>", 1), ("</s>", 2), ("<unk>", 3)] + [(f"w{i}", 3 + i) for i in range(1, 7)])
    torch.manual_seed(0)
    model = AFPLanguageModel(LMConfig(vocab_size=vocab.size, embed=8, hidden=8, cell="lstm", iterations=2))
    model.set_nonpredictable(vocab.nonpredictable_ids())
    save_checkpoint(str(tmp / "lm.pt"), model, vocab)
    return tmp, batch


def rescore_cli(tmp, name, *extra):
    out = str(tmp / name)
    args = ["--lm", str(tmp / "lm.pt"), "--out", out, "--lm-scale", "2", "--nbest", "3", "--no-progress",
            "--max-arcs", "60", *map(str, extra), str(tmp / "lats")]
    result = CliRunner().invoke(rescore_command, args, catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    nbest = [json.loads(line) for line in open(os.path.join(out, "nbest.jsonl"))]
    return open(os.path.join(out, "text")).read(), nbest, json.load(open(os.path.join(out, "metrics.json")))


def test_streamed_outputs_equal_one_batch_for_any_batch_size(setup):
    tmp, _ = setup
    text, nbest, metrics = rescore_cli(tmp, "one", "--batch-arcs", 10**6)
    assert metrics["batches"] == 1 and metrics["utterances_done"] == 15
    for size in (1, 23, 100):
        t, n, m = rescore_cli(tmp, f"stream{size}", "--batch-arcs", size)
        assert m["batches"] > 1 and m["utterances_done"] == 15
        assert t == text
        assert [(r["utt"], r["rank"], r["words"]) for r in n] == [(r["utt"], r["rank"], r["words"]) for r in nbest]
        assert all(abs(a["total"] - b["total"]) < 1e-3 for a, b in zip(n, nbest))
        assert m["pruned"] == metrics["pruned"]
    assert metrics["pruned"], "the fixture should make --max-arcs prune some lattices"


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10**6), split=st.integers(1, 6))
def test_rescoring_in_batches_equals_one_at_a_time(setup, seed, split):
    tmp, _ = setup
    scorer = load_scorer(str(tmp / "lm.pt"))
    fsas = noisy_lattices(seed, 8)
    batch = LatticeBatch(fsas, [f"u{i}" for i in range(8)], make_symbols())
    opts = RescoreOptions(nbest=2, max_arcs=40)
    scales = [(1.0, 2.0, -0.5)] * 8
    whole = rescore_batch(batch, scorer, scales, opts)

    def part(idx):
        sub = LatticeBatch(select_lattices(fsas, idx), [batch.utt_ids[i] for i in idx], batch.symbols)
        return rescore_batch(sub, scorer, [scales[i] for i in idx], opts)

    pieces = [part(list(range(i, min(i + split, 8)))) for i in range(0, 8, split)]
    assert [u for p in pieces for u in p.utt_ids] == whole.utt_ids
    flat = [h for p in pieces for h in p.hyps]
    assert [[h.words for h in hs] for hs in flat] == [[h.words for h in hs] for hs in whole.hyps]
    assert all(abs(a.total - b.total) < 1e-4 for x, y in zip(flat, whole.hyps) for a, b in zip(x, y))
    assert {u: v for p in pieces for u, v in p.pruned.items()} == whole.pruned


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), order=st.integers(1, 4), max_arcs=st.integers(1, 80))
def test_every_pruned_expansion_stays_within_max_arcs(seed, order, max_arcs):
    rng = random.Random(seed)
    fsas = k2.create_fsa_vec([fsa_from_arcs(*random_lattice_arcs(rng, num_states=rng.randint(2, 8), extra_arcs=rng.randint(0, 12)))
                              for _ in range(6)])
    exp, pruned, failures = expand_within(fsas, order, BOS, max_arcs=max_arcs)
    splits = exp.fsas.arcs.row_splits(2)[exp.fsas.arcs.row_splits(1).long()].tolist()
    sizes = [b - a for a, b in zip(splits, splits[1:])]
    assert all(n <= max_arcs for n in sizes)
    assert sorted(exp.kept + list(failures)) == list(range(6))
    for pos, i in enumerate(exp.kept):
        if i in pruned:
            assert pruned[i].expanded_arcs == sizes[pos] and pruned[i].arcs_after_pruning <= pruned[i].arcs_before
    full, _, _ = expand_within(fsas, order, BOS)  # what did not need pruning is expanded exactly as without a bound
    full_splits = full.fsas.arcs.row_splits(2)[full.fsas.arcs.row_splits(1).long()].tolist()
    for pos, i in enumerate(exp.kept):
        if i not in pruned:
            assert sizes[pos] == full_splits[i + 1] - full_splits[i] <= max_arcs


def test_prefetch_keeps_order_and_reraises_errors():
    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))

    def broken():
        yield 1
        raise ValueError("bad file")

    got = []
    with pytest.raises(ValueError, match="bad file"):
        for x in prefetch(broken()):
            got.append(x)
    assert got == [1]


def test_prefetch_stops_its_worker_when_the_consumer_stops():
    produced = []

    def items():
        for i in range(1000):
            produced.append(i)
            yield i

    before = threading.active_count()
    for x in prefetch(items(), depth=2):
        if x == 3:
            break
    assert threading.active_count() == before
    assert len(produced) < 10


def test_streamed_batches_never_see_their_symbol_table_change(tmp_path):
    """The reader runs ahead in a thread: a table already handed out must stay as it was, and a
    word keeps its id for the whole job."""
    from lattices.reader import iter_lattice_batches

    rng = random.Random(2)
    for u in range(6):  # each lattice brings words the earlier ones did not have
        symbols = k2.SymbolTable.from_str("\n".join(["<eps> 0"] + [f"u{u}w{i} {i}" for i in range(1, 7)]))
        fsa = fsa_from_arcs(*random_lattice_arcs(rng))
        write_lattices(LatticeBatch(k2.create_fsa_vec([fsa]), [f"utt{u}"], symbols), str(tmp_path / "lats"), "slf")
    seen = []
    for batch, _ in prefetch(iter_lattice_batches(sorted(str(p) for p in (tmp_path / "lats").iterdir()), batch_arcs=1)):
        seen.append((batch, dict(batch.symbols._sym2id)))
    assert len(seen) == 6
    ids = {}
    for batch, at_yield in seen:
        assert batch.symbols._sym2id == at_yield  # unchanged since it was yielded
        for word, i in at_yield.items():
            assert ids.setdefault(word, i) == i  # the same id in every batch


def test_exact_ties_break_the_same_way_in_every_batch(tmp_path):
    """Two homophones the LM maps to one id (both <unk>) tie exactly. Streamed with a tiny
    --batch-arcs, each copy of the tied lattice is read with a word table that has grown by a
    word (the reader numbers each batch's new words): the 1-best must not depend on that, nor on
    being read in one batch (it did when history tokens were numbered per table)."""
    n = 24
    vocab = Vocabulary([("<eps>", 0), ("<s>", 1), ("</s>", 2), ("<unk>", 3)] + [(f"w{i}", 3 + i) for i in range(1, n + 1)])
    torch.manual_seed(0)
    model = AFPLanguageModel(LMConfig(vocab_size=vocab.size, embed=4, hidden=4, cell="lstm", iterations=2))
    save_checkpoint(str(tmp_path / "lm.pt"), model, vocab)
    tied = [(0, 1, "xa"), (0, 2, "xb"), (1, 3, f"w{n}"), (2, 3, f"w{n}")]
    lats = tmp_path / "lats"
    for k in range(n):  # names sort as read: a tied copy, then a lattice with a word not seen yet
        for name, arcs in ((f"{k:02d}a-tie", tied), (f"{k:02d}b-new", [(0, 1, f"w{k + 1}")])):
            words = sorted({w for _, _, w in arcs})
            symbols = k2.SymbolTable.from_str("\n".join(["<eps> 0"] + [f"{w} {i + 1}" for i, w in enumerate(words)]))
            last = max(d for _, d, _ in arcs)
            fsa = fsa_from_arcs([(s, d, symbols[w], -1.0, -1.0) for s, d, w in arcs] + [(last, last + 1, -1, 0.0, 0.0)], last + 1)
            write_lattices(LatticeBatch(k2.create_fsa_vec([fsa]), [name], symbols), str(lats), "slf")
    texts = {}
    for batch_arcs in (1, 10**6):
        out = tmp_path / f"out{batch_arcs}"
        args = ["--lm", str(tmp_path / "lm.pt"), "--out", str(out), "--lm-scale", "2", "--no-progress", "--no-ctm",
                "--batch-arcs", str(batch_arcs), str(lats)]
        result = CliRunner().invoke(rescore_command, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        texts[batch_arcs] = dict(line.split(" ", 1) for line in open(out / "text").read().splitlines())
    ties = {u: t for u, t in texts[1].items() if "tie" in u}
    assert len(ties) == n and len(set(ties.values())) == 1, ties
    assert texts[1] == texts[10**6]
