"""Normalise the public-domain books (``../shared/data/text/books``) into LM text in the
convention of the lattices, holding out *whole books* for validation and test.

Usage: python bench/prepare_books.py BOOKS_DIR OUT_DIR [--valid-books N] [--test-books N] [--ref REF.txt]

Each ``*.txt.gz`` in BOOKS_DIR holds one paragraph per line; ``MANIFEST.tsv`` says where each book
starts. Sentences are normalised as :func:`prepare_lm_text.sentences` does (lower case, letters
and inner apostrophes, ``mr`` -> ``mister``). Every ``len(books) // N``-th book (from a seeded
shuffle) goes to validation, the next ones to test. Writes ``OUT/{train,valid,test}.txt.gz``,
``OUT/books.tsv`` (which book went where) and ``OUT/oov.tsv``: the OOV rate of the held-out text
and of ``--ref`` transcripts for vocabularies of the most frequent training words.
"""
import collections
import contextlib
import csv
import gzip
import os
import random
from typing import Dict, List, Sequence, Tuple

import click

from models.files import atomic_open, read_references
from prepare_lm_text import sentences


def read_manifest(books_dir: str) -> List[Dict[str, str]]:
    """Rows of ``MANIFEST.tsv`` (corpus, book, first_line, lines, words, source)."""
    path = os.path.join(books_dir, "MANIFEST.tsv")
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        raise click.ClickException(f"{path}: no books listed")
    return rows


def split_books(rows: Sequence[Dict[str, str]], valid_books: int, test_books: int, seed: int) -> Dict[Tuple[str, str], str]:
    """``(corpus, book) -> 'train' | 'valid' | 'test'``, whole books held out at random (seeded)."""
    keys = [(r["corpus"], r["book"]) for r in rows]
    if valid_books + test_books >= len(keys):
        raise click.ClickException(f"cannot hold out {valid_books + test_books} of {len(keys)} books")
    order = list(keys)
    random.Random(seed).shuffle(order)
    part = {k: "train" for k in keys}
    part.update({k: "valid" for k in order[:valid_books]})
    part.update({k: "test" for k in order[valid_books : valid_books + test_books]})
    return part


def oov_rates(counts: collections.Counter, held_out: Dict[str, collections.Counter], sizes: Sequence[int]) -> List[List[str]]:
    """Rows ``[vocab, name, tokens, oov %]``: OOV rate of each held-out word count under the
    ``size`` most frequent training words."""
    ranked = [w for w, _ in counts.most_common()]
    rows = []
    for size in sizes:
        vocab = set(ranked[:size])
        for name, c in held_out.items():
            total = sum(c.values())
            oov = sum(n for w, n in c.items() if w not in vocab)
            rows.append([str(size), name, str(total), f"{100.0 * oov / max(total, 1):.2f}"])
    return rows


@click.command(context_settings={"show_default": True})
@click.argument("books_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--valid-books", default=10, help="Whole books held out for validation.")
@click.option("--test-books", default=10, help="Whole books held out for test.")
@click.option("--seed", default=1, help="Seed of the held-out book choice.")
@click.option("--ref", "refs", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Reference transcripts ('utt-id words...') whose OOV rate to report.")
@click.option("--vocab-sizes", default="10000,20000,30000,50000,100000", help="Vocabulary sizes for oov.tsv.")
def main(books_dir: str, out: str, valid_books: int, test_books: int, seed: int, refs: Tuple[str, ...], vocab_sizes: str) -> None:
    """Normalise the books in BOOKS_DIR into OUT/{train,valid,test}.txt.gz (held-out whole books)."""
    rows = read_manifest(books_dir)
    part = split_books(rows, valid_books, test_books, seed)
    os.makedirs(out, exist_ok=True)
    counts = {name: collections.Counter() for name in ("train", "valid", "test")}
    sents = collections.Counter()
    by_corpus: Dict[str, List[Dict[str, str]]] = collections.defaultdict(list)
    for r in rows:
        by_corpus[r["corpus"]].append(r)
    with contextlib.ExitStack() as stack:
        writers = {name: stack.enter_context(atomic_open(os.path.join(out, f"{name}.txt.gz"))) for name in counts}
        for corpus, books in by_corpus.items():
            path = os.path.join(books_dir, f"{corpus}.txt.gz")
            with gzip.open(path, "rt", encoding="utf-8") as f:
                lines = f.read().split("\n")
            for book in books:
                name = part[(corpus, book["book"])]
                first = int(book["first_line"]) - 1
                for paragraph in lines[first : first + int(book["lines"])]:
                    for s in sentences(paragraph):
                        writers[name].write(s + "\n")
                        counts[name].update(s.split())
                        sents[name] += 1
            click.echo(f"{path}: {len(books)} books", err=True)
    for name in counts:
        click.echo(f"{out}/{name}.txt.gz: {sents[name]} sentences, {sum(counts[name].values())} words")
    with atomic_open(os.path.join(out, "books.tsv")) as f:
        f.write("corpus\tbook\tpart\n" + "".join(f"{c}\t{b}\t{p}\n" for (c, b), p in part.items()))
    held_out = {"valid": counts["valid"], "test": counts["test"]}
    for ref in refs:
        held_out[os.path.basename(ref)] = collections.Counter(w.lower() for ws in read_references(ref).values() for w in ws)
    table = oov_rates(counts["train"], held_out, [int(s) for s in vocab_sizes.split(",")])
    with atomic_open(os.path.join(out, "oov.tsv")) as f:
        f.write("vocab\ttext\ttokens\toov_percent\n" + "".join("\t".join(r) + "\n" for r in table))
    click.echo("".join("\t".join(r) + "\n" for r in table))


if __name__ == "__main__":
    main()
