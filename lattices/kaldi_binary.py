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
import sys
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
# The most bytes one lattice may take when it is read from a stream (a binary lattice of ~40M arcs):
# a corrupt count (or a text block without its blank line) stops there, instead of reading the
# rest of the stream into memory.
MAX_LATTICE_BYTES = 1 << 30


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


class Truncated(ValueError):
    """The data ended inside a lattice: more bytes of the same stream may complete it."""


class _Cursor:
    """Bounded little-endian reads from ``data`` starting at ``pos``; overruns raise ValueError
    (:class:`Truncated` when it is the data that ran out). ``base`` is ``data[0]``'s offset in its
    file, for messages."""

    def __init__(self, data: bytes, pos: int, where: str, base: int = 0) -> None:
        self.data, self.pos, self.where, self.base = data, pos, where, base

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if size > self.left():
            raise Truncated(f"{self.where}: truncated binary lattice (needs {size} bytes at offset "
                            f"{self.base + self.pos}, {self.left()} left)")
        out = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return out

    def string(self) -> str:
        (n,) = self.take("<i")
        if not 0 <= n <= _MAX_STRING:
            raise ValueError(f"{self.where}: bad string length {n} in the FST header at offset {self.base + self.pos - 4}")
        if n > self.left():
            raise Truncated(f"{self.where}: truncated binary lattice (a string of {n} bytes at offset "
                            f"{self.base + self.pos}, {self.left()} left)")
        raw = self.data[self.pos:self.pos + n]
        self.pos += n
        return raw.decode("latin-1")

    def count(self, n: int, min_bytes: int, what: str) -> int:
        if not 0 <= n <= self.left() // min_bytes:
            error = Truncated if n >= 0 else ValueError
            raise error(f"{self.where}: {what} {n} cannot fit in the {self.left()} bytes left")
        return n


