import random

import k2
import pytest
import torch

from lattices.lattice_batch import LatticeBatch
from lattices.validate import check_lattices, cyclic_fsas, validate_batch, validate_lattices
from tests.lattice_utils import (
    brute_force_word_sequences,
    fsa_from_arcs,
    make_symbols,
    random_lattice_arcs,
)

GOOD = [(0, 1, 1, -1.0, -0.5), (1, 2, 2, -1.0, 0.0), (2, 3, -1, 0.0, 0.0)]
CYCLE = [(0, 1, 1, 0, 0), (1, 2, 2, 0, 0), (2, 1, 3, 0, 0), (1, 3, -1, 0, 0)]
NO_PATH = [(0, 1, 1, 0, 0), (2, 3, -1, 0, 0)]
UNSORTED = [(0, 2, 1, -1.0, 0.0), (2, 1, 2, -0.5, -0.25), (1, 3, -1, 0.0, 0.0)]


def _shuffled(arcs, final, rng):
    """Renumber states 1..final-1 randomly (start and final stay first/last)."""
    perm = list(range(1, final))
    rng.shuffle(perm)
    m = {0: 0, final: final, **{old: new for old, new in zip(range(1, final), perm)}}
    return [(m[s], m[d], lab, a, l) for s, d, lab, a, l in arcs]


def test_cycles_detected_per_fsa():
    fsas = [fsa_from_arcs(GOOD, 3), fsa_from_arcs(CYCLE, 3), fsa_from_arcs(UNSORTED, 3)]
    assert cyclic_fsas(k2.create_fsa_vec(fsas)).tolist() == [False, True, False]


def test_check_reports_bad_utterances_by_name_and_keeps_the_rest():
    fsas = [fsa_from_arcs(a, 3) for a in (GOOD, CYCLE, NO_PATH, UNSORTED)]
    vec = k2.create_fsa_vec(fsas)
    scores = vec.scores.clone()
    good, kept, problems = check_lattices(vec, ["good", "loop", "dead", "unsorted"])
    assert kept == [0, 3]
    assert [u for u, _ in problems] == ["loop", "dead"]
    assert "cycle" in problems[0][1] and "no complete path" in problems[1][1]
    assert good.shape[0] == 2
    assert good.properties & k2.fsa_properties.TOPSORTED
    assert torch.equal(vec.scores, scores)  # input untouched
    with pytest.raises(ValueError, match="loop: .*cycle.*dead: no complete path"):
        validate_lattices(vec, ["good", "loop", "dead", "unsorted"])
    with pytest.raises(ValueError, match="utterance ids"):
        validate_lattices(vec, ["a"])


def test_unsorted_is_fixed_silently_keeping_attributes():
    fsa = fsa_from_arcs(UNSORTED, 3, times=True)
    vec = k2.create_fsa_vec([fsa])
    out = validate_lattices(vec, ["u"])
    assert out is not vec
    assert out.properties & k2.fsa_properties.TOPSORTED
    assert out[0].labels.tolist() == [1, 2, -1]
    assert out[0].am_scores.tolist() == [-1.0, -0.5, 0.0]
    assert out[0].lm_scores.tolist() == [0.0, -0.25, 0.0]
    assert out[0].start_times.tolist() == pytest.approx([0.0, 0.2, 0.1])
    assert vec[0].labels.tolist() == [1, -1, 2]  # input order unchanged


def test_validated_random_lattices_are_equivalent():
    rng = random.Random(3)
    fsas, shuffled = [], []
    for _ in range(60):
        arcs, final = random_lattice_arcs(rng, num_states=rng.randint(3, 7))
        fsas.append(fsa_from_arcs(arcs, final))
        shuffled.append(fsa_from_arcs(_shuffled(arcs, final, rng), final))
    out = validate_lattices(k2.create_fsa_vec(shuffled), [str(i) for i in range(60)])
    assert out.properties & k2.fsa_properties.TOPSORTED
    for i in range(60):
        want = brute_force_word_sequences(fsas[i])
        got = brute_force_word_sequences(out[i])
        assert want.keys() == got.keys()
        for k in want:
            assert got[k] == pytest.approx(want[k])


def test_trims_dead_ends():
    # state 3 is a dead end (no arc leaves it); final is 4
    arcs = [(0, 1, 1, -1.0, -0.5), (1, 2, 2, -1.0, 0.0), (1, 3, 5, 0.0, 0.0), (2, 4, -1, 0.0, 0.0)]
    out = validate_lattices(k2.create_fsa_vec([fsa_from_arcs(arcs, 4)]), ["u"])
    assert sorted(out.labels.tolist()) == [-1, 1, 2]


def test_validate_batch():
    fsas = [fsa_from_arcs(a, 3) for a in (CYCLE, GOOD)]
    batch = LatticeBatch(k2.create_fsa_vec(fsas), ["x", "y"], make_symbols(), [{"path": "a"}, {"path": "b"}])
    out, problems = validate_batch(batch)
    assert out.utt_ids == ["y"] and out.headers == [{"path": "b"}]
    assert [u for u, _ in problems] == ["x"]
    assert len(batch) == 2
    all_bad = LatticeBatch(k2.create_fsa_vec([fsas[0]]), ["x"], make_symbols())
    out, problems = validate_batch(all_bad)
    assert len(out) == 0 and len(problems) == 1
