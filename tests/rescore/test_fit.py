"""Expansion under a memory bound: exploding lattices are beam-pruned until they fit."""
import random
import re

import k2
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lattices.nbest import one_best
from lattices.posteriors import prune
from rescore.expand import PAD, expand_histories
from rescore.fit import expand_within
from tests.lattice_utils import enumerate_paths, fsa_from_arcs, random_lattice_arcs

BOS = 100


def small(word: int) -> k2.Fsa:
    return fsa_from_arcs([(0, 1, word, -1.0, -0.5), (1, 2, 6, -0.5, 0.0), (2, 3, -1, 0.0, 0.0)], final=3)


def sausage(slots: int = 6) -> k2.Fsa:
    """``slots`` x 3 words; word 3 is best (0), 4 costs 1, 5 costs 9 per slot: beams prune 5 first."""
    arcs = [(s, s + 1, w, c, 0.0) for s in range(slots) for w, c in ((3, 0.0), (4, -1.0), (5, -9.0))]
    return fsa_from_arcs(arcs + [(slots, slots + 1, -1, 0.0, 0.0)], final=slots + 1)


def arc_splits(fsas: k2.Fsa):
    return fsas.arcs.row_splits(2)[fsas.arcs.row_splits(1).long()].tolist()


def check_histories(exp, utt_pos: int, tokens: torch.Tensor, order: int) -> None:
    """Every arc's history is the last ``order`` tokens (``tokens`` over the *input* arcs) before it."""
    splits = arc_splits(exp.fsas)
    fsa = exp.fsas[utt_pos]
    for path in enumerate_paths(fsa):
        seen = [BOS]
        for a in path:
            g = splits[utt_pos] + a
            assert exp.histories[g].tolist() == ([PAD] * order + seen)[-order:]
            tok = int(tokens[exp.arc_map[g]])
            if tok > 0:
                seen.append(tok)


def test_only_the_exploding_lattice_is_pruned_and_everything_maps_to_the_input():
    vec = k2.create_fsa_vec([small(1), sausage(), small(2)])
    before = vec.arcs.values().clone(), vec.scores.clone()
    # words 3 and 4 look alike to the LM: histories must follow history_labels through pruning
    hist_labels = torch.where(vec.labels == 4, torch.full_like(vec.labels, 3), vec.labels).long()
    exp, pruned, failures = expand_within(vec, 3, BOS, history_labels=hist_labels, max_arcs=50)
    assert torch.equal(vec.arcs.values(), before[0]) and torch.equal(vec.scores, before[1])  # not mutated
    assert exp.kept == [0, 1, 2] and not exp.too_large and not failures
    assert list(pruned) == [1]
    info = pruned[1]
    assert info.arcs_before == vec[1].num_arcs == 19 and info.expanded_arcs <= 50
    # the widest beam that fits: beams 20..10 keep everything (the unpruned expansion is too big);
    # beam 8 drops word 5, and words 3/4 share a history id, so one history per state remains
    assert info.beam == 8.0 and info.arcs_after_pruning == 13 and info.expanded_arcs == 13
    single = k2.create_fsa_vec([vec[1]])
    assert len(expand_histories(single, 3, BOS, history_labels=hist_labels[3:22], max_arcs=50).too_large) == 1
    assert prune(single, beam=8.0)[0].num_arcs == info.arcs_after_pruning

    # arc_map points into the original input arcs, for every utterance
    for name in ("labels", "am_scores", "lm_scores", "scores"):
        assert torch.equal(getattr(exp.fsas, name), getattr(vec, name)[exp.arc_map]), name
    assert not hasattr(exp.fsas, "fit_input_arc_index")
    splits = arc_splits(exp.fsas)
    assert set(exp.arc_map[splits[1]:splits[2]].tolist()) <= set(range(3, 22))
    check_histories(exp, 1, hist_labels, 3)
    # best path preserved
    assert one_best(exp.fsas)[1].words == one_best(vec)[1].words == [3] * 6

    # the small ones are exactly what plain expansion gives
    plain = expand_histories(vec, 3, BOS, history_labels=hist_labels)
    psplits = arc_splits(plain.fsas)
    for i in (0, 2):
        a, b, pa, pb = splits[i], splits[i + 1], psplits[i], psplits[i + 1]
        assert torch.equal(exp.fsas[i].arcs.values(), plain.fsas[i].arcs.values())
        assert torch.equal(exp.histories[a:b], plain.histories[pa:pb])
        assert torch.equal(exp.arc_map[a:b], plain.arc_map[pa:pb])


