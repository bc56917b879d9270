"""CTM: the aligned path spells the chosen words; confidences are brute-force word posteriors."""
import math
import warnings
from pathlib import Path

import k2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lattices.ctm import align_hypotheses, ctm_words, format_ctm
from lattices.lattice_batch import with_utterance_scales
from lattices.nbest import nbest
from lattices.normalize import NormalizationRules
from lattices.reader import NoWordTableWarning, read_lattices

LAT1 = str(Path(__file__).resolve().parents[1] / "data" / "lattices" / "kaldi-binary" / "lat.1")
SYMS = k2.SymbolTable.from_str("<eps> 0\na 1\nb 2\nc 3\nd 4")


def _tiny():
    """Paths: a b (two copies of a, different boundaries), a c, d; times per arc."""
    fsa = k2.Fsa.from_str("\n".join([
        "0 1 1 -1.0", "0 2 1 -1.5", "0 3 4 -2.5", "1 3 2 -0.5", "1 3 3 -2.0", "2 3 3 -0.7", "3 4 -1 0.0", "4"]))
    fsas = k2.create_fsa_vec([fsa])
    fsas.am_scores = fsas.scores.clone()
    fsas.lm_scores = torch.zeros_like(fsas.scores)
    fsas.start_times = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.2, 2.0])
    fsas.end_times = torch.tensor([1.0, 1.2, 2.0, 2.0, 2.0, 2.0, 2.0])
    return fsas


def _paths(fsas):
    arcs = fsas.arcs.values()[:, :3].tolist()

    def walk(s, taken):
        if s == 4:
            yield taken
        for i, (a, d, _) in enumerate(arcs):
            if a == s:
                yield from walk(d, taken + [i])

    return list(walk(0, []))


def test_confidence_is_the_brute_force_word_posterior():
    fsas = _tiny()
    scaled = with_utterance_scales(fsas, [(1.0, 1.0, 0.0)])
    best = nbest(fsas, 1, scales=[(1.0, 1.0, 0.0)])[0][0]
    words = ctm_words(scaled, ["u"], [best.words], SYMS)[0]
    assert [w.word for w in words] == ["a", "b"]
    labels, st, et, sc = (fsas.labels.tolist(), fsas.start_times.tolist(), fsas.end_times.tolist(), fsas.scores.tolist())
    paths = _paths(fsas)
    weight = [math.exp(sum(sc[i] for i in p)) for p in paths]
    for w in words:
        mid = w.start + w.duration / 2
        label = SYMS[w.word]
        has = [any(labels[i] == label and st[i] <= mid < et[i] for i in p) for p in paths]
        expected = sum(x for x, h in zip(weight, has) if h) / sum(weight)
        assert w.confidence == pytest.approx(expected, abs=1e-6)
    assert 0.0 < words[0].confidence <= 1.0


def test_alignment_spells_a_given_hypothesis_even_if_not_the_best():
    fsas = _tiny()
    scaled = with_utterance_scales(fsas, [(1.0, 1.0, 0.0)])
    (arcs,) = align_hypotheses(scaled, [[1, 3]])  # "a c": arcs 0+4 score -3.0, arcs 1+5 score -2.2
    assert arcs.tolist() == [1, 5]
    with pytest.raises(ValueError, match="not a path"):
        align_hypotheses(scaled, [[2]])


def test_real_kaldi_ctm_words_equal_the_1best():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoWordTableWarning)
        batch, _ = read_lattices([LAT1], rules=NormalizationRules.raw_words(), frame_seconds=0.03)
    scales = [(0.1, 1.0, 0.0)] * len(batch)
    hyps = [h[0].words for h in nbest(batch.fsas, 1, scales=scales)]
    words = ctm_words(with_utterance_scales(batch.fsas, scales), batch.utt_ids, hyps, batch.symbols)
    for ws, h in zip(words, hyps):
        assert [w.word for w in ws] == [batch.symbols.get(i) for i in h]
        starts = [w.start for w in ws]
        assert starts == sorted(starts) and all(0 <= w.confidence <= 1 for w in ws)
        assert all(w.duration >= 0 for w in ws)
    lines = format_ctm(words).splitlines()
    assert len(lines) == sum(map(len, hyps)) and lines[0].split()[1] == "1"


def test_nbest_cli_writes_ctm(tmp_path):
    from lattices.cli import cli

    with pytest.warns(NoWordTableWarning):
        r = CliRunner(mix_stderr=False).invoke(cli, ["nbest", "--am-scale", "0.1", "--text", str(tmp_path / "text"),
                                                     "--ctm", str(tmp_path / "ctm"), "--frame-subsampling-factor", "3",
                                                     "--out", str(tmp_path / "n.jsonl"), LAT1])
    assert r.exit_code == 0, r.stderr
    text = {ln.split()[0]: ln.split()[1:] for ln in (tmp_path / "text").read_text().splitlines()}
    ctm = {}
    for ln in (tmp_path / "ctm").read_text().splitlines():
        utt, _, start, dur, word, conf = ln.split()
        ctm.setdefault(utt, []).append(word)
    assert ctm == text
    ends = [float(ln.split()[2]) + float(ln.split()[3]) for ln in (tmp_path / "ctm").read_text().splitlines()]
    assert max(ends) == pytest.approx(3 * 4.52, abs=0.02)  # frames x 0.01 s x 3
    assert np.isfinite(ends).all()


@pytest.mark.parametrize("seed", range(40))
def test_alignment_on_random_lattices_with_epsilons(seed):
    """k2's intersection numbers its states in no topological order; the alignment must sort them
    (seed 1 failed in k2's shortest path before it did)."""
    import random

    from tests.lattice_utils import fsa_from_arcs, random_lattice_arcs

    rng = random.Random(seed)
    fsas = k2.create_fsa_vec([fsa_from_arcs(*random_lattice_arcs(rng, eps_prob=0.5)) for _ in range(3)])
    hyps = [h[0].words for h in nbest(fsas, 1)]
    labels = fsas.labels.tolist()
    for arcs, h in zip(align_hypotheses(fsas, hyps), hyps):
        assert [labels[a] for a in arcs.tolist()] == h
