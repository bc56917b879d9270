"""n-best rescoring with the full-history RNN, against hand-made cases and brute force."""
import math
import random

import k2
import pytest
import torch

from lattices.nbest import nbest
from models.config import LMConfig
from models.lm import AFPLanguageModel
from models.scoring import sentence_log_probs
from models.vocab import Vocabulary
from rescore.nbest_exact import rescore_nbest_exact
from tests.lattice_utils import enumerate_paths, fsa_from_arcs, make_symbols, random_lattice_arcs

SYMBOLS = make_symbols()  # w1..w6 -> 1..6


def unigram_lm():
    """An LM whose next-word distribution ignores the history: softmax of the output bias."""
    vocab = Vocabulary([("<eps>", 0), ("<s>", 1), ("</s>", 2), ("<unk>", 3), ("w1", 4), ("w2", 5)])
    model = AFPLanguageModel(LMConfig(vocab_size=vocab.size, embed=4, hidden=4, layers=1, mode="afp", iterations=1))
    model.set_nonpredictable(vocab.nonpredictable_ids())
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.output.bias[4] = -3.0  # w1 unlikely
        model.output.bias[5] = 3.0  # w2 likely
    log_p = torch.log_softmax(model.output.bias.double() + model.output_mask.double(), 0)
    return model.double().eval(), vocab, log_p


def two_words() -> k2.Fsa:
    # paths: "w1" (am -1, lm -1) and "w2" (am -1.5, lm -1); the lattice prefers w1
    return k2.create_fsa_vec([fsa_from_arcs([(0, 1, 1, -1.0, -1.0), (0, 1, 2, -1.5, -1.0), (1, 2, -1, 0.0, 0.0)], final=2)])


def test_the_lm_flips_the_ranking():
    model, vocab, log_p = unigram_lm()
    lp_w1 = float(log_p[4] + log_p[2])  # log P(w1 </s>)
    lp_w2 = float(log_p[5] + log_p[2])
    assert lp_w2 - lp_w1 == pytest.approx(6.0)
    (hyps,) = rescore_nbest_exact(two_words(), SYMBOLS, model, vocab, n=5, lm_scale=1.0, interpolate=1.0)
    assert [h.words for h in hyps] == [[2], [1]]
    assert [h.am for h in hyps] == [-1.5, -1.0]
    assert [h.lm for h in hyps] == pytest.approx([lp_w2, lp_w1])
    assert [h.total for h in hyps] == pytest.approx([-1.5 + lp_w2, -1.0 + lp_w1])
    # interpolation and the word penalty follow the convention
    (hyps,) = rescore_nbest_exact(two_words(), SYMBOLS, model, vocab, n=5, am_scale=2.0, lm_scale=0.5,
                                  word_penalty=-0.25, interpolate=0.25)
    lm1, lm2 = 0.75 * -1.0 + 0.25 * lp_w1, 0.75 * -1.0 + 0.25 * lp_w2
    # am favours w1 by 2 * 0.5 = 1, the LM favours w2 by only 0.5 * 0.25 * 6 = 0.75: no flip
    assert [h.words for h in hyps] == [[1], [2]]
    assert [h.lm for h in hyps] == pytest.approx([lm1, lm2])
    assert [h.total for h in hyps] == pytest.approx([2.0 * -1.0 + 0.5 * lm1 - 0.25, 2.0 * -1.5 + 0.5 * lm2 - 0.25])


def test_without_the_normaliser_the_lm_score_is_the_raw_logits_minus_the_offset():
    model, vocab, _ = unigram_lm()
    (hyps,) = rescore_nbest_exact(two_words(), SYMBOLS, model, vocab, n=5, interpolate=1.0, normalize=False,
                                  log_norm_offset=0.5)
    raw = model.output.bias.double()  # the unigram LM's logits, whatever the history
    assert [h.words for h in hyps] == [[2], [1]]
    assert [h.lm for h in hyps] == pytest.approx([float(raw[5] + raw[2]) - 1.0, float(raw[4] + raw[2]) - 1.0])


def test_interpolate_zero_keeps_the_lattice_ranking_exactly():
    model, vocab, _ = unigram_lm()
    rng = random.Random(3)
    vec = k2.create_fsa_vec([fsa_from_arcs(*random_lattice_arcs(rng)) for _ in range(8)])
    before = nbest(vec, 4, 1.0, 0.7, 0.5)
    after = rescore_nbest_exact(vec, SYMBOLS, model, vocab, n=4, lm_scale=0.7, word_penalty=0.5, interpolate=0.0)
    assert after == before
    with pytest.raises(ValueError, match="interpolate"):
        rescore_nbest_exact(vec, SYMBOLS, model, vocab, n=4, interpolate=1.5)


