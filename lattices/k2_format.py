"""k2 lattice files as icefall writes them: ``torch.save(fsa.as_dict(), path)``.

Reading accepts any FsaVec (or single Fsa) dict loadable with ``k2.Fsa.from_dict``:

- word ids: ``aux_labels`` when present (icefall lattices are token:word transducers); a ragged
  ``aux_labels`` is expanded with ``k2.invert`` (one arc per word); otherwise ``labels``.
- scores: ``am_scores`` if present; else ``scores - lm_scores`` when ``lm_scores`` is present
  (icefall's convention: ``scores`` is the total); else ``am = scores`` and ``lm = 0``.
- ``start_times``/``end_times`` are kept when present.
- extra keys written by :func:`save_k2` (and ignored by icefall): ``utt_ids`` (list of str),
  ``symbols`` (``[(word, id)]``, the table the labels refer to), ``headers`` (list of dict).
  Files without ``utt_ids`` get ``<file stem>-<index>``; without ``symbols`` the ids are read
  with the ``words.txt`` given to the reader (or one next to the file).

Writing: ``torch.save(d)`` where ``d = fsas.as_dict()`` plus ``aux_labels = labels`` (so icefall
sees a word lattice) and the three extra keys above.
"""
import io
import os
from typing import Dict, List, Optional, Tuple

import k2
import numpy as np
import torch

from lattices.fsa_build import ArcList, interned_fields
from lattices.lattice_batch import LatticeBatch
from lattices.slf import utt_id_from_path
from lattices.symbols import symbols_from_list, symbols_to_list
from models.files import atomic_open, read_bytes

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) serialisation


def looks_like_k2(data: bytes) -> bool:
    """Content sniffing: a torch zip archive (or an old-style pickle)."""
    return data[:4] == ZIP_MAGIC or data[:2] in (b"\x80\x02", b"\x80\x04")


def load_k2_dict(path: str) -> Dict[str, object]:
    """``torch.load`` a (possibly gzipped) k2 dict on CPU; ``ValueError`` naming ``path`` on failure."""
    data = read_bytes(path)
    try:
        d = torch.load(io.BytesIO(data), map_location="cpu")
    except Exception as e:  # torch raises many types for corrupt input
        raise ValueError(f"{path}: not a torch.save file: {e}") from e
    if not isinstance(d, dict) or "arcs" not in d:
        raise ValueError(f"{path}: not a k2 Fsa dict (torch.save(fsa.as_dict())): no 'arcs' key")
    return d


