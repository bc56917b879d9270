"""Oracle (lattice) word error rate: the path closest to a reference by edit distance.

Exact dynamic programme over ``states x reference positions`` of each top-sorted lattice:
``cost[s, j]`` is the fewest edits (substitution, insertion, deletion: cost 1 each; a match costs 0)
that turn some path prefix from the start to ``s`` into ``ref[:j]``. Epsilon (0) and final (-1) arcs
consume no word. Scores are ignored: the oracle is the best the lattice could ever give.
"""
from dataclasses import dataclass, field, replace
from typing import Dict, List, Sequence, Tuple

import k2
import numpy as np

from lattices.validate import arc_arrays

_INF = 1 << 28


@dataclass
class OracleResult:
    """Oracle path of one lattice against its reference.

    Attributes:
        errors: minimal edit distance (substitutions + insertions + deletions).
        ref_len: number of reference words.
        words: word ids of the oracle path (one of the best, if tied).
        arcs: the arcs of those words, as indexes into the FsaVec's arcs.
    """

    errors: int
    ref_len: int
    words: List[int]
    arcs: List[int] = field(default_factory=list)


def oracle_paths(fsas: k2.Fsa, refs: Sequence[Sequence[int]]) -> List[OracleResult]:
    """Oracle path per lattice.

    Args:
        fsas: connected, top-sorted FsaVec ``[utt][state][arc]`` with word ``labels`` (not mutated).
        refs: ``[utt][word]`` reference word ids; use an id that never occurs in the lattice
            (e.g. -2) for reference words missing from the symbol table.

    Returns:
        ``[utt]`` :class:`OracleResult`.

    Raises:
        ValueError: ``len(refs)`` differs from the number of lattices, or lattices not top-sorted.
    """
    if len(fsas.shape) != 3:
        raise ValueError("expected an FsaVec [utt][state][arc]")
    if fsas.shape[0] != len(refs):
        raise ValueError(f"{fsas.shape[0]} lattices but {len(refs)} references")
    if fsas.shape[0] and not (fsas.properties & k2.fsa_properties.TOPSORTED):
        raise ValueError("lattices must be top-sorted; run lattices.validate.validate_lattices first")
    arrays = arc_arrays(fsas)
    out = []
    for i, ref in enumerate(refs):
        s0, s1 = int(arrays.state_splits[i]), int(arrays.state_splits[i + 1])
        a0, a1 = int(arrays.arc_splits[s0]), int(arrays.arc_splits[s1])
        res = _oracle_one(
            s1 - s0,
            arrays.arc_splits[s0 : s1 + 1] - a0,
            arrays.src[a0:a1] - s0,
            arrays.dst[a0:a1] - s0,
            arrays.labels[a0:a1],
            np.asarray(list(ref), dtype=np.int64),
        )
        out.append(replace(res, arcs=[a0 + k for k in res.arcs]))
    return out


def _oracle_one(
    num_states: int,
    arc_splits: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    labels: np.ndarray,
    ref: np.ndarray,
) -> OracleResult:
    """DP for one lattice with local state indexes (0 start, ``num_states - 1`` final)."""
    r = len(ref)
    if num_states == 0:
        return OracleResult(errors=r, ref_len=r, words=[])
    positions = np.arange(r + 1, dtype=np.int64)
    cost = np.full((num_states, r + 1), _INF, dtype=np.int64)
    cost[0, 0] = 0
    is_word = labels > 0
    for s in range(num_states):
        # Deletions of reference words while staying in s: cost[s, j] <= cost[s, j-1] + 1.
        row = np.minimum.accumulate(cost[s] - positions) + positions
        cost[s] = row
        a, b = arc_splits[s], arc_splits[s + 1]
        if a == b:
            continue
        lab = labels[a:b]
        dests = dst[a:b]
        cand = np.broadcast_to(row, (b - a, r + 1)).copy()
        words = is_word[a:b]
        if words.any():
            cand[words] += 1  # insertion of the arc's word
            if r:
                sub = row[None, :-1] + (lab[words, None] != ref[None, :])
                cand[words, 1:] = np.minimum(cand[words, 1:], sub)
        np.minimum.at(cost, dests, cand)
    final = num_states - 1
    errors = int(cost[final, r])
    assert errors < _INF, "lattice must be connected"
    # Backtrace with integer costs (exact equality).
    order = np.argsort(dst, kind="stable")
    in_splits = np.searchsorted(dst[order], np.arange(num_states + 1))
    words_out: List[int] = []
    arcs_out: List[int] = []
    t, j = final, r
    while not (t == 0 and j == 0):
        c = cost[t, j]
        if j > 0 and cost[t, j - 1] + 1 == c:
            j -= 1
            continue
        moved = False
        for k in order[in_splits[t] : in_splits[t + 1]]:
            s, w = int(src[k]), int(labels[k])
            if w <= 0:
                if cost[s, j] == c:
                    t, moved = s, True
                    break
                continue
            if j > 0 and cost[s, j - 1] + (w != ref[j - 1]) == c:
                words_out.append(w)
                arcs_out.append(int(k))
                t, j, moved = s, j - 1, True
                break
            if cost[s, j] + 1 == c:
                words_out.append(w)
                arcs_out.append(int(k))
                t, moved = s, True
                break
        assert moved, "oracle backtrace failed"
    return OracleResult(errors=errors, ref_len=r, words=words_out[::-1], arcs=arcs_out[::-1])


