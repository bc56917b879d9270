"""The expansion core: grow the K-history expansion of a batch level by level (torch, no k2).

Every expanded state is a pair (original state, last K tokens on the way there, counting
``<s>``). The batch is processed one topological *level* at a time (level = longest distance
from the start state in arcs): all expanded states of a level are created with one
:func:`rescore.arcs.unique_rows` over (original state, history) rows and all their outgoing arcs
with vectorised gathers, so the Python loop runs once per level, not once per arc or state. It
runs on the device of its :class:`~rescore.arcs.Arcs` (CPU or GPU); :mod:`rescore.expand` turns
the result into a k2 FsaVec.

With :class:`FitBeams`, the growth also prunes to fit ``max_arcs`` in the same pass: every row
carries the narrowest beam at which its path survives beam pruning (its *need*, the largest arc
need on the path, the smallest over the paths merged into it), and each FSA keeps the widest beam
of a list at which its expansion so far fits. Since the expansion of a lattice pruned at beam b is
exactly the rows and arcs of need <= b, counting arcs by need gives every beam's size at once,
and the final arrays keep only what is within each FSA's beam. Each beam's count plus the input
arcs within it not reached yet bounds its final size from below, so a beam that cannot fit (or an
FSA that cannot fit at all) is dropped as soon as that bound says so, before its arcs are built.
"""
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

from .arcs import Arcs, out_arcs, unique_rows

# torch < 2 calls scatter_reduce "beta" on every first use; it is stable since and used as such here.
warnings.filterwarnings("ignore", message=r"scatter_reduce\(\) is in beta")

PAD = -1  # left padding of histories shorter than K (they start with <s>)
FINAL = -2  # history row of the final state (all paths merge there)
# A beam is given up once its extrapolated size exceeds this many times max_arcs (``predict``).
# Measured on the 100 LibriSpeech lattices after the 3-gram (bench/RESULTS.md 7.8): at 1.25 the
# beams of all 159 pruned utterances at --max-arcs 50,000 and 200,000 and 96 of 97 at 10,000
# are the widest that fit (1.0: 155 of 159, 95 of 97), and 0.60x the arcs are built.
PREDICT_MARGIN = 1.25


@dataclass
class FitBeams:
    """Prune-to-fit inside :func:`grow` (see the module docstring).

    Attributes:
        needs: ``[num_arcs]`` float64, the narrowest beam at which each input arc is kept (0 on a
            best path; :func:`rescore.arcs.path_needs`).
        widths: the beams to choose from, widest first (non-increasing, >= 0).
        start: ``[num_fsas]`` float64, optional: each FSA's widest beam to try, one of ``widths``
            or ``inf`` (the caller knows the wider ones do not fit); default ``inf``, unpruned.
    """

    needs: Tensor
    widths: Tensor
    start: Optional[Tensor] = None


@dataclass
class Grown:
    """The raw expansion (global expanded ids, in creation order).

    Attributes:
        state_orig: ``[expanded states]`` the original state of each expanded state.
        arc_src, arc_dst: ``[expanded arcs]`` expanded source / destination state of each arc.
        arc_orig: ``[expanded arcs]`` the original arc each expanded arc copies.
        arc_hist: ``[expanded arcs, K]`` the K history tokens before each arc (left-padded with PAD).
        arcs_per_fsa: ``[num_fsas]`` expanded arcs per FSA within its beam (when abandoned: a
            lower bound on them at the narrowest beam, above ``max_arcs`` unless the FSA was given
            up on its predicted size).
        abandoned: ``[num_fsas]`` bool, FSAs whose expansion exceeded ``max_arcs`` (at the narrowest
            beam, with :class:`FitBeams`), or without it was predicted to; their states and arcs
            are still in the arrays, to be dropped.
        beam: ``[num_fsas]`` float64, the beam each FSA was pruned at (``inf``: not pruned).
        widest_unproven: ``[num_fsas]`` float64, the widest beam that the exact lower bound did not
            rule out (``beam`` unless a wider one was given up on a prediction).
        state_kept, arc_kept: ``[expanded states]``, ``[expanded arcs]`` bool, within their FSA's beam
            (all True without :class:`FitBeams`).
    """

    state_orig: Tensor
    arc_src: Tensor
    arc_dst: Tensor
    arc_orig: Tensor
    arc_hist: Tensor
    arcs_per_fsa: Tensor
    abandoned: Tensor
    beam: Tensor
    widest_unproven: Tensor
    state_kept: Tensor
    arc_kept: Tensor


