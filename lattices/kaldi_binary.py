"""Kaldi lattices in binary form: the OpenFst ``VectorFst`` that Kaldi's lattice writers emit.

Layout, taken from Kaldi's ``src/lat/kaldi-lattice.cc`` and ``src/fstext/lattice-weight.h`` and
OpenFst's ``vector-fst.h``/``fst.cc`` (all little-endian; a *string* is an int32 length and its
bytes)::

    archive entry   key ' ' FST            (lattices carry no Kaldi "\\0B" marker: the holder
                                             writes a bare FST, so that one file is an OpenFst file)
    FST header      int32 magic 2125659606, string fst type ("vector"), string arc type,
                    int32 version (2), int32 flags (1|2: symbol tables follow; not supported),
                    uint64 properties, int64 start, int64 num_states, int64 num_arcs
    each state      final weight, int64 number of arcs, then per arc:
                    int32 ilabel, int32 olabel, weight, int32 nextstate
    weights         lattice4 / lattice8: (graph cost, acoustic cost) as float32 / float64;
                    compactlattice44 / compactlattice84: that pair, then an int32 count and that
                    many int32 transition ids. A non-final state has the Zero weight (inf, inf).

A CompactLattice is a word acceptor (ilabel = olabel = word id; its transition ids give its
frames). A ``Lattice`` (``--determinize-lattice=false``) has transition ids as ilabels (one frame
each, 0 = none) and words as olabels; it is made a word lattice by merging chains of states with
one arc in and one out into single arcs that carry at most one word (Kaldi's ``ConvertLattice``
does the same, factoring such chains into transition-id strings).

Every count read from a file is checked against the bytes left before anything is allocated,
so a corrupt or hostile file gives a ``ValueError`` naming it, never a huge allocation.
"""
import struct
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

from lattices.fsa_build import ArcList, compact_nodes

FST_MAGIC = 2125659606
MAGIC_BYTES = struct.pack("<i", FST_MAGIC)  # b"\xd6\xfd\xb2\x7e"
ARC_TYPES = {  # arc type -> (compact, float dtype)
    "compactlattice44": (True, "<f4"),
    "compactlattice84": (True, "<f8"),
    "lattice4": (False, "<f4"),
    "lattice8": (False, "<f8"),
}
_HAS_SYMBOLS = 0x3  # FstHeader flags: input / output symbol tables follow the header
_PROPERTIES = 0x3  # kExpanded | kMutable: what every VectorFst is; OpenFst computes the rest
_MAX_STRING = 256  # type names are short; a longer "string" means the bytes are not an FST header


@dataclass
class KaldiFst:
    """One lattice as stored (costs, not scores; no renumbering).

    Attributes:
        start: start state.
        num_states: states are ``0..num_states-1``.
        src, dst, word: int64 ``[num_arcs]`` (``word`` 0 = epsilon).
        graph, acoustic: float64 ``[num_arcs]`` costs (negated natural logs).
        frames: int64 ``[num_arcs]`` frames each arc spans (its transition ids).
        finals: final state -> ``(graph, acoustic)`` final cost.
    """

    start: int
    num_states: int
    src: np.ndarray
    dst: np.ndarray
    word: np.ndarray
    graph: np.ndarray
    acoustic: np.ndarray
    frames: np.ndarray
    finals: Dict[int, Tuple[float, float]]


class _Cursor:
    """Bounded little-endian reads from ``data`` starting at ``pos``; overruns raise ValueError."""

    def __init__(self, data: bytes, pos: int, where: str) -> None:
        self.data, self.pos, self.where = data, pos, where

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if size > self.left():
            raise ValueError(f"{self.where}: truncated binary lattice (needs {size} bytes at offset {self.pos}, "
                             f"{self.left()} left)")
        out = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return out

    def string(self) -> str:
        (n,) = self.take("<i")
        if not 0 <= n <= min(_MAX_STRING, self.left()):
            raise ValueError(f"{self.where}: bad string length {n} in the FST header at offset {self.pos - 4}")
        raw = self.data[self.pos:self.pos + n]
        self.pos += n
        return raw.decode("latin-1")

    def count(self, n: int, min_bytes: int, what: str) -> int:
        if not 0 <= n <= self.left() // min_bytes:
            raise ValueError(f"{self.where}: {what} {n} cannot fit in the {self.left()} bytes left")
        return n


