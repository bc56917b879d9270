"""The tuning and 1-best helpers of the real-speech benchmark (bench/librispeech_wer.py)."""
import importlib.util
import os

import k2
import numpy as np
import torch

from lattices.lattice_batch import LatticeBatch

from tests.lattice_utils import fsa_from_arcs, make_symbols

_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "librispeech_wer.py")
_spec = importlib.util.spec_from_file_location("librispeech_wer", _PATH)
wer_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wer_bench)


def test_two_fold_tunes_each_fold_on_the_other():
    grid = [(1.0, 0.0, 0.0), (2.0, 0.0, 0.0), (3.0, 0.0, 0.0)]
    fold = np.array([0, 0, 1, 1])
    # grid point 0 is best on fold 0, point 2 on fold 1, point 1 second best on both
    errs = np.array([[0, 0, 9, 9],
                     [2, 2, 2, 2],
                     [9, 9, 0, 0]])
    utt_errors, chosen, per_utt = wer_bench.two_fold(grid, errs, fold)
    # fold 0 is scored with the point tuned on fold 1 (point 2), and vice versa: no self-tuning
    assert chosen == [grid[2], grid[0]]
    assert utt_errors == [9, 9, 9, 9]
    assert per_utt == [grid[2], grid[2], grid[0], grid[0]]


def test_two_fold_prefers_the_grid_order_on_ties():
    grid = [(1.0, 0.0, 0.0), (2.0, 0.0, 0.0)]
    utt_errors, chosen, _ = wer_bench.two_fold(grid, np.array([[1, 1], [1, 1]]), np.array([0, 1]))
    assert chosen == [grid[0], grid[0]] and utt_errors == [1, 1]


def test_lattice_grid_searches_every_point_and_caches_it(tmp_path):
    symbols = make_symbols()
    # two paths: w1 w2 (am -1 per word) or w3 (am -3); a word penalty flips the choice
    fsa = fsa_from_arcs([(0, 1, 1, -1.0, 0.0), (1, 3, 2, -1.0, 0.0), (0, 2, 3, -3.0, 0.0), (2, 3, 0, 0.0, 0.0),
                         (3, 4, -1, 0.0, 0.0)], final=4)
    fsas = k2.create_fsa_vec([fsa, fsa])
    fsas.old_lm_scores = torch.zeros_like(fsas.scores)
    fsas.afp_lm_scores = torch.zeros_like(fsas.scores)
    before = fsas.scores.clone()
    lats = LatticeBatch(fsas, ["a", "b"], symbols)
    refs = [["W1", "W2"], ["W3"]]
    cache = str(tmp_path / "grid.json")
    grid, errs = wer_bench.lattice_grid(cache, lats, (1.0,), refs)
    assert len(grid) == len(wer_bench.LM_SCALES) * len(wer_bench.PENALTIES)
    for g, e in zip(grid, errs.tolist()):
        # w1 w2 (scaled -2 + 2p) beats w3 (-3 + p) unless the penalty is below -1
        assert e == ([0, 2] if g[1] >= -1 else [2, 0]), g
    assert fsas.scores.equal(before)
    again, cached = wer_bench.lattice_grid(cache, None, (1.0,), None)  # read back, nothing searched
    assert again == grid and cached.tolist() == errs.tolist()


def test_rows_are_tested_against_the_row_they_name():
    base = wer_bench.Row("exact 100-best", 6, utt_errors=[3, 2, 1])
    same = wer_bench.Row("AFP", 6, utt_errors=[3, 2, 1], vs="exact 100-best")
    better = wer_bench.Row("AFP better", 0, utt_errors=[0, 0, 0], vs="exact 100-best")
    rows = [base, same, better, wer_bench.Row("oracle", 0)]
    assert wer_bench.significance(same, rows, [10, 10, 10]) == "+0.00 [+0.00, +0.00], 0.00"
    delta, _, p = wer_bench.significance(better, rows, [10, 10, 10]).partition("], ")
    assert delta.startswith("-20.00 [") and p == "1.00"
    assert wer_bench.significance(base, rows, [10, 10, 10]) == "—"  # names no row
