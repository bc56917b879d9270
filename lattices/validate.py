"""Structural validation of lattice batches: acyclic, connected, top-sorted, non-empty.

Every function here returns new objects and never mutates its input FsaVec.

Conventions (see :mod:`lattices.lattice_batch`): an FsaVec is ``[utt][state][arc]``; k2 keeps the
start state at index 0 and the single final state last, entered only by arcs labelled -1.
"""
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple, Union

import _k2  # k2's extension module: index a ragged arc array
import k2
import numpy as np
import torch

from lattices.lattice_batch import LatticeBatch


@dataclass
class ArcArrays:
    """Flat numpy view of an FsaVec, with *global* state indices (``idx01``).

    Attributes:
        state_splits: ``[num_fsas + 1]`` int64; FSA ``i`` owns global states
            ``state_splits[i]:state_splits[i+1]`` (start first, final last).
        arc_splits: ``[tot_states + 1]`` int64; state ``s`` owns arcs ``arc_splits[s]:arc_splits[s+1]``.
        src, dst: ``[num_arcs]`` int64 global source / destination state of each arc.
        labels: ``[num_arcs]`` int64 word ids (0 epsilon, -1 final).
        fsa_of_arc: ``[num_arcs]`` int64 index of the FSA each arc belongs to.
    """

    state_splits: np.ndarray
    arc_splits: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    labels: np.ndarray
    fsa_of_arc: np.ndarray

    @property
    def num_fsas(self) -> int:
        return len(self.state_splits) - 1

    @property
    def num_states(self) -> int:
        return int(self.state_splits[-1])


def arc_arrays(fsas: k2.Fsa) -> ArcArrays:
    """Extract the arc structure of an FsaVec ``[utt][state][arc]`` as numpy arrays (global states)."""
    assert len(fsas.shape) == 3, "expected an FsaVec"
    state_splits = fsas.arcs.row_splits(1).cpu().numpy().astype(np.int64)
    arc_splits = fsas.arcs.row_splits(2).cpu().numpy().astype(np.int64)
    values = fsas.arcs.values().cpu().numpy()
    src = fsas.arcs.row_ids(2).cpu().numpy().astype(np.int64)  # global state of each arc
    state_fsa = fsas.arcs.row_ids(1).cpu().numpy().astype(np.int64)
    fsa_of_arc = state_fsa[src] if len(src) else np.zeros(0, dtype=np.int64)
    dst = values[:, 1].astype(np.int64) + state_splits[fsa_of_arc]
    labels = values[:, 2].astype(np.int64)
    return ArcArrays(state_splits, arc_splits, src, dst, labels, fsa_of_arc)


def fsa_arc_splits(fsas: k2.Fsa) -> np.ndarray:
    """``[num_fsas + 1]`` int64: FSA i of the FsaVec ``[utt][state][arc]`` owns arcs ``splits[i]:splits[i+1]``."""
    return fsas.arcs.row_splits(2)[fsas.arcs.row_splits(1).long()].long().cpu().numpy()


def counts_per_fsa(fsas: k2.Fsa, axis: int) -> List[int]:
    """States (``axis=1``) or arcs (``axis=2``) of each FSA of the FsaVec ``[utt][state][arc]``."""
    splits = fsas.arcs.row_splits(1).long().cpu().numpy() if axis == 1 else fsa_arc_splits(fsas)
    return np.diff(splits).tolist()


