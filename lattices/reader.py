"""Read lattices of any supported format into one :class:`~lattices.lattice_batch.LatticeBatch`.

Formats (``fmt``): ``"k2"`` (``torch.save(fsa.as_dict())``), ``"slf"`` (HTK SLF, one lattice per
file), ``"kaldi"`` (Kaldi lattice archives, binary or text, CompactLattice or Lattice; see
:mod:`lattices.kaldi_archive`), or ``"auto"`` (detected from each file's *content*, after
un-gzipping; file names are not used). Files may be gzipped.

Paths: files; Kaldi rspecifiers (``ark:lat.1``, ``ark,t:lat.txt``, ``scp:lat.scp``,
``'ark:gunzip -c lat.1.gz |'``); directories (every regular file inside, recursively, sorted, except hidden files,
``words.txt``/``ref.txt``/``hyp.txt`` and ``.nbest``/``.md``/``.json(l)``/``.log``/``.py``/``.done``); list files (``@list.txt``, or a text file whose first line is an existing regular
path) with one path per line (relative paths are relative to the list file).

Word table: ``words`` (a ``words.txt``) if given; for Kaldi archives without ``words``, the
``words.txt`` next to the archive, and without one the integer ids become the words (with a
:class:`NoWordTableWarning`); otherwise (SLF, k2 with embedded tables) one table built from
all normalised words of the batch. See :mod:`lattices.fsa_build` for what happens to each lattice,
:mod:`lattices.normalize` for the word rules.

Every unreadable file or lattice becomes a :class:`Failure`; reading goes on with the rest.
"""
import itertools
import os
import warnings
import zlib
from contextlib import ExitStack
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import k2

from lattices.fsa_build import ArcList, Failure, build_batch, split_failures
from lattices.k2_format import k2_dict_to_arclists, load_k2_dict, looks_like_k2
from lattices.kaldi_archive import (Keep, is_rspecifier, iter_kaldi, iter_kaldi_archive, looks_like_kaldi_binary,
                                    rspecifier_missing, rspecifier_target, word_lookup)
from lattices.kaldi_text import looks_like_kaldi_text
from lattices.lattice_batch import LatticeBatch
from lattices.normalize import NormalizationRules, normalize_word
from lattices.slf import looks_like_slf, parse_slf, utt_id_from_path
from lattices.symbols import copy_symbols, load_symbols
from lattices.textio import looks_binary
from models.files import READ_BYTES, iter_pieces, open_bytes, read_bytes

FORMATS = ("auto", "k2", "slf", "kaldi")
_SKIP_NAMES = {"words.txt", "words.txt.gz", "ref.txt", "hyp.txt"}
_SKIP_SUFFIXES = (".nbest", ".md", ".json", ".jsonl", ".log", ".py", ".done")

__all__ = ["Failure", "NoWordTableWarning", "read_lattices", "iter_lattice_batches", "expand_paths", "detect_format", "FORMATS",
           "DEFAULT_BATCH_ARCS", "shard_of"]

# Bytes read at a time from a lattice file (its head also decides its format).
_READ_BYTES = READ_BYTES

# Input arcs per batch of a streamed job: measured fastest on the 100 LibriSpeech lattices (11 % less
# time than 20,000 for 10 % more memory; larger batches gain nothing more; bench/RESULTS.md §7.7).
DEFAULT_BATCH_ARCS = 50_000


class NoWordTableWarning(UserWarning):
    """Kaldi lattices were read without ``words.txt``: their integer word ids are used as words."""


def _is_list_file(path: str, data: bytes) -> bool:
    if looks_binary(data):
        return False
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines or len(lines[0].split()) != 1 or "=" in lines[0]:
        return False
    first = lines[0]
    cand = first if os.path.isabs(first) else os.path.join(os.path.dirname(path), first)
    return os.path.isfile(cand)  # a directory only through an explicit @list (a stray "/" must not walk the disk)


