"""Exact 1-best and n-best lists of *distinct word sequences* from word lattices.

Scoring is Viterbi (tropical semiring): the score of a word sequence ``W`` is the maximum over all
complete paths whose word labels (label > 0; epsilons 0 and the final -1 are skipped) spell ``W`` of
``am_scale * am + lm_scale * lm + word_penalty * len(W)``. Paths that differ only in epsilons,
timing or duplicate arcs therefore collapse into one hypothesis. (A log-sum variant, which adds
the probabilities of all paths of ``W``, is not implemented.)

Algorithm (exact, no determinization): best-first (A*) search over partial paths from the start
state, with the exact heuristic "best completion score" given by k2's tropical backward scores
(vectorised over the whole batch). Partial paths pop in non-increasing order of their best
completion. A search node is ``(state, word-prefix)``; the first time a node pops it has the best
score of all partial paths with that state and prefix, so later pops of the same node are
dominated (any completion they have, the first one has with the same words and a score at least as
high) and are dropped. Hence every complete node that pops is a new distinct word sequence, with
its maximum score, in order; the search stops after ``n`` of them. Work is bounded by
``O(states x total length of the n hypotheses)`` node expansions, not by the number of paths.
Search priorities are compared after rounding to 7 decimals (ties pop depth first), so scores
that differ by less than 1e-7 count as tied; reported totals are the exact double-precision sums
of the path's float32 arc scores. Rank 1 is always k2's Viterbi best path
(``k2.shortest_path``, the same score as the search's first; between sequences tied exactly it
decides which comes first), and ``n = 1`` is that search alone: so the 1-best of any n-best list,
the 1-best text and every point of a grid search (:mod:`rescore.tune`) agree, ties included.
"""
import heapq
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import k2
import numpy as np
import torch

from lattices.lattice_batch import with_scales, with_utterance_scales
from lattices.validate import arc_arrays

# Decimals kept in search priorities; scores differing by less are treated as tied (see _nbest_one).
_DIGITS = 7


@dataclass
class Hypothesis:
    """One n-best entry.

    Attributes:
        words: word ids (label > 0) in order.
        total: scaled score ``am_scale*am + lm_scale*lm + word_penalty*len(words)`` of the best path.
        am: unscaled acoustic score (sum of ``am_scores``) of that path.
        lm: unscaled LM score (sum of ``lm_scores``) of that path.
    """

    words: List[int]
    total: float
    am: float
    lm: float


