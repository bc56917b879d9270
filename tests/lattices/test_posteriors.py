import math

import k2
import pytest
import torch

from lattices.lattice_batch import with_utterance_scales
from lattices.posteriors import arc_log_posteriors, arc_viterbi_scores, keep_arcs, prune, prune_at_scales
from lattices.validate import validate_lattices
from tests.lattice_utils import enumerate_paths, fsa_from_arcs


def _vec(fsas):
    return validate_lattices(k2.create_fsa_vec(fsas), [str(i) for i in range(len(fsas))])


def test_posteriors_match_brute_force(random_lattices):
    vec = _vec(random_lattices[:80])
    post = arc_log_posteriors(vec).exp()
    vit = arc_viterbi_scores(vec)
    offset = 0
    for i in range(vec.shape[0]):
        fsa = vec[i]
        scores = fsa.scores.double().tolist()
        paths = list(enumerate_paths(fsa))
        totals = [sum(scores[a] for a in p) for p in paths]
        z = sum(math.exp(t) for t in totals)
        best = max(totals)
        n = len(scores)
        for a in range(n):
            want = sum(math.exp(t) for p, t in zip(paths, totals) if a in p) / z
            assert post[offset + a].item() == pytest.approx(want, abs=1e-9)
            want_v = max((t for p, t in zip(paths, totals) if a in p), default=-math.inf) - best
            assert vit[offset + a].item() == pytest.approx(want_v, abs=1e-5)
        offset += n


def _paths_words(fsa):
    labels = fsa.labels.tolist()
    return {tuple(labels[a] for a in p if labels[a] > 0) for p in enumerate_paths(fsa)}


def test_prune_beam_keeps_exactly_paths_in_beam(random_lattices):
    vec = _vec(random_lattices[:80])
    scores_before = vec.scores.clone()
    for beam in [0.0, 0.5, 1.5, 100.0]:
        pruned, report = prune(vec, beam=beam)
        assert torch.equal(vec.scores, scores_before)  # input untouched
        assert pruned.shape[0] == vec.shape[0]
        for i in range(vec.shape[0]):
            before, after = vec[i], pruned[i]
            scores = before.scores.double().tolist()
            best = max(sum(scores[a] for a in p) for p in enumerate_paths(before))
            # every arc kept lies on some path within the beam; every such path survives
            n_paths_in_beam = sum(
                1 for p in enumerate_paths(before) if sum(scores[a] for a in p) >= best - beam - 1e-6
            )
            after_scores = after.scores.double().tolist()
            after_paths = list(enumerate_paths(after))
            assert len(after_paths) >= n_paths_in_beam
            best_after = max(sum(after_scores[a] for a in p) for p in after_paths)
            assert best_after == pytest.approx(best, abs=1e-5)
            assert _paths_words(after) <= _paths_words(before)
            assert report.arcs_after[i] == after.arcs.values().shape[0]
            assert report.arcs_before[i] == before.arcs.values().shape[0]
        if beam == 100.0:
            assert report.arcs_removed == [0] * vec.shape[0]
            assert torch.equal(pruned.am_scores, vec.am_scores)


def test_prune_threshold_removes_low_posterior_arcs_and_keeps_attributes():
    # Two alternative words: posteriors ~0.88 and ~0.12; a third dead-end removed by validation.
    arcs = [(0, 1, 1, -0.0, 0.0), (0, 1, 2, -2.0, 0.0), (1, 2, 3, -1.0, -0.5), (2, 3, -1, 0.0, 0.0)]
    fsa = fsa_from_arcs(arcs, 3, times=True)
    vec = _vec([fsa])
    post = arc_log_posteriors(vec).exp().tolist()
    assert sum(post[:2]) == pytest.approx(1.0)
    pruned, report = prune(vec, threshold=0.2)
    assert sorted(pruned.labels.tolist()) == [-1, 1, 3]
    assert report.arcs_removed == [1]
    assert report.states_removed == [0]
    assert sorted(pruned.lm_scores.tolist()) == [-0.5, 0.0, 0.0]
    assert hasattr(pruned, "start_times")
    # A threshold above every posterior still keeps the best path.
    pruned, _ = prune(vec, threshold=1.0)
    assert sorted(pruned.labels.tolist()) == [-1, 1, 3]
    with pytest.raises(ValueError):
        prune(vec, threshold=1.5)
    with pytest.raises(ValueError):
        prune(vec, beam=-1)