def out_arcs(arc_splits: np.ndarray, states: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Outgoing arcs of ``states`` (global ids), vectorised.

    Returns:
        ``(owner, arcs)``: for every outgoing arc, the position in ``states`` of its source and
        its global arc index; arcs of one state are contiguous and in order.
    """
    counts = arc_splits[states + 1] - arc_splits[states]
    owner = np.repeat(np.arange(len(states)), counts)
    first = np.repeat(arc_splits[states] - (np.cumsum(counts) - counts), counts)
    return owner, first + np.arange(int(counts.sum()))


def longest_path_layers(arrays: ArcArrays) -> np.ndarray:
    """Kahn's algorithm over the whole batch at once (vectorised per layer).

    Args:
        arrays: from :func:`arc_arrays`.

    Returns:
        ``[tot_states]`` int64: for each state, the length in arcs of the longest path reaching it
        from a state without incoming arcs; ``-1`` for states on a cycle or downstream of one.
    """
    return kahn_layers(arrays.arc_splits, arrays.dst, np.ones(arrays.num_states, dtype=bool))


def kahn_layers(arc_splits: np.ndarray, dst: np.ndarray, roots: np.ndarray) -> np.ndarray:
    """Kahn's algorithm on a graph given by source-sorted arcs, one vectorised step per layer.

    Args:
        arc_splits: ``[num_nodes + 1]`` node s owns arcs ``arc_splits[s]:arc_splits[s+1]``.
        dst: ``[num_arcs]`` destination node of each arc, in that order.
        roots: ``[num_nodes]`` bool, the nodes that may start a path (those of them without
            incoming arcs do).

    Returns:
        ``[num_nodes]`` int64: the length in arcs of the longest path reaching each node from a
        starting node; ``-1`` for nodes not reached (on or after a cycle, or from no root).
    """
    n = len(arc_splits) - 1
    layer = np.full(n, -1, dtype=np.int64)
    indeg = np.bincount(dst, minlength=n).astype(np.int64)
    frontier = np.flatnonzero(roots & (indeg == 0))
    k = 0
    while frontier.size:
        layer[frontier] = k
        _, arcs = out_arcs(arc_splits, frontier)
        uniq, cnt = np.unique(dst[arcs], return_counts=True)
        indeg[uniq] -= cnt
        frontier = uniq[indeg[uniq] == 0]
        k += 1
    return layer


def node_layers(num_nodes: int, roots: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """:func:`kahn_layers` for arcs ``src -> dst`` given in any order: ``[num_nodes]`` layer of
    each node, ``-1`` for nodes not reached from ``roots`` (or on or after a cycle)."""
    order = np.argsort(src, kind="stable")
    splits = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=num_nodes))])
    return kahn_layers(splits, dst[order], roots)


def arcs_by_layer(arc_layer: np.ndarray) -> List[np.ndarray]:
    """Arc indexes grouped by ``arc_layer`` (e.g. the layer of each arc's source or destination),
    in increasing layer order; arcs with a negative layer are left out, empty groups dropped."""
    order = np.argsort(arc_layer, kind="stable")
    bounds = np.searchsorted(arc_layer[order], np.arange(int(arc_layer.max(initial=-1)) + 2))
    groups = [order[bounds[k]:bounds[k + 1]] for k in range(len(bounds) - 1)]
    return [g for g in groups if len(g)]


def cyclic_fsas(fsas: k2.Fsa) -> np.ndarray:
    """Which FSAs of an FsaVec contain a cycle.

    Returns:
        ``[num_fsas]`` bool numpy array.
    """
    arrays = arc_arrays(fsas)
    layer = longest_path_layers(arrays)
    bad_state = layer < 0
    state_fsa = np.repeat(np.arange(arrays.num_fsas), np.diff(arrays.state_splits))
    out = np.zeros(arrays.num_fsas, dtype=bool)
    out[state_fsa[bad_state]] = True
    return out


def select_lattices(fsas: k2.Fsa, indexes: Union[Sequence[int], torch.Tensor]) -> k2.Fsa:
    """A new FsaVec with the FSAs ``indexes`` of ``fsas`` (in that order), attributes included.

    Like ``k2.index_fsa``, except that the scores travel inside the indexed arcs: k2 1.23's
    ``index_select`` rejects the strided ``scores`` view of a one-arc FsaVec.
    """
    index = torch.as_tensor(indexes if isinstance(indexes, torch.Tensor) else list(indexes), dtype=torch.int32)
    ragged, value_indexes = _k2.index(fsas.arcs, axis=0, indexes=index.to(fsas.device), need_value_indexes=True)
    out = k2.Fsa(ragged)
    rows = value_indexes.long()
    for name, value in fsas.named_tensor_attr(include_scores=False):
        if isinstance(value, torch.Tensor):
            setattr(out, name, value[rows.to(value.device)])
        else:  # a ragged attribute (e.g. aux_labels): one sublist per arc
            setattr(out, name, value.index(value_indexes, axis=0, need_value_indexes=False)[0])
    return out


def check_lattices(fsas: k2.Fsa, utt_ids: Sequence[str]) -> Tuple[k2.Fsa, List[int], List[Tuple[str, str]]]:
    """Validate every lattice; return the good ones fixed (connected, top-sorted) and the problems.

    Unreachable / dead-end states are trimmed and a non-top-sorted state order is fixed silently.
    A cycle, or no complete path from start to final with a finite score, is a problem.

    Args:
        fsas: FsaVec ``[utt][state][arc]`` (not mutated).
        utt_ids: one id per FSA.

    Returns:
        ``(good, kept, problems)``: ``good`` is a new FsaVec ``[kept_utt][state][arc]`` with all
        per-arc attributes carried over; ``kept`` the indexes (into ``fsas``) of its FSAs, in order;
        ``problems`` a list of ``(utt_id, message)`` for the others.
    """
    if len(fsas.shape) != 3:
        raise ValueError("expected an FsaVec [utt][state][arc], got a single FSA")
    if fsas.shape[0] != len(utt_ids):
        raise ValueError(f"{fsas.shape[0]} lattices but {len(utt_ids)} utterance ids")
    problems: List[Tuple[str, str]] = []
    cyclic = cyclic_fsas(fsas)
    kept = [i for i in range(len(utt_ids)) if not cyclic[i]]
    for i in np.flatnonzero(cyclic):
        problems.append((utt_ids[i], "lattice has a cycle (lattices must be acyclic)"))
    work = fsas if len(kept) == len(utt_ids) else select_lattices(fsas, kept)
    if len(kept) == 0:
        return work, kept, problems
    work = k2.connect(work)
    if work is fsas:
        work = fsas.clone()
    if not (work.properties & k2.fsa_properties.TOPSORTED):
        work = k2.top_sort(work)
    # After connect, an FSA without a complete path has no states at all.
    num_states = np.diff(work.arcs.row_splits(1).cpu().numpy())
    empty = num_states == 0
    if not empty.all():
        tot = work.get_tot_scores(use_double_scores=True, log_semiring=False).cpu().numpy()
    else:
        tot = np.full(len(kept), -np.inf)
    bad = empty | ~(tot > -np.inf)  # no path, or a -inf/nan total
    if bad.any():
        good_local = [j for j in range(len(kept)) if not bad[j]]
        for j in np.flatnonzero(bad):
            why = "no complete path from start to final state" if empty[j] else "best path score is -inf/nan"
            problems.append((utt_ids[kept[j]], why))
        work = select_lattices(work, good_local)
        kept = [kept[j] for j in good_local]
    order = {u: k for k, u in enumerate(utt_ids)}
    problems.sort(key=lambda p: order[p[0]])
    return work, kept, problems


def validate_lattices(fsas: k2.Fsa, utt_ids: Sequence[str]) -> k2.Fsa:
    """Like :func:`check_lattices` but all-or-nothing.

    Returns:
        A new connected, top-sorted FsaVec ``[utt][state][arc]`` with the same utterances.

    Raises:
        ValueError: naming every bad utterance (cycle, or no complete path).
    """
    good, _, problems = check_lattices(fsas, utt_ids)
    if problems:
        raise ValueError("; ".join(f"{u}: {m}" for u, m in problems))
    return good


def validate_batch(batch: LatticeBatch) -> Tuple[LatticeBatch, List[Tuple[str, str]]]:
    """Validate a :class:`LatticeBatch`, dropping bad utterances.

    Returns:
        ``(good_batch, problems)`` where ``problems`` is a list of ``(utt_id, message)``.
    """
    good, kept, problems = check_lattices(batch.fsas, batch.utt_ids)
    out = LatticeBatch(
        fsas=good,
        utt_ids=[batch.utt_ids[i] for i in kept],
        symbols=batch.symbols,
        headers=[batch.headers[i] for i in kept] if batch.headers else [{} for _ in kept],
    )
    return out, problems


def lattice_stats(batch: LatticeBatch) -> List[Dict[str, object]]:
    """Per-utterance statistics of a validated (connected, top-sorted) batch.

    Returns:
        ``[utt]`` dicts with ``utt``, ``states``, ``arcs``, ``word_arcs`` (arcs with a word label),
        ``words`` (distinct words), ``min_words``/``max_words`` (fewest/most words on a complete
        path), ``depth`` (longest path in arcs), ``density`` (Kaldi-style lattice depth: total
        duration of all arcs / utterance duration; None without times), ``am``/``lm``/``times``
        (whether non-zero acoustic / LM scores and arc times are present).
    """
    fsas = batch.fsas
    arrays = arc_arrays(fsas)
    n = arrays.num_fsas
    if n == 0:
        return []
    layer = longest_path_layers(arrays)
    is_word = arrays.labels > 0
    counting = fsas.clone()
    counting.scores = torch.from_numpy(is_word.astype(np.float32))
    max_words = counting.get_tot_scores(use_double_scores=True, log_semiring=False).tolist()
    counting.scores = -torch.from_numpy(is_word.astype(np.float32))
    min_words = (-counting.get_tot_scores(use_double_scores=True, log_semiring=False)).tolist()
    am = fsas.am_scores.cpu().numpy()
    lm = fsas.lm_scores.cpu().numpy()
    has_times = hasattr(fsas, "start_times") and hasattr(fsas, "end_times")
    if has_times:
        t0 = fsas.start_times.cpu().numpy().astype(np.float64)
        t1 = fsas.end_times.cpu().numpy().astype(np.float64)
    out: List[Dict[str, object]] = []
    for i in range(n):
        s0, s1 = int(arrays.state_splits[i]), int(arrays.state_splits[i + 1])
        a0, a1 = int(arrays.arc_splits[s0]), int(arrays.arc_splits[s1])
        density = None
        if has_times and a1 > a0:
            span = float(t1[a0:a1].max() - t0[a0:a1].min())
            if span > 0:
                density = round(float(np.clip(t1[a0:a1] - t0[a0:a1], 0, None).sum()) / span, 3)
        out.append(
            {
                "utt": batch.utt_ids[i],
                "states": s1 - s0,
                "arcs": a1 - a0,
                "word_arcs": int(is_word[a0:a1].sum()),
                "words": int(len(np.unique(arrays.labels[a0:a1][is_word[a0:a1]]))),
                "min_words": int(round(min_words[i])),
                "max_words": int(round(max_words[i])),
                "depth": int(layer[s1 - 1]) if s1 > s0 else 0,
                "density": density,
                "am": bool(np.any(am[a0:a1] != 0)),
                "lm": bool(np.any(lm[a0:a1] != 0)),
                "times": has_times,
            }
        )
    return out
