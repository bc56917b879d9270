"""Prepare LM training text in the convention of ASR lattices: lowercase words (letters and
inner apostrophes), no punctuation, one sentence per line.

Usage: python bench/prepare_lm_text.py IN.txt [IN2.txt ...] OUT_DIR [--valid-lines N] [--test-lines N] [--max-lines N]
Writes OUT_DIR/{train,valid,test}.txt; valid/test are the last lines of each text (held out,
shared evenly between the texts).
Project Gutenberg headers/footers (``*** START`` ... ``*** END``) are dropped.
"""
import os
import re
from typing import List, Tuple

import click

from models.files import atomic_open

WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")
SPOKEN = {"mr": "mister", "mrs": "missus", "dr": "doctor"}  # abbreviations as LibriSpeech transcripts spell them


def sentences(text: str, min_words: int = 3):
    start, end = text.find("*** START"), text.find("*** END")
    if start >= 0:
        text = text[text.find("\n", start) + 1 : end if end > start else None]
    for chunk in SENTENCE_END.split(text):
        words = [SPOKEN.get(w, w) for w in WORD.findall(chunk.lower().replace("\u2019", "'"))]
        if len(words) >= min_words:
            yield " ".join(words)


@click.command(context_settings={"show_default": True})
@click.argument("texts", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--valid-lines", default=1000, help="Held-out validation sentences (in all).")
@click.option("--test-lines", default=1000, help="Held-out test sentences (in all).")
@click.option("--max-lines", default=0, help="Keep at most this many training sentences (0: all).")
def main(texts: Tuple[str, ...], out: str, valid_lines: int, test_lines: int, max_lines: int) -> None:
    """Normalise TEXTS into OUT/train.txt, valid.txt and test.txt."""
    train: List[str] = []
    valid: List[str] = []
    test: List[str] = []
    for i, text in enumerate(texts):
        lines = list(sentences(open(text, encoding="utf-8").read()))
        n_valid = valid_lines // len(texts) + (i < valid_lines % len(texts))
        n_test = test_lines // len(texts) + (i < test_lines % len(texts))
        if len(lines) <= n_valid + n_test:
            raise click.ClickException(f"{text}: only {len(lines)} sentences")
        train += lines[: len(lines) - n_valid - n_test]
        valid += lines[len(lines) - n_valid - n_test : len(lines) - n_test]
        test += lines[len(lines) - n_test :]
    if max_lines:
        train = train[:max_lines]
    os.makedirs(out, exist_ok=True)
    for name, part in (("train", train), ("valid", valid), ("test", test)):
        with atomic_open(os.path.join(out, f"{name}.txt")) as f:
            f.write("\n".join(part) + "\n")
        click.echo(f"{out}/{name}.txt: {len(part)} sentences, {sum(len(s.split()) for s in part)} words")


if __name__ == "__main__":
    main()
