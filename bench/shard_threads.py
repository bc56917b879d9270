#!/usr/bin/env python3
"""Sharded jobs on one machine: torch's default threads in every shard against the cores shared out.

``make rescore JOBS=N`` runs N ``afp-rescore`` shards at once. Each, left alone, takes one torch
thread per core, so N shards run N x cores threads on the cores. This runs the same ``make
rescore`` with ``RESCORE_THREADS=`` (torch's default in every shard) and with the Makefile's
default (cores / JOBS threads each), alternately and ``--repeat`` times, and reports the wall time
of each, the rescoring seconds summed over the shards (``metrics.json``), and whether the merged
``text`` is the same.

Example::

    .venv/bin/python bench/shard_threads.py --jobs 2,3 --repeat 2 --out exp/bench-shard-threads \\
        --lats data/demo/first-pass --lm data/demo/books-afp4-128.pt --ref data/demo/ref.txt --flags '--lm-scale 10'
"""
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Dict, List

import click

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import write_report  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = (("torch default", ["RESCORE_THREADS="]), ("cores / JOBS (make default)", []))


def run_make(jobs: int, make_vars: List[str], out: str, lats: str, lm: str, ref: str, flags: str) -> Dict[str, object]:
    """One ``make rescore`` into a fresh ``out``; wall seconds, summed rescoring seconds, merged text."""
    shutil.rmtree(out, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MAKEFLAGS", "MAKELEVEL")}
    cmd = ["make", "--no-print-directory", "rescore", f"LATS={lats}", f"LM={lm}", f"OUT={out}", f"JOBS={jobs}",
           f"REF={ref}", f"RESCORE_FLAGS=--no-progress {flags}", *make_vars]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    shard_seconds = 0.0
    for i in range(jobs):
        with open(os.path.join(out, "shards", str(i), "metrics.json")) as f:
            shard_seconds += json.load(f)["seconds"]
    with open(os.path.join(out, "metrics.json")) as f:
        wer = json.load(f).get("wer")
    with open(os.path.join(out, "text")) as f:
        text = f.read()
    return {"wall": wall, "rescore_seconds": shard_seconds, "wer": wer, "text": text}


@click.command(context_settings={"show_default": True})
@click.option("--jobs", default="2,3", help="Comma-separated JOBS values.")
@click.option("--repeat", type=click.IntRange(min=1), default=2, help="Runs of each setting (alternating).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Work directory; table.md and rows.jsonl go here.")
@click.option("--lats", required=True, help="LATS of make rescore.")
@click.option("--lm", required=True, type=click.Path(exists=True), help="LM of make rescore.")
@click.option("--ref", required=True, type=click.Path(exists=True), help="REF of make rescore.")
@click.option("--flags", default="", help="Extra afp-rescore flags (RESCORE_FLAGS).")
def main(jobs: str, repeat: int, out: str, lats: str, lm: str, ref: str, flags: str) -> None:
    """Time make rescore with torch's default threads per shard against cores/JOBS."""
    os.makedirs(out, exist_ok=True)
    rows = []
    for n in (int(j) for j in jobs.split(",")):
        texts = set()
        for r in range(repeat):
            for name, make_vars in SETTINGS:
                res = run_make(n, make_vars, os.path.join(out, "job"), lats, lm, ref, flags)
                texts.add(res.pop("text"))
                rows.append({"jobs": n, "threads": name, "run": r + 1, **res})
                click.echo(json.dumps(rows[-1]), err=True)
        for row in rows:
            if row["jobs"] == n:
                row["same_text"] = len(texts) == 1
    lines = [f"cores: {os.cpu_count()}", "",
             "| JOBS | threads per shard | run | wall s | rescoring s (sum over shards) | WER % | same text |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['jobs']} | {r['threads']} | {r['run']} | {r['wall']:.2f} | {r['rescore_seconds']:.2f} | "
              f"{100 * r['wer']:.2f} | {'yes' if r['same_text'] else 'no'} |" for r in rows]
    write_report(out, rows, lines)


if __name__ == "__main__":
    main()
