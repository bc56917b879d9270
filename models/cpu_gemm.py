"""Fast float32 matrix products on AMD CPUs with the MKL that PyTorch bundles.

The MKL in PyTorch 1.13's wheels (2020.0) picks its slow generic code path on any CPU whose vendor
is not Intel, so on AMD EPYC/Ryzen every ``F.linear`` runs at about 40 % of the speed of the AVX2
path (bench/RESULTS.md 7.8: 37 against 99 GFLOP/s for an LSTM step of the LM pass, one thread). MKL up to
2020.0 reads ``MKL_DEBUG_CPU_TYPE=5`` as "use the AVX2 path", when it first runs a routine.
:func:`prefer_avx2_mkl` sets it on an AMD CPU with AVX2 and FMA unless the user set it
(``MKL_DEBUG_CPU_TYPE=`` empty opts out); importing :mod:`models` calls it, before any product has
run. Later MKL versions ignore the variable, and other CPUs never get it.
"""
import os
from typing import MutableMapping, Optional

CPUINFO = "/proc/cpuinfo"


def first_cpu(path: str = CPUINFO) -> str:
    """The first processor's block of ``path`` (empty when it cannot be read, e.g. not on Linux)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(1 << 16).split("\n\n", 1)[0]
    except OSError:
        return ""


def wants_avx2_mkl(cpuinfo: str) -> bool:
    """Whether a ``/proc/cpuinfo`` block describes an AMD CPU with AVX2 and FMA."""
    fields = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    return fields.get("vendor_id") == "AuthenticAMD" and {"avx2", "fma"} <= flags


def prefer_avx2_mkl(environ: Optional[MutableMapping[str, str]] = None, cpuinfo: Optional[str] = None) -> bool:
    """Set ``MKL_DEBUG_CPU_TYPE=5`` in ``environ`` (default ``os.environ``) when
    :func:`wants_avx2_mkl` holds for ``cpuinfo`` (default: this machine's) and the variable is unset.

    Returns:
        True when it set the variable.
    """
    environ = os.environ if environ is None else environ
    if "MKL_DEBUG_CPU_TYPE" in environ or not wants_avx2_mkl(first_cpu() if cpuinfo is None else cpuinfo):
        return False
    environ["MKL_DEBUG_CPU_TYPE"] = "5"
    return True
