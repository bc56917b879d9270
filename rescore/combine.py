"""Combine acoustic, old-LM and new-LM scores: the one formula both rescoring methods use.

Natural-log scores, higher is better::

    lm    = (1 − w)·old_lm + w·new_lm          (w = --interpolate; log-linear interpolation)
    total = am_scale·am + lm_scale·lm + word_penalty·n_words

``w = 0`` returns the old LM score and ``w = 1`` the new one exactly (no ``0·(−inf)``).
"""
from typing import TypeVar

import k2
import torch

Score = TypeVar("Score", float, torch.Tensor)


def interpolate_lm(old_lm: Score, new_lm: Score, w: float) -> Score:
    """``(1 − w)·old_lm + w·new_lm`` for floats or tensors of the same shape, exact at the ends."""
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"interpolation weight must be in [0, 1], got {w}")
    if w == 0.0:
        return old_lm
    if w == 1.0:
        return new_lm
    return (1.0 - w) * old_lm + w * new_lm


def rescored_lattices(fsas: k2.Fsa, old_lm: torch.Tensor, new_lm: torch.Tensor, w: float) -> k2.Fsa:
    """A copy of ``fsas`` (not mutated) carrying the combined LM scores.

    Args:
        fsas: FsaVec ``[utt][state][arc]`` with ``am_scores``.
        old_lm, new_lm: ``[num_arcs]`` float32 per-arc LM log-probabilities.
        w: the interpolation weight.

    Returns:
        The copy with ``old_lm_scores``, ``afp_lm_scores`` (= ``new_lm``), ``lm_scores`` (combined)
        and ``scores = am_scores + lm_scores`` (scale 1/1; search applies the scales).
    """
    out = fsas.clone()
    out.old_lm_scores = old_lm
    out.afp_lm_scores = new_lm
    out.lm_scores = interpolate_lm(old_lm, new_lm, w)
    out.scores = out.am_scores + out.lm_scores
    return out
