"""Merge the output directories of sharded ``afp-rescore`` jobs into one."""
import json
import os
from typing import Any, Dict, List, Optional, Sequence

from models.files import atomic_open, read_references, read_text

from .outputs import write_json
from .run import DONE
from .wer import write_errs_file

CONCATENATED = ("text", "nbest.jsonl", "failures.txt", "hyps.supervisions.jsonl.gz")
OPTIONAL = ("ctm",)  # concatenated from the shards that have it (lattices with word times)
SUMMED = ("utterances_done", "utterances_failed", "arcs_before_expansion", "arcs_after_expansion",
          "distinct_histories", "seconds", "wall_seconds", "first_pass_seconds", "expand_seconds", "lm_seconds", "search_seconds")


def _lines(path: str) -> List[str]:
    return [line for line in read_text(path).splitlines(keepends=True) if line.strip()]


def merge_runs(dirs: Sequence[str], out: str, ref: Optional[str] = None) -> Dict[str, Any]:
    """Concatenate ``text``, ``nbest.jsonl``, ``failures.txt``, the supervisions and (where there is
    one) ``ctm`` of finished shard directories (in the given order), sum their counts and seconds into ``out/metrics.json``
    and, with ``ref``, score the merged ``text`` into ``out/wer.txt``.

    Raises:
        ValueError: naming every shard directory that has not finished (no ``metrics.json``).
    """
    unfinished = [d for d in dirs if not os.path.isfile(os.path.join(d, DONE))]
    if unfinished:
        raise ValueError(f"shards not finished (no {DONE}): {', '.join(unfinished)}")
    shard_metrics = [json.load(open(os.path.join(d, DONE))) for d in dirs]
    for name in CONCATENATED + OPTIONAL:
        present = [d for d in dirs if os.path.isfile(os.path.join(d, name))]
        if name in OPTIONAL and not present:
            continue
        with atomic_open(os.path.join(out, name)) as f:
            for d in (dirs if name in CONCATENATED else present):
                f.writelines(_lines(os.path.join(d, name)))
    metrics: Dict[str, Any] = {k: sum(m.get(k) or 0 for m in shard_metrics) for k in SUMMED}
    metrics.update(shards=len(dirs), method=shard_metrics[0]["method"], device=shard_metrics[0]["device"],
                   arcs_per_s=metrics["arcs_after_expansion"] / max(metrics["seconds"], 1e-9),
                   pruned={u: p for m in shard_metrics for u, p in (m.get("pruned") or {}).items()},
                   shard_metrics=shard_metrics)
    if ref:
        refs = read_references(ref)
        hyps = {line.split()[0]: line.split()[1:] for line in _lines(os.path.join(out, "text"))}
        # the utterances each shard read and had a reference for (failed ones count as deletions)
        scored = {u for m in shard_metrics for u in m.get("wer_utterances") or []} or set(hyps)
        result = write_errs_file(os.path.join(out, "wer.txt"), {u: refs[u] for u in scored if u in refs}, hyps,
                                 title="merged shards")
        metrics.update(wer=result.wer, wer_errors=result.errors, ref_words=result.ref_words)
    write_json(os.path.join(out, DONE), metrics)
    return metrics

