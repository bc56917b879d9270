"""Random acyclic lattices as plain lists and as :class:`rescore.arcs.Arcs`, without k2 (so the
device tests of the expansion core also run on a GPU machine that has no k2)."""
import random
from typing import List, Optional, Sequence, Tuple

import torch

from rescore.arcs import Arcs

NUM_WORDS = 6


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


def arcs_of(lattices: Sequence[Tuple[List[Tuple[int, int, int, float, float]], int]]) -> Arcs:
    """The :class:`Arcs` of a batch of :func:`random_lattice_arcs` lattices (scores: am + lm), with
    each state's arcs in input order, as :meth:`Arcs.from_fsas` gives them for the same FsaVec."""
    state_splits, src, dst, labels, scores = [0], [], [], [], []
    for arcs, final in lattices:
        base = state_splits[-1]
        for s, d, label, am, lm in sorted(arcs, key=lambda a: a[0]):  # stable: input order per state
            src.append(base + s)
            dst.append(base + d)
            labels.append(label)
            scores.append(am + lm)
        state_splits.append(base + final + 1)
    src_t = torch.tensor(src, dtype=torch.long)
    arc_splits = torch.cat([torch.zeros(1, dtype=torch.long),
                            torch.bincount(src_t, minlength=state_splits[-1]).cumsum(0)])
    return Arcs(torch.tensor(state_splits), arc_splits, src_t, torch.tensor(dst, dtype=torch.long),
                torch.tensor(labels, dtype=torch.long), torch.tensor(scores, dtype=torch.float32))
