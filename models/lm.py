"""The AFP RNN language model: embedding -> recurrent layers -> output projection."""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import MODES, LMConfig
from .recurrence import afp_forward, dropout_masks, exact_forward, make_layer


class AFPLanguageModel(nn.Module):
    """Word-level RNN LM whose recurrence runs either exactly or as K Jacobi iterations.

    Inputs are id tensors ``[B, T]`` that start with ``<s>``; position t predicts token t+1.
    The state starts from zero at position 0 of every row (sentence-level modelling).

    Args:
        config: the model's hyper-parameters (see :class:`LMConfig`).
    """

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embed)
        self.layers = nn.ModuleList(
            make_layer(config.cell, config.embed if i == 0 else config.hidden, config.hidden) for i in range(config.layers)
        )
        self.output = nn.Linear(config.hidden, config.vocab_size)
        if config.tie:
            self.output.weight = self.embedding.weight
        # Added to the logits: -inf for ids that can never be a next word (<eps>, <s>, #0, id
        # holes), 0 elsewhere. A float buffer, so DDP can broadcast it with any backend.
        self.register_buffer("output_mask", torch.zeros(config.vocab_size))
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)

    def set_nonpredictable(self, ids: Sequence[int]) -> None:
        """Exclude ``ids`` from the softmax (e.g. ``Vocabulary.nonpredictable_ids()``)."""
        self.output_mask.zero_()
        if len(ids):
            self.output_mask[torch.as_tensor(list(ids), dtype=torch.long)] = float("-inf")

    def _resolve(self, mode: Optional[str], iterations: Optional[int]) -> Tuple[str, int]:
        mode = mode or self.config.mode
        iterations = iterations or self.config.iterations
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        return mode, iterations

    def hidden_states(
        self, ids: Tensor, mode: Optional[str] = None, iterations: Optional[int] = None, return_previous: bool = False
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """Last-layer states.

        Args:
            ids: ``[B, T]`` int64 word ids, position 0 normally ``<s>``.
            mode: ``afp`` or ``exact`` (default: ``config.mode``).
            iterations: K for ``afp`` (default: ``config.iterations``).
            return_previous: with ``afp``, also return iteration K-1's states.

        Returns:
            ``(states [B, T, H], previous [B, T, H] or None)``.
        """
        mode, iterations = self._resolve(mode, iterations)
        p = self.config.dropout if self.training else 0.0
        x = F.dropout(self.embedding(ids), p, self.training)
        B, T = ids.shape
        masks = dropout_masks((B, T, self.config.hidden), p, len(self.layers) - 1, x)
        if mode == "exact":
            return exact_forward(self.config.cell, self.layers, x, masks), None
        return afp_forward(self.config.cell, self.layers, x, iterations, masks, return_previous)

    def logits(self, states: Tensor) -> Tensor:
        """``[..., H] -> [..., V]`` output logits with non-predictable ids at ``-inf``."""
        states = F.dropout(states, self.config.dropout, self.training)
        return self.output(states) + self.output_mask

    def forward(self, ids: Tensor, mode: Optional[str] = None, iterations: Optional[int] = None) -> Tensor:
        """``[B, T]`` ids -> ``[B, T, V]`` next-word log-probabilities."""
        states, _ = self.hidden_states(ids, mode, iterations)
        return torch.log_softmax(self.logits(states), dim=-1)

    def token_nll(
        self, inputs: Tensor, targets: Tensor, mode: Optional[str] = None, iterations: Optional[int] = None,
        return_log_norm: bool = False,
    ):
        """Per-token negative log-likelihood ``[B, T]`` of ``targets`` given ``inputs`` (training loss).

        With ``return_log_norm`` also the softmax log-normaliser ``log Z`` ``[B, T]`` of every
        position (what self-normalised training drives towards 0): returns ``(nll, log_z)``.
        """
        states, _ = self.hidden_states(inputs, mode, iterations)
        logits = self.logits(states)
        flat = logits.reshape(-1, logits.shape[-1])
        nll = F.cross_entropy(flat, targets.reshape(-1), reduction="none").view_as(targets)
        if not return_log_norm:
            return nll
        return nll, torch.logsumexp(flat, dim=-1).view_as(targets)
