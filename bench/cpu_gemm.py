"""Float32 matrix products on this CPU with MKL's generic path and with the path ``models`` picks
(:mod:`models.cpu_gemm`), each in its own process, in the same run::

    python bench/cpu_gemm.py [--threads 1] [--seconds 1]

Shapes: an LSTM step of the LM pass (rows x 200 -> 800, the section-6 models) and the output layer
of a 20,000-word vocabulary (rows x 200 -> 20,000, the normaliser). One JSON line per setting and
shape: GFLOP/s (median of 5 timings of ``--seconds`` / 5 each).
"""
import importlib
import json
import os
import statistics
import subprocess
import sys
import time

import click

SHAPES = [(2666, 200, 800), (8192, 200, 800), (2048, 200, 20000)]  # rows, in, out


def measure(threads: int, seconds: float) -> None:
    """Time every shape in this process and print one JSON line each."""
    importlib.import_module("models")  # sets MKL_DEBUG_CPU_TYPE on AMD unless set (models/cpu_gemm.py)
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    for rows, n_in, n_out in SHAPES:
        x, w, b = torch.randn(rows, n_in), torch.randn(n_out, n_in), torch.randn(n_out)
        F.linear(x, w, b)
        rates = []
        for _ in range(5):
            t0, runs = time.perf_counter(), 0
            while time.perf_counter() - t0 < seconds / 5:
                F.linear(x, w, b)
                runs += 1
            rates.append(2 * rows * n_in * n_out * runs / (time.perf_counter() - t0) / 1e9)
        print(json.dumps({"MKL_DEBUG_CPU_TYPE": os.environ.get("MKL_DEBUG_CPU_TYPE"), "shape": [rows, n_in, n_out],
                          "threads": threads, "gflops": round(statistics.median(rates), 1)}), flush=True)


@click.command()
@click.option("--threads", default=1, show_default=True, help="torch threads")
@click.option("--seconds", default=1.0, show_default=True, help="timing per shape and setting")
@click.option("--child", is_flag=True, hidden=True)
def main(threads: int, seconds: float, child: bool) -> None:
    """Each setting in a fresh process (MKL reads the variable once): the generic path
    (``MKL_DEBUG_CPU_TYPE=`` empty, what models leaves alone) and what importing models does."""
    if child:
        measure(threads, seconds)
        return
    for setting in ("", None):
        env = {k: v for k, v in os.environ.items() if k != "MKL_DEBUG_CPU_TYPE"}
        if setting is not None:
            env["MKL_DEBUG_CPU_TYPE"] = setting
        env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        subprocess.run([sys.executable, __file__, "--child", "--threads", str(threads), "--seconds", str(seconds)],
                       env=env, check=True)


if __name__ == "__main__":
    main()