def read_fst(data: bytes, pos: int, where: str) -> Tuple[KaldiFst, int]:
    """Parse one binary lattice starting at ``data[pos]`` (the FST magic number).

    Args:
        data: the archive (or file) bytes.
        pos: offset of the FST.
        where: ``path:utt`` for messages.

    Returns:
        ``(lattice, offset just after it)``.

    Raises:
        ValueError: not an FST, an unsupported FST or arc type, or truncated/corrupt data.
    """
    cur = _Cursor(data, pos, where)
    (magic,) = cur.take("<i")
    if magic != FST_MAGIC:
        raise ValueError(f"{where}: not a binary Kaldi lattice (no OpenFst magic number at offset {pos})")
    fst_type, arc_type = cur.string(), cur.string()
    if fst_type != "vector":
        raise ValueError(f"{where}: unsupported FST type {fst_type!r} (Kaldi lattices are 'vector' FSTs)")
    if arc_type not in ARC_TYPES:
        raise ValueError(f"{where}: arc type {arc_type!r} is not a Kaldi lattice ({', '.join(ARC_TYPES)})")
    _version, flags, _props, start, num_states, _num_arcs = cur.take("<iiQqqq")
    if flags & _HAS_SYMBOLS:
        raise ValueError(f"{where}: FSTs with embedded symbol tables are not supported (Kaldi never writes them)")
    compact, fdt = ARC_TYPES[arc_type]
    fsize = np.dtype(fdt).itemsize
    wfmt = "<ff" if fsize == 4 else "<dd"
    min_weight = 2 * fsize + (4 if compact else 0)
    cur.count(num_states, min_weight + 8, "number of states")
    if num_states == 0:
        raise ValueError(f"{where}: empty lattice (no states)")
    if not 0 <= start < num_states:
        raise ValueError(f"{where}: start state {start} is not one of the {num_states} states")
    arc_bytes = 12 + min_weight
    n_at = 8 + 2 * fsize  # where an arc's transition-id count is (after ilabel, olabel and two costs)
    offsets: List[int] = []
    src: List[int] = []
    dst: List[int] = []  # these five become arrays for compact lattices (gathered after the loop)
    word: List[int] = []
    graph: List[float] = []
    acoustic: List[float] = []
    frames: List[int] = []
    finals: Dict[int, Tuple[float, float]] = {}
    mem = memoryview(data)
    for s in range(num_states):
        g, a = cur.take(wfmt)
        if compact:
            (n,) = cur.take("<i")
            cur.pos += 4 * cur.count(n, 4, "transition-id string length")
        if not (g == np.inf and a == np.inf):
            finals[s] = (g, a)
        (n_arcs,) = cur.take("<q")
        cur.count(n_arcs, arc_bytes, "number of arcs")
        if not compact:  # fixed-size arcs: one numpy view per state
            rec = np.frombuffer(mem[cur.pos:cur.pos + n_arcs * arc_bytes], dtype=np.dtype(
                [("i", "<i4"), ("o", "<i4"), ("g", fdt), ("a", fdt), ("d", "<i4")]))
            cur.pos += n_arcs * arc_bytes
            src.extend([s] * n_arcs)
            dst.extend(rec["d"].tolist())
            word.extend(rec["o"].tolist())
            graph.extend(rec["g"].tolist())
            acoustic.extend(rec["a"].tolist())
            frames.extend((rec["i"] != 0).astype(np.int64).tolist())
            continue
        src.extend([s] * n_arcs)
        for _ in range(n_arcs):  # variable-size arcs: only find where each one starts here
            if cur.left() < arc_bytes:
                raise ValueError(f"{where}: truncated binary lattice (an arc at offset {cur.pos})")
            (n,) = struct.unpack_from("<i", data, cur.pos + n_at)
            if not 0 <= 4 * n <= cur.left() - arc_bytes:
                raise ValueError(f"{where}: transition-id string length {n} at offset {cur.pos + n_at} does not fit")
            offsets.append(cur.pos)
            cur.pos += arc_bytes + 4 * n
    if compact:  # gather every field of every arc at once
        buf = np.frombuffer(data, dtype=np.uint8)
        offs = np.asarray(offsets, dtype=np.int64)
        il, ol, n = (_gather(buf, offs + at, "<i4") for at in (0, 4, n_at))
        graph, acoustic = (_gather(buf, offs + at, fdt) for at in (8, 8 + fsize))
        dst = _gather(buf, offs + n_at + 4 + 4 * n, "<i4")
        if (il != ol).any():
            raise ValueError(f"{where}: compact lattice arc with ilabel != olabel")
        word, frames = il, n
    fst = KaldiFst(start, num_states, np.asarray(src, np.int64), np.asarray(dst).astype(np.int64),
                   np.asarray(word).astype(np.int64), np.asarray(graph).astype(np.float64),
                   np.asarray(acoustic).astype(np.float64), np.asarray(frames).astype(np.int64), finals)
    if len(fst.dst) and (fst.dst.min() < 0 or fst.dst.max() >= num_states):
        raise ValueError(f"{where}: an arc goes to a state outside 0..{num_states - 1}")
    if len(fst.word) and fst.word.min() < 0:
        raise ValueError(f"{where}: negative word id {int(fst.word.min())}")
    return (fst if compact else merge_chains(fst)), cur.pos


