"""The plain-tensor arc representation that expansion and scoring work on (no k2).

A batch of lattices ``[utt][state][arc]`` as flat torch tensors on any device, taken from the k2
FsaVec once per batch (:meth:`Arcs.from_fsas`, the k2 edge) and carried through the stages, so a
machine without k2 (a GPU box) can run expansion and scoring on arrays dumped elsewhere.
"""
import functools
from dataclasses import dataclass, fields
from typing import List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor


@dataclass
class Arcs:
    """Flat view of a batch of lattices, with *global* state indices.

    Attributes:
        state_splits: ``[num_fsas + 1]`` int64; FSA i owns states ``state_splits[i]:state_splits[i+1]``
            (start first, final last).
        arc_splits: ``[num_states + 1]`` int64; state s owns arcs ``arc_splits[s]:arc_splits[s+1]``.
        src, dst: ``[num_arcs]`` int64 global source / destination state of each arc.
        labels: ``[num_arcs]`` int64 word ids (0 epsilon, -1 final).
        scores: ``[num_arcs]`` float32 scores.
    """

    state_splits: Tensor
    arc_splits: Tensor
    src: Tensor
    dst: Tensor
    labels: Tensor
    scores: Tensor

    @classmethod
    def from_fsas(cls, fsas) -> "Arcs":
        """From a k2 FsaVec ``[utt][state][arc]`` (the only function here that touches k2)."""
        assert len(fsas.shape) == 3, "expected an FsaVec"
        state_splits = fsas.arcs.row_splits(1).long()
        arc_splits = fsas.arcs.row_splits(2).long()
        values = fsas.arcs.values()
        src = fsas.arcs.row_ids(2).long()
        fsa_of_arc = fsas.arcs.row_ids(1).long()[src]
        dst = values[:, 1].long() + state_splits[fsa_of_arc]
        return cls(state_splits, arc_splits, src, dst, values[:, 2].long(), fsas.scores.detach().float())

    def to(self, device) -> "Arcs":
        if torch.device(device) == self.device:  # itself, with what it has computed
            return self
        moved = Arcs(*(getattr(self, f.name).to(device) for f in fields(self)))
        if "levels" in self.__dict__:  # computed already: moved with the rest
            moved.__dict__["levels"] = self.levels.to(device)
        return moved

    def select(self, fsas: Tensor) -> Tuple["Arcs", Tensor]:
        """The FSAs ``fsas`` as a batch of their own (their levels too, when computed).

        Args:
            fsas: ``[n]`` int64 FSA indexes, in the order wanted.

        Returns:
            ``(arcs, input_arc)``: the new batch, and ``[its num_arcs]`` the index in ``self`` of
            each of its arcs.
        """
        fsas = fsas.to(self.device).long()
        owner, states = out_arcs(self.state_splits, fsas)  # the FSAs' states, FSA by FSA
        state_splits = torch.cat([torch.zeros(1, dtype=torch.long, device=self.device),
                                  torch.cumsum(self.state_splits[fsas + 1] - self.state_splits[fsas], 0)])
        state_owner, arcs = out_arcs(self.arc_splits, states)
        arc_splits = torch.cat([torch.zeros(1, dtype=torch.long, device=self.device),
                                torch.cumsum(self.arc_splits[states + 1] - self.arc_splits[states], 0)])
        shift = (state_splits[:-1] - self.state_splits[fsas])[owner[state_owner]]  # old -> new state ids
        out = Arcs(state_splits, arc_splits, state_owner, self.dst[arcs] + shift, self.labels[arcs], self.scores[arcs])
        if "levels" in self.__dict__:
            out.__dict__["levels"] = self.levels[states]
        return out, arcs

    @property
    def device(self) -> torch.device:
        return self.src.device

    @property
    def num_fsas(self) -> int:
        return self.state_splits.numel() - 1

    @property
    def num_states(self) -> int:
        return int(self.state_splits[-1])

    def state_fsa(self) -> Tensor:
        """``[num_states]`` int64, the FSA of each state."""
        return torch.repeat_interleave(torch.arange(self.num_fsas, device=self.device), self.state_splits.diff())

    def fsa_of_arc(self) -> Tensor:
        """``[num_arcs]`` int64, the FSA of each arc."""
        return self.state_fsa()[self.src]

    @functools.cached_property
    def levels(self) -> Tensor:
        """Kahn's algorithm over the whole batch at once (vectorised per level), computed once
        per batch (kept by :meth:`to` and :meth:`select`).

        Returns:
            ``[num_states]`` int64: the length in arcs of the longest path reaching each state
            from a state without incoming arcs; ``-1`` for states on or after a cycle.
        """
        n = self.num_states
        level = torch.full((n,), -1, dtype=torch.long, device=self.device)
        indeg = torch.bincount(self.dst, minlength=n)
        frontier = torch.nonzero(indeg == 0).squeeze(1)
        slot = torch.empty(n, dtype=torch.long, device=self.device)  # scratch: dedups without sorting
        k = 0
        while frontier.numel():
            level[frontier] = k
            _, arcs = out_arcs(self.arc_splits, frontier)
            if arcs.numel() == 0:
                break
            dests = self.dst[arcs]
            indeg.index_add_(0, dests, torch.full_like(dests, -1))
            ready = dests[indeg[dests] == 0]  # a state once per arc into it
            first = torch.arange(ready.numel(), device=self.device)
            slot[ready] = first  # one write per state survives, so one copy of each state is kept
            frontier = ready[slot[ready] == first]
            k += 1
        return level

    def by_source_level(self, levels: Tensor) -> Tuple[Tensor, List[int]]:
        """The arcs ordered by the level of their source state (stable), and where each level's
        arcs end: level l's arcs are ``order[ends[l]:ends[l + 1]]``, empty levels included.

        Args:
            levels: ``[num_states]``, :attr:`levels` without ``-1`` (acyclic).

        Returns:
            ``(order [num_arcs] int64, ends)`` with ``len(ends) = levels.max() + 2``.
        """
        src_level, order = torch.sort(levels[self.src], stable=True)
        n_levels = int(levels.max()) + 1 if levels.numel() else 0
        return order, [0] + torch.searchsorted(src_level, torch.arange(n_levels, device=self.device), right=True).tolist()