def test_prune_combined_criteria_and_dead_states():
    # 0 -a-> 1 -eps-> 3 ; 0 -b-> 2 -c-> 3 ; 3 -> final: pruning arc b leaves state 2 unreachable.
    arcs = [(0, 1, 1, -1.0, 0.0), (0, 2, 2, -3.0, 0.0), (1, 3, 0, 0.0, 0.0), (2, 3, 3, 0.0, 0.0), (3, 4, -1, 0, 0)]
    vec = _vec([fsa_from_arcs(arcs, 4)])
    assert vec.shape[0] == 1
    pruned, report = prune(vec, beam=1.0, threshold=0.0)
    assert report.arcs_before == [5] and report.arcs_after == [3]
    assert report.states_before == [5] and report.states_after == [4]
    assert sorted(pruned.labels.tolist()) == [-1, 0, 1]
    pruned, report = prune(vec, beam=2.5)
    assert report.arcs_removed == [0]


def _path_arcs(fsa, attr):
    """The complete paths of one FSA, each as the tuple of its arcs' (label, attr value)."""
    labels, values = fsa.labels.tolist(), getattr(fsa, attr).tolist()
    return sorted(tuple((labels[a], values[a]) for a in p) for p in enumerate_paths(fsa))


def test_keep_arcs_keeps_exactly_the_paths_of_kept_arcs(random_lattices):
    """Any mask, dangling arcs included: the result's paths are the input's paths whose arcs are
    all kept (brute force), with their attributes; the input is not touched."""
    vec = _vec(random_lattices[:60])
    vec.marker = torch.arange(vec.num_arcs, dtype=torch.float32)  # which input arc each output arc is
    before = vec.arcs.values().clone()
    gen = torch.Generator().manual_seed(0)
    for density in (0.3, 0.7, 0.95):
        keep = (torch.rand(vec.num_arcs, generator=gen) < density) | (arc_viterbi_scores(vec) >= -1e-6)
        out = keep_arcs(vec, keep)
        assert torch.equal(vec.arcs.values(), before) and out.shape[0] == vec.shape[0]
        connected = k2.fsa_properties.ACCESSIBLE | k2.fsa_properties.COACCESSIBLE | k2.fsa_properties.TOPSORTED
        assert out.properties & connected == connected
        kept = set(torch.nonzero(keep).flatten().tolist())
        for i in range(vec.shape[0]):
            want = [p for p in _path_arcs(vec[i], "marker") if all(int(m) in kept for _, m in p)]
            assert _path_arcs(out[i], "marker") == want
            assert torch.equal(out[i].am_scores, vec.am_scores[out[i].marker.long()])


def test_prune_at_scales_prunes_at_the_scaled_scores_and_keeps_the_unscaled(random_lattices):
    vec = _vec(random_lattices[:40])
    scales = [(1.0, 0.5 + (i % 4), -0.5 * (i % 3)) for i in range(vec.shape[0])]
    for beam in (0.0, 1.0, 3.0):
        out, report = prune_at_scales(vec, scales, beam)
        ref, _ = prune(with_utterance_scales(vec, scales), beam=beam)
        assert torch.equal(out.labels, ref.labels) and torch.equal(out.am_scores, ref.am_scores)
        assert torch.equal(out.scores, out.am_scores + out.lm_scores)
        assert report.arcs_after == [int(n) for n in torch.diff(out.arcs.row_splits(2)[out.arcs.row_splits(1).long()])]
