"""History expansion under a memory bound: prune the lattices that explode until they fit.

:func:`rescore.expand.expand_histories` abandons every utterance whose expansion would exceed
``max_arcs``. :func:`expand_within` prunes each of them to the widest beam of a list whose
Viterbi-beam-pruned lattice expands within ``max_arcs``, in **one** more batched expansion of
all of them: each arc's needed beam is computed once from best-path scores
(:func:`rescore.arcs.path_needs`), and the growth counts its arcs by needed beam, so it knows
every beam's expanded size as it goes and drops what lies outside the widest beam that still fits
(:class:`rescore.grow.FitBeams`). An utterance whose input alone is large against ``max_arcs``
(``DIRECT_ABOVE``) goes straight to that pruned pass. The growths of all passes are gathered
(:func:`rescore.grow.gather_parts`) and assembled once into one
:class:`~rescore.expand.Expansion` in input order whose ``arc_map`` points into the input arcs.
Cost: one expansion of the batch (abandoning an utterance as soon as it exceeds ``max_arcs``) plus
one expansion of the over-budget utterances, within ``max_arcs`` at their final beams.

With ``predict`` (the default), both expansions also give up an utterance, or a beam, once the
size extrapolated from what they have built exceeds ``rescore.grow.PREDICT_MARGIN`` x
``max_arcs``, instead of building on until it is certain not to fit. That builds about 0.6x the
arcs on real lattices (bench/RESULTS.md 7.8); the price is that an utterance can end one beam narrower than the widest that
fits, or pruned when whole it would have fitted just under ``max_arcs``. So that such a miss
cannot cost much, an utterance that ends with at most ``RECHECK_BELOW`` x ``max_arcs`` arcs
after a wider beam was given up on the prediction alone is expanded again, exactly: at the next
wider beam first (when that does not fit, no wider one does), and only when that fits, from the
widest beam not proven too large.
Without ``predict`` every utterance gets exactly the widest beam that fits.

Pruning is nested: every arc within beam ``b`` of the best path is also within any wider beam, so
narrowing the beam only removes paths. Beam 0 keeps just the best-path arcs (all of them when
several paths tie), which is the smallest lattice this module tries. The pruned lattice at beam b
is what :func:`lattices.posteriors.prune` keeps at that beam: the arcs within it that are still
on a complete path.
"""
from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import k2
import numpy as np
import torch

from lattices.posteriors import arc_viterbi_scores, best_path_arcs
from lattices.validate import select_lattices

from .arcs import Arcs, path_needs
from .expand import Expansion, FitBeams, assemble, grow_on
from .grow import Grown, gather_parts

