"""WER counts and icefall-style reports on hand-checked examples."""
import kaldialign
import pytest

from rescore.wer import WerResult, normalize_case, wer_details, write_errs_file, write_wer_summary

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
