"""Configuration of an AFP language model (a plain dataclass, stored in checkpoints)."""
import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Optional

CELLS = ("lstm", "gru", "elman")
MODES = ("afp", "exact")


@dataclass
class LMConfig:
    """Hyper-parameters that define the function an AFP LM computes.

    Attributes:
        vocab_size: softmax size (``Vocabulary.size``: max word id + 1).
        embed: word-embedding size.
        hidden: recurrent state size of every layer.
        layers: number of stacked recurrent layers.
        cell: ``lstm``, ``gru`` or ``elman`` (tanh RNN).
        dropout: dropout on the embeddings, between layers and before the output layer.
        tie: share the embedding matrix with the output layer (needs ``embed == hidden``).
        mode: how the recurrence is computed by default: ``afp`` (K Jacobi iterations; a
            finite-context model whose context is the last ``iterations`` inputs) or ``exact``
            (the ordinary sequential RNN, i.e. infinite context).
        iterations: K, the number of Jacobi iterations in ``afp`` mode.
        max_recurrent_norm: if set, training keeps the spectral norm of every recurrent weight
            matrix at or below this bound (a contraction for ``elman`` when < 1).
        self_norm: alpha of the self-normalisation (variance) regulariser
            ``alpha * mean((log Z)^2)`` added to the training loss; 0 = a plain softmax model.
            A model trained with alpha > 0 may be scored without the V-way normaliser.
    """

    vocab_size: int
    embed: int = 256
    hidden: int = 256
    layers: int = 1
    cell: str = "lstm"
    dropout: float = 0.0
    tie: bool = False
    mode: str = "afp"
    iterations: int = 4
    max_recurrent_norm: Optional[float] = None
    self_norm: float = 0.0

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {self.cell!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        for name in ("vocab_size", "embed", "hidden", "layers", "iterations"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.tie and self.embed != self.hidden:
            raise ValueError(f"tied embeddings need embed == hidden, got {self.embed} != {self.hidden}")
        if not self.self_norm >= 0.0:
            raise ValueError(f"self_norm must be >= 0, got {self.self_norm}")
        if self.max_recurrent_norm is not None and self.max_recurrent_norm <= 0:
            raise ValueError(f"max_recurrent_norm must be > 0, got {self.max_recurrent_norm}")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "LMConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown LM config fields {sorted(unknown)} (checkpoint from a newer version?)")
        return cls(**d)