def expand_paths(paths: Sequence[str]) -> Tuple[List[str], List[Failure]]:
    """Files to read, in order: directories expanded (sorted), list files replaced by their entries.

    Returns:
        ``(files, failures)`` (a missing path is a failure, not an exception).
    """
    files: List[str] = []
    fails: List[Failure] = []

    def add(p: str, depth: int) -> None:
        if depth > 8:
            fails.append(Failure(p, f"{p}: list files nested too deeply"))
            return
        if is_rspecifier(p):  # read as a whole by _iter_file
            missing = rspecifier_missing(p)
            if missing is not None:
                fails.append(Failure(p, f"{p}: no such file {missing!r}"))
            else:
                files.append(p)
            return
        forced_list = p.startswith("@")
        if forced_list:
            p = p[1:]
        if os.path.isdir(p):
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    if name.startswith(".") or name in _SKIP_NAMES or name.endswith(_SKIP_SUFFIXES):
                        continue
                    if os.path.isfile(os.path.join(root, name)):  # regular files: no devices, FIFOs, sockets
                        files.append(os.path.join(root, name))
            return
        if not os.path.isfile(p):
            fails.append(Failure(p, f"{p}: no such file or directory"))
            return
        if forced_list or _is_list_file(p, _head(p)):
            try:
                with open(p, encoding="utf-8") as f:
                    entries = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
            except (OSError, UnicodeDecodeError) as e:
                fails.append(Failure(p, f"{p}: cannot read list file: {e}"))
                return
            for e in entries:
                add(e if os.path.isabs(e) else os.path.join(os.path.dirname(p), e), depth + 1)
            return
        files.append(p)

    for p in paths:
        add(p, 0)
    return files, fails


