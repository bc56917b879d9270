"""Perplexity of a saved model on a text file (the library side of ``afp-lm-ppl``)."""
from typing import Any, Dict, Optional

from .checkpoint import load_checkpoint
from .distributed import resolve_device
from .evaluate import evaluate
from .text import make_batches, read_sentences


def text_perplexity(
    lm: str, path: str, mode: Optional[str] = None, iterations: Optional[int] = None, batch_size: int = 64, device: str = "auto"
) -> Dict[str, Any]:
    """Perplexity of checkpoint ``lm`` on the sentences of ``path`` (words and ``</s>``; OOVs as ``<unk>``).

    Returns:
        ``{"text", "ppl", "tokens", "sentences", "oov", "mode", "iterations", "fixed_point_residual", "gap_to_exact"}``.
    """
    dev = resolve_device(device)
    model, vocab, _ = load_checkpoint(lm, str(dev))
    sentences = read_sentences(path)
    ids = [vocab.encode(s) for s in sentences]
    mode = mode or model.config.mode
    result = evaluate(model, make_batches(ids, batch_size, vocab.bos_id, vocab.eos_id), dev, mode, iterations,
                      diagnostics=mode == "afp")
    return {"text": path, "ppl": result.ppl, "tokens": result.tokens, "sentences": len(sentences),
            "oov": sum(1 for s in sentences for w in s if w not in vocab), "mode": mode,
            "iterations": (iterations or model.config.iterations) if mode == "afp" else None,
            "fixed_point_residual": result.residual, "gap_to_exact": result.gap_to_exact}
