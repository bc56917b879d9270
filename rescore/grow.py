"""The expansion core: grow the K-history expansion of a batch level by level (torch, no k2).

Every expanded state is a pair (original state, last K tokens on the way there, counting
``<s>``). The batch is processed one topological *level* at a time (level = longest distance
from the start state in arcs): all expanded states of a level are created with one
:func:`rescore.arcs.unique_rows` over (original state, history) rows and all their outgoing arcs
with vectorised gathers, so the Python loop runs once per level, not once per arc or state. It
runs on the device of its :class:`~rescore.arcs.Arcs` (CPU or GPU); :mod:`rescore.expand` turns
the result into a k2 FsaVec.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

from .arcs import Arcs, out_arcs, unique_rows

PAD = -1  # left padding of histories shorter than K (they start with <s>)
FINAL = -2  # history row of the final state (all paths merge there)


@dataclass
class Grown:
    """The raw expansion (global expanded ids, in creation order).

    Attributes:
        state_orig: ``[expanded states]`` the original state of each expanded state.
        arc_src, arc_dst: ``[expanded arcs]`` expanded source / destination state of each arc.
        arc_orig: ``[expanded arcs]`` the original arc each expanded arc copies.
        arc_hist: ``[expanded arcs, K]`` the K history tokens before each arc (left-padded with PAD).
        arcs_per_fsa: ``[num_fsas]`` expanded arcs counted per FSA (when abandoned: so far).
        abandoned: ``[num_fsas]`` bool, FSAs whose expansion exceeded ``max_arcs`` (their states
            and arcs are still in the arrays, to be dropped).
    """

    state_orig: Tensor
    arc_src: Tensor
    arc_dst: Tensor
    arc_orig: Tensor
    arc_hist: Tensor
    arcs_per_fsa: Tensor
    abandoned: Tensor


def grow(arcs: Arcs, order: int, bos: int, tokens: Tensor, max_arcs: Optional[int] = None) -> Grown:
    """Expand every lattice of ``arcs`` so that each arc has a unique ``order``-token history.

    Args:
        arcs: the batch (top-sorted or not, but acyclic), on any device.
        order: K >= 1.
        bos: the history token of ``<s>``, which starts every history.
        tokens: ``[num_arcs]`` int64, the token each arc adds to the history (<= 0: nothing).
        max_arcs: abandon an FSA once its expansion has more arcs than this.

    Returns:
        A :class:`Grown` on the device of ``arcs``.

    Raises:
        ValueError: for ``order < 1``, a ``tokens`` of the wrong shape, or a cycle.
    """
    if order < 1:
        raise ValueError(f"expansion order must be >= 1, got {order}")
    if tokens.shape != arcs.labels.shape:
        raise ValueError(f"history_labels has shape {tuple(tokens.shape)}, expected {tuple(arcs.labels.shape)}")
    device = arcs.device
    tokens = torch.where(arcs.labels == -1, torch.full_like(tokens, FINAL), tokens.to(device).long())
    levels = arcs.levels()
    if (levels < 0).any():
        raise ValueError("expand_histories: input has a cycle (run lattices.validate first)")
    state_fsa = arcs.state_fsa()
    fsa_of_arc = state_fsa[arcs.src]
    num_fsas = arcs.num_fsas
    arange = lambda n: torch.arange(n, device=device)  # noqa: E731

    # pending[level] = list of (original dst state, history row, index of the expanded arc or -1)
    starts = arcs.state_splits[:-1][arcs.state_splits.diff() > 0]
    start_rows = torch.full((starts.numel(), order), PAD, dtype=torch.long, device=device)
    start_rows[:, -1] = bos
    pending: Dict[int, List[Tuple[Tensor, Tensor, Tensor]]] = {0: [(starts, start_rows, torch.full_like(starts, -1))]}
    st_orig: List[Tensor] = []
    arc_src: List[Tensor] = []
    arc_orig: List[Tensor] = []
    arc_hist: List[Tensor] = []
    arrivals: List[Tuple[Tensor, Tensor]] = []  # (expanded arc, its expanded dst state)
    n_states = n_arcs = 0
    arcs_per_fsa = torch.zeros(num_fsas, dtype=torch.long, device=device)
    abandoned = torch.zeros(num_fsas, dtype=torch.bool, device=device)

    for level in range(int(levels.max()) + 1 if levels.numel() else 0):
        if level not in pending:
            continue
        dst_orig, rows, via = (torch.cat(x) for x in zip(*pending.pop(level)))
        alive = ~abandoned[state_fsa[dst_orig]]
        dst_orig, rows, via = dst_orig[alive], rows[alive], via[alive]
        if not dst_orig.numel():
            continue
        uniq, inverse = unique_rows(torch.cat([dst_orig[:, None], rows], dim=1))
        new_ids = n_states + arange(uniq.shape[0])
        n_states += uniq.shape[0]
        st_orig.append(uniq[:, 0])
        arrived = via >= 0
        arrivals.append((via[arrived], new_ids[inverse[arrived]]))

        owner, out = out_arcs(arcs.arc_splits, uniq[:, 0])
        hist = uniq[owner, 1:]
        tok = tokens[out]
        word = tok > 0
        nxt = hist.clone()
        nxt[word] = torch.cat([hist[word, 1:], tok[word, None]], dim=1)
        nxt[tok == FINAL] = FINAL
        arc_src.append(new_ids[owner])
        arc_orig.append(out)
        arc_hist.append(hist)
        arc_ids = n_arcs + arange(out.numel())
        n_arcs += out.numel()

        arcs_per_fsa += torch.bincount(fsa_of_arc[out], minlength=num_fsas)
        if max_arcs is not None:
            abandoned |= arcs_per_fsa > max_arcs
        if not out.numel():
            continue
        d = arcs.dst[out]
        d_level, by_level = torch.sort(levels[d], stable=True)  # one sort, then a slice per destination level
        lv, counts = torch.unique_consecutive(d_level, return_counts=True)
        for lv_i, sel in zip(lv.tolist(), torch.split(by_level, counts.tolist())):
            pending.setdefault(lv_i, []).append((d[sel], nxt[sel], arc_ids[sel]))

    arc_dst = torch.full((n_arcs,), -1, dtype=torch.long, device=device)
    for via, dst in arrivals:
        arc_dst[via] = dst
    cat = lambda xs, *shape: torch.cat(xs) if xs else torch.zeros(*shape, dtype=torch.long, device=device)  # noqa: E731
    return Grown(cat(st_orig, 0), cat(arc_src, 0), arc_dst, cat(arc_orig, 0), cat(arc_hist, 0, order), arcs_per_fsa, abandoned)