# Log-score beams from very wide (acoustic log-likelihoods of real recognizers span thousands)
# down to 0 (best path only).
DEFAULT_BEAMS: Tuple[float, ...] = tuple(float(2 ** e) for e in range(12, -3, -1)) + (0.0,)
# With ``predict``: an utterance whose wider beam was given up on the prediction alone, and whose
# expansion uses at most this fraction of max_arcs, is expanded again without predicting (one on
# the LibriSpeech lattices at --max-arcs 100,000 had 2,434 arcs at beam 32 where beam 64 gave
# 87,078: bench/RESULTS.md 7.8).
RECHECK_BELOW = 0.1
# An utterance whose input has more than max_arcs / DIRECT_ABOVE arcs skips the unpruned pass and
# goes straight to the pruned one (0: none does). Its K-history expansion has at least as many arcs
# as its input, and on the LibriSpeech lattices after the 3-gram 10-20x as many, so it would be
# abandoned there after building part of it; sent straight on, it costs nothing more than its
# share of the look-ahead, and the result is the same (bench/RESULTS.md 7.12).
DIRECT_ABOVE = 20.0


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
    prune_scores: Optional[Callable[[k2.Fsa, List[int], Optional[torch.Tensor]], torch.Tensor]] = None,
    predict: bool = True,
    device: Optional[torch.device] = None,
) -> Tuple[Expansion, Dict[int, PruneInfo], Dict[int, str]]:
    """Expand every lattice to unique ``order``-token histories, pruning those that exceed ``max_arcs``.

    The whole batch is expanded once with :func:`expand_histories`. The utterances reported in
    its ``too_large`` are expanded again, pruned in the same pass (see the module docstring);
    each gets the widest beam of ``beams`` whose expansion has at most ``max_arcs`` arcs (with
    ``predict``: that one, or a narrower one when the prediction said the wider would not fit).

    Args:
        fsas: connected, top-sorted FsaVec ``[utt][state][arc]`` (see
            :func:`lattices.validate.validate_lattices`) whose ``scores`` are the scaled scores the
            beam applies to (set them with :func:`lattices.lattice_batch.with_scales`). Not mutated.
        order, bos, history_labels: as for :func:`expand_histories` (``history_labels`` is
            ``[num_arcs]`` over the input arcs).
        max_arcs: the bound on expanded arcs per utterance; None expands everything unpruned.
        beams: beams to try, non-increasing and ``>= 0``; end with 0 to guarantee the smallest
            lattice is tried.
        prune_scores: ``(fsas of the over-budget utterances, their input indexes, their arcs'
            history tokens) -> [num_arcs]`` float64 best-path-through scores (``<= 0``, 0 on a
            best path) that the beam applies to, e.g. :meth:`rescore.lookahead.Lookahead.viterbi`;
            default: :func:`lattices.posteriors.arc_viterbi_scores` of their ``scores``.
        predict: give up utterances and beams on their extrapolated size (module docstring).
        device: where the expansions grow (:func:`expand_histories`); default: that of ``fsas``.

    Returns:
        ``(expansion, pruned, failures)``:

        - ``expansion``: one :class:`Expansion` over all utterances that fit, in input order.
          ``kept`` lists their input indexes; ``arc_map`` ``[num_expanded_arcs]`` and the copied
          attributes refer to the arcs of ``fsas`` (pruning composed in); ``histories``
          ``[num_expanded_arcs, order]`` follow ``history_labels``; ``too_large`` holds
          ``{input index: arcs}`` for the utterances that did not fit even pruned (a lower bound,
          above ``max_arcs``, on their unpruned expansion).
        - ``pruned``: ``{input index: PruneInfo}`` for every utterance that was pruned to fit;
          utterances not in it are exactly as :func:`expand_histories` expands them (with
          ``predict``, one given up on its prediction can still fit unpruned in the second pass).
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

    batch_arcs = Arcs.from_fsas(fsas)  # taken once: the passes below select from it, levels included
    all_tokens = (fsas.labels if history_labels is None else history_labels).cpu()
    n = batch_arcs.num_fsas
    empty = (batch_arcs.state_splits.diff() == 0).cpu()
    failures: Dict[int, str] = {
        i: "empty lattice (no states), nothing to expand" for i in torch.nonzero(empty).squeeze(1).tolist()}
    input_arcs_of = (batch_arcs.arc_splits[batch_arcs.state_splits[1:]] - batch_arcs.arc_splits[batch_arcs.state_splits[:-1]]).cpu()
    # the utterances sure enough not to fit unpruned skip the unpruned pass (module docstring)
    direct = input_arcs_of * DIRECT_ABOVE > max_arcs if max_arcs is not None and DIRECT_ABOVE else torch.zeros(n, dtype=torch.bool)
    abandoned, first_bound = direct.clone(), torch.zeros(n, dtype=torch.long)  # first_bound: a lower bound on each abandoned one
    # (growth, its arcs, the input FSA of each of its FSAs or -1 to leave it out, its arcs' input arcs or None)
    parts: List[Tuple[Grown, Arcs, torch.Tensor, Optional[torch.Tensor]]] = []
    if not direct.all():
        rest = torch.nonzero(~direct).squeeze(1)
        first_arcs, first_input = batch_arcs.select(rest) if direct.any() else (batch_arcs, None)
        first = grow_on(first_arcs, order, bos, all_tokens if first_input is None else all_tokens[first_input.cpu()], max_arcs,
                        predict=predict, device=device)
        if first_input is None and not first.abandoned.any():
            return assemble(fsas, batch_arcs, first, order), {}, failures
        abandoned[rest], first_bound[rest] = first.abandoned.cpu(), first.arcs_per_fsa.cpu()
        parts.append((first, first_arcs, torch.where(abandoned[rest] | empty[rest], -1, rest), first_input))
    assert max_arcs is not None

    over = torch.nonzero(abandoned).squeeze(1).tolist()
    sub = select_lattices(fsas, over)
    sub_arcs, input_arc = batch_arcs.select(torch.tensor(over))
    input_arc = input_arc.cpu()  # [sub arc]
    tokens = all_tokens[input_arc]
    viterbi = arc_viterbi_scores(sub) if prune_scores is None else prune_scores(
        sub, over, None if history_labels is None else tokens)
    cost = torch.where(best_path_arcs(sub, viterbi), torch.zeros_like(viterbi), -viterbi)
    needs = path_needs(sub_arcs, cost.to(sub.scores.device))
    widths = torch.tensor(beams, dtype=torch.float64)
    refit = grow_on(sub_arcs, order, bos, tokens, max_arcs, FitBeams(needs, widths), predict, device)
    fitted = ~refit.abandoned.cpu()
    refit_beam, refit_size, widest = (x.cpu() for x in (refit.beam, refit.arcs_per_fsa, refit.widest_unproven))
    assert predict or not (fitted & ~torch.isfinite(refit_beam) & ~direct[over]).any(), \
        "an utterance too large unpruned must be pruned to fit"
    kept = torch.nonzero(fitted).squeeze(1).tolist()  # by position in over
    size = {u: int(refit_size[u]) for u in kept}
    beam = {u: float(refit_beam[u]) for u in kept if torch.isfinite(refit_beam[u])}
    unproven = {u: float(widest[u]) for u in kept if widest[u] > refit_beam[u]}
    # a prediction gave a wider beam up, and the budget is mostly unused: find the widest exactly
    recheck = [u for u in kept if u in unproven and size[u] <= RECHECK_BELOW * max_arcs]
    parts.append((refit, sub_arcs, torch.tensor([over[u] if fitted[u] and u not in recheck else -1 for u in range(len(over))]),
                  input_arc))
    # First from the next wider beam alone: when it does not fit, no wider one does (their expansions
    # contain its own), and proving that builds about max_arcs arcs instead of max_arcs at each wider
    # beam in turn. When it fits, again from the widest beam not proven too large (by a lower bound).
    start = {u: min([b for b in beams if b > beam[u]] + [unproven[u]]) if u in beam else unproven[u] for u in recheck}
    while recheck:
        recheck_arcs, arcs = sub_arcs.select(torch.tensor(recheck))
        arcs = arcs.cpu()
        exact = grow_on(recheck_arcs, order, bos, tokens[arcs], max_arcs, device=device, fit=FitBeams(
            needs[arcs], widths, torch.tensor([start[u] for u in recheck], dtype=torch.float64)))
        assert not exact.abandoned.any(), "an utterance that fitted at one beam must fit exactly"
        exact_beam, exact_size = exact.beam.cpu(), exact.arcs_per_fsa.cpu()
        for k, u in enumerate(recheck):
            size[u] = int(exact_size[k])
            beam.pop(u, None)
            if torch.isfinite(exact_beam[k]):
                beam[u] = float(exact_beam[k])
        wider = [u for u in recheck if beam.get(u) == start[u] < unproven[u]]  # its start fits: a wider one may
        parts.append((exact, recheck_arcs, torch.tensor([-1 if u in wider else over[u] for u in recheck]), input_arc[arcs]))
        recheck = wider
        start = {u: unproven[u] for u in wider}

    utt_of_arc = sub_arcs.fsa_of_arc().cpu()
    beam_of_utt = torch.full((len(over),), beams[-1], dtype=torch.float64)  # the narrowest for the failed
    beam_of_utt[list(beam)] = torch.tensor(list(beam.values()), dtype=torch.float64)
    arcs_within = np.bincount(utt_of_arc[needs.cpu() <= beam_of_utt[utt_of_arc]].numpy(), minlength=len(over))
    input_arcs = (sub_arcs.arc_splits[sub_arcs.state_splits[1:]] - sub_arcs.arc_splits[sub_arcs.state_splits[:-1]]).tolist()
    pruned = {over[u]: PruneInfo(b, input_arcs[u], int(arcs_within[u]), size[u]) for u, b in sorted(beam.items())}
    too_large: Dict[int, int] = {}
    for u in torch.nonzero(~fitted).squeeze(1).tolist():
        i = over[u]
        too_large[i] = int(first_bound[i]) if not direct[i] else max(input_arcs[u], int(refit_size[u]))  # each arc has a copy
        failures[i] = (
            f"expansion to order {order} does not fit in max_arcs={max_arcs} even after pruning: "
            f"{input_arcs[u]} arcs -> at least {too_large[i]} expanded unpruned; "
            f"beam {beams[-1]:g}: {arcs_within[u]} arcs -> at least {int(refit_size[u])} expanded")
    expansion = assemble(fsas, batch_arcs, gather_parts(parts, batch_arcs), order)
    return replace(expansion, too_large=too_large), pruned, dict(sorted(failures.items()))
