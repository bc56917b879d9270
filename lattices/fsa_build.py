"""Build the batch FsaVec from per-utterance arc lists; shared by every reader.

A reader turns one lattice into an :class:`ArcList`: nodes are arbitrary integers
``0..num_nodes-1`` in any order, arcs carry a word *string* (``None`` = epsilon) and natural-log
scores, and ``finals`` gives the final nodes with their final weights. :func:`build_batch` then

1. normalises the words (:mod:`lattices.normalize`) and maps them to ids in one symbol table
   (a given ``words.txt``, or one built from all words of the batch, sorted);
2. keeps only nodes on some start→final path (like ``k2.connect``);
3. sorts the nodes topologically (Kahn, smallest original node first, so an already sorted
   lattice keeps its numbering) and raises on cycles;
4. renumbers them so the start is state 0, appends the k2 final state (so the state count
   includes it) and one arc labelled ``-1`` per final node carrying the final weight,
   arcs sorted by source state (stable: a state's arcs keep their input order);
5. makes the k2 FsaVec with ``labels``, ``am_scores``, ``lm_scores``, ``scores = am + lm`` and
   (when every lattice of the batch has them) ``start_times``/``end_times``.

Lattices that fail (empty, cyclic, OOV word, ...) become :class:`Failure` entries; the rest of
the batch is still built.
"""
import heapq
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import _k2  # k2's extension module: builds an FsaVec from a ragged shape and an arc tensor
import k2
import numpy as np
import torch

from lattices.lattice_batch import LatticeBatch
from lattices.normalize import NormalizationRules, normalize_word
from lattices.symbols import build_symbols
from lattices.validate import select_lattices


@dataclass
class Failure:
    """One file or utterance that could not be read.

    Attributes:
        source: ``"path"`` or ``"path:utt_id"``.
        message: why (the text of the ``ValueError``).
    """

    source: str
    message: str


@dataclass
class ArcList:
    """One lattice as a reader parsed it, before normalisation and renumbering.

    Attributes:
        utt_id: utterance id.
        source: the file it came from (for error messages).
        num_nodes: nodes are ``0..num_nodes-1``.
        start: the start node.
        finals: final node → ``(am, lm)`` final weight (natural log, higher is better).
        src, dst: int64 arrays ``[num_arcs]``.
        words: ``num_arcs`` word strings (``None`` or ``"<eps>"`` = epsilon), not yet normalised.
        am, lm: float64 arrays ``[num_arcs]``.
        start_times, end_times: float arrays ``[num_arcs]`` (seconds) or ``None``.
        header: format metadata kept in :attr:`LatticeBatch.headers`.
    """

    utt_id: str
    source: str
    num_nodes: int
    start: int
    finals: Dict[int, Tuple[float, float]]
    src: np.ndarray
    dst: np.ndarray
    words: List[Optional[str]]
    am: np.ndarray
    lm: np.ndarray
    start_times: Optional[np.ndarray] = None
    end_times: Optional[np.ndarray] = None
    header: Dict[str, object] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.source}:{self.utt_id}"


@dataclass
class _Built:
    arcs: torch.Tensor  # int32 [num_arcs, 4]
    am: np.ndarray
    lm: np.ndarray
    start_times: Optional[np.ndarray]
    end_times: Optional[np.ndarray]


