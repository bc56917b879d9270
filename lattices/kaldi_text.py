"""Kaldi CompactLattice text archives (``ark,t``): parse into arc lists, format out.

One lattice per block::

    utt-id                     (the whole line, stripped, is the key)
    src dst word graph_cost,acoustic_cost,transition_ids
    ...
    final_state graph_cost,acoustic_cost,transition_ids     (or just ``final_state``: weight 0,0)
    <blank line>

- Costs are negated natural logs: ``am_scores = -acoustic_cost``, ``lm_scores = -graph_cost``.
- The start state is the source of the first arc line (OpenFst text convention), or the first
  final line's state for a lattice without arcs.
- Final-state weights go on the final arc (label -1) of that state.
- ``word`` is an id in ``words.txt``; ``transition_ids`` (``_``-separated) are not kept, but
  their number is each arc's frame count, which gives word times (``frame_seconds`` per frame:
  frame shift x frame-subsampling factor) when the lattice has any.
"""
import itertools
from operator import itemgetter
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import k2
import numpy as np

from lattices.fsa_build import ArcList, Failure, interned_fields
from lattices.kaldi_binary import add_frame_times
from lattices.slf import looks_like_slf
from lattices.textio import format_floats, int_field, parse_numbers


def looks_like_kaldi_text(text: str) -> bool:
    """Content sniffing: the first non-blank line is a single token (the key) followed by lines
    of 4 fields whose last one is ``g,a,tids``-shaped."""
    lines = [ln for ln in text[:20000].splitlines() if ln.strip()]
    if len(lines) < 2:
        return False
    if "=" in lines[0]:
        return False
    body = lines[1].split()
    return len(body) in (2, 4) and body[-1].count(",") >= 1 and body[0].isdigit()


def _weight(tok: str, where: str, lineno: int) -> Tuple[float, float]:
    parts = tok.split(",")
    if len(parts) < 2:
        raise ValueError(f"{where}:{lineno}: weight {tok!r} is not 'graph_cost,acoustic_cost,...'")
    try:
        g, a = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(f"{where}:{lineno}: weight {tok!r} has a non-numeric cost") from None
    return -a + 0.0, -g + 0.0  # (am, lm); "+ 0.0" turns -0.0 into 0.0


def _frames(tok: str) -> int:
    """Transition ids in a ``g,a,tids`` weight token."""
    tids = tok.split(",", 2)[2] if tok.count(",") >= 2 else ""
    return tids.count("_") + 1 if tids else 0


def parse_text_lattice(
    utt: str, lines: List[Tuple[int, str]], source: str, id2word: Dict[int, str], frame_seconds: float
) -> ArcList:
    """One lattice's text lines (``(line number, line)``, without the key line) -> ArcList
    (``ValueError`` naming ``source:utt`` and the line if malformed)."""
    where = f"{source}:{utt}"
    src: List[int] = []
    dst: List[int] = []
    words: List[Optional[str]] = []
    am: List[float] = []
    lm: List[float] = []
    frames: List[int] = []
    finals: Dict[int, Tuple[float, float]] = {}
    start = None
    for lineno, line in lines:
        f = line.split()
        try:
            if len(f) == 4 or len(f) == 3:
                s, d, w = int_field(f[0]), int_field(f[1]), int_field(f[2])
                a, g = _weight(f[3], where, lineno) if len(f) == 4 else (0.0, 0.0)
                if start is None:
                    start = s
                if w != 0 and w not in id2word:
                    raise ValueError(f"{where}:{lineno}: word id {w} is not in words.txt")
                src.append(s)
                dst.append(d)
                words.append(None if w == 0 else id2word[w])
                am.append(a)
                lm.append(g)
                frames.append(_frames(f[3]) if len(f) == 4 else 0)
            elif len(f) in (1, 2):
                s = int_field(f[0])
                if s in finals:
                    raise ValueError(f"{where}:{lineno}: state {s} is final twice")
                finals[s] = _weight(f[1], where, lineno) if len(f) == 2 else (0.0, 0.0)
            else:
                raise ValueError(f"{where}:{lineno}: expected 'src dst word weight' or 'state [weight]', got {line!r}")
        except ValueError as e:
            if str(e).startswith(where):
                raise
            raise ValueError(f"{where}:{lineno}: malformed line {line!r}") from None
    if not finals:
        raise ValueError(f"{where}: empty lattice (no final state)")
    if start is None:
        start = next(iter(finals))
    n = max([start] + src + dst + list(finals)) + 1
    if min([start] + src + dst + list(finals)) < 0:
        raise ValueError(f"{where}: negative state id")
    return add_frame_times(ArcList(
        utt_id=utt, source=source, num_nodes=n, start=start, finals=finals,
        src=np.asarray(src, dtype=np.int64), dst=np.asarray(dst, dtype=np.int64), **interned_fields(words),
        am=np.asarray(am, dtype=np.float64), lm=np.asarray(lm, dtype=np.float64),
    ), np.asarray(frames, dtype=np.int64), frame_seconds)


