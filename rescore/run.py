"""One rescoring job: stream (a shard of) the lattices in batches, rescore, write every output."""
import json
import os
import resource
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import IO, Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
from tqdm import tqdm

from lattices.fsa_build import Failure
from lattices.lattice_batch import LatticeBatch, resolve_scales, warn_if_default_lm_scale
from lattices.nbest import hypothesis_records
from lattices.normalize import NormalizationRules
from lattices.reader import DEFAULT_BATCH_ARCS, expand_paths, iter_lattice_batches, shard_of
from lattices.ctm import format_ctm
from lattices.writer import LatticeSink
from models.files import atomic_open, read_references
from models.distributed import resolve_device

from .outputs import words_of, write_failures, write_json, write_jsonl, write_supervisions, write_text
from .pipeline import RescoreOptions, RescoreOutput, Scales, has_first_pass, rescore_batch, rescore_first_passed
from .regroup import first_passed_groups
from .stream import prefetch
from .scorers import Scorer, load_scorer
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
    frame_seconds: float = 0.01
    am_scale: Optional[float] = None
    lm_scale: Optional[float] = None
    word_penalty: Optional[float] = None
    shard: Tuple[int, int] = (0, 1)
    ref: Optional[str] = None
    write_lattices: bool = False
    lattice_format: Optional[str] = None
    device: str = "auto"
    force: bool = False
    batch_arcs: int = DEFAULT_BATCH_ARCS
    normalize: bool = True
    unk: Optional[str] = None
    rules: NormalizationRules = field(default_factory=NormalizationRules)
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


def _batches(opts: RunOptions) -> Tuple[Iterator[Tuple[LatticeBatch, List[Failure]]], List[Tuple[str, str]]]:
    """Shard I/N as a lazy stream of batches: files ``I::N`` when there are at least N files, else
    the utterances whose id hashes to I (:func:`lattices.reader.shard_of`; only they are parsed,
    and shard 0 alone reports unreadable files)."""
    i, n = opts.shard
    files, fails = expand_paths(opts.lattices)
    by_file = len(files) >= n
    report_files = by_file or i == 0
    failures = [(f.source, f.message) for f in fails] if report_files else []
    keep = None if by_file or n == 1 else shard_of(i, n)
    stream = iter_lattice_batches(files[i::n] if by_file else files, opts.fmt, opts.words, opts.rules, batch_arcs=opts.batch_arcs,
                                  keep=keep, file_failures=report_files, frame_seconds=opts.frame_seconds)
    return stream, failures


def _durations(out: RescoreOutput, batch: LatticeBatch) -> List[float]:
    """Per rescored utterance, the end time of its last arc (0 without times)."""
    if not hasattr(batch.fsas, "end_times") or not out.utt_ids:
        return [0.0] * len(out.utt_ids)
    fsas = batch.fsas
    utt_of_arc = fsas.arcs.row_ids(1).long()[fsas.arcs.row_ids(2).long()].cpu().numpy()
    ends = np.zeros(len(batch))
    np.maximum.at(ends, utt_of_arc, fsas.end_times.detach().cpu().double().numpy())
    index = {u: i for i, u in enumerate(batch.utt_ids)}
    return [float(ends[index[u]]) for u in out.utt_ids]


def _write_wer(opts: RunOptions, method: str, utts: List[str], hyps: Dict[str, List[str]],
               sweep: Dict[float, Dict[str, List[str]]]) -> Dict[str, Any]:
    refs = read_references(opts.ref)
    shard_refs = {u: refs[u] for u in utts if u in refs}
    result = write_errs_file(os.path.join(opts.out, "wer.txt"), shard_refs, hyps, title=f"{method} rescoring")
    metrics: Dict[str, Any] = {"wer": result.wer, "wer_errors": result.errors, "ref_words": result.ref_words,
                               "wer_utterances": sorted(shard_refs)}
    if sweep:
        rows = [(f"lm_scale_{s:g}", wer_details(shard_refs, swept)) for s, swept in sorted(sweep.items())]
        write_wer_summary(os.path.join(opts.out, "wer-summary.txt"), rows)
        metrics["wer_by_lm_scale"] = {name: r.wer for name, r in rows}
    return metrics