def test_pruned_expansion_keeps_exactly_the_paths_within_the_beam():
    vec = k2.create_fsa_vec([sausage(4), small(1)])
    exp, pruned, _ = expand_within(vec, 2, BOS, max_arcs=20)
    beam = pruned[0].beam
    assert beam < 20 and pruned[0].expanded_arcs <= 20
    labels = vec.labels.tolist()
    am = vec.am_scores.tolist()

    def summaries(paths, arc_of):
        return sorted((tuple(labels[arc_of(a)] for a in p if labels[arc_of(a)] > 0), sum(am[arc_of(a)] for a in p)) for p in paths)

    kept = summaries(enumerate_paths(exp.fsas[0]), lambda a: int(exp.arc_map[a]))
    best = max(t for _, t in kept)
    everything = summaries(enumerate_paths(vec[0]), lambda a: a)
    # nested pruning of a sausage: exactly the paths whose every arc is within the beam
    assert kept == [s for s in everything if all(c >= -beam for c in _slot_costs(s[0]))]
    assert best == 0.0 and len(kept) < len(everything)
    check_histories(exp, 0, vec.labels, 2)


def _slot_costs(words):
    return [{3: 0.0, 4: -1.0, 5: -9.0}[w] for w in words]


def test_a_lattice_that_cannot_fit_is_reported_and_the_others_are_fine():
    vec = k2.create_fsa_vec([small(1), sausage(), small(2)])
    exp, pruned, failures = expand_within(vec, 2, BOS, max_arcs=5)  # best path alone has 7 arcs
    assert exp.kept == [0, 2] and list(exp.too_large) == [1] and list(failures) == [1] and not pruned
    assert "max_arcs=5" in failures[1] and "19 arcs" in failures[1]
    # every input arc within a beam has an expanded copy, so 19 and 7 arcs rule it out unexpanded
    assert "19 arcs -> at least 19 expanded unpruned" in failures[1]
    assert "beam 0: 7 arcs -> at least 7 expanded" in failures[1]  # the narrowest beam
    assert torch.equal(exp.fsas.labels, vec.labels[exp.arc_map]) and exp.fsas.shape[0] == 2


def test_nothing_too_large_is_the_plain_expansion_and_bad_beams_are_rejected():
    vec = k2.create_fsa_vec([small(1), small(2)])
    exp, pruned, failures = expand_within(vec, 2, BOS, max_arcs=100)
    plain = expand_histories(vec, 2, BOS)
    assert not pruned and not failures and exp.kept == [0, 1]
    assert torch.equal(exp.fsas.arcs.values(), plain.fsas.arcs.values()) and torch.equal(exp.histories, plain.histories)
    with pytest.raises(ValueError, match="non-increasing"):
        expand_within(vec, 2, BOS, max_arcs=10, beams=(1.0, 2.0))
    with pytest.raises(ValueError, match="max_arcs"):
        expand_within(vec, 2, BOS, max_arcs=0)


def test_every_utterance_pruned_or_failed():
    vec = k2.create_fsa_vec([sausage(5), sausage(6)])
    exp, pruned, failures = expand_within(vec, 2, BOS, max_arcs=6)  # fits 6 arcs (5 words + final), not 7
    assert exp.kept == [0] and list(pruned) == [0] and list(failures) == [1] and pruned[0].expanded_arcs == 6
    assert torch.equal(exp.fsas.labels, vec.labels[exp.arc_map]) and exp.histories.shape == (6, 2)
    exp, pruned, failures = expand_within(vec, 2, BOS, max_arcs=1)
    assert exp.kept == [] and exp.fsas.shape[0] == 0 and list(failures) == [0, 1] and exp.arc_map.numel() == 0


def _paths(fsa: k2.Fsa, input_arc, histories, first_arc: int):
    """Every complete path as ((input arc, history) per arc), ``input_arc`` over ``fsa``'s arcs."""
    return sorted(tuple((int(input_arc[a]), tuple(histories[first_arc + a].tolist())) for a in p) for p in enumerate_paths(fsa))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), order=st.integers(1, 3), max_arcs=st.integers(1, 40), predict=st.booleans())
