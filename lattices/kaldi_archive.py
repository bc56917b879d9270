"""Kaldi lattice archives and rspecifiers: binary or text entries, ``ark:``/``scp:`` inputs, writing.

Reading (:func:`read_kaldi`, or :func:`iter_kaldi` one lattice at a time, and only the utterances
a ``keep`` test picks). Every input is read as it is parsed, never held whole: a file, a pipe or
stdin a piece at a time (:class:`models.files.ByteWindow` holds the current binary lattice, a text
archive is parsed a few MB at a time), an scp entry from its offset as far as its lattice goes:

- an archive is a sequence of ``key`` + object; each object is a binary FST
  (:mod:`lattices.kaldi_binary`) or a text block (:mod:`lattices.kaldi_text`), whichever it is;
- inputs are plain (or gzipped) files, or the rspecifiers Kaldi users type: ``ark:FILE``,
  ``ark,t:FILE`` (options before the colon are accepted and ignored: the content decides),
  ``ark:CMD |`` (the command's output, e.g. ``ark:gunzip -c lat.1.gz |``), ``ark:-`` (stdin) and
  ``scp:FILE`` whose lines are ``key FILE[:OFFSET]`` (``OFFSET`` is where the object starts, as
  Kaldi's ``ark,scp:`` writers record it). Commands inside scp files are refused: only a command
  the user typed is run;
- word ids map to words through ``words.txt``; without one, the ids themselves become the words
  (and the caller is warned).

Writing (:func:`kaldi_archive_bytes`): the binary CompactLattice archive Kaldi writes by default,
or (``binary=False``) the text form. Written lattices carry no transition ids.
"""
import os
import re
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from typing import IO, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import k2
import numpy as np

from lattices.fsa_build import ArcList, Failure, split_failures
from lattices.kaldi_binary import MAGIC_BYTES, MAX_LATTICE_BYTES, KaldiFst, Truncated, add_frame_times, format_fst, read_fst
from lattices.kaldi_text import Keep, final_arcs, format_kaldi_text, iter_kaldi_text, parse_text_lattice
from lattices.lattice_batch import LatticeBatch
from models.files import ByteWindow, gunzip_pieces, iter_pieces, open_bytes, read_bytes, read_errors

_RSPECIFIER = re.compile(r"^(ark|scp)((?:,[a-z]+)*):(.*)$", re.S)
_MAX_KEY = 4096
_SCP_READ = 1 << 16  # an scp entry's lattice is read from its offset this much at a time, then more


class IdsAsWords(dict):
    """``id2word`` for lattices without ``words.txt``: every non-negative id is its own word."""

    def __contains__(self, key: object) -> bool:
        return isinstance(key, (int, np.integer)) and key >= 0

    def __missing__(self, key: int) -> str:
        return str(int(key))


def word_lookup(symbols: Optional[k2.SymbolTable]) -> Dict[int, str]:
    """``id -> word`` of ``symbols``, or :class:`IdsAsWords` when there is no table."""
    return IdsAsWords() if symbols is None else {int(i): symbols.get(i) for i in symbols.ids}


def is_rspecifier(spec: str) -> bool:
    """Whether ``spec`` is a Kaldi rspecifier (``ark:...`` / ``scp:...``) rather than a path."""
    return _RSPECIFIER.match(spec) is not None


def rspecifier_target(spec: str) -> Tuple[str, str]:
    """``("ark" | "scp", target)`` of an rspecifier (``ValueError`` if ``spec`` is not one)."""
    m = _RSPECIFIER.match(spec)
    if m is None:
        raise ValueError(f"{spec!r} is not a Kaldi rspecifier (ark:FILE, ark,t:FILE, scp:FILE, 'ark:CMD |')")
    return m.group(1), m.group(3).strip()


def rspecifier_missing(spec: str) -> Optional[str]:
    """The file an rspecifier names when it does not exist (None for pipes, stdin and existing files)."""
    _, target = rspecifier_target(spec)
    if target.endswith("|") or target == "-" or os.path.exists(target):
        return None
    return target


