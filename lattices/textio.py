"""Text helpers shared by the lattice readers and writers (reading files: :mod:`models.files`)."""
import warnings
from typing import Optional, Union

import numpy as np

_INT_LIMIT = 2**62
# parse_numbers detects numpy's early stop by the count; its warning about it is noise.
warnings.filterwarnings("ignore", message="string or file could not be read to its end", category=DeprecationWarning)


def int_field(text: str) -> int:
    """``int(text)``, but a ``ValueError`` for a value no array index could hold (|v| >= 2**62), so
    that a corrupt id or size is a parse error like any other, not an overflow later."""
    value = int(text)
    if not -_INT_LIMIT < value < _INT_LIMIT:
        raise ValueError(f"integer {text[:30]!r} is out of range")
    return value


def looks_binary(data: Union[bytes, str]) -> bool:
    """True if ``data`` (already un-gzipped) looks like a binary file (NUL bytes in its start)."""
    head = data[:4096]
    return (b"\x00" in head) if isinstance(head, bytes) else ("\x00" in head)


def format_floats(values) -> list:
    """Shortest-ish decimal text for each float32 value that reads back as the same float32.

    ``%.7g`` when it round-trips, else ``%.9g`` (always exact for float32); ``-0`` is written ``0``.

    Args:
        values: 1-D float tensor or array ``[n]``.

    Returns:
        ``n`` strings.
    """
    arr = np.asarray(values, dtype=np.float32) + np.float32(0.0)
    short = ["%.7g" % v for v in arr.tolist()]
    if not short:
        return short
    back = np.asarray([float(s) for s in short], dtype=np.float64).astype(np.float32)
    for i in np.nonzero(back != arr)[0].tolist():
        short[i] = "%.9g" % float(arr[i])
    return short


_NUMBER_CHARS = {np.int64: str.maketrans("", "", "0123456789+-\n"), np.float64: str.maketrans("", "", "0123456789.eE+-\n")}


def parse_numbers(values: Optional[str], n: int, dtype) -> Optional[np.ndarray]:
    """Vectorised parse of ``n`` newline-separated decimal numbers (zeros when ``values`` is None).

    Strict, so that a fast reader can trust it and leave everything else to its line-by-line
    parser: None unless every value is a plain decimal number (digits, sign, point, exponent; no
    ``inf``/``nan``/``_``/hex) read to its end. Unsigned integers are read by numpy's integer
    reader (about 4x faster than its float reader, but it takes a lone ``-`` for 0), signed ones by
    the float reader; either way they must stay below 2**53 in magnitude.

    Args:
        dtype: ``np.int64`` or ``np.float64``.
    """
    if values is None:
        return np.zeros(n, dtype=dtype)
    if values.translate(_NUMBER_CHARS[dtype]):
        return None
    # numpy stops at the first value it cannot read (with a DeprecationWarning, or a ValueError in
    # later versions): before the last value that shows in the count, and within it only Python's
    # own parse of the last value can tell. (No warning filter is switched on here: filters are
    # global, and readers run in a worker thread.)
    try:
        signed = dtype == np.int64 and ("-" in values or "+" in values)
        out = np.fromstring(values, dtype=np.float64 if signed else dtype, sep="\n")
        (int if dtype == np.int64 else float)(values[values.rfind("\n") + 1:])
    except ValueError:
        return None
    if len(out) != n:
        return None
    # An integer too long for int64 is clamped to its limits, which the range test refuses.
    if dtype == np.int64 and len(out) and not -(2**53) < out.min() <= out.max() < 2**53:
        return None
    return out.astype(dtype, copy=False)