class _Budget:
    """Each FSA's expanded arcs against ``max_arcs``: counted by the narrowest beam they are within
    (one bin, "unpruned", without :class:`FitBeams`), and what that allows: the widest beam at which
    the FSA can still fit, or its abandonment.

    Every input arc within a beam is on a complete path within it, so it has at least one expanded
    copy at that beam: the arcs counted so far plus the input arcs not reached yet bound each beam's
    final size from below, and a beam (or an FSA) that this bound rules out is dropped before the
    arcs beyond it are built.
    """

    def __init__(self, arcs: Arcs, fsa_of_arc: Tensor, levels: Tensor, fit: Optional[FitBeams], max_arcs: int,
                 predict: bool = False):
        f64 = dict(dtype=torch.float64, device=arcs.device)
        # beams[0] = inf (unpruned), then the widths; a need n is within beams[j] for j <= bin(n)
        self.beams = torch.cat([torch.tensor([float("inf")], **f64)] + ([fit.widths.to(**f64)] if fit is not None else []))
        self.ascending = self.beams.flip(0)
        self.num_fsas, self.max_arcs = arcs.num_fsas, max_arcs
        self.built = torch.zeros(self.num_fsas * self.beams.numel(), dtype=torch.long, device=arcs.device)
        self.input_key = self.key(fsa_of_arc, fit.needs.to(**f64) if fit is not None else None)
        self.not_reached = torch.bincount(self.input_key, minlength=self.built.numel())
        self.predict = predict
        self.input_within = self._within(self.not_reached.clone())  # [num_fsas, beams] input arcs within each beam
        self.by_src_level, self.level_ends = arcs.by_source_level(levels)
        self.index = torch.zeros(self.num_fsas, dtype=torch.long, device=arcs.device)  # widest beam that can fit
        if fit is not None and fit.start is not None:  # the beams wider than its start are out
            self.index = (self.beams[None, :] > fit.start.to(**f64)[:, None]).sum(1)
        self.proven = torch.zeros_like(self.index)  # beams ruled out by the lower bound (<= index)
        self.abandoned = torch.zeros(self.num_fsas, dtype=torch.bool, device=arcs.device)
        self.lower_bound = torch.zeros(self.num_fsas, dtype=torch.long, device=arcs.device)

    def key(self, fsa: Tensor, need: Optional[Tensor]) -> Tensor:
        """``[n]`` (FSA, narrowest beam within which ``need`` lies), flattened."""
        if need is None:
            return fsa
        return fsa * self.beams.numel() + (self.beams.numel() - 1 - torch.searchsorted(self.ascending, need))

    def limit(self) -> Tensor:
        """``[num_fsas]`` float64, each FSA's beam for now (it only narrows)."""
        return self.beams[self.index]

    def leave(self, level: int) -> None:
        """The input arcs leaving states of ``level`` are being expanded now."""
        reached = self.by_src_level[self.level_ends[level]:self.level_ends[level + 1]]
        self.not_reached -= torch.bincount(self.input_key[reached], minlength=self.built.numel())

    def admit(self, fsa: Tensor, need: Optional[Tensor]) -> Tensor:
        """Count a level's candidate arcs (their FSA and need), narrow each FSA's beam to the widest
        its lower bound allows, or abandon it; returns which candidates to build (``[n]`` bool)."""
        if need is None:
            self.built += torch.bincount(fsa, minlength=self.built.numel())
        else:
            within = need <= self.limit()[fsa]
            self.built += torch.bincount(self.key(fsa[within], need[within]), minlength=self.built.numel())
        built, left = self._within(self.built), self._within(self.not_reached)
        bound = built + left
        # never widens: the bound is exact only from the current beam inwards (arcs beyond it are
        # neither built nor counted, though their input arcs leave not_reached)
        self.proven = torch.maximum(self.proven, (bound > self.max_arcs).sum(1))
        index = torch.maximum(self.index, self.proven)
        out_of_beams = index == self.beams.numel()
        if self.predict:
            copies = (built / (self.input_within - left).clamp(min=1)).clamp(min=1.0)  # per input arc reached
            index = torch.maximum(index, (built + left * copies > PREDICT_MARGIN * self.max_arcs).sum(1))
            if self.beams.numel() == 1:  # unpruned only: give the FSA up (to be pruned by the caller)
                out_of_beams = index == 1
        self.index = index.clamp(max=self.beams.numel() - 1)
        # an abandoned FSA keeps the bound that ruled it out (its own counts stop there)
        self.lower_bound = torch.where(self.abandoned, self.lower_bound, bound.gather(1, self.index[:, None]).squeeze(1))
        self.abandoned |= out_of_beams
        keep = ~self.abandoned[fsa]
        return keep if need is None else keep & (need <= self.limit()[fsa])

    def widest_unproven(self) -> Tensor:
        """``[num_fsas]`` float64, the widest beam the lower bound has not ruled out."""
        return self.beams[self.proven.clamp(max=self.beams.numel() - 1)]

    def arcs_per_fsa(self) -> Tensor:
        """``[num_fsas]`` arcs built within each FSA's beam (abandoned: the bound that ruled it out)."""
        built = self._within(self.built).gather(1, self.index[:, None]).squeeze(1)
        return torch.where(self.abandoned, self.lower_bound, built)

    def _within(self, per_bin: Tensor) -> Tensor:
        """``[num_fsas, beams]``: the totals within each beam, from counts per (FSA, narrowest beam)."""
        per_bin = per_bin.view(self.num_fsas, -1)
        return per_bin if per_bin.shape[1] == 1 else per_bin.flip(1).cumsum(1).flip(1)


