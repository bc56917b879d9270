"""Two ways to compute the same stacked recurrence: ``exact`` (sequential) and ``afp`` (Jacobi).

Every layer is a one-layer ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN(tanh)`` module, so ``exact``
mode runs the cuDNN kernels and ``afp`` mode reuses the very same parameters.

AFP (approximate fixed point). The states ``H = (H_t)`` of an RNN solve ``H = F(H)`` with
``F(H)_t = cell(x_t, H_{t-1})`` and ``H_{-1} = 0``. Jacobi iteration ``H^(k+1) = F(H^(k))``
from ``H^(0) = 0`` is parallel over t, and by induction ``H^(k)_t`` is the exact RNN run from
the zero state over the last k inputs ``x_{t-k+1..t}``; after ``k >= T`` iterations it is
the exact RNN.

Stacked layers iterate *jointly*: within iteration k, layer l reads the fresh iteration-k output
of layer l-1 at the same position and its own iteration-(k-1) state at the previous position::

    H^(k)_{l,t} = cell_l(H^(k)_{l-1,t}, H^(k-1)_{l,t-1}),   H^(k)_{0,t} = x_t.

By the same induction the whole stack's state at t after k iterations equals the exact stacked
RNN run from zero over ``x_{t-k+1..t}`` (every layer's window starts at the same input), so a
K-iteration model has a context of exactly K inputs whatever the depth, and each iteration costs
one pass of every layer over all positions at once.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GATES = {"lstm": 4, "gru": 3, "elman": 1}


def make_layer(cell: str, input_size: int, hidden: int) -> nn.Module:
    """One recurrent layer as a cuDNN-capable torch module (``batch_first=True``)."""
    if cell == "lstm":
        return nn.LSTM(input_size, hidden, batch_first=True)
    if cell == "gru":
        return nn.GRU(input_size, hidden, batch_first=True)
    if cell == "elman":
        return nn.RNN(input_size, hidden, nonlinearity="tanh", batch_first=True)
    raise ValueError(f"unknown cell {cell!r}")


def input_projection(layer: nn.Module, x: Tensor) -> Tensor:
    """``W_ih x + b_ih`` for all positions: ``[..., in] -> [..., gates*hidden]``."""
    return F.linear(x, layer.weight_ih_l0, layer.bias_ih_l0)


def hidden_projection(layer: nn.Module, h: Tensor) -> Tensor:
    """``W_hh h + b_hh``: ``[..., hidden] -> [..., gates*hidden]``."""
    return F.linear(h, layer.weight_hh_l0, layer.bias_hh_l0)


def cell_step(cell: str, layer: nn.Module, x_proj: Tensor, h: Tensor, c: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
    """Apply one cell update at every position at once (torch's gate order and formulas).

    Args:
        cell: ``lstm``, ``gru`` or ``elman``.
        layer: the layer's torch module (supplies ``weight_hh_l0``/``bias_hh_l0``).
        x_proj: ``[..., gates*H]`` input projection from :func:`input_projection`.
        h: ``[..., H]`` previous hidden state; ``c``: ``[..., H]`` previous LSTM cell (else None).

    Returns:
        ``(h_new, c_new)`` with the shapes of ``h`` and ``c``.
    """
    return cell_update(cell, x_proj, hidden_projection(layer, h), h, c)


def cell_update(cell: str, x_proj: Tensor, hh: Tensor, h: Optional[Tensor], c: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
    """:func:`cell_step` given the hidden projection ``hh`` (``[..., gates*H]``, from
    :func:`hidden_projection` of ``h``), e.g. computed once for a state that several steps continue.

    Args:
        h: ``[..., H]`` the previous hidden state, needed by ``gru`` only (may be None otherwise).
        c: ``[..., H]`` the previous LSTM cell (else None).
    """
    if cell == "lstm":
        i, f, g, o = (x_proj + hh).chunk(4, dim=-1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c_new), c_new
    if cell == "gru":
        assert h is not None, "a GRU step needs the previous state"
        xr, xz, xn = x_proj.chunk(3, dim=-1)
        hr, hz, hn = hh.chunk(3, dim=-1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1.0 - z) * n + z * h, None
    return torch.tanh(x_proj + hh), None


def _shift(h: Tensor) -> Tensor:
    """``[B, T, H] -> [B, T, H]`` with position t holding ``h[:, t-1]`` and zeros at t = 0."""
    return F.pad(h[:, :-1], (0, 0, 1, 0))


def dropout_masks(shape: Tuple[int, ...], p: float, n: int, like: Tensor) -> List[Optional[Tensor]]:
    """``n`` inverted-dropout masks of ``shape`` (None when ``p == 0``), drawn once per forward
    so that every Jacobi iteration applies the same function."""
    if p == 0.0:
        return [None] * n
    keep = 1.0 - p
    return [torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(keep) / keep for _ in range(n)]


def exact_forward(cell: str, layers: nn.ModuleList, x: Tensor, masks: List[Optional[Tensor]]) -> Tensor:
    """The ordinary sequential stacked RNN from the zero state.

    Args:
        x: ``[B, T, E]`` layer-1 inputs. masks: one dropout mask per layer boundary
            (``len(layers) - 1``), each ``[B, T, H]`` or None.

    Returns:
        ``[B, T, H]`` outputs of the last layer.
    """
    out = x
    for li, layer in enumerate(layers):
        if li > 0 and masks[li - 1] is not None:
            out = out * masks[li - 1]
        out, _ = layer(out)
    return out


def afp_forward(
    cell: str, layers: nn.ModuleList, x: Tensor, iterations: int, masks: List[Optional[Tensor]], return_previous: bool = False
) -> Tuple[Tensor, Optional[Tensor]]:
    """K joint Jacobi iterations of the stacked recurrence, each batched over all positions.

    Args:
        x: ``[B, T, E]`` layer-1 inputs. iterations: K >= 1 (more than T changes nothing, so at
            most T are run). masks: as in :func:`exact_forward`.
        return_previous: also return the last layer's output of iteration K-1 (for the
            fixed-point residual; zeros when K = 1).

    Returns:
        ``(H^(K), H^(K-1) or None)``, each ``[B, T, H]`` for the last layer.
    """
    assert iterations >= 1
    B, T, _ = x.shape
    H = layers[0].hidden_size
    zeros = x.new_zeros(B, T, H)
    h: List[Tensor] = [zeros] * len(layers)
    c: List[Optional[Tensor]] = [zeros if cell == "lstm" else None] * len(layers)
    first_proj = input_projection(layers[0], x)  # layer-1 inputs never change: project once
    previous = zeros
    for _ in range(min(iterations, T)):
        previous = h[-1]
        x_proj = first_proj
        new_h: List[Tensor] = []
        new_c: List[Optional[Tensor]] = []
        for li, layer in enumerate(layers):
            if li > 0:
                below = new_h[-1] if masks[li - 1] is None else new_h[-1] * masks[li - 1]
                x_proj = input_projection(layer, below)
            prev_c = _shift(c[li]) if c[li] is not None else None
            hn, cn = cell_step(cell, layer, x_proj, _shift(h[li]), prev_c)
            new_h.append(hn)
            new_c.append(cn)
        h, c = new_h, new_c
    if iterations > T:  # converged after T iterations: iteration K-1 equals iteration K
        previous = h[-1]
    return h[-1], (previous if return_previous else None)
