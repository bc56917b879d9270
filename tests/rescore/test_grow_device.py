"""The expansion core on every device equals the CPU, without k2: these run on a GPU machine
that has torch but no k2 (``PYTHONPATH=. python -m pytest tests/rescore/test_grow_device.py``)."""
import random

import pytest
import torch

from rescore.arcs import path_needs, unique_rows
from rescore.grow import FitBeams, grow
from tests.random_lattices import arcs_of, random_lattice_arcs


@pytest.mark.parametrize("pruned", [False, True])
def test_grow_on_any_device_equals_cpu(device, pruned):
    rng = random.Random(3)
    a = arcs_of([random_lattice_arcs(rng) for _ in range(20)])
    cost = torch.tensor([rng.choice([0.0, 1.0, 2.0]) for _ in range(a.src.numel())])
    needs = path_needs(a, cost)
    assert torch.equal(path_needs(a.to(device), cost.to(device)).cpu(), needs)
    fit = (lambda dev: FitBeams(needs.to(dev), torch.tensor([2.0, 1.0, 0.0]))) if pruned else (lambda dev: None)
    cpu = grow(a, 3, 100, a.labels, max_arcs=30, fit=fit("cpu"))
    other = grow(a.to(device), 3, 100, a.labels.to(device), max_arcs=30, fit=fit(device))
    for name in ("state_orig", "arc_src", "arc_dst", "arc_orig", "arc_hist", "arcs_per_fsa", "abandoned", "beam",
                 "state_kept", "arc_kept"):
        assert torch.equal(getattr(cpu, name), getattr(other, name).cpu()), name
    assert (cpu.beam < float("inf")).any() if pruned else cpu.abandoned.any() and (~cpu.abandoned).any()


def test_unique_rows_on_any_device_equals_cpu(device):
    rows = torch.randint(-1, 4, (500, 4), generator=torch.Generator().manual_seed(0))
    uniq, inverse = unique_rows(rows)
    other, other_inverse = unique_rows(rows.to(device))
    assert torch.equal(other.cpu(), uniq) and torch.equal(other_inverse.cpu(), inverse)
