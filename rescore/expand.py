"""Exact K-history expansion of a lattice batch.

Every state of the expanded lattice is a pair (original state, last K tokens on the way there,
counting ``<s>``), so every arc has a unique K-token history and a K-context LM (an AFP-K model, an
order-(K+1) n-gram) assigns it an exact score. Paths map one to one onto the original paths,
with the same word sequences and (through ``arc_map``) the same per-arc attributes.

The expansion runs over the whole batch at once, one topological *level* at a time (level =
longest distance from the start state in arcs): all expanded states of a level are created with
one ``np.unique`` over (original state, history) rows, and all their outgoing arcs with vectorised
gathers, so the Python loop runs once per level, not once per arc or state.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import k2
import numpy as np
import torch

from lattices.fsa_build import fsavec_from_arrays
from lattices.validate import arc_arrays, longest_path_layers, out_arcs, select_lattices

PAD = -1  # left padding of histories shorter than K (they start with <s>)
FINAL = -2  # history row of the final state (all paths merge there)


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
        too_large: ``{input index: arcs counted when it was abandoned}`` for the utterances whose
            expansion exceeded ``max_arcs`` (not in ``fsas``).
    """

    fsas: k2.Fsa
    histories: torch.Tensor
    arc_map: torch.Tensor
    kept: List[int]
    too_large: Dict[int, int]


_MIX = np.random.RandomState(20261122).randint(1, 2**62, size=64, dtype=np.int64) | 1  # odd multipliers


