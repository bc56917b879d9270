"""Collect afp-train-lm runs into a markdown table, plus a cross-evaluation of every model
under other recurrences (AFP-K for several K, and exact) on the test text.

Usage: python bench/lm_table.py --test ptb.test.txt --out table.md RUN/metrics.json...
"""
import json
import os
import platform
from typing import List, Optional

import click
import torch

from models.files import atomic_open
from models.perplexity import text_perplexity

EVAL_KS = (2, 4, 8)


def _fmt(x: Optional[float], spec: str) -> str:
    return "–" if x is None else format(x, spec)


@click.command(context_settings={"show_default": True})
@click.option("--test", required=True, type=click.Path(exists=True, dir_okay=False), help="Text for the cross-evaluation.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Markdown file to write.")
@click.argument("metrics", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def main(test: str, out: str, metrics: List[str]) -> None:
    """Summarise RUN/metrics.json files (written by afp-train-lm) as markdown."""
    runs = [(os.path.basename(os.path.dirname(p)), json.load(open(p))) for p in metrics]
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), device {runs[0][1]['device']}.",
        "",
        "| run | mode | K | epochs | steps | valid ppl | test ppl | train tokens/s | train s | valid fixed-point residual | valid gap to exact |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in runs:
        k = m["iterations"] if m["mode"] == "afp" else "∞"
        lines.append(
            f"| {name} | {m['mode']} | {k} | {m['epochs']} | {m['steps']} | {m['valid_ppl']:.2f} | {_fmt(m['test_ppl'], '.2f')} | "
            f"{m['train_tokens_per_s']:.0f} | {m['train_seconds']:.0f} | {_fmt(m['valid_fixed_point_residual'], '.3g')} | "
            f"{_fmt(m['valid_gap_to_exact'], '.3g')} |")
    header = " | ".join(f"run as AFP-{k}" for k in EVAL_KS)
    lines += ["", f"Test perplexity of each model when its recurrence is computed differently ({os.path.basename(test)}):", "",
              f"| model | {header} | run exact |", "|---|" + "---|" * (len(EVAL_KS) + 1)]
    for (name, _), path in zip(runs, metrics):
        lm = os.path.join(os.path.dirname(path), "model.pt")
        ppls = [text_perplexity(lm, test, "afp", k, device="cpu")["ppl"] for k in EVAL_KS]
        ppls.append(text_perplexity(lm, test, "exact", device="cpu")["ppl"])
        lines.append(f"| {name} | " + " | ".join(f"{p:.2f}" for p in ppls) + " |")
    with atomic_open(out) as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