def test_one_pass_fit_equals_pruning_at_each_beam_then_expanding(seed, order, max_arcs, predict):
    """Brute force: for each over-budget lattice, prune it at each beam (widest first) with
    lattices.posteriors.prune, expand that, and keep the first that fits. Without ``predict``,
    expand_within's one pass must choose the same beam; with it, that beam or a narrower one (or
    a beam for an utterance that would fit whole). Either way its expanded paths (input arcs and
    histories) are those of pruning at the beam it chose, within max_arcs, and the same fail."""
    rng = random.Random(seed)
    lattices = [fsa_from_arcs(*random_lattice_arcs(rng, num_states=rng.randint(2, 6))) for _ in range(6)]
    vec = k2.create_fsa_vec(lattices)
    beams = (4.0, 2.0, 1.0, 0.5, 0.0)
    exp, pruned, failures = expand_within(vec, order, BOS, max_arcs=max_arcs, beams=beams, predict=predict)
    splits = arc_splits(exp.fsas)
    first_input_arc = arc_splits(vec)
    position = {i: j for j, i in enumerate(exp.kept)}
    for i, fsa in enumerate(lattices):
        single = k2.create_fsa_vec([fsa])
        single.input_arc = torch.arange(fsa.num_arcs)
        at_beam = {float("inf"): expand_histories(single, order, BOS)}
        for b in beams:
            small = prune(single, beam=b)[0]
            at_beam[b] = expand_histories(small, order, BOS)
            at_beam[b].arc_map = small.input_arc[at_beam[b].arc_map]
        widest = next((b for b, e in at_beam.items() if e.fsas.num_arcs <= max_arcs), None)
        if widest is None:
            assert i in failures and i not in position and i in exp.too_large
            continue
        assert i not in failures
        beam = pruned[i].beam if i in pruned else float("inf")
        assert beam == widest if not predict else beam <= widest
        expected = at_beam[beam]
        assert expected.fsas.num_arcs <= max_arcs
        if i in pruned:
            assert pruned[i].expanded_arcs == expected.fsas.num_arcs
            assert pruned[i].arcs_after_pruning == prune(single, beam=beam)[0].num_arcs
        j = position[i]
        got = _paths(exp.fsas[j], exp.arc_map[splits[j]:] - first_input_arc[i], exp.histories, splits[j])
        assert got == _paths(expected.fsas[0], expected.arc_map, expected.histories, 0)


