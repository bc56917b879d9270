"""History expansion under a memory bound: prune the lattices that explode until they fit.

:func:`rescore.expand.expand_histories` abandons every utterance whose expansion would exceed
``max_arcs``. :func:`expand_within` retries each of them on a Viterbi-beam-pruned copy of its
lattice (:func:`lattices.posteriors.prune`), narrowing the beam until the expansion fits, and
merges everything back into one :class:`~rescore.expand.Expansion` in input order whose
``arc_map`` points into the *original* input arcs.

Pruning is nested: every arc within beam ``b`` of the best path is also within any wider beam, so
narrowing the beam only removes paths. Beam 0 keeps just the best-path arcs (all of them when
several paths tie), which is the smallest lattice this module tries.
"""
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import k2
import torch

from lattices.posteriors import prune
from lattices.validate import select_lattices

from .expand import Expansion, expand_histories

# Log-score beams from very wide (acoustic log-likelihoods of real recognizers span thousands)
# down to 0 (best path only). Bisected: about log2(len) expansions per utterance that is too large.
DEFAULT_BEAMS: Tuple[float, ...] = tuple(float(2 ** e) for e in range(12, -3, -1)) + (0.0,)

# Temporary per-arc attribute carrying input arc indexes through prune (removed from the output).
_ARC_INDEX = "fit_input_arc_index"


@dataclass
class PruneInfo:
    """How one utterance was made to fit.

    Attributes:
        beam: the Viterbi beam (log-score, on the input's ``scores``) that made it fit.
        arcs_before: arcs of the input lattice.
        arcs_after_pruning: arcs left after pruning with ``beam``.
        expanded_arcs: arcs of its expansion (``<= max_arcs``).
    """

    beam: float
    arcs_before: int
    arcs_after_pruning: int
    expanded_arcs: int


