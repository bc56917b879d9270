"""The language models rescoring can use, behind one interface: AFP checkpoints and ARPA n-grams.

Both score ``log P(word | history)`` for deduplicated histories in one batched call, and both are
finite-context models: an AFP-K model needs the last K tokens, an order-n n-gram the last n-1.
"""
from dataclasses import dataclass, field
from typing import Dict, Optional

import torch

from models.files import open_bytes
from models.checkpoint import load_checkpoint, self_norm_offset
from models.lm import AFPLanguageModel
from models.ngram import NgramLM
from models.scoring import score_unique_histories
from models.vocab import Vocabulary


@dataclass
class Scorer:
    """A loaded LM.

    Attributes:
        name: the file it came from.
        vocab: its vocabulary (ids of histories and words passed to :meth:`score`).
        context: tokens of history it needs (None for a full-history model run exactly).
        model: the AFP module, or None for an n-gram.
        ngram: the n-gram model, or None for an AFP module.
        normalize: False scores a self-normalised AFP model without its softmax normaliser.
        log_norm_offset: with ``normalize=False``, the constant subtracted from the raw logits.
        stats: counters of the last :meth:`score` call (``cell_steps``, ``histories``).
    """

    name: str
    vocab: Vocabulary
    context: Optional[int]
    model: Optional[AFPLanguageModel] = None
    ngram: Optional[NgramLM] = None
    normalize: bool = True
    log_norm_offset: float = 0.0
    stats: Dict[str, int] = field(default_factory=dict)

    def score(self, histories: torch.Tensor, lengths: torch.Tensor, inverse: torch.Tensor, words: torch.Tensor,
              max_batch: int = 4096, progress: bool = False) -> torch.Tensor:
        """``log P(words[i] | histories[inverse[i]])``: histories ``[U, T]`` right-padded,
        lengths ``[U]``, inverse and words ``[N]``; returns ``[N]`` float32 on the CPU."""
        if self.ngram is not None:
            return self.ngram.score(histories, lengths, inverse, words).float()
        assert self.model is not None
        self.stats = {}
        return score_unique_histories(self.model, histories, lengths, inverse, words, max_batch=max_batch,
                                      progress=progress, normalize=self.normalize, log_norm_offset=self.log_norm_offset,
                                      stats=self.stats).float().cpu()


def is_arpa(path: str) -> bool:
    """Whether ``path`` (plain or gzip) starts like an ARPA file (``\\data\\`` before any n-gram)."""
    with open_bytes(path) as f:
        return b"\\data\\" in f.read(65536)


def load_scorer(path: str, device: str = "cpu", normalize: bool = True, unk: Optional[str] = None) -> Scorer:
    """Load an ARPA n-gram (detected from the content) or an afp-train-lm checkpoint.

    Args:
        normalize: False scores without the softmax normaliser (``--no-normalize``); only for
            a checkpoint trained self-normalised.
        unk: an ARPA file's unknown-word symbol (None: ``<unk>`` in any case).

    Raises:
        ValueError: naming ``path`` when it is neither, or when ``normalize`` is False for an
            n-gram or a model not trained self-normalised.
    """
    if is_arpa(path):
        if not normalize:
            raise ValueError(f"{path}: --no-normalize applies to self-normalised neural LMs, not to an ARPA n-gram")
        lm = NgramLM.from_arpa(path, unk=unk)
        return Scorer(path, lm.vocab, max(lm.order - 1, 1), ngram=lm)
    model, vocab, extra = load_checkpoint(path, device)
    offset = 0.0 if normalize else self_norm_offset(path, model, extra)
    return Scorer(path, vocab, model.config.iterations if model.config.mode == "afp" else None, model=model,
                  normalize=normalize, log_norm_offset=offset)
