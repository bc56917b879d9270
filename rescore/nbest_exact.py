"""The honest baseline (``--method nbest-exact``): rescore exact n-best lists with the full-history RNN.

Each lattice's ``n`` best distinct word sequences (:func:`lattices.nbest.nbest`, Viterbi scores)
are rescored with the LM run as the ordinary sequential RNN (``mode="exact"``: every word sees its
whole history from ``<s>``), whatever recurrence the model was trained with. Unlike lattice
rescoring this is not limited to a K-word context, but only the n listed hypotheses can win.

Scores (per hypothesis, with the Viterbi path's unscaled ``am``/``lm`` and ``w = interpolate``)::

    lm'    = (1 - w) * lm + w * log P_LM(<s> words </s>)
    total' = am_scale * am + lm_scale * lm' + word_penalty * len(words)

``total'`` is computed as ``total + lm_scale * (lm' - lm)`` from the lattice's own total, which is
the same quantity but keeps the lattice's exact float arithmetic, so ``w = 0`` reproduces the
lattice ranking bit for bit.
"""
from typing import List, Optional, Sequence, Tuple

import k2
import torch

from lattices.nbest import Hypothesis, nbest
from models.lm import AFPLanguageModel
from models.scoring import sentence_log_probs
from models.vocab import Vocabulary

from .combine import interpolate_lm
from .scorers import lm_ids_for_symbols


def rescore_nbest_exact(
    fsas: k2.Fsa,
    symbols: k2.SymbolTable,
    model: AFPLanguageModel,
    vocab: Vocabulary,
    n: int,
    am_scale: float = 1.0,
    lm_scale: float = 1.0,
    word_penalty: float = 0.0,
    interpolate: float = 1.0,
    scales: Optional[Sequence[Tuple[float, float, float]]] = None,
    batch_size: int = 64,
    lm_ids: Optional[torch.Tensor] = None,
    normalize: bool = True,
    log_norm_offset: float = 0.0,
) -> List[List[Hypothesis]]:
    """Rescore every lattice's exact n-best list with the LM as a full-history RNN.

    Args:
        fsas: connected, top-sorted FsaVec ``[utt][state][arc]`` with ``labels`` (ids in
            ``symbols``), ``am_scores``, ``lm_scores``. Not mutated.
        symbols: the lattices' word symbol table; words reach the LM by spelling, words the LM
            does not know become ``<unk>`` (:func:`rescore.scorers.lm_ids_for_symbols`).
        model, vocab: the LM and its vocabulary; the model is run with ``mode="exact"``.
        n: hypotheses per lattice (fewer when a lattice has fewer distinct word sequences).
        am_scale, lm_scale, word_penalty: scales for every lattice, used both to build the n-best
            list and for the new totals ...
        interpolate: ``w`` in ``[0, 1]``, the weight of the new LM (1 replaces the lattice LM,
            0 keeps it and skips the LM entirely).
        scales: ... unless given per lattice as ``(am_scale, lm_scale, word_penalty)`` ``[utt]``.
        batch_size: sentences per LM batch; all hypotheses of the batch go through one
            :func:`models.scoring.sentence_log_probs` call.
        lm_ids: ``lm_ids_for_symbols(symbols, vocab)`` when the caller has it (e.g.
            :meth:`rescore.scorers.Scorer.symbol_ids`); computed when None.
        normalize, log_norm_offset: False scores a self-normalised model without its softmax
            normaliser (``--no-normalize``; :func:`models.scoring.sentence_log_probs`).

    Returns:
        ``[utt][rank]`` new :class:`Hypothesis` objects (inputs of the n-best search untouched)
        with the same ``words`` and ``am``, the interpolated ``lm`` and the new ``total``, best
        first; ties keep the lattice's order.

    Raises:
        ValueError: ``interpolate`` outside ``[0, 1]``, a lattice word id missing from ``symbols``
            (naming the utterance), or what :func:`lattices.nbest.nbest` raises.
    """
    if not 0.0 <= interpolate <= 1.0:
        raise ValueError(f"interpolate must be in [0, 1], got {interpolate}")
    lists = nbest(fsas, n, am_scale, lm_scale, word_penalty, scales=scales)
    lm_scales = [float(t[1]) for t in scales] if scales is not None else [float(lm_scale)] * len(lists)
    flat = [(i, h) for i, hyps in enumerate(lists) for h in hyps]
    if interpolate > 0.0 and flat:
        lm_ids = (lm_ids if lm_ids is not None else lm_ids_for_symbols(symbols, vocab)).tolist()
        sentences = []
        for i, h in flat:
            bad = [w for w in h.words if w >= len(lm_ids) or w not in symbols]
            if bad:
                raise ValueError(f"utterance {i}: word id {bad[0]} is not in the symbol table")
            sentences.append([lm_ids[w] for w in h.words])
        new_lm = sentence_log_probs(
            model, sentences, vocab.bos_id, vocab.eos_id, mode="exact", batch_size=batch_size,
            normalize=normalize, log_norm_offset=log_norm_offset,
        ).tolist()
    else:
        new_lm = [0.0] * len(flat)

    out: List[List[Tuple[float, int, Hypothesis]]] = [[] for _ in lists]
    for (i, h), lp in zip(flat, new_lm):
        lm = interpolate_lm(h.lm, lp, interpolate)
        total = h.total + lm_scales[i] * (lm - h.lm)
        rank = len(out[i])
        out[i].append((-total, rank, Hypothesis(words=list(h.words), total=total, am=h.am, lm=lm)))
    return [[h for _, _, h in sorted(entries, key=lambda e: e[:2])] for entries in out]
