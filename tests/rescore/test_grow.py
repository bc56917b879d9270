"""The k2-free expansion core (rescore.arcs, rescore.grow): no k2 needed, any device, exact rows."""
import os
import random
import subprocess
import sys
from dataclasses import fields

import k2
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rescore.arcs as arcs_module
from rescore.arcs import Arcs, path_needs, unique_rows
from tests.lattice_utils import enumerate_paths, fsa_from_arcs, random_lattice_arcs
from tests.random_lattices import arcs_of

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_expansion_core_and_lm_pass_import_and_run_without_k2():
    code = (
        "import sys, torch\n"
        "sys.modules['k2'] = None  # any 'import k2' now raises ImportError\n"
        "from rescore.arcs import Arcs\n"
        "from rescore.grow import grow\n"
        "import models.scoring\n"
        "a = Arcs(torch.tensor([0, 3]), torch.tensor([0, 2, 3, 3]), torch.tensor([0, 0, 1]), torch.tensor([1, 1, 2]),\n"
        "         torch.tensor([5, 6, -1]), torch.zeros(3))\n"
        "g = grow(a, 2, 9, a.labels)\n"
        "print(g.arc_src.numel())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "4"  # arcs 5 and 6 give two histories for the final arc


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(st.lists(st.integers(-3, 5), min_size=3, max_size=3), min_size=0, max_size=40), collide=st.booleans(),
       width=st.sampled_from([1, 3, 64, 100]))
def test_unique_rows_is_exact_even_when_every_hash_collides(rows, collide, width):
    """Any number of columns (K > 63 histories, issue 11); a forced collision falls back exactly."""
    t = torch.tensor(rows, dtype=torch.long).reshape(-1, 3).repeat(1, (width + 2) // 3)[:, :width]
    mix = arcs_module._multipliers
    try:
        if collide:
            arcs_module._multipliers = lambda n: torch.zeros(n, dtype=torch.long)  # every row gets the same key
        uniq, inverse = unique_rows(t)
    finally:
        arcs_module._multipliers = mix
    assert torch.equal(uniq[inverse], t)
    assert uniq.shape[0] == len({tuple(r) for r in t.tolist()})


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 8))
def test_the_k2_free_test_lattices_are_what_k2_gives(seed, n):
    """tests/random_lattices.arcs_of (used by the k2-free device tests) equals Arcs.from_fsas."""
    rng = random.Random(seed)
    lattices = [random_lattice_arcs(rng) for _ in range(n)]
    want = Arcs.from_fsas(k2.create_fsa_vec([fsa_from_arcs(*lat) for lat in lattices]))
    got = arcs_of(lattices)
    for f in fields(Arcs):
        assert torch.equal(getattr(got, f.name), getattr(want, f.name)), f.name


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 12))
def test_levels_are_longest_path_lengths(seed, n):
    """Brute force: a state's level is the longest path (in arcs) to it from a state without
    incoming arcs, computed state by state in topological order."""
    rng = random.Random(seed)
    fsas = k2.create_fsa_vec([fsa_from_arcs(*random_lattice_arcs(rng)) for _ in range(n)])
    a = Arcs.from_fsas(fsas)
    expected = [0] * a.num_states
    for s, d in sorted(zip(a.src.tolist(), a.dst.tolist()), key=lambda e: e[1]):  # top-sorted: src < dst
        expected[d] = max(expected[d], expected[s] + 1)
    assert a.levels.tolist() == expected


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 6))
def test_path_needs_is_the_smallest_bottleneck_over_complete_paths(seed, n):
    """Brute force over every complete path: an arc's need is the smallest, over the paths through
    it, of the largest cost on the path."""
    rng = random.Random(seed)
    lattices = [fsa_from_arcs(*random_lattice_arcs(rng)) for _ in range(n)]
    fsas = k2.create_fsa_vec(lattices)
    cost = torch.tensor([rng.choice([0.0, 0.5, 1.0, 2.0, 3.0]) for _ in range(fsas.num_arcs)], dtype=torch.float64)
    expected = [float("inf")] * fsas.num_arcs
    first = 0
    for fsa in lattices:
        for path in enumerate_paths(fsa):
            worst = max(float(cost[first + a]) for a in path)
            for a in path:
                expected[first + a] = min(expected[first + a], worst)
        first += fsa.num_arcs
    assert path_needs(Arcs.from_fsas(fsas), cost).tolist() == expected


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 8), eps=st.sampled_from([0.0, 0.3, 0.8]))
def test_order_one_without_levels_is_the_level_by_level_expansion(seed, n, eps):
    """grow at order 1 without a bound (rescore.grow._grow_one) builds the arcs grow builds level
    by level (forced with a max_arcs that binds nothing), each with the same history, only
    numbered otherwise; its states come in topological order and every arc leads to the state of
    its next history."""
    from rescore.grow import FINAL, grow

    rng = random.Random(seed)
    a = arcs_of([random_lattice_arcs(rng, num_states=rng.randint(2, 9), eps_prob=eps) for _ in range(n)])
    tokens = torch.where(a.labels > 0, a.labels * 7, torch.zeros_like(a.labels))  # sparse, like canonical tokens
    fast, slow = grow(a, 1, 500, tokens), grow(a, 1, 500, tokens, max_arcs=10**9)
    assert sorted(zip(fast.arc_orig.tolist(), fast.arc_hist[:, 0].tolist())) == \
        sorted(zip(slow.arc_orig.tolist(), slow.arc_hist[:, 0].tolist()))
    assert fast.state_orig.numel() == slow.state_orig.numel()
    assert (fast.state_orig.diff() >= 0).all()  # by original state: topological
    assert torch.equal(fast.state_orig[fast.arc_src], a.src[fast.arc_orig])
    assert torch.equal(fast.state_orig[fast.arc_dst], a.dst[fast.arc_orig])
    tok = tokens[fast.arc_orig]
    nxt = torch.where(tok > 0, tok, torch.where(a.labels[fast.arc_orig] == -1, torch.full_like(tok, FINAL), fast.arc_hist[:, 0]))
    hist_of_state = torch.full((fast.state_orig.numel(),), FINAL).scatter_(0, fast.arc_src, fast.arc_hist[:, 0])
    assert torch.equal(hist_of_state[fast.arc_dst], nxt)
    assert torch.equal(fast.arcs_per_fsa, slow.arcs_per_fsa)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 8), data=st.data())
def test_select_is_the_batch_of_the_chosen_lattices(seed, n, data):
    """Arcs.select equals the Arcs of the chosen lattices alone, and keeps the levels computed."""
    rng = random.Random(seed)
    lattices = [random_lattice_arcs(rng) for _ in range(n)]
    chosen = data.draw(st.lists(st.integers(0, n - 1), unique=True))
    whole = arcs_of(lattices)
    levels = whole.levels
    got, input_arc = whole.select(torch.tensor(chosen, dtype=torch.long))
    assert "levels" in got.__dict__  # carried over, not computed again
    want = arcs_of([lattices[i] for i in chosen])
    for f in fields(Arcs):
        assert torch.equal(getattr(got, f.name), getattr(want, f.name)), f.name
    assert torch.equal(got.levels, want.levels)
    assert torch.equal(whole.labels[input_arc], got.labels) and torch.equal(whole.scores[input_arc], got.scores)
    assert levels is whole.levels
