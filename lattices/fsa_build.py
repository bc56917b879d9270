"""Build the batch FsaVec from per-utterance arc lists; shared by every reader.

A reader turns one lattice into an :class:`ArcList`: nodes are arbitrary integers
``0..num_nodes-1`` in any order, arcs carry a word (an index into the lattice's distinct word
strings, ``None`` = epsilon) and natural-log scores, and ``finals`` gives the final nodes with their
final weights. :func:`build_batch` then, vectorised over the whole batch (numpy; no per-arc or
per-node Python loop):

1. normalises each distinct word string once (:mod:`lattices.normalize`) and maps it to an id in
   one symbol table (a given ``words.txt``, or one built from all words of the batch, sorted);
2. keeps only nodes on some start→final path (like ``k2.connect``), by a breadth-first search
   from every start and back from every final node, all lattices at once;
3. orders the nodes topologically: a lattice whose kept arcs all go from a smaller to a larger
   node number keeps its numbering; any other is ordered by (longest distance from the start,
   node number). A lattice with a cycle is a failure;
4. renumbers them so the start is state 0, appends the k2 final state (so the state count
   includes it) and one arc labelled ``-1`` per final node carrying the final weight,
   arcs sorted by source state (stable: a state's arcs keep their input order);
5. makes one k2 FsaVec with ``labels``, ``am_scores``, ``lm_scores``, ``scores = am + lm`` and
   (when every lattice of the batch has them) ``start_times``/``end_times``.

Lattices that fail (empty, cyclic, OOV word, ...) become :class:`Failure` entries; the rest of
the batch is still built.
"""
from dataclasses import dataclass, field, replace
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import k2  # first: it loads torch, which _k2 needs
import _k2  # k2's extension module: builds an FsaVec from a ragged shape and an arc tensor  # isort: skip
import numpy as np
import torch

from lattices.lattice_batch import LatticeBatch
from lattices.normalize import NormalizationRules, epsilon_penalty, normalize_word
from lattices.symbols import build_symbols
from lattices.validate import node_layers, out_arcs, select_lattices


@dataclass
class Failure:
    """One file or utterance that could not be read.

    Attributes:
        source: ``"path"`` or ``"path:utt_id"``.
        message: why (the text of the ``ValueError``).
    """

    source: str
    message: str


def split_failures(items: Iterable[Union["ArcList", Failure]]) -> Tuple[List["ArcList"], List[Failure]]:
    """``(lattices, failures)`` of a reader's stream of both, each in stream order."""
    lattices: List[ArcList] = []
    failures: List[Failure] = []
    for item in items:
        (failures if isinstance(item, Failure) else lattices).append(item)  # type: ignore[arg-type]
    return lattices, failures


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
        word_types: the lattice's distinct word strings (``None`` or ``"<eps>"`` = epsilon), not
            yet normalised (see :func:`intern_words`).
        word_index: int64 ``[num_arcs]``, each arc's word as an index into ``word_types``.
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
    word_types: List[Optional[str]]
    word_index: np.ndarray
    am: np.ndarray
    lm: np.ndarray
    start_times: Optional[np.ndarray] = None
    end_times: Optional[np.ndarray] = None
    header: Dict[str, object] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.source}:{self.utt_id}"

    @property
    def words(self) -> List[Optional[str]]:
        """Each arc's word string, ``[num_arcs]``."""
        return [self.word_types[i] for i in self.word_index.tolist()]


def intern_words(words: Sequence[Optional[str]]) -> Tuple[List[Optional[str]], np.ndarray]:
    """``(distinct words in first-seen order, int64 [len(words)] index of each into them)``."""
    types: Dict[Optional[str], int] = {}
    index = np.fromiter((types.setdefault(w, len(types)) for w in words), dtype=np.int64, count=len(words))
    return list(types), index


def interned_fields(words: Sequence[Optional[str]]) -> Dict[str, object]:
    """``{"word_types", "word_index"}`` of per-arc word strings, for :class:`ArcList`'s constructor."""
    types, index = intern_words(words)
    return {"word_types": types, "word_index": index}