def k2_dict_to_arclists(d: Dict[str, object], path: str, symbols: Optional[k2.SymbolTable]) -> Tuple[List[ArcList], k2.SymbolTable]:
    """Convert a loaded k2 dict into per-utterance arc lists.

    Args:
        d: the dict (not mutated).
        path: the file (messages, default utterance ids, ``words.txt`` lookup).
        symbols: table to read ids with when the file has none embedded.

    Returns:
        ``(lattices, table used to turn ids into words)``.
    """
    d = dict(d)
    utt_ids = d.pop("utt_ids", None)
    emb = d.pop("symbols", None)
    headers = d.pop("headers", None)
    if emb is not None:
        table = symbols_from_list(emb)
    elif symbols is not None:
        table = symbols
    else:
        beside = os.path.join(os.path.dirname(path), "words.txt")
        if not os.path.exists(beside):
            raise ValueError(f"{path}: k2 file has no embedded symbol table; pass words.txt (--words)")
        from lattices.symbols import load_symbols

        table = load_symbols(beside)
    try:
        fsa = k2.Fsa.from_dict(d)
    except Exception as e:
        raise ValueError(f"{path}: cannot build a k2 Fsa from the dict: {e}") from e
    if len(fsa.shape) == 2:
        fsa = k2.create_fsa_vec([fsa])
    if hasattr(fsa, "aux_labels"):
        if isinstance(fsa.aux_labels, k2.RaggedTensor):
            fsa = k2.invert(fsa)
            del fsa.aux_labels
            labels = fsa.labels.clone()
        else:
            labels = fsa.aux_labels.clone()
    else:
        labels = fsa.labels.clone()
    scores = fsa.scores.detach().double()
    if hasattr(fsa, "am_scores"):
        am = fsa.am_scores.detach().double()
        lm = fsa.lm_scores.detach().double() if hasattr(fsa, "lm_scores") else torch.zeros_like(am)
    elif hasattr(fsa, "lm_scores"):
        lm = fsa.lm_scores.detach().double()
        am = scores - lm
    else:
        am, lm = scores, torch.zeros_like(scores)
    has_t = hasattr(fsa, "start_times") and hasattr(fsa, "end_times")
    n = fsa.shape[0]
    if utt_ids is None:
        stem = utt_id_from_path(path).replace(".pt", "")
        utt_ids = [stem] if n == 1 else [f"{stem}-{i}" for i in range(n)]
    if len(utt_ids) != n:
        raise ValueError(f"{path}: {len(utt_ids)} utt_ids for {n} FSAs")
    arcs = fsa.arcs.values()[:, :2].numpy().astype(np.int64) if hasattr(fsa.arcs, "values") else \
        k2.Fsa.as_dict(fsa)["arcs"][:, :2].numpy().astype(np.int64)
    shape = fsa.arcs.shape()
    rs1 = shape.row_splits(1).numpy()
    rs2 = shape.row_splits(2).numpy()
    lab = labels.numpy().astype(np.int64)
    am_np, lm_np = am.numpy(), lm.numpy()
    st = fsa.start_times.double().numpy() if has_t else None
    et = fsa.end_times.double().numpy() if has_t else None
    id2word = {int(i): table.get(i) for i in table.ids}
    out = []
    for i in range(n):
        where = f"{path}:{utt_ids[i]}"
        a0, a1 = rs2[rs1[i]], rs2[rs1[i + 1]]
        num_states = int(rs1[i + 1] - rs1[i])
        sl = slice(a0, a1)
        s, e, lb = arcs[sl, 0], arcs[sl, 1], lab[sl]
        fin = lb == -1
        finals: Dict[int, Tuple[float, float]] = {}
        for j in np.nonzero(fin)[0].tolist():
            if int(s[j]) in finals:
                raise ValueError(f"{where}: state {int(s[j])} has two final arcs")
            finals[int(s[j])] = (float(am_np[sl][j]), float(lm_np[sl][j]))
        words = []
        for w in lb[~fin].tolist():
            if w == 0:
                words.append(None)
            elif w in id2word:
                words.append(id2word[w])
            else:
                raise ValueError(f"{where}: word id {w} is not in the symbol table")
        keep = ~fin
        out.append(ArcList(
            utt_id=str(utt_ids[i]), source=path, num_nodes=max(num_states - 1, 1), start=0, finals=finals,
            src=s[keep], dst=e[keep], **interned_fields(words), am=am_np[sl][keep], lm=lm_np[sl][keep],
            start_times=st[sl][keep] if has_t else None, end_times=et[sl][keep] if has_t else None,
            header=dict(headers[i]) if headers is not None else {},
        ))
    return out, table


def save_k2(batch: LatticeBatch, path: str) -> None:
    """Write ``batch`` as one ``torch.save(fsa.as_dict())`` file (atomic; ``.gz`` gzips it).

    The dict also holds ``aux_labels`` (= ``labels``), ``utt_ids``, ``symbols`` and ``headers``
    (without the reader-added ``path``) so that utterance ids and words round-trip.
    """
    d = batch.fsas.as_dict()
    d["aux_labels"] = batch.fsas.labels.clone()
    d["utt_ids"] = list(batch.utt_ids)
    d["symbols"] = symbols_to_list(batch.symbols)
    d["headers"] = [{k: v for k, v in h.items() if k != "path"} for h in batch.headers]
    buf = io.BytesIO()
    torch.save(d, buf)
    with atomic_open(path, "wb") as f:
        f.write(buf.getvalue())
