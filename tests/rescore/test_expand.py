"""Exact K-history expansion against brute-force path enumeration."""
import itertools
import random

import k2
import pytest
import torch

from rescore.expand import PAD, expand_histories
from tests.lattice_utils import enumerate_paths, fsa_from_arcs, random_lattice_arcs

BOS = 100


def random_batch(seed: int, n: int = 30) -> k2.Fsa:
    rng = random.Random(seed)
    return k2.create_fsa_vec([fsa_from_arcs(*random_lattice_arcs(rng)) for _ in range(n)])


def path_summaries(fsa: k2.Fsa):
    labels, am, lm = fsa.labels.tolist(), fsa.am_scores.tolist(), fsa.lm_scores.tolist()
    return sorted((tuple(labels[a] for a in p if labels[a] > 0), sum(am[a] for a in p), sum(lm[a] for a in p))
                  for p in enumerate_paths(fsa))


@pytest.mark.parametrize("order", [1, 2, 3])
def test_every_arc_has_the_unique_k_token_history_of_all_its_paths(order):
    vec = random_batch(order)
    arcs_before, am_before = vec.arcs.values().clone(), vec.am_scores.clone()
    exp = expand_histories(vec, order, bos=BOS)
    assert torch.equal(vec.arcs.values(), arcs_before) and torch.equal(vec.am_scores, am_before)  # input untouched
    assert exp.kept == list(range(vec.shape[0])) and not exp.too_large
    splits = exp.fsas.arcs.row_splits(2)[exp.fsas.arcs.row_splits(1).long()].tolist()
    for i, utt in enumerate(exp.kept):
        fsa = exp.fsas[i]
        labels = fsa.labels.tolist()
        for path in enumerate_paths(fsa):
            seen = [BOS]
            for a in path:
                assert exp.histories[splits[i] + a].tolist() == ([PAD] * order + seen)[-order:]
                if labels[a] > 0:
                    seen.append(labels[a])
        # the same paths (word sequences and scores), one to one
        assert path_summaries(fsa) == path_summaries(vec[utt])
        assert torch.equal(fsa.labels, vec.labels[exp.arc_map[splits[i]:splits[i + 1]]])


def test_larger_order_never_merges_and_order_one_only_splits_by_last_word():
    vec = random_batch(7)
    sizes = [expand_histories(vec, k, bos=BOS).fsas.num_arcs for k in (1, 2, 3, 4)]
    assert sizes == sorted(sizes) and sizes[0] >= vec.num_arcs


def test_history_labels_merge_words_the_lm_cannot_tell_apart():
    fsa = k2.Fsa.from_str("0 1 3 0\n0 1 4 0\n1 2 5 0\n2 3 -1 0\n3", acceptor=True)
    vec = k2.create_fsa_vec([fsa])
    assert expand_histories(vec, 2, BOS).fsas.num_arcs == 6  # 3 and 4 give two histories for arc 5
    same = torch.tensor([3, 3, 5, -1])  # both map to one LM id (e.g. <unk>)
    merged = expand_histories(vec, 2, BOS, history_labels=same)
    assert merged.fsas.num_arcs == 4
    assert sorted(merged.fsas.labels.tolist()) == [-1, 3, 4, 5]  # output keeps the lattice's words


def test_max_arcs_abandons_only_the_utterances_that_explode():
    small = k2.Fsa.from_str("0 1 3 0\n1 2 -1 0\n2", acceptor=True)
    # a "sausage" of 6 slots x 3 words: 3^k histories per slot at order k
    lines = [f"{s} {s + 1} {w} 0" for s in range(6) for w in (3, 4, 5)] + ["6 7 -1 0", "7"]
    sausage = k2.Fsa.from_str("\n".join(lines), acceptor=True)
    vec = k2.create_fsa_vec([small, sausage, small])
    exp = expand_histories(vec, 3, BOS, max_arcs=50)
    assert exp.kept == [0, 2] and set(exp.too_large) == {1} and exp.too_large[1] > 50
    assert exp.fsas.shape[0] == 2 and exp.fsas.num_arcs == 4
    full = expand_histories(vec, 3, BOS)
    assert full.kept == [0, 1, 2] and full.fsas[1].num_arcs > 50


def test_bad_order():
    with pytest.raises(ValueError, match="order must be >= 1"):
        expand_histories(random_batch(1, 2), 0, BOS)


@pytest.mark.parametrize("order", [1, 3])
def test_a_lattice_expands_the_same_whatever_else_is_in_its_batch(order):
    """State and arc numbering (which decides between paths of exactly equal score) depend on the
    lattice alone: alone, in a batch, or in the same batch reversed, it expands to the same arrays."""
    lattices = [random_batch(20 + order, n=12)[i] for i in range(12)]

    def parts(fsas):
        exp = expand_histories(k2.create_fsa_vec(fsas), order, bos=BOS)
        first_in = [0] + list(itertools.accumulate(f.num_arcs for f in fsas))
        splits = exp.fsas.arcs.row_splits(2)[exp.fsas.arcs.row_splits(1).long()].tolist()
        return [(exp.fsas[i].arcs.values().tolist(), exp.histories[splits[i]:splits[i + 1]].tolist(),
                 (exp.arc_map[splits[i]:splits[i + 1]] - first_in[i]).tolist()) for i in range(len(fsas))]

    alone = [parts([f])[0] for f in lattices]
    assert parts(lattices) == alone
    assert parts(lattices[::-1]) == alone[::-1]
