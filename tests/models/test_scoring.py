"""The scoring API that lattice rescoring builds on."""
import pytest
import torch

from models.config import LMConfig
from models.lm import AFPLanguageModel
from models.scoring import log_normalizers, log_softmax_pairs, pad_sequences, score_pairs, sentence_log_probs

BOS, EOS, V = 1, 2, 17


def model_for(mode: str, k: int, device: str) -> AFPLanguageModel:
    torch.manual_seed(3)
    m = AFPLanguageModel(LMConfig(vocab_size=V, embed=8, hidden=10, layers=2, cell="lstm", mode=mode, iterations=k))
    m.set_nonpredictable([0, BOS])
    return m.double().to(device).eval()


def random_sentences(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, V, (int(torch.randint(1, 9, (1,), generator=g)),), generator=g).tolist() for _ in range(n)]


@pytest.mark.parametrize("mode, k", [("afp", 1), ("afp", 3), ("exact", 3)])
def test_sentence_score_is_sum_of_pair_scores_over_k_word_histories(mode, k, device):
    """What K-history lattice expansion relies on: an AFP-K sentence score decomposes into
    log P(w_t | last K tokens of <s> w_1..w_{t-1}); an exact model needs the full history."""
    model = model_for(mode, k, device)
    sentences = random_sentences(12)
    hists, words, owner = [], [], []
    for i, s in enumerate(sentences):
        tokens = [BOS] + s
        for t, w in enumerate(s + [EOS]):
            h = tokens[: t + 1]
            hists.append(h[-k:] if mode == "afp" else h)
            words.append(w)
            owner.append(i)
    histories, lengths = pad_sequences(hists, pad=0)
    pair = score_pairs(model, histories, lengths, torch.tensor(words), max_batch=7)
    summed = torch.zeros(len(sentences), dtype=torch.float64).index_add_(0, torch.tensor(owner), pair.double().cpu())
    expected = sentence_log_probs(model, sentences, BOS, EOS, batch_size=5)
    torch.testing.assert_close(summed, expected, rtol=1e-9, atol=1e-9)
    assert (expected < 0).all()


def test_pairs_are_deduplicated_and_padding_is_irrelevant(device):
    model = model_for("afp", 2, device)
    histories = torch.tensor([[BOS, 5, 9], [BOS, 5, 0], [BOS, 5, 7], [BOS, 5, 4]])
    lengths = torch.tensor([2, 2, 3, 2])
    words = torch.tensor([6, 6, 6, 8])
    out = score_pairs(model, histories, lengths, words)
    assert out[0] == out[1]  # same history [<s>, 5], different padding
    assert out[2] != out[0]
    full = model(torch.tensor([[BOS, 5]], device=device))[0, -1]
    torch.testing.assert_close(out[3], full[8])


def test_nonpredictable_word_gets_minus_infinity(device):
    model = model_for("afp", 2, device)
    out = score_pairs(model, torch.tensor([[BOS]]), torch.tensor([1]), torch.tensor([BOS]))
    assert out.item() == float("-inf")


def test_bad_shapes_and_empty_history_are_errors():
    model = model_for("afp", 2, "cpu")
    with pytest.raises(ValueError, match="shape mismatch"):
        score_pairs(model, torch.zeros(2, 3, dtype=torch.long), torch.ones(3, dtype=torch.long), torch.ones(2, dtype=torch.long))
    with pytest.raises(ValueError, match="at least one token"):
        score_pairs(model, torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, dtype=torch.long), torch.ones(1, dtype=torch.long))


@pytest.mark.parametrize("block_rows", [None, 1, 3, 64, 1000])
def test_blocked_normaliser_equals_the_softmax(block_rows, device):
    model = model_for("afp", 2, device)
    states = torch.randn(50, 10, dtype=torch.float64, device=device)
    bias = model.output.bias + model.output_mask
    got = log_normalizers(states, model.output.weight, bias, block_rows)
    torch.testing.assert_close(got, torch.logsumexp(model.logits(states), dim=-1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("block_rows", [None, 1, 3, 64, 1000])
def test_pairs_read_off_the_normaliser_blocks_equal_the_log_softmax(block_rows, device):
    model = model_for("afp", 2, device)
    states = torch.randn(50, 10, dtype=torch.float64, device=device)
    g = torch.Generator().manual_seed(5)
    rows = torch.sort(torch.randint(0, 40, (300,), generator=g)).values.to(device)  # rows 40..49: no pair
    words = torch.randint(0, model.config.vocab_size, (300,), generator=g).to(device)
    got = log_softmax_pairs(states, model.output.weight, model.output.bias + model.output_mask, rows, words, block_rows)
    expected = model.logits(states).log_softmax(-1)[rows, words]
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    empty = torch.zeros(0, dtype=torch.long, device=device)
    assert log_softmax_pairs(states, model.output.weight, model.output.bias, empty, empty, block_rows).numel() == 0


@pytest.mark.parametrize("mode, k", [("afp", 2), ("exact", 3)])
def test_sentence_log_probs_equal_the_models_log_softmax(mode, k, device):
    """Brute force: each sentence scored alone by the model's own forward pass (log_softmax)."""
    model = model_for(mode, k, device)
    sentences = random_sentences(9, seed=4)
    got = sentence_log_probs(model, sentences, BOS, EOS, batch_size=4)
    for i, s in enumerate(sentences):
        log_probs = model(torch.tensor([[BOS] + s], device=device))[0]
        expected = log_probs[torch.arange(len(s) + 1), torch.tensor(s + [EOS], device=device)].sum()
        assert abs(float(got[i]) - float(expected)) < 1e-9