def path_needs(arcs: Arcs, cost: Tensor) -> Tensor:
    """The bottleneck of the best complete path through every arc: the smallest, over complete
    paths through the arc, of the largest ``cost`` on the path.

    With ``cost`` = how far below the best path each arc's best path scores (0 on a best path),
    an arc is kept by beam pruning at beam b *followed by removing what is no longer on a complete
    path* exactly when its result is <= b: this is the beam each arc needs, made exact when
    rounding puts an arc and the arcs of its best path on different sides of a beam.

    Args:
        arcs: acyclic batch ``[utt][state][arc]`` where every state is on a complete path.
        cost: ``[num_arcs]`` float.

    Returns:
        ``[num_arcs]`` float64.
    """
    cost = cost.to(torch.float64)
    n = arcs.num_states
    order, ends = arcs.by_source_level(arcs.levels)
    groups = [order[lo:hi] for lo, hi in zip(ends[:-1], ends[1:])]
    inf = torch.tensor(float("inf"), dtype=torch.float64, device=arcs.device)
    # fwd[s]: best bottleneck from a start state to s; bwd[s]: from s to a final state
    fwd = torch.where(torch.bincount(arcs.dst, minlength=n) == 0, -inf, inf)
    bwd = torch.where(arcs.arc_splits.diff() == 0, -inf, inf)
    for g in groups:  # increasing source level: every source is finished before its arcs are used
        fwd.scatter_reduce_(0, arcs.dst[g], torch.maximum(fwd[arcs.src[g]], cost[g]), "amin")
    for g in reversed(groups):  # decreasing source level: every destination is finished
        bwd.scatter_reduce_(0, arcs.src[g], torch.maximum(cost[g], bwd[arcs.dst[g]]), "amin")
    return torch.maximum(torch.maximum(fwd[arcs.src], cost), bwd[arcs.dst])


def out_arcs(arc_splits: Tensor, states: Tensor) -> Tuple[Tensor, Tensor]:
    """Outgoing arcs of ``states`` (global ids), vectorised.

    Returns:
        ``(owner, arcs)``: for every outgoing arc, the position in ``states`` of its source and
        its global arc index; arcs of one state are contiguous and in order.
    """
    counts = arc_splits[states + 1] - arc_splits[states]
    owner = torch.repeat_interleave(torch.arange(states.numel(), device=states.device), counts)
    first = torch.repeat_interleave(arc_splits[states] - (torch.cumsum(counts, 0) - counts), counts)
    return owner, first + torch.arange(owner.numel(), device=states.device)


@functools.lru_cache(maxsize=None)
def _multipliers(columns: int) -> Tensor:
    """``[columns]`` odd int64 hash multipliers (fixed: the same for a given number of columns)."""
    return torch.from_numpy(np.random.RandomState(20261122).randint(1, 2**62, size=columns, dtype=np.int64) | 1)


def unique_rows(rows: Tensor, groups: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Exact ``torch.unique(rows, dim=0, return_inverse=True)`` for int64 rows ``[N, C]`` (any C),
    much faster: rows are hashed to one int64 key (odd multipliers, wrapping), keys are uniqued,
    and every row is checked against its group's representative (on a hash collision it falls
    back to a row-wise unique).

    Args:
        rows: ``[N, C]`` int64.
        groups: ``[N]`` int64 in ``[0, 2**23)`` (not checked), e.g. the FSA of each row: rows of different groups
            are never merged, unique rows come group by group, and inside a group in an order that
            depends on that group's rows alone (so an FSA's expansion does not depend on the other
            FSAs of its batch).

    Returns:
        ``(unique rows [U, C] ordered by (group,) key, inverse [N])``.
    """
    if rows.shape[0] == 0:
        return rows, torch.zeros(0, dtype=torch.long, device=rows.device)
    keys = (rows * _multipliers(rows.shape[1]).to(rows.device)).sum(dim=1)
    keys = keys ^ (keys >> 29)
    if groups is not None:  # the group in the top bits, 40 bits of the key below it
        keys = (groups << 40) | ((keys >> 24) & ((1 << 40) - 1))
    # one sort: groups, representatives, inverse. Not stable (faster): rows with equal keys are
    # equal (checked below), so which of them represents the group changes nothing.
    sorted_keys, order = torch.sort(keys)
    new_group = torch.ones_like(sorted_keys, dtype=torch.bool)
    new_group[1:] = sorted_keys[1:] != sorted_keys[:-1]
    inverse = torch.empty_like(order)
    inverse[order] = torch.cumsum(new_group, 0) - 1
    uniq = rows[order[new_group]]
    if not torch.equal(uniq[inverse], rows):  # a collision: two different rows, one key
        # ordered by key first, as above, so each group's order still depends on its rows alone
        uniq, inverse = torch.unique(torch.cat([keys[:, None], rows], dim=1), dim=0, return_inverse=True)
        uniq = uniq[:, 1:]
    return uniq, inverse
