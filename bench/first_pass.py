#!/usr/bin/env python3
"""Where a CLI job with an n-gram first pass spends its time, for several ``--batch-arcs``.

With ``--old-lm`` and ``--first-pass-beam``, ``afp-rescore`` expands every raw lattice to the
n-gram's histories within ``--first-pass-max-arcs`` (``rescore.fit.expand_within``) before the
new LM sees the pruned lattices, and on acoustic-only lattices that first pass is nearly the
whole job. This runs one ``afp-rescore`` process per ``--batch-arcs`` value, with timers around
the stages of that expansion:

- ``lookahead``: the LM look-ahead's per-arc scores (``rescore.lookahead.Lookahead.viterbi``: the
  order-1 expansion of the whole batch, its LM scores and a Viterbi pass);
- each call of the growth (``rescore.grow.grow``) by kind: ``order1`` (the look-ahead's), ``unpruned``
  (the small utterances, within ``max_arcs``), ``fit`` (pruned to fit, ``FitBeams``) and ``recheck``
  (``FitBeams`` from a given beam): calls, seconds, topological levels walked, arcs built and kept;
- ``first_pass``: the whole first pass (``rescore.pipeline.first_pass``, once per batch read:
  validation, the expansion, the n-gram's scores, the search and the prune);

plus the job's wall time and peak RSS (``wait4``), its errors and whether its
``text`` equals that of the first value (the outputs must not depend on the batch size).

Example::

    .venv/bin/python bench/first_pass.py run --lm exp/bench-librispeech/lm/afp4sn/model.pt \\
        --flags '--no-normalize --old-lm exp/ngram/en-us.arpa.gz --lm-scale 12 --word-penalty 0 \\
        --interpolate 0.25 --first-pass-beam 20 --no-ctm --device cpu' \\
        --batch-arcs 50000,200000,1000000 --out exp/bench-first-pass exp/librispeech/lats

With ``--baseline DIR`` (a checkout of older code, e.g. ``git worktree add /tmp/baseline REV``) each
job also runs with that code right after, so the two are compared under the same load.
"""
import collections
import filecmp
import functools
import inspect
import itertools
import json
import os
import sys
import time
from typing import Dict, List, Optional

import click

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scaling import ROOT, run_job  # noqa: E402

KINDS = ("order1", "unpruned", "fit", "recheck")


def _empty_row() -> List[float]:
    """A stage's timings before its first call: ``[calls, seconds, levels, arcs built, arcs kept]``."""
    return [0, 0.0, 0, 0, 0]


def _install_timers(timings: Dict[str, List[float]]) -> None:
    """Wrap the first pass, and inside it the growth and the look-ahead, so that each call adds to
    ``timings``: ``kind -> [calls, seconds, levels, arcs built, arcs kept]`` (the new LM's own
    expansion, after the first pass, is not counted)."""
    import rescore.expand
    import rescore.grow
    import rescore.lookahead
    import rescore.regroup

    inside = [False]  # in a first pass

    def timed(key, function, outer: bool = False):
        """``function``, timed into ``timings[key]`` (``key`` of the call for the growth) when it is
        the first pass (``outer``) or runs inside one."""
        @functools.wraps(function)  # its signature too (_kind binds the growth's arguments)
        def wrapper(*args, **kwargs):
            if not (outer or inside[0]):
                return function(*args, **kwargs)
            inside[0] = True
            t0 = time.perf_counter()
            try:
                result = function(*args, **kwargs)
            finally:
                inside[0] = not outer
            seconds = time.perf_counter() - t0
            growth = callable(key)
            row = timings[key(args, kwargs) if growth else key]
            for i, x in enumerate((1, seconds) + (_growth(args, kwargs, result) if growth else ())):
                row[i] += x
            return result
        return wrapper

    rescore.grow.grow = rescore.expand.grow = timed(_kind, rescore.grow.grow)
    rescore.lookahead.Lookahead.viterbi = timed("lookahead", rescore.lookahead.Lookahead.viterbi)
    rescore.regroup.first_pass = timed("first_pass", rescore.regroup.first_pass, outer=True)


def _kind(args: tuple, kwargs: dict) -> str:
    """The kind of a call of :func:`rescore.grow.grow` with these arguments."""
    import rescore.grow

    bound = inspect.signature(rescore.grow.grow).bind(*args, **kwargs).arguments
    max_arcs, fit = bound.get("max_arcs"), bound.get("fit")
    return "order1" if max_arcs is None and fit is None else "unpruned" if fit is None else \
        "fit" if fit.start is None else "recheck"


def _growth(args: tuple, kwargs: dict, grown) -> tuple:
    """``(levels walked, arcs built, arcs kept)`` of a call of ``grow`` (order 1 walks no levels)."""
    arcs = args[0]
    walked = _kind(args, kwargs) != "order1" and arcs.levels.numel()
    return (int(arcs.levels.max()) + 1 if walked else 0), grown.arc_orig.numel(), int(grown.arc_kept.sum())