def test_the_prediction_builds_fewer_arcs_for_the_same_beam(monkeypatch):
    """A 16-slot sausage at order 3 and max_arcs 100: the exact bound alone builds 155 arcs over
    both passes to find beam 0.5; the extrapolated size finds it after 64."""
    import rescore.expand as expand_module
    from rescore.grow import grow

    built = []
    monkeypatch.setattr(expand_module, "grow", lambda *a, **k: built.append(grow(*a, **k)) or built[-1])
    vec = k2.create_fsa_vec([sausage(16), small(1)])
    results = {}
    for predict in (False, True):
        built.clear()
        results[predict] = expand_within(vec, 3, BOS, max_arcs=100, predict=predict)
        results[predict] += (sum(g.arc_orig.numel() for g in built),)
    (exact, pruned, _, built_exact), (fast, fast_pruned, _, built_fast) = results[False], results[True]
    assert pruned == fast_pruned and pruned[0].beam == 0.5
    assert torch.equal(exact.fsas.arcs.values(), fast.fsas.arcs.values()) and torch.equal(exact.histories, fast.histories)
    assert built_fast < 0.5 * built_exact


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), order=st.integers(1, 3), max_arcs=st.integers(1, 40))
def test_a_prediction_that_always_overshoots_is_undone_by_the_exact_recheck(seed, order, max_arcs):
    """With the prediction giving up every beam at once, and every such utterance rechecked, the
    result is exactly that of not predicting: the recheck and the merge of its part are exact.
    Only a failure's lower bound on its unpruned expansion can be smaller (the first pass gave
    it up earlier), never larger."""
    import rescore.fit as fit_module
    import rescore.grow as grow_module

    rng = random.Random(seed)
    vec = k2.create_fsa_vec([fsa_from_arcs(*random_lattice_arcs(rng, num_states=rng.randint(2, 6))) for _ in range(5)])
    beams = (4.0, 2.0, 1.0, 0.5, 0.0)
    exact = expand_within(vec, order, BOS, max_arcs=max_arcs, beams=beams, predict=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(grow_module, "PREDICT_MARGIN", 0.0)
        mp.setattr(fit_module, "RECHECK_BELOW", 1.0)
        got = expand_within(vec, order, BOS, max_arcs=max_arcs, beams=beams, predict=True)
    assert got[1] == exact[1] and got[2].keys() == exact[2].keys()
    unpruned = re.compile(r"at least (\d+) expanded unpruned")
    for i, message in exact[2].items():
        assert unpruned.sub("", got[2][i]) == unpruned.sub("", message)
        bounds = [int(m.group(1)) for m in map(unpruned.search, (got[2][i], message)) if m]
        assert len(bounds) in (0, 2) and (not bounds or bounds[0] <= bounds[1])
        assert got[0].too_large.get(i) == (bounds[0] if bounds else None)
    assert got[0].kept == exact[0].kept
    for name in ("histories", "arc_map"):
        assert torch.equal(getattr(got[0], name), getattr(exact[0], name)), name
    assert torch.equal(got[0].fsas.arcs.values(), exact[0].fsas.arcs.values())


def _rescore_with_lm_on(device: str, setup, monkeypatch):
    """rescore_batch of the fixture's lattices with its AFP-2 LM loaded on ``device``, pruned to fit
    with the look-ahead; returns the output and the devices every expansion grew on."""
    import rescore.expand as expand_module
    from lattices.reader import read_lattices
    from rescore.pipeline import RescoreOptions, rescore_batch
    from rescore.scorers import load_scorer

    _, lats, lms = setup
    batch, fails = read_lattices([lats])
    assert not fails
    grew_on = []
    real_grow = expand_module.grow

    def spy(arcs, *args, **kwargs):
        grew_on.append(arcs.device.type)
        return real_grow(arcs, *args, **kwargs)

    monkeypatch.setattr(expand_module, "grow", spy)
    opts = RescoreOptions(nbest=3, max_arcs=12, keep_lattices=True)
    out = rescore_batch(batch, load_scorer(lms["afp2"], device), [(1.0, 1.0, 0.0)] * len(batch), opts)
    monkeypatch.undo()
    return out, grew_on


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
def test_with_the_lm_on_a_gpu_the_expansion_grows_there_and_gives_the_cpu_result(setup, monkeypatch):
    """k2 without CUDA: the lattices stay on the CPU, the expansion (look-ahead, fit and recheck
    passes) grows on the LM's GPU through the plain tensors, and nothing changes but the device."""
    cpu, cpu_grew = _rescore_with_lm_on("cpu", setup, monkeypatch)
    gpu, gpu_grew = _rescore_with_lm_on("cuda", setup, monkeypatch)
    assert cpu.pruned and len(cpu_grew) > 1, "the lattices must need pruning for this test"
    assert set(cpu_grew) == {"cpu"} and len(gpu_grew) == len(cpu_grew) and set(gpu_grew) == {"cuda"}
    assert [[h.words for h in hs] for hs in gpu.hyps] == [[h.words for h in hs] for hs in cpu.hyps]
    assert gpu.pruned == cpu.pruned and gpu.failures == cpu.failures
    assert torch.equal(gpu.lattices.fsas.arcs.values(), cpu.lattices.fsas.arcs.values())
    assert torch.allclose(gpu.lattices.fsas.afp_lm_scores, cpu.lattices.fsas.afp_lm_scores, atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), order=st.integers(1, 3), max_arcs=st.integers(1, 40), predict=st.booleans(),
       direct=st.sampled_from([1.0, 4.0, 1e9]))
def test_going_straight_to_the_pruned_pass_changes_nothing_but_the_cost(seed, order, max_arcs, predict, direct):
    """An utterance sent straight to the pruned pass (its input large against max_arcs) gets the
    same expansion, beam and failure as one that goes through the unpruned pass first; only the
    lower bound reported for a failed one may differ (it comes from the pruned pass)."""
    import rescore.fit as fit_module

    rng = random.Random(seed)
    vec = k2.create_fsa_vec([fsa_from_arcs(*random_lattice_arcs(rng, num_states=rng.randint(2, 6))) for _ in range(6)])
    got = {}
    for above in (0.0, direct):
        old, fit_module.DIRECT_ABOVE = fit_module.DIRECT_ABOVE, above
        try:
            got[above] = expand_within(vec, order, BOS, max_arcs=max_arcs, beams=(4.0, 2.0, 1.0, 0.5, 0.0), predict=predict)
        finally:
            fit_module.DIRECT_ABOVE = old
    (a, pruned_a, fail_a), (b, pruned_b, fail_b) = got[0.0], got[direct]
    assert a.kept == b.kept and pruned_a == pruned_b and sorted(fail_a) == sorted(fail_b) == sorted(a.too_large) == sorted(b.too_large)
    assert all(b.too_large[i] > max_arcs or predict for i in b.too_large)
    for name in ("histories", "arc_map"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert torch.equal(a.fsas.arcs.values(), b.fsas.arcs.values())