def _can_sniff(head: bytes) -> bool:
    """Whether :func:`looks_like_kaldi_binary` can decide from ``head`` (the start of a stream):
    it holds the first whitespace and the 4 bytes after it, or more than a key can be."""
    m = re.search(rb"\s", head[:_MAX_KEY + 1])
    return len(head) >= (m.start() if m else _MAX_KEY) + 5


def looks_like_kaldi_binary(data: bytes) -> bool:
    """Content sniffing: a key, one space, then the OpenFst magic number."""
    space = data.find(b" ", 0, _MAX_KEY)
    return space > 0 and not any(c in data[:space] for c in b"\n\t\r") and data[space + 1:space + 5] == MAGIC_BYTES


def input_pieces(target: str, name: str) -> Iterator[bytes]:
    """The bytes of a path, ``-`` (stdin) or a ``CMD |`` pipe, un-gzipped when they are gzip, a
    piece at a time as they are read (a command's failure is a ``ValueError`` once its output
    has been read); messages start with ``name`` (e.g. the rspecifier)."""
    if target == "-":
        yield from gunzip_pieces(iter_pieces(sys.stdin.buffer, name, ready=True), name)
    elif target.endswith("|"):
        yield from _command_output(target, name)
    else:
        with open_bytes(target) as f:
            yield from iter_pieces(f, name)


def _command_output(target: str, name: str) -> Iterator[bytes]:
    """The output of the command of a ``CMD |`` rspecifier as it runs (killed if the reader stops
    early); ``ValueError`` with its last line of stderr if it exits with an error."""
    cmd = target[:-1].strip()
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty command cannot block on it
        try:
            proc = subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE, stderr=err)
        except OSError as e:
            raise ValueError(f"{name}: cannot run the command: {e}") from e
        assert proc.stdout is not None
        finished = False
        try:
            yield from gunzip_pieces(iter_pieces(proc.stdout, name, ready=True), name)
            finished = True
        finally:
            proc.stdout.close()
            if not finished:
                proc.kill()
            status = proc.wait()
        if status != 0:
            err.seek(0)
            lines = err.read().decode("utf-8", "replace").strip().splitlines()
            raise ValueError(f"{name}: the command exited with status {status}" + (f": {lines[-1]}" if lines else ""))


def read_kaldi(spec: str, id2word: Dict[int, str], frame_seconds: float = 0.01) -> Tuple[List[ArcList], List[Failure]]:
    """Every lattice of a Kaldi archive file or rspecifier.

    Args:
        spec: a (possibly gzipped) archive path, or an rspecifier (see the module docstring).
        id2word: word id -> word (:func:`word_lookup`).
        frame_seconds: seconds per transition id (frame shift x frame-subsampling factor).

    Returns:
        ``(lattices, failures)``; a malformed lattice is a failure and the others are still read
        (after a corrupt binary entry the rest of that archive cannot be located and is reported).
    """
    return split_failures(iter_kaldi(spec, id2word, frame_seconds))


def iter_kaldi(spec: str, id2word: Dict[int, str], frame_seconds: float = 0.01, keep: Keep = None) -> Iterator[Union[ArcList, Failure]]:
    """:func:`read_kaldi` one lattice at a time, the input read as the lattices are asked for;
    ``keep(utterance id)`` picks the lattices to parse (an scp file's other entries are not even
    opened)."""
    kind, target = rspecifier_target(spec) if is_rspecifier(spec) else ("ark", spec)
    if kind == "scp":
        return _iter_scp(target, id2word, frame_seconds, keep)
    return iter_kaldi_archive(input_pieces(target, spec), spec, id2word, frame_seconds, keep)


