"""Score every arc of an expanded lattice batch with an LM (AFP or n-gram) in one batched pass."""
from typing import List, Sequence, Tuple

import k2
import torch

from .arcs import unique_rows
from .expand import PAD, Expansion
from .scorers import Scorer


def right_align(histories: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Left-padded rows ``[N, K]`` (pad ``-1``) -> ``(right-padded rows [N, K] (pad 0), lengths [N])``."""
    n, k = histories.shape
    lengths = (histories != PAD).sum(1)
    positions = torch.arange(k, device=histories.device)[None, :]
    aligned = histories.gather(1, (positions + (k - lengths)[:, None]).clamp(max=k - 1))
    return aligned.masked_fill(positions >= lengths[:, None], 0), lengths


def history_tokens(symbols: k2.SymbolTable, lms: Sequence[Scorer]) -> Tuple[torch.Tensor, List[torch.Tensor]]:
    """History tokens for expansion: one token per distinct combination of the LMs' ids of a word.

    Lattice words that every LM maps to the same id (e.g. two words both ``<unk>``) share a token,
    so they never split expanded states; words any LM tells apart get different tokens.

    Returns:
        ``(token_of_symbol [max symbol id + 1] int64 (0 for epsilon), tables)`` where ``tables[j]``
        maps every token to ``lms[j]``'s id; the last token (``len(tables[j]) - 1``) is ``<s>``.
    """
    ids = torch.stack([lm.symbol_ids(symbols) for lm in lms], dim=1)  # [symbols, LMs]
    combos, token = torch.unique(ids[1:], dim=0, return_inverse=True)
    token_of_symbol = torch.cat([torch.zeros(1, dtype=torch.long), token + 1])
    tables = [torch.cat([torch.zeros(1, dtype=torch.long), combos[:, j], torch.tensor([lm.vocab.bos_id])]) for j, lm in enumerate(lms)]
    return token_of_symbol, tables


def arc_lm_scores(
    expansion: Expansion, scorer: Scorer, symbols: k2.SymbolTable, table: torch.Tensor, max_batch: int = 4096,
    progress: bool = False,
) -> Tuple[torch.Tensor, int]:
    """``log P(word | history)`` under ``scorer`` for every arc of an expansion, in one batched pass.

    Word arcs score their word, final arcs (label -1) score ``</s>``, epsilon arcs get 0. Distinct
    histories (after mapping to the LM's ids, so words it cannot tell apart merge) are scored once.

    Args:
        expansion: from :func:`rescore.fit.expand_within`, histories in token space
            (:func:`history_tokens`, ``<s>`` = ``len(table) - 1``).
        scorer: the LM.
        symbols: the lattices' word table (arc labels).
        table: ``[num tokens]`` token -> LM id (:func:`history_tokens`).
        max_batch: distinct histories per chunk of the LM computation.
        progress: show a progress bar over the chunks.

    Returns:
        ``(scores [num_arcs] float32 on the CPU, number of distinct histories scored)``.
    """
    labels = expansion.fsas.labels.long().cpu()
    scored = labels != 0
    word_ids = scorer.symbol_ids(symbols)
    words = torch.where(labels > 0, word_ids[labels.clamp(min=0)], torch.full_like(labels, scorer.vocab.eos_id))[scored]
    out = torch.zeros(labels.shape[0], dtype=torch.float32)
    if not words.numel():
        return out, 0
    rows = expansion.histories[scored].to(scorer.device)  # deduplicated where the LM runs
    rows = torch.where(rows == PAD, rows, table.to(rows.device)[rows.clamp(min=0)])
    uniq, inverse = unique_rows(rows)
    hist, lengths = right_align(uniq)
    out[scored] = scorer.score(hist, lengths, inverse, words, max_batch, progress)
    return out, int(uniq.shape[0])
