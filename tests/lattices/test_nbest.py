import math
import random

import k2
import pytest
import torch

from lattices.nbest import best_path_words, nbest, one_best
from lattices.validate import validate_lattices
from tests.lattice_utils import (
    brute_force_word_sequences,
    enumerate_paths,
    fsa_from_arcs,
    random_lattice_arcs,
)


def _check_against_brute_force(fsa: k2.Fsa, hyps, n: int, scales=(1.0, 1.0, 0.0)) -> None:
    am_s, lm_s, wp = scales
    truth = brute_force_word_sequences(fsa, am_s, lm_s, wp)
    expected_scores = sorted(truth.values(), reverse=True)[:n]
    assert len(hyps) == min(n, len(truth))
    got_words = [tuple(h.words) for h in hyps]
    assert len(set(got_words)) == len(got_words), "word sequences must be distinct"
    for h, want in zip(hyps, expected_scores):
        # rank-by-rank score equals the brute-force sorted scores ...
        assert h.total == pytest.approx(want, abs=1e-5)
        # ... and each hypothesis carries its own true (max) score
        assert h.total == pytest.approx(truth[tuple(h.words)], abs=1e-5)
        # total is consistent with the reported am / lm of the best path
        assert h.total == pytest.approx(am_s * h.am + lm_s * h.lm + wp * len(h.words), abs=1e-4)
    # there is an actual path with these words, am and lm
    labels = fsa.labels.tolist()
    am = fsa.am_scores.tolist()
    lm = fsa.lm_scores.tolist()
    for h in hyps:
        assert any(
            tuple(labels[a] for a in p if labels[a] > 0) == tuple(h.words)
            and math.isclose(sum(am[a] for a in p), h.am, abs_tol=1e-5)
            and math.isclose(sum(lm[a] for a in p), h.lm, abs_tol=1e-5)
            for p in enumerate_paths(fsa)
        )


@pytest.mark.parametrize("n", [1, 3, 10, 1000])
def test_nbest_matches_brute_force(random_lattices, n):
    vec = validate_lattices(k2.create_fsa_vec(random_lattices), [str(i) for i in range(len(random_lattices))])
    result = nbest(vec, n)
    assert len(result) == len(random_lattices)
    for i, hyps in enumerate(result):
        _check_against_brute_force(vec[i], hyps, n)


def test_nbest_with_scales_and_per_lattice_scales(random_lattices):
    fsas = random_lattices[:60]
    vec = validate_lattices(k2.create_fsa_vec(fsas), [str(i) for i in range(len(fsas))])
    for hyps, i in zip(nbest(vec, 5, am_scale=0.5, lm_scale=2.0, word_penalty=-1.0), range(len(fsas))):
        _check_against_brute_force(vec[i], hyps, 5, (0.5, 2.0, -1.0))
    rng = random.Random(7)
    scales = [(rng.choice([0.5, 1.0]), rng.choice([1.0, 3.0]), rng.choice([0.0, 1.5])) for _ in fsas]
    for n in (1, 4):  # n = 1 is the Viterbi search, n > 1 the A* search
        for i, hyps in enumerate(nbest(vec, n, scales=scales)):
            _check_against_brute_force(vec[i], hyps, n, scales[i])


def test_a_lattice_without_a_complete_path_has_no_hypothesis():
    ok = k2.Fsa.from_str("0 1 3 -1.0\n1 2 -1 0.0\n2")
    dead = k2.Fsa.from_str("0 1 3 -1.0\n2")  # the final state cannot be reached
    for fsa in (ok, dead):
        fsa.am_scores, fsa.lm_scores = fsa.scores.clone(), torch.zeros_like(fsa.scores)
    vec = k2.create_fsa_vec([ok, dead, ok])
    for n in (1, 2):
        got = nbest(vec, n)
        assert [len(h) for h in got] == [1, 0, 1]
        assert got[2][0].words == [3] and got[2][0].total == pytest.approx(-1.0)


def test_nbest_larger_random_lattices():
    rng = random.Random(99)
    fsas = []
    for _ in range(15):
        arcs, final = random_lattice_arcs(rng, num_states=rng.randint(8, 11), eps_prob=0.4, extra_arcs=14)
        fsas.append(fsa_from_arcs(arcs, final))
    vec = validate_lattices(k2.create_fsa_vec(fsas), [str(i) for i in range(len(fsas))])
    for i, hyps in enumerate(nbest(vec, 20)):
        _check_against_brute_force(vec[i], hyps, 20)