def _type_ids(lat: ArcList, rules: NormalizationRules, symbols: k2.SymbolTable, given: bool,
              cache: Dict[Optional[str], int]) -> np.ndarray:
    """Symbol id of each of the lattice's distinct words (``cache`` is shared across lattices)."""
    oov_id = symbols[rules.oov] if rules.oov is not None and rules.oov in symbols else None
    ids = np.zeros(len(lat.word_types), dtype=np.int64)
    for i, w in enumerate(lat.word_types):
        if w not in cache:
            n = None if w is None else normalize_word(w, rules)
            if n is None:
                cache[w] = 0
            elif n in symbols:
                cache[w] = symbols[n]
            elif oov_id is not None:
                cache[w] = oov_id
            else:
                what = "the given words.txt" if given else "the symbol table"
                raise ValueError(f"{lat.where}: word {n!r} (written {w!r}) is not in {what} and it has no "
                                 f"{rules.oov!r} to map it to")
        ids[i] = cache[w]
    return ids


def _with_penalties(lat: ArcList, rules: NormalizationRules) -> ArcList:
    """``lat`` with the silence/filler/``!NULL`` penalties of ``rules`` added to its arcs'
    acoustic scores (:func:`lattices.normalize.epsilon_penalty`); ``lat`` itself is not changed."""
    if not (rules.silence_penalty or rules.filler_penalty or rules.null_penalty):
        return lat
    penalty = np.array([epsilon_penalty(w, rules) for w in lat.word_types], dtype=np.float64)
    if not penalty.any():
        return lat
    return replace(lat, am=lat.am + penalty[lat.word_index])


def used_node_ids(num_nodes: int, ids: Sequence[np.ndarray]) -> Optional[np.ndarray]:
    """The sorted distinct node ids in ``ids`` when a file declares (or numbers) far more nodes
    than it mentions, so that they can be renumbered ``0..len-1`` (in the same order); None when
    the numbering is already compact enough. Keeps memory bounded by the content, whatever
    ``num_nodes`` a corrupt or hostile header claims."""
    mentioned = sum(len(x) for x in ids)
    if num_nodes <= 2 * mentioned + 16:
        return None
    return np.unique(np.concatenate([np.asarray(x, dtype=np.int64).reshape(-1) for x in ids]))


def compact_nodes(lat: ArcList) -> ArcList:
    """``lat`` with its nodes renumbered compactly when it numbers far more than it uses."""
    finals = np.fromiter(lat.finals, np.int64, len(lat.finals))
    used = used_node_ids(lat.num_nodes, [lat.src, lat.dst, finals, np.array([lat.start])])
    if used is None:
        return lat
    at = lambda x: np.searchsorted(used, x)  # noqa: E731
    return replace(lat, num_nodes=len(used), start=int(at(lat.start)), src=at(lat.src), dst=at(lat.dst),
                   finals={int(at(k)): v for k, v in lat.finals.items()})


def _check_scores(lat: ArcList) -> None:
    """Every score finite (a NaN or infinite score would silently corrupt every total)."""
    finals = np.array(list(lat.finals.values()), dtype=np.float64).reshape(-1)
    for name, x in (("acoustic", lat.am), ("LM", lat.lm), ("final", finals)):
        bad = ~np.isfinite(x)
        if bad.any():
            raise ValueError(f"{lat.where}: {int(bad.sum())} non-finite {name} score(s) (NaN or infinite), "
                             f"e.g. {x[bad][0]}")


def _check_ranges(lat: ArcList) -> None:
    n = lat.num_nodes
    if not (0 <= lat.start < n):
        raise ValueError(f"{lat.where}: start node {lat.start} out of range 0..{n - 1}")
    for f in lat.finals:
        if not (0 <= f < n):
            raise ValueError(f"{lat.where}: final node {f} out of range 0..{n - 1}")
    if len(lat.src) and (min(lat.src.min(), lat.dst.min()) < 0 or max(lat.src.max(), lat.dst.max()) >= n):
        raise ValueError(f"{lat.where}: a link refers to a node outside 0..{n - 1}")