def nbest(
    fsas: k2.Fsa,
    n: int,
    am_scale: float = 1.0,
    lm_scale: float = 1.0,
    word_penalty: float = 0.0,
    scales: Optional[Sequence[Tuple[float, float, float]]] = None,
) -> List[List[Hypothesis]]:
    """The ``n`` best distinct word sequences of every lattice, best first.

    Args:
        fsas: connected, top-sorted FsaVec ``[utt][state][arc]`` with ``labels``, ``am_scores``,
            ``lm_scores`` (see :func:`lattices.validate.validate_lattices`). Not mutated.
        n: number of hypotheses per lattice (fewer if the lattice has fewer distinct sequences).
        am_scale, lm_scale, word_penalty: scales used for every lattice ...
        scales: ... unless given here per lattice as ``(am_scale, lm_scale, word_penalty)``.

    Returns:
        ``[utt][rank]`` lists of :class:`Hypothesis`; ties are broken deterministically.

    Raises:
        ValueError: ``n < 1``, or ``fsas`` not top-sorted.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if len(fsas.shape) != 3:
        raise ValueError("expected an FsaVec [utt][state][arc]")
    num_fsas = fsas.shape[0]
    if num_fsas == 0:
        return []
    if not (fsas.properties & k2.fsa_properties.TOPSORTED):
        raise ValueError("lattices must be top-sorted; run lattices.validate.validate_lattices first")
    if scales is not None and len(scales) != num_fsas:
        raise ValueError(f"{len(scales)} scale triples for {num_fsas} lattices")

    if scales is None:
        scored = with_scales(fsas, am_scale, lm_scale, word_penalty)
    else:
        scored = with_utterance_scales(fsas, scales)
    best = _viterbi_best(scored)
    if n == 1:
        return best
    arrays = arc_arrays(fsas)
    # g (search) and the heuristic use the same float32 arc scores, accumulated in double.
    arc_score = scored.scores.double().tolist()
    scored_bwd = scored.get_backward_scores(use_double_scores=True, log_semiring=False).tolist()
    am = fsas.am_scores.double().tolist()
    lm = fsas.lm_scores.double().tolist()

    arc_splits = arrays.arc_splits.tolist()
    dst = arrays.dst.tolist()
    labels = arrays.labels.tolist()
    state_splits = arrays.state_splits.tolist()

    results: List[List[Hypothesis]] = []
    for i in range(num_fsas):
        start, final = state_splits[i], state_splits[i + 1] - 1
        results.append(
            _viterbi_first(_nbest_one(n, start, final, arc_splits, dst, labels, arc_score, am, lm, scored_bwd), best[i])
        )
    return results


def _viterbi_first(hyps: List[Hypothesis], best: List[Hypothesis]) -> List[Hypothesis]:
    """``hyps`` with the Viterbi best sequence ``best[0]`` first when the A* search ranked another
    sequence of the same score first, so that rank 1 is always ``nbest(..., n=1)``."""
    if not hyps or not best or hyps[0].words == best[0].words:
        return hyps
    v = best[0]
    if abs(v.total - hyps[0].total) > 1e-6 * max(1.0, abs(v.total)):
        return hyps  # not a tie (cannot happen beyond rounding): keep the search's order
    rest = [h for h in hyps if h.words != v.words]
    return [v] + rest[: len(hyps) - 1]


def _nbest_one(
    n: int,
    start: int,
    final: int,
    arc_splits: List[int],
    dst: List[int],
    labels: List[int],
    arc_score: List[float],
    am: List[float],
    lm: List[float],
    bwd: List[float],
) -> List[Hypothesis]:
    """A* over ``(state, prefix_id)`` nodes of one lattice (global state indexes)."""
    out: List[Hypothesis] = []
    if final < start or bwd[start] == float("-inf"):
        return out
    # Word prefixes are interned as a trie: id -> (parent_id, word); id 0 is the empty prefix.
    trie_parent: List[int] = [-1]
    trie_word: List[int] = [0]
    trie_index: Dict[Tuple[int, int], int] = {}
    done = set()
    counter = 0
    # Heap entries: (-priority, tiebreak, state, prefix_id, g, am, lm). Priorities are rounded to
    # _DIGITS decimals so that paths tied up to rounding compare equal, and ties pop last-in
    # first-out (depth first): with many exactly tied alternatives (common in real lattices) a
    # FIFO order would expand exponentially many tied prefixes before reaching the final state.
    heap = [(-round(bwd[start], _DIGITS), 0, start, 0, 0.0, 0.0, 0.0)]
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        _, _, s, pid, g, a_sum, l_sum = pop(heap)
        node = (s, pid)
        if node in done:
            continue
        done.add(node)
        if s == final:
            words = []
            p = pid
            while p:
                words.append(trie_word[p])
                p = trie_parent[p]
            words.reverse()
            out.append(Hypothesis(words=words, total=g, am=a_sum, lm=l_sum))
            if len(out) == n:
                break
            continue
        for a in range(arc_splits[s], arc_splits[s + 1]):
            t = dst[a]
            h = bwd[t]
            if h == float("-inf"):
                continue
            w = labels[a]
            if w > 0:
                key = (pid, w)
                npid = trie_index.get(key)
                if npid is None:
                    npid = len(trie_parent)
                    trie_index[key] = npid
                    trie_parent.append(pid)
                    trie_word.append(w)
            else:
                npid = pid
            if (t, npid) in done:
                continue
            ng = g + arc_score[a]
            counter -= 1
            push(heap, (-round(ng + h, _DIGITS), counter, t, npid, ng, a_sum + am[a], l_sum + lm[a]))
    return out


def _shortest_paths(scored: k2.Fsa) -> Tuple[k2.Fsa, np.ndarray, List[np.ndarray]]:
    """k2's Viterbi best path of every FSA: the paths, ``[path arc]`` their FSA, ``[utt]`` their
    word ids."""
    best = k2.shortest_path(scored, use_double_scores=True)
    num_fsas = scored.shape[0]
    fsa_of_arc = best.arcs.row_ids(1).long()[best.arcs.row_ids(2).long()].cpu().numpy()
    labels = best.labels.long().cpu().numpy()
    keep = labels > 0
    words = np.split(labels[keep], np.cumsum(np.bincount(fsa_of_arc[keep], minlength=num_fsas))[:-1])
    return best, fsa_of_arc, words


def best_path_words(fsas: k2.Fsa, scores: torch.Tensor) -> List[List[int]]:
    """``[utt]`` word ids of the best path of every lattice of ``fsas`` under the per-arc
    ``scores`` (``[num_arcs]``): the search of ``nbest(..., n=1)`` when ``scores`` are its scaled
    scores, without copying the lattices' other attributes (a grid search calls it per point).
    ``fsas`` is not mutated."""
    light = k2.Fsa(fsas.arcs.clone())
    light.scores = scores.to(fsas.scores.dtype)
    return [w.tolist() for w in _shortest_paths(light)[2]]


def _viterbi_best(scored: k2.Fsa) -> List[List[Hypothesis]]:
    """``n = 1``: the best path of every lattice by k2's Viterbi search, whose word sequence is the
    best one (the best path of the best sequence is the best path overall), vectorised over the
    batch."""
    best, fsa_of_arc, words = _shortest_paths(scored)
    num_fsas = scored.shape[0]
    sums = [np.bincount(fsa_of_arc, weights=x.double().cpu().numpy(), minlength=num_fsas).tolist()
            for x in (best.scores, best.am_scores, best.lm_scores)]
    has_path = np.bincount(fsa_of_arc, minlength=num_fsas) > 0
    return [[Hypothesis(words=w.tolist(), total=t, am=a, lm=m)] if ok else []
            for w, t, a, m, ok in zip(words, *sums, has_path.tolist())]


def one_best(
    fsas: k2.Fsa, am_scale: float = 1.0, lm_scale: float = 1.0, word_penalty: float = 0.0
) -> List[Hypothesis]:
    """The single best word sequence per lattice (``nbest(..., n=1)``); ``[utt]``.

    Lattices are validated beforehand, so every one has a hypothesis.
    """
    return [h[0] for h in nbest(fsas, 1, am_scale, lm_scale, word_penalty)]


def hypothesis_records(
    utt_ids: Sequence[str], hyps: Sequence[Sequence[Hypothesis]], symbols: k2.SymbolTable
) -> List[Dict[str, object]]:
    """``{"utt", "rank", "words", "total", "am", "lm"}`` per hypothesis of ``[utt][rank]`` lists
    (ranks from 1, words as a space-separated string, scores rounded to 4 decimals)."""
    return [{"utt": utt, "rank": rank, "words": " ".join(symbols.get(w) for w in h.words),
             "total": round(h.total, 4), "am": round(h.am, 4), "lm": round(h.lm, 4)}
            for utt, hs in zip(utt_ids, hyps) for rank, h in enumerate(hs, 1)]
