"""The exactness property of K-history expansion + AFP-K scoring, on random lattices."""
import random

import k2
import pytest
import torch

from lattices.symbols import copy_symbols
from models.config import LMConfig
from models.lm import AFPLanguageModel
from models.scoring import sentence_log_probs
from models.vocab import Vocabulary
from rescore.arc_scores import history_tokens, right_align
from rescore.pipeline import expand_and_score
from rescore.scorers import Scorer, lm_ids_for_symbols
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


def test_history_tokens_merge_only_words_every_lm_confuses():
    _, vocab = lm_and_vocab(1)  # knows w1..w5
    small = Vocabulary([("<eps>", 0), ("<s>", 1), ("</s>", 2), ("<unk>", 3), ("w1", 4)])
    symbols = k2.SymbolTable.from_str("<eps> 0\nw1 1\nw6 2\nw7 3\nw2 4")
    one = history_tokens(symbols, [Scorer("big", vocab, 1)])
    tok = one.of_symbol
    assert tok[0] == 0 and tok[2] == tok[3] and len(set(tok[1:].tolist())) == 3  # w6, w7: both <unk>
    assert one.bos > tok.max() and one.lm_ids(torch.tensor([one.bos]), 0).item() == vocab.bos_id
    assert one.lm_ids(tok[4:], 0).item() == vocab.word2id["w2"]
    two = history_tokens(symbols, [Scorer("big", vocab, 1), Scorer("small", small, 1)])
    tok2 = two.of_symbol
    assert tok2[2] == tok2[3] and tok2[4] != tok2[2]  # w2 is <unk> for the small LM only: kept apart
    assert two.lm_ids(tok2[4:], 1).item() == small.unk_id and two.lm_ids(tok2[4:], 0).item() == vocab.word2id["w2"]
    assert two.lm_ids(tok2[1:], 0).tolist() == lm_ids_for_symbols(symbols, vocab)[1:].tolist()
    assert two.lm_ids(torch.tensor([two.bos]), 1).item() == small.bos_id and two.bos > tok2.max()


def test_history_tokens_do_not_depend_on_the_other_words_of_the_batch():
    """A word's token is a function of its LM ids only: two tables that number the same words
    differently, and hold different other words, give each word the same token (and <s> too), so
    an utterance's expansion does not depend on its batch."""
    _, vocab = lm_and_vocab(1)
    small = Vocabulary([("<eps>", 0), ("<s>", 1), ("</s>", 2), ("<unk>", 3), ("w2", 4)])
    lms = [Scorer("big", vocab, 1), Scorer("small", small, 1)]
    a = k2.SymbolTable.from_str("<eps> 0\nw2 1\nw4 2\nzz 3")
    b = k2.SymbolTable.from_str("<eps> 0\nw1 1\nw3 2\nw4 3\nw2 4\nw5 5\nzz 6")
    for chosen in (lms[:1], lms):
        ta, tb = history_tokens(a, chosen), history_tokens(b, chosen)
        assert ta.bos == tb.bos
        for w in ("w2", "w4", "zz"):
            assert ta.of_symbol[a[w]] == tb.of_symbol[b[w]], w


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
    done = expand_and_score(vec, symbols, [Scorer("test", vocab, k, model=model)], k, max_arcs=None, max_batch=16)
    exp, scores, distinct = done.expansion, done.scores[0], done.distinct
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


def test_symbol_ids_looks_up_only_new_words_and_equals_the_plain_lookup():
    """A job's tables: the same one again, a copy with words added (as the reader hands them out),
    and an unrelated table that gives a seen id another word (which starts afresh)."""
    _, vocab = lm_and_vocab(1)
    scorer = Scorer("test", vocab, 1)
    first = k2.SymbolTable.from_str("<eps> 0\nW1 1\nw3 2\nW9 3")
    grown = copy_symbols(first)
    for w in ("w5", "zz", "W2"):
        grown.add(w)
    other = k2.SymbolTable.from_str("<eps> 0\nw4 1\nw1 7")
    looked_up = set()
    known = dict(vocab.word2id)
    vocab.word2id = type("Spy", (dict,), {"get": lambda self, w: looked_up.add(w.lower()) or known.get(w)})(known)
    for table, new_words in ((first, {"w1", "w3", "w9"}), (first, set()), (grown, {"w5", "zz", "w2"}),
                             (other, {"w4", "w1"})):
        looked_up.clear()
        ids = scorer.symbol_ids(table).tolist()
        assert looked_up == new_words
        assert ids == lm_ids_for_symbols(table, vocab).tolist()
