#!/usr/bin/env python3
"""Lattice reading speed: ``read_lattices`` on real files, this code against older code in the same run.

For every input (a directory of SLF files, a Kaldi text archive, ...) and every source tree
(this one, and ``--baseline DIR``, e.g. ``git worktree add /tmp/baseline REV``), a fresh process
reads the input ``--repeat`` times and reports the best time, the arcs of the batch it built (links
kept + one final arc per final node), arcs/s and the number of links in the files.

Example::

    .venv/bin/python bench/read_speed.py exp/librispeech/lats exp/kaldi-text/lats.ark --baseline /tmp/baseline
"""
import json
import os
import subprocess
import sys

import click

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMER = """
import json, sys, time
from lattices.reader import read_lattices
best = None
for _ in range({repeat}):
    t0 = time.perf_counter()
    batch, failures = read_lattices([{path!r}])
    sec = time.perf_counter() - t0
    best = sec if best is None else min(best, sec)
print(json.dumps({{"seconds": best, "lattices": len(batch), "failures": len(failures), "arcs": int(batch.fsas.num_arcs)}}))
"""


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--baseline", type=click.Path(exists=True, file_okay=False), default=None, help="Source tree of older code.")
@click.option("--repeat", default=3, show_default=True, help="Reads per process (best kept).")
@click.option("--threads", default=1, show_default=True, help="OMP_NUM_THREADS.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Also write the rows as JSON.")
def main(inputs, baseline, repeat: int, threads: int, json_out) -> None:
    """Print one JSON line per (input, code)."""
    codes = {"new": ROOT, **({"baseline": os.path.abspath(baseline)} if baseline else {})}
    rows = []
    for path in inputs:
        for name, code in codes.items():
            env = {**os.environ, "PYTHONPATH": code, "OMP_NUM_THREADS": str(threads)}
            proc = subprocess.run([sys.executable, "-c", TIMER.format(repeat=repeat, path=os.path.abspath(path))],
                                  cwd=code, env=env, capture_output=True, text=True, check=True)
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append({"input": path, "code": name, **r, "arcs_per_s": r["arcs"] / r["seconds"]})
            click.echo(json.dumps(rows[-1]))
    if json_out:
        with open(json_out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