def grow(arcs: Arcs, order: int, bos: int, tokens: Tensor, max_arcs: Optional[int] = None,
         fit: Optional[FitBeams] = None, predict: bool = False) -> Grown:
    """Expand every lattice of ``arcs`` so that each arc has a unique ``order``-token history.

    Args:
        arcs: the batch (top-sorted or not, but acyclic), on any device.
        order: K >= 1.
        bos: the history token of ``<s>``, which starts every history.
        tokens: ``[num_arcs]`` int64, the token each arc adds to the history (<= 0: nothing).
        max_arcs: abandon an FSA once its expansion has more arcs than this (with ``fit``: at
            the narrowest beam; with ``predict`` and without ``fit``: once it is predicted to).
        fit: prune each FSA to the widest of ``fit.widths`` at which its expansion has at most
            ``max_arcs`` arcs (unpruned when it fits whole); see the module docstring.
        predict: also give beams (without ``fit``: FSAs) up on their extrapolated size (module
            docstring); False: only when they cannot fit.

    Returns:
        A :class:`Grown` on the device of ``arcs`` (at order 1 without ``max_arcs`` on a
        top-sorted input, :func:`_grow_one`'s: the same expansion, states numbered otherwise).

    Raises:
        ValueError: for ``order < 1``, a ``tokens`` of the wrong shape, or a cycle.
    """
    if order < 1:
        raise ValueError(f"expansion order must be >= 1, got {order}")
    if tokens.shape != arcs.labels.shape:
        raise ValueError(f"history_labels has shape {tuple(tokens.shape)}, expected {tuple(arcs.labels.shape)}")
    device = arcs.device
    tokens = torch.where(arcs.labels == -1, torch.full_like(tokens, FINAL), tokens.to(device).long())
    if order == 1 and max_arcs is None and fit is None and bool((arcs.src < arcs.dst).all()):
        return _grow_one(arcs, bos, tokens)  # the same expansion, without a step per level
    levels = arcs.levels
    if (levels < 0).any():
        raise ValueError("expand_histories: input has a cycle (run lattices.validate first)")
    state_fsa = arcs.state_fsa()
    fsa_of_arc = state_fsa[arcs.src]
    num_fsas = arcs.num_fsas
    arange = lambda n: torch.arange(n, device=device)  # noqa: E731
    f64 = dict(dtype=torch.float64, device=device)
    needs = fit.needs.to(**f64) if fit is not None else None  # rows carry the beam their path needs
    budget = _Budget(arcs, fsa_of_arc, levels, fit, max_arcs, predict) if max_arcs is not None else None
    assert num_fsas < 1 << 23, "unique_rows groups rows by FSA in 23 bits"

    # pending[level] = list of (original dst state, history row, index of the expanded arc or -1[, need])
    starts = arcs.state_splits[:-1][arcs.state_splits.diff() > 0]
    start_rows = torch.full((starts.numel(), order), PAD, dtype=torch.long, device=device)
    start_rows[:, -1] = bos
    start = (starts, start_rows, torch.full_like(starts, -1))
    pending: Dict[int, List[Tuple[Tensor, ...]]] = {
        0: [start + ((torch.zeros(starts.numel(), **f64),) if needs is not None else ())]}
    st_orig: List[Tensor] = []
    st_need: List[Tensor] = []
    arc_src: List[Tensor] = []
    arc_orig: List[Tensor] = []
    arc_hist: List[Tensor] = []
    arc_need: List[Tensor] = []
    arrivals: List[Tuple[Tensor, Tensor]] = []  # (expanded arc, its expanded dst state)
    n_states = n_arcs = 0

    for level in range(int(levels.max()) + 1 if levels.numel() else 0):
        if budget is not None:
            budget.leave(level)
        if level not in pending:
            continue
        columns = [torch.cat(x) for x in zip(*pending.pop(level))]  # dst_orig, rows, via[, need]
        fsa = state_fsa[columns[0]]
        if budget is not None:
            alive = ~budget.abandoned[fsa]
            if needs is not None:
                alive &= columns[3] <= budget.limit()[fsa]
            columns, fsa = [c[alive] for c in columns], fsa[alive]
        dst_orig, rows, via = columns[:3]
        if not dst_orig.numel():
            continue
        # rows by (FSA, state inside it, history): each FSA's states come in an order of its own
        local = dst_orig - arcs.state_splits[fsa]
        uniq, inverse = unique_rows(torch.cat([local[:, None], rows], dim=1), groups=fsa)
        uniq[:, 0] += arcs.state_splits[torch.zeros_like(uniq[:, 0]).scatter_(0, inverse, fsa)]
        new_ids = n_states + arange(uniq.shape[0])
        n_states += uniq.shape[0]
        st_orig.append(uniq[:, 0])
        arrived = via >= 0
        arrivals.append((via[arrived], new_ids[inverse[arrived]]))

        owner, out = out_arcs(arcs.arc_splits, uniq[:, 0])
        a_need = None
        if needs is not None:
            new_need = torch.full((uniq.shape[0],), float("inf"), **f64).scatter_reduce_(0, inverse, columns[3], "amin")
            st_need.append(new_need)
            a_need = torch.maximum(new_need[owner], needs[out])
        if budget is not None:
            # count this level's arcs before building them, so that each FSA's beam, or its
            # abandonment, is known before any arc beyond it is made
            keep = budget.admit(fsa_of_arc[out], a_need)
            owner, out = owner[keep], out[keep]
            a_need = a_need[keep] if a_need is not None else None
        if not out.numel():
            continue
        hist = uniq[owner, 1:]
        tok = tokens[out]
        nxt = torch.where((tok > 0)[:, None], torch.cat([hist[:, 1:], tok[:, None]], dim=1), hist)
        nxt.masked_fill_((tok == FINAL)[:, None], FINAL)
        arc_src.append(new_ids[owner])
        arc_orig.append(out)
        arc_hist.append(hist)
        if a_need is not None:
            arc_need.append(a_need)
        arc_ids = n_arcs + arange(out.numel())
        n_arcs += out.numel()
        d = arcs.dst[out]
        d_level, by_level = torch.sort(levels[d], stable=True)  # one sort, then a slice per destination level
        lv, per_level = torch.unique_consecutive(d_level, return_counts=True)
        for lv_i, sel in zip(lv.tolist(), torch.split(by_level, per_level.tolist())):
            pending.setdefault(lv_i, []).append((d[sel], nxt[sel], arc_ids[sel]) + ((a_need[sel],) if a_need is not None else ()))

    arc_dst = torch.full((n_arcs,), -1, dtype=torch.long, device=device)
    for via, dst in arrivals:
        arc_dst[via] = dst
    cat = lambda xs, *shape, dtype=torch.long: torch.cat(xs) if xs else torch.zeros(*shape, dtype=dtype, device=device)  # noqa: E731
    state_orig, arc_orig_all = cat(st_orig, 0), cat(arc_orig, 0)
    if budget is None:
        beam = widest_unproven = torch.full((num_fsas,), float("inf"), **f64)
        abandoned = torch.zeros(num_fsas, dtype=torch.bool, device=device)
        arcs_per_fsa = torch.bincount(fsa_of_arc[arc_orig_all], minlength=num_fsas)
    else:
        beam, abandoned, arcs_per_fsa = budget.limit(), budget.abandoned, budget.arcs_per_fsa()
        widest_unproven = budget.widest_unproven()
    if needs is None:  # nothing pruned: every state and arc is kept
        state_kept = torch.ones(state_orig.numel(), dtype=torch.bool, device=device)
        arc_kept = torch.ones(arc_orig_all.numel(), dtype=torch.bool, device=device)
    else:
        state_kept = cat(st_need, 0, dtype=torch.float64) <= beam[state_fsa[state_orig]]
        arc_kept = cat(arc_need, 0, dtype=torch.float64) <= beam[fsa_of_arc[arc_orig_all]]
    return Grown(state_orig, cat(arc_src, 0), arc_dst, arc_orig_all, cat(arc_hist, 0, order), arcs_per_fsa, abandoned,
                 beam, widest_unproven, state_kept, arc_kept)


