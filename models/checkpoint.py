"""Checkpoints: one file holding format name, version, model config, vocabulary and state_dict.

Never a pickled module: files load with ``torch.load(weights_only=True)`` on any device,
without the training code's globals. torch 1.13's safe unpickler accepts no Python floats, so
all plain data (config, vocabulary, optimizer hyper-parameters...) is stored as one JSON string
with tensors replaced by ``{"__tensor__": i}`` references into a list of tensors.
"""
import json
import os
from typing import Any, Dict, List, Optional, Tuple

import torch

from .files import atomic_open
from .config import LMConfig
from .lm import AFPLanguageModel
from .vocab import Vocabulary

FORMAT = "afp-rescore-lm"
VERSION = 1


def _pack(obj: Any, tensors: List[torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors.append(obj.detach().cpu())
        return {"__tensor__": len(tensors) - 1}
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, (str, int)):
                raise TypeError(f"checkpoint keys must be str or int, got {k!r}")
        # JSON keys are strings: remember int keys (optimizer state is keyed by parameter index)
        return {"__dict__": [[k, _pack(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_pack(v, tensors) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint")


def _unpack(obj: Any, tensors: List[torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        return {k: _unpack(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_unpack(v, tensors) for v in obj]
    return obj


def save_checkpoint(path: str, model: AFPLanguageModel, vocab: Vocabulary, extra: Optional[Dict[str, Any]] = None) -> None:
    """Write ``model`` (config + state_dict) and ``vocab`` to ``path`` atomically.

    Args:
        extra: more plain data (tensors, numbers, strings, dicts/lists of them), e.g. the
            optimizer state of a resumable checkpoint. Stored under ``"extra"``.
    """
    module = getattr(model, "module", model)  # unwrap DistributedDataParallel
    content = {
        "config": module.config.to_dict(),
        "vocab": vocab.to_state(),
        "state_dict": dict(module.state_dict()),
        "extra": extra or {},
    }
    tensors: List[torch.Tensor] = []
    meta = json.dumps(_pack(content, tensors))
    with atomic_open(path, "wb") as f:
        torch.save({"format": FORMAT, "version": VERSION, "content": meta, "tensors": tensors}, f)


def load_payload(path: str) -> Dict[str, Any]:
    """The checkpoint's content (config, vocab, state_dict, extra), validated for format and version."""
    if not os.path.isfile(path):
        raise ValueError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt/foreign files
        raise ValueError(f"{path}: not a readable afp-rescore checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not an afp-rescore LM checkpoint (no format={FORMAT!r} field)")
    version = payload.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ValueError(f"{path}: checkpoint version {version!r} is newer than this tool's ({VERSION}); upgrade afp-rescore")
    try:
        content = _unpack(json.loads(payload["content"]), payload["tensors"])
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise ValueError(f"{path}: corrupt checkpoint content ({type(e).__name__}: {e})") from None
    missing = {"config", "vocab", "state_dict"} - set(content)
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {sorted(missing)}")
    return content


def load_checkpoint(path: str, device: str = "cpu") -> Tuple[AFPLanguageModel, Vocabulary, Dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Returns:
        ``(model in eval mode on device, vocabulary, extra)``.

    Raises:
        ValueError: naming ``path`` when the file is missing, corrupt, of another format or
            version, or its weights do not fit its config.
    """
    payload = load_payload(path)
    try:
        config = LMConfig.from_dict(dict(payload["config"]))
        vocab = Vocabulary.from_state(payload["vocab"])
        model = AFPLanguageModel(config)
        model.load_state_dict(payload["state_dict"])
    except (ValueError, TypeError, KeyError, RuntimeError) as e:
        raise ValueError(f"{path}: inconsistent checkpoint: {e}") from None
    if vocab.size != config.vocab_size:
        raise ValueError(f"{path}: vocabulary size {vocab.size} != model vocab_size {config.vocab_size}")
    return model.to(device).eval(), vocab, payload.get("extra") or {}


def self_norm_offset(path: str, model: AFPLanguageModel, extra: Dict[str, Any]) -> float:
    """The constant subtracted from raw logits when scoring ``model`` without the softmax normaliser.

    That is only right for a self-normalised model (``afp-train-lm --self-norm ALPHA``): its
    checkpoint records ALPHA and the mean and std of ``log Z`` measured on validation, and the
    mean is the offset.

    Raises:
        ValueError: naming ``path`` when the model was not trained self-normalised (or its
            checkpoint lacks the measured statistics).
    """
    stats = extra.get("log_norm") if isinstance(extra, dict) else None
    measured = f" (its log Z on validation: mean {stats['mean']:.3f}, std {stats['std']:.3f})" if stats else ""
    if model.config.self_norm <= 0:
        raise ValueError(f"{path}: --no-normalize needs a self-normalised LM, trained with afp-train-lm --self-norm ALPHA; "
                         f"this one was trained without it{measured}, so its raw logits are not log-probabilities")
    if not stats:
        raise ValueError(f"{path}: self-normalised LM (self_norm={model.config.self_norm}) without the measured log Z "
                         "statistics in its checkpoint; retrain or re-save it with this version")
    return float(stats["mean"])