def iter_kaldi_archive(data: Union[bytes, Iterable[bytes]], source: str, id2word: Dict[int, str],
                       frame_seconds: float = 0.01, keep: Keep = None) -> Iterator[Union[ArcList, Failure]]:
    """The lattices (and failures) of an archive whose entries are binary or text lattices, one
    at a time in archive order (see :func:`read_kaldi`), read as they are parsed: memory holds
    about one lattice (of a text archive, one chunk of lattices), not the archive.

    Args:
        data: the archive's bytes, or its pieces in order (e.g. reads of a file or a pipe).
        source, id2word, frame_seconds: as for :func:`read_kaldi`.
        keep: ``keep(utterance id)`` picks the lattices to parse; the others are skipped (a
            binary one is still scanned to find the next).
    """
    window = ByteWindow.whole(data) if isinstance(data, bytes) else ByteWindow(data)
    while not _can_sniff(window.data) and window.grow():
        pass
    if not looks_like_kaldi_binary(window.data):  # a text archive: the vectorised text reader, chunk by chunk
        yield from iter_kaldi_text(window.rest(), source, id2word, frame_seconds, keep)
        window.finish()
        return
    seen: set = set()
    entries = 0
    while True:
        head = _next_key(window)
        if head is None:
            break
        entries += 1
        key, obj = head
        wanted = keep is None or keep(key)
        if obj is None:
            if wanted:
                yield Failure(f"{source}:{key[:80]}", f"{source}: a key without a lattice at offset {window.base + window.pos}")
            break
        try:
            lat = read_entry(window, obj, key, source, id2word, frame_seconds, wanted)
        except ObjectError as e:
            if e.end is None:
                if wanted:
                    yield Failure(f"{source}:{key}", f"{e}; the rest of the archive cannot be located and was not read")
                break
            yield Failure(f"{source}:{key}", str(e))
            window.pos = e.end
            continue
        if lat is None:
            continue
        if key in seen:
            yield Failure(f"{source}:{key}", f"{source}:{key}: utterance id appears twice (first one kept)")
            continue
        seen.add(key)
        yield lat
    window.finish()  # a stream that failed after its last whole lattice (e.g. a command's exit status)
    if not entries:
        yield Failure(source, f"{source}: empty Kaldi lattice archive")


def _next_key(window: ByteWindow) -> Optional[Tuple[str, Optional[int]]]:
    """The key of the archive entry at ``window.pos`` (after any whitespace, which is passed),
    and the stream offset of its object (None when no lattice follows the key); None at the end."""
    while True:
        data, pos = window.data, window.pos
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        window.pos = pos
        if pos == len(data):
            if window.grow():
                continue
            return None
        end = pos
        while end < len(data) and end - pos <= _MAX_KEY and not data[end:end + 1].isspace():
            end += 1
        if end == len(data) and window.grow():
            continue
        key, sep = data[pos:end].decode("utf-8", "replace"), data[end:end + 1]
        if sep not in (b" ", b"\n"):
            return key, None
        return key, window.base + (end + 1 if sep == b" " else end)


def read_entry(window: ByteWindow, obj: int, key: str, source: str, id2word: Dict[int, str],
               frame_seconds: float, wanted: bool = True) -> Optional[ArcList]:
    """The lattice object at stream offset ``obj`` (None when not ``wanted``: only skipped), read
    further as needed; ``window.pos`` ends just after it.

    Raises:
        ObjectError: naming ``source:key`` (``end`` relative to ``window.data``).
    """
    while True:
        at, eof = obj - window.base, window.eof
        try:
            if wanted:
                lat, window.pos = read_object(window.data, at, key, source, id2word, frame_seconds, window.base, eof)
                return lat
            window.pos = skip_object(window.data, at, f"{source}:{key}", window.base, eof)
            return None
        except Truncated:  # only before the end of the stream: read more and parse it again
            if len(window.data) - at > MAX_LATTICE_BYTES:  # corrupt sizes must not read the whole stream in
                raise ObjectError(f"{source}:{key}: a lattice of more than {MAX_LATTICE_BYTES >> 20} MiB "
                                  "(or a corrupt size in it)", None) from None
            window.grow()


