"""Read lattices of any supported format into one :class:`~lattices.lattice_batch.LatticeBatch`.

Formats (``fmt``): ``"k2"`` (``torch.save(fsa.as_dict())``), ``"slf"`` (HTK SLF, one lattice per
file), ``"kaldi"`` (CompactLattice text archive), or ``"auto"`` (detected from each file's
*content*, after un-gzipping; file names are not used). Files may be gzipped.

Paths: files; directories (every regular file inside, recursively, sorted, except hidden files,
``words.txt``/``ref.txt``/``hyp.txt`` and ``.nbest``/``.md``/``.json(l)``/``.log``/``.py``/``.done``); list files (``@list.txt``, or a text file whose first line is an existing
path) with one path per line (relative paths are relative to the list file).

Word table: ``words`` (a ``words.txt``) if given; for Kaldi archives without ``words``, the
``words.txt`` next to the archive; otherwise (SLF, k2 with embedded tables) one table built from
all normalised words of the batch. See :mod:`lattices.fsa_build` for what happens to each lattice,
:mod:`lattices.normalize` for the word rules.

Every unreadable file or lattice becomes a :class:`Failure`; reading goes on with the rest.
"""
import os
from typing import List, Optional, Sequence, Tuple

import k2

from lattices.fsa_build import ArcList, Failure, build_batch
from lattices.k2_format import k2_dict_to_arclists, load_k2_dict, looks_like_k2
from lattices.kaldi_text import looks_like_kaldi_text, parse_kaldi_text
from lattices.lattice_batch import LatticeBatch
from lattices.normalize import NormalizationRules
from lattices.slf import looks_like_slf, parse_slf
from lattices.symbols import load_symbols
from lattices.textio import looks_binary, read_bytes

FORMATS = ("auto", "k2", "slf", "kaldi")
_SKIP_NAMES = {"words.txt", "words.txt.gz", "ref.txt", "hyp.txt"}
_SKIP_SUFFIXES = (".nbest", ".md", ".json", ".jsonl", ".log", ".py", ".done")

__all__ = ["Failure", "read_lattices", "expand_paths", "detect_format", "FORMATS"]


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
    return os.path.isfile(cand) or os.path.isdir(cand)


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
        forced_list = p.startswith("@")
        if forced_list:
            p = p[1:]
        if os.path.isdir(p):
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    if name.startswith(".") or name in _SKIP_NAMES or name.endswith(_SKIP_SUFFIXES):
                        continue
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
    if looks_binary(data):
        raise ValueError(f"{path}: binary file that is not a torch.save archive")
    text = data[:20000].decode("utf-8", errors="replace")
    if looks_like_slf(text):
        return "slf"
    if looks_like_kaldi_text(text):
        return "kaldi"
    raise ValueError(f"{path}: cannot tell the lattice format from the content (use --format)")


def read_lattices(
    paths: Sequence[str],
    fmt: str = "auto",
    words: Optional[str] = None,
    rules: Optional[NormalizationRules] = None,
) -> Tuple[LatticeBatch, List[Failure]]:
    """Read lattices into one batch.

    Args:
        paths: files, directories or list files (see the module docstring).
        fmt: ``"auto"``, ``"k2"``, ``"slf"`` or ``"kaldi"``.
        words: ``words.txt`` path; ``None`` builds the table from the words found.
        rules: word normalisation; default ``NormalizationRules()``.

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
        n_before = len(lattices)
        try:
            data = read_bytes(path)
            f = detect_format(path, data) if fmt == "auto" else fmt
            if f == "k2":
                lats, _ = k2_dict_to_arclists(load_k2_dict(path), path, symbols)
                lattices.extend(lats)
            else:
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise ValueError(f"{path}: not UTF-8 text ({e})") from e
                if f == "slf":
                    lattices.append(parse_slf(text, path))
                else:
                    table = symbols
                    if table is None:
                        beside = os.path.join(os.path.dirname(path), "words.txt")
                        if not os.path.exists(beside):
                            raise ValueError(f"{path}: Kaldi lattices need words.txt (--words, or one next to the archive)")
                        if beside not in kaldi_tables:
                            kaldi_tables[beside] = load_symbols(beside)
                        table = kaldi_tables[beside]
                    lats, kfails = parse_kaldi_text(text, path, table)
                    lattices.extend(lats)
                    fails.extend(kfails)
        except ValueError as e:
            fails.append(Failure(path, str(e)))
        for lat in lattices[n_before:]:
            lat.header["format"] = f  # kept in LatticeBatch.headers (e.g. to write results back in kind)
    seen = set()
    unique = []
    for lat in lattices:
        if lat.utt_id in seen:
            fails.append(Failure(lat.where, f"{lat.where}: duplicate utterance id {lat.utt_id!r} (first one kept)"))
            continue
        seen.add(lat.utt_id)
        unique.append(lat)
    return build_batch(unique, symbols, rules, fails)
