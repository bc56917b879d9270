"""RNN states of many short histories, computed over their prefix tree (no k2).

An AFP-K model's state for a history is the exact RNN run from the zero state over the history's
last K tokens (``models.recurrence``). Distinct lattice histories share most of their prefixes, so
instead of K Jacobi iterations over K positions for every history (K² cell steps each), the
histories are arranged in a prefix tree (trie) and every distinct prefix gets exactly one cell
step per layer, from its parent's state: depth by depth, each depth one batched step.

Everything is vectorised over tensors on the model's device: the tree comes from one
lexicographic sort of the (truncated) histories, after which equal prefixes are contiguous and a
node boundary is wherever the parent node or the token changes.
"""
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from .lm import AFPLanguageModel
from .recurrence import cell_update, hidden_projection, input_projection


@dataclass
class PrefixTree:
    """The prefix tree of a set of histories, sorted lexicographically.

    Attributes:
        order: ``[U]`` int64, the histories in lexicographic order (``order[r]`` = input row).
        tokens: per depth d, ``[nodes_d]`` int64 the token of each depth-d node.
        parents: per depth d, ``[nodes_d]`` int64 index of the parent among the depth-(d-1) nodes
            (all zeros at depth 0, whose parent is the zero state).
        leaf: ``[U]`` int64, for sorted row r, the index of its last node among the nodes of depth
            ``lengths[order[r]] - 1``.
        lengths: ``[U]`` int64, the (truncated) length of each sorted row.
    """

    order: Tensor
    tokens: List[Tensor]
    parents: List[Tensor]
    leaf: Tensor
    lengths: Tensor

    @property
    def num_nodes(self) -> int:
        """Distinct non-empty prefixes = cell steps per layer."""
        return sum(int(t.numel()) for t in self.tokens)


def last_tokens(histories: Tensor, lengths: Tensor, context: Optional[int]) -> Tuple[Tensor, Tensor]:
    """Keep the last ``context`` tokens of each right-padded history (all of it when None).

    Args:
        histories: ``[U, T]`` int64 right-padded; lengths: ``[U]`` int64 in ``1..T``.

    Returns:
        ``(rows [U, T'] right-padded with -1, lengths [U])`` with ``T' = min(T, context)``.
    """
    T = histories.shape[1]
    width = T if context is None else min(T, context)
    new_len = lengths if context is None else lengths.clamp(max=context)
    cols = torch.arange(width, device=histories.device)
    idx = (lengths - new_len)[:, None] + cols[None, :]
    rows = histories.gather(1, idx.clamp(max=max(T - 1, 0)))
    return rows.masked_fill(cols[None, :] >= new_len[:, None], -1), new_len


def lexicographic_order(rows: Tensor) -> Tensor:
    """``[U, T]`` int64 rows -> ``[U]`` permutation sorting them lexicographically (stable sorts,
    last column first; runs on any device)."""
    order = torch.arange(rows.shape[0], device=rows.device)
    for col in range(rows.shape[1] - 1, -1, -1):
        key = rows[order, col]
        order = order[torch.sort(key, stable=True).indices]
    return order


def build_prefix_tree(histories: Tensor, lengths: Tensor, context: Optional[int] = None) -> PrefixTree:
    """Prefix tree of the histories' last ``context`` tokens.

    Args:
        histories: ``[U, T]`` int64 right-padded token ids (pad value irrelevant).
        lengths: ``[U]`` int64 lengths in ``1..T``.
        context: keep only this many last tokens (an AFP-K model's K); None keeps all.

    Returns:
        A :class:`PrefixTree`.
    """
    rows, lens = last_tokens(histories, lengths, context)
    order = lexicographic_order(rows)
    return tree_of_sorted(rows[order], lens[order], order)


def tree_of_sorted(rows: Tensor, lens: Tensor, order: Optional[Tensor] = None) -> PrefixTree:
    """The prefix tree of rows that are already truncated and sorted lexicographically.

    Args:
        rows: ``[U, T]`` int64, right-padded with -1 (as :func:`last_tokens` returns them), in
            lexicographic order (:func:`lexicographic_order`).
        lens: ``[U]`` int64 lengths.
        order: recorded as :attr:`PrefixTree.order` (default: the identity).
    """
    U, T = rows.shape
    device = rows.device
    if order is None:
        order = torch.arange(U, device=device)
    node = torch.zeros(U, dtype=torch.long, device=device)  # current node of each live row
    tokens: List[Tensor] = []
    parents: List[Tensor] = []
    leaf = torch.zeros(U, dtype=torch.long, device=device)
    for d in range(T):
        live = torch.nonzero(lens > d).squeeze(1)
        if live.numel() == 0:
            break
        tok, par = rows[live, d], node[live]
        new = torch.ones(live.numel(), dtype=torch.bool, device=device)
        new[1:] = (tok[1:] != tok[:-1]) | (par[1:] != par[:-1])
        ids = torch.cumsum(new.long(), 0) - 1
        tokens.append(tok[new])
        parents.append(par[new])
        node[live] = ids
        ends = lens[live] == d + 1
        leaf[live[ends]] = ids[ends]
    return PrefixTree(order, tokens, parents, leaf, lens)