@click.group()
def cli() -> None:
    """Time the stages of the n-gram first pass of afp-rescore."""


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--timings", required=True, type=click.Path(dir_okay=False), help="Where to write the stage timings (JSON).")
@click.pass_context
def job(ctx: click.Context, timings: str) -> None:
    """Run afp-rescore with the remaining arguments, timing its first pass's stages."""
    from rescore.cli import rescore_command

    acc: Dict[str, List[float]] = collections.defaultdict(_empty_row)
    _install_timers(acc)
    try:
        rescore_command.main(args=ctx.args, prog_name="afp-rescore")  # exits with its status
    finally:
        with open(timings, "w") as f:
            json.dump(acc, f, indent=1)


@cli.command()
@click.option("--lm", required=True, type=click.Path(exists=True, dir_okay=False), help="The new LM checkpoint.")
@click.option("--flags", required=True, help="The other afp-rescore flags (an --old-lm and a --first-pass-beam; absolute paths, as the baseline runs in its own tree).")
@click.option("--batch-arcs", "batch_arcs", default="50000,200000,1000000", show_default=True,
              help="Comma-separated --batch-arcs values, one job each.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Work and output directory.")
@click.option("--threads", default=1, show_default=True, help="OMP_NUM_THREADS of the jobs.")
@click.option("--baseline", type=click.Path(exists=True, file_okay=False), default=None,
              help="Source tree of older code to run the same jobs with, after each job of this code (same run).")
@click.argument("lattices", type=click.Path(exists=True))
def run(lm: str, flags: str, batch_arcs: str, out: str, threads: int, baseline: Optional[str], lattices: str) -> None:
    """One job per --batch-arcs value (and code); prints the rows and writes OUT/first_pass.json and OUT/table.md."""
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    script = os.path.abspath(__file__)
    codes = {"new": ROOT, **({"baseline": os.path.abspath(baseline)} if baseline else {})}
    rows = []
    for b, (name, code) in itertools.product((int(x) for x in batch_arcs.split(",")), codes.items()):
        job_out, timings = os.path.join(out, f"{name}-{b}"), os.path.join(out, f"timings-{name}-{b}.json")
        program = (f"import runpy, sys; sys.argv = [{script!r}, 'job', '--timings', {timings!r}] + sys.argv[1:]; "
                   f"runpy.run_path({script!r}, run_name='__main__')")
        r = run_job(code, os.path.abspath(lm), os.path.abspath(lattices), job_out,
                    ["--batch-arcs", str(b), *flags.split()], threads, program=program)
        with open(timings) as f, open(os.path.join(job_out, "metrics.json")) as g:
            stages, metrics = json.load(f), json.load(g)
        same = filecmp.cmp(os.path.join(job_out, "text"), os.path.join(rows[0]["out"], "text"), shallow=False) if rows else True
        row = {"code": name, "batch_arcs": b, "out": job_out, **r, "batches": stages["first_pass"][0], "errors": metrics.get("wer_errors"),
               "first_pass_seconds": metrics.get("first_pass_seconds"), "same_text_as_first": same, "stages": stages}
        rows.append(row)
        click.echo(json.dumps({k: v for k, v in row.items() if k != "stages"}))
    with open(os.path.join(out, "first_pass.json"), "w") as f:
        json.dump({"rows": rows, "lm": lm, "flags": flags, "threads": threads, "lattices": lattices}, f, indent=2)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(_table(rows))
    click.echo(_table(rows))


def _table(rows: List[dict]) -> str:
    """The rows as a markdown table: seconds by stage, levels and arcs by kind of growth."""
    lines = ["| code | `--batch-arcs` | batches | wall s | peak RSS MiB | first pass s | look-ahead s "
             "| growth s (order1 / unpruned / fit / recheck) | levels (unpruned / fit / recheck) "
             "| arcs built (order1 / fit / recheck) | arcs kept (fit / recheck) | errors | same text |",
             "|" + "---|" * 13]
    for r in rows:
        s = collections.defaultdict(_empty_row, r["stages"])
        lines.append(
            f"| {r['code']} | {r['batch_arcs']:,} | {r['batches']} | {r['wall_seconds']:.1f} | {r['peak_rss_mib']:.0f} "
            f"| {s['first_pass'][1]:.1f} | {s['lookahead'][1]:.1f} "
            f"| {' / '.join(f'{s[k][1]:.1f}' for k in KINDS)} | {' / '.join(f'{s[k][2]:,}' for k in KINDS[1:])} "
            f"| {' / '.join(f'{s[k][3] / 1e6:.1f}M' for k in ('order1', 'fit', 'recheck'))} "
            f"| {' / '.join(f'{s[k][4] / 1e6:.2f}M' for k in ('fit', 'recheck'))} | {r['errors']} | {'yes' if r['same_text_as_first'] else 'NO'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    cli()
