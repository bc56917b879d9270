"""Perplexity and AFP fixed-point diagnostics on held-out batches."""
import math
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import torch

from .lm import AFPLanguageModel
from .text import Batch


@dataclass
class EvalResult:
    """Token-level evaluation.

    Attributes:
        nll: total negative log-likelihood (nats) over ``tokens`` (words and ``</s>``).
        tokens: number of predicted tokens.
        residual: AFP fixed-point residual ``||H^K - H^(K-1)|| / ||H^K||`` over all real
            positions of the last layer (None in exact mode or when not asked).
        gap_to_exact: ``||H^K - H^exact|| / ||H^exact||``, how far K iterations are from the
            full RNN on this data (None likewise).
        log_norm_sum, log_norm_sq: sum and sum of squares of the softmax log-normaliser
            ``log Z`` over the predicted positions (how self-normalised the model is).
    """

    nll: float
    tokens: int
    residual: Optional[float] = None
    gap_to_exact: Optional[float] = None
    log_norm_sum: float = 0.0
    log_norm_sq: float = 0.0

    @property
    def ppl(self) -> float:
        return math.exp(self.nll / max(self.tokens, 1))

    def log_norm_stats(self) -> Dict[str, float]:
        """``{"mean", "std", "tokens"}`` of ``log Z`` over the predicted positions."""
        n = max(self.tokens, 1)
        mean = self.log_norm_sum / n
        return {"mean": mean, "std": math.sqrt(max(self.log_norm_sq / n - mean * mean, 0.0)), "tokens": self.tokens}

    def to_dict(self, prefix: str) -> Dict[str, Optional[float]]:
        stats = self.log_norm_stats()
        return {f"{prefix}_ppl": self.ppl, f"{prefix}_tokens": self.tokens, f"{prefix}_fixed_point_residual": self.residual,
                f"{prefix}_gap_to_exact": self.gap_to_exact, f"{prefix}_log_norm_mean": stats["mean"],
                f"{prefix}_log_norm_std": stats["std"]}


@torch.no_grad()
def evaluate(
    model: AFPLanguageModel,
    batches: Sequence[Batch],
    device: torch.device,
    mode: Optional[str] = None,
    iterations: Optional[int] = None,
    diagnostics: bool = False,
) -> EvalResult:
    """Perplexity of ``model`` on ``batches`` (eval mode, no gradients).

    Args:
        mode, iterations: override the model's recurrence (default: its own config).
        diagnostics: in ``afp`` mode also measure the fixed-point residual and the gap to exact.
    """
    was_training = model.training
    model.eval()
    mode = mode or model.config.mode
    nll, tokens, log_z_sum, log_z_sq = 0.0, 0, 0.0, 0.0
    sq = {"diff": 0.0, "norm": 0.0, "gap": 0.0, "exact": 0.0}
    try:
        for batch in batches:
            inputs, targets, mask = batch.to(device)
            states, previous = model.hidden_states(inputs, mode, iterations, return_previous=diagnostics)
            logits = model.logits(states)
            loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
            nll += float(loss.masked_fill(~mask, 0.0).sum())
            tokens += int(mask.sum())
            log_z = torch.logsumexp(logits, dim=-1).masked_fill(~mask, 0.0).double()
            log_z_sum += float(log_z.sum())
            log_z_sq += float(log_z.pow(2).sum())
            if diagnostics and mode == "afp":
                exact, _ = model.hidden_states(inputs, "exact")
                m = mask[..., None]
                sq["diff"] += float(((states - previous) * m).pow(2).sum())
                sq["norm"] += float((states * m).pow(2).sum())
                sq["gap"] += float(((states - exact) * m).pow(2).sum())
                sq["exact"] += float((exact * m).pow(2).sum())
    finally:
        model.train(was_training)
    result = EvalResult(nll, tokens, log_norm_sum=log_z_sum, log_norm_sq=log_z_sq)
    if diagnostics and mode == "afp":
        result.residual = math.sqrt(sq["diff"] / max(sq["norm"], 1e-30))
        result.gap_to_exact = math.sqrt(sq["gap"] / max(sq["exact"], 1e-30))
    return result
