"""File input and output shared by every package (no k2): one gzip opener that goes by the
content's magic bytes, never by the name; atomic writes; reference transcripts.

Atomic writes go to a temporary file beside the target, are flushed and ``fsync``-ed, and only
then renamed over it, so a reader (or a rerun that checks whether ``metrics.json`` exists) never
sees a half-written or not-yet-durable file.
"""
import contextlib
import gzip
import io
import os
import tempfile
import zlib
from typing import IO, Dict, Iterator, List

GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: str) -> bool:
    """Whether the file starts with the gzip magic bytes (whatever its name)."""
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


@contextlib.contextmanager
def open_bytes(path: str) -> Iterator[IO[bytes]]:
    """Open ``path`` for streaming binary reading, un-gzipping it if its content is gzip.

    Raises:
        ValueError: naming ``path`` when it cannot be read or is a corrupt gzip stream.
    """
    try:
        with (gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")) as f:
            yield f  # type: ignore[misc]
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: cannot read: {e}") from e


@contextlib.contextmanager
def open_text(path: str) -> Iterator[IO[str]]:
    """Like :func:`open_bytes`, decoded as UTF-8 text (``ValueError`` naming ``path`` if it is not)."""
    with open_bytes(path) as raw:
        try:
            yield io.TextIOWrapper(raw, encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not UTF-8 text ({e})") from e


def read_bytes(path: str) -> bytes:
    """The whole file, un-gzipped when its content is gzip (``ValueError`` naming ``path`` on failure)."""
    with open_bytes(path) as f:
        return f.read()


def un_gzip(data: bytes, name: str) -> bytes:
    """``data`` un-gzipped when it starts with the gzip magic bytes, else unchanged
    (``ValueError`` naming ``name`` for a corrupt gzip stream)."""
    if data[:2] != GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{name}: corrupt gzip data: {e}") from e


def read_text(path: str) -> str:
    """The whole (possibly gzipped) UTF-8 text file; ``ValueError`` naming ``path`` if it is not text."""
    data = read_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e})") from e


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", encoding: str = "utf-8") -> Iterator[IO]:
    """Open ``path`` for writing so that readers never see a half-written file.

    The data goes to a temporary file in the same directory, which is ``fsync``-ed and renamed
    over ``path`` only when the ``with`` block ends without an exception (otherwise it is
    removed); the directory is ``fsync``-ed after the rename. A ``.gz`` suffix writes gzip.
    ``mode`` is ``"w"`` (text) or ``"wb"`` (binary).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
    try:
        if path.endswith(".gz"):
            handle = gzip.open(tmp, "wt" if mode == "w" else "wb", encoding=encoding if mode == "w" else None)
        else:
            handle = open(tmp, mode, encoding=encoding if mode == "w" else None)
        with handle:
            yield handle
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def _fsync(path: str) -> None:
    """Make a closed file's data (or a directory's entries) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_references(path: str) -> Dict[str, List[str]]:
    """Read references: a Kaldi ``text`` file (``utt-id w1 w2 ...``, plain or gzip) or lhotse
    supervisions (``.jsonl``, ``.jsonl.gz``, ``.json``), keyed by supervision id and also by
    recording id when unambiguous.

    Raises:
        ValueError: naming the path and line for a malformed or duplicate line, or a file that is
            not readable text.
    """
    if path.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")):
        from lhotse import SupervisionSet

        sups = SupervisionSet.from_file(path)
        refs: Dict[str, List[str]] = {}
        by_rec: Dict[str, List[List[str]]] = {}
        for s in sups:
            words = (s.text or "").split()
            refs[s.id] = words
            by_rec.setdefault(s.recording_id, []).append(words)
        for rec, items in by_rec.items():
            if len(items) == 1:
                refs.setdefault(rec, items[0])
        return refs
    refs = {}
    for lineno, line in enumerate(read_text(path).splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if parts[0] in refs:
            raise ValueError(f"{path}:{lineno}: duplicate utterance id {parts[0]!r}")
        refs[parts[0]] = parts[1:]
    return refs
