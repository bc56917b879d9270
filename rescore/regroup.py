"""First pass, then regroup: the batches of the new-LM stage after a first pass (a beam, or nbest-exact's old-LM lattice).

Batches are read by *input* arcs (``--batch-arcs``). After a first-pass beam the lattices are often
hundreds of times smaller, and the expansion costs about the same per topological level of a batch
whatever the batch holds (bench/RESULTS.md 7.13: 34 batches of 3 pruned lattices took 8× the time
of one batch of 100). So the pruned lattices of consecutive input batches are merged into groups of
about ``batch_arcs`` arcs before the new LM sees them; memory stays bounded by one input batch plus
one group.
"""
from dataclasses import dataclass, field
from typing import Iterable, Iterator, List, Optional, Tuple

import k2

from lattices.lattice_batch import LatticeBatch

from .pipeline import FirstPass, RescoreOptions, Scales, first_pass, has_first_pass, validated
from .scorers import Scorer


@dataclass
class Group(FirstPass):
    """The first passes of one or more consecutive input batches, merged: what
    :func:`rescore.pipeline.rescore_first_passed` takes.

    ``batch`` holds the kept (pruned) lattices in input order, with the newest batch's symbol table
    (the job's table only grows, so it holds every earlier batch's words with their ids).

    Attributes:
        inputs: ids of every utterance read into the group (invalid ones and first-pass
            failures included).
    """

    inputs: List[str] = field(default_factory=list)


def _merge(parts: List[Tuple[LatticeBatch, FirstPass]]) -> Group:
    kept = [fp for _, fp in parts if len(fp.batch)]
    if len(kept) > 1:
        batch = LatticeBatch(k2.cat([fp.batch.fsas for fp in kept]), [u for fp in kept for u in fp.batch.utt_ids],
                             kept[-1].batch.symbols, [h for fp in kept for h in fp.batch.headers])
    else:  # one part, or nothing kept at all
        batch = kept[0].batch if kept else parts[-1][1].batch
    return Group(batch, [s for fp in kept for s in fp.scales], [f for _, fp in parts for f in fp.failures],
                 {u: p for _, fp in parts for u, p in fp.pruned.items()}, sum(fp.seconds for _, fp in parts),
                 sum(fp.arcs_in for _, fp in parts), [u for b, _ in parts for u in b.utt_ids])


def _attributes(batch: LatticeBatch) -> Tuple[str, ...]:
    return tuple(sorted(name for name, _ in batch.fsas.named_tensor_attr()))


def first_passed_groups(batches: Iterable[Tuple[LatticeBatch, List[Scales]]], old: Optional[Scorer],
                        opts: RescoreOptions, batch_arcs: int) -> Iterator[Group]:
    """Run :func:`rescore.pipeline.first_pass` (the old LM's expansion if any, then the beam
    ``opts.first_pass_beam`` if any) on the valid lattices of each input batch (the others become
    failures, as in :func:`rescore.pipeline.rescore_batch`), and yield the results merged into groups of at
    least ``batch_arcs`` pruned arcs (the last group may be smaller).

    Args:
        batches: ``(batch, [utt] scales)`` as read, in order.
        old: the old LM, or None (then the first pass only prunes).
        opts: the job's options; they must have a first pass (:func:`rescore.pipeline.has_first_pass`).
        batch_arcs: pruned arcs per group.

    Yields:
        :class:`Group` objects, utterances in input order. Lattices whose per-arc attributes differ
        (e.g. times in one file and not in the next) are not merged into one group.
    """
    assert has_first_pass(opts, old), "regrouping is for first-passed lattices"
    parts: List[Tuple[LatticeBatch, FirstPass]] = []
    arcs, kind = 0, None  # pruned arcs of the group, and its lattices' attributes (None: none yet)
    for batch, scales in batches:
        good, good_scales, problems = validated(batch, scales)  # bad lattices never reach the first pass
        fp = first_pass(good, old, good_scales, opts) if len(good) else FirstPass(good, [], [], {}, 0.0, 0)
        fp.failures = problems + fp.failures
        this = _attributes(fp.batch) if len(fp.batch) else None
        if parts and this is not None and kind is not None and this != kind:
            yield _merge(parts)
            parts, arcs, kind = [], 0, None
        parts.append((batch, fp))
        arcs += int(fp.batch.fsas.num_arcs)
        kind = kind or this
        if arcs >= batch_arcs:
            yield _merge(parts)
            parts, arcs, kind = [], 0, None
    if parts:
        yield _merge(parts)
