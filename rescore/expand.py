"""Exact K-history expansion of a lattice batch, from and to k2 FsaVecs.

Every state of the expanded lattice is a pair (original state, last K tokens on the way there,
counting ``<s>``), so every arc has a unique K-token history and a K-context LM (an AFP-K model, an
order-(K+1) n-gram) assigns it an exact score. Paths map one to one onto the original paths,
with the same word sequences and (through ``arc_map``) the same per-arc attributes.

The work is done by :func:`rescore.grow.grow` on the plain-tensor :class:`~rescore.arcs.Arcs`
(torch, any device, no k2); this module is the k2 edge: it takes the FsaVec apart and assembles
the expanded FsaVec in one vectorised pass.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import k2
import numpy as np
import torch

from lattices.fsa_build import fsavec_from_arrays
from lattices.validate import select_lattices

from .arcs import Arcs
from .grow import FINAL, PAD, FitBeams, Grown, grow

__all__ = ["Expansion", "FitBeams", "expand_histories", "grow_on", "assemble", "PAD", "FINAL"]


@dataclass
class Expansion:
    """The result of :func:`expand_histories`.

    Attributes:
        fsas: expanded FsaVec ``[utt][state][arc]``, holding the utterances that fit; every tensor
            attribute of the input (labels, scores, am/lm scores, times) is copied via ``arc_map``.
        histories: ``[num_arcs, K]`` int64, the K tokens (history ids) before each arc's word,
            oldest first, left-padded with ``-1`` when fewer than K tokens precede it.
        arc_map: ``[num_arcs]`` int64, index of the input arc each expanded arc copies.
        kept: indices (into the input batch) of the utterances in ``fsas``, in order.
        too_large: ``{input index: arcs}`` for the utterances whose expansion exceeded ``max_arcs``
            or, with ``predict``, was predicted to (not in ``fsas``): a lower bound on their expanded
            arcs, above ``max_arcs`` unless given up on the prediction.
        beams: ``{input index: beam}`` for the kept utterances that were pruned to fit (only with
            :class:`~rescore.grow.FitBeams`).
        unproven: ``{input index: beam}`` for the kept utterances whose wider beams were given up
            on a prediction (``predict``) only: the widest beam not proven too large.
    """

    fsas: k2.Fsa
    histories: torch.Tensor
    arc_map: torch.Tensor
    kept: List[int]
    too_large: Dict[int, int]
    beams: Dict[int, float] = field(default_factory=dict)
    unproven: Dict[int, float] = field(default_factory=dict)


def expand_histories(
    fsas: k2.Fsa, order: int, bos: int, history_labels: Optional[torch.Tensor] = None, max_arcs: Optional[int] = None,
    fit: Optional[FitBeams] = None, predict: bool = False, device: Optional[torch.device] = None,
    arcs: Optional[Arcs] = None,
) -> Expansion:
    """Expand every lattice so that each arc has a unique ``order``-token history.

    Args:
        fsas: top-sorted, connected FsaVec ``[utt][state][arc]`` (as :mod:`lattices.validate`
            returns it); not modified.
        order: K >= 1, the number of preceding tokens that must be unique per arc.
        bos: the history id of ``<s>``, which starts every history.
        history_labels: ``[num_arcs]`` int64 token id each arc adds to the history (default
            ``fsas.labels``); <= 0 adds nothing (epsilon, final). Lets histories use the LM's ids,
            so words the LM cannot tell apart do not split states.
        max_arcs: abandon an utterance once its expansion has more arcs than this.
        fit: prune each utterance, in the same pass, to the widest of ``fit.widths`` at which it
            has at most ``max_arcs`` arcs (:class:`~rescore.grow.FitBeams`; ``fit.needs`` over
            the arcs of ``fsas``); an utterance that fits unpruned is not pruned.
        predict: give up beams, or without ``fit`` utterances, once their size extrapolated from
            the expansion so far exceeds :data:`rescore.grow.PREDICT_MARGIN` x ``max_arcs``
            (:func:`rescore.grow.grow`).
        device: where to grow the expansion (default: that of ``fsas``), e.g. the LM's GPU when
            k2 has no CUDA: the growth needs only the plain tensors of :class:`~rescore.arcs.Arcs`.
            The result is assembled on the device of ``fsas``.
        arcs: ``Arcs.from_fsas(fsas)`` when the caller has it (with its levels computed, from
            :meth:`~rescore.arcs.Arcs.select` of a larger batch, say); default: taken here.

    Returns:
        An :class:`Expansion`.
    """
    arcs = Arcs.from_fsas(fsas) if arcs is None else arcs  # taken once; growing and assembling both use it
    tokens = fsas.labels if history_labels is None else history_labels
    return assemble(fsas, arcs, grow_on(arcs, order, bos, tokens, max_arcs, fit, predict, device), order)


def grow_on(arcs: Arcs, order: int, bos: int, tokens: torch.Tensor, max_arcs: Optional[int] = None,
            fit: Optional[FitBeams] = None, predict: bool = False, device: Optional[torch.device] = None) -> Grown:
    """:func:`rescore.grow.grow` of ``arcs`` on ``device`` (default: that of ``arcs``), ``tokens``
    ``[num_arcs]`` the history token of each arc; the other arguments as for :func:`expand_histories`."""
    on = arcs if device is None else arcs.to(device)
    return grow(on, order, bos, tokens.long().to(on.device), max_arcs, fit, predict)


def assemble(fsas: k2.Fsa, arcs: Arcs, grown: Grown, order: int) -> Expansion:
    """The expanded FsaVec of ``grown`` (over the arcs of ``fsas``, ``arcs = Arcs.from_fsas(fsas)``):
    states renumbered per utterance and attributes copied, in one vectorised pass over the arcs (no
    per-utterance loop). The utterances ``grown`` abandoned, or that have no states, are left out."""
    st_orig, arc_src, arc_orig, arc_hist, arc_dst, state_kept, arc_kept = (x.cpu().numpy() for x in (
        grown.state_orig, grown.arc_src, grown.arc_orig, grown.arc_hist, grown.arc_dst, grown.state_kept, grown.arc_kept))
    abandoned, arcs_per_fsa = grown.abandoned.cpu().numpy(), grown.arcs_per_fsa.cpu().numpy()
    state_splits_in = arcs.state_splits.cpu().numpy()
    num_fsas = arcs.num_fsas
    state_fsa = arcs.state_fsa().cpu().numpy()
    labels_in = arcs.labels.cpu().numpy()
    st_fsa = state_fsa[st_orig]
    keep_fsa = ~abandoned & (np.diff(state_splits_in) > 0)
    keep_state = keep_fsa[st_fsa] & state_kept
    # utterance-major, creation (= topological, final state last) order inside each utterance
    new_order = np.nonzero(keep_state)[0][np.argsort(st_fsa[keep_state], kind="stable")]
    position = np.full(len(st_orig), -1, dtype=np.int64)
    position[new_order] = np.arange(len(new_order))
    states_per_fsa = np.bincount(st_fsa[new_order], minlength=num_fsas)
    first_state = np.cumsum(states_per_fsa) - states_per_fsa
    local = position - first_state[st_fsa]

    arc_order = np.nonzero(keep_state[arc_src] & arc_kept)[0]
    # by (utterance, source state); stable keeps each state's arcs in creation (= input) order
    arc_order = arc_order[np.argsort(position[arc_src[arc_order]], kind="stable")]
    assert (arc_dst[arc_order] >= 0).all(), "every kept arc must reach an expanded state"
    orig = arc_orig[arc_order]
    arc_splits = np.concatenate([[0], np.cumsum(np.bincount(position[arc_src[arc_order]], minlength=len(new_order)))])
    state_splits = np.concatenate([[0], np.cumsum(states_per_fsa[keep_fsa])])
    kept = np.flatnonzero(keep_fsa).tolist()
    arc_map = torch.from_numpy(orig)
    if kept:
        scores = arcs.scores.cpu()[arc_map]
        out = fsavec_from_arrays(state_splits, arc_splits, local[arc_src[arc_order]], local[arc_dst[arc_order]], labels_in[orig], scores)
    else:
        out = select_lattices(fsas, [])
    for name, value in fsas.named_tensor_attr(include_scores=False):
        if isinstance(value, torch.Tensor) and name != "labels":
            setattr(out, name, value[arc_map.to(value.device)])
    too_large = {int(i): int(arcs_per_fsa[i]) for i in np.flatnonzero(abandoned)}
    beam = grown.beam.cpu().numpy()
    beams = {i: float(beam[i]) for i in kept if np.isfinite(beam[i])}
    widest = grown.widest_unproven.cpu().numpy()
    unproven = {i: float(widest[i]) for i in kept if widest[i] > beam[i]}
    return Expansion(out, torch.from_numpy(arc_hist[arc_order]), arc_map, kept, too_large, beams, unproven)
