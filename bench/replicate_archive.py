#!/usr/bin/env python3
"""Copies of a Kaldi archive's lattices under new keys (``KEY-cJ``), byte for byte: a large
archive of real lattices (e.g. the real binary ``lat.1`` of the tests, with its transition ids)
for reading benchmarks.

Example::

    .venv/bin/python bench/replicate_archive.py tests/data/lattices/kaldi-binary/lat.1 --copies 300 \\
        --out exp/bench-read/lat1-x300/lats.ark
"""
import os
from typing import List, Sequence, Tuple

import click


def archive_entries(data: bytes, keys: Sequence[str]) -> List[Tuple[str, bytes, bytes]]:
    """``(key, separator, object bytes)`` of each entry of a whole archive whose keys are ``keys``
    in order, split where the reader splits them."""
    from lattices.kaldi_archive import skip_object

    entries, pos = [], 0
    for key in keys:
        at = data.index(key.encode(), pos)
        sep = data[at + len(key):at + len(key) + 1]  # " " before a binary object, "\n" before a text one
        start = at + len(key) + 1
        pos = skip_object(data, start, key)
        entries.append((key, sep, data[start:pos]))
    return entries


def write_copies(entries: Sequence[Tuple[str, bytes, bytes]], copies: int, path: str) -> None:
    """``copies`` copies of ``entries`` as one archive (the keys as they are when ``copies`` is 1)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        for j in range(copies):
            for key, sep, obj in entries:
                f.write((key if copies == 1 else f"{key}-c{j}").encode() + sep + obj)


@click.command(context_settings={"show_default": True})
@click.argument("archive", type=click.Path(exists=True, dir_okay=False))
@click.option("--copies", type=click.IntRange(min=1), default=100, help="Copies of every lattice.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The archive to write.")
def main(archive: str, copies: int, out: str) -> None:
    """Write COPIES copies of ARCHIVE's lattices, under new keys, to OUT."""
    from lattices.fsa_build import Failure
    from lattices.kaldi_archive import IdsAsWords, iter_kaldi_archive

    data = open(archive, "rb").read()
    items = list(iter_kaldi_archive(data, archive, IdsAsWords()))
    bad = [x for x in items if isinstance(x, Failure)]
    if bad:
        raise click.ClickException(f"{archive} has lattices that cannot be read: {bad[0].message}")
    write_copies(archive_entries(data, [x.utt_id for x in items]), copies, out)


if __name__ == "__main__":
    main()
