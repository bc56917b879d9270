"""Arc posteriors (forward-backward) and posterior / beam pruning of lattice batches.

All functions work on the ``scores`` of their input FsaVec; for scaled scores pass
``lattices.lattice_batch.with_scales(fsas, am_scale, lm_scale, word_penalty)``.
Inputs must be connected and top-sorted (see :mod:`lattices.validate`) and are never mutated.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import k2
import numpy as np
import torch

from lattices.fsa_build import fsavec_from_arrays
from lattices.lattice_batch import utterance_scaled_scores
from lattices.validate import arc_arrays, counts_per_fsa


def arc_log_posteriors(fsas: k2.Fsa) -> torch.Tensor:
    """Log posterior probability of every arc (log semiring, double precision).

    Args:
        fsas: connected, top-sorted FsaVec ``[utt][state][arc]``.

    Returns:
        ``[num_arcs]`` float64 tensor; ``log P(arc | lattice)`` (natural log, <= 0 up to rounding).
        The posteriors of the arcs leaving the start state of each lattice sum to 1.
    """
    _check(fsas)
    return fsas.get_arc_post(use_double_scores=True, log_semiring=True).clone()


def arc_viterbi_scores(fsas: k2.Fsa) -> torch.Tensor:
    """Score of the best complete path through every arc, minus that lattice's best path score.

    Returns:
        ``[num_arcs]`` float64 tensor, ``<= 0``; 0 on (every) best path.
    """
    _check(fsas)
    fwd = fsas.get_forward_scores(use_double_scores=True, log_semiring=False)
    bwd = fsas.get_backward_scores(use_double_scores=True, log_semiring=False)
    tot = fsas.get_tot_scores(use_double_scores=True, log_semiring=False)
    arrays = arc_arrays(fsas)
    src = torch.from_numpy(arrays.src)
    dst = torch.from_numpy(arrays.dst)
    fsa_of_arc = torch.from_numpy(arrays.fsa_of_arc)
    return fwd[src] + fsas.scores.double() + bwd[dst] - tot[fsa_of_arc]


@dataclass
class PruneReport:
    """What pruning removed, per utterance (lists are ``[utt]``)."""

    arcs_before: List[int]
    arcs_after: List[int]
    states_before: List[int]
    states_after: List[int]

    @property
    def arcs_removed(self) -> List[int]:
        return [b - a for b, a in zip(self.arcs_before, self.arcs_after)]

    @property
    def states_removed(self) -> List[int]:
        return [b - a for b, a in zip(self.states_before, self.states_after)]


def prune(
    fsas: k2.Fsa, threshold: Optional[float] = None, beam: Optional[float] = None
) -> Tuple[k2.Fsa, PruneReport]:
    """Remove unlikely arcs, keeping the result connected.

    An arc is removed if it fails *any* given criterion:

    - ``threshold``: its posterior probability (forward-backward over ``scores``) is below
      ``threshold`` (``0 <= threshold <= 1``);
    - ``beam``: the best complete path through it scores more than ``beam`` below the best path.

    Arcs on a best (Viterbi) path are always kept, so no lattice becomes empty. Afterwards states
    and arcs that are no longer on a complete path are removed (``k2.connect``).

    Args:
        fsas: connected, top-sorted FsaVec ``[utt][state][arc]`` (not mutated).
        threshold: posterior threshold, or None.
        beam: log-score beam (>= 0), or None.

    Returns:
        ``(pruned, report)``: a new connected FsaVec ``[utt][state][arc]`` keeping every per-arc
        attribute, and a :class:`PruneReport`.

    Raises:
        ValueError: for an out-of-range ``threshold`` or negative ``beam``.
    """
    out = keep_arcs(fsas, _kept(fsas, threshold, beam))
    return out, _report(fsas, out)


def _kept(fsas: k2.Fsa, threshold: Optional[float], beam: Optional[float]) -> torch.Tensor:
    """``[num_arcs]`` bool: the arcs :func:`prune` keeps, by the ``scores`` of ``fsas``."""
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"posterior threshold must be in [0, 1], got {threshold}")
    if beam is not None and beam < 0:
        raise ValueError(f"beam must be >= 0, got {beam}")
    _check(fsas)
    viterbi = arc_viterbi_scores(fsas)
    keep = best_path_arcs(fsas, viterbi)
    ok = torch.ones_like(keep)
    if threshold is not None:
        ok &= arc_log_posteriors(fsas) >= torch.log(torch.tensor(threshold, dtype=torch.float64)) - 1e-12
    if beam is not None:
        ok &= viterbi >= -beam
    return keep | ok


def _report(before: k2.Fsa, after: k2.Fsa) -> PruneReport:
    return PruneReport(arcs_before=counts_per_fsa(before, 2), arcs_after=counts_per_fsa(after, 2),
                       states_before=counts_per_fsa(before, 1), states_after=counts_per_fsa(after, 1))


def prune_at_scales(fsas: k2.Fsa, scales: Sequence[Tuple[float, float, float]], beam: float) -> Tuple[k2.Fsa, PruneReport]:
    """Kaldi's ``lattice-prune``: :func:`prune` at Viterbi ``beam`` with each utterance's
    ``(am_scale, lm_scale, word_penalty)``; the result keeps unscaled ``scores = am + lm``.

    Args:
        fsas: connected, top-sorted FsaVec ``[utt][state][arc]`` with ``am_scores`` and
            ``lm_scores`` (not mutated).
        scales: ``[utt]`` the scales the beam applies at.
        beam: log-score beam (>= 0).
    """
    scaled = k2.Fsa(fsas.arcs.clone())  # the structure alone: the attributes are not needed to score
    scaled.scores = utterance_scaled_scores(fsas, scales)
    out = keep_arcs(fsas, _kept(scaled, None, beam))
    out.scores = out.am_scores + out.lm_scores
    return out, _report(fsas, out)


def best_path_arcs(fsas: k2.Fsa, viterbi: torch.Tensor) -> torch.Tensor:
    """``[num_arcs]`` bool: arcs on a best path (Viterbi score within rounding of the best)."""
    tot = fsas.get_tot_scores(use_double_scores=True, log_semiring=False)
    tol = 1e-6 * (1.0 + tot.abs().max().item()) if tot.numel() else 0.0
    return viterbi >= -tol


def keep_arcs(fsas: k2.Fsa, keep: torch.Tensor) -> k2.Fsa:
    """A new connected FsaVec with only the arcs where ``keep`` (``[num_arcs]`` bool) is True.

    Every per-arc attribute is carried over; states left without a complete path are removed.
    Keep at least one complete path per FSA (e.g. :func:`best_path_arcs`) or it becomes empty.

    The kept arcs are first gathered, with only the states they touch (and each FSA's start and
    final state), into a compact FsaVec; ``k2.connect`` then runs on that small FsaVec instead of
    on every state of the input (a beam keeps a few percent of a large lattice).
    """
    a = arc_arrays(fsas)
    idx = np.flatnonzero(keep.cpu().numpy())
    fsa_of_state = np.repeat(np.arange(a.num_fsas), np.diff(a.state_splits))
    used = np.zeros(a.num_states, dtype=bool)
    used[a.src[idx]] = used[a.dst[idx]] = True
    touched = np.unique(a.fsa_of_arc[idx])  # FSAs with a kept arc keep their start and final state
    used[a.state_splits[touched]] = used[a.state_splits[touched + 1] - 1] = True
    new_id = np.cumsum(used) - 1
    state_splits = np.concatenate([[0], np.cumsum(np.bincount(fsa_of_state[used], minlength=a.num_fsas))])
    first = state_splits[a.fsa_of_arc[idx]]
    src, dst = new_id[a.src[idx]], new_id[a.dst[idx]]
    arc_splits = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=int(state_splits[-1])))])
    arc_map = torch.from_numpy(idx).to(torch.int32)
    compact = fsavec_from_arrays(state_splits, arc_splits, src - first, dst - first, a.labels[idx],
                                 fsas.scores[arc_map.long()])
    return k2.connect(k2.utils.fsa_from_unary_function_tensor(fsas, compact.arcs, arc_map))


def _check(fsas: k2.Fsa) -> None:
    if len(fsas.shape) != 3:
        raise ValueError("expected an FsaVec [utt][state][arc]")
    if fsas.shape[0] and not (fsas.properties & k2.fsa_properties.TOPSORTED):
        raise ValueError("lattices must be top-sorted; run lattices.validate.validate_lattices first")
