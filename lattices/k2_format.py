"""k2 lattice files as icefall writes them: ``torch.save(fsa.as_dict(), path)``.

Reading never trusts the file: it is unpickled by :mod:`lattices.safe_pickle` (only tensors,
plain containers and k2 ragged tensors; nothing from the file is called), and the FsaVec layout
(k2's ``fsa_to_tensor`` format) is decoded and checked here, so that a corrupt file is a
``ValueError`` naming it rather than an abort inside k2. Accepted: any FsaVec (or single Fsa)
dict:

- word ids: ``aux_labels`` when present (icefall lattices are token:word transducers); a ragged
  ``aux_labels`` becomes one arc per word (an arc with several words a chain, the first carrying
  the score, all of them the arc's times; an arc with none an epsilon); otherwise ``labels``.
- scores: ``am_scores`` if present; else ``scores - lm_scores`` when ``lm_scores`` is present
  (icefall's convention: ``scores`` is the total); else ``am = scores`` and ``lm = 0``.
- ``start_times``/``end_times`` are kept when present.
- extra keys written by :func:`save_k2` (and ignored by icefall): ``utt_ids`` (list of str),
  ``symbols`` (``[(word, id)]``, the table the labels refer to), ``headers`` (a JSON list of
  dicts). Files without ``utt_ids`` get ``<file stem>-<index>``; without ``symbols`` the ids are
  read with the ``words.txt`` given to the reader (or one next to the file).

Writing: ``torch.save(d)`` where ``d = fsas.as_dict()`` plus ``aux_labels = labels`` (so icefall
sees a word lattice) and the three extra keys above.
"""
import io
import json
import os
from typing import Dict, List, Optional, Tuple

import k2
import numpy as np
import torch

from lattices.fsa_build import ArcList, interned_fields
from lattices.lattice_batch import LatticeBatch
from lattices.safe_pickle import RaggedState, load_tensor_dict
from lattices.slf import utt_id_from_path
from lattices.symbols import load_symbols, symbols_from_list, symbols_to_list
from models.files import atomic_open, read_bytes

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) serialisation


def looks_like_k2(data: bytes) -> bool:
    """Content sniffing: a torch zip archive (or an old-style pickle, which is then refused)."""
    return data[:4] == ZIP_MAGIC or data[:2] in (b"\x80\x02", b"\x80\x04")


def load_k2_dict(path: str) -> Dict[str, object]:
    """Load a (possibly gzipped) k2 dict safely (see the module docstring); ``ValueError`` naming ``path``."""
    d = load_tensor_dict(read_bytes(path), path)
    if not isinstance(d, dict) or "arcs" not in d or not isinstance(d["arcs"], torch.Tensor):
        raise ValueError(f"{path}: not a k2 Fsa dict (torch.save(fsa.as_dict())): no 'arcs' tensor")
    return d


