"""Atomic file output: write to a temporary file beside the target, then rename over it."""
import contextlib
import gzip
import os
import tempfile
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", encoding: str = "utf-8") -> Iterator[IO]:
    """Open ``path`` for writing so that readers never see a half-written file.

    The data goes to a temporary file in the same directory, which is renamed over ``path``
    only when the ``with`` block ends without an exception (otherwise it is removed).
    A ``.gz`` suffix writes gzip. ``mode`` is ``"w"`` (text) or ``"wb"`` (binary).
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
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