def _head(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(4096)


def detect_format(path: str, data: bytes) -> str:
    """``"k2"``, ``"slf"`` or ``"kaldi"`` from the (un-gzipped) content; ``ValueError`` if none fits."""
    if looks_like_k2(data):
        return "k2"
    if looks_like_kaldi_binary(data):
        return "kaldi"
    if looks_binary(data):
        raise ValueError(f"{path}: binary file that is neither a torch.save archive nor a binary Kaldi archive")
    text = data[:20000].decode("utf-8", errors="replace")
    if looks_like_slf(text):
        return "slf"
    if looks_like_kaldi_text(text):
        return "kaldi"
    raise ValueError(f"{path}: cannot tell the lattice format from the content (use --format)")


def _kaldi_words(path: str, symbols: Optional[k2.SymbolTable], kaldi_tables: dict) -> dict:
    """``id -> word`` for a Kaldi archive: ``symbols``, else the ``words.txt`` beside it, else the ids."""
    file = rspecifier_target(path)[1] if is_rspecifier(path) else path
    if symbols is None and not file.endswith("|") and file != "-":
        beside = os.path.join(os.path.dirname(file), "words.txt")
        if os.path.exists(beside):
            if beside not in kaldi_tables:
                kaldi_tables[beside] = load_symbols(beside)
            symbols = kaldi_tables[beside]
    if symbols is None:
        warnings.warn(f"{path}: no words.txt (--words, or one next to the archive): "
                      "the integer word ids are used as the words", NoWordTableWarning, stacklevel=2)
    key = id(symbols)
    if key not in kaldi_tables:
        kaldi_tables[key] = word_lookup(symbols)
    return kaldi_tables[key]


def shard_of(i: int, n: int) -> Callable[[str], bool]:
    """``keep`` for shard ``i`` of ``n`` by utterance: a stable hash (CRC-32) of the utterance id,
    so every shard decides alone, from the id, before parsing, and the copies of a repeated id all
    go to one shard (which reports them)."""
    return lambda utt: zlib.crc32(utt.encode("utf-8")) % n == i


def _iter_file(path: str, fmt: str, symbols: Optional[k2.SymbolTable], kaldi_tables: dict, frame_seconds: float = 0.01,
               keep: Keep = None, file_failures: bool = True) -> Iterator[Union[ArcList, Failure]]:
    """The lattices of one file (or Kaldi rspecifier) as they are parsed, each tagged with its
    format in ``header["format"]``, and the failures of the file and of its lattices.

    A Kaldi archive (a file, a pipe or stdin; binary or text) is parsed as it is read, so it is
    never held whole; a k2 or SLF file is read whole first.
    ``keep(utterance id)`` picks the lattices to parse (and whose failures to report); the
    failures of the file as a whole (unreadable, not a lattice file) are reported only with
    ``file_failures``. An SLF file is one utterance, named after the file: its failures are its
    utterance's.
    """
    f = fmt
    with ExitStack() as stack:
        try:
            if is_rspecifier(path):
                if fmt not in ("auto", "kaldi"):
                    raise ValueError(f"{path}: a Kaldi rspecifier, but --format is {fmt}")
                f = "kaldi"
                items = iter_kaldi(path, _kaldi_words(path, symbols, kaldi_tables), frame_seconds, keep)
            else:
                pieces = iter_pieces(stack.enter_context(open_bytes(path)), path, _READ_BYTES)
                head = next(pieces, b"")
                f = detect_format(path, head) if fmt == "auto" else fmt
                if f == "slf":
                    if keep is not None and not keep(utt_id_from_path(path)):
                        return
                    file_failures = True  # the file is the utterance, and this one is kept
                if f == "kaldi":  # an archive: parsed as it is read
                    items = iter_kaldi_archive(itertools.chain([head], pieces), path,
                                               _kaldi_words(path, symbols, kaldi_tables), frame_seconds, keep)
                else:  # the head is the file when it is short; else read again whole (head + rest would hold it twice)
                    stack.close()
                    data = head if len(head) < _READ_BYTES else read_bytes(path)
                    items = _iter_whole(path, data, f, symbols, kaldi_tables, frame_seconds, keep)
            for item in items:
                if isinstance(item, ArcList):
                    item.header["format"] = f  # kept in LatticeBatch.headers (e.g. to write results back in kind)
                elif item.source == path and not file_failures:
                    continue
                yield item
        except ValueError as e:
            if file_failures:
                yield Failure(path, str(e))


def _iter_whole(path: str, data: bytes, f: str, symbols: Optional[k2.SymbolTable], kaldi_tables: dict,
                frame_seconds: float, keep: Keep) -> Iterator[Union[ArcList, Failure]]:
    """The lattices of a whole file's bytes in format ``f``: a k2 file, or an SLF file (whose
    utterance the caller keeps)."""
    if f == "k2":
        lattices, _ = k2_dict_to_arclists(load_k2_dict(path), path, symbols)
        return iter([lat for lat in lattices if keep is None or keep(lat.utt_id)])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e})") from e
    return iter([parse_slf(text, path)])


