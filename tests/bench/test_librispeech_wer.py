"""The tuning and 1-best helpers of the real-speech benchmark (bench/librispeech_wer.py)."""
import importlib.util
import os

import k2
import numpy as np
import pytest

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
    total, chosen, per_utt = wer_bench.two_fold(grid, errs, fold)
    # fold 0 is scored with the point tuned on fold 1 (point 2), and vice versa: no self-tuning
    assert chosen == [grid[2], grid[0]]
    assert total == 9 + 9 + 9 + 9
    assert per_utt == [grid[2], grid[2], grid[0], grid[0]]


def test_two_fold_prefers_the_grid_order_on_ties():
    grid = [(1.0, 0.0, 0.0), (2.0, 0.0, 0.0)]
    total, chosen, _ = wer_bench.two_fold(grid, np.array([[1, 1], [1, 1]]), np.array([0, 1]))
    assert chosen == [grid[0], grid[0]] and total == 2


@pytest.mark.parametrize("penalty, expected", [(0.0, ["w1", "w2"]), (-5.0, ["w3"])])
def test_best_path_words_uses_the_given_scores(penalty, expected):
    symbols = make_symbols()
    # two paths: w1 w2 (am -1 per word) or w3 (am -3); a word penalty flips the choice
    fsa = fsa_from_arcs([(0, 1, 1, -1.0, 0.0), (1, 3, 2, -1.0, 0.0), (0, 2, 3, -3.0, 0.0), (2, 3, 0, 0.0, 0.0),
                         (3, 4, -1, 0.0, 0.0)], final=4)
    fsas = k2.create_fsa_vec([fsa, fsa])
    before = fsas.scores.clone()
    scores = fsas.am_scores + penalty * (fsas.labels > 0).float()
    assert wer_bench.best_path_words(fsas.clone(), scores, symbols) == [expected, expected]
    assert wer_bench.utterance_errors([["W1", "W2"]], [expected]).tolist() == [0 if expected == ["w1", "w2"] else 2]
    assert fsas.scores.equal(before)