def _layout(arcs: torch.Tensor, path: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode k2's ``fsa_to_tensor`` layout, checked: ``(state_splits [F+1], arc_splits [F+1]
    (per FSA), arcs int64 [A, 4] (src, dst, label, score bits), states local to each FSA)``.

    A single FSA is ``[A, 4]``; an FsaVec is 1-D: ``F, 0``, the state row splits, the arc row
    splits (both ``[F+1]``), then the ``[A, 4]`` arcs.
    """
    if arcs.dtype != torch.int32:
        raise ValueError(f"{path}: 'arcs' must be int32, got {arcs.dtype}")
    a = arcs.numpy().astype(np.int64)
    if a.ndim == 2:
        if a.shape[1] != 4:
            raise ValueError(f"{path}: 'arcs' of a single FSA must be [num_arcs, 4], got {list(a.shape)}")
        n = int(max(a[:, 0].max(initial=-1), a[:, 1].max(initial=-1))) + 1
        return np.array([0, n]), np.array([0, len(a)]), a
    if a.ndim != 1 or len(a) < 2 or not 0 <= a[0] <= (len(a) - 2) // 2 - 1:
        raise ValueError(f"{path}: 'arcs' is neither an FSA nor an FsaVec tensor")
    f = int(a[0])
    state_splits, arc_splits = a[2:3 + f], a[3 + f:4 + 2 * f]
    body = a[4 + 2 * f:]
    for name, sp, total in (("state", state_splits, None), ("arc", arc_splits, len(body) // 4)):
        if sp[0] != 0 or (np.diff(sp) < 0).any() or (total is not None and (sp[-1] != total or len(body) % 4)):
            raise ValueError(f"{path}: corrupt FsaVec: bad {name} row splits")
    return state_splits, arc_splits, body.reshape(-1, 4)


def _per_arc(d: Dict[str, object], key: str, num_arcs: int, path: str) -> Optional[np.ndarray]:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, torch.Tensor) or value.shape != (num_arcs,):
        raise ValueError(f"{path}: {key!r} must be a tensor of one value per arc ({num_arcs})")
    return value.detach().double().numpy() if value.is_floating_point() else value.numpy().astype(np.int64)


def _ragged_words(value: RaggedState, num_arcs: int, path: str) -> Tuple[np.ndarray, np.ndarray]:
    """``(row_splits [A+1], words)`` of a ragged ``aux_labels``, checked."""
    if len(value.row_splits) != 1:
        raise ValueError(f"{path}: a ragged 'aux_labels' must have 2 axes")
    rs, words = value.row_splits[0].numpy().astype(np.int64), value.values.numpy().astype(np.int64)
    if len(rs) != num_arcs + 1 or rs[0] != 0 or rs[-1] != len(words) or (np.diff(rs) < 0).any():
        raise ValueError(f"{path}: corrupt ragged 'aux_labels'")
    return rs, words


def k2_dict_to_arclists(d: Dict[str, object], path: str, symbols: Optional[k2.SymbolTable]) -> Tuple[List[ArcList], k2.SymbolTable]:
    """Convert a loaded k2 dict into per-utterance arc lists.

    Args:
        d: the dict (not mutated).
        path: the file (messages, default utterance ids, ``words.txt`` lookup).
        symbols: table to read ids with when the file has none embedded.

    Returns:
        ``(lattices, table used to turn ids into words)``.

    Raises:
        ValueError: naming ``path`` for anything malformed.
    """
    emb, headers = d.get("symbols"), _headers(d.get("headers"), path)
    if emb is not None:
        table = symbols_from_list(emb)
    elif symbols is not None:
        table = symbols
    else:
        beside = os.path.join(os.path.dirname(path), "words.txt")
        if not os.path.exists(beside):
            raise ValueError(f"{path}: k2 file has no embedded symbol table; pass words.txt (--words)")
        table = load_symbols(beside)
    state_splits, arc_splits, arcs = _layout(d["arcs"], path)
    n, num_arcs = len(state_splits) - 1, len(arcs)
    labels = arcs[:, 2]
    scores = arcs[:, 3].astype(np.int32).view(np.float32).astype(np.float64)
    aux = d.get("aux_labels")
    word_rs = word_vals = None
    if isinstance(aux, RaggedState):
        word_rs, word_vals = _ragged_words(aux, num_arcs, path)
    elif aux is not None:
        labels = _per_arc(d, "aux_labels", num_arcs, path)
    am, lm = _per_arc(d, "am_scores", num_arcs, path), _per_arc(d, "lm_scores", num_arcs, path)
    if am is None:
        am, lm = (scores - lm, lm) if lm is not None else (scores, np.zeros(num_arcs))
    elif lm is None:
        lm = np.zeros(num_arcs)
    st, et = _per_arc(d, "start_times", num_arcs, path), _per_arc(d, "end_times", num_arcs, path)
    utt_ids = d.get("utt_ids")
    if utt_ids is None:
        stem = utt_id_from_path(path).replace(".pt", "")
        utt_ids = [stem] if n == 1 else [f"{stem}-{i}" for i in range(n)]
    if not isinstance(utt_ids, (list, tuple)) or len(utt_ids) != n:
        raise ValueError(f"{path}: {len(utt_ids) if isinstance(utt_ids, (list, tuple)) else 'no list of'} utt_ids for {n} FSAs")
    if headers is not None and len(headers) != n:
        raise ValueError(f"{path}: {len(headers)} headers for {n} FSAs")
    id2word = {int(i): table.get(i) for i in table.ids}
    out = []
    for i in range(n):
        where = f"{path}:{utt_ids[i]}"
        sl = slice(int(arc_splits[i]), int(arc_splits[i + 1]))
        num_states = int(state_splits[i + 1] - state_splits[i])
        s, e = arcs[sl, 0], arcs[sl, 1]
        if len(s) and (min(s.min(), e.min()) < 0 or max(s.max(), e.max()) >= num_states):
            raise ValueError(f"{where}: an arc refers to a state outside 0..{num_states - 1}")
        words_of_arc = [(int(labels[j]),) if word_rs is None or labels[j] == -1 else tuple(word_vals[word_rs[j]:word_rs[j + 1]].tolist())
                        for j in range(sl.start, sl.stop)]  # a final arc keeps -1 whatever its ragged words say
        s, e, lat_words, lat_am, lat_lm, lat_st, lat_et, extra_nodes = _chains(
            s, e, words_of_arc, am[sl], lm[sl], st[sl] if st is not None else None, et[sl] if et is not None else None, num_states)
        fin = np.array([w == -1 for w in lat_words], dtype=bool)
        finals: Dict[int, Tuple[float, float]] = {}
        for j in np.flatnonzero(fin).tolist():
            if int(s[j]) in finals:
                raise ValueError(f"{where}: state {int(s[j])} has two final arcs")
            finals[int(s[j])] = (float(lat_am[j]), float(lat_lm[j]))
        words = []
        for w in (w for w, f in zip(lat_words, fin) if not f):
            if w == 0:
                words.append(None)
            elif w in id2word:
                words.append(id2word[w])
            else:
                raise ValueError(f"{where}: word id {w} is not in the symbol table")
        keep = ~fin
        out.append(ArcList(
            utt_id=str(utt_ids[i]), source=path, num_nodes=num_states + extra_nodes if extra_nodes else max(num_states - 1, 1),
            start=0, finals=finals,
            src=s[keep], dst=e[keep], **interned_fields(words), am=lat_am[keep], lm=lat_lm[keep],
            start_times=lat_st[keep] if lat_st is not None else None, end_times=lat_et[keep] if lat_et is not None else None,
            header=dict(headers[i]) if headers is not None else {},
        ))
    return out, table


def _chains(src: np.ndarray, dst: np.ndarray, words: List[tuple], am: np.ndarray, lm: np.ndarray,
            st: Optional[np.ndarray], et: Optional[np.ndarray], num_states: int):
    """One word per arc: an arc with several words becomes a chain through new states (numbered
    from ``num_states``), its first arc carrying the scores, every arc of it the original times;
    an arc with none is an epsilon (0).

    Returns:
        ``(src, dst, word per arc, am, lm, start_times, end_times, number of new states)``.
    """
    if all(len(w) == 1 for w in words):
        return src, dst, [w[0] for w in words], am, lm, st, et, 0
    cols: Dict[str, list] = {k: [] for k in ("src", "dst", "word", "am", "lm", "arc")}
    new = num_states
    for j, w in enumerate(words):
        w = w or (0,)
        nodes = [int(src[j])] + list(range(new, new + len(w) - 1)) + [int(dst[j])]
        new += len(w) - 1
        for k, word in enumerate(w):
            for key, v in (("src", nodes[k]), ("dst", nodes[k + 1]), ("word", word), ("am", am[j] if k == 0 else 0.0),
                           ("lm", lm[j] if k == 0 else 0.0), ("arc", j)):
                cols[key].append(v)
    arc = np.asarray(cols["arc"], dtype=np.int64)
    return (np.asarray(cols["src"], np.int64), np.asarray(cols["dst"], np.int64), cols["word"], np.asarray(cols["am"]),
            np.asarray(cols["lm"]), st[arc] if st is not None else None, et[arc] if et is not None else None, new - num_states)


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
