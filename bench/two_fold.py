"""Two-fold tuned WER with the real CLI: ``afp-tune`` on one fold, ``afp-rescore --scales`` on the
other, and the other way round; the errors of the two held-out folds are summed.

Usage:
    python bench/two_fold.py --lats DIR --ref REF --fold-a SPK,SPK,... --out OUT \\
        --common "--lm LM --old-lm ARPA --max-arcs 200000" [--tune "--lm-scales 8,10,12"] [--rescore "..."]

The folds split the lattice files by speaker (the file name up to the first ``-``). ``--common``
goes to both commands, ``--tune`` to ``afp-tune`` only, ``--rescore`` to ``afp-rescore`` only.
Writes ``OUT/{A,B}.txt`` (the fold lists), ``OUT/scales-{A,B}.json``, ``OUT/on-{A,B}/`` (the
held-out rescoring) and ``OUT/result.json``: errors, words, WER and seconds of each step.
"""
import json
import os
import shlex
import subprocess
import sys
import time
from typing import Dict, List, Sequence

import click

from models.files import atomic_open

BIN = os.path.dirname(sys.executable)


def fold_lists(lats: str, fold_a: Sequence[str]) -> Dict[str, List[str]]:
    """``{"A": paths, "B": paths}``: the lattice files of the speakers in ``fold_a`` and the rest."""
    files = sorted(os.path.abspath(os.path.join(lats, f)) for f in os.listdir(lats) if not f.startswith("."))
    folds: Dict[str, List[str]] = {"A": [], "B": []}
    for path in files:
        folds["A" if os.path.basename(path).split("-")[0] in fold_a else "B"].append(path)
    if not folds["A"] or not folds["B"]:
        raise click.ClickException(f"{lats}: fold A has {len(folds['A'])} files and fold B {len(folds['B'])}; both must have some")
    return folds


def run(cmd: List[str]) -> float:
    """Run ``cmd`` (failing loudly), returning its wall-clock seconds."""
    t0 = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        raise click.ClickException(f"{shlex.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}")
    return time.perf_counter() - t0


@click.command(context_settings={"show_default": True})
@click.option("--lats", required=True, type=click.Path(exists=True, file_okay=False), help="Directory of lattice files.")
@click.option("--ref", required=True, type=click.Path(exists=True, dir_okay=False), help="References.")
@click.option("--fold-a", required=True, help="Comma-separated speakers of fold A.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--common", default="", help="Options for both afp-tune and afp-rescore (one shell-quoted string).")
@click.option("--tune", "tune_args", default="", help="Options for afp-tune only.")
@click.option("--rescore", "rescore_args", default="", help="Options for afp-rescore only.")
def main(lats: str, ref: str, fold_a: str, out: str, common: str, tune_args: str, rescore_args: str) -> None:
    """Tune on each fold, rescore the other; write OUT/result.json and print the 2-fold WER."""
    folds = fold_lists(lats, fold_a.split(","))
    os.makedirs(out, exist_ok=True)
    result: Dict[str, object] = {"common": common, "tune": tune_args, "rescore": rescore_args, "folds": {}}
    errors = words = 0
    for dev, test in (("A", "B"), ("B", "A")):
        for name in (dev, test):
            with atomic_open(os.path.join(out, f"{name}.txt")) as f:
                f.write("\n".join(folds[name]) + "\n")
        scales = os.path.join(out, f"scales-{dev}.json")
        held_out = os.path.join(out, f"on-{test}")
        tune_s = run([os.path.join(BIN, "afp-tune"), f"@{out}/{dev}.txt", "--ref", ref, "--out", scales,
                      *shlex.split(common), *shlex.split(tune_args)])
        rescore_s = run([os.path.join(BIN, "afp-rescore"), f"@{out}/{test}.txt", "--ref", ref, "--scales", scales,
                         "--out", held_out, "--force", "--no-progress", *shlex.split(common), *shlex.split(rescore_args)])
        with open(os.path.join(held_out, "metrics.json"), encoding="utf-8") as f:
            metrics = json.load(f)
        with open(scales, encoding="utf-8") as f:
            tuned = json.load(f)
        fold = {"scales": {k: tuned[k] for k in ("am_scale", "lm_scale", "word_penalty", "interpolate")},
                "dev_errors": tuned["errors"], "dev_words": tuned["ref_words"], "errors": metrics["wer_errors"],
                "words": metrics["ref_words"], "tune_seconds": round(tune_s, 1), "rescore_seconds": round(rescore_s, 1)}
        result["folds"][f"tuned on {dev}, tested on {test}"] = fold  # type: ignore[index]
        errors += metrics["wer_errors"]
        words += metrics["ref_words"]
        click.echo(f"tuned on {dev} ({fold['scales']}), {test}: {fold['errors']}/{fold['words']} errors; "
                   f"tune {tune_s:.1f} s, rescore {rescore_s:.1f} s", err=True)
    result.update(errors=errors, words=words, wer=errors / max(words, 1))
    with atomic_open(os.path.join(out, "result.json")) as f:
        json.dump(result, f, indent=2)
    click.echo(f"{out}: 2-fold WER {100 * errors / max(words, 1):.2f}% ({errors}/{words})")


if __name__ == "__main__":
    main()
