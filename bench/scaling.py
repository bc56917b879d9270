#!/usr/bin/env python3
"""Does ``afp-rescore`` scale linearly? Time and peak memory of one job over N copies of a lattice.

For each N, a directory of N links to the same real lattice file (one utterance each, as a
recognizer writes them) is rescored by one ``afp-rescore`` process; its wall time and peak RSS
(``wait4``) are recorded. With ``--baseline DIR`` (a checkout of older code, e.g.
``git worktree add /tmp/baseline REV``) the same jobs also run with that code, in the same run,
so the two are compared on the same machine under the same load.

Example::

    .venv/bin/python bench/scaling.py --lattice tests/data/lattices/theanolm/lattice.slf \\
        --lm exp/demo/lm/model.pt --ns 100,1000,10000 --out exp/bench-scaling --baseline /tmp/baseline
"""
import json
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional

import click

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_copies(lattice: str, n: int, out: str) -> str:
    """``out/lats-N/utt-00000.slf ...``: N symbolic links to ``lattice``."""
    folder = os.path.join(out, f"lats-{n}")
    os.makedirs(folder, exist_ok=True)
    suffix = ".slf.gz" if lattice.endswith(".gz") else ".slf"
    target = os.path.abspath(lattice)
    for i in range(n):
        link = os.path.join(folder, f"utt-{i:06d}{suffix}")
        if not os.path.islink(link):
            os.symlink(target, link)
    return folder


def run_job(code: str, lm: str, lats: str, out: str, flags: List[str], threads: int,
            program: str = "from rescore.cli import main; main()") -> Dict[str, float]:
    """One ``afp-rescore`` process run from the source tree ``code`` (``program``: the Python code
    that runs it with the arguments in ``sys.argv[1:]``); wall seconds and peak RSS."""
    env = {**os.environ, "PYTHONPATH": code, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-c", program, "--lm", lm, "--out", out, "--force",
           "--no-progress", *flags, lats]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=code, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) not in (0, 1) or not os.path.exists(os.path.join(out, "metrics.json")):
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    return {"wall_seconds": wall, "peak_rss_mib": usage.ru_maxrss / 1024, "utterances_done": metrics["utterances_done"],
            "arcs_after_expansion": metrics.get("arcs_after_expansion", 0)}


@click.command()
@click.option("--lattice", required=True, type=click.Path(exists=True, dir_okay=False), help="One real lattice file (copied N times).")
@click.option("--lm", required=True, type=click.Path(exists=True, dir_okay=False), help="LM checkpoint.")
@click.option("--ns", default="100,1000,10000", show_default=True, help="Comma-separated numbers of copies.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Work and output directory.")
@click.option("--baseline", type=click.Path(exists=True, file_okay=False), default=None,
              help="Source tree of older code to run the same jobs with (same run, same machine).")
@click.option("--flags", default="--lm-scale 10", show_default=True, help="Extra afp-rescore flags (both codes).")
@click.option("--threads", default=1, show_default=True, help="OMP_NUM_THREADS of the jobs.")
def main(lattice: str, lm: str, ns: str, out: str, baseline: Optional[str], flags: str, threads: int) -> None:
    """Rescore N copies of LATTICE for each N; print and write OUT/scaling.json."""
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    codes = {"new": ROOT, **({"baseline": os.path.abspath(baseline)} if baseline else {})}
    rows = []
    for n in (int(x) for x in ns.split(",")):
        lats = make_copies(lattice, n, out)
        for name, code in codes.items():
            r = run_job(code, os.path.abspath(lm), lats, os.path.join(out, f"{name}-{n}"), flags.split(), threads)
            row = {"code": name, "n": n, **r, "ms_per_utt": 1000 * r["wall_seconds"] / n}
            rows.append(row)
            click.echo(json.dumps(row))
    summary = {}
    for name in codes:
        mine = {r["n"]: r for r in rows if r["code"] == name}
        if 1000 in mine and 10000 in mine:
            summary[name] = {"time_per_utt_10k_over_1k": mine[10000]["ms_per_utt"] / mine[1000]["ms_per_utt"],
                             "peak_rss_10k_over_1k": mine[10000]["peak_rss_mib"] / mine[1000]["peak_rss_mib"]}
    click.echo(json.dumps(summary))
    with open(os.path.join(out, "scaling.json"), "w") as f:
        json.dump({"rows": rows, "summary": summary, "lattice": lattice, "lm": lm, "flags": flags, "threads": threads}, f, indent=2)


if __name__ == "__main__":
    main()