def _connected_top_order(lat: ArcList) -> List[int]:
    """Nodes on a start→final path, in topological order. ValueError if empty or cyclic."""
    n = lat.num_nodes
    if not (0 <= lat.start < n):
        raise ValueError(f"{lat.where}: start node {lat.start} out of range 0..{n - 1}")
    for f in lat.finals:
        if not (0 <= f < n):
            raise ValueError(f"{lat.where}: final node {f} out of range 0..{n - 1}")
    src, dst = lat.src, lat.dst
    if len(src) and (src.min() < 0 or dst.min() < 0 or src.max() >= n or dst.max() >= n):
        raise ValueError(f"{lat.where}: a link refers to a node outside 0..{n - 1}")
    out_adj: List[List[int]] = [[] for _ in range(n)]
    in_adj: List[List[int]] = [[] for _ in range(n)]
    for s, d in zip(src.tolist(), dst.tolist()):
        out_adj[s].append(d)
        in_adj[d].append(s)

    def reach(seeds: Sequence[int], adj: List[List[int]]) -> np.ndarray:
        seen = np.zeros(n, dtype=bool)
        stack = list(seeds)
        seen[stack] = True
        while stack:
            u = stack.pop()
            for v in adj[u]:
                if not seen[v]:
                    seen[v] = True
                    stack.append(v)
        return seen

    keep = reach([lat.start], out_adj) & reach(list(lat.finals), in_adj)
    if not keep[lat.start]:
        raise ValueError(f"{lat.where}: empty lattice (no path from the start node to a final node)")
    indeg = np.zeros(n, dtype=np.int64)
    for s, d in zip(src.tolist(), dst.tolist()):
        if keep[s] and keep[d]:
            indeg[d] += 1
    heap = [u for u in np.nonzero(keep & (indeg == 0))[0].tolist()]
    heapq.heapify(heap)
    order = []
    while heap:
        u = heapq.heappop(heap)
        order.append(u)
        for v in out_adj[u]:
            if keep[v]:
                indeg[v] -= 1
                if indeg[v] == 0:
                    heapq.heappush(heap, v)
    if len(order) != int(keep.sum()):
        raise ValueError(f"{lat.where}: the lattice has a cycle (k2 word lattices must be acyclic)")
    assert order[0] == lat.start, (order[0], lat.start)  # every kept node is reachable from start
    return order


def _build_one(lat: ArcList, labels: np.ndarray) -> _Built:
    order = _connected_top_order(lat)
    new_id = np.full(lat.num_nodes, -1, dtype=np.int64)
    new_id[np.asarray(order, dtype=np.int64)] = np.arange(len(order))
    final_state = len(order)
    s_new = new_id[lat.src] if len(lat.src) else np.zeros(0, dtype=np.int64)
    d_new = new_id[lat.dst] if len(lat.dst) else np.zeros(0, dtype=np.int64)
    kept = (s_new >= 0) & (d_new >= 0)
    fin_nodes = sorted((f for f in lat.finals if new_id[f] >= 0), key=lambda f: new_id[f])
    fin_src = np.asarray([new_id[f] for f in fin_nodes], dtype=np.int64)
    k = int(kept.sum())
    src = np.concatenate([s_new[kept], fin_src])
    dst = np.concatenate([d_new[kept], np.full(len(fin_src), final_state, dtype=np.int64)])
    lab = np.concatenate([labels[kept], np.full(len(fin_src), -1, dtype=np.int64)])
    am = np.concatenate([lat.am[kept], [lat.finals[f][0] for f in fin_nodes]]).astype(np.float32)
    lm = np.concatenate([lat.lm[kept], [lat.finals[f][1] for f in fin_nodes]]).astype(np.float32)
    perm = np.argsort(src, kind="stable")
    st = et = None
    if lat.start_times is not None and lat.end_times is not None:
        # a final arc starts and ends at the time its final node is reached
        node_t = np.zeros(lat.num_nodes, dtype=np.float64)
        node_t[lat.dst] = lat.end_times
        node_t[lat.src[kept]] = lat.start_times[kept]
        ft = node_t[np.asarray(fin_nodes, dtype=np.int64)] if fin_nodes else np.zeros(0)
        st = np.concatenate([lat.start_times[kept], ft]).astype(np.float32)[perm]
        et = np.concatenate([lat.end_times[kept], ft]).astype(np.float32)[perm]
    scores = am + lm
    arcs = torch.from_numpy(
        np.stack([src[perm], dst[perm], lab[perm], np.zeros(len(perm), dtype=np.int64)], axis=1).astype(np.int32)
    )
    arcs[:, 3] = torch.from_numpy(scores[perm].astype(np.float32)).view(torch.int32)
    assert k + len(fin_src) == arcs.shape[0]
    return _Built(arcs, am[perm], lm[perm], st, et)


def _word_ids(
    lat: ArcList, rules: NormalizationRules, symbols: k2.SymbolTable, given: bool
) -> np.ndarray:
    ids = np.zeros(len(lat.words), dtype=np.int64)
    oov_id = None
    if rules.oov is not None and rules.oov in symbols:
        oov_id = symbols[rules.oov]
    cache: Dict[Optional[str], int] = {}
    for i, w in enumerate(lat.words):
        if w in cache:
            ids[i] = cache[w]
            continue
        n = None if w is None else normalize_word(w, rules)
        if n is None:
            idx = 0
        elif n in symbols:
            idx = symbols[n]
        elif oov_id is not None:
            idx = oov_id
        else:
            what = "the given words.txt" if given else "the symbol table"
            raise ValueError(f"{lat.where}: word {n!r} (written {w!r}) is not in {what} and it has no "
                             f"{rules.oov!r} to map it to")
        cache[w] = idx
        ids[i] = idx
    return ids


