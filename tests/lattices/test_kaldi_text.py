import pytest
import torch

from lattices.fsa_build import build_batch
from lattices.kaldi_archive import word_lookup
from lattices.kaldi_text import format_kaldi_text, looks_like_kaldi_text, parse_kaldi_text
from lattices.symbols import load_symbols
from models.files import read_text

from tests.lattices.test_reader_writer import THEANO, words_on_arcs

SYMS = load_symbols(str(THEANO / "words.txt"))


def test_theanolm_archive():
    text = read_text(str(THEANO / "lattice.lat"))
    assert looks_like_kaldi_text(text)
    lats, fails = parse_kaldi_text(text, "lattice.lat", word_lookup(SYMS))
    assert not fails and len(lats) == 1
    lat = lats[0]
    assert lat.utt_id == "utterance 123" and lat.start == 0
    assert lat.finals == {21: (-4651.0, -13.83), 22: (-4651.0, -13.83)}
    assert lat.words[4] == "to" and lat.am[4] == -2434.05 and lat.lm[4] == -87.29
    batch, fails = build_batch(lats, SYMS)
    fin = batch.fsas.labels == -1
    assert int(fin.sum()) == 2
    assert batch.fsas.am_scores[fin].tolist() == [-4651.0, -4651.0]
    assert batch.fsas.lm_scores[fin].tolist() == pytest.approx([-13.83, -13.83])
    assert batch.fsas[0].shape[0] == 24  # 23 Kaldi states + the k2 final state
    assert not hasattr(batch.fsas, "start_times")


def test_several_lattices_bad_one_is_a_failure():
    text = ("u1\n0 1 2 1.5,2.5,1_2_3\n1 0.5,0.25,\n\n"
            "u2\n0 1 99 1,1,\n1 0,0,\n\n"
            "u3\n0 1 13 1,1,\n1\n\n"
            "u4\n0 1 2 1,x,\n1\n")
    lats, fails = parse_kaldi_text(text, "a.ark", word_lookup(SYMS))
    assert [l.utt_id for l in lats] == ["u1", "u3"]
    assert [f.source for f in fails] == ["a.ark:u2", "a.ark:u4"]
    assert "99" in fails[0].message and "a.ark:u2" in fails[0].message
    assert lats[1].finals == {1: (0.0, 0.0)}
    assert lats[0].am.tolist() == [-2.5] and lats[0].lm.tolist() == [-1.5]
    _, fails = parse_kaldi_text("", "empty.ark", word_lookup(SYMS))
    assert len(fails) == 1 and "empty" in fails[0].message
    _, fails = parse_kaldi_text("u5\n0 1 2 1,1,\n", "nofinal.ark", word_lookup(SYMS))
    assert "no final state" in fails[0].message


def test_an_slf_file_read_as_a_kaldi_archive_is_one_failure_that_says_so():
    lats, fails = parse_kaldi_text(read_text(str(THEANO / "lattice.slf")), "lattice.slf", word_lookup(SYMS))
    assert not lats and [f.source for f in fails] == ["lattice.slf"]
    assert "HTK SLF" in fails[0].message and "--format slf" in fails[0].message


def test_format_round_trip_exact():
    lats, _ = parse_kaldi_text(read_text(str(THEANO / "lattice.lat")), "lattice.lat", word_lookup(SYMS))
    batch, _ = build_batch(lats, SYMS)
    text = format_kaldi_text(batch.fsas[0], batch.utt_ids[0])
    assert text.startswith("utterance 123\n0 1 0 0,1432.27,\n") and text.endswith("22 13.83,4651,\n\n")
    lats2, fails = parse_kaldi_text(text, "x.ark", word_lookup(SYMS))
    batch2, _ = build_batch(lats2, SYMS)
    assert not fails
    assert torch.equal(batch2.fsas.arcs.values(), batch.fsas.arcs.values())
    assert words_on_arcs(batch2) == words_on_arcs(batch)
    assert torch.equal(batch2.fsas.lm_scores, batch.fsas.lm_scores)


def test_huge_state_ids_with_transition_ids_take_no_memory_for_their_times():
    """Word times are computed over the states the arcs use, not 0..max id (a corrupt or hostile
    id of 10^12 used to allocate arrays of that size)."""
    import resource

    text = "u1\n0 1000000000000 1 1,1,1_2_3\n1000000000000 7 2 1,1,4_5\n7 0,0,\n\n"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for parse in (parse_kaldi_text, lambda t, *a: parse_kaldi_text(t.replace("\n0 ", "\n0  "), *a)):  # fast and line parser
        (lat,), fails = parse(text, "big.ark", word_lookup(SYMS))
        assert not fails and lat.start_times.tolist() == [0.0, 0.03] and lat.end_times.tolist() == [0.03, 0.05]
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB
