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
