"""k2 lattice files as icefall writes them: ``torch.save(fsa.as_dict(), path)``.

Reading first checks the pickle's opcodes (:func:`check_pickle`): only tensors, plain containers
and k2 ragged tensors may be referenced, so a crafted file cannot run code; anything else is
refused with an error naming the file, before anything is unpickled.
Reading accepts any FsaVec (or single Fsa) dict loadable with ``k2.Fsa.from_dict``:

- word ids: ``aux_labels`` when present (icefall lattices are token:word transducers); a ragged
  ``aux_labels`` is expanded with ``k2.invert`` (one arc per word); otherwise ``labels``.
- scores: ``am_scores`` if present; else ``scores - lm_scores`` when ``lm_scores`` is present
  (icefall's convention: ``scores`` is the total); else ``am = scores`` and ``lm = 0``.
- ``start_times``/``end_times`` are kept when present.
- extra keys written by :func:`save_k2` (and ignored by icefall): ``utt_ids`` (list of str),
  ``symbols`` (``[(word, id)]``, the table the labels refer to), ``headers`` (a JSON list of
  dicts: torch's safe loader admits no floats on torch 1.13, and header values may be floats).
  Files without ``utt_ids`` get ``<file stem>-<index>``; without ``symbols`` the ids are read
  with the ``words.txt`` given to the reader (or one next to the file).

Writing: ``torch.save(d)`` where ``d = fsas.as_dict()`` plus ``aux_labels = labels`` (so icefall
sees a word lattice) and the three extra keys above.
"""
import io
import json
import os
import pickletools
import zipfile
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
# What a lattice dict may reference besides plain containers and numbers: tensors (their rebuild
# function and storage types), OrderedDict (tensor metadata) and k2's ragged tensor (icefall's
# ragged aux_labels, rebuilt from tensors by its __setstate__).
_ALLOWED = {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"),
            ("collections", "OrderedDict"), ("_k2.ragged", "RaggedTensor"), ("torch", "Size")}
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}
_MEMO_PUT = {"MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"}
_MEMO_GET = {"BINGET", "LONG_BINGET", "GET"}
_REFUSED_OPS = {"INST", "OBJ", "EXT1", "EXT2", "EXT4"}


def _allowed(module: str, name: str) -> bool:
    return (module, name) in _ALLOWED or (module == "torch" and name.endswith("Storage"))


def check_pickle(raw: bytes, path: str) -> None:
    """Refuse a pickle that would import anything but the allowed tensor/container names, without
    running it: every global it references is read from the opcodes (``GLOBAL`` inline;
    ``STACK_GLOBAL`` only from two string pushes right before it, memo stores aside) and checked.

    ``torch.load(weights_only=True)`` would do this too, but on torch 1.13 it also refuses floats
    and icefall's ragged tensors, and that torch ignores a custom ``pickle_module``.

    Raises:
        ValueError: naming ``path`` and what the file would have imported or done.
    """
    memo: dict = {}
    pushed: list = []  # values of the recent stack-changing ops (str, or None for anything else)
    try:
        for op, arg, _ in pickletools.genops(raw):
            name = op.name
            if name in _MEMO_PUT:
                memo[arg if name != "MEMOIZE" else len(memo)] = pushed[-1] if pushed else None
                continue
            if name in _REFUSED_OPS:
                raise ValueError(f"{path}: refused: the file uses the pickle opcode {name}")
            if name == "GLOBAL":
                module, _, attr = str(arg).partition(" ")
                if not _allowed(module, attr):
                    raise ValueError(f"{path}: refused: the file would import {module}.{attr}")
            elif name == "STACK_GLOBAL":
                module, attr = (pushed[-2], pushed[-1]) if len(pushed) >= 2 else (None, None)
                if not (isinstance(module, str) and isinstance(attr, str) and _allowed(module, attr)):
                    raise ValueError(f"{path}: refused: the file would import {module}.{attr}")
            pushed.append(arg if name in _STRING_OPS else memo.get(arg) if name in _MEMO_GET else None)
            del pushed[:-2]
    except ValueError as e:
        if str(e).startswith(path):
            raise
        raise ValueError(f"{path}: not a valid pickle: {e}") from None


def looks_like_k2(data: bytes) -> bool:
    """Content sniffing: a torch zip archive (or an old-style pickle)."""
    return data[:4] == ZIP_MAGIC or data[:2] in (b"\x80\x02", b"\x80\x04")


def load_k2_dict(path: str) -> Dict[str, object]:
    """``torch.load`` a (possibly gzipped) k2 dict on CPU; ``ValueError`` naming ``path`` on failure."""
    data = read_bytes(path)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            pickles = [n for n in z.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise ValueError(f"{path}: not a torch.save zip archive (no single data.pkl)")
            check_pickle(z.read(pickles[0]), path)  # before anything is unpickled
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as e:
        raise ValueError(f"{path}: not a torch.save zip archive ({e}); old-style (pre-1.6, non-zip) "
                         "torch.save files are not read") from None
    try:
        d = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)  # checked above
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
    headers = _headers(d.pop("headers", None), path)
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
    if headers is not None and len(headers) != n:
        raise ValueError(f"{path}: {len(headers)} headers for {n} FSAs")
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


def _headers(value: object, path: str) -> Optional[List[dict]]:
    """The ``headers`` entry as a list of dicts (a JSON string, or a list from older files)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as e:
            raise ValueError(f"{path}: 'headers' is not valid JSON: {e}") from None
    if not isinstance(value, list) or not all(isinstance(h, dict) for h in value):
        raise ValueError(f"{path}: 'headers' must be a list of dicts, got {type(value).__name__}")
    return value


def save_k2(batch: LatticeBatch, path: str) -> None:
    """Write ``batch`` as one ``torch.save(fsa.as_dict())`` file (atomic; ``.gz`` gzips it).

    The dict also holds ``aux_labels`` (= ``labels``), ``utt_ids``, ``symbols`` and ``headers``
    (without the reader-added ``path``) so that utterance ids and words round-trip.
    """
    d = batch.fsas.as_dict()
    d["aux_labels"] = batch.fsas.labels.clone()
    d["utt_ids"] = list(batch.utt_ids)
    d["symbols"] = symbols_to_list(batch.symbols)
    d["headers"] = json.dumps([{k: v for k, v in h.items() if k != "path"} for h in batch.headers])
    buf = io.BytesIO()
    torch.save(d, buf)
    with atomic_open(path, "wb") as f:
        f.write(buf.getvalue())