def read_lattices(
    paths: Sequence[str],
    fmt: str = "auto",
    words: Optional[str] = None,
    rules: Optional[NormalizationRules] = None,
    frame_seconds: float = 0.01,
) -> Tuple[LatticeBatch, List[Failure]]:
    """Read lattices into one batch.

    Args:
        paths: files, directories or list files (see the module docstring).
        fmt: ``"auto"``, ``"k2"``, ``"slf"`` or ``"kaldi"``.
        words: ``words.txt`` path; ``None`` builds the table from the words found.
        rules: word normalisation; default ``NormalizationRules()``.
        frame_seconds: seconds per frame of Kaldi transition ids (frame shift x frame-subsampling
            factor), for word times.

    Returns:
        ``(batch, failures)``: FsaVec ``[utt][state][arc]`` of every lattice read (file order,
        then order inside a file) and one :class:`Failure` per file or utterance that failed.

    Raises:
        ValueError: ``fmt`` unknown or ``words`` unreadable (nothing could be read meaningfully).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown lattice format {fmt!r}; expected one of {', '.join(FORMATS)}")
    symbols: Optional[k2.SymbolTable] = load_symbols(words) if words is not None else None
    files, fails = expand_paths(paths)
    lattices: List[ArcList] = []
    kaldi_tables: dict = {}
    for path in files:
        lats, file_fails = split_failures(_iter_file(path, fmt, symbols, kaldi_tables, frame_seconds))
        lattices.extend(lats)
        fails.extend(file_fails)
    unique, dup_fails = _drop_duplicates(lattices, set())
    return build_batch(unique, symbols, rules, fails + dup_fails)


def _drop_duplicates(lattices: List[ArcList], seen: set) -> Tuple[List[ArcList], List[Failure]]:
    """Keep the first lattice of each utterance id (``seen`` is updated); later ones are failures."""
    unique, fails = [], []
    for lat in lattices:
        if lat.utt_id in seen:
            fails.append(Failure(lat.where, f"{lat.where}: duplicate utterance id {lat.utt_id!r} (first one kept)"))
            continue
        seen.add(lat.utt_id)
        unique.append(lat)
    return unique, fails


def iter_lattice_batches(
    files: Sequence[str],
    fmt: str = "auto",
    words: Optional[str] = None,
    rules: Optional[NormalizationRules] = None,
    batch_arcs: int = DEFAULT_BATCH_ARCS,
    keep: Keep = None,
    file_failures: bool = True,
    frame_seconds: float = 0.01,
) -> Iterator[Tuple[LatticeBatch, List[Failure]]]:
    """Read ``files`` lazily, one :class:`LatticeBatch` of about ``batch_arcs`` input arcs at a time.

    A batch is yielded as soon as the lattices parsed so far hold at least ``batch_arcs`` arcs
    (a single larger lattice is a batch of its own), so memory holds one batch: a Kaldi archive's
    lattices are parsed as they are batched, not all at once, and read from the file (or pipe)
    as they are parsed (an SLF or k2 file is read whole, one file at a time).
    Without ``words`` the symbol table grows as new words appear: a word keeps its id for the
    whole job (outputs of different batches agree), and a batch that brings new words gets a new
    table object, so a table already handed out is never changed while the next batch is read.

    Args:
        files: lattice files in order (see :func:`expand_paths`).
        fmt, words, rules, frame_seconds: as for :func:`read_lattices`.
        batch_arcs: input arcs per batch (>= 1).
        keep: ``keep(utterance id)`` decides whether that lattice is parsed and its failures
            reported (e.g. :func:`shard_of` for one shard of a job); None keeps all.
        file_failures: report the failures of whole files (unreadable, not a lattice file); False
            when another shard, which reads the same files, reports them.

    Yields:
        ``(batch, failures)``: failures of the files and utterances read since the previous
        batch (the last batch may be empty and carry only failures).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown lattice format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if batch_arcs < 1:
        raise ValueError(f"batch_arcs must be >= 1, got {batch_arcs}")
    rules = rules if rules is not None else NormalizationRules()
    given = load_symbols(words) if words is not None else None
    growing = k2.SymbolTable() if given is None else None
    kaldi_tables: dict = {}
    seen: set = set()
    pending: List[ArcList] = []
    fails: List[Failure] = []
    arcs = 0

    def flush() -> Tuple[LatticeBatch, List[Failure]]:
        nonlocal pending, fails, arcs, growing
        unique, dup = _drop_duplicates(pending, seen)
        table = given
        if table is None:  # the job's table plus this batch's new words (sorted)
            assert growing is not None
            new = {n for lat in unique for w in lat.word_types if w is not None
                   for n in [normalize_word(w, rules)] if n is not None and n not in growing}
            if new:  # copy on write: a table already handed out is never changed (readers run ahead)
                growing = copy_symbols(growing)
                for w in sorted(new):
                    growing.add(w)
            table = growing
        out = build_batch(unique, table, rules, fails + dup)
        pending, fails, arcs = [], [], 0
        return out

    for path in files:
        for item in _iter_file(path, fmt, given, kaldi_tables, frame_seconds, keep, file_failures):
            if isinstance(item, Failure):
                fails.append(item)
                continue
            pending.append(item)
            arcs += len(item.src)
            if arcs >= batch_arcs:
                yield flush()
    if pending or fails:
        yield flush()