def read_fst(data: bytes, pos: int, where: str, base: int = 0, more: bool = False) -> Tuple[KaldiFst, int]:
    """Parse one binary lattice starting at ``data[pos]`` (the FST magic number).

    Only the start of each state and arc is found one at a time (a transition-id string's
    length says where the next arc starts); every field is then gathered at once.

    Args:
        data: the archive (or file) bytes, or a window of them.
        pos: offset of the FST.
        where: ``path:utt`` for messages.
        base: offset of ``data[0]`` in the file (for messages).
        more: whether more of the stream may follow ``data``; then a lattice that the header's
            counts say cannot fit is :class:`Truncated` at once, before it is scanned.

    Returns:
        ``(lattice, offset just after it)``.

    Raises:
        Truncated: ``data`` ends inside the lattice.
        ValueError: not an FST, an unsupported FST or arc type, or corrupt data.
    """
    cur = _Cursor(data, pos, where, base)
    (magic,) = cur.take("<i")
    if magic != FST_MAGIC:
        raise ValueError(f"{where}: not a binary Kaldi lattice (no OpenFst magic number at offset {base + pos})")
    fst_type, arc_type = cur.string(), cur.string()
    if fst_type != "vector":
        raise ValueError(f"{where}: unsupported FST type {fst_type!r} (Kaldi lattices are 'vector' FSTs)")
    if arc_type not in ARC_TYPES:
        raise ValueError(f"{where}: arc type {arc_type!r} is not a Kaldi lattice ({', '.join(ARC_TYPES)})")
    _version, flags, _props, start, num_states, num_arcs = cur.take("<iiQqqq")
    if flags & _HAS_SYMBOLS:
        raise ValueError(f"{where}: FSTs with embedded symbol tables are not supported (Kaldi never writes them)")
    compact, fdt = ARC_TYPES[arc_type]
    layout = _Layout(compact, np.dtype(fdt).itemsize // 4)
    cur.count(num_states, 4 * layout.state_words, "number of states")
    if num_states == 0:
        raise ValueError(f"{where}: empty lattice (no states)")
    if not 0 <= start < num_states:
        raise ValueError(f"{where}: start state {start} is not one of the {num_states} states")
    least = 4 * (num_states * layout.state_words + num_arcs * layout.arc_words)  # the header's counts: a hint
    if more and cur.left() < least <= MAX_LATTICE_BYTES:
        raise Truncated(f"{where}: the data ends before the lattice's {num_states} states and {num_arcs} arcs")
    heads, counts, arcs, end = _scan(data, cur.pos, num_states, layout, where, base)
    words = np.frombuffer(data, dtype="<i4", count=end, offset=cur.pos)
    fst = _gather_fields(words, heads, counts, arcs, start, layout, where)
    return (fst if compact else merge_chains(fst)), cur.pos + 4 * end


@dataclass(frozen=True)
class _Layout:
    """Where things are in a state or arc record, in int32 words (every field is 4 or 8 bytes, so
    a lattice's body is a run of 4-byte words from its first state on).

    State: graph and acoustic cost, [transition-id count and ids], int64 number of arcs.
    Arc: ilabel, olabel, graph and acoustic cost, [transition-id count and ids], nextstate.
    """

    compact: bool
    cost_words: int  # 1 (float32) or 2 (float64)

    @property
    def weight_words(self) -> int:
        return 2 * self.cost_words + (1 if self.compact else 0)  # without the transition ids

    @property
    def state_words(self) -> int:
        return self.weight_words + 2

    @property
    def arc_words(self) -> int:
        return self.weight_words + 3

    @property
    def after_costs(self) -> int:
        """An arc's word after its costs: its transition-id count (compact), or its nextstate."""
        return 2 + 2 * self.cost_words


def _scan(data: bytes, body: int, num_states: int, lay: _Layout, where: str,
          base: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Find where each state's record and each arc starts, the arcs of a state one after another
    (an arc's size is known only from its transition-id count).

    Returns:
        ``(heads, counts, arcs, end)``: int64 word positions (from ``data[body]``) of each state
        ``[num_states]``, its number of arcs ``[num_states]``, the position of each arc
        ``[num_arcs]`` (state by state), and the number of words the states span.
    """
    w = _words(data, body)
    total = len(w)
    heads: List[int] = []
    counts: List[int] = []
    firsts: List[int] = []  # fixed-size arcs: where each state's arcs start
    offs: List[int] = []  # variable-size arcs: where each arc starts
    add = offs.append
    step, at_n = lay.arc_words, lay.after_costs
    j, s = 0, 0
    try:
        for s in range(num_states):
            heads.append(j)
            j += 2 * lay.cost_words
            if lay.compact:
                if w[j] < 0:
                    raise ValueError(f"{where}: negative transition-id count {w[j]} at offset {base + body + 4 * j}")
                j += 1 + w[j]
            k = (w[j + 1] << 32) | (w[j] & 0xFFFFFFFF)  # int64, little-endian
            j += 2
            if not 0 <= k <= (total - j) // step:
                error = Truncated if k >= 0 else ValueError
                raise error(f"{where}: number of arcs {k} cannot fit in the {len(data) - body - 4 * j} bytes left")
            counts.append(k)
            if not lay.compact:
                firsts.append(j)
                j += k * step
                continue
            first = j
            for _ in range(k):
                add(j)
                j += step + w[j + at_n]
            if j < first + k * step:  # a negative count sent it back (work stays linear in the data)
                raise ValueError(f"{where}: negative transition-id count in an arc of state {s}")
    except IndexError:
        _check_counts(data, body, offs, at_n, where)  # a negative count may have sent it astray
        raise Truncated(f"{where}: truncated binary lattice (state {s} of {num_states} runs past offset "
                        f"{base + len(data)})") from None
    if j > total:
        raise Truncated(f"{where}: truncated binary lattice (its last arc runs past offset {base + len(data)})")
    count = np.asarray(counts, dtype=np.int64)
    if lay.compact:
        arcs = np.asarray(offs, dtype=np.int64)
    else:  # fixed-size arcs: each state's first arc, then every step words
        begin = np.cumsum(count) - count
        arcs = np.repeat(np.asarray(firsts, dtype=np.int64) - begin * step, count) + np.arange(int(count.sum())) * step
    return np.asarray(heads, dtype=np.int64), count, arcs, j


def _check_counts(data: bytes, body: int, arcs: List[int], at_n: int, where: str) -> None:
    """:func:`_no_negative_count` of the arcs at word positions ``arcs`` (from ``data[body]``) whose
    count lies inside ``data``."""
    words = np.frombuffer(data, dtype="<i4", count=(len(data) - body) // 4, offset=body)
    at = np.asarray(arcs, dtype=np.int64) + at_n
    _no_negative_count(words[at[(at >= 0) & (at < len(words))]], where)


def _no_negative_count(counts: np.ndarray, where: str) -> None:
    """``ValueError`` naming the first negative transition-id count of ``counts``."""
    if len(counts) and counts.min() < 0:
        raise ValueError(f"{where}: negative transition-id count {int(counts[counts < 0][0])} in an arc")


def _words(data: bytes, pos: int):
    """``data[pos:]`` as little-endian int32 words (whole words only), cheap to index one by one."""
    n = (len(data) - pos) // 4
    if sys.byteorder == "little":
        return memoryview(data)[pos:pos + 4 * n].cast("i")
    return np.frombuffer(data, dtype="<i4", count=n, offset=pos).tolist()


def _gather_fields(words: np.ndarray, heads: np.ndarray, counts: np.ndarray, arcs: np.ndarray, start: int,
                   lay: _Layout, where: str) -> KaldiFst:
    """Every field of every state and arc found by :func:`_scan`, gathered from ``words`` at once."""
    cw = lay.cost_words
    ilabel, olabel = words[arcs], words[arcs + 1]
    graph, acoustic = _costs(words, arcs + 2, cw), _costs(words, arcs + 2 + cw, cw)
    if lay.compact:
        frames = words[arcs + lay.after_costs].astype(np.int64)
        _no_negative_count(frames, where)
        dst = words[arcs + lay.after_costs + 1 + frames]
        if (ilabel != olabel).any():
            raise ValueError(f"{where}: compact lattice arc with ilabel != olabel")
    else:
        frames = (ilabel != 0).astype(np.int64)
        dst = words[arcs + lay.after_costs]
    num_states = len(heads)
    final_g, final_a = _costs(words, heads, cw), _costs(words, heads + cw, cw)
    final = np.flatnonzero(~((final_g == np.inf) & (final_a == np.inf)))
    finals = {int(s): (float(final_g[s]), float(final_a[s])) for s in final.tolist()}
    fst = KaldiFst(start, num_states, np.repeat(np.arange(num_states, dtype=np.int64), counts),
                   dst.astype(np.int64), olabel.astype(np.int64), graph, acoustic, frames, finals)
    if len(fst.dst) and (fst.dst.min() < 0 or fst.dst.max() >= num_states):
        raise ValueError(f"{where}: an arc goes to a state outside 0..{num_states - 1}")
    if len(fst.word) and fst.word.min() < 0:
        raise ValueError(f"{where}: negative word id {int(fst.word.min())}")
    return fst


def _costs(words: np.ndarray, at: np.ndarray, cost_words: int) -> np.ndarray:
    """float64 costs stored at word positions ``at`` (float32 in one word, or float64 in two)."""
    with np.errstate(invalid="ignore"):  # a signalling NaN in a corrupt file stays a NaN, quietly
        if cost_words == 1:
            return words[at].view("<f4").astype(np.float64)
        return np.ascontiguousarray(words[at[:, None] + np.arange(2)]).view("<f8").reshape(-1).astype(np.float64)


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
    the arcs in topological order (Kahn's algorithm: a state is passed on once every arc into it
    has come; the latest arrival where paths disagree); ``-1`` unreached.

    One pass over the arcs, state by state: a lattice of a few hundred arcs has tens of
    topological layers, and a vectorised step per layer cost 8 times as much (bench/RESULTS.md 7.17).

    Args:
        num_states: states ``0..num_states-1``; the arcs must form a DAG.
        src, dst, frames: int64 ``[num_arcs]``.

    Returns:
        int64 ``[num_states]``.
    """
    order = np.argsort(src, kind="stable")
    splits = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=num_states))]).tolist()
    dst_l, frames_l = dst[order].tolist(), frames[order].tolist()
    waiting = np.bincount(dst, minlength=num_states).tolist()  # arcs into each state not yet come
    t = [-1] * num_states
    t[start] = 0
    ready = [start] if waiting[start] == 0 else []
    while ready:
        s = ready.pop()
        ts = t[s]
        for a in range(splits[s], splits[s + 1]):
            d = dst_l[a]
            if ts + frames_l[a] > t[d]:
                t[d] = ts + frames_l[a]
            waiting[d] -= 1
            if not waiting[d]:
                ready.append(d)
    return np.asarray(t, dtype=np.int64)


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