def build_batch(
    lattices: Sequence[ArcList],
    symbols: Optional[k2.SymbolTable] = None,
    rules: Optional[NormalizationRules] = None,
    failures: Optional[List[Failure]] = None,
) -> Tuple[LatticeBatch, List[Failure]]:
    """Turn parsed lattices into one :class:`LatticeBatch` (see the module docstring).

    Args:
        lattices: parsed lattices, in batch order.
        symbols: the word table to use (``--words``); ``None`` builds one from the batch's
            normalised words (``<eps>`` = 0, the rest sorted).
        rules: normalisation rules; default ``NormalizationRules()``.
        failures: earlier failures to extend (not mutated; a new list is returned).

    Returns:
        ``(batch, failures)``: the FsaVec ``[utt][state][arc]`` of the lattices that could be
        built, and every failure (earlier ones first).
    """
    rules = rules if rules is not None else NormalizationRules()
    fails = list(failures or [])
    given = symbols is not None
    if symbols is None:
        vocab = set()
        for lat in lattices:
            for w in set(lat.words):
                n = None if w is None else normalize_word(w, rules)
                if n is not None:
                    vocab.add(n)
        symbols = build_symbols(vocab)
    built: List[_Built] = []
    utt_ids: List[str] = []
    headers: List[Dict[str, object]] = []
    for lat in lattices:
        try:
            b = _build_one(lat, _word_ids(lat, rules, symbols, given))
        except ValueError as e:
            fails.append(Failure(lat.where, str(e)))
            continue
        built.append(b)
        utt_ids.append(lat.utt_id)
        headers.append({**lat.header, "path": lat.source})
    fsas = fsavec_from_parts(built)
    return LatticeBatch(fsas, utt_ids, symbols, headers), fails


def fsavec_from_arrays(state_splits: np.ndarray, arc_splits: np.ndarray, src: np.ndarray, dst: np.ndarray,
                       labels: np.ndarray, scores: torch.Tensor) -> k2.Fsa:
    """One k2 FsaVec from flat arrays, without a per-FSA loop.

    Args:
        state_splits: ``[num_fsas + 1]`` FSA i owns states ``state_splits[i]:state_splits[i+1]``
            (each non-empty FSA's last state is its final state).
        arc_splits: ``[num_states + 1]`` state s owns arcs ``arc_splits[s]:arc_splits[s+1]``.
        src, dst: ``[num_arcs]`` source / destination state of each arc, numbered *within* its FSA.
        labels: ``[num_arcs]`` (-1 on arcs into the final state).
        scores: ``[num_arcs]`` float32.

    Returns:
        The FsaVec ``[fsa][state][arc]`` (``scores`` set, no other attributes).
    """
    i32 = lambda x: torch.from_numpy(np.ascontiguousarray(x, dtype=np.int32))  # noqa: E731
    shape = k2.ragged.create_ragged_shape2(i32(state_splits), None, int(state_splits[-1])).compose(
        k2.ragged.create_ragged_shape2(i32(arc_splits), None, int(arc_splits[-1])))
    arcs = torch.stack([i32(src), i32(dst), i32(labels), torch.zeros(len(src), dtype=torch.int32)], dim=1)
    arcs[:, 3] = scores.detach().to(torch.float32).contiguous().view(torch.int32)
    return k2.Fsa(_k2.RaggedArc(shape, arcs))


def fsavec_from_parts(built: Sequence[_Built]) -> k2.Fsa:
    """Make the FsaVec and its per-arc attributes; times only if every lattice has them."""
    if built:
        fsas = k2.create_fsa_vec([k2.Fsa(b.arcs) for b in built])
    else:
        fsas = k2.create_fsa_vec([k2.Fsa.from_str("0 1 -1 0\n1")])
        fsas = select_lattices(fsas, [])
    cat = lambda xs: torch.from_numpy(np.concatenate(xs).astype(np.float32)) if xs else torch.zeros(0)  # noqa: E731
    fsas.am_scores = cat([b.am for b in built])
    fsas.lm_scores = cat([b.lm for b in built])
    if built and all(b.start_times is not None for b in built):
        fsas.start_times = cat([b.start_times for b in built])
        fsas.end_times = cat([b.end_times for b in built])
    return fsas