def history_lm():
    # w6 is unknown to the LM (-> <unk>); ids differ from the lattice's on purpose
    vocab = Vocabulary([("<eps>", 0), ("<s>", 1), ("</s>", 2), ("<unk>", 3), ("w3", 4), ("w1", 5), ("w5", 6), ("w2", 7), ("w4", 8)])
    torch.manual_seed(0)
    model = AFPLanguageModel(LMConfig(vocab_size=vocab.size, embed=8, hidden=8, layers=1, mode="afp", iterations=1))
    model.set_nonpredictable(vocab.nonpredictable_ids())
    with torch.no_grad():
        model.layers[0].weight_hh_l0.mul_(3.0)  # the exact RNN differs from the 1-word AFP model
    return model.double().eval(), vocab


def brute_force(fsa: k2.Fsa, scale, model, vocab, w):
    """``{words: (lattice total, am, lm, new total)}`` by path enumeration (Viterbi per sequence)."""
    a_s, l_s, p = scale
    labels, am, lm = fsa.labels.tolist(), fsa.am_scores.tolist(), fsa.lm_scores.tolist()
    best = {}
    for path in enumerate_paths(fsa):
        words = tuple(labels[a] for a in path if labels[a] > 0)
        a_sum, l_sum = sum(am[a] for a in path), sum(lm[a] for a in path)
        total = a_s * a_sum + l_s * l_sum + p * len(words)
        if words not in best or total > best[words][0]:
            best[words] = (total, a_sum, l_sum)
    seqs = list(best)
    lps = sentence_log_probs(model, [vocab.encode([SYMBOLS.get(x) for x in s]) for s in seqs], vocab.bos_id,
                             vocab.eos_id, mode="exact", batch_size=1).tolist()
    out = {}
    for s, lp in zip(seqs, lps):
        total, a_sum, l_sum = best[s]
        new_lm = (1 - w) * l_sum + w * lp
        out[s] = (total, a_sum, l_sum, a_s * a_sum + l_s * new_lm + p * len(s))
    return out


@pytest.mark.parametrize("n", [1, 3, 100])
def test_equals_brute_force_on_random_lattices(n):
    model, vocab = history_lm()
    rng = random.Random(n)
    vec = k2.create_fsa_vec([fsa_from_arcs(*random_lattice_arcs(rng, num_states=rng.randint(3, 6))) for _ in range(6)])
    # lm_scale 0.731: different (am, lm) splits never tie, so the Viterbi path of a sequence is unique
    scales = [(1.0, 0.731, -0.3 if i % 2 else 0.2) for i in range(6)]
    w = 0.8
    result = rescore_nbest_exact(vec, SYMBOLS, model, vocab, n=n, interpolate=w, scales=scales, batch_size=4)
    afp_differs = False
    for i, hyps in enumerate(result):
        ref = brute_force(vec[i], scales[i], model, vocab, w)
        got = [tuple(h.words) for h in hyps]
        assert len(got) == len(set(got)) == min(n, len(ref))
        # a valid top-n by lattice score (ties at the cut may go either way)
        cut = min(ref[s][0] for s in got)
        assert all(ref[s][0] <= cut + 1e-4 for s in ref if s not in got)
        for h in hyps:
            total, a_sum, l_sum, new_total = ref[tuple(h.words)]
            assert h.am == pytest.approx(a_sum, abs=1e-5)
            assert h.total == pytest.approx(new_total, abs=1e-4)
            assert h.lm == pytest.approx((new_total - a_sum - scales[i][2] * len(h.words)) / 0.731, abs=1e-3)
        assert all(a.total >= b.total for a, b in zip(hyps, hyps[1:]))
        afp = sentence_log_probs(model, [vocab.encode([SYMBOLS.get(x) for x in s]) for s in got], vocab.bos_id, vocab.eos_id)
        afp_differs |= any(not math.isclose(
            ref[s][3], scales[i][0] * ref[s][1] + 0.731 * ((1 - w) * ref[s][2] + w * float(lp)) + scales[i][2] * len(s),
            abs_tol=1e-3) for s, lp in zip(got, afp))
    assert afp_differs  # the check would notice the model's own 1-word recurrence being used
