"""Score every arc of an expanded lattice batch with an AFP LM in one batched pass."""
from typing import Tuple

import k2
import torch

from models.lm import AFPLanguageModel
from models.scoring import score_unique_histories
from models.vocab import Vocabulary

from .expand import PAD, Expansion, unique_rows


def lm_ids_for_symbols(symbols: k2.SymbolTable, vocab: Vocabulary) -> torch.Tensor:
    """``[max symbol id + 1]`` int64: the LM id of each lattice word.

    A word is looked up as written, then lower-cased, then upper-cased (lattices and LM text
    often differ only in case, e.g. AMI/LibriSpeech upper case vs pocketsphinx lower case), and
    maps to ``<unk>`` when none is in the LM. Id 0 (epsilon) maps to 0; it is never scored.
    """
    table = torch.zeros(max(symbols.ids) + 1, dtype=torch.long)
    for sym_id in symbols.ids:
        if sym_id > 0:
            word = symbols.get(sym_id)
            found = (vocab.word2id.get(w) for w in (word, word.lower(), word.upper()))
            table[sym_id] = next((i for i in found if i is not None), vocab.unk_id)
    return table


def right_align(histories: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Left-padded rows ``[N, K]`` (pad ``-1``) -> ``(right-padded rows [N, K] (pad 0), lengths [N])``."""
    n, k = histories.shape
    lengths = (histories != PAD).sum(1)
    cols = (torch.arange(k)[None, :] + (k - lengths)[:, None]).clamp(max=k - 1)
    aligned = histories.gather(1, cols)
    return aligned.masked_fill(torch.arange(k)[None, :] >= lengths[:, None], 0), lengths


def afp_arc_scores(
    expansion: Expansion, model: AFPLanguageModel, vocab: Vocabulary, lm_ids: torch.Tensor, max_batch: int = 4096,
    progress: bool = False,
) -> Tuple[torch.Tensor, int]:
    """``log P(word | K-token history)`` for every arc of an expansion whose histories use LM ids.

    Word arcs score their word, final arcs (label -1) score ``</s>``, epsilon arcs get 0.

    Args:
        expansion: from :func:`rescore.expand.expand_histories` with ``history_labels`` in LM ids
            and ``bos = vocab.bos_id``.
        lm_ids: ``[num symbols]`` lattice symbol id -> LM id (:func:`lm_ids_for_symbols`).
        max_batch: distinct histories per chunk of the LM computation.
        progress: show a progress bar over the chunks.

    Returns:
        ``(scores [num_arcs] float32 on the CPU, number of distinct histories scored)``.
    """
    labels = expansion.fsas.labels.long().cpu()
    scored = labels != 0
    words = torch.where(labels > 0, lm_ids[labels.clamp(min=0)], torch.full_like(labels, vocab.eos_id))[scored]
    out = torch.zeros(labels.shape[0], dtype=torch.float32)
    if not words.numel():
        return out, 0
    uniq, inverse = unique_rows(expansion.histories[scored].numpy())
    hist, lengths = right_align(torch.from_numpy(uniq))
    out[scored] = score_unique_histories(model, hist, lengths, torch.from_numpy(inverse), words, max_batch=max_batch,
                                          progress=progress).float().cpu()
    return out, int(uniq.shape[0])