def _reach(num_nodes: int, seeds: np.ndarray, frm: np.ndarray, to: np.ndarray) -> np.ndarray:
    """``[num_nodes]`` bool: nodes reachable from ``seeds`` along arcs ``frm -> to`` (all
    lattices at once, one frontier per step)."""
    order = np.argsort(frm, kind="stable")
    splits = np.concatenate([[0], np.cumsum(np.bincount(frm, minlength=num_nodes))])
    seen = np.zeros(num_nodes, dtype=bool)
    seen[seeds] = True
    frontier = seeds
    while frontier.size:
        _, arcs = out_arcs(splits, frontier)
        nxt = to[order[arcs]]
        nxt = np.unique(nxt[~seen[nxt]])
        seen[nxt] = True
        frontier = nxt
    return seen


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
        vocab = {n for lat in lattices for w in lat.word_types if w is not None
                 for n in [normalize_word(w, rules)] if n is not None}
        symbols = build_symbols(vocab)
    cache: Dict[Optional[str], int] = {}
    ok: List[ArcList] = []
    origin: List[ArcList] = []  # the caller's object for each of ok (failures are keyed by it)
    labels: List[np.ndarray] = []
    problem: Dict[int, str] = {}
    for lat in lattices:
        try:
            _check_ranges(lat)
            _check_scores(lat)
            compact = _with_penalties(compact_nodes(lat), rules)
            labels.append(_type_ids(compact, rules, symbols, given, cache)[compact.word_index])
        except ValueError as e:
            problem[id(lat)] = str(e)
            continue
        ok.append(compact)
        origin.append(lat)
    built, why = _build_structure(ok, labels)
    for lat, msg in zip(origin, why):
        if msg is not None:
            problem[id(lat)] = f"{lat.where}: {msg}"
    for lat in lattices:  # failures in batch order
        if id(lat) in problem:
            fails.append(Failure(lat.where, problem[id(lat)]))
    good = [lat for lat, msg in zip(ok, why) if msg is None]
    headers = [{**lat.header, "path": lat.source} for lat in good]
    return LatticeBatch(built, [lat.utt_id for lat in good], symbols, headers), fails


