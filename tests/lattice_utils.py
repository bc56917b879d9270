"""Test helpers shared by tests/lattices and tests/rescore: random acyclic lattices, brute-force paths."""
import random
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import k2
import torch

from lattices.lattice_batch import LatticeBatch

NUM_WORDS = 6


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


def random_lattice_arcs(
    rng: random.Random,
    num_states: Optional[int] = None,
    num_words: int = NUM_WORDS,
    eps_prob: float = 0.25,
    extra_arcs: Optional[int] = None,
) -> Tuple[List[Tuple[int, int, int, float, float]], int]:
    """Random connected acyclic lattice with ties, epsilons and duplicate arcs.

    States ``0 .. F-1`` carry word/epsilon arcs going forward, ``F`` is final (entered by -1 arcs).
    Scores are multiples of 0.5 in a small range so ties are frequent and sums are exact.

    Returns:
        ``(arcs, final)`` with arcs ``(src, dst, label, am, lm)``.
    """
    n = num_states if num_states is not None else rng.randint(2, 7)
    final = n
    arcs: List[Tuple[int, int, int, float, float]] = []

    def score() -> float:
        return rng.choice([-2.0, -1.5, -1.0, -0.5, 0.0])

    def label() -> int:
        return 0 if rng.random() < eps_prob else rng.randint(1, num_words)

    for t in range(1, n):  # every state reachable
        arcs.append((rng.randrange(0, t), t, label(), score(), score()))
    for s in range(0, n):  # every state co-reachable
        if s == n - 1 or rng.random() < 0.3:
            arcs.append((s, final, -1, score(), score()))
        else:
            arcs.append((s, rng.randint(s + 1, n - 1), label(), score(), score()))
    for _ in range(extra_arcs if extra_arcs is not None else rng.randint(0, 2 * n)):
        if n >= 2 and rng.random() < 0.85:
            s = rng.randrange(0, n - 1)
            arcs.append((s, rng.randint(s + 1, n - 1), label(), score(), score()))
        else:
            arcs.append((rng.randrange(0, n), final, -1, score(), score()))
    if arcs and rng.random() < 0.5:  # an exact duplicate arc
        arcs.append(rng.choice(arcs))
    return arcs, final


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


