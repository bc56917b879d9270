"""LM look-ahead for the pruning that makes an expansion fit ``--max-arcs``.

A lattice without LM scores (pocketsphinx writes none) pruned by its acoustic and word-penalty
scores alone loses the paths the LM would have chosen: a string of short, acoustically good words
beats the right words before any LM has seen them. So the beam of :func:`rescore.fit.expand_within`
is applied to scores that already contain a cheap version of the LM: the same LMs with **one word
of context** (a bigram for an n-gram; for an AFP model, its exact state over the previous word).
That needs only the order-1 expansion, which splits each state by its incoming word and so stays
close to the lattice's size, and one LM pass over its few distinct one-word histories.

The look-ahead score of an arc is the combination the final search uses, with one-word contexts::

    la = (1 − w)·(old LM, or the lattice's LM scores) + w·(new LM)

and the pruning scores are the lattice's scaled scores with ``lm_scale·lm`` replaced by
``lm_scale·la``. Each input arc gets the best Viterbi score of its copies in the order-1
expansion, so pruning stays nested in the beam and keeps a complete best path.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import k2
import numpy as np
import torch

from lattices.posteriors import arc_viterbi_scores
from lattices.validate import arc_arrays, fsa_arc_splits, select_lattices

from .arc_scores import HistoryTokens, arc_lm_scores
from .expand import expand_histories
from .scorers import Scorer

Scales = Tuple[float, float, float]  # (am_scale, lm_scale, word_penalty)


@dataclass
class LookaheadWeights:
    """How the look-ahead combines its scores, given by the caller of an expansion.

    Attributes:
        scales: ``[utt]`` the scales of every input utterance.
        lm_weights: the weight of each LM scored in the expansion, in the same order (``w`` for
            the new LM, ``1 − w`` for the old one).
        lattice_lm_weight: the weight of the lattices' own ``lm_scores`` (``1 − w`` without an
            old LM, 0 with one).
    """

    scales: Sequence[Scales]
    lm_weights: Sequence[float]
    lattice_lm_weight: float


@dataclass
class Lookahead:
    """What the look-ahead needs besides the lattices.

    Attributes:
        lms: the LMs.
        tokens: their history tokens (:func:`rescore.arc_scores.history_tokens` of ``lms``).
        weights: the scales of every input utterance and how the LMs and the lattices' own
            ``lm_scores`` combine (``weights.lm_weights`` in the order of ``lms``).
        symbols: the lattices' word table.
        max_batch: distinct histories per LM chunk.
        device: where the order-1 expansion grows (default: that of the lattices).
        chunk_arcs: input arcs per chunk of lattices (at least one lattice each) that the
            look-ahead scores at a time. Its steps are flat passes over the order-1 expansion,
            about 5x the input's size on the LibriSpeech lattices, and they slow down per arc on
            arrays much larger than this (bench/RESULTS.md 7.14). Twice the default
            ``--batch-arcs``, so that a default batch (50,000 arcs and the lattice that crossed
            that line) is usually one chunk. Each lattice's scores are the same whatever the chunk.
    """

    lms: Sequence[Scorer]
    tokens: HistoryTokens
    weights: LookaheadWeights
    symbols: k2.SymbolTable
    max_batch: int = 4096
    device: Optional[torch.device] = None
    chunk_arcs: int = 100_000

    def viterbi(self, fsas: k2.Fsa, utts: List[int], tokens: Optional[torch.Tensor]) -> torch.Tensor:
        """Per-arc best-path-through scores under the look-ahead (see the module docstring), for
        chunks of about ``chunk_arcs`` input arcs at a time.

        Args:
            fsas: FsaVec ``[utt][state][arc]``, the input utterances ``utts`` (indexes into
                ``weights.scales``), with ``scores`` at their scales and ``lm_scores``. Not mutated.
            utts: ``[len(fsas)]`` the input index of each FSA.
            tokens: ``[num_arcs]`` history tokens of the arcs (:meth:`HistoryTokens.of_labels`).

        Returns:
            ``[num_arcs]`` float64, ``<= 0``, 0 on the look-ahead's best path of each lattice (as
            :func:`lattices.posteriors.arc_viterbi_scores`).
        """
        assert tokens is not None, "the look-ahead needs the arcs' history tokens"
        first_arc = fsa_arc_splits(fsas).tolist()  # [num_fsas + 1]
        scores, lo = [], 0
        while lo < len(utts):
            hi = lo + 1
            while hi < len(utts) and first_arc[hi + 1] - first_arc[lo] <= self.chunk_arcs:
                hi += 1
            chunk = fsas if hi - lo == len(utts) else select_lattices(fsas, list(range(lo, hi)))
            scores.append(self._viterbi(chunk, utts[lo:hi], tokens[first_arc[lo]:first_arc[hi]]))
            lo = hi
        return torch.cat(scores) if scores else torch.zeros(0, dtype=torch.float64, device=fsas.scores.device)

    def _viterbi(self, fsas: k2.Fsa, utts: List[int], tokens: torch.Tensor) -> torch.Tensor:
        """:meth:`viterbi` of one chunk of lattices (the same arguments and result)."""
        one = expand_histories(fsas, 1, self.tokens.bos, history_labels=tokens, device=self.device)
        arc_map = one.arc_map.to(fsas.scores.device)
        lattice_lm = fsas.lm_scores.double()[arc_map]
        la = self.weights.lattice_lm_weight * lattice_lm
        for j, (lm, weight) in enumerate(zip(self.lms, self.weights.lm_weights)):
            if weight:
                la = la + weight * arc_lm_scores(one, lm, self.symbols, self.tokens, j, self.max_batch)[0].double().to(la.device)
        lm_scale = torch.tensor([float(self.weights.scales[u][1]) for u in utts], dtype=torch.float64)
        per_arc = lm_scale[torch.from_numpy(arc_arrays(one.fsas).fsa_of_arc)].to(la.device)
        expanded = one.fsas.clone()
        expanded.scores = (fsas.scores.double()[arc_map] + per_arc * (la - lattice_lm)).to(fsas.scores.dtype)
        best = np.full(fsas.num_arcs, -np.inf)
        np.maximum.at(best, one.arc_map.cpu().numpy(), arc_viterbi_scores(expanded).cpu().numpy())
        return torch.from_numpy(best).to(fsas.scores.device)