def expand_within(
    fsas: k2.Fsa,
    order: int,
    bos: int,
    history_labels: Optional[torch.Tensor] = None,
    max_arcs: Optional[int] = None,
    beams: Sequence[float] = DEFAULT_BEAMS,
) -> Tuple[Expansion, Dict[int, PruneInfo], Dict[int, str]]:
    """Expand every lattice to unique ``order``-token histories, pruning those that exceed ``max_arcs``.

    The whole batch is expanded once with :func:`expand_histories`. Each utterance reported in
    its ``too_large`` is pruned alone by Viterbi beam for every beam in ``beams`` in turn
    (widest first) and re-expanded, until its expansion has at most ``max_arcs`` arcs. Beams that
    remove nothing more than the previous attempt are skipped (same lattice, same result).

    Args:
        fsas: connected, top-sorted FsaVec ``[utt][state][arc]`` (see
            :func:`lattices.validate.validate_lattices`) whose ``scores`` are the scaled scores the
            beam applies to (set them with :func:`lattices.lattice_batch.with_scales`). Not mutated.
        order, bos, history_labels: as for :func:`expand_histories` (``history_labels`` is
            ``[num_arcs]`` over the input arcs).
        max_arcs: the bound on expanded arcs per utterance; None expands everything unpruned.
        beams: beams to try, non-increasing and ``>= 0``; end with 0 to guarantee the smallest
            lattice is tried.

    Returns:
        ``(expansion, pruned, failures)``:

        - ``expansion``: one :class:`Expansion` over all utterances that fit, in input order.
          ``kept`` lists their input indexes; ``arc_map`` ``[num_expanded_arcs]`` and the copied
          attributes refer to the arcs of ``fsas`` (pruning composed in); ``histories``
          ``[num_expanded_arcs, order]`` follow ``history_labels``; ``too_large`` holds
          ``{input index: arcs counted}`` for the utterances that did not fit even pruned (the
          count of their last attempt).
        - ``pruned``: ``{input index: PruneInfo}`` for every utterance that was pruned to fit;
          utterances not in it are exactly as :func:`expand_histories` expands them.
        - ``failures``: ``{input index: message}`` for every utterance not in ``expansion.kept``
          (too large even at the narrowest beam, or an empty lattice), with the counts.

    Raises:
        ValueError: for an invalid ``beams`` or ``max_arcs`` (and what :func:`expand_histories`
            raises).
    """
    beams = [float(b) for b in beams]
    if not beams or any(b < 0 for b in beams) or any(b1 < b2 for b1, b2 in zip(beams, beams[1:])):
        raise ValueError(f"beams must be a non-empty, non-increasing list of values >= 0, got {beams}")
    if max_arcs is not None and max_arcs < 1:
        raise ValueError(f"max_arcs must be >= 1, got {max_arcs}")
    if _ARC_INDEX in dict(fsas.named_tensor_attr()):
        raise ValueError(f"fsas already has an attribute named {_ARC_INDEX!r}")

    first = expand_histories(fsas, order, bos, history_labels=history_labels, max_arcs=max_arcs)
    num_fsas = fsas.shape[0]
    failures: Dict[int, str] = {}
    for i in range(num_fsas):
        if i not in first.too_large and i not in first.kept:
            failures[i] = f"utterance {i}: empty lattice (no states), nothing to expand"
    if not first.too_large:
        return first, {}, failures
    assert max_arcs is not None

    arc_splits = fsas.arcs.row_splits(2)[fsas.arcs.row_splits(1).long()].long().cpu()
    pruned: Dict[int, PruneInfo] = {}
    refits: Dict[int, Expansion] = {}
    too_large: Dict[int, int] = {}
    for i, unpruned in sorted(first.too_large.items()):
        single = select_lattices(fsas, [i])
        setattr(single, _ARC_INDEX, torch.arange(int(arc_splits[i]), int(arc_splits[i + 1]), device=fsas.device))
        arcs_before = single.num_arcs
        counted, tried = unpruned, []
        lo, hi, fit = 0, len(beams) - 1, None
        while lo <= hi:  # widest fitting beam: expanded size only shrinks as the beam narrows
            mid = (lo + hi) // 2
            small, _ = prune(single, beam=beams[mid])
            index = getattr(small, _ARC_INDEX).long().cpu()
            labels = None if history_labels is None else history_labels.cpu()[index]
            exp = expand_histories(small, order, bos, history_labels=labels, max_arcs=max_arcs)
            if exp.kept:
                fit = (beams[mid], small.num_arcs, index, exp)
                hi = mid - 1
            else:
                counted = exp.too_large[0]
                tried.append(f"beam {beams[mid]:g}: {small.num_arcs} arcs -> more than {counted} expanded")
                lo = mid + 1
        if fit is not None:
            beam, kept_arcs, index, exp = fit
            delattr(exp.fsas, _ARC_INDEX)
            exp.arc_map = index[exp.arc_map]
            refits[i] = exp
            pruned[i] = PruneInfo(beam, arcs_before, kept_arcs, exp.fsas.num_arcs)
        else:
            too_large[i] = counted
            failures[i] = (
                f"utterance {i}: expansion to order {order} does not fit in max_arcs={max_arcs} even after "
                f"pruning: {arcs_before} arcs -> more than {unpruned} expanded unpruned; " + ("; ".join(tried) or "pruning removed nothing")
            )
    return _merge(first, refits, too_large), pruned, dict(sorted(failures.items()))


def _merge(first: Expansion, refits: Dict[int, Expansion], too_large: Dict[int, int]) -> Expansion:
    """One Expansion, in input order, from the batch expansion and single-utterance re-expansions."""
    parts = [first] + [refits[i] for i in sorted(refits)]
    sources = [(i, 0, j) for j, i in enumerate(first.kept)] + [(i, 1 + k, 0) for k, i in enumerate(sorted(refits))]
    sources.sort()
    # global fsa index of (part, local index) in the concatenation of all parts' FsaVecs
    fsa_offsets = torch.tensor([0] + [p.fsas.shape[0] for p in parts]).cumsum(0).tolist()
    cat = k2.cat([p.fsas for p in parts])
    arc_splits = cat.arcs.row_splits(2)[cat.arcs.row_splits(1).long()].long().cpu()
    fsa_order = [fsa_offsets[part] + j for _, part, j in sources]
    arc_order = torch.cat(
        [torch.arange(int(arc_splits[f]), int(arc_splits[f + 1])) for f in fsa_order] or [torch.zeros(0, dtype=torch.long)]
    )
    out = k2.index_fsa(cat, torch.tensor(fsa_order, dtype=torch.int32, device=cat.device))
    assert torch.equal(out.labels.cpu(), cat.labels.cpu()[arc_order]), "index_fsa must keep arc order"
    histories = torch.cat([p.histories for p in parts])[arc_order]
    arc_map = torch.cat([p.arc_map for p in parts])[arc_order]
    return Expansion(out, histories, arc_map, [i for i, _, _ in sources], dict(too_large))