class _JobOutputs:
    """The job's output files, opened once (atomically: they appear only when the job succeeds)
    and written batch by batch, so memory does not grow with the number of utterances."""

    def __init__(self, stack: ExitStack, out: str, lattice_fmt: Optional[str]) -> None:
        self.out = out
        path = lambda name: os.path.join(out, name)  # noqa: E731
        self.text = stack.enter_context(atomic_open(path("text")))
        self.nbest = stack.enter_context(atomic_open(path("nbest.jsonl")))
        self.sups = stack.enter_context(atomic_open(path("hyps.supervisions.jsonl.gz")))
        kaldi = lattice_fmt in ("kaldi", "kaldi-text")
        self.lattices = None if lattice_fmt is None else LatticeSink(
            stack, path("lattices.ark" if kaldi else "lattices"), lattice_fmt, k2_per_batch=True)
        self.batches = 0
        self.stack = stack
        self.ctm: Optional[IO[str]] = None  # opened with the first batch that has word times

    def add(self, out: RescoreOutput, batch: LatticeBatch) -> List[List[str]]:
        """Write one batch's results; returns its 1-best words ``[utt]``."""
        best = [words_of(w, batch.symbols) for w in (out.best or [h[0].words for h in out.hyps])]
        write_text(self.text, out.utt_ids, best)
        write_jsonl(self.nbest, hypothesis_records(out.utt_ids, out.hyps, batch.symbols))
        write_supervisions(self.sups, out.utt_ids, best, _durations(out, batch))
        if out.ctm is not None:
            if self.ctm is None:
                self.ctm = self.stack.enter_context(atomic_open(os.path.join(self.out, "ctm")))
            self.ctm.write(format_ctm(out.ctm))
        if self.lattices is not None and out.lattices is not None:
            self.lattices.add(out.lattices)
        self.batches += 1
        return best

    def finish(self) -> None:
        """Write what only the whole job knows (the Kaldi archive's ``words.txt``)."""
        if self.lattices is not None:
            self.lattices.close()


def _add_stats(total: Dict[str, Any], stats: Dict[str, Any]) -> None:
    for k, v in stats.items():
        if k == "order":
            total[k] = v
        elif isinstance(v, (int, float)):
            total[k] = total.get(k, 0) + v


def rescored_batches(opts: RunOptions, rescore_opts: RescoreOptions, scorer: Scorer, old: Optional[Scorer],
                     failures: List[Tuple[str, str]], warn_scales: bool = True
                     ) -> Iterator[Tuple[LatticeBatch, RescoreOutput, List[Scales], List[str]]]:
    """Read (the shard of) the job's lattices lazily and rescore them batch by batch.

    With a first pass (:func:`rescore.pipeline.has_first_pass`), it runs on each batch as read
    (after validation) and its results, much smaller after a beam, are regrouped into batches of
    about ``batch_arcs`` arcs for the new LM (:mod:`rescore.regroup`).

    Args:
        failures: extended with ``(source, message)`` of every file and utterance that failed.
        warn_scales: warn when the LM scale falls back to the default (not while tuning it).

    Yields:
        ``(batch, its RescoreOutput, its per-utterance (am, lm, wp) scales, the ids of every
        utterance read into it)``; ``batch`` is what the new LM rescored.
    """
    stream, file_failures = _batches(opts)
    failures += file_failures

    def read() -> Iterator[Tuple[LatticeBatch, List[Scales]]]:
        for batch, read_fails in prefetch(stream):
            failures.extend((f.source, f.message) for f in read_fails)
            if not len(batch):
                continue
            scales, origins = resolve_scales(batch.headers, opts.am_scale, opts.lm_scale, opts.word_penalty)
            if warn_scales:
                warn_if_default_lm_scale(origins)
            yield batch, scales

    if not has_first_pass(rescore_opts, old):
        for batch, scales in read():
            out = rescore_batch(batch, scorer, scales, rescore_opts, old)
            failures += out.failures
            yield batch, out, scales, batch.utt_ids
        return
    for group in first_passed_groups(read(), old, rescore_opts, opts.batch_arcs):
        out = rescore_first_passed(group, scorer, rescore_opts)
        failures += out.failures
        yield group.batch, out, group.scales, group.inputs


