"""Word symbol tables (``words.txt``, k2 ``SymbolTable`` compatible): load, build, write."""
from typing import Iterable

import k2

from models.files import atomic_open, read_text

EPS = "<eps>"


def load_symbols(path: str) -> k2.SymbolTable:
    """Load a ``words.txt`` (``word id`` per line, plain or ``.gz``).

    Raises:
        ValueError: malformed line, duplicate word/id, or id 0 not ``<eps>``; names ``path`` and line.
    """
    text = read_text(path)
    seen_ids = {}
    seen_words = set()
    lines = []
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].isdigit():
            raise ValueError(f"{path}:{lineno}: expected 'word id', got {line!r}")
        word, idx = fields[0], int(fields[1])
        if idx in seen_ids or word in seen_words:
            raise ValueError(f"{path}:{lineno}: duplicate word or id in {line!r}")
        seen_ids[idx] = word
        seen_words.add(word)
        lines.append(f"{word} {idx}")
    if 0 in seen_ids and seen_ids[0] != EPS:
        raise ValueError(f"{path}: id 0 must be {EPS!r}, got {seen_ids[0]!r}")
    if EPS in seen_words and seen_ids.get(0) != EPS:
        raise ValueError(f"{path}: {EPS!r} must have id 0")
    table = k2.SymbolTable.from_str("\n".join(lines))
    return table


def build_symbols(words: Iterable[str]) -> k2.SymbolTable:
    """A new table: ``<eps>`` = 0, then the distinct ``words`` in sorted order from 1.

    Sorting makes the ids independent of file order (deterministic for a set of lattices).
    """
    table = k2.SymbolTable()  # starts with <eps> = 0
    for w in sorted(set(words) - {EPS}):
        table.add(w)
    return table


def copy_symbols(table: k2.SymbolTable) -> k2.SymbolTable:
    """An independent copy of ``table`` (same words and ids; adding to one does not change the other)."""
    out = k2.SymbolTable()
    out._id2sym = dict(table._id2sym)
    out._sym2id = dict(table._sym2id)
    out._next_available_id = table._next_available_id
    return out


def write_symbols(table: k2.SymbolTable, path: str) -> None:
    """Write ``table`` as ``words.txt`` (``word id`` per line, by id), atomically."""
    with atomic_open(path, "w") as f:
        for idx in sorted(table.ids):
            f.write(f"{table.get(idx)} {idx}\n")


def symbols_to_list(table: k2.SymbolTable) -> list:
    """``[(word, id), ...]`` sorted by id (picklable; stored in k2 ``.pt`` files)."""
    return [(table.get(i), int(i)) for i in sorted(table.ids)]


def symbols_from_list(pairs: Iterable) -> k2.SymbolTable:
    """Inverse of :func:`symbols_to_list`."""
    table = k2.SymbolTable()  # starts with <eps> = 0
    for word, idx in pairs:
        if int(idx) != 0:
            table.add(word, int(idx))
    return table