# Largest first-layer input table (bytes) that :func:`word_input_table` builds: 64 MB for a
# 20k-word, 200-unit LSTM; a 50k-word, 1024-unit one (819 MB) computes its projections per step.
INPUT_TABLE_BYTES = 256 << 20


@torch.no_grad()
def word_input_table(model: AFPLanguageModel, max_bytes: int = INPUT_TABLE_BYTES) -> Optional[Tensor]:
    """The first layer's input projection of every word, ``[V, gates*H]``, or None when larger
    than ``max_bytes``. A cell step then looks its input part up instead of multiplying: half the
    multiply-adds of an LSTM step whose embedding and hidden sizes are equal. Valid while the
    model's weights do not change (callers that score with a fixed model keep it)."""
    layer = model.layers[0]
    size = model.config.vocab_size * layer.weight_ih_l0.shape[0] * layer.weight_ih_l0.element_size()
    if size > max_bytes:
        return None
    return input_projection(layer, model.embedding.weight)


# Tree nodes per cell update on the CPU: a depth's nodes are updated in blocks of this many, so that
# a block's gate activations (512 x 4H floats, 1.6 MB at H = 200) stay in cache across the
# elementwise ops instead of streaming through memory once per op; 256 to 1,024 are as fast at
# H = 128 to 512, whole depths (up to 4,096 nodes) about 2x slower (bench/RESULTS.md 7.11). On
# CUDA one block per depth.
CPU_CELL_ROWS = 512


@torch.no_grad()
def prefix_tree_states(model: AFPLanguageModel, tree: PrefixTree, input_table: Optional[Tensor] = None,
                       block_rows: Optional[int] = None) -> Tensor:
    """Last-layer state at the end of every history, one cell step per tree node and layer.

    Equals the exact stacked RNN run from the zero state over each (truncated) history, i.e.
    the AFP-K state when the tree was built with ``context=K`` (eval mode: no dropout). A node's
    recurrent product ``W_hh h + b_hh`` is that of its parent's state: it is computed once per
    parent, not once per child (a depth-K node of a lattice's tree has about 4 siblings), and not
    at all for the nodes of the last depth.

    Args:
        input_table: :func:`word_input_table` of ``model`` (None: projections computed per step).
        block_rows: nodes per batched cell update (default: :data:`CPU_CELL_ROWS` on the CPU, a
            whole depth on CUDA).

    Returns:
        ``[U, H]`` states in sorted order (row r is history ``tree.order[r]``), on the model's device.
    """
    device = model.output.weight.device
    dtype = model.output.weight.dtype
    U, H = tree.order.numel(), model.config.hidden
    out = torch.empty(U, H, device=device, dtype=dtype)
    zero = torch.zeros(1, H, device=device, dtype=dtype)
    layers = model.layers
    h: List[Tensor] = [zero] * len(layers)
    c: List[Optional[Tensor]] = [zero if model.config.cell == "lstm" else None] * len(layers)
    lens = tree.lengths.to(device)
    leaf = tree.leaf.to(device)
    rows = block_rows or (CPU_CELL_ROWS if device.type == "cpu" else None)
    for d, (tok, par) in enumerate(zip(tree.tokens, tree.parents)):
        tok, par = tok.to(device), par.to(device)
        hh = [hidden_projection(layer, h[li]) for li, layer in enumerate(layers)]  # of the parents
        step = rows or max(tok.numel(), 1)
        blocks = [_update_nodes(model, tok[lo:lo + step], par[lo:lo + step], hh, h, c, input_table)
                  for lo in range(0, tok.numel(), step)]
        if len(blocks) == 1:
            h, c = blocks[0]
        else:
            h = [torch.cat([b[0][li] for b in blocks]) for li in range(len(layers))]
            c = [None if c[li] is None else torch.cat([b[1][li] for b in blocks]) for li in range(len(layers))]
        ends = torch.nonzero(lens == d + 1).squeeze(1)
        out[ends] = h[-1][leaf[ends]]
    return out


def _update_nodes(model: AFPLanguageModel, tok: Tensor, par: Tensor, hh: List[Tensor], h: List[Tensor],
                  c: List[Optional[Tensor]], input_table: Optional[Tensor]) -> Tuple[List[Tensor], List[Optional[Tensor]]]:
    """One cell update of every layer for some nodes of one depth.

    Args:
        tok, par: ``[n]`` the nodes' tokens and their parents (rows of ``hh``, ``h`` and ``c``).
        hh, h, c: per layer, the parents' recurrent products ``[parents, gates*H]``, hidden states and
            (LSTM) cells ``[parents, H]``.

    Returns:
        ``(h, c)`` per layer, ``[n, H]`` each (``c`` None but for an LSTM).
    """
    layers, cell = model.layers, model.config.cell
    x_proj = input_table[tok] if input_table is not None else input_projection(layers[0], model.embedding(tok))
    new_h: List[Tensor] = []
    new_c: List[Optional[Tensor]] = []
    for li, layer in enumerate(layers):
        if li > 0:
            x_proj = input_projection(layer, new_h[-1])
        prev_c = c[li][par] if c[li] is not None else None  # type: ignore[index]
        hn, cn = cell_update(cell, x_proj, hh[li][par], h[li][par] if cell == "gru" else None, prev_c)
        new_h.append(hn)
        new_c.append(cn)
    return new_h, new_c
