#!/usr/bin/env python3
"""WER against rescoring time: AFP-K lattice rescoring over ``--max-arcs`` versus exact N-best.

Every point is one ``afp-rescore`` job over the same lattices with the same LM and scales, run
one after another in this process's run (so on the same machine under the same load):

- ``afp``: K-history expansion with ``--max-arcs M`` (lattices whose expansion exceeds M are
  beam-pruned to fit), one LM pass, exact 1-best;
- ``nbest-exact``: the exact N-best list of each lattice rescored by the same model run with full
  history.

Seconds are the job's rescoring seconds (``metrics.json`` ``seconds``: expansion + LM + search,
or N-best + LM; reading excluded) and its wall time. Output: ``OUT/wer_time.json`` and
``OUT/wer_time.md``, one row per point, plus which method gives the lowest WER within each
method's time.

Example::

    .venv/bin/python bench/wer_time.py --lm exp/bench-librispeech/lm/afp4/model.pt \\
        --lats exp/librispeech/lats --ref exp/librispeech/ref.txt --out exp/bench-wer-time \\
        --max-arcs 10000,30000,100000,300000 --nbest 10,100,1000
"""
import json
import os
import subprocess
import sys
import time
from typing import Dict, List

import click

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_point(args: List[str], out: str, threads: int) -> Dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-c", "from rescore.cli import main; main()", *args, "--out", out, "--force", "--no-progress"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1) or not os.path.exists(os.path.join(out, "metrics.json")):
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    with open(os.path.join(out, "metrics.json")) as f:
        m = json.load(f)
    return {"wer": m["wer"], "errors": m["wer_errors"], "ref_words": m["ref_words"], "seconds": m["seconds"],
            "wall_seconds": wall, "failed": m["utterances_failed"], "pruned": len(m.get("pruned") or {}),
            "expanded_arcs": m.get("arcs_after_expansion"), "distinct_histories": m.get("distinct_histories")}


@click.command(context_settings={"show_default": True})
@click.option("--lm", required=True, type=click.Path(exists=True, dir_okay=False), help="AFP checkpoint (both methods use it).")
@click.option("--lats", required=True, type=click.Path(exists=True), help="Lattices.")
@click.option("--ref", required=True, type=click.Path(exists=True, dir_okay=False), help="References.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--max-arcs", "max_arcs", default="10000,30000,100000,300000", help="Comma-separated --max-arcs values (AFP).")
@click.option("--nbest", "nbests", default="10,100,1000", help="Comma-separated N (exact N-best).")
@click.option("--flags", default="--am-scale 1 --lm-scale 10 --word-penalty 0 --device cpu", help="Flags of every job.")
@click.option("--threads", default=1, help="OMP_NUM_THREADS of the jobs.")
def main(lm: str, lats: str, ref: str, out: str, max_arcs: str, nbests: str, flags: str, threads: int) -> None:
    """Run every point and write OUT/wer_time.{json,md}."""
    os.makedirs(out, exist_ok=True)
    common = ["--lm", os.path.abspath(lm), "--ref", os.path.abspath(ref), *flags.split(), os.path.abspath(lats)]
    rows = []
    for m in (int(x) for x in max_arcs.split(",")):
        r = run_point(["--method", "afp", "--max-arcs", str(m), *common], os.path.join(os.path.abspath(out), f"afp-{m}"), threads)
        rows.append({"method": "afp", "setting": f"--max-arcs {m}", **r})
        click.echo(json.dumps(rows[-1]))
    for n in (int(x) for x in nbests.split(",")):
        r = run_point(["--method", "nbest-exact", "--nbest", str(n), *common], os.path.join(os.path.abspath(out), f"nbest-{n}"), threads)
        rows.append({"method": "nbest-exact", "setting": f"--nbest {n}", **r})
        click.echo(json.dumps(rows[-1]))
    lines = ["| method | setting | WER % | errors | rescoring s | wall s | expanded arcs | distinct histories | utts pruned |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['setting']} | {100 * r['wer']:.2f} | {r['errors']} | {r['seconds']:.1f} | "
                     f"{r['wall_seconds']:.1f} | {r['expanded_arcs'] or '—'} | {r['distinct_histories'] or '—'} | "
                     f"{r['pruned'] if r['method'] == 'afp' else '—'} |")
    frontier = []  # the points no other point beats in both WER and time
    for r in rows:
        if not any(o is not r and o["seconds"] <= r["seconds"] and o["errors"] < r["errors"] for o in rows):
            frontier.append(f"{r['method']} {r['setting']} ({r['seconds']:.1f} s, {100 * r['wer']:.2f} %)")
    lines += ["", "Lowest WER for its time (no other point is both faster and better): " + "; ".join(frontier)]
    with open(os.path.join(out, "wer_time.json"), "w") as f:
        json.dump({"rows": rows, "lm": lm, "lats": lats, "flags": flags, "threads": threads}, f, indent=2)
    with open(os.path.join(out, "wer_time.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
