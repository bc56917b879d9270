"""The exactness property of K-history expansion + AFP-K scoring, on random lattices."""
import random

import k2
import pytest
import torch

from models.config import LMConfig
from models.lm import AFPLanguageModel
from models.scoring import sentence_log_probs
from models.vocab import Vocabulary
from rescore.arc_scores import arc_lm_scores, lm_ids_for_symbols, right_align, token_table
from rescore.scorers import Scorer
from rescore.expand import expand_histories
from tests.lattice_utils import NUM_WORDS, enumerate_paths, fsa_from_arcs, make_symbols, random_lattice_arcs


def lm_and_vocab(k: int, mode: str = "afp"):
    # LM ids differ from lattice ids on purpose: w1..w5 known (shuffled ids), w6 unknown -> <unk>
    vocab = Vocabulary([("<eps>", 0), ("<s>", 1), ("</s>", 2), ("<unk>", 3), ("w3", 4), ("w1", 5), ("w5", 6), ("w2", 7), ("w4", 8)])
    torch.manual_seed(k)
    model = AFPLanguageModel(LMConfig(vocab_size=vocab.size, embed=8, hidden=8, layers=2, cell="lstm", mode=mode, iterations=k))
    model.set_nonpredictable(vocab.nonpredictable_ids())
    with torch.no_grad():
        for layer in model.layers:
            layer.weight_hh_l0.mul_(3.0)  # strongly history-dependent
    return model.double().eval(), vocab


def test_lattice_words_map_to_lm_ids_case_insensitively():
    _, vocab = lm_and_vocab(1)
    symbols = k2.SymbolTable.from_str("<eps> 0\nW1 1\nw3 2\nW9 3")
    assert lm_ids_for_symbols(symbols, vocab).tolist() == [0, vocab.word2id["w1"], vocab.word2id["w3"], vocab.unk_id]


def test_right_align():
    rows = torch.tensor([[-1, -1, 5], [-1, 4, 5], [3, 4, 5]])
    aligned, lengths = right_align(rows)
    assert aligned.tolist() == [[5, 0, 0], [4, 5, 0], [3, 4, 5]] and lengths.tolist() == [1, 2, 3]


@pytest.mark.parametrize("k", [1, 2, 3])
def test_sum_of_expanded_arc_scores_is_the_sentence_log_probability(k):
    """For every path: sum of arc LM scores == the model's own log P(<s> words </s>) computed by
    the exact recurrence over the last-K window (sentence_log_probs in afp mode)."""
    model, vocab = lm_and_vocab(k)
    symbols = make_symbols(NUM_WORDS)
    rng = random.Random(10 + k)
    vec = k2.create_fsa_vec([fsa_from_arcs(*random_lattice_arcs(rng)) for _ in range(25)])
    lm_ids = lm_ids_for_symbols(symbols, vocab)
    exp = expand_histories(vec, k, bos=max(symbols.ids) + 1)  # histories in lattice-symbol token space
    scores, distinct = arc_lm_scores(exp, Scorer("test", vocab, k, model=model), token_table(symbols, vocab), max_batch=16)
    assert 0 < distinct <= exp.fsas.num_arcs
    splits = exp.fsas.arcs.row_splits(2)[exp.fsas.arcs.row_splits(1).long()].tolist()
    sentences, sums = [], []
    for i in range(exp.fsas.shape[0]):
        fsa = exp.fsas[i]
        labels = fsa.labels.tolist()
        for path in enumerate_paths(fsa):
            sentences.append([int(lm_ids[labels[a]]) for a in path if labels[a] > 0])
            sums.append(sum(float(scores[splits[i] + a]) for a in path))
    expected = sentence_log_probs(model, sentences, vocab.bos_id, vocab.eos_id)
    torch.testing.assert_close(torch.tensor(sums, dtype=torch.float64), expected, rtol=1e-5, atol=1e-4)
    assert len(set(round(s, 3) for s in sums)) > 10  # scores really differ between paths
