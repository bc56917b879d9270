#!/usr/bin/env python3
"""Streaming one big Kaldi archive: time and peak memory of reading it as ``afp-rescore`` does.

A Kaldi decode writes a few archives (``lat.1.gz`` ... ``lat.N.gz``) of many lattices each, not one
file per utterance. This writes the real lattices of ``LATTICES`` as one Kaldi archive (text and
binary), copies of them under new keys (``--copies``), and the largest binary one gzipped (read
as ``ark:gunzip -c FILE.gz |``, as Kaldi users read theirs), then streams each archive in batches
(:func:`lattices.reader.iter_lattice_batches`, ``--batch-arcs``) in a fresh process, whole and as
shard 0 of ``--shards``, and records the wall time and peak RSS. With ``--baseline DIR`` (older
code, e.g. ``git worktree add /tmp/baseline REV``) every read also runs with that code, in the
same run. Older code picks a shard's utterances by position (``k % N == I``), this code by a hash
of the id; both read about 1/N of them.

Example::

    .venv/bin/python bench/archive_stream.py exp/librispeech/lats --copies 10 --shards 10 \\
        --out exp/bench-archive-stream --baseline /tmp/baseline
"""
import gzip
import json
import os
import shutil
import subprocess
import sys
from typing import List, Optional

import click

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from replicate_archive import archive_entries, write_copies  # noqa: E402
from report import write_report  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READER = """
import json, resource, sys, time
from lattices.reader import expand_paths, iter_lattice_batches
path, n, batch_arcs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    from lattices.reader import shard_of
    keep = shard_of(0, n) if n > 1 else None
except ImportError:  # older code: shards by position
    keep = (lambda k: k % n == 0) if n > 1 else None
files, _ = expand_paths([path])
t0 = time.perf_counter()
utts = arcs = fails = 0
for batch, failures in iter_lattice_batches(files, batch_arcs=batch_arcs, keep=keep):
    utts += len(batch.utt_ids)
    arcs += int(batch.fsas.num_arcs) if len(batch.utt_ids) else 0
    fails += len(failures)
print(json.dumps({"seconds": time.perf_counter() - t0, "utterances": utts, "arcs": arcs, "failures": fails,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_archives(lattices: str, copies: int, out: str) -> List[str]:
    """``out/text-C.ark`` and ``out/binary-C.ark`` (C = 1 and ``copies``): the lattices as one Kaldi
    archive, and ``copies`` copies of them under the keys ``KEY-cJ``; a ``words.txt`` beside them."""
    from lattices.kaldi_archive import iter_kaldi_archive, kaldi_archive_bytes, word_lookup
    from lattices.reader import read_lattices

    os.makedirs(out, exist_ok=True)
    batch, failures = read_lattices([lattices])
    if failures:
        raise click.ClickException(f"{len(failures)} lattices of {lattices} cannot be read: {failures[0].message}")
    with open(os.path.join(out, "words.txt"), "w") as f:
        f.writelines(f"{batch.symbols.get(i)} {i}\n" for i in range(len(batch.symbols)))
    paths = []
    for kind in ("text", "binary"):
        entries = archive_entries(kaldi_archive_bytes(batch, binary=kind == "binary"), batch.utt_ids)
        for c in sorted({1, copies}):
            paths.append(os.path.join(out, f"{kind}-{c}.ark"))
            write_copies(entries, c, paths[-1])
    assert sum(1 for _ in iter_kaldi_archive(open(paths[0], "rb").read(), paths[0], word_lookup(batch.symbols))) == len(batch)
    gz = os.path.abspath(paths[-1]) + ".gz"  # the largest binary archive as Kaldi users read it: through a pipe
    with open(paths[-1], "rb") as src, gzip.open(gz, "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return paths + [f"ark:gunzip -c {gz} |"]


def read_once(code: str, path: str, shards: int, batch_arcs: int) -> dict:
    path = path if path.startswith("ark:") else os.path.abspath(path)
    proc = subprocess.run([sys.executable, "-c", READER, path, str(shards), str(batch_arcs)], cwd=code,
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": code, "OMP_NUM_THREADS": "1"})
    row = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
    if row is None or not row["utterances"]:
        raise click.ClickException(f"reading {path} with {code} failed or read nothing:\n{proc.stderr[-2000:]}")
    return row


@click.command(context_settings={"show_default": True})
@click.argument("lattices", type=click.Path(exists=True))
@click.option("--copies", type=click.IntRange(min=1), default=10, help="Copies of the lattices in the large archives.")
@click.option("--shards", type=click.IntRange(min=2), default=10, help="Also read shard 0 of this many from the large archives.")
@click.option("--batch-arcs", type=click.IntRange(min=1), default=50_000, help="Input arcs per batch (afp-rescore's default).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Archives, rows.jsonl and table.md go here.")
@click.option("--baseline", type=click.Path(exists=True, file_okay=False), default=None, help="Source tree of older code.")
def main(lattices: str, copies: int, shards: int, batch_arcs: int, out: str, baseline: Optional[str]) -> None:
    """Stream one-archive inputs with this code (and --baseline): seconds and peak RSS."""
    paths = write_archives(lattices, copies, out)
    codes = {"new": ROOT, **({"baseline": os.path.abspath(baseline)} if baseline else {})}
    rows = []
    for path in paths:
        piped = path.startswith("ark:")
        file = path.split()[-2] if piped else path
        for n in ([1, shards] if path.endswith(f"-{copies}.ark") and copies > 1 else [1]):
            for name, code in codes.items():
                r = read_once(code, path, n, batch_arcs)
                name_ = f"'ark:gunzip -c {os.path.basename(file)} \\|'" if piped else os.path.basename(path)
                rows.append({"archive": name_, "mib": os.path.getsize(file) / 2 ** 20, "shard": f"0/{n}", "code": name, **r})
                click.echo(json.dumps(rows[-1]), err=True)
    lines = ["| archive | MiB | shard | code | utterances | arcs | failures | seconds | peak RSS MiB |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['archive']} | {r['mib']:.0f} | {r['shard']} | {r['code']} | {r['utterances']} | {r['arcs']:,} | {r['failures']} | "
              f"{r['seconds']:.1f} | {r['peak_rss_mib']:.0f} |" for r in rows]
    write_report(out, rows, lines)


if __name__ == "__main__":
    main()
