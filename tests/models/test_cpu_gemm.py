"""The AVX2 MKL path on AMD CPUs: set only for AMD with AVX2 and FMA, never over the user's choice."""
import os
import subprocess
import sys

from models.cpu_gemm import first_cpu, prefer_avx2_mkl, wants_avx2_mkl

AMD = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx fma avx2 bmi2\n"
INTEL = AMD.replace("AuthenticAMD", "GenuineIntel")
OLD_AMD = AMD.replace(" avx2", "")


def test_only_amd_cpus_with_avx2_and_fma_want_it():
    assert wants_avx2_mkl(AMD)
    assert wants_avx2_mkl(AMD + "\nprocessor\t: 1\nvendor_id\t: GenuineIntel\n")  # first value of a key counts
    assert not wants_avx2_mkl(INTEL) and not wants_avx2_mkl(OLD_AMD) and not wants_avx2_mkl("")
    assert first_cpu("/no/such/file") == ""


def test_the_users_setting_wins_even_when_empty():
    env = {}
    assert prefer_avx2_mkl(env, AMD) and env == {"MKL_DEBUG_CPU_TYPE": "5"}
    for setting in ("", "4"):
        env = {"MKL_DEBUG_CPU_TYPE": setting}
        assert not prefer_avx2_mkl(env, AMD) and env == {"MKL_DEBUG_CPU_TYPE": setting}
    env = {}
    assert not prefer_avx2_mkl(env, INTEL) and env == {}


def test_importing_models_sets_it_on_this_machine_exactly_when_it_should():
    env = {k: v for k, v in os.environ.items() if k != "MKL_DEBUG_CPU_TYPE"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root
    got = subprocess.run([sys.executable, "-c", "import os, models; print(os.environ.get('MKL_DEBUG_CPU_TYPE'))"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert got == ("5" if wants_avx2_mkl(first_cpu()) else "None")
