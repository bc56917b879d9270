import pytest
import torch

from lattices.normalize import NormalizationRules, normalize_word, normalize_words
from lattices.reader import read_lattices

from tests.lattices.test_reader_writer import DATA, words_on_arcs


def test_default_rules_map_markers_fillers_and_variants():
    r = NormalizationRules()
    for w in ["<s>", "</s>", "!SENT_START", "!SENT_END", "!NULL", "<eps>", "<sil>", "[NOISE]",
              "[laughter]", "++GARBAGE++", "!ENTER", "!EXIT"]:
        assert normalize_word(w, r) is None, w
    assert normalize_word("the(2)", r) == "the"
    assert normalize_word("<unk>", r) == "<unk>"
    assert normalize_word("didn't", r) == "didn't"
    assert normalize_word("Hello", r) == "Hello"


def test_case_and_raw():
    assert normalize_word("the(3)", NormalizationRules.for_references()) == "THE"
    assert normalize_word("<unk>", NormalizationRules.for_references()) == "<unk>"
    assert normalize_word("ABC", NormalizationRules(case="lower")) == "abc"
    raw = NormalizationRules.raw_words()
    assert normalize_word("<s>", raw) == "<s>"
    assert normalize_word("the(2)", raw) == "the(2)"
    assert normalize_word("!NULL", raw) is None
    with pytest.raises(ValueError, match="case"):
        NormalizationRules(case="title")


def test_custom_rules_and_sequences():
    r = NormalizationRules(epsilon_words=frozenset({"uh"}), filler_patterns=(), strip_variants=False)
    assert normalize_words(["uh", "a(2)", "[NOISE]", "!NULL"], r) == ["a(2)", "[NOISE]"]
    assert normalize_words("<s> the(2) CAT </s>".split(), NormalizationRules(case="upper")) == ["THE", "CAT"]


def test_pocketsphinx_lattice_normalised_for_references():
    batch, fails = read_lattices([str(DATA / "pocketsphinx")], rules=NormalizationRules.for_references())
    assert not fails and len(batch) == 2
    words = set(batch.symbols.symbols) - {"<eps>"}
    assert words and all(w == w.upper() and "(" not in w and not w.startswith(("<", "[", "!")) for w in words)
    raw, _ = read_lattices([str(DATA / "pocketsphinx")], rules=NormalizationRules.raw_words())
    raw_words = set(raw.symbols.symbols)
    # pocketsphinx writes fillers and variants as !NULL / base words; its markers stay in raw mode
    assert {"!SENT_START", "!SENT_END"} <= raw_words and "didn't" in raw_words
    # same topology either way, only labels differ: raw markers became epsilon, words upper case
    assert torch.equal(raw.fsas.arcs.values()[:, :2], batch.fsas.arcs.values()[:, :2])
    pairs = set(zip(words_on_arcs(raw), words_on_arcs(batch)))
    assert ("!SENT_END", "<eps>") in pairs and ("didn't", "DIDN'T") in pairs
    assert all(r.upper() == n or n == "<eps>" for r, n in pairs if r != "-1")


def test_epsilon_penalty_classes():
    from lattices.normalize import epsilon_penalty

    r = NormalizationRules(silence_penalty=-1.0, filler_penalty=-2.0, null_penalty=-3.0)
    assert [epsilon_penalty(w, r) for w in ("<sil>", "SIL", "sp", "<sil>(2)")] == [-1.0] * 4
    assert [epsilon_penalty(w, r) for w in ("[NOISE]", "++GARBAGE++", "<noise>", "[laughter]")] == [-2.0] * 4
    assert epsilon_penalty("!NULL", r) == -3.0
    for w in ("<s>", "</s>", "!SENT_START", "!SENT_END", "<eps>", None, "the", "<unk>"):
        assert epsilon_penalty(w, r) == 0.0, w
    assert epsilon_penalty("<sil>", NormalizationRules.raw_words()) == 0.0  # raw keeps the word: no penalty


def test_penalties_shift_only_the_acoustic_scores_of_their_arcs(tmp_path):
    slf = tmp_path / "u.slf"
    slf.write_text("VERSION=1.0\nUTTERANCE=u\nN=6 L=6\n" + "".join(f"I={i}\n" for i in range(6)) +
                   "J=0 S=0 E=1 W=<sil> a=-1.0 l=-0.5\nJ=1 S=1 E=2 W=the a=-2.0 l=-0.25\nJ=2 S=2 E=3 W=[NOISE] a=-3.0 l=0\n"
                   "J=3 S=3 E=4 W=!NULL a=-4.0 l=0\nJ=4 S=4 E=5 W=cat a=-5.0 l=-1\nJ=5 S=2 E=5 W=cat a=-6.0 l=-1\n")
    plain, _ = read_lattices([str(slf)])
    rules = NormalizationRules(silence_penalty=-10.0, filler_penalty=-20.0, null_penalty=-30.0)
    shifted, _ = read_lattices([str(slf)], rules=rules)
    assert torch.equal(plain.fsas.labels, shifted.fsas.labels) and torch.equal(plain.fsas.lm_scores, shifted.fsas.lm_scores)
    am0 = {round(float(a), 3): i for i, a in enumerate(plain.fsas.am_scores)}
    delta = {a: float(shifted.fsas.am_scores[i]) - a for a, i in am0.items()}
    assert delta == {-1.0: -10.0, -2.0: 0.0, -3.0: -20.0, -4.0: -30.0, -5.0: 0.0, -6.0: 0.0, 0.0: 0.0}