def _grow_one(arcs: Arcs, bos: int, tokens: Tensor) -> Grown:
    """:func:`grow` at order 1 without a bound, in a few vectorised steps instead of one per level.

    At order 1 an expanded state is (original state, last token), and a word arc sets the last
    token whatever came before, so the expanded states are: each start state with ``<s>``, the
    destination of every word arc with its word, that of every final arc with ``FINAL``, and
    whatever epsilon arcs carry on from their sources: only the epsilon arcs are followed, one
    round per epsilon arc on the longest chain of them. States come ordered by (original state,
    token), so in topological order for a top-sorted input, and their arcs in input order. The
    expansion is :func:`grow`'s (order 1, no ``max_arcs``) up to the numbering of its states.

    Called by :func:`grow`, which checked its arguments, found ``arcs`` top-sorted (every arc from
    a lower to a higher state) and gave ``tokens`` ``FINAL`` on the final arcs; returns what it
    returns (nothing is pruned or abandoned).
    """
    device = arcs.device
    n, num_fsas = arcs.num_states, arcs.num_fsas
    # a pair (state, token) is one int64 key: state * radix + token - FINAL
    radix = max(int(tokens.max()) if tokens.numel() else 0, bos) - FINAL + 1
    assert n * radix < 2 ** 62, "too many states x tokens for one int64 key"
    starts = arcs.state_splits[:-1][arcs.state_splits.diff() > 0]
    sets = (tokens > 0) | (tokens == FINAL)  # the arcs that set the last token; the others carry it on
    keys = torch.cat([starts * radix + bos - FINAL, arcs.dst[sets] * radix + tokens[sets] - FINAL]).unique()
    eps = torch.nonzero(~sets).squeeze(1)  # grouped by source, as all arcs are
    eps_splits = torch.zeros(n + 1, dtype=torch.long, device=device)
    eps_splits[1:] = torch.cumsum(torch.bincount(arcs.src[eps], minlength=n), 0)
    found, new = [keys], keys
    while new.numel():  # carry the pairs found last round over the epsilon arcs out of their states
        owner, out = out_arcs(eps_splits, torch.div(new, radix, rounding_mode="floor"))
        new = (arcs.dst[eps[out]] * radix + new[owner] % radix).unique()
        found.append(new)  # a pair found again later is carried again: acyclic, so this ends
    keys = torch.cat(found).unique()
    state_orig = torch.div(keys, radix, rounding_mode="floor")
    last = keys % radix + FINAL
    owner, out = out_arcs(arcs.arc_splits, state_orig)
    tok = tokens[out]
    nxt = torch.where(sets[out], tok, last[owner])
    arc_dst = torch.searchsorted(keys, arcs.dst[out] * radix + nxt - FINAL)
    ones = lambda m: torch.ones(m, dtype=torch.bool, device=device)  # noqa: E731
    inf = torch.full((num_fsas,), float("inf"), dtype=torch.float64, device=device)
    return Grown(state_orig, owner, arc_dst, out, last[owner][:, None], torch.bincount(arcs.fsa_of_arc()[out], minlength=num_fsas),
                 torch.zeros(num_fsas, dtype=torch.bool, device=device), inf, inf.clone(), ones(keys.numel()), ones(out.numel()))


