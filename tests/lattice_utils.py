"""Test helpers shared by tests/lattices and tests/rescore: random acyclic lattices, brute-force paths."""
from typing import Dict, Iterator, List, Sequence, Tuple

import k2
import torch

from lattices.lattice_batch import LatticeBatch
from tests.random_lattices import NUM_WORDS, random_lattice_arcs

__all__ = ["NUM_WORDS", "random_lattice_arcs", "make_symbols", "fsa_from_arcs", "enumerate_paths", "brute_force_word_sequences", "make_batch"]


def make_symbols(num_words: int = NUM_WORDS) -> k2.SymbolTable:
    """``<eps> 0``, then ``w1 .. wN``."""
    lines = ["<eps> 0"] + [f"w{i} {i}" for i in range(1, num_words + 1)]
    return k2.SymbolTable.from_str("\n".join(lines))


def fsa_from_arcs(
    arcs: Sequence[Tuple[int, int, int, float, float]], final: int, times: bool = False
) -> k2.Fsa:
    """Build a k2 acceptor from ``(src, dst, label, am, lm)`` tuples (any order; stable-sorted by src).

    ``scores = am + lm``; ``am_scores``/``lm_scores`` are attached; with ``times``, fake
    ``start_times``/``end_times`` (src/10, dst/10 seconds).
    """
    order = sorted(range(len(arcs)), key=lambda i: arcs[i][0])
    lines = [f"{arcs[i][0]} {arcs[i][1]} {arcs[i][2]} {arcs[i][3] + arcs[i][4]}" for i in order]
    fsa = k2.Fsa.from_str("\n".join(lines + [str(final)]))
    fsa.am_scores = torch.tensor([float(arcs[i][3]) for i in order], dtype=torch.float32)
    fsa.lm_scores = torch.tensor([float(arcs[i][4]) for i in order], dtype=torch.float32)
    fsa.scores = fsa.am_scores + fsa.lm_scores
    if times:
        fsa.start_times = torch.tensor([arcs[i][0] / 10 for i in order], dtype=torch.float32)
        fsa.end_times = torch.tensor([arcs[i][1] / 10 for i in order], dtype=torch.float32)
    return fsa


def enumerate_paths(fsa: k2.Fsa) -> Iterator[List[int]]:
    """All complete paths of a single acyclic FSA, as lists of arc indexes (brute force)."""
    arcs = fsa.arcs.values()[:, :3].tolist()
    final = fsa.shape[0] - 1
    out: Dict[int, List[int]] = {}
    for i, (s, _, _) in enumerate(arcs):
        out.setdefault(s, []).append(i)

    def rec(state: int, prefix: List[int]) -> Iterator[List[int]]:
        if state == final:
            yield list(prefix)
            return
        for a in out.get(state, []):
            prefix.append(a)
            yield from rec(arcs[a][1], prefix)
            prefix.pop()

    yield from rec(0, [])


def brute_force_word_sequences(
    fsa: k2.Fsa, am_scale: float = 1.0, lm_scale: float = 1.0, word_penalty: float = 0.0
) -> Dict[Tuple[int, ...], float]:
    """Max (Viterbi) scaled total over paths, per distinct word sequence."""
    labels = fsa.labels.tolist()
    am = fsa.am_scores.tolist()
    lm = fsa.lm_scores.tolist()
    best: Dict[Tuple[int, ...], float] = {}
    for path in enumerate_paths(fsa):
        words = tuple(labels[a] for a in path if labels[a] > 0)
        total = sum(am_scale * am[a] + lm_scale * lm[a] for a in path) + word_penalty * len(words)
        if words not in best or total > best[words]:
            best[words] = total
    return best


def make_batch(fsas: Sequence[k2.Fsa], num_words: int = NUM_WORDS, prefix: str = "utt") -> LatticeBatch:
    vec = k2.create_fsa_vec(list(fsas))
    return LatticeBatch(vec, [f"{prefix}{i}" for i in range(len(fsas))], make_symbols(num_words))


