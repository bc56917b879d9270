"""LM look-ahead for pruning: brute-force bigram Viterbi scores, and the path it saves."""
import functools
import math
import random

import k2
import pytest
import torch

from lattices.lattice_batch import LatticeBatch, with_utterance_scales
from lattices.posteriors import arc_viterbi_scores
from rescore.arc_scores import history_tokens
from rescore.lookahead import Lookahead, LookaheadWeights
from rescore.pipeline import RescoreOptions, rescore_batch
from rescore.scorers import load_scorer
from tests.lattice_utils import enumerate_paths, fsa_from_arcs, make_symbols, random_lattice_arcs
from tests.rescore.conftest import ARPA

SCALES = (1.0, 2.0, -0.5)


@pytest.fixture(scope="module")
def bigram(tmp_path_factory):
    path = tmp_path_factory.mktemp("la") / "lm.arpa"
    path.write_text(ARPA)
    return load_scorer(str(path))


def lookahead_viterbi(scorer, symbols, fsas, weight=1.0, lattice_lm_weight=0.0):
    """Lookahead.viterbi of all of ``fsas``, with the history tokens the pipeline gives it."""
    tokens = history_tokens(symbols, [scorer])
    n = fsas.shape[0]
    la = Lookahead([scorer], tokens, LookaheadWeights([SCALES] * n, [weight], lattice_lm_weight), symbols)
    return la.viterbi(fsas, list(range(n)), tokens.of_labels(fsas.labels))


def random_batch(seed: int, n: int = 4) -> k2.Fsa:
    rng = random.Random(seed)
    return k2.create_fsa_vec([fsa_from_arcs(*random_lattice_arcs(rng, num_states=rng.randint(3, 6))) for _ in range(n)])


@functools.lru_cache(maxsize=None)
def arpa_tables():
    """(unigram {word: (log10 p, log10 backoff)}, bigram {(prev, word): log10 p}) of the ARPA text."""
    uni, bi, section = {}, {}, 0
    for line in ARPA.splitlines():
        parts = line.split()
        if line.startswith("\\") and "-grams" in line:
            section = int(line[1])
        elif section == 1 and len(parts) >= 2:
            uni[parts[1]] = (float(parts[0]), float(parts[2]) if len(parts) > 2 else 0.0)
        elif section == 2 and len(parts) >= 3:
            bi[(parts[1], parts[2])] = float(parts[0])
    return uni, bi


def bigram_log_prob(prev: str, word: str) -> float:
    """ln P(word | prev) straight from the ARPA text (back-off to the unigram; OOV is <unk>)."""
    uni, bi = arpa_tables()
    prev, word = (w if w in uni else "<unk>" for w in (prev, word))
    log10 = bi[(prev, word)] if (prev, word) in bi else uni[prev][1] + uni[word][0]
    return log10 * math.log(10)


@pytest.mark.parametrize("seed", range(4))
def test_without_lm_weight_it_is_the_plain_viterbi_score(bigram, seed):
    """Weight 0 for the LM and 1 for the lattice's LM scores: the order-1 expansion changes no
    path score, so every arc's score is exactly the plain best-path-through score."""
    symbols = make_symbols()
    fsas = with_utterance_scales(random_batch(seed), [SCALES] * 4)
    got = lookahead_viterbi(bigram, symbols, fsas, weight=0.0, lattice_lm_weight=1.0)
    assert torch.allclose(got, arc_viterbi_scores(fsas), atol=1e-4)