def gather_parts(parts: List[Tuple[Grown, Arcs, Tensor, Optional[Tensor]]], batch: Arcs) -> Grown:
    """One :class:`Grown` over ``batch`` from the growths of sub-batches of it (a first pass, a
    pruned refit of some FSAs, ...), so that the expansion is assembled once.

    Args:
        parts: ``(grown, arcs, fsa_index, arc_index)``: a growth of ``arcs``, a sub-batch of
            ``batch``; ``fsa_index`` ``[arcs.num_fsas]`` int64, the FSA of ``batch`` each of its
            FSAs is, or -1 to leave it out (every FSA of ``batch`` comes from at most one part, and
            not from an abandoned FSA); ``arc_index`` ``[arcs.num_arcs]`` the arc of ``batch`` each
            of its arcs is (None: ``arcs`` is ``batch``).
        batch: the batch.

    Returns:
        The growth of ``batch`` made of the parts' states and arcs within their beams, in the
        parts' creation order (so each FSA's states and arcs keep their order); an FSA that no
        part gives is ``abandoned``. Nothing is pruned further (``state_kept``/``arc_kept`` all
        True).
    """
    device, n = batch.device, batch.num_fsas
    f64 = dict(dtype=torch.float64, device=device)
    abandoned = torch.ones(n, dtype=torch.bool, device=device)
    beam, widest = torch.full((n,), float("inf"), **f64), torch.full((n,), float("inf"), **f64)
    arcs_per_fsa = torch.zeros(n, dtype=torch.long, device=device)
    columns: List[Tuple[Tensor, ...]] = []  # state_orig, arc_src, arc_dst, arc_orig, arc_hist
    offset = 0
    for grown, arcs, fsa_index, arc_index in parts:
        g = Grown(*(getattr(grown, f).to(device) for f in Grown.__dataclass_fields__))
        fsa_index = fsa_index.to(device)
        state_fsa = arcs.state_fsa().to(device)[g.state_orig]  # the part's FSA of each expanded state
        take_state = g.state_kept & (fsa_index[state_fsa] >= 0)
        take_arc = g.arc_kept & take_state[g.arc_src]  # (a kept arc's source and destination are kept)
        new_id = torch.cumsum(take_state, 0) - 1 + offset
        fsa = state_fsa[take_state]
        state_orig = batch.state_splits[fsa_index[fsa]] + g.state_orig[take_state] - arcs.state_splits.to(device)[fsa]
        arc_orig = g.arc_orig[take_arc]
        columns.append((state_orig, new_id[g.arc_src[take_arc]], new_id[g.arc_dst[take_arc]],
                        arc_orig if arc_index is None else arc_index.to(device)[arc_orig], g.arc_hist[take_arc]))
        offset += int(take_state.sum())
        placed = torch.nonzero(fsa_index >= 0).squeeze(1)
        to = fsa_index[placed]
        assert not g.abandoned[placed].any() and abandoned[to].all(), "an FSA comes from one part, not abandoned"
        abandoned[to] = False
        beam[to], widest[to], arcs_per_fsa[to] = g.beam[placed], g.widest_unproven[placed], g.arcs_per_fsa[placed]
    state_orig, arc_src, arc_dst, arc_orig, arc_hist = (torch.cat(c) for c in zip(*columns))
    ones = lambda m: torch.ones(m, dtype=torch.bool, device=device)  # noqa: E731
    return Grown(state_orig, arc_src, arc_dst, arc_orig, arc_hist, arcs_per_fsa, abandoned, beam, widest,
                 ones(state_orig.numel()), ones(arc_orig.numel()))
