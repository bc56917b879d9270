"""Score every arc of an expanded lattice batch with an LM (AFP or n-gram) in one batched pass."""
import math
from dataclasses import dataclass
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


@dataclass
class HistoryTokens:
    """The tokens that lattice words add to expansion histories, for one or more LMs.

    A word's token stands for its combination of LM ids: lattice words that every LM maps to the
    same id (e.g. two words both ``<unk>``) share a token, so they never split expanded states;
    words any LM tells apart get different tokens. Tokens are canonical: a word's token is a
    function of its LM ids alone (mixed radix over the vocabularies, ``1 + sum_j id_j·stride_j``),
    not of the other words of its batch, so an utterance expands to the same states in the same
    order in any batch, shard or job, and paths of exactly equal score (homophones that the LM
    maps to one id) break their tie the same way.

    Attributes:
        of_symbol: ``[max symbol id + 1]`` int64, the token of each word id (0 for epsilon).
        sizes: the vocabulary size (softmax outputs) of each LM.
        bos_ids: each LM's id of ``<s>``.
    """

    of_symbol: torch.Tensor
    sizes: List[int]
    bos_ids: List[int]

    @property
    def bos(self) -> int:
        """The token of ``<s>``, above every word's."""
        return math.prod(self.sizes) + 1

    def of_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """``[num_arcs]`` int64 tokens of arc ``labels`` (0 for epsilon and the final ``-1``)."""
        labels = labels.long()
        return torch.where(labels > 0, self.of_symbol[labels.clamp(min=0)], torch.zeros_like(labels))

    def lm_ids(self, tokens: torch.Tensor, lm: int) -> torch.Tensor:
        """LM ``lm``'s ids of ``tokens`` (word tokens or :attr:`bos`), any shape and device."""
        stride = math.prod(self.sizes[:lm])
        ids = torch.div(tokens - 1, stride, rounding_mode="floor") % self.sizes[lm]
        return torch.where(tokens == self.bos, torch.full_like(tokens, self.bos_ids[lm]), ids)


def history_tokens(symbols: k2.SymbolTable, lms: Sequence[Scorer]) -> HistoryTokens:
    """The :class:`HistoryTokens` of the words of ``symbols`` for ``lms``."""
    ids = torch.stack([lm.symbol_ids(symbols) for lm in lms], dim=1)  # [symbols, LMs]
    sizes = [lm.vocab.size for lm in lms]
    strides = torch.tensor([math.prod(sizes[:j]) for j in range(len(lms))], dtype=torch.long)
    of_symbol = 1 + (ids * strides).sum(1)
    of_symbol[0] = 0
    return HistoryTokens(of_symbol, sizes, [lm.vocab.bos_id for lm in lms])


def arc_lm_scores(
    expansion: Expansion, scorer: Scorer, symbols: k2.SymbolTable, tokens: HistoryTokens, lm: int = 0,
    max_batch: int = 4096, progress: bool = False,
) -> Tuple[torch.Tensor, int]:
    """``log P(word | history)`` under ``scorer`` for every arc of an expansion, in one batched pass.

    Word arcs score their word, final arcs (label -1) score ``</s>``, epsilon arcs get 0. Distinct
    histories (after mapping to the LM's ids, so words it cannot tell apart merge) are scored once.

    Args:
        expansion: from :func:`rescore.fit.expand_within`, histories in the token space of ``tokens``.
        scorer: the LM.
        symbols: the lattices' word table (arc labels).
        tokens: the history tokens, made for a list of LMs of which ``scorer`` is number ``lm``.
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
    rows = torch.where(rows == PAD, rows, tokens.lm_ids(rows, lm))
    uniq, inverse = unique_rows(rows)
    hist, lengths = right_align(uniq)
    out[scored] = scorer.score(hist, lengths, inverse, words, max_batch, progress)
    return out, int(uniq.shape[0])