def unique_rows(rows: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Exact ``np.unique(rows, axis=0, return_inverse=True)`` for int64 rows ``[N, C]`` (C <= 64),
    much faster: rows are hashed to one int64 key, keys are uniqued, and every row is checked
    against its group's representative (on a hash collision it falls back to ``np.unique``).

    Returns:
        ``(unique rows [U, C] in first-seen order of their keys' sort, inverse [N])``.
    """
    if rows.shape[0] == 0:
        return rows, np.zeros(0, dtype=np.int64)
    assert rows.shape[1] <= len(_MIX)
    with np.errstate(over="ignore"):
        keys = (rows * _MIX[: rows.shape[1]]).sum(axis=1)
        keys ^= keys >> 29
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    uniq = rows[first]
    if not np.array_equal(uniq[inverse], rows):  # a collision: two different rows, one key
        uniq, inverse = np.unique(rows, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
    return uniq, inverse


def expand_histories(
    fsas: k2.Fsa, order: int, bos: int, history_labels: Optional[torch.Tensor] = None, max_arcs: Optional[int] = None
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

    Returns:
        An :class:`Expansion`.
    """
    return _assemble(fsas, *_grow(fsas, order, bos, history_labels, max_arcs), order)


def expanded_sizes(
    fsas: k2.Fsa, order: int, bos: int, history_labels: Optional[torch.Tensor] = None, max_arcs: Optional[int] = None
) -> Tuple[np.ndarray, np.ndarray]:
    """Arcs of each utterance's expansion, without building it (same arguments as
    :func:`expand_histories`).

    Returns:
        ``(arcs [num_fsas] int64, abandoned [num_fsas] bool)``: for an abandoned utterance (more
        than ``max_arcs``), the count when it was abandoned.
    """
    grown = _grow(fsas, order, bos, history_labels, max_arcs)
    return grown[3], grown[2]


def _grow(fsas: k2.Fsa, order: int, bos: int, history_labels: Optional[torch.Tensor], max_arcs: Optional[int]) -> tuple:
    """The level-by-level expansion (see the module docstring); returns the raw arrays that
    :func:`_assemble` turns into an :class:`Expansion`."""
    if order < 1:
        raise ValueError(f"expansion order must be >= 1, got {order}")
    A = arc_arrays(fsas)
    tokens = (fsas.labels if history_labels is None else history_labels).long().cpu().numpy()
    if tokens.shape != A.labels.shape:
        raise ValueError(f"history_labels has shape {tokens.shape}, expected {A.labels.shape}")
    tokens = np.where(A.labels == -1, FINAL, tokens)
    levels = longest_path_layers(A)
    if (levels < 0).any():
        raise ValueError("expand_histories: input has a cycle (run lattices.validate first)")
    state_fsa = np.repeat(np.arange(A.num_fsas), np.diff(A.state_splits))
    nonempty = np.diff(A.state_splits) > 0

    # pending[level] = list of (original dst state, history row, index of the expanded arc or -1)
    starts = A.state_splits[:-1][nonempty]
    start_rows = np.full((len(starts), order), PAD, dtype=np.int64)
    start_rows[:, -1] = bos
    pending: Dict[int, List[Tuple[np.ndarray, np.ndarray, np.ndarray]]] = {0: [(starts, start_rows, np.full(len(starts), -1))]}
    st_orig: List[np.ndarray] = []  # per level: original state of each new expanded state
    arc_src: List[np.ndarray] = []  # per level: expanded source state of each new arc
    arc_orig: List[np.ndarray] = []
    arc_hist: List[np.ndarray] = []
    arrivals: List[Tuple[np.ndarray, np.ndarray]] = []  # (expanded arc, its expanded dst state)
    n_states = n_arcs = 0
    arcs_per_fsa = np.zeros(A.num_fsas, dtype=np.int64)
    abandoned = np.zeros(A.num_fsas, dtype=bool)

    for level in range(int(levels.max()) + 1 if len(levels) else 0):
        if level not in pending:
            continue
        dst_orig, rows, via = (np.concatenate(x) for x in zip(*pending.pop(level)))
        alive = ~abandoned[state_fsa[dst_orig]]
        dst_orig, rows, via = dst_orig[alive], rows[alive], via[alive]
        if not len(dst_orig):
            continue
        uniq, inverse = unique_rows(np.concatenate([dst_orig[:, None], rows], axis=1))
        new_ids = n_states + np.arange(len(uniq))
        n_states += len(uniq)
        st_orig.append(uniq[:, 0])
        arrived = via >= 0
        arrivals.append((via[arrived], new_ids[inverse[arrived]]))

        owner, arcs = out_arcs(A.arc_splits, uniq[:, 0])
        hist = uniq[owner, 1:]
        tok = tokens[arcs]
        nxt = hist.copy()
        word = tok > 0
        nxt[word] = np.concatenate([hist[word, 1:], tok[word, None]], axis=1)
        nxt[tok == FINAL] = FINAL
        arc_src.append(new_ids[owner])
        arc_orig.append(arcs)
        arc_hist.append(hist)
        arc_ids = n_arcs + np.arange(len(arcs))
        n_arcs += len(arcs)

        arcs_per_fsa += np.bincount(A.fsa_of_arc[arcs], minlength=A.num_fsas)
        if max_arcs is not None:
            abandoned |= arcs_per_fsa > max_arcs
        d = A.dst[arcs]
        d_level = levels[d]
        by_level = np.argsort(d_level, kind="stable")  # one sort, then a slice per destination level
        lv_sorted = d_level[by_level]
        cuts = np.flatnonzero(np.diff(lv_sorted)) + 1
        for sel in np.split(by_level, cuts) if len(d) else []:
            pending.setdefault(int(d_level[sel[0]]), []).append((d[sel], nxt[sel], arc_ids[sel]))

    arc_dst = np.full(n_arcs, -1, dtype=np.int64)
    for via, dst in arrivals:
        arc_dst[via] = dst
    return A, state_fsa, abandoned, arcs_per_fsa, st_orig, arc_src, arc_orig, arc_hist, arc_dst


def _assemble(fsas, A, state_fsa, abandoned, arcs_per_fsa, st_orig, arc_src, arc_orig, arc_hist, arc_dst, order) -> Expansion:
    """Renumber the expanded states per utterance and build the FsaVec and its attributes, in one
    vectorised pass over the arcs (no per-utterance loop)."""
    cat = lambda xs, shape: np.concatenate(xs) if xs else np.zeros(shape, dtype=np.int64)  # noqa: E731
    st_orig = cat(st_orig, (0,))
    arc_src, arc_orig, arc_hist = cat(arc_src, (0,)), cat(arc_orig, (0,)), cat(arc_hist, (0, order))
    st_fsa = state_fsa[st_orig]
    keep_fsa = ~abandoned & (np.diff(A.state_splits) > 0)
    keep_state = keep_fsa[st_fsa]
    # utterance-major, creation (= topological, final state last) order inside each utterance
    new_order = np.nonzero(keep_state)[0][np.argsort(st_fsa[keep_state], kind="stable")]
    position = np.full(len(st_orig), -1, dtype=np.int64)
    position[new_order] = np.arange(len(new_order))
    states_per_fsa = np.bincount(st_fsa[new_order], minlength=A.num_fsas)
    first_state = np.cumsum(states_per_fsa) - states_per_fsa
    local = position - first_state[st_fsa]

    arc_order = np.nonzero(keep_state[arc_src])[0]
    # by (utterance, source state); stable keeps each state's arcs in creation (= input) order
    arc_order = arc_order[np.argsort(position[arc_src[arc_order]], kind="stable")]
    assert (arc_dst[arc_order] >= 0).all(), "every kept arc must reach an expanded state"
    orig = arc_orig[arc_order]
    arc_splits = np.concatenate([[0], np.cumsum(np.bincount(position[arc_src[arc_order]], minlength=len(new_order)))])
    state_splits = np.concatenate([[0], np.cumsum(states_per_fsa[keep_fsa])])
    kept = np.flatnonzero(keep_fsa).tolist()
    arc_map = torch.from_numpy(orig)
    if kept:
        scores = fsas.scores.detach().cpu()[arc_map]
        out = fsavec_from_arrays(state_splits, arc_splits, local[arc_src[arc_order]], local[arc_dst[arc_order]], A.labels[orig], scores)
    else:
        out = select_lattices(fsas, [])
    for name, value in fsas.named_tensor_attr(include_scores=False):
        if isinstance(value, torch.Tensor) and name != "labels":
            setattr(out, name, value[arc_map.to(value.device)])
    too_large = {int(i): int(arcs_per_fsa[i]) for i in np.flatnonzero(abandoned)}
    return Expansion(out, torch.from_numpy(arc_hist[arc_order]), arc_map, kept, too_large)
