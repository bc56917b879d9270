import pytest

from models.vocab import Vocabulary


def test_from_sentences_orders_specials_then_frequency():
    v = Vocabulary.from_sentences([["b", "a", "b"], ["c", "b", "a"]], max_size=6)
    assert v.pairs() == [("<eps>", 0), ("<s>", 1), ("</s>", 2), ("<unk>", 3), ("b", 4), ("a", 5)]
    assert v.encode(["a", "c", "zzz"]) == [5, 3, 3]
    assert v.decode([4, 5]) == ["b", "a"]


def test_words_txt_round_trip_keeps_kaldi_ids_and_masks_disambig(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("<eps> 0\n!SIL 1\n<UNK> 2\nhello 3\nworld 5\n#0 6\n<s> 7\n</s> 8\n")
    v = Vocabulary.from_file(str(path), unk="<UNK>")
    assert v.unk_id == 2 and v.bos_id == 7 and v.eos_id == 8 and v.size == 9
    assert v.encode(["hello", "nope"]) == [3, 2]
    assert v.nonpredictable_ids() == [0, 4, 6, 7]  # <eps>, the hole at 4, #0, <s>
    v.to_file(str(tmp_path / "out.txt"))
    assert Vocabulary.from_file(str(tmp_path / "out.txt"), unk="<UNK>") == v


def test_missing_specials_are_appended(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("<eps> 0\na 1\n")
    v = Vocabulary.from_file(str(path))
    assert (v.bos_id, v.eos_id, v.unk_id) == (2, 3, 4)


@pytest.mark.parametrize("text, message", [
    ("", "empty vocabulary"),
    ("a 1\nb\n", "expected 'word id'"),
    ("a 1\na 2\n", "appears twice"),
    ("a 1\nb 1\n", "id 1 used by"),
])
def test_bad_words_txt_names_the_file(tmp_path, text, message):
    path = tmp_path / "words.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        Vocabulary.from_file(str(path))
    assert "words.txt" in str(err.value) or message in ("appears twice", "id 1 used by")
