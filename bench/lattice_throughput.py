#!/usr/bin/env python3
"""Lattice benchmark: n-best throughput on CPU, 1-best WER and oracle WER.

Reads the lattices once (timed separately), validates them, then times ``lattices.nbest.nbest``
for each ``-n`` (best of ``--repeat`` runs, after one warm-up) and reports lattices/s and arcs/s.
With ``--ref`` (Kaldi text or lhotse supervisions) it also reports the WER of the 1-best under the
chosen scales (kaldialign) and the lattice oracle WER, both after the same word normalisation and
case folding as ``afp-lattice oracle``.

Example::

    .venv/bin/python bench/lattice_throughput.py exp/librispeech/lats \\
        --ref exp/librispeech/ref.txt -n 1 -n 10 -n 100 --json exp/librispeech/lattice_bench.json
"""
import json
import os
import platform
import sys
import time
from typing import List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import click  # noqa: E402
import torch  # noqa: E402

from lattices.cli.common import FORMATS, resolve_scales  # noqa: E402
from lattices.nbest import nbest  # noqa: E402
from lattices.normalize import NormalizationRules, normalize_words  # noqa: E402
from lattices.oracle import oracle_wer  # noqa: E402
from models.files import read_references  # noqa: E402
from lattices.reader import read_lattices  # noqa: E402
from lattices.validate import select_lattices, validate_batch  # noqa: E402
from models.files import atomic_open  # noqa: E402
from rescore.wer import wer_details  # noqa: E402


def _wer(pairs: List[Tuple[List[str], List[str]]]) -> Tuple[int, int]:
    """(errors, reference words) of (ref, hyp) pairs, via :func:`rescore.wer.wer_details`."""
    result = wer_details({str(i): r for i, (r, _) in enumerate(pairs)}, {str(i): h for i, (_, h) in enumerate(pairs)})
    return result.errors, result.ref_words


@click.command()
@click.argument("lattices", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True, help="Lattice format.")
@click.option("--words", type=click.Path(exists=True, dir_okay=False), default=None, help="words.txt for Kaldi lattices.")
@click.option("--ref", "ref_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="References (Kaldi text or lhotse supervisions) for 1-best and oracle WER.")
@click.option("--hyp", "hyp_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="With --ref: also score this Kaldi text (e.g. the recognizer's own 1-best) on the same utterances.")
@click.option("-n", "ns", type=int, multiple=True, default=(1, 10, 100), show_default=True, help="n-best sizes to time.")
@click.option("--repeat", type=click.IntRange(min=1), default=3, show_default=True, help="Timed runs per n (best kept).")
@click.option("--am-scale", type=float, default=None, help="Acoustic scale (default: header, else 1).")
@click.option("--lm-scale", type=float, default=None, help="LM scale (default: header, else 1).")
@click.option("--word-penalty", type=float, default=None, help="Word penalty (default: header, else 0).")
@click.option("--threads", type=int, default=1, show_default=True, help="torch intra-op threads.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Also write the results as JSON.")
def main(lattices, fmt: str, words: Optional[str], ref_path: Optional[str], hyp_path: Optional[str], ns, repeat: int, am_scale, lm_scale,
         word_penalty, threads: int, json_out: Optional[str]) -> None:
    """Benchmark exact n-best on LATTICES (files or directories) on CPU."""
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    batch, failures = read_lattices(list(lattices), fmt=fmt, words=words)
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    batch, problems = validate_batch(batch)
    t_validate = time.perf_counter() - t0
    for f in failures:
        click.echo(f"{f.source}: {f.message}", err=True)
    for u, m in problems:
        click.echo(f"{u}: {m}", err=True)
    num_arcs = int(batch.fsas.arcs.values().shape[0])
    num_lat = len(batch)
    scales = resolve_scales(batch, am_scale, lm_scale, word_penalty)
    result = {
        "lattices": num_lat,
        "arcs": num_arcs,
        "states": int(batch.fsas.arcs.row_splits(1)[-1]),
        "failed": len(failures) + len(problems),
        "read_s": round(t_read, 3),
        "validate_s": round(t_validate, 3),
        "cpu": platform.processor() or platform.machine(),
        "threads": threads,
        "nbest": [],
    }
    click.echo(f"{num_lat} lattices, {num_arcs} arcs; read {t_read:.2f}s, validate {t_validate:.2f}s")
    best_lists = None
    for n in ns:
        nbest(select_lattices(batch.fsas, [0]) if num_lat else batch.fsas, n, scales=scales[:1])  # warm-up
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            lists = nbest(batch.fsas, n, scales=scales)
            times.append(time.perf_counter() - t0)
        if n == 1 or best_lists is None:
            best_lists = lists
        t = min(times)
        row = {"n": n, "seconds": round(t, 4), "lattices_per_s": round(num_lat / t, 2),
               "arcs_per_s": round(num_arcs / t), "hyps": sum(len(x) for x in lists)}
        result["nbest"].append(row)
        click.echo(f"n={n:<4d} {t:8.3f}s  {row['lattices_per_s']:8.2f} lattices/s  {row['arcs_per_s']:>10d} arcs/s")
    if ref_path:
        refs = read_references(ref_path)
        rules = NormalizationRules()
        keep = [i for i, u in enumerate(batch.utt_ids) if u in refs]
        missing = num_lat - len(keep)
        ref_words = [[w.lower() for w in normalize_words(refs[batch.utt_ids[i]], rules)] for i in keep]
        if best_lists is None:
            best_lists = nbest(batch.fsas, 1, scales=scales)
        hyps = [[batch.symbols.get(w).lower() for w in best_lists[i][0].words] for i in keep]
        errors, total = _wer(list(zip(ref_words, hyps)))
        t0 = time.perf_counter()
        _, summary = oracle_wer(select_lattices(batch.fsas, keep), batch.symbols, ref_words, lowercase=True)
        t_oracle = time.perf_counter() - t0
        result.update(
            one_best_wer=round(100 * errors / max(total, 1), 2), one_best_errors=errors,
            oracle_wer=round(100 * summary.wer, 2), oracle_errors=summary.errors, ref_words=total,
            scored_utterances=len(keep), missing_refs=missing, oracle_s=round(t_oracle, 3),
        )
        click.echo(f"1-best WER {result['one_best_wer']:.2f}% ({errors}/{total}); "
                   f"oracle WER {result['oracle_wer']:.2f}% ({summary.errors}/{summary.ref_words}); "
                   f"{len(keep)} utterances scored, {missing} without reference; oracle {t_oracle:.2f}s")
        if hyp_path:
            given = read_references(hyp_path)
            pairs = [(r, [w.lower() for w in normalize_words(given.get(batch.utt_ids[i], []), rules)]) for i, r in zip(keep, ref_words)]
            errors, total = _wer(pairs)
            result.update(given_hyp=hyp_path, given_hyp_wer=round(100 * errors / max(total, 1), 2), given_hyp_errors=errors)
            click.echo(f"{hyp_path}: WER {result['given_hyp_wer']:.2f}% ({errors}/{total})")
    if json_out:
        with atomic_open(json_out, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
