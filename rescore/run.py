"""One rescoring job: read (a shard of) the lattices, rescore, write every output into a directory."""
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from lattices.lattice_batch import LatticeBatch, resolve_scales
from lattices.nbest import hypothesis_records
from lattices.oracle import read_references
from lattices.reader import expand_paths, read_lattices
from lattices.validate import select_lattices
from lattices.writer import write_lattices
from models.distributed import resolve_device

from .outputs import words_of, write_failures, write_json, write_jsonl, write_supervisions, write_text
from .pipeline import RescoreOptions, RescoreOutput, rescore_batch
from .scorers import load_scorer
from .wer import wer_details, write_errs_file, write_wer_summary

DONE = "metrics.json"  # written last: its presence marks a finished job


@dataclass
class RunOptions:
    """Inputs and outputs of one job (``afp-rescore`` options)."""

    lattices: List[str]
    lm: str
    out: str
    old_lm: Optional[str] = None
    fmt: str = "auto"
    words: Optional[str] = None
    am_scale: Optional[float] = None
    lm_scale: Optional[float] = None
    word_penalty: Optional[float] = None
    shard: Tuple[int, int] = (0, 1)
    ref: Optional[str] = None
    write_lattices: bool = False
    lattice_format: Optional[str] = None
    device: str = "auto"
    force: bool = False
    rescore: RescoreOptions = field(default_factory=RescoreOptions)


def parse_shard(text: str) -> Tuple[int, int]:
    """``"I/N"`` (0-based I) -> ``(I, N)``."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like I/N (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard {text!r}: need N >= 1 and 0 <= I < N")
    return i, n


def _read_shard(opts: RunOptions) -> Tuple[LatticeBatch, List[Tuple[str, str]]]:
    """Shard I/N: files ``I::N`` when there are at least N files, else utterances ``I::N`` of
    everything read (then shard 0 alone reports the files/utterances that could not be read)."""
    i, n = opts.shard
    files, fails = expand_paths(opts.lattices)
    failures = [(f.source, f.message) for f in fails]
    by_file = len(files) >= n
    batch, read_fails = read_lattices(files[i::n] if by_file else files, opts.fmt, opts.words)
    failures += [(f.source, f.message) for f in read_fails]
    if not by_file and n > 1:
        keep = list(range(len(batch)))[i::n]
        # every shard read every file: report what could not be read once, from shard 0
        failures = failures if i == 0 else []
        batch = LatticeBatch(select_lattices(batch.fsas, keep), [batch.utt_ids[k] for k in keep], batch.symbols,
                             [batch.headers[k] for k in keep])
    return batch, failures


def _durations(out: RescoreOutput, batch: LatticeBatch) -> List[float]:
    if not hasattr(batch.fsas, "end_times"):
        return [0.0] * len(out.utt_ids)
    index = {u: i for i, u in enumerate(batch.utt_ids)}
    return [float(batch.fsas[index[u]].end_times.max()) if batch.fsas[index[u]].num_arcs else 0.0 for u in out.utt_ids]


def _write_wer(opts: RunOptions, out: RescoreOutput, batch: LatticeBatch, hyp_words: List[List[str]]) -> Dict[str, Any]:
    refs = read_references(opts.ref)
    hyps = dict(zip(out.utt_ids, hyp_words))
    shard_refs = {u: refs[u] for u in batch.utt_ids if u in refs}
    result = write_errs_file(os.path.join(opts.out, "wer.txt"), shard_refs, hyps, title=f"{opts.rescore.method} rescoring")
    metrics: Dict[str, Any] = {"wer": result.wer, "wer_errors": result.errors, "ref_words": result.ref_words,
                               "wer_utterances": sorted(shard_refs)}
    if out.sweep:
        rows = [(f"lm_scale_{s:g}", wer_details(shard_refs, dict(zip(out.utt_ids, (words_of(w, batch.symbols) for w in ws)))))
                for s, ws in sorted(out.sweep.items())]
        write_wer_summary(os.path.join(opts.out, "wer-summary.txt"), rows)
        metrics["wer_by_lm_scale"] = {name: r.wer for name, r in rows}
    return metrics


def run_rescoring(opts: RunOptions) -> Dict[str, Any]:
    """Rescore the job's lattices and write ``text``, ``nbest.jsonl``, ``hyps.supervisions.jsonl.gz``,
    ``failures.txt``, optional ``lattices/``, ``wer.txt``, ``wer-summary.txt``, and ``metrics.json`` last.

    A job whose ``metrics.json`` exists is skipped (unless ``force``), so reruns resume.

    Returns:
        The metrics (with ``"skipped": True`` for a finished job).
    """
    done = os.path.join(opts.out, DONE)
    if os.path.exists(done) and not opts.force:
        with open(done) as f:
            return {**json.load(f), "skipped": True}
    t0 = time.perf_counter()
    device = resolve_device(opts.device)
    scorer = load_scorer(opts.lm, str(device))
    old = load_scorer(opts.old_lm, str(device)) if opts.old_lm else None
    batch, failures = _read_shard(opts)
    scales, _ = resolve_scales(batch.headers, opts.am_scale, opts.lm_scale, opts.word_penalty)
    t_read = time.perf_counter() - t0
    rescore_opts = opts.rescore
    if opts.write_lattices:
        rescore_opts = RescoreOptions(**{**rescore_opts.__dict__, "keep_lattices": True})
    out = rescore_batch(batch, scorer, scales, rescore_opts, old) if len(batch) else RescoreOutput([], [])
    failures += out.failures

    os.makedirs(opts.out, exist_ok=True)
    best = [words_of(h[0].words, batch.symbols) for h in out.hyps]
    write_text(os.path.join(opts.out, "text"), out.utt_ids, best)
    write_jsonl(os.path.join(opts.out, "nbest.jsonl"), hypothesis_records(out.utt_ids, out.hyps, batch.symbols))
    write_supervisions(os.path.join(opts.out, "hyps.supervisions.jsonl.gz"), out.utt_ids, best, _durations(out, batch))
    write_failures(os.path.join(opts.out, "failures.txt"), failures)
    if opts.write_lattices and out.lattices is not None and len(out.lattices):
        fmt = opts.lattice_format or str(batch.headers[0].get("format", "k2"))
        write_lattices(out.lattices, os.path.join(opts.out, "lattices" + (".pt" if fmt == "k2" else ".ark" if fmt == "kaldi" else "")), fmt)
    stats = out.stats
    wall = time.perf_counter() - t0
    metrics: Dict[str, Any] = {
        "method": rescore_opts.method, "device": str(device), "lm": opts.lm, "old_lm": opts.old_lm, "shard": f"{opts.shard[0]}/{opts.shard[1]}",
        "utterances_done": len(out.utt_ids), "utterances_failed": len(failures), "interpolate": rescore_opts.interpolate,
        "nbest": rescore_opts.nbest, "read_seconds": t_read, "wall_seconds": wall, **stats,
        # rescoring throughput: expanded arcs over the rescoring seconds (reading/loading excluded)
        "arcs_per_s": stats.get("arcs_after_expansion", 0) / max(stats.get("seconds", 0.0), 1e-9),
        "scales": sorted(set(scales)), "pruned": out.pruned,
    }
    if opts.ref:
        metrics.update(_write_wer(opts, out, batch, best))
    write_json(done, metrics)
    return metrics
