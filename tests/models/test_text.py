import gzip

import pytest
import torch

from models.text import Batch, make_batches, read_corpus, read_sentences


def test_read_plain_gz_and_split_long_lines(tmp_path):
    p = tmp_path / "a.txt.gz"
    with gzip.open(p, "wt") as f:
        f.write("a b c d e\n\n f g \n")
    assert read_sentences(str(p), max_len=2) == [["a", "b"], ["c", "d"], ["e"], ["f", "g"]]
    q = tmp_path / "b.txt"
    q.write_text("x y\n")
    assert read_corpus([str(p), str(q)]) == [["a", "b", "c", "d", "e"], ["f", "g"], ["x", "y"]]


def test_missing_empty_and_binary_files_name_the_path(tmp_path):
    with pytest.raises(ValueError, match="nope.txt: no such file"):
        read_sentences(str(tmp_path / "nope.txt"))
    bad = tmp_path / "bin.txt"
    bad.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ValueError, match="bin.txt: not UTF-8 text"):
        read_sentences(str(bad))
    junk = tmp_path / "junk.jsonl"
    junk.write_text("not json\n")
    with pytest.raises(ValueError, match="junk.jsonl"):
        read_sentences(str(junk))


def test_batch_layout():
    b = Batch([[5, 6, 7], [8]], bos=1, eos=2)
    assert b.inputs.tolist() == [[1, 5, 6, 7], [1, 8, 2, 2]]
    assert b.targets.tolist() == [[5, 6, 7, 2], [8, 2, 2, 2]]
    assert b.mask.tolist() == [[True] * 4, [True, True, False, False]]
    assert b.num_tokens == 6


def test_make_batches_is_deterministic_and_covers_everything():
    sents = [[3] * n for n in range(1, 30)]
    a = make_batches(sents, 4, 1, 2, shuffle=True, seed=7)
    b = make_batches(sents, 4, 1, 2, shuffle=True, seed=7)
    assert all(torch.equal(x.inputs, y.inputs) for x, y in zip(a, b))
    assert sum(x.num_tokens for x in a) == sum(len(s) + 1 for s in sents)


def test_lhotse_cutset_manifest_uses_supervision_texts(tmp_path):
    lhotse = pytest.importorskip("lhotse")  # installed by make install; a bare GPU box may lack it
    CutSet, MonoCut, SupervisionSegment = lhotse.CutSet, lhotse.MonoCut, lhotse.SupervisionSegment

    cuts = CutSet.from_cuts(
        MonoCut(id=f"c{i}", start=0, duration=1, channel=0,
                supervisions=[SupervisionSegment(id=f"s{i}", recording_id=f"r{i}", start=0, duration=1, text=f"HELLO WORLD {i}")])
        for i in range(3))
    path = str(tmp_path / "cuts.jsonl.gz")
    cuts.to_file(path)
    assert read_sentences(path) == [["HELLO", "WORLD", str(i)] for i in range(3)]