class ObjectError(ValueError):
    """A lattice object that could not be read; ``end`` is where the next entry starts (None when
    a corrupt binary object leaves it unknown)."""

    def __init__(self, message: str, end: Optional[int]) -> None:
        super().__init__(message)
        self.end = end


def skip_object(data: bytes, pos: int, where: str, base: int = 0, eof: bool = True) -> int:
    """Where the lattice object at ``data[pos]`` ends, without building it (a binary FST is still
    read through, since only its contents say where it ends).

    Args:
        base: offset of ``data[0]`` in its stream (for messages).
        eof: whether ``data`` runs to the end of the stream.

    Raises:
        Truncated: the object runs past ``data``, which is not the whole stream.
        ObjectError: a corrupt binary object (``end`` None: the rest cannot be located).
    """
    if data[pos:pos + 4] == MAGIC_BYTES:
        return _read_binary(data, pos, where, base, eof)[1]
    return _text_end(data, pos, where, eof)


def _read_binary(data: bytes, pos: int, where: str, base: int, eof: bool) -> Tuple[KaldiFst, int]:
    """:func:`read_fst` as the object readers need it: :class:`Truncated` before the end of the
    stream, any other failure an :class:`ObjectError` after which the rest cannot be located."""
    try:
        return read_fst(data, pos, where, base, more=not eof)
    except ValueError as e:
        if isinstance(e, Truncated) and not eof:
            raise
        raise ObjectError(str(e), None) from None


def _text_end(data: bytes, pos: int, where: str, eof: bool) -> int:
    """Where a text object at ``data[pos]`` ends: after its blank line, or at the end of the data."""
    end = data.find(b"\n\n", pos + 1)
    if end >= 0:
        return end + 2
    if not eof:
        raise Truncated(f"{where}: no blank line yet")
    return len(data)


def read_object(data: bytes, pos: int, key: str, source: str, id2word: Dict[int, str],
                frame_seconds: float, base: int = 0, eof: bool = True) -> Tuple[ArcList, int]:
    """One lattice object at ``data[pos]`` (a binary FST, or a text block ending with a blank line).

    Args:
        base, eof: as for :func:`skip_object`.

    Returns:
        ``(lattice, offset just after the object)``.

    Raises:
        Truncated: the object runs past ``data``, which is not the whole stream.
        ObjectError: naming ``source:key``.
    """
    where = f"{source}:{key}"
    if data[pos:pos + 4] == MAGIC_BYTES:
        fst, end = _read_binary(data, pos, where, base, eof)
        try:
            return _arclist(fst, key, source, id2word, frame_seconds), end
        except ValueError as e:
            raise ObjectError(str(e), end) from None
    end = _text_end(data, pos, where, eof)
    try:
        text = data[pos:end].decode("utf-8")
        lines = [(i, ln) for i, ln in enumerate(text.splitlines(), 1) if ln.strip()]
        return parse_text_lattice(key, lines, source, id2word, frame_seconds), end
    except UnicodeDecodeError:
        raise ObjectError(f"{where}: neither a binary lattice nor UTF-8 text", end) from None
    except ValueError as e:
        raise ObjectError(str(e), end) from None


def _arclist(fst: KaldiFst, utt: str, source: str, id2word: Dict[int, str], frame_seconds: float) -> ArcList:
    where = f"{source}:{utt}"
    ids, index = np.unique(fst.word, return_inverse=True)
    for w in ids.tolist():
        if w != 0 and w not in id2word:
            raise ValueError(f"{where}: word id {w} is not in words.txt")
    if not fst.finals:
        raise ValueError(f"{where}: empty lattice (no final state)")
    lat = ArcList(
        utt_id=utt, source=source, num_nodes=fst.num_states, start=fst.start,
        finals={s: (-a + 0.0, -g + 0.0) for s, (g, a) in fst.finals.items()},
        src=fst.src, dst=fst.dst, word_types=[None if w == 0 else id2word[w] for w in ids.tolist()],
        word_index=index.reshape(-1), am=-fst.acoustic + 0.0, lm=-fst.graph + 0.0)
    return add_frame_times(lat, fst.frames, frame_seconds)


