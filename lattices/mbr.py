"""Minimum-Bayes-risk decoding of word lattices: lattice MBR as Kaldi's ``lattice-mbr-decode``.

The algorithm is Xu et al. (2011), "Minimum Bayes risk decoding and system combination based on a
recursion for edit distance" (Computer Speech & Language), the one Kaldi implements in
``lat/sausages.cc``; this is an independent, vectorised implementation of it:

1. Start from a hypothesis ``R`` (the Viterbi 1-best), written with an epsilon between words and
   at both ends: ``R = <eps> r1 <eps> r2 ... rn <eps>`` (positions ``q = 1..Q``, ``Q = 2n + 1``).
2. **Forward**, over the lattice in topological order: ``alpha'(s, q)``, the expected edit
   distance between the word sequences of the partial paths reaching state ``s`` (weighted by
   their posterior) and ``R[1..q]``, with the edit-distance recursion applied to the averaged
   prefix costs (an edit distance in which insertions, deletions and substitutions cost 1 and
   epsilons are free). ``L = alpha'(final, Q)`` is the expected loss of ``R``; it is exact when
   paths only merge at the final state.
3. **Backward**: the derivatives ``beta'`` of ``L`` along the arg-min choices give, for every
   position ``q`` of ``R``, the posterior ``gamma(q, w)`` of each word ``w`` (or epsilon) aligned
   to it, and its expected begin and end times: a confusion network ("sausage") aligned to ``R``.
4. Replace each ``R[q]`` by its most probable word (epsilon included), drop the epsilons, put
   them back between the words, and repeat while the expected loss goes down.

Each word of the result gets the posterior of its slot as its confidence and the slot's
expected times. Per lattice the work is ``O(arcs x Q)`` per iteration, vectorised over the arcs of
each topological layer and over ``q`` (the in-row recursions are prefix scans).
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import k2
import numpy as np

from lattices.validate import arc_arrays, arcs_by_layer, node_layers


@dataclass
class MbrHypothesis:
    """The MBR decision for one lattice.

    Attributes:
        words: word ids.
        confidences: ``[word]`` posterior of each word in its slot.
        start_times, end_times: ``[word]`` expected times (seconds), or None without lattice times.
        expected_errors: the expected loss ``L`` of ``words`` (see the module docstring).
        viterbi_expected_errors: ``L`` of the starting (Viterbi) hypothesis.
        iterations: passes made.
    """

    words: List[int]
    confidences: List[float]
    start_times: Optional[List[float]]
    end_times: Optional[List[float]]
    expected_errors: float
    viterbi_expected_errors: float
    iterations: int


@dataclass
class _Lattice:
    """One lattice as arrays: arcs grouped by the topological layer of their destination."""

    num_states: int
    src: np.ndarray
    dst: np.ndarray
    word: np.ndarray  # 0 for epsilon and for the final arcs
    weight: np.ndarray  # P(arc | its destination is reached): exp(alpha[src] + score - alpha[dst])
    state_time: Optional[np.ndarray]
    layers: List[np.ndarray]  # arc indexes per destination layer, in topological order


def _lattice(arrays, fsa_index: int, scores: np.ndarray, alpha: np.ndarray, labels: np.ndarray,
             start_times: Optional[np.ndarray], end_times: Optional[np.ndarray]) -> _Lattice:
    s0, s1 = arrays.state_splits[fsa_index], arrays.state_splits[fsa_index + 1]
    a0, a1 = arrays.arc_splits[s0], arrays.arc_splits[s1]
    src, dst = arrays.src[a0:a1] - s0, arrays.dst[a0:a1] - s0
    n = int(s1 - s0)
    word = np.maximum(labels[a0:a1], 0)
    al = alpha[s0:s1]
    weight = np.exp(al[src] + scores[a0:a1] - al[dst])
    roots = np.zeros(n, dtype=bool)
    roots[0] = True
    layers = arcs_by_layer(node_layers(n, roots, src, dst)[dst])
    state_time = None
    if start_times is not None and end_times is not None:
        state_time = np.zeros(n)
        state_time[src] = start_times[a0:a1]
        state_time[dst] = end_times[a0:a1]
    return _Lattice(n, src, dst, word, weight, state_time, layers)


def _with_eps(words: Sequence[int]) -> np.ndarray:
    """``<eps> w1 <eps> w2 ... wn <eps>`` with a leading dummy so that ``R[q]`` is position q."""
    r = np.zeros(2 * len(words) + 2, dtype=np.int64)
    r[2::2] = words
    return r


def _arc_rows(lat: _Lattice, arcs: np.ndarray, ad: np.ndarray, r: np.ndarray, dels: np.ndarray):
    """For ``arcs``: the forward row ``alpha'_arc [A, Q+1]`` and the costs ``a1, a2 [A, Q]`` of
    the substitution/match and insertion choices at ``q = 1..Q``."""
    s, w = lat.src[arcs], lat.word[arcs]
    ins = (w != 0).astype(np.float64)
    a1 = ad[s, :-1] + (w[:, None] != r[None, 1:])
    a2 = ad[s, 1:] + ins[:, None]
    c = np.concatenate([(ad[s, 0] + ins)[:, None], np.minimum(a1, a2)], axis=1)
    return dels + np.minimum.accumulate(c - dels, axis=1), a1, a2


def _stats(lat: _Lattice, words: Sequence[int]) -> Tuple[float, Dict[Tuple[int, int], float], np.ndarray, np.ndarray]:
    """Expected loss of ``words`` and the sausage stats: ``(L, gamma {(q, word): posterior},
    tau_b [Q+1], tau_e [Q+1])`` (times still multiplied by the slot posterior)."""
    r = _with_eps(words)
    big_q = len(r) - 1
    dels = np.concatenate([[0.0], np.cumsum(r[1:] != 0)])  # cost of deleting R[1..q]
    ad = np.zeros((lat.num_states, big_q + 1))
    ad[0] = dels
    for arcs in lat.layers:  # forward
        row, _, _ = _arc_rows(lat, arcs, ad, r, dels)
        np.add.at(ad, lat.dst[arcs], lat.weight[arcs, None] * row)
    loss = float(ad[lat.num_states - 1, big_q])
    bd = np.zeros_like(ad)
    bd[lat.num_states - 1, big_q] = 1.0
    gq: List[np.ndarray] = []
    gw: List[np.ndarray] = []
    gv: List[np.ndarray] = []
    tau_b = np.zeros(big_q + 1)
    tau_e = np.zeros(big_q + 1)
    step = (r[1:] != 0).astype(np.float64)
    for arcs in reversed(lat.layers):  # backward
        s, n = lat.src[arcs], lat.dst[arcs]
        row, a1, a2 = _arc_rows(lat, arcs, ad, r, dels)
        a3 = row[:, :-1] + step
        case = np.where(a1 <= a2, np.where(a1 <= a3, 1, 3), np.where(a2 <= a3, 2, 3))  # [A, Q] for q = 1..Q
        contrib = lat.weight[arcs, None] * bd[n]  # [A, Q+1]
        beta = _gated_reverse_scan(contrib, case == 3)
        b = beta[:, 1:]
        for which, target in ((1, -1), (2, 0)):
            rows, cols = np.nonzero(case == which)
            np.add.at(bd, (s[rows], cols + 1 + target), b[rows, cols])
        np.add.at(bd[:, 0], s, beta[:, 0])
        for which in (1, 3):
            rows, cols = np.nonzero(case == which)
            v = b[rows, cols]
            gq.append(cols + 1)
            gw.append(lat.word[arcs][rows] if which == 1 else np.zeros(len(rows), dtype=np.int64))
            gv.append(v)
            if lat.state_time is not None:
                t_s = lat.state_time[s[rows]]
                np.add.at(tau_b, cols + 1, t_s * v)
                np.add.at(tau_e, cols + 1, (lat.state_time[n[rows]] if which == 1 else t_s) * v)
    q_all, w_all, v_all = (np.concatenate(x) if x else np.zeros(0) for x in (gq, gw, gv))
    gamma: Dict[Tuple[int, int], float] = {}
    if len(q_all):
        width = int(w_all.max()) + 1
        flat = q_all.astype(np.int64) * width + w_all.astype(np.int64)
        if (big_q + 1) * width <= 1 << 24:  # a dense count is cheaper than sorting
            dense = np.bincount(flat, weights=v_all, minlength=(big_q + 1) * width)
            keys = np.flatnonzero(dense)  # slots with no posterior mass at all carry no decision
            sums = dense[keys]
        else:
            keys, inv = np.unique(flat, return_inverse=True)
            sums = np.bincount(inv.reshape(-1), weights=v_all)
        gamma = {(int(k) // width, int(k) % width): float(v) for k, v in zip(keys, sums)}
    return loss, gamma, tau_b, tau_e


def _gated_reverse_scan(x: np.ndarray, gate: np.ndarray) -> np.ndarray:
    """``y[:, q] = x[:, q] + gate[:, q] * y[:, q+1]`` for ``q = Q..0`` (``gate [A, Q]`` is the
    gate of ``q = 1..Q`` feeding ``q - 1``), as segmented reverse sums."""
    a, width = x.shape
    rev = x[:, ::-1]
    # after reversal, position i continues the sum of i-1 iff the gate of q = width-i (i >= 1) is set
    cont = np.zeros((a, width), dtype=bool)
    cont[:, 1:] = gate[:, ::-1]
    idx = np.where(~cont, np.arange(width)[None, :], 0)
    start = np.maximum.accumulate(idx, axis=1)
    cs = np.cumsum(rev, axis=1)
    before = np.where(start > 0, np.take_along_axis(cs, np.maximum(start - 1, 0), axis=1), 0.0)
    return (cs - before)[:, ::-1]


def _best_words(gamma: Dict[Tuple[int, int], float], big_q: int) -> List[int]:
    best: Dict[int, Tuple[float, int]] = {}
    for (q, w), v in gamma.items():
        if q not in best or v > best[q][0] or (v == best[q][0] and w < best[q][1]):
            best[q] = (v, w)
    return [best[q][1] for q in range(1, big_q + 1) if q in best and best[q][1] != 0]


def mbr_decode(fsas: k2.Fsa, initial: Sequence[Sequence[int]], max_iterations: int = 10) -> List[MbrHypothesis]:
    """MBR word sequences (see the module docstring).

    Args:
        fsas: scaled FsaVec ``[utt][state][arc]`` (``scores`` at the posterior scales,
            :func:`lattices.lattice_batch.posterior_scales`: acoustic scale 1/LMWT as in Kaldi),
            connected and top-sorted; optional ``start_times``/``end_times``.
        initial: ``[utt]`` starting hypotheses (word ids), normally the Viterbi 1-best.
        max_iterations: at most this many update passes per lattice.

    Returns:
        ``[utt]`` :class:`MbrHypothesis`.
    """
    if len(initial) != fsas.shape[0]:
        raise ValueError(f"{len(initial)} starting hypotheses for {fsas.shape[0]} lattices")
    arrays = arc_arrays(fsas)
    scores = fsas.scores.detach().double().cpu().numpy()
    alpha = fsas.get_forward_scores(use_double_scores=True, log_semiring=True).cpu().numpy()
    labels = fsas.labels.long().cpu().numpy()
    has_t = hasattr(fsas, "start_times") and hasattr(fsas, "end_times")
    st = fsas.start_times.double().cpu().numpy() if has_t else None
    et = fsas.end_times.double().cpu().numpy() if has_t else None
    out = []
    for i, words in enumerate(initial):
        lat = _lattice(arrays, i, scores, alpha, labels, st, et)
        best = list(map(int, words))
        loss, gamma, tau_b, tau_e = _stats(lat, best)
        start_loss, it = loss, 0
        while it < max_iterations:
            it += 1
            cand = _best_words(gamma, 2 * len(best) + 1)
            if cand == best:
                break
            c_loss, c_gamma, c_b, c_e = _stats(lat, cand)
            if c_loss >= loss - 1e-9:
                break
            best, loss, gamma, tau_b, tau_e = cand, c_loss, c_gamma, c_b, c_e
        slots = [2 * (k + 1) for k in range(len(best))]
        post = [gamma.get((q, w), 0.0) for q, w in zip(slots, best)]
        occupied = [sum(v for (qq, _), v in gamma.items() if qq == q) for q in slots]
        times = ([float(tau_b[q] / max(o, 1e-12)) for q, o in zip(slots, occupied)],
                 [float(tau_e[q] / max(o, 1e-12)) for q, o in zip(slots, occupied)]) if has_t else (None, None)
        out.append(MbrHypothesis(best, [float(min(1.0, max(0.0, p))) for p in post], times[0], times[1],
                                 loss, start_loss, it))
    return out