@pytest.mark.parametrize("seed", range(4))
def test_scores_are_the_best_bigram_path_through_each_arc(bigram, seed):
    """Brute force: every complete path scored am_scale*am + lm_scale*bigram + wp*words (the
    lattice's own LM scores replaced); each arc gets its best path minus the lattice's best."""
    symbols = make_symbols()
    raw = random_batch(seed)
    fsas = with_utterance_scales(raw, [SCALES] * 4)
    got = lookahead_viterbi(bigram, symbols, fsas)
    splits = fsas.arcs.row_splits(2)[fsas.arcs.row_splits(1).long()].tolist()
    for u in range(4):
        fsa = raw[u]
        labels, am = fsa.labels.tolist(), fsa.am_scores.tolist()
        best_through = [-math.inf] * fsa.num_arcs
        for path in enumerate_paths(fsa):
            prev, total = "<s>", 0.0
            for a in path:
                total += SCALES[0] * am[a]
                if labels[a] != 0:
                    word = "</s>" if labels[a] == -1 else symbols.get(labels[a])
                    total += SCALES[1] * bigram_log_prob(prev, word) + (SCALES[2] if labels[a] > 0 else 0.0)
                    prev = word
            for a in path:
                best_through[a] = max(best_through[a], total)
        best = max(best_through)
        want = torch.tensor([b - best for b in best_through], dtype=torch.float64)
        assert torch.allclose(got[splits[u] : splits[u + 1]], want, atol=1e-3), (u, got[splits[u] : splits[u + 1]], want)


def test_it_keeps_the_lm_best_path_that_acoustic_pruning_loses(bigram):
    """Three slots; the acoustically best words (w4 w5 w1) are unlikely to the LM, w1 w2 w3 likely.
    With max_arcs = one path, only beam 0 fits: without look-ahead it keeps the acoustic best path,
    with it the path the LM prefers, which is the exact 1-best of the unpruned expansion."""
    symbols = make_symbols()
    arcs = [(0, 1, 1, -1.0, 0.0), (0, 1, 4, 0.0, 0.0), (1, 2, 2, -1.0, 0.0), (1, 2, 5, 0.0, 0.0),
            (2, 3, 3, -1.0, 0.0), (2, 3, 1, 0.0, 0.0), (3, 4, -1, 0.0, 0.0)]
    batch = LatticeBatch(k2.create_fsa_vec([fsa_from_arcs(arcs, final=4)]), ["u"], symbols)
    scales = [(1.0, 1.0, 0.0)]
    words = {}
    for name, opts in (("exact", RescoreOptions(max_arcs=None)), ("lookahead", RescoreOptions(max_arcs=4)),
                       ("acoustic", RescoreOptions(max_arcs=4, lookahead=False))):
        out = rescore_batch(batch, bigram, scales, RescoreOptions(**{**opts.__dict__, "order": 2}))
        assert not out.failures
        words[name] = [symbols.get(w) for w in out.hyps[0][0].words]
        assert name == "exact" or out.pruned["u"]["expanded_arcs"] <= 4
    assert words["exact"] == words["lookahead"] == ["w1", "w2", "w3"]
    assert words["acoustic"] == ["w4", "w5", "w1"]


@pytest.mark.parametrize("chunk_arcs", [1, 7, 20, 10**6])
def test_each_lattice_scores_the_same_whatever_the_chunk(bigram, chunk_arcs):
    """The look-ahead scores chunks of about ``chunk_arcs`` input arcs at a time; every arc's score
    is the one of all lattices at once (a chunk of 1 arc is one lattice per chunk)."""
    symbols = make_symbols()
    fsas = with_utterance_scales(random_batch(5, n=7), [SCALES] * 7)
    tokens = history_tokens(symbols, [bigram])
    weights = LookaheadWeights([SCALES] * 7, [0.7], 0.3)
    whole = Lookahead([bigram], tokens, weights, symbols, chunk_arcs=10**9).viterbi(fsas, list(range(7)), tokens.of_labels(fsas.labels))
    got = Lookahead([bigram], tokens, weights, symbols, chunk_arcs=chunk_arcs).viterbi(fsas, list(range(7)), tokens.of_labels(fsas.labels))
    assert got.shape == (fsas.num_arcs,)
    assert torch.equal(got, whole)
