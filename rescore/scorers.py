"""The language models rescoring can use, behind one interface: AFP checkpoints and ARPA n-grams.

Both score ``log P(word | history)`` for deduplicated histories in one batched call, and both are
finite-context models: an AFP-K model needs the last K tokens, an order-n n-gram the last n-1.
"""
from dataclasses import dataclass, field
from functools import cached_property
from typing import Dict, Optional

import torch

from models.files import open_bytes
from models.checkpoint import load_checkpoint, self_norm_offset
from models.lm import AFPLanguageModel
from models.ngram import NgramLM
from models.prefix_tree import word_input_table
from models.scoring import score_unique_histories
from models.vocab import Vocabulary


def lm_ids_for_symbols(symbols, vocab: Vocabulary) -> torch.Tensor:
    """``[max symbol id + 1]`` int64: the LM id of each word of a ``k2.SymbolTable``.

    A word is looked up as written, then lower-cased, then upper-cased (lattices and LM text
    often differ only in case, e.g. AMI/LibriSpeech upper case vs pocketsphinx lower case), and
    maps to ``<unk>`` when none is in the LM. Id 0 (epsilon) maps to 0; it is never scored.
    """
    return _extend_ids(torch.zeros(max(symbols.ids) + 1, dtype=torch.long), symbols._id2sym.items(), vocab)


def _extend_ids(table: torch.Tensor, words, vocab: Vocabulary) -> torch.Tensor:
    """``table`` (zeros for ids not looked up yet), with the LM ids of ``words`` ``(id, word)`` filled in."""
    get, unk = vocab.word2id.get, vocab.unk_id
    for sym_id, word in words:
        if sym_id > 0:
            found = get(word)
            if found is None:
                found = get(word.lower())
                if found is None:
                    found = get(word.upper())
            table[sym_id] = unk if found is None else found
    return table


@dataclass
class _SymbolIds:
    """What :meth:`Scorer.symbol_ids` looked up last: the table, its words, their LM ids."""

    table: object
    words: Dict[int, str]
    ids: torch.Tensor


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
    _symbol_ids: Optional[_SymbolIds] = field(default=None, repr=False, compare=False)

    @property
    def device(self) -> torch.device:
        """Where :meth:`score` computes: the AFP module's device (an n-gram scores on the CPU)."""
        return self.model.output.weight.device if self.model is not None else torch.device("cpu")

    def symbol_ids(self, symbols) -> torch.Tensor:
        """:func:`lm_ids_for_symbols` of ``symbols`` (a ``k2.SymbolTable``) and this LM, looking up only
        the words it has not seen: a job hands every batch the same table, or a copy of the previous
        one with words added (:func:`lattices.reader.read_lattice_batches`), so the cost per batch
        is that of its new words, not of the whole vocabulary. A table that gives a word seen before
        another id starts afresh."""
        memo, words = self._symbol_ids, symbols._id2sym
        if memo is not None and memo.table is symbols:
            return memo.ids
        if memo is None or not memo.words.items() <= words.items():
            memo = _SymbolIds(None, {}, torch.zeros(1, dtype=torch.long))
        new = words.keys() - memo.words.keys()
        ids = memo.ids
        if new:
            ids = torch.cat([ids, torch.zeros(max(max(new) + 1 - ids.numel(), 0), dtype=torch.long)])
            ids = _extend_ids(ids, ((i, words[i]) for i in new), self.vocab)
        self._symbol_ids = _SymbolIds(symbols, dict(words), ids[:max(symbols.ids) + 1])
        return self._symbol_ids.ids

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
                                      stats=self.stats, input_table=self._input_table).float().cpu()

    @cached_property
    def _input_table(self) -> Optional[torch.Tensor]:
        """The model's first-layer input projection of every word, computed at the first :meth:`score`
        (a loaded LM's weights do not change while it scores)."""
        assert self.model is not None
        return word_input_table(self.model)


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
