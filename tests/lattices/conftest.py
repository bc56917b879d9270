"""Shared fixtures for lattice tests (helpers live in tests/lattice_utils.py)."""
import random
from typing import List

import k2
import pytest

from tests.lattice_utils import fsa_from_arcs, make_symbols, random_lattice_arcs


@pytest.fixture
def symbols() -> k2.SymbolTable:
    return make_symbols()


@pytest.fixture
def random_lattices() -> List[k2.Fsa]:
    """200 small random lattices (seeded)."""
    rng = random.Random(1234)
    out = []
    for _ in range(200):
        arcs, final = random_lattice_arcs(rng)
        out.append(fsa_from_arcs(arcs, final))
    return out
