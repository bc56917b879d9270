"""Lattice MBR against brute force: exact expected edit distance on lattices whose paths only meet
at the final state, never worse than Viterbi, and the classic case where MBR and MAP differ."""
import math
import random

import k2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lattices.mbr import mbr_decode
from lattices.nbest import nbest


def edit_distance(a, b):
    d = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    return d[-1]


def tree_lattice(paths):
    """``paths``: ``[(words, log score)]``, each its own chain from state 0 to the final state
    (epsilon where a word is 0). Returns the FsaVec and the posteriors."""
    lines, state = [], 1
    chains = []
    for words, score in paths:
        inner = max(len(words) - 1, 0)
        chain = [0] + list(range(state, state + inner))
        state += inner
        chains.append((chain, words, score))
    final = state
    for chain, words, score in chains:
        nodes = chain + [final]
        for k, w in enumerate(words):
            lines.append((nodes[k], nodes[k + 1], w, score if k == 0 else 0.0))
        if not words:
            lines.append((0, final, 0, score))
    lines.sort(key=lambda x: x[0])
    text = "\n".join(f"{s} {d} {w} {sc}" for s, d, w, sc in lines) + f"\n{final} {final + 1} -1 0\n{final + 1}"
    z = sum(math.exp(sc) for _, sc in paths)
    fsas = k2.create_fsa_vec([k2.Fsa.from_str(text)])
    fsas.am_scores, fsas.lm_scores = fsas.scores.clone(), 0 * fsas.scores
    return fsas, [math.exp(sc) / z for _, sc in paths]


def expected_errors(paths, post, hyp):
    return sum(p * edit_distance([w for w in words if w], hyp) for (words, _), p in zip(paths, post))


def test_mbr_differs_from_map_as_it_should():
    # "a b" 0.4, "a c" 0.3, "d c" 0.3: MAP is "a b" (0.9 expected errors), MBR "a c" (0.7)
    paths = [([1, 2], math.log(0.4)), ([1, 3], math.log(0.3)), ([4, 3], math.log(0.3))]
    fsas, post = tree_lattice(paths)
    (res,) = mbr_decode(fsas, [[1, 2]])
    assert res.words == [1, 3]
    assert res.expected_errors == pytest.approx(0.7) and res.viterbi_expected_errors == pytest.approx(0.9)
    assert res.confidences == pytest.approx([0.7, 0.6])


def test_single_path_is_certain():
    fsas, _ = tree_lattice([([5, 0, 6], 0.0)])
    (res,) = mbr_decode(fsas, [[5, 6]])
    assert res.words == [5, 6] and res.expected_errors == pytest.approx(0.0) and res.confidences == pytest.approx([1.0, 1.0])


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_expected_loss_is_exact_and_mbr_never_loses_to_viterbi(seed):
    rng = random.Random(seed)
    paths = [([rng.choice([0, 1, 2, 3, 4]) for _ in range(rng.randint(0, 5))], rng.uniform(-3, 0))
             for _ in range(rng.randint(1, 6))]
    fsas, post = tree_lattice(paths)
    viterbi = nbest(fsas, 1)[0][0].words
    (res,) = mbr_decode(fsas, [viterbi])
    assert res.viterbi_expected_errors == pytest.approx(expected_errors(paths, post, viterbi), abs=1e-6)
    assert res.expected_errors == pytest.approx(expected_errors(paths, post, res.words), abs=1e-6)
    assert res.expected_errors <= res.viterbi_expected_errors + 1e-9
    assert all(0.0 <= c <= 1.0 for c in res.confidences)


def test_real_lattices_decode_with_times():
    import warnings
    from pathlib import Path

    from lattices.lattice_batch import with_utterance_scales
    from lattices.normalize import NormalizationRules
    from lattices.reader import read_lattices

    lat1 = Path(__file__).resolve().parents[1] / "data" / "lattices" / "kaldi-binary" / "lat.1"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch, _ = read_lattices([str(lat1)], rules=NormalizationRules.raw_words())
    scales = [(0.1, 1.0, 0.0)] * len(batch)
    viterbi = [h[0].words for h in nbest(batch.fsas, 1, scales=scales)]
    results = mbr_decode(with_utterance_scales(batch.fsas, scales), viterbi)
    for res, v in zip(results, viterbi):
        assert res.expected_errors <= res.viterbi_expected_errors + 1e-9
        assert len(res.start_times) == len(res.words) and res.start_times == sorted(res.start_times)
        assert all(b <= e + 1e-6 for b, e in zip(res.start_times, res.end_times))
        assert edit_distance(res.words, v) <= max(2, len(v) // 3)  # close to the 1-best on these sharp lattices
