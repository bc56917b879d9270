"""File input and output shared by every package (no k2): one gzip opener that goes by the
content's magic bytes, never by the name; atomic writes; reference transcripts.

Atomic writes go to a temporary file beside the target, are flushed and ``fsync``-ed, and only
then renamed over it, so a reader (or a rerun that checks whether ``metrics.json`` exists) never
sees a half-written or not-yet-durable file.
"""
import contextlib
import gzip
import io
import itertools
import os
import tempfile
import zlib
from typing import IO, Dict, Iterable, Iterator, List, Optional

GZIP_MAGIC = b"\x1f\x8b"

# Bytes read from a file at a time when it is streamed (lattice archives: memory holds about this
# much beyond the lattices being parsed).
READ_BYTES = 1 << 20


def is_gzip(path: str) -> bool:
    """Whether the file starts with the gzip magic bytes (whatever its name)."""
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


@contextlib.contextmanager
def read_errors(name: str) -> Iterator[None]:
    """Turn what reading a (possibly gzipped) file raises into a ``ValueError`` naming ``name``."""
    try:
        yield
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{name}: cannot read: {e}") from e


@contextlib.contextmanager
def open_bytes(path: str) -> Iterator[IO[bytes]]:
    """Open ``path`` for streaming binary reading, un-gzipping it if its content is gzip.

    Raises:
        ValueError: naming ``path`` when it cannot be read or is a corrupt gzip stream.
    """
    with read_errors(path), (gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")) as f:
        yield f  # type: ignore[misc]


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


def iter_pieces(stream: IO[bytes], name: str, size: int = READ_BYTES, ready: bool = False) -> Iterator[bytes]:
    """``stream``'s bytes, ``size`` at a time (the last piece may be shorter), or with ``ready``
    (for a pipe) up to ``size`` bytes of what has arrived, as soon as something has.

    Raises:
        ValueError: naming ``name`` when a read fails (e.g. corrupt gzip data).
    """
    read = stream.read1 if ready else stream.read  # type: ignore[attr-defined]
    with read_errors(name):
        while True:
            piece = read(size)
            if not piece:
                return
            yield piece


def gunzip_pieces(pieces: Iterable[bytes], name: str) -> Iterator[bytes]:
    """``pieces`` un-gzipped as they come when they start with the gzip magic bytes (members one
    after another, as ``cat a.gz b.gz`` gives, are all read; zero padding between them is
    skipped, as gzip does), else unchanged. No output piece is much larger than
    :data:`READ_BYTES`, however well the data compresses.

    Raises:
        ValueError: naming ``name`` for corrupt or truncated gzip data.
    """
    rest = iter(pieces)
    head = b""
    for piece in rest:
        head += piece
        if len(head) >= len(GZIP_MAGIC):
            break
    if head[:len(GZIP_MAGIC)] != GZIP_MAGIC:
        if head:
            yield head
        yield from rest
        return
    d, started = zlib.decompressobj(31), False
    try:
        for data in itertools.chain([head], rest):
            while data:
                if not started:  # between members: padding, or the next member's header
                    data = data.lstrip(b"\0")
                    started = bool(data)
                    continue
                out = d.decompress(data, READ_BYTES)
                if out:
                    yield out
                if d.eof:
                    data, d, started = d.unused_data, zlib.decompressobj(31), False
                else:
                    data = d.unconsumed_tail
        while started and not d.eof:  # what is still buffered inside the decompressor
            out = d.decompress(b"", READ_BYTES)
            if not out:
                raise ValueError(f"{name}: truncated gzip data")
            yield out
    except zlib.error as e:
        raise ValueError(f"{name}: corrupt gzip data: {e}") from e


class ByteWindow:
    """The bytes of a stream from the current item on (``data[pos:]``; ``data[0]`` is at offset
    ``base`` of the stream), read as a parser asks for more: each :meth:`grow` at least doubles
    what is held and drops what is before ``pos``, so memory holds about one item (and a piece)
    however long the stream, and each byte is copied a bounded number of times.

    A stream that fails (its pieces raise ``ValueError``, e.g. a command that exits with an
    error) ends there: what came before the failure is still held and parsed, and the error is
    raised when the parser asks for more after it, or by :meth:`finish`.
    """

    def __init__(self, pieces: Iterable[bytes], base: int = 0) -> None:
        self.data, self.pos, self.base, self.eof = b"", 0, base, False
        self._rest = iter(pieces)
        self._error: Optional[ValueError] = None

    @classmethod
    def whole(cls, data: bytes) -> "ByteWindow":
        """A window that holds the whole stream already (and knows it)."""
        window = cls([])
        window.data, window.eof = data, True
        return window

    def grow(self) -> bool:
        """Read more; False (nothing changes) when the stream had already ended.

        Raises:
            ValueError: the stream's failure, once everything before it has been held.
        """
        self.finish()
        if self.eof:
            return False
        parts, got, need = [self.data[self.pos:]], 0, max(len(self.data) - self.pos, 1)
        try:
            for piece in self._rest:
                parts.append(piece)
                got += len(piece)
                if got >= need:
                    break
            else:
                self.eof = True
        except ValueError as e:
            self.eof, self._error = True, e
        self.data, self.base, self.pos = b"".join(parts), self.base + self.pos, 0
        return True

    def ensure(self, n: int) -> None:
        """Read until ``n`` bytes from ``pos`` on are held, or the stream ends."""
        while len(self.data) - self.pos < n and self.grow():
            pass

    def finish(self) -> None:
        """Raise the stream's failure, if it failed (once)."""
        error, self._error = self._error, None
        if error is not None:
            raise error

    def rest(self) -> Iterator[bytes]:
        """What is held from ``pos`` on, then the rest of the stream (the window is used up; a
        failure of the stream ends it, to be raised by :meth:`finish`)."""
        yield self.data[self.pos:]
        self.data, self.pos = b"", 0
        if self.eof:
            return
        try:
            yield from self._rest
        except ValueError as e:
            self._error = e
        self.eof = True


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