def _parse_archive_fast(text: str, source: str, id2word: Dict[int, str], frame_seconds: float) -> Optional[List[ArcList]]:
    """Vectorised parse of a well-formed archive (single-space or tab separated, every arc line
    ``src dst word g,a,tids``, valid word ids, no repeated utterance); None for anything else, so
    that :func:`parse_kaldi_text` falls back to the line parser and its messages."""
    raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    newline = np.flatnonzero(raw == 10)
    starts = np.concatenate([[0], newline + 1])
    ends = np.concatenate([newline, [len(raw)]])
    if "\r" in text or ("  " in text) or ("\t\t" in text):
        return None
    space = np.flatnonzero((raw == 32) | (raw == 9))
    fields_gaps = np.searchsorted(space, ends) - np.searchsorted(space, starts)
    blank = (ends - starts) == fields_gaps
    after_blank = np.concatenate([[True], blank[:-1]])
    key = ~blank & after_blank
    body = ~blank & ~after_blank
    arc = body & (fields_gaps == 3)
    final = body & (fields_gaps <= 1)
    if (body & ~arc & ~final).any() or not key.any():
        return None
    lines = text.split("\n")
    block_of_line = np.cumsum(key) - 1
    arc_lines = np.flatnonzero(arc)
    m = len(arc_lines)
    picked = [lines[i] for i in arc_lines.tolist()] if m < 2 else list(itemgetter(*arc_lines.tolist())(lines))
    tokens = " ".join(picked).split()
    if len(tokens) != 4 * m:
        return None
    joined = "\n".join(tokens[3::4])
    seps = np.frombuffer(joined.encode("utf-8"), dtype=np.uint8)
    seps = seps[(seps == 44) | (seps == 10)]  # every token "g,a,tids": separators go , , \n , , \n ...
    if len(seps) != 3 * m - 1 or (m and not (seps == np.tile(np.array([44, 44, 10], np.uint8), m)[:-1]).all()):
        return None
    weights = joined.replace("\n", ",").split(",") if m else []
    frames = np.fromiter((t.count("_") + 1 if t else 0 for t in weights[2::3]), dtype=np.int64, count=m)
    src, dst, word = (parse_numbers("\n".join(tokens[j::4]), m, np.int64) for j in range(3))
    cost_g, cost_a = (parse_numbers("\n".join(weights[j::3]), m, np.float64) for j in range(2))
    if src is None or dst is None or word is None or cost_g is None or cost_a is None:
        return None
    if m and (min(src.min(), dst.min(), word.min()) < 0 or not all(int(w) in id2word for w in np.unique(word) if w != 0)):
        return None
    am, lm = -cost_a + 0.0, -cost_g + 0.0  # "+ 0.0" turns -0.0 into 0.0
    arc_block = block_of_line[arc_lines]
    key_lines = np.flatnonzero(key)
    arc_split = np.searchsorted(arc_block, np.arange(len(key_lines) + 1))
    finals_of: List[Dict[int, Tuple[float, float]]] = [{} for _ in key_lines]
    for i in np.flatnonzero(final).tolist():
        f = lines[i].split()
        if not f[0].isdigit() or len(f[0]) > 18 or int(f[0]) in finals_of[block_of_line[i]]:
            return None
        try:
            finals_of[block_of_line[i]][int(f[0])] = _weight(f[1], source, i + 1) if len(f) == 2 else (0.0, 0.0)
        except ValueError:
            return None
    out: List[ArcList] = []
    seen = set()
    for b, k in enumerate(key_lines.tolist()):
        utt = lines[k].strip()
        lo, hi = int(arc_split[b]), int(arc_split[b + 1])
        if utt in seen or not finals_of[b]:
            return None
        seen.add(utt)
        ids, index = np.unique(word[lo:hi], return_inverse=True)
        start = int(src[lo]) if hi > lo else next(iter(finals_of[b]))
        n = int(max([start, *finals_of[b]] + ([int(src[lo:hi].max()), int(dst[lo:hi].max())] if hi > lo else []))) + 1
        out.append(add_frame_times(ArcList(
            utt_id=utt, source=source, num_nodes=n, start=start, finals=finals_of[b], src=src[lo:hi], dst=dst[lo:hi],
            word_types=[None if w == 0 else id2word[w] for w in ids.tolist()], word_index=index.reshape(-1),
            am=am[lo:hi], lm=lm[lo:hi]), frames[lo:hi], frame_seconds))
    return out