def test_paths_collapse_to_distinct_word_sequences():
    # Two paths spell "1 2" (one through an epsilon, different scores), one spells "1 3".
    arcs = [
        (0, 1, 1, -1.0, 0.0),
        (1, 2, 2, -1.0, 0.0),
        (0, 3, 1, -0.5, 0.0),
        (3, 4, 0, -0.1, 0.0),
        (4, 2, 2, -0.1, -0.2),
        (1, 2, 3, -1.5, 0.0),
        (2, 5, -1, 0.0, 0.0),
    ]
    vec = validate_lattices(k2.create_fsa_vec([fsa_from_arcs(arcs, 5)]), ["u"])
    hyps = nbest(vec, 10)[0]
    assert [h.words for h in hyps] == [[1, 2], [1, 3]]
    assert hyps[0].total == pytest.approx(-0.9)
    assert (hyps[0].am, hyps[0].lm) == (pytest.approx(-0.7), pytest.approx(-0.2))
    assert hyps[1].total == pytest.approx(-2.5)
    assert [h.words for h in one_best(vec)] == [[1, 2]]
    # With a big LM scale the LM penalty on the epsilon path flips which path is best for "1 2".
    hyps = nbest(vec, 1, lm_scale=10.0)[0]
    assert hyps[0].words == [1, 2]
    assert hyps[0].total == pytest.approx(-2.0)
    assert (hyps[0].am, hyps[0].lm) == (pytest.approx(-2.0), pytest.approx(0.0))


def test_nbest_does_not_mutate_and_rejects_bad_input(random_lattices):
    vec = validate_lattices(k2.create_fsa_vec(random_lattices[:5]), list("abcde"))
    before = vec.scores.clone()
    nbest(vec, 3, am_scale=0.3, lm_scale=2.0, word_penalty=1.0)
    assert torch.equal(vec.scores, before)
    with pytest.raises(ValueError):
        nbest(vec, 0)
    with pytest.raises(ValueError):
        nbest(vec, 2, scales=[(1.0, 1.0, 0.0)])


def test_massive_exact_ties_stay_fast():
    # 40 positions x 2 tied words = 2**40 equally good sequences (as in real pocketsphinx lattices):
    # a breadth-first order among ties would never reach the final state.
    arcs = []
    for k in range(40):
        arcs += [(k, k + 1, 1, -1.0, 0.0), (k, k + 1, 2, -1.0, 0.0)]
    arcs.append((40, 41, -1, 0.0, 0.0))
    vec = validate_lattices(k2.create_fsa_vec([fsa_from_arcs(arcs, 41)]), ["ties"])
    hyps = nbest(vec, 50)[0]
    assert len(hyps) == 50 and len({tuple(h.words) for h in hyps}) == 50
    assert all(h.total == pytest.approx(-40.0) and len(h.words) == 40 for h in hyps)


def test_rank_one_is_the_viterbi_best_path_even_on_exact_ties(random_lattices):
    tied = k2.Fsa.from_str("0 1 5 -1.0\n0 1 6 -1.0\n0 1 7 -2.0\n1 2 -1 0.0\n2")
    tied.am_scores, tied.lm_scores = tied.scores.clone(), torch.zeros_like(tied.scores)
    vec = k2.create_fsa_vec([tied])
    one = nbest(vec, 1)[0][0]
    best = k2.shortest_path(vec, use_double_scores=True)
    assert one.words == [w for w in best.labels.tolist() if w > 0] and one.total == pytest.approx(-1.0)
    for n in (2, 3):
        hyps = nbest(vec, n)[0]
        assert hyps[0].words == one.words and sorted(h.words[0] for h in hyps[:2]) == [5, 6]
        assert [h.total for h in hyps] == pytest.approx([-1.0, -1.0, -2.0][:n])
    vec = validate_lattices(k2.create_fsa_vec(random_lattices), [str(i) for i in range(len(random_lattices))])
    assert [h[0].words for h in nbest(vec, 1)] == [h[0].words for h in nbest(vec, 7)]


def test_best_path_words_is_the_one_best_search_on_given_scores(random_lattices):
    from lattices.lattice_batch import with_utterance_scales

    vec = validate_lattices(k2.create_fsa_vec(random_lattices), [str(i) for i in range(len(random_lattices))])
    rng = random.Random(3)
    scales = [(1.0, rng.choice([0.5, 2.0]), rng.choice([-1.0, 0.0, 1.0])) for _ in range(vec.shape[0])]
    before = vec.scores.clone()
    got = best_path_words(vec, with_utterance_scales(vec, scales).scores)
    assert got == [h[0].words for h in nbest(vec, 1, scales=scales)]
    assert vec.scores.equal(before) and got == [h[0].words for h in nbest(vec, 4, scales=scales)]