def _iter_scp(path: str, id2word: Dict[int, str], frame_seconds: float, keep: Keep = None) -> Iterator[Union[ArcList, Failure]]:
    """Lattices listed in a Kaldi scp file (``key FILE[:OFFSET]`` per line), in its order; the
    entries ``keep`` rejects are not opened. Each lattice is read from its offset on, as far as it
    goes (the archive it is in stays open while the next entries are in it too)."""
    text = read_bytes(path).decode("utf-8", "replace")
    with ExitStack() as held:
        held_file: Optional[str] = None
        stream: Optional[IO[bytes]] = None
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split(None, 1)
            key = parts[0]
            if keep is not None and not keep(key):
                continue
            where = f"{path}:{lineno}"
            try:
                if len(parts) != 2:
                    raise ValueError(f"{where}: expected 'key FILE[:OFFSET]', got {line!r}")
                target = parts[1].strip()
                if target.endswith("|"):
                    raise ValueError(f"{where}: commands in scp files are not run ({target!r}); decompress the archive first")
                m = re.match(r"^(.*):(\d+)$", target)
                file, offset = (m.group(1), int(m.group(2))) if m and not os.path.exists(target) else (target, 0)
                if not os.path.isabs(file) and not os.path.exists(file):
                    file = os.path.join(os.path.dirname(path), file)
                if held_file != file:
                    held.close()
                    held_file = None
                    stream = held.enter_context(open_bytes(file))
                    held_file = file
                assert stream is not None
                with read_errors(file):
                    stream.seek(offset)
                window = ByteWindow(iter_pieces(stream, file, _SCP_READ), base=offset)
                window.ensure(1)
                if not window.data:
                    raise ValueError(f"{where}: offset {offset} is past the end of {file}")
                yield read_entry(window, offset, key, file, id2word, frame_seconds)  # type: ignore[misc]
            except ValueError as e:
                yield Failure(f"{path}:{key}", str(e))


def kaldi_archive_bytes(batch: LatticeBatch, binary: bool = True) -> bytes:
    """Every lattice of ``batch`` as one Kaldi CompactLattice archive (binary, or text).

    Costs are the negated ``am_scores``/``lm_scores`` (acoustic, graph); the k2 final state is
    dropped and each final arc becomes its source state's final weight. ``batch`` is not changed.

    Raises:
        ValueError: a state with two final arcs (Kaldi cannot represent it), named by utterance.
    """
    if not binary:
        return "".join(format_kaldi_text(batch.fsas[i], utt) for i, utt in enumerate(batch.utt_ids)).encode("utf-8")
    fsas = batch.fsas
    arcs = fsas.arcs.values()[:, :3].numpy().astype(np.int64)
    shape = fsas.arcs.shape()
    state_splits, arc_splits = shape.row_splits(1).numpy(), shape.row_splits(2).numpy()
    graph = (-fsas.lm_scores.detach().double()).numpy()
    acoustic = (-fsas.am_scores.detach().double()).numpy()
    parts = []
    for i, utt in enumerate(batch.utt_ids):
        lo, hi = arc_splits[state_splits[i]], arc_splits[state_splits[i + 1]]
        s, d, label = arcs[lo:hi, 0], arcs[lo:hi, 1], arcs[lo:hi, 2]
        finals = {state: (float(graph[lo + j]), float(acoustic[lo + j]))
                  for state, j in final_arcs(s.tolist(), label.tolist(), utt).items()}
        keep = label != -1
        num_states = int(state_splits[i + 1] - state_splits[i]) - 1  # without k2's final state
        parts.append(utt.encode("utf-8") + b" " + format_fst(
            s[keep], d[keep], label[keep], graph[lo:hi][keep], acoustic[lo:hi][keep], num_states, finals))
    return b"".join(parts)
