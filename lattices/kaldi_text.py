"""Kaldi CompactLattice text archives (``ark,t``): parse into arc lists, format out.

One lattice per block::

    utt-id                     (the whole line, stripped, is the key)
    src dst word graph_cost,acoustic_cost,transition_ids
    ...
    final_state graph_cost,acoustic_cost,transition_ids     (or just ``final_state``: weight 0,0)
    <blank line>

- Costs are negated natural logs: ``am_scores = -acoustic_cost``, ``lm_scores = -graph_cost``.
- The start state is the source of the first arc line (OpenFst text convention), or the first
  final line's state for a lattice without arcs.
- Final-state weights go on the final arc (label -1) of that state.
- ``word`` is an id in ``words.txt``; ``transition_ids`` (``_``-separated) are not kept.
- No times (the format has none without the transition model).
"""
from typing import Dict, List, Optional, Tuple

import k2
import numpy as np

from lattices.fsa_build import ArcList, Failure, interned_fields
from lattices.textio import format_floats


def looks_like_kaldi_text(text: str) -> bool:
    """Content sniffing: the first non-blank line is a single token (the key) followed by lines
    of 4 fields whose last one is ``g,a,tids``-shaped."""
    lines = [ln for ln in text[:20000].splitlines() if ln.strip()]
    if len(lines) < 2:
        return False
    if "=" in lines[0]:
        return False
    body = lines[1].split()
    return len(body) in (2, 4) and body[-1].count(",") >= 1 and body[0].isdigit()


def _weight(tok: str, where: str, lineno: int) -> Tuple[float, float]:
    parts = tok.split(",")
    if len(parts) < 2:
        raise ValueError(f"{where}:{lineno}: weight {tok!r} is not 'graph_cost,acoustic_cost,...'")
    try:
        g, a = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(f"{where}:{lineno}: weight {tok!r} has a non-numeric cost") from None
    return -a + 0.0, -g + 0.0  # (am, lm); "+ 0.0" turns -0.0 into 0.0


def _parse_block(
    utt: str, lines: List[Tuple[int, str]], source: str, id2word: Dict[int, str]
) -> ArcList:
    where = f"{source}:{utt}"
    src: List[int] = []
    dst: List[int] = []
    words: List[Optional[str]] = []
    am: List[float] = []
    lm: List[float] = []
    finals: Dict[int, Tuple[float, float]] = {}
    start = None
    for lineno, line in lines:
        f = line.split()
        try:
            if len(f) == 4 or len(f) == 3:
                s, d, w = int(f[0]), int(f[1]), int(f[2])
                a, g = _weight(f[3], where, lineno) if len(f) == 4 else (0.0, 0.0)
                if start is None:
                    start = s
                if w != 0 and w not in id2word:
                    raise ValueError(f"{where}:{lineno}: word id {w} is not in words.txt")
                src.append(s)
                dst.append(d)
                words.append(None if w == 0 else id2word[w])
                am.append(a)
                lm.append(g)
            elif len(f) in (1, 2):
                s = int(f[0])
                if s in finals:
                    raise ValueError(f"{where}:{lineno}: state {s} is final twice")
                finals[s] = _weight(f[1], where, lineno) if len(f) == 2 else (0.0, 0.0)
            else:
                raise ValueError(f"{where}:{lineno}: expected 'src dst word weight' or 'state [weight]', got {line!r}")
        except ValueError as e:
            if str(e).startswith(where):
                raise
            raise ValueError(f"{where}:{lineno}: malformed line {line!r}") from None
    if not finals:
        raise ValueError(f"{where}: empty lattice (no final state)")
    if start is None:
        start = next(iter(finals))
    n = max([start] + src + dst + list(finals)) + 1
    if min([start] + src + dst + list(finals)) < 0:
        raise ValueError(f"{where}: negative state id")
    return ArcList(
        utt_id=utt, source=source, num_nodes=n, start=start, finals=finals,
        src=np.asarray(src, dtype=np.int64), dst=np.asarray(dst, dtype=np.int64), **interned_fields(words),
        am=np.asarray(am, dtype=np.float64), lm=np.asarray(lm, dtype=np.float64),
    )


def parse_kaldi_text(text: str, source: str, symbols: k2.SymbolTable) -> Tuple[List[ArcList], List[Failure]]:
    """Parse every lattice of a CompactLattice text archive.

    Args:
        text: archive text.
        source: its path (for messages).
        symbols: the ``words.txt`` the word ids refer to.

    Returns:
        ``(lattices, failures)``: one :class:`ArcList` per good lattice (words as strings), one
        :class:`Failure` per malformed one (the others are still read).
    """
    id2word = {int(i): symbols.get(i) for i in symbols.ids}
    lattices: List[ArcList] = []
    failures: List[Failure] = []
    blocks: List[Tuple[str, int, List[Tuple[int, str]]]] = []
    cur: Optional[Tuple[str, int, List[Tuple[int, str]]]] = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            if cur is not None:
                blocks.append(cur)
                cur = None
            continue
        if cur is None:  # the key line (Kaldi writes "utt-id " alone on its line)
            cur = (line.strip(), lineno, [])
        else:
            cur[2].append((lineno, line))
    if cur is not None:
        blocks.append(cur)
    if not blocks:
        failures.append(Failure(source, f"{source}: empty Kaldi lattice archive"))
    seen = set()
    for utt, lineno, lines in blocks:
        try:
            if utt in seen:
                raise ValueError(f"{source}:{utt}: utterance id appears twice (line {lineno})")
            seen.add(utt)
            lattices.append(_parse_block(utt, lines, source, id2word))
        except ValueError as e:
            failures.append(Failure(f"{source}:{utt}", str(e)))
    return lattices, failures


def format_kaldi_text(fsa: k2.Fsa, utt_id: str) -> str:
    """One lattice (single k2 Fsa in the batch convention) as a CompactLattice text block.

    The k2 final state is dropped; each arc labelled -1 becomes a final-state line carrying its
    weight. Raises ``ValueError`` if a state has two final arcs (not representable).

    Returns:
        The block, ending with a blank line.
    """
    arcs = fsa.as_dict()["arcs"][:, :3].tolist()
    labels = fsa.labels.tolist()
    am = format_floats(-fsa.am_scores)
    lm = format_floats(-fsa.lm_scores)
    out = [utt_id]
    finals = []
    seen = set()
    for i, (s, d, _) in enumerate(arcs):
        if labels[i] == -1:
            if s in seen:
                raise ValueError(f"{utt_id}: state {s} has two final arcs; Kaldi cannot represent that")
            seen.add(s)
            finals.append(f"{s} {lm[i]},{am[i]},")
        else:
            out.append(f"{s} {d} {labels[i]} {lm[i]},{am[i]},")
    if not finals:
        raise ValueError(f"{utt_id}: cannot write an empty lattice")
    return "\n".join(out + finals) + "\n\n"
