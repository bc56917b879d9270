"""Tensor-level LM scoring used by training, evaluation and lattice rescoring (no k2).

Two entry points:

- :func:`score_pairs`: ``log P(word | history)`` for a batch of (history, word) pairs, the
  building block of parallel lattice rescoring. Identical histories are scored once.
- :func:`sentence_log_probs`: ``log P`` of whole sentences including ``</s>``.

Both run in the model's own mode (``afp`` with K iterations, or ``exact``) unless told otherwise,
in ``eval()`` mode and without gradients, on whatever device the model is on.
"""
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .chunks import run_in_chunks
from .lm import AFPLanguageModel
from .prefix_tree import last_tokens, lexicographic_order, prefix_tree_states, tree_of_sorted


# Rows of logits per block of the softmax normaliser on the CPU: a [64, V] block stays in the
# core's cache between the matrix product that writes it and the log-sum-exp that reads it, and the
# logits never take more than 64 x V floats (one block of 8,192 rows at V = 20k is 655 MB). On this
# project's 2-core machines the time is the same as one block of all rows (the product dominates;
# bench/RESULTS.md section 7.7). On CUDA one block of all rows.
CPU_NORM_ROWS = 64
# Pairs per chunk of the (state, output row) dot products, by device: on the CPU, 4,096 pairs, whose
# gathered rows stay in cache (the pass without normaliser 1.24x faster than with 65,536, section
# 7.7, in a sixteenth of the memory); on CUDA, large chunks.
GATHER_PAIRS = {"cpu": 1 << 12, "cuda": 1 << 16}


def log_normalizers(states: Tensor, weight: Tensor, bias: Tensor, block_rows: Optional[int] = None) -> Tensor:
    """The softmax log-normaliser ``log sum_v exp(states @ weight.T + bias)_v`` of every row.

    Args:
        states: ``[N, H]`` output-layer inputs.
        weight: ``[V, H]`` output weights; bias: ``[V]`` (``-inf`` for ids that are never predicted).
        block_rows: rows per block (default: :data:`CPU_NORM_ROWS` on the CPU, all rows on CUDA).

    Returns:
        ``[N]`` log-normalisers, in the dtype and on the device of ``states``.
    """
    n = states.shape[0]
    rows = _norm_block_rows(states, block_rows)
    if rows >= n:
        return torch.logsumexp(torch.addmm(bias, states, weight.t()), dim=-1)
    out = torch.empty(n, dtype=states.dtype, device=states.device)
    for lo in range(0, n, rows):
        out[lo : lo + rows] = torch.logsumexp(torch.addmm(bias, states[lo : lo + rows], weight.t()), dim=-1)
    return out


def _norm_block_rows(states: Tensor, block_rows: Optional[int]) -> int:
    """Rows of ``states`` per block of logits: ``block_rows``, else :data:`CPU_NORM_ROWS` on the CPU
    and all rows on CUDA."""
    return block_rows or (CPU_NORM_ROWS if states.device.type == "cpu" else max(states.shape[0], 1))


