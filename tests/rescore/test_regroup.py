"""Regrouping first-passed lattices (rescore/regroup.py)."""
import k2
import torch

from lattices.lattice_batch import LatticeBatch
from rescore.pipeline import RescoreOptions
from rescore.regroup import first_passed_groups
from tests.lattice_utils import fsa_from_arcs, make_symbols

SYMBOLS = make_symbols()


def one(utt, times=False):
    """w1 or w2 (3 arcs into state 1), then w3: 5 arcs; a beam of 0 keeps the w1 path (3 arcs)."""
    fsa = fsa_from_arcs([(0, 1, 1, -1.0, 0.0), (0, 1, 2, -3.0, 0.0), (0, 1, 4, -3.5, 0.0), (1, 2, 3, -1.0, 0.0),
                         (2, 3, -1, 0.0, 0.0)], final=3, times=times)
    return LatticeBatch(k2.create_fsa_vec([fsa]), [utt], SYMBOLS), [(1.0, 1.0, 0.0)]


def test_groups_hold_at_least_batch_arcs_pruned_arcs_in_input_order():
    batches = [one(f"u{i}") for i in range(5)]
    groups = list(first_passed_groups(batches, None, RescoreOptions(first_pass_beam=0.0), batch_arcs=5))
    assert [g.inputs for g in groups] == [["u0", "u1"], ["u2", "u3"], ["u4"]]
    assert [g.batch.utt_ids for g in groups] == [g.inputs for g in groups]
    assert [int(g.batch.fsas.num_arcs) for g in groups] == [6, 6, 3] and [g.arcs_in for g in groups] == [10, 10, 5]
    assert all(torch.equal(g.batch.fsas.labels, torch.tensor([1, 3, -1] * len(g.inputs), dtype=torch.int32)) for g in groups)
    assert [len(g.scales) for g in groups] == [2, 2, 1]


def test_lattices_with_different_attributes_go_to_different_groups():
    batches = [one("a"), one("b", times=True), one("c", times=True)]
    groups = list(first_passed_groups(batches, None, RescoreOptions(first_pass_beam=0.0), batch_arcs=100))
    assert [g.inputs for g in groups] == [["a"], ["b", "c"]]
    assert hasattr(groups[1].batch.fsas, "start_times") and not hasattr(groups[0].batch.fsas, "start_times")


def test_bad_lattices_are_failures_and_the_rest_go_on():
    bad, _ = one("bad")
    bad.fsas.am_scores[0] = float("nan")
    batches = [one("a"), (LatticeBatch(k2.cat([one("b")[0].fsas, bad.fsas]), ["b", "bad"], SYMBOLS), [(1.0, 1.0, 0.0)] * 2)]
    (group,) = first_passed_groups(batches, None, RescoreOptions(first_pass_beam=0.0), batch_arcs=100)
    assert group.inputs == ["a", "b", "bad"] and group.batch.utt_ids == ["a", "b"]
    assert group.failures == [("bad", "NaN or infinite acoustic/LM score on an arc")]
