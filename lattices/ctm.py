"""Word times and confidences of a chosen hypothesis (CTM: ``utt 1 start duration word confidence``).

1. **Alignment.** The hypothesis (word ids) is intersected with its lattice (epsilons free) and the
   best path of the result is taken: the best-scoring path that spells exactly those words. Its
   word arcs give the times (``start_times``/``end_times``), so the CTM's words always equal the
   text output, ties included.
2. **Confidence** of a word: its posterior, from forward-backward (log semiring) on the lattice at
   the posterior scales the caller passes (:func:`lattices.lattice_batch.posterior_scales`: the
   decoding scales divided by the LM scale, as Kaldi does; the best path is the same) — the total posterior of the arcs with the same word
   whose time span contains the word's midpoint. Arcs that cover one instant are alternatives
   (no path holds two of them), so this is a probability in [0, 1]; it adds up the copies of one
   word that differ only in history (as in an expanded lattice) or in boundary times, which a
   single arc's posterior would split.
"""
from dataclasses import dataclass
from typing import List, Sequence

import k2
import numpy as np
import torch

from lattices.posteriors import arc_log_posteriors
from lattices.validate import arc_arrays


@dataclass
class CtmWord:
    """One word of a CTM."""

    utt: str
    start: float
    duration: float
    word: str
    confidence: float


def align_hypotheses(fsas: k2.Fsa, hyps: Sequence[Sequence[int]]) -> List[np.ndarray]:
    """The arcs of each lattice's best path that spells its hypothesis.

    Args:
        fsas: scaled FsaVec ``[utt][state][arc]`` (``scores`` as used for decoding).
        hyps: ``[utt]`` word ids (label > 0) of each lattice's hypothesis, which it must contain.

    Returns:
        ``[utt]`` int64 arrays: indexes into ``fsas``' arcs of the path's word arcs, in order.

    Raises:
        ValueError: a hypothesis that its lattice does not contain (names the utterance index).
    """
    if len(hyps) != fsas.shape[0]:
        raise ValueError(f"{len(hyps)} hypotheses for {fsas.shape[0]} lattices")
    marked = k2.Fsa(fsas.arcs, fsas.scores.clone())  # only what the alignment needs (no input mutation)
    marked.labels = fsas.labels.clone()
    marked.orig_arc = torch.arange(fsas.num_arcs, dtype=torch.int32)
    linear = k2.linear_fsa([list(map(int, h)) for h in hyps])
    both = k2.intersect(k2.arc_sort(marked), linear, treat_epsilons_specially=True)
    paths = k2.shortest_path(k2.top_sort(k2.connect(both)), use_double_scores=True)  # intersect's states are unordered
    shape = paths.arcs.shape()
    state_splits, arc_splits = shape.row_splits(1).tolist(), shape.row_splits(2).tolist()
    orig = paths.orig_arc.long().numpy()
    labels = paths.labels.numpy()
    out = []
    for i, h in enumerate(hyps):
        lo, hi = arc_splits[state_splits[i]], arc_splits[state_splits[i + 1]]
        word_arcs = orig[lo:hi][labels[lo:hi] > 0]
        if hi == lo or len(word_arcs) != len(h):
            raise ValueError(f"lattice {i}: the hypothesis is not a path of the lattice")
        out.append(word_arcs)
    return out


def ctm_words(fsas: k2.Fsa, utt_ids: Sequence[str], hyps: Sequence[Sequence[int]], symbols: k2.SymbolTable) -> List[List[CtmWord]]:
    """CTM words with times and confidences (see the module docstring).

    Args:
        fsas: scaled FsaVec ``[utt][state][arc]`` with ``start_times``/``end_times``, connected and
            top-sorted.
        utt_ids: ``[utt]``.
        hyps: ``[utt]`` word ids of the chosen hypothesis of each lattice.
        symbols: the lattices' word table.

    Returns:
        ``[utt][word]``.
    """
    if not (hasattr(fsas, "start_times") and hasattr(fsas, "end_times")):
        raise ValueError("the lattices have no word times")
    aligned = align_hypotheses(fsas, hyps)
    post = arc_log_posteriors(fsas).exp().numpy()
    start = fsas.start_times.double().numpy()
    end = fsas.end_times.double().numpy()
    labels = fsas.labels.long().numpy()
    fsa_of_arc = arc_arrays(fsas).fsa_of_arc
    width = int(labels.max(initial=0)) + 2  # labels -1.. max fit in one key per (utterance, word)
    order = np.lexsort((labels, fsa_of_arc))  # arcs grouped by (utterance, word)
    keys = fsa_of_arc[order] * width + labels[order]
    out = []
    for i, (utt, arcs) in enumerate(zip(utt_ids, aligned)):
        words = []
        for a in arcs.tolist():
            key = i * width + labels[a]
            same = order[np.searchsorted(keys, key, "left"):np.searchsorted(keys, key, "right")]
            mid = 0.5 * (start[a] + end[a])
            cover = same[(start[same] <= mid) & (end[same] > mid)] if end[a] > start[a] else same[start[same] == start[a]]
            conf = float(min(1.0, post[cover].sum())) if len(cover) else float(post[a])
            words.append(CtmWord(utt, float(start[a]), float(end[a] - start[a]), symbols.get(int(labels[a])), conf))
        out.append(words)
    return out


def format_ctm(words: Sequence[Sequence[CtmWord]]) -> str:
    """CTM lines ``utt 1 start duration word confidence`` (seconds with 2 decimals)."""
    return "".join(f"{w.utt} 1 {w.start:.2f} {w.duration:.2f} {w.word} {w.confidence:.4f}\n" for ws in words for w in ws)