def _build_structure(lats: Sequence[ArcList], labels: Sequence[np.ndarray]) -> Tuple[k2.Fsa, List[Optional[str]]]:
    """The FsaVec of the lattices that are non-empty and acyclic, and per lattice None or why not."""
    B = len(lats)
    if B == 0:
        return _empty_fsavec(), []
    cat = lambda xs, dtype: np.concatenate(xs).astype(dtype, copy=False) if len(xs) else np.zeros(0, dtype=dtype)  # noqa: E731
    n_nodes = np.array([lat.num_nodes + 1 for lat in lats], dtype=np.int64)  # + the k2 final state
    node_off = np.concatenate([[0], np.cumsum(n_nodes)])
    total = int(node_off[-1])
    n_real = np.array([len(lat.src) for lat in lats], dtype=np.int64)
    fin_nodes = [np.asarray(sorted(lat.finals), dtype=np.int64) for lat in lats]
    n_fin = np.array([len(f) for f in fin_nodes], dtype=np.int64)
    # every arc: the real ones of each lattice, then its final arcs (final node -> k2 final state)
    lat_of_real = np.repeat(np.arange(B), n_real)
    lat_of_fin = np.repeat(np.arange(B), n_fin)
    src = np.concatenate([cat([lat.src for lat in lats], np.int64) + node_off[lat_of_real],
                          cat(fin_nodes, np.int64) + node_off[lat_of_fin]])
    dst = np.concatenate([cat([lat.dst for lat in lats], np.int64) + node_off[lat_of_real],
                          node_off[1:][lat_of_fin] - 1])
    lat_of_arc = np.concatenate([lat_of_real, lat_of_fin])
    lab = np.concatenate([cat(list(labels), np.int64), np.full(int(n_fin.sum()), -1, dtype=np.int64)])
    am = np.concatenate([cat([lat.am for lat in lats], np.float64), cat([[lat.finals[f][0] for f in sorted(lat.finals)] for lat in lats], np.float64)])
    lm = np.concatenate([cat([lat.lm for lat in lats], np.float64), cat([[lat.finals[f][1] for f in sorted(lat.finals)] for lat in lats], np.float64)])
    starts = np.array([lat.start for lat in lats], dtype=np.int64) + node_off[:-1]
    finals_k2 = node_off[1:] - 1
    keep = _reach(total, starts, src, dst) & _reach(total, finals_k2, dst, src)
    keep_arc = keep[src] & keep[dst]
    layer = node_layers(total, keep, src[keep_arc], dst[keep_arc])
    lat_of_node = np.repeat(np.arange(B), n_nodes)
    local = np.arange(total) - node_off[lat_of_node]
    why: List[Optional[str]] = [None] * B
    cyclic = np.zeros(B, dtype=bool)
    np.logical_or.at(cyclic, lat_of_node, keep & (layer < 0))
    for i in np.flatnonzero(~keep[starts]).tolist():
        why[i] = "empty lattice (no path from the start node to a final node)"
    for i in np.flatnonzero(cyclic & keep[starts]).tolist():
        why[i] = "the lattice has a cycle (k2 word lattices must be acyclic)"
    good_lat = np.array([w is None for w in why])
    # a lattice whose kept arcs all go forward in node numbers keeps its numbering
    backward = np.zeros(B, dtype=bool)
    np.logical_or.at(backward, lat_of_arc[keep_arc], local[src[keep_arc]] >= local[dst[keep_arc]])
    key = np.where(backward[lat_of_node], layer * (int(n_nodes.max()) + 1) + local, local)
    node_kept = keep & good_lat[lat_of_node]
    order = np.flatnonzero(node_kept)
    order = order[np.lexsort((key[order], lat_of_node[order]))]
    states = np.bincount(lat_of_node[order], minlength=B)[good_lat]
    new_id = np.full(total, -1, dtype=np.int64)
    new_id[order] = np.arange(len(order))
    first = np.concatenate([[0], np.cumsum(states)])[:-1]
    first_of_lat = np.zeros(B, dtype=np.int64)
    first_of_lat[good_lat] = first
    arcs = np.flatnonzero(keep_arc & good_lat[lat_of_arc])
    arcs = arcs[np.argsort(new_id[src[arcs]], kind="stable")]
    assert (new_id[starts[good_lat]] == first).all(), "the start must be each lattice's first state"
    arc_splits = np.concatenate([[0], np.cumsum(np.bincount(new_id[src[arcs]], minlength=len(order)))])
    state_splits = np.concatenate([[0], np.cumsum(states)])
    s_local = new_id[src[arcs]] - first_of_lat[lat_of_arc[arcs]]
    d_local = new_id[dst[arcs]] - first_of_lat[lat_of_arc[arcs]]
    am32, lm32 = am[arcs].astype(np.float32), lm[arcs].astype(np.float32)
    fsas = fsavec_from_arrays(state_splits, arc_splits, s_local, d_local, lab[arcs], torch.from_numpy(am32 + lm32))
    fsas.am_scores = torch.from_numpy(am32)
    fsas.lm_scores = torch.from_numpy(lm32)
    good = [lat for lat, g in zip(lats, good_lat.tolist()) if g]
    if good and all(lat.start_times is not None and lat.end_times is not None for lat in good):
        n_r = int(n_real.sum())
        zeros = [np.zeros(len(lat.src)) for lat in lats]
        st = np.concatenate([cat([z if lat.start_times is None else lat.start_times for lat, z in zip(lats, zeros)], np.float64),
                             np.zeros(len(src) - n_r)])
        et = np.concatenate([cat([z if lat.end_times is None else lat.end_times for lat, z in zip(lats, zeros)], np.float64),
                             np.zeros(len(src) - n_r)])
        # node times from the arcs; a final arc starts and ends when its final node is reached
        real = np.arange(n_r)
        node_t = np.zeros(total, dtype=np.float64)
        node_t[dst[real]] = et[real]
        node_t[src[real[keep_arc[real]]]] = st[real[keep_arc[real]]]
        st[n_r:] = et[n_r:] = node_t[src[n_r:]]
        fsas.start_times = torch.from_numpy(st[arcs].astype(np.float32))
        fsas.end_times = torch.from_numpy(et[arcs].astype(np.float32))
    return fsas, why


def _empty_fsavec() -> k2.Fsa:
    fsas = select_lattices(k2.create_fsa_vec([k2.Fsa.from_str("0 1 -1 0\n1")]), [])
    fsas.am_scores = torch.zeros(0)
    fsas.lm_scores = torch.zeros(0)
    return fsas


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