def word_ids(words: Sequence[str], symbols: k2.SymbolTable, lowercase: bool = False) -> List[int]:
    """Map words to ids of ``symbols``; unknown words get -2 (matches nothing)."""
    table = _word_table(symbols, lowercase)
    return [table.get(w.lower() if lowercase else w, -2) for w in words]


def _word_table(symbols: k2.SymbolTable, lowercase: bool) -> Dict[str, int]:
    table: Dict[str, int] = {}
    for i in sorted(symbols.ids):  # deterministic: the lowest id wins among case variants
        sym = symbols.get(i)
        table.setdefault(sym.lower() if lowercase else sym, i)
    return table


def canonical_labels(fsas: k2.Fsa, symbols: k2.SymbolTable, lowercase: bool) -> k2.Fsa:
    """A copy of ``fsas`` whose labels are mapped so that words equal up to case share one id.

    With ``lowercase=False`` this is a plain clone.
    """
    out = fsas.clone()
    if not lowercase:
        return out
    import torch

    table = _word_table(symbols, True)
    max_id = max(symbols.ids) if symbols.ids else 0
    canon = torch.arange(max_id + 1, dtype=torch.int64)
    for sym in symbols.symbols:
        canon[symbols[sym]] = table[sym.lower()]
    labels = fsas.labels.long()
    mapped = torch.where(labels > 0, canon[labels.clamp(min=0)], labels)
    out.labels = mapped.to(fsas.labels.dtype)
    return out


@dataclass
class OracleSummary:
    """Totals over utterances: ``errors / ref_words`` is the oracle WER."""

    errors: int
    ref_words: int

    @property
    def wer(self) -> float:
        return self.errors / self.ref_words if self.ref_words else 0.0


def oracle_wer(
    fsas: k2.Fsa,
    symbols: k2.SymbolTable,
    refs: Sequence[Sequence[str]],
    lowercase: bool = True,
) -> Tuple[List[Tuple[OracleResult, List[str]]], OracleSummary]:
    """Oracle WER of word lattices against reference word strings.

    Args:
        fsas: connected, top-sorted FsaVec ``[utt][state][arc]`` (not mutated).
        symbols: the lattices' word symbol table.
        refs: ``[utt][word]`` reference words.
        lowercase: compare words case-insensitively.

    Returns:
        ``([(result, oracle_words_as_strings)] per utt, summary)``; the words are spelled as on
        the lattice's own arcs (not as the case variant the comparison mapped them to).
    """
    canon = canonical_labels(fsas, symbols, lowercase)
    ids = [word_ids(r, symbols, lowercase) for r in refs]
    results = oracle_paths(canon, ids)
    labels = fsas.labels.tolist()
    out = [(res, [symbols.get(labels[a]) for a in res.arcs]) for res in results]
    summary = OracleSummary(
        errors=sum(r.errors for r in results), ref_words=sum(r.ref_len for r in results)
    )
    return out, summary