def _gather(buf: np.ndarray, at: np.ndarray, dtype: str) -> np.ndarray:
    """The ``dtype`` values stored at byte offsets ``at`` of ``buf`` (any alignment)."""
    width = np.dtype(dtype).itemsize
    if not len(at):
        return np.zeros(0, dtype=dtype)
    return buf[at[:, None] + np.arange(width)].view(dtype).reshape(-1)


def merge_chains(fst: KaldiFst) -> KaldiFst:
    """Merge each state with exactly one arc in and one out (not start, not final) into a single
    arc, as long as the merged arc carries at most one word; costs and frames add up.

    Turns a frame-level ``Lattice`` into a word lattice with the same paths, word sequences,
    costs and frame counts.
    """
    n = fst.num_states
    indeg = np.bincount(fst.dst, minlength=n)
    outdeg = np.bincount(fst.src, minlength=n)
    through = (indeg == 1) & (outdeg == 1)
    through[fst.start] = False
    through[list(fst.finals)] = False
    out_arc = np.full(n, -1, dtype=np.int64)
    out_arc[fst.src] = np.arange(len(fst.src))
    cols = ([], [], [], [], [], [])  # src, dst, word, graph, acoustic, frames
    word, dst, g, a, f = (x.tolist() for x in (fst.word, fst.dst, fst.graph, fst.acoustic, fst.frames))
    through_l, out_l = through.tolist(), out_arc.tolist()
    absorbed = np.zeros(n, dtype=bool)
    stack = [i for i, s in enumerate(fst.src.tolist()) if not through_l[s]]
    while stack:
        i = stack.pop()
        s, w, gi, ai, fi, d = int(fst.src[i]), word[i], g[i], a[i], f[i], dst[i]
        while through_l[d]:
            j = out_l[d]
            if w and word[j]:  # two words: the chain continues as a new arc from d
                stack.append(j)
                break
            absorbed[d] = True
            w, gi, ai, fi, d = w or word[j], gi + g[j], ai + a[j], fi + f[j], dst[j]
        for col, v in zip(cols, (s, d, w, gi, ai, fi)):
            col.append(v)
    # states that only chains passed through disappear; renumbering is left to the batch builder
    src, dst_a, word_a, graph, acoustic, frames = (np.asarray(c) for c in cols)
    return KaldiFst(fst.start, n, src.astype(np.int64), dst_a.astype(np.int64), word_a.astype(np.int64),
                    graph.astype(np.float64), acoustic.astype(np.float64), frames.astype(np.int64), dict(fst.finals))