Keep = Optional[Callable[[str], bool]]  # keep(utterance id): read that lattice (None: all)

# A text archive is parsed this many bytes at a time (whole lattices): memory holds one chunk and
# its lattices, not the archive (bench/RESULTS.md 7.16).
CHUNK_BYTES = 4 << 20


def iter_kaldi_text(data: Union[bytes, Iterable[bytes]], source: str, id2word: Dict[int, str], frame_seconds: float = 0.01,
                    keep: Keep = None, chunk_bytes: Optional[int] = None) -> Iterator[Union[ArcList, Failure]]:
    """The lattices (and failures) of a text archive, parsed in chunks of about ``chunk_bytes``
    that end at a blank line: the same lattices and messages (line numbers are the file's) as
    :func:`parse_kaldi_text` of the whole text, in order, one chunk at a time.

    Args:
        data: the archive's bytes (UTF-8), or its pieces in order (e.g. reads of a file, so that
            the archive is never held whole).
        source, id2word, frame_seconds: as for :func:`parse_kaldi_text`.
        keep: ``keep(utterance id)``: only those lattices are parsed (the others cost a scan for
            their key); None keeps all.
        chunk_bytes: bytes per chunk (>= 1; default :data:`CHUNK_BYTES`).

    Yields:
        One :class:`ArcList` per good kept lattice and one :class:`Failure` per malformed one; a
        :class:`Failure` named ``source`` for an archive that is empty or not UTF-8.
    """
    first_line, blocks = 1, False
    for chunk in _whole_blocks([data] if isinstance(data, bytes) else data, chunk_bytes or CHUNK_BYTES):
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as e:
            yield Failure(source, f"{source}: neither a binary Kaldi archive nor UTF-8 text ({e})")
            return
        lines = text.count("\n")
        blocks = blocks or bool(text.strip())
        if keep is not None:
            text = _blank_unkept(text, keep)
        if text.strip():
            lattices, failures = parse_kaldi_text(text, source, id2word, frame_seconds, first_line)
            yield from lattices
            yield from failures
        first_line += lines
    if not blocks:
        yield Failure(source, f"{source}: empty Kaldi lattice archive")


def _whole_blocks(pieces: Iterable[bytes], chunk_bytes: int) -> Iterator[bytes]:
    """``pieces`` joined and cut again into chunks of at least ``chunk_bytes`` (but the last) that
    end just after a blank line (``\\n\\n``), so that no lattice is split between two chunks.
    Pieces are joined only once there is enough for a chunk (and, when no blank line follows it
    yet, twice as much), so each byte is copied a bounded number of times whatever their sizes."""
    held: List[bytes] = []
    size, need = 0, chunk_bytes + 1
    for piece in itertools.chain(pieces, [None]):
        if piece is not None:
            held.append(piece)
            size += len(piece)
            if size < need:
                continue
        buf, pos = b"".join(held), 0
        while len(buf) - pos > chunk_bytes:
            end = buf.find(b"\n\n", pos + chunk_bytes)
            if end < 0:
                break
            yield buf[pos:end + 2]
            pos = end + 2
        held, size = [buf[pos:]], len(buf) - pos
        need = chunk_bytes + 1 if size <= chunk_bytes else 2 * size
    if size:
        yield held[0]


def _blank_unkept(text: str, keep: Callable[[str], bool]) -> str:
    """``text`` with every block (lines up to a blank line) whose key ``keep`` rejects made blank,
    so that the lines left keep their numbers."""
    blocks = text.split("\n\n")
    for i, block in enumerate(blocks):
        head = block.lstrip()
        if head and not keep(head.split("\n", 1)[0].strip()):
            blocks[i] = "\n" * block.count("\n")
    return "\n\n".join(blocks)


