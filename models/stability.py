"""Miller & Hardt-style stability: keep the recurrent maps contractive by a spectral-norm bound."""
from typing import Dict

import torch

from .lm import AFPLanguageModel


@torch.no_grad()
def project_recurrent_weights(model: AFPLanguageModel, bound: float) -> Dict[str, float]:
    """Scale every recurrent weight ``W_hh`` whose spectral norm exceeds ``bound`` down to it.

    For the ``elman`` cell (tanh is 1-Lipschitz) ``||W_hh||_2 <= bound < 1`` makes each layer's
    map ``h -> cell(x, h)`` a contraction, so Jacobi iteration converges geometrically and a small
    K approximates the full RNN. For ``lstm``/``gru`` it bounds every gate block's norm; a
    sufficient but not necessary stability condition (Miller & Hardt 2019 use similar bounds).
    Modifies ``model`` in place (training-time projection step).

    Returns:
        ``{parameter name: spectral norm before projection}``.
    """
    norms = {}
    for name, param in model.named_parameters():
        if "weight_hh" not in name:
            continue
        sigma = float(torch.linalg.matrix_norm(param.detach().float(), ord=2))
        norms[name] = sigma
        if sigma > bound:
            param.mul_(bound / sigma)
    return norms