def run_rescoring(opts: RunOptions) -> Dict[str, Any]:
    """Rescore the job's lattices and write ``text``, ``nbest.jsonl``, ``hyps.supervisions.jsonl.gz``,
    ``failures.txt``, optional ``lattices*``, ``wer.txt``, ``wer-summary.txt``, and ``metrics.json`` last.

    The lattices are read lazily in batches of about ``batch_arcs`` input arcs (the next batch is
    parsed in a background thread while the current one is rescored), so memory is bounded by
    one batch and time is linear in the number of utterances. A job whose ``metrics.json`` exists
    is skipped (unless ``force``), so reruns resume.

    Returns:
        The metrics (with ``"skipped": True`` for a finished job).
    """
    done = os.path.join(opts.out, DONE)
    if os.path.exists(done) and not opts.force:
        with open(done) as f:
            return {**json.load(f), "skipped": True}
    t0 = time.perf_counter()
    device = resolve_device(opts.device)
    scorer = load_scorer(opts.lm, str(device), normalize=opts.normalize, unk=opts.unk)
    old = load_scorer(opts.old_lm, str(device), unk=opts.unk) if opts.old_lm else None
    failures: List[Tuple[str, str]] = []
    rescore_opts = opts.rescore
    if opts.write_lattices:
        rescore_opts = RescoreOptions(**{**rescore_opts.__dict__, "keep_lattices": True})
    stats: Dict[str, Any] = {}
    pruned: Dict[str, Any] = {}
    scales_seen: set = set()
    utts: List[str] = []
    hyps: Dict[str, List[str]] = {}
    sweep: Dict[float, Dict[str, List[str]]] = {}
    os.makedirs(opts.out, exist_ok=True)
    bar = tqdm(desc="rescoring", unit="utt", disable=not rescore_opts.progress, mininterval=1.0)
    with ExitStack() as stack:
        outputs: Optional[_JobOutputs] = None
        for batch, out, scales, inputs in rescored_batches(opts, rescore_opts, scorer, old, failures):
            if outputs is None:  # the output lattice format defaults to the first lattice's
                first = batch.headers[0] if batch.headers else {}  # a group may hold no lattice at all
                fmt = (opts.lattice_format or str(first.get("format", "k2"))) if opts.write_lattices else None
                outputs = _JobOutputs(stack, opts.out, fmt)
            scales_seen.update(scales)
            best = outputs.add(out, batch)
            utts += inputs
            hyps.update(zip(out.utt_ids, best))
            for s, ws in out.sweep.items():
                sweep.setdefault(s, {}).update(zip(out.utt_ids, (words_of(w, batch.symbols) for w in ws)))
            pruned.update(out.pruned)
            _add_stats(stats, out.stats)
            bar.update(len(inputs))
        bar.close()
        if outputs is None:  # nothing was read: still write the (empty) outputs
            outputs = _JobOutputs(stack, opts.out, None)
        outputs.finish()
        write_failures(os.path.join(opts.out, "failures.txt"), failures)
        batches = outputs.batches
    wall = time.perf_counter() - t0
    metrics: Dict[str, Any] = {
        "method": rescore_opts.method, "device": str(device), "lm": opts.lm, "old_lm": opts.old_lm, "shard": f"{opts.shard[0]}/{opts.shard[1]}",
        "utterances_done": len(hyps), "utterances_failed": len(failures), "interpolate": rescore_opts.interpolate,
        "nbest": rescore_opts.nbest, "decode": rescore_opts.decode, "batches": batches, "batch_arcs": opts.batch_arcs, "normalize": opts.normalize,
        "wall_seconds": wall, **stats,
        # rescoring throughput: expanded arcs over the rescoring seconds (reading/loading excluded)
        "arcs_per_s": stats.get("arcs_after_expansion", 0) / max(stats.get("seconds", 0.0), 1e-9),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "scales": sorted(scales_seen), "pruned": pruned,
    }
    if opts.ref:
        metrics.update(_write_wer(opts, rescore_opts.method, utts, hyps, sweep))
    write_json(done, metrics)
    return metrics
