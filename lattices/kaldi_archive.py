"""Kaldi lattice archives and rspecifiers: binary or text entries, ``ark:``/``scp:`` inputs, writing.

Reading (:func:`read_kaldi`, or :func:`iter_kaldi` one lattice at a time, a text archive a few MB
at a time, and only the utterances a ``keep`` test picks):

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
from typing import Dict, Iterator, List, Optional, Tuple, Union

import k2
import numpy as np

from lattices.fsa_build import ArcList, Failure, split_failures
from lattices.kaldi_binary import MAGIC_BYTES, KaldiFst, add_frame_times, format_fst, read_fst
from lattices.kaldi_text import Keep, final_arcs, format_kaldi_text, iter_kaldi_text, parse_text_lattice
from lattices.lattice_batch import LatticeBatch
from models.files import read_bytes, un_gzip

_RSPECIFIER = re.compile(r"^(ark|scp)((?:,[a-z]+)*):(.*)$", re.S)
_MAX_KEY = 4096


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


def looks_like_kaldi_binary(data: bytes) -> bool:
    """Content sniffing: a key, one space, then the OpenFst magic number."""
    space = data.find(b" ", 0, _MAX_KEY)
    return space > 0 and not any(c in data[:space] for c in b"\n\t\r") and data[space + 1:space + 5] == MAGIC_BYTES


def read_input(target: str) -> bytes:
    """The bytes of a path, ``-`` (stdin) or a ``CMD |`` pipe (un-gzipped when they are gzip)."""
    if target == "-":
        return un_gzip(sys.stdin.buffer.read(), "stdin")
    if target.endswith("|"):
        cmd = target[:-1].strip()
        try:
            run = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        except OSError as e:
            raise ValueError(f"{target!r}: cannot run the command: {e}") from e
        if run.returncode != 0:
            err = run.stderr.decode("utf-8", "replace").strip().splitlines()
            raise ValueError(f"{target!r}: the command exited with status {run.returncode}"
                             + (f": {err[-1]}" if err else ""))
        return un_gzip(run.stdout, target)
    return read_bytes(target)


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
    """:func:`read_kaldi` one lattice at a time (an archive's bytes are read at once, its lattices
    parsed as they are asked for); ``keep(utterance id)`` picks the lattices to parse (an scp
    file's other entries are not even opened)."""
    kind, target = rspecifier_target(spec) if is_rspecifier(spec) else ("ark", spec)
    if kind == "scp":
        return _iter_scp(target, id2word, frame_seconds, keep)
    return iter_kaldi_archive(read_input(target), spec, id2word, frame_seconds, keep)


def iter_kaldi_archive(data: bytes, source: str, id2word: Dict[int, str], frame_seconds: float = 0.01,
                       keep: Keep = None) -> Iterator[Union[ArcList, Failure]]:
    """The lattices (and failures) of archive bytes whose entries are binary or text lattices,
    one at a time in archive order (see :func:`read_kaldi`); the entries ``keep`` rejects are
    skipped (a binary one is still scanned to find the next)."""
    if not looks_like_kaldi_binary(data):  # a text archive: the vectorised text reader, chunk by chunk
        yield from iter_kaldi_text(data, source, id2word, frame_seconds, keep)
        return
    seen: set = set()
    pos, entries = 0, 0
    while True:
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        if pos >= len(data):
            break
        entries += 1
        end = pos
        while end < len(data) and end - pos <= _MAX_KEY and not data[end:end + 1].isspace():
            end += 1
        key = data[pos:end].decode("utf-8", "replace")
        wanted = keep is None or keep(key)
        if data[end:end + 1] not in (b" ", b"\n"):
            if wanted:
                yield Failure(f"{source}:{key[:80]}", f"{source}: a key without a lattice at offset {pos}")
            break
        obj = end + 1 if data[end:end + 1] == b" " else end
        try:
            if not wanted:
                pos = skip_object(data, obj, f"{source}:{key}")
                continue
            lat, pos = read_object(data, obj, key, source, id2word, frame_seconds)
            if key in seen:
                raise ObjectError(f"{source}:{key}: utterance id appears twice (first one kept)", pos)
            seen.add(key)
            yield lat
        except ObjectError as e:
            if e.end is None:
                if wanted:
                    yield Failure(f"{source}:{key}", f"{e}; the rest of the archive cannot be located and was not read")
                break
            yield Failure(f"{source}:{key}", str(e))
            pos = e.end
    if not entries:
        yield Failure(source, f"{source}: empty Kaldi lattice archive")


class ObjectError(ValueError):
    """A lattice object that could not be read; ``end`` is where the next entry starts (None when
    a corrupt binary object leaves it unknown)."""

    def __init__(self, message: str, end: Optional[int]) -> None:
        super().__init__(message)
        self.end = end


def skip_object(data: bytes, pos: int, where: str) -> int:
    """Where the lattice object at ``data[pos]`` ends, without building it (a binary FST is still
    read through, since only its contents say where it ends).

    Raises:
        ObjectError: a corrupt binary object (``end`` None: the rest cannot be located).
    """
    if data[pos:pos + 4] == MAGIC_BYTES:
        try:
            return read_fst(data, pos, where)[1]
        except ValueError as e:
            raise ObjectError(str(e), None) from None
    end = data.find(b"\n\n", pos + 1)
    return len(data) if end < 0 else end + 2


def read_object(data: bytes, pos: int, key: str, source: str, id2word: Dict[int, str],
                frame_seconds: float) -> Tuple[ArcList, int]:
    """One lattice object at ``data[pos]`` (a binary FST, or a text block ending with a blank line).

    Returns:
        ``(lattice, offset just after the object)``.

    Raises:
        ObjectError: naming ``source:key``.
    """
    where = f"{source}:{key}"
    if data[pos:pos + 4] == MAGIC_BYTES:
        try:
            fst, end = read_fst(data, pos, where)
        except ValueError as e:
            raise ObjectError(str(e), None) from None
        try:
            return _arclist(fst, key, source, id2word, frame_seconds), end
        except ValueError as e:
            raise ObjectError(str(e), end) from None
    end = data.find(b"\n\n", pos + 1)
    end = len(data) if end < 0 else end + 2
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
    entries ``keep`` rejects are not opened. Only the archive of the current entry is held in
    memory (Kaldi's scp files list each archive's entries together)."""
    text = read_bytes(path).decode("utf-8", "replace")
    held: Tuple[Optional[str], bytes] = (None, b"")
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
            file, offset = (m.group(1), int(m.group(2))) if m and not os.path.exists(target) else (target, None)
            if not os.path.isabs(file) and not os.path.exists(file):
                file = os.path.join(os.path.dirname(path), file)
            if held[0] != file:
                held = (file, read_bytes(file))
            data = held[1]
            if offset is not None and offset >= len(data):
                raise ValueError(f"{where}: offset {offset} is past the end of {file} ({len(data)} bytes)")
            yield read_object(data, offset or 0, key, file, id2word, frame_seconds)[0]
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
