"""Tensor-level LM scoring used by training, evaluation and lattice rescoring (no k2).

Two entry points:

- :func:`score_pairs`: ``log P(word | history)`` for a batch of (history, word) pairs, the
  building block of parallel lattice rescoring. Identical histories are scored once.
- :func:`sentence_log_probs`: ``log P`` of whole sentences including ``</s>``.

Both run in the model's own mode (``afp`` with K iterations, or ``exact``) unless told otherwise,
in ``eval()`` mode and without gradients, on whatever device the model is on.
"""
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor
from tqdm import tqdm

from .lm import AFPLanguageModel


def pad_sequences(seqs: Sequence[Sequence[int]], pad: int) -> Tuple[Tensor, Tensor]:
    """Right-pad id lists: returns ``(ids [N, T_max] int64, lengths [N] int64)``."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), int(lengths.max()) if len(seqs) else 0), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return out, lengths


@torch.no_grad()
def history_states(
    model: AFPLanguageModel, histories: Tensor, lengths: Tensor, mode: Optional[str] = None, iterations: Optional[int] = None
) -> Tensor:
    """Final last-layer state of each history.

    Args:
        histories: ``[N, T]`` int64, right-padded; row i's history is ``histories[i, :lengths[i]]``
            and is consumed from the zero state (so it normally starts with ``<s>``).
        lengths: ``[N]`` int64, each in ``1..T``.

    Returns:
        ``[N, H]`` states on the model's device.
    """
    if histories.numel() and int(lengths.min()) < 1:
        raise ValueError("every history needs at least one token (normally <s>)")
    device = model.output.weight.device
    states, _ = model.hidden_states(histories.to(device), mode, iterations)
    return states[torch.arange(states.shape[0], device=device), lengths.to(device) - 1]


@torch.no_grad()
def score_pairs(
    model: AFPLanguageModel,
    histories: Tensor,
    lengths: Tensor,
    words: Tensor,
    mode: Optional[str] = None,
    iterations: Optional[int] = None,
    max_batch: int = 4096,
) -> Tensor:
    """``log P(words[i] | histories[i, :lengths[i]])`` for every pair, in one batched computation.

    Distinct histories are found with ``torch.unique`` and run through the recurrence once, in
    chunks of ``max_batch`` histories; the softmax normaliser is computed once per history.

    Args:
        histories: ``[N, T]`` int64 right-padded history ids (pad value irrelevant).
        lengths: ``[N]`` int64 history lengths (>= 1).
        words: ``[N]`` int64 next-word ids.
        mode, iterations: override the model's recurrence (default: its own).
        max_batch: histories per chunk; bounds memory to about ``max_batch * (T * gates * H + V)``.

    Returns:
        ``[N]`` log-probabilities in the model's dtype, on its device.
    """
    if not (histories.dim() == 2 and lengths.shape == words.shape == histories.shape[:1]):
        raise ValueError(f"shape mismatch: histories {tuple(histories.shape)}, lengths {tuple(lengths.shape)}, words {tuple(words.shape)}")
    if lengths.numel() and (int(lengths.min()) < 1 or int(lengths.max()) > histories.shape[1]):
        raise ValueError(f"history lengths must be in 1..{histories.shape[1]} (every history needs at least one token, normally <s>)")
    # Canonical form so equal histories compare equal whatever their padding.
    positions = torch.arange(histories.shape[1])
    canon = histories.masked_fill(positions[None, :] >= lengths[:, None], -1)
    uniq, inverse = torch.unique(torch.cat([lengths[:, None], canon], dim=1), dim=0, return_inverse=True)
    return score_unique_histories(model, uniq[:, 1:].clamp(min=0), uniq[:, 0], inverse, words, mode, iterations, max_batch)


@torch.no_grad()
def score_unique_histories(
    model: AFPLanguageModel,
    histories: Tensor,
    lengths: Tensor,
    inverse: Tensor,
    words: Tensor,
    mode: Optional[str] = None,
    iterations: Optional[int] = None,
    max_batch: int = 4096,
    progress: bool = False,
) -> Tensor:
    """Like :func:`score_pairs` for callers that already deduplicated the histories
    (``progress`` shows a bar over the chunks).

    Args:
        histories: ``[U, T]`` int64 right-padded distinct histories; lengths: ``[U]`` (>= 1).
        inverse: ``[N]`` int64, the history (row of ``histories``) of each pair.
        words: ``[N]`` int64 next-word ids.

    Returns:
        ``[N]`` log-probabilities in the model's dtype, on its device.
    """
    was_training = model.training
    model.eval()
    device = model.output.weight.device
    try:
        dtype = model.output.weight.dtype
        log_norm = torch.empty(histories.shape[0], device=device, dtype=dtype)
        states = torch.empty(histories.shape[0], model.config.hidden, device=device, dtype=dtype)
        chunks = range(0, histories.shape[0], max_batch)
        for start in tqdm(chunks, desc="LM", unit="chunk", disable=not progress or len(chunks) < 2, mininterval=1.0):
            sl = slice(start, start + max_batch)
            width = int(lengths[sl].max())  # shorter chunks run fewer positions
            s = history_states(model, histories[sl, :width], lengths[sl], mode, iterations)
            states[sl] = s
            log_norm[sl] = torch.logsumexp(model.logits(s), dim=-1)
        words = words.to(device)
        inverse = inverse.to(device)
        word_logit = (states[inverse] * model.output.weight[words]).sum(-1) + model.output.bias[words] + model.output_mask[words]
        return word_logit - log_norm[inverse]
    finally:
        model.train(was_training)


@torch.no_grad()
def sentence_log_probs(
    model: AFPLanguageModel,
    sentences: Sequence[Sequence[int]],
    bos: int,
    eos: int,
    mode: Optional[str] = None,
    iterations: Optional[int] = None,
    batch_size: int = 64,
) -> Tensor:
    """``log P(<s> w_1 .. w_n </s>)`` of each sentence (ids without ``<s>``/``</s>``).

    Returns:
        ``[N]`` float64 on the CPU, summing ``log P(w_t | <s> w_1 .. w_{t-1})`` over the words and
        ``</s>`` (for an ``afp`` model each term sees only the last K tokens of its history).
    """
    was_training = model.training
    model.eval()
    device = model.output.weight.device
    out = torch.empty(len(sentences), dtype=torch.float64)
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            inputs, lengths = pad_sequences([[bos] + list(sentences[i]) for i in idx], eos)
            targets, _ = pad_sequences([list(sentences[i]) + [eos] for i in idx], eos)
            nll = model.token_nll(inputs.to(device), targets.to(device), mode, iterations)
            mask = torch.arange(inputs.shape[1])[None, :] < lengths[:, None]
            out[idx] = -nll.double().cpu().masked_fill(~mask, 0.0).sum(1)
    finally:
        model.train(was_training)
    return out

