#!/usr/bin/env python3
"""How well CTM confidences predict correct words: bins of confidence against the fraction of
words that are correct, and the normalised cross entropy (NCE, NIST's measure; > 0 means the
confidences carry information beyond the overall accuracy).

A CTM word is correct when the minimum-edit alignment of its utterance's hypothesis (the CTM's
words in order) with the reference matches it (``kaldialign.align``, case-insensitive).

Example::

    .venv/bin/python bench/ctm_confidence.py OUT/ctm exp/librispeech/ref.txt
"""
import math
from collections import defaultdict

import click
import kaldialign

from models.files import read_references, read_text

EPS = "*"


@click.command()
@click.argument("ctm", type=click.Path(exists=True, dir_okay=False))
@click.argument("ref", type=click.Path(exists=True, dir_okay=False))
@click.option("--bins", default=5, show_default=True, help="Equal-width confidence bins.")
def main(ctm: str, ref: str, bins: int) -> None:
    """Print a Markdown table of confidence bins and the NCE."""
    refs = read_references(ref)
    words = defaultdict(list)
    for line in read_text(ctm).splitlines():
        utt, _, _, _, word, conf = line.split()
        words[utt].append((word, float(conf)))
    pairs = []  # (confidence, correct)
    for utt, hyp in words.items():
        ali = kaldialign.align([w.lower() for w in refs.get(utt, [])], [w.lower() for w, _ in hyp], EPS)
        k = 0
        for r, h in ali:
            if h != EPS:
                pairs.append((hyp[k][1], r == h))
                k += 1
    n, correct = len(pairs), sum(c for _, c in pairs)
    print(f"{n} words, {correct} correct ({100 * correct / max(n, 1):.1f} %)\n")
    print("| confidence | words | correct % | mean confidence |")
    print("|---|---|---|---|")
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = [(p, c) for p, c in pairs if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        if inside:
            acc = 100 * sum(c for _, c in inside) / len(inside)
            mean = sum(p for p, _ in inside) / len(inside)
            print(f"| [{lo:.1f}, {hi:.1f}{']' if b == bins - 1 else ')'} | {len(inside)} | {acc:.1f} | {mean:.3f} |")
    p_c = correct / max(n, 1)
    if 0 < p_c < 1:
        h_max = -(correct * math.log2(p_c) + (n - correct) * math.log2(1 - p_c))
        clip = lambda p: min(max(p, 1e-6), 1 - 1e-6)  # noqa: E731
        h = -sum(math.log2(clip(p)) if c else math.log2(1 - clip(p)) for p, c in pairs)
        print(f"\nNCE = {(h_max - h) / h_max:.3f}")


if __name__ == "__main__":
    main()