def log_softmax_pairs(states: Tensor, weight: Tensor, bias: Tensor, rows: Tensor, words: Tensor,
                      block_rows: Optional[int] = None) -> Tensor:
    """``log_softmax(states @ weight.T + bias)[rows[i], words[i]]`` for every pair, each taken from the
    block of logits that the normaliser computes anyway (no second product per pair).

    Args:
        states, weight, bias, block_rows: as for :func:`log_normalizers`.
        rows: ``[P]`` int64 rows of ``states``, sorted ascending; words: ``[P]`` int64 word ids.

    Returns:
        ``[P]`` log-probabilities, in the dtype and on the device of ``states``.
    """
    n = states.shape[0]
    step = _norm_block_rows(states, block_rows)
    starts = torch.arange(0, n + step, step, device=states.device).clamp(max=n)
    bounds = torch.searchsorted(rows, starts).tolist()  # block k's pairs: bounds[k]:bounds[k + 1]
    out = torch.empty(rows.shape[0], dtype=states.dtype, device=states.device)
    for k, lo in enumerate(range(0, n, step)):
        p_lo, p_hi = bounds[k], bounds[k + 1]
        if p_lo == p_hi:  # no pair needs these rows
            continue
        logits = torch.addmm(bias, states[lo : lo + step], weight.t())
        r = rows[p_lo:p_hi] - lo
        out[p_lo:p_hi] = logits[r, words[p_lo:p_hi]] - torch.logsumexp(logits, dim=-1)[r]
    return out


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
    normalize: bool = True,
    log_norm_offset: float = 0.0,
    gather_batch: Optional[int] = None,
    states: str = "tree",
    stats: Optional[Dict[str, int]] = None,
    norm_rows: Optional[int] = None,
    input_table: Optional[Tensor] = None,
) -> Tensor:
    """Like :func:`score_pairs` for callers that already deduplicated the histories.

    The histories are sorted lexicographically (after keeping the last K tokens of each for an
    AFP-K model) and processed in chunks of ``max_batch``: each chunk's states come from one cell
    step per distinct prefix (:mod:`models.prefix_tree`), then the scores of the pairs whose
    history is in the chunk: with the normaliser, read off its blocks of V logits
    (:func:`log_softmax_pairs`); without (``normalize`` False), one dot product per pair, in
    sub-chunks of ``gather_batch`` pairs. Memory is bounded by ``max_batch * (H + V) +
    gather_batch * H`` besides the pairs' own arrays, whatever their number. On CUDA out-of-memory
    the failing chunk alone is retried at half size.

    Args:
        histories: ``[U, T]`` int64 right-padded distinct histories; lengths: ``[U]`` (>= 1).
        inverse: ``[N]`` int64, the history (row of ``histories``) of each pair.
        words: ``[N]`` int64 next-word ids.
        mode, iterations: override the model's recurrence (default: its own).
        max_batch: histories per chunk. progress: show a progress bar over the histories.
        normalize: False skips the softmax normaliser: the score is the raw logit minus the
            constant ``log_norm_offset`` (only meaningful for a self-normalised model; callers
            check that and take the offset from :func:`models.checkpoint.self_norm_offset`).
        gather_batch: pairs per (state, output row) dot-product chunk without the normaliser
            (default: by device, :data:`GATHER_PAIRS`).
        states: ``"tree"`` (prefix tree, the default) or ``"jacobi"`` (K Jacobi iterations per
            history, the reference computation; same function).
        stats: if given, receives ``cell_steps`` (per layer) and ``histories``.
        norm_rows: rows per block of the normaliser (:func:`log_normalizers`; default: its own).
        input_table: the model's :func:`models.prefix_tree.word_input_table`, for the tree (a
            caller that scores many batches with one model computes it once).

    Returns:
        ``[N]`` log-probabilities in the model's dtype, on its device.
    """
    if states not in ("tree", "jacobi"):
        raise ValueError(f"states must be 'tree' or 'jacobi', got {states!r}")
    was_training = model.training
    model.eval()
    device = model.output.weight.device
    try:
        mode, iterations = model._resolve(mode, iterations)
        context = iterations if mode == "afp" else None
        dtype = model.output.weight.dtype
        out = torch.empty(words.shape[0], device=device, dtype=dtype)
        rows, lens = last_tokens(histories.to(device), lengths.to(device), context)
        order = lexicographic_order(rows)  # chunks of neighbours share prefixes
        rank = torch.empty_like(order)
        rank[order] = torch.arange(order.numel(), device=device)
        pair_rank = rank[inverse.to(device)]
        pair_rank, pair_order = torch.sort(pair_rank, stable=True)
        words = words.to(device)
        weight, bias = model.output.weight, model.output.bias + model.output_mask
        pairs_per_chunk = gather_batch or GATHER_PAIRS.get(device.type, GATHER_PAIRS["cuda"])
        steps = [0]

        def history_chunk(lo: int, hi: int) -> None:
            sel = order[lo:hi]
            if states == "tree":  # the rows are already truncated and sorted
                tree = tree_of_sorted(rows[sel], lens[sel])
                s = prefix_tree_states(model, tree, input_table)
                n_steps = tree.num_nodes
            else:
                width = int(lens[sel].max())
                s = history_states(model, rows[sel, :width].clamp(min=0), lens[sel], mode, iterations)
                n_steps = (hi - lo) * width * (min(width, iterations) if mode == "afp" else 1)
            a_lo, a_hi = (int(x) for x in torch.searchsorted(pair_rank, torch.tensor([lo, hi], device=device)))
            pairs = pair_order[a_lo:a_hi]
            if normalize:  # of model.logits(s) in eval mode
                out[pairs] = log_softmax_pairs(s, weight, bias, pair_rank[a_lo:a_hi] - lo, words[pairs], norm_rows)
            else:
                def gather(p_lo: int, p_hi: int) -> None:
                    r = pair_rank[a_lo + p_lo : a_lo + p_hi] - lo
                    w = words[pairs[p_lo:p_hi]]
                    out[pairs[p_lo:p_hi]] = (s[r] * weight[w]).sum(-1) + bias[w] - log_norm_offset

                run_in_chunks(a_hi - a_lo, pairs_per_chunk, gather)
            steps[0] += n_steps

        run_in_chunks(order.numel(), max_batch, history_chunk, desc="LM histories", progress=progress)
        if stats is not None:
            stats.update(cell_steps=steps[0], histories=int(order.numel()))
        return out
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
    normalize: bool = True,
    log_norm_offset: float = 0.0,
) -> Tensor:
    """``log P(<s> w_1 .. w_n </s>)`` of each sentence (ids without ``<s>``/``</s>``).

    Args:
        model: the LM. sentences: ``[N][len]`` word ids. bos, eos: the sentence-boundary ids.
        mode, iterations: override the model's recurrence (default: its own).
        batch_size: sentences per batch.
        normalize, log_norm_offset: as for :func:`score_histories`: False scores a
            self-normalised model by its raw logits minus ``log_norm_offset``, without the
            V-way normaliser.

    Returns:
        ``[N]`` float64 on the CPU, summing ``log P(w_t | <s> w_1 .. w_{t-1})`` over the words and
        ``</s>`` (for an ``afp`` model each term sees only the last K tokens of its history).
    """
    was_training = model.training
    model.eval()
    device = model.output.weight.device
    out = torch.empty(len(sentences), dtype=torch.float64)
    weight, bias = model.output.weight, model.output.bias + model.output_mask
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            inputs, lengths = pad_sequences([[bos] + list(sentences[i]) for i in idx], eos)
            targets, _ = pad_sequences([list(sentences[i]) + [eos] for i in idx], eos)
            states, _ = model.hidden_states(inputs.to(device), mode, iterations)
            mask = (torch.arange(inputs.shape[1])[None, :] < lengths[:, None]).to(device)
            s, t = states[mask], targets.to(device)[mask]  # the real tokens only, [M, H] and [M]
            token_lp = (s * weight[t]).sum(-1) + bias[t]
            token_lp = token_lp - (log_normalizers(s, weight, bias) if normalize else log_norm_offset)
            sentence = torch.repeat_interleave(torch.arange(len(idx), device=device), lengths.to(device))
            total = torch.zeros(len(idx), dtype=torch.float64, device=device).index_add_(0, sentence, token_lp.double())
            out[idx] = total.cpu()
    finally:
        model.train(was_training)
    return out

