"""WER counts and icefall-style reports on hand-checked examples."""
import kaldialign
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rescore.wer import WerResult, normalize_case, paired_bootstrap, wer_details, write_errs_file, write_wer_summary

REFS = {
    "u1": "THE CAT SAT ON THE MAT".split(),  # 1 deletion
    "u2": "A B C D".split(),  # 2 substitutions, 1 insertion
    "u3": "HELLO WORLD".split(),  # no hypothesis: 2 deletions
}
HYPS = {
    "u1": "the cat sat on the".split(),
    "u2": "a x y d e".split(),
    "u9": "foo".split(),  # no reference: ignored
}


def test_counts_are_exact_and_case_insensitive():
    r = wer_details(REFS, HYPS)
    assert r == WerResult(errors=6, ins=1, dels=3, subs=2, ref_words=12, utts=3, wer=0.5, missing=1, extra=1)
    # the same as kaldialign's edit distance per utterance
    total = sum(kaldialign.edit_distance(normalize_case(REFS[u]), normalize_case(HYPS.get(u, [])))["total"] for u in REFS)
    assert total == r.errors
    assert normalize_case(["ÄB", "c"]) == ["äb", "c"]
    assert wer_details({"a": ["X"]}, {"a": ["x"]}).errors == 0  # case only: no error


def test_edge_cases():
    assert wer_details({}, {}) == WerResult(0, 0, 0, 0, 0, 0, 0.0)
    r = wer_details({"a": []}, {"a": ["uh"]})
    assert r.ins == 1 and r.wer == float("inf")
    assert wer_details({"a": ["x", "y"]}, {}).dels == 2
    with pytest.raises(ValueError, match="utterance a"):
        wer_details({"a": ["*"]}, {"a": ["x"]})


def test_errs_file(tmp_path):
    path = tmp_path / "errs-test-other-lm_scale_0.5.txt"
    result = write_errs_file(str(path), REFS, HYPS, title="test-other lm_scale_0.5")
    assert result == wer_details(REFS, HYPS)
    assert path.read_text().splitlines() == [
        "%WER 50.00 [ 6 / 12, 1 ins, 3 del, 2 sub ]",
        "test-other lm_scale_0.5",
        "utterances: 3, without hypothesis (all deleted): 1, hypotheses without reference (ignored): 1",
        "",
        "PER-UTT DETAILS: corr or (ref->hyp)",
        "u1:\tthe cat sat on the (mat->*)",
        "u2:\ta (b c->x y) d (*->e)",
        "u3:\t(hello world->*)",
        "",
        "SUBSTITUTIONS: count ref -> hyp",
        "1   b -> x",
        "1   c -> y",
        "",
        "DELETIONS: count ref",
        "1   hello",
        "1   mat",
        "1   world",
        "",
        "INSERTIONS: count hyp",
        "1   e",
    ]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_frequent_errors_come_first(tmp_path):
    refs = {"a": "x y x y".split(), "b": "x z".split()}
    hyps = {"a": "q y q y".split(), "b": "w z".split()}
    write_errs_file(str(tmp_path / "errs"), refs, hyps)
    lines = (tmp_path / "errs").read_text().splitlines()
    subs = lines[lines.index("SUBSTITUTIONS: count ref -> hyp") + 1:][:2]
    assert subs == ["2   x -> q", "1   x -> w"]


def test_summary_best_first(tmp_path):
    def res(wer):
        return WerResult(0, 0, 0, 0, 100, 1, wer)

    path = tmp_path / "wer-summary.txt"
    write_wer_summary(str(path), [("lm_scale_0.3", res(0.125)), ("lm_scale_0.5", res(0.1)),
                                  ("lm_scale_0.7", res(0.125)), ("lm_scale_0.9", res(0.11111))])
    assert path.read_text() == "settings\tWER\nlm_scale_0.5\t10.00\nlm_scale_0.9\t11.11\nlm_scale_0.3\t12.50\nlm_scale_0.7\t12.50\n"
    with pytest.raises(ValueError, match="setting name"):
        write_wer_summary(str(path), [("a\tb", res(0.01))])


def _exact_p_better(a, b, r):
    """Brute force: every one of the n^n equally likely resampled sets."""
    from itertools import product as draws

    n, better = len(r), 0
    for pick in draws(range(n), repeat=n):
        better += sum(b[i] - a[i] for i in pick) < 0 and sum(r[i] for i in pick) > 0
    return better / n ** n


def test_paired_bootstrap_of_a_system_against_itself_finds_no_difference():
    errs, words = [3, 0, 5, 2], [10, 4, 12, 7]
    out = paired_bootstrap(errs, errs, words, samples=500)
    assert (out.delta, out.low, out.high, out.p_better) == (0.0, 0.0, 0.0, 0.0)


def test_paired_bootstrap_of_a_system_better_on_every_utterance_is_sure():
    out = paired_bootstrap([3, 2, 5, 4], [1, 1, 2, 3], [10, 4, 12, 7], samples=500)
    assert out.p_better == 1.0 and out.high < 0 and out.delta == pytest.approx(-7 / 33)


def test_paired_bootstrap_matches_the_exact_resampling_distribution():
    a, b, r = [2, 0, 4, 1], [1, 2, 3, 1], [5, 3, 9, 2]
    exact = _exact_p_better(a, b, r)
    out = paired_bootstrap(a, b, r, samples=40000, seed=1)
    assert 0.05 < exact < 0.95 and out.p_better == pytest.approx(exact, abs=0.01)
    assert out.low < out.delta < out.high


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(1, 9)), min_size=1, max_size=12),
       st.integers(1, 50))
@settings(max_examples=30, deadline=None)
def test_paired_bootstrap_does_not_depend_on_the_block_size(utts, block):
    a, b, r = zip(*utts)
    assert paired_bootstrap(a, b, r, samples=97, block=block) == paired_bootstrap(a, b, r, samples=97)


@pytest.mark.parametrize("args", [([1, 2], [1], [3, 3]), ([], [], []), ([1], [1], [0]), ([-1], [0], [2])])
def test_paired_bootstrap_refuses_bad_input(args):
    with pytest.raises(ValueError, match="paired bootstrap"):
        paired_bootstrap(*args)