def state_frames(num_states: int, start: int, src: np.ndarray, dst: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Frame index at which each state is reached (its time), propagated from ``start`` = 0 along
    the arcs in topological order (the latest arrival where paths disagree); ``-1`` unreached.

    Args:
        num_states: states ``0..num_states-1``; the arcs must form a DAG.
        src, dst, frames: int64 ``[num_arcs]``.

    Returns:
        int64 ``[num_states]``.
    """
    from lattices.validate import arcs_by_layer, node_layers

    roots = np.zeros(num_states, dtype=bool)
    roots[start] = True
    layer = node_layers(num_states, roots, src, dst)
    t = np.full(num_states, -1, dtype=np.int64)
    t[start] = 0
    for arcs in arcs_by_layer(layer[src]):  # a source's time is final once every earlier layer is done
        np.maximum.at(t, dst[arcs], t[src[arcs]] + frames[arcs])
    return t


def add_frame_times(lat: ArcList, frames: np.ndarray, frame_seconds: float) -> ArcList:
    """Set ``lat.start_times``/``end_times`` (seconds) from each arc's frame count; unchanged when
    no arc spans a frame (e.g. lattices written without transition ids).

    Args:
        lat: a parsed lattice (modified in place and returned; it is the reader's own object).
        frames: int64 ``[num_arcs]``, frames of each arc of ``lat``.
        frame_seconds: seconds per frame (frame shift x frame-subsampling factor).
    """
    if not len(frames) or int(frames.sum()) == 0:
        return lat
    # a text lattice numbers its states as it likes: work on the ones it uses (arc times do not
    # depend on the numbering), so that memory follows the content whatever ids a corrupt file holds
    c = compact_nodes(lat)
    t = state_frames(c.num_nodes, c.start, c.src, c.dst, frames) * frame_seconds
    lat.start_times, lat.end_times = t[c.src], t[c.dst]
    return lat


def format_fst(src: np.ndarray, dst: np.ndarray, word: np.ndarray, graph: np.ndarray, acoustic: np.ndarray,
               num_states: int, finals: Dict[int, Tuple[float, float]]) -> bytes:
    """A CompactLattice (``compactlattice44``, start state 0, empty transition-id strings) as
    Kaldi writes it in a binary archive (without the key).

    Args:
        src, dst, word: int ``[num_arcs]``, arcs sorted by ``src``.
        graph, acoustic: float ``[num_arcs]`` costs.
        num_states: states ``0..num_states-1``.
        finals: final state -> ``(graph, acoustic)`` cost.
    """
    head = struct.pack("<i", FST_MAGIC) + _pstring("vector") + _pstring("compactlattice44")
    head += struct.pack("<iiQqqq", 2, 0, _PROPERTIES, 0, num_states, len(src))
    arcs = np.zeros(len(src), dtype=np.dtype([("i", "<i4"), ("o", "<i4"), ("g", "<f4"), ("a", "<f4"),
                                              ("n", "<i4"), ("d", "<i4")]))
    arcs["i"] = arcs["o"] = word
    arcs["g"], arcs["a"], arcs["d"] = graph, acoustic, dst
    splits = np.searchsorted(src, np.arange(num_states + 1))
    raw = arcs.tobytes()
    parts = [head]
    for s in range(num_states):
        g, a = finals.get(s, (np.inf, np.inf))
        parts.append(struct.pack("<ffiq", g, a, 0, splits[s + 1] - splits[s]))
        parts.append(raw[24 * splits[s]:24 * splits[s + 1]])
    return b"".join(parts)


def _pstring(s: str) -> bytes:
    raw = s.encode("ascii")
    return struct.pack("<i", len(raw)) + raw
