"""The lean LM pass: prefix-tree states, chunked gather, out-of-memory fallback, no-normalize."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import models.scoring as scoring
from models.chunks import run_in_chunks
from models.config import LMConfig
from models.lm import AFPLanguageModel
from models.prefix_tree import build_prefix_tree, prefix_tree_states, word_input_table
from models.scoring import history_states, pad_sequences, score_unique_histories

V, BOS = 13, 1


def make_model(cell: str, layers: int, k: int, mode: str = "afp") -> AFPLanguageModel:
    torch.manual_seed(5)
    m = AFPLanguageModel(LMConfig(vocab_size=V, embed=6, hidden=7, layers=layers, cell=cell, mode=mode, iterations=k))
    m.set_nonpredictable([0, BOS])
    return m.double().eval()


histories_strategy = st.lists(st.lists(st.integers(2, V - 1), min_size=0, max_size=6), min_size=1, max_size=25)


def as_tensors(hists):
    return pad_sequences([[BOS] + h for h in hists], pad=0)


@settings(max_examples=30, deadline=None)
@given(hists=histories_strategy, cell=st.sampled_from(["lstm", "gru", "elman"]), layers=st.integers(1, 2), k=st.integers(1, 8),
       block=st.integers(1, 3))
def test_prefix_tree_states_equal_afp_k_states(hists, cell, layers, k, block):
    model = make_model(cell, layers, k)
    histories, lengths = as_tensors(hists)
    tree = build_prefix_tree(histories, lengths, context=k)
    tree_states = torch.empty(len(hists), model.config.hidden, dtype=torch.float64)
    tree_states[tree.order] = prefix_tree_states(model, tree)
    jacobi = history_states(model, histories, lengths, "afp", k)
    assert torch.allclose(tree_states, jacobi, atol=1e-10)
    # the first layer's input looked up in the word table instead of projected at each step
    tree_states[tree.order] = prefix_tree_states(model, tree, word_input_table(model))
    assert torch.allclose(tree_states, jacobi, atol=1e-10)
    # each depth's nodes stepped in blocks of a few
    tree_states[tree.order] = prefix_tree_states(model, tree, block_rows=block)
    assert torch.allclose(tree_states, jacobi, atol=1e-10)
    # one cell step per distinct prefix of the last-K-token windows
    windows = {tuple(([BOS] + h)[-k:][:d]) for h in hists for d in range(1, min(k, len(h) + 1) + 1)}
    assert tree.num_nodes == len(windows)


@settings(max_examples=15, deadline=None)
@given(hists=histories_strategy)
def test_prefix_tree_with_full_context_is_the_exact_rnn(hists):
    model = make_model("lstm", 2, 2, mode="exact")
    histories, lengths = as_tensors(hists)
    tree = build_prefix_tree(histories, lengths, context=None)
    states = torch.empty(len(hists), model.config.hidden, dtype=torch.float64)
    states[tree.order] = prefix_tree_states(model, tree)
    assert torch.allclose(states, history_states(model, histories, lengths, "exact"), atol=1e-10)


def random_pairs(seed: int, n_hist: int = 40, n_pairs: int = 300):
    g = torch.Generator().manual_seed(seed)
    hists = [torch.randint(2, V, (int(torch.randint(0, 5, (1,), generator=g)),), generator=g).tolist() for _ in range(n_hist)]
    histories, lengths = as_tensors(hists)
    inverse = torch.randint(0, n_hist, (n_pairs,), generator=g)
    words = torch.randint(2, V, (n_pairs,), generator=g)
    return histories, lengths, inverse, words


@pytest.mark.parametrize("cell, layers, k", [("lstm", 1, 2), ("gru", 2, 3), ("elman", 1, 4)])
def test_tree_scores_equal_jacobi_scores_for_any_chunking(cell, layers, k):
    model = make_model(cell, layers, k)
    args = random_pairs(k)
    reference = score_unique_histories(model, *args, states="jacobi", max_batch=1000)
    chunkings = [(1000, 1 << 16, None, None), (7, 5, 2, None), (1, 1, 1, None), (3, 1000, 64, word_input_table(model))]
    for max_batch, gather_batch, norm_rows, table in chunkings:
        out = score_unique_histories(model, *args, max_batch=max_batch, norm_rows=norm_rows, input_table=table)
        assert torch.allclose(out, reference, atol=1e-10), (max_batch, norm_rows)
    # without the normaliser: the (state, output row) dot products, in gather chunks of any size
    raw = score_unique_histories(model, *args, states="jacobi", max_batch=1000, normalize=False)
    for max_batch, gather_batch, norm_rows, table in chunkings:
        out = score_unique_histories(model, *args, max_batch=max_batch, gather_batch=gather_batch, input_table=table, normalize=False)
        assert torch.allclose(out, raw, atol=1e-10), (max_batch, gather_batch)
    # and they are log-probabilities: the normaliser is the full softmax
    full = torch.log_softmax(model.logits(history_states(model, args[0], args[1])), -1)
    assert torch.allclose(reference, full[args[2], args[3]], atol=1e-10)


def test_word_input_table_is_each_words_projection_and_has_a_size_limit():
    model = make_model("gru", 2, 3)
    table = word_input_table(model)
    ids = torch.arange(V)
    assert table.shape == (V, 3 * 7)
    assert torch.allclose(table[ids], torch.nn.functional.linear(model.embedding(ids), model.layers[0].weight_ih_l0,
                                                               model.layers[0].bias_ih_l0), atol=1e-12)
    assert word_input_table(model, max_bytes=V * 3 * 7 * 8) is not None
    assert word_input_table(model, max_bytes=V * 3 * 7 * 8 - 1) is None


def test_no_normalize_is_the_logit_minus_the_model_offset():
    model = make_model("lstm", 1, 3)
    histories, lengths, inverse, words = random_pairs(1)
    logits = model.logits(history_states(model, histories, lengths))
    out = score_unique_histories(model, histories, lengths, inverse, words, normalize=False, log_norm_offset=0.25)
    assert torch.allclose(out, logits[inverse, words] - 0.25, atol=1e-10)


class FakeOOM(RuntimeError):
    def __init__(self):
        super().__init__("CUDA out of memory (simulated)")


def test_run_in_chunks_shrinks_only_the_failing_chunk_and_never_redoes_finished_ones():
    calls, done = [], []

    def step(lo, hi):
        calls.append((lo, hi))
        if hi - lo > 3 and lo >= 8:  # memory gets tight after the first chunks
            raise FakeOOM()
        done.append((lo, hi))

    final = run_in_chunks(30, 8, step)
    covered = [i for lo, hi in done for i in range(lo, hi)]
    assert covered == list(range(30))  # every item exactly once, in order
    assert done[0] == (0, 8) and final == 2
    assert sum(1 for c in calls if c[0] == 0) == 1  # the first chunk ran once


def test_run_in_chunks_reraises_other_errors_and_single_item_oom():
    with pytest.raises(ValueError):
        run_in_chunks(5, 2, lambda lo, hi: (_ for _ in ()).throw(ValueError("boom")))
    with pytest.raises(FakeOOM):
        run_in_chunks(5, 2, lambda lo, hi: (_ for _ in ()).throw(FakeOOM()))


def test_scores_survive_simulated_out_of_memory(monkeypatch):
    model = make_model("lstm", 2, 3)
    args = random_pairs(9)
    reference = score_unique_histories(model, *args)
    real = scoring.prefix_tree_states

    def tight(model, tree, *rest):
        if tree.order.numel() > 6:
            raise FakeOOM()
        return real(model, tree, *rest)

    monkeypatch.setattr(scoring, "prefix_tree_states", tight)
    out = score_unique_histories(model, *args, max_batch=32, gather_batch=4)
    assert torch.allclose(out, reference, atol=1e-12)