def parse_kaldi_text(text: str, source: str, id2word: Dict[int, str],
                     frame_seconds: float = 0.01, first_line: int = 1) -> Tuple[List[ArcList], List[Failure]]:
    """Parse every lattice of a CompactLattice text archive.

    A well-formed archive is parsed by a vectorised reader; any other goes through the line
    parser, which reads the same lattices and reports each malformed one by line.

    Args:
        text: archive text.
        source: its path (for messages).
        id2word: word id -> word (from ``words.txt``; see :func:`lattices.kaldi_archive.word_lookup`).
        frame_seconds: seconds per transition id (for word times).
        first_line: the number of ``text``'s first line in its file (for messages).

    Returns:
        ``(lattices, failures)``: one :class:`ArcList` per good lattice (words as strings), one
        :class:`Failure` per malformed one (the others are still read).
    """
    fast = _parse_archive_fast(text, source, id2word, frame_seconds) if text.strip() else None
    return (fast, []) if fast is not None else _parse_archive_lines(text, source, id2word, frame_seconds, first_line)


def _parse_archive_lines(text: str, source: str, id2word: Dict[int, str],
                         frame_seconds: float, first_line: int = 1) -> Tuple[List[ArcList], List[Failure]]:
    """The line-by-line archive parser (any layout; reports each malformed lattice by line)."""
    lattices: List[ArcList] = []
    failures: List[Failure] = []
    blocks: List[Tuple[str, int, List[Tuple[int, str]]]] = []
    cur: Optional[Tuple[str, int, List[Tuple[int, str]]]] = None
    for lineno, line in enumerate(text.splitlines(), first_line):
        if not line.strip():
            if cur is not None:
                blocks.append(cur)
                cur = None
            continue
        if cur is None:  # the key line (Kaldi writes "utt-id " alone on its line)
            cur = (line.strip(), lineno, [])
        else:
            cur[2].append((lineno, line))
    if cur is not None:
        blocks.append(cur)
    if not blocks:
        failures.append(Failure(source, f"{source}: empty Kaldi lattice archive"))
    elif looks_like_slf(text):
        return [], [Failure(source, f"{source}: an HTK SLF lattice, not a Kaldi archive: read it as SLF "
                                    "(--format slf, or the path without an ark: rspecifier)")]
    seen = set()
    for utt, lineno, lines in blocks:
        try:
            if utt in seen:
                raise ValueError(f"{source}:{utt}: utterance id appears twice (line {lineno})")
            seen.add(utt)
            lattices.append(parse_text_lattice(utt, lines, source, id2word, frame_seconds))
        except ValueError as e:
            failures.append(Failure(f"{source}:{utt}", str(e)))
    return lattices, failures


def final_arcs(src: Sequence[int], labels: Sequence[int], utt_id: str) -> Dict[int, int]:
    """Final state -> index of its final arc (label -1), in arc order. A Kaldi lattice has one final
    weight per state, so ``ValueError`` (naming ``utt_id``) for a state with two final arcs, or
    for a lattice without any."""
    finals: Dict[int, int] = {}
    for i, (s, label) in enumerate(zip(src, labels)):
        if label == -1:
            if s in finals:
                raise ValueError(f"{utt_id}: state {s} has two final arcs; Kaldi cannot represent that")
            finals[s] = i
    if not finals:
        raise ValueError(f"{utt_id}: cannot write an empty lattice")
    return finals


def format_kaldi_text(fsa: k2.Fsa, utt_id: str) -> str:
    """One lattice (single k2 Fsa in the batch convention) as a CompactLattice text block.

    The k2 final state is dropped; each arc labelled -1 becomes a final-state line carrying its
    weight (:func:`final_arcs`).

    Returns:
        The block, ending with a blank line.
    """
    arcs = fsa.as_dict()["arcs"][:, :3].tolist()
    labels = fsa.labels.tolist()
    am = format_floats(-fsa.am_scores)
    lm = format_floats(-fsa.lm_scores)
    finals = final_arcs([a[0] for a in arcs], labels, utt_id)
    out = [utt_id] + [f"{s} {d} {labels[i]} {lm[i]},{am[i]}," for i, (s, d, _) in enumerate(arcs) if labels[i] != -1]
    return "\n".join(out + [f"{s} {lm[i]},{am[i]}," for s, i in finals.items()]) + "\n\n"
