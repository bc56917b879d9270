import gzip

import k2
import pytest
import torch

from lattices.reader import read_lattices
from lattices.writer import write_lattices

from tests.lattices.test_reader_writer import THEANO, all_paths, words_on_arcs

WORDS = "<eps> 0\nhello 1\nworld 2\nthere 3\n"


def _icefall_like(ragged: bool, with_lm: bool) -> dict:
    """A token:word lattice as icefall saves it (labels = tokens, aux_labels = words)."""
    fsa = k2.Fsa.from_str("0 1 7 -1.0\n0 2 8 -2.0\n1 3 9 -3.0\n2 3 9 -0.5\n3 4 -1 0.0\n4")
    if ragged:
        fsa.aux_labels = k2.RaggedTensor([[1], [1, 3], [2], [], [-1]], dtype=torch.int32)
    else:
        fsa.aux_labels = torch.tensor([1, 1, 2, 0, -1], dtype=torch.int32)
    if with_lm:
        fsa.lm_scores = torch.tensor([-0.5, -0.25, -1.0, 0.0, 0.0])
    return k2.create_fsa_vec([fsa, fsa]).as_dict()


@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("with_lm", [False, True])
def test_read_icefall_lattices(tmp_path, ragged, with_lm):
    torch.save(_icefall_like(ragged, with_lm), tmp_path / "lats.pt")
    (tmp_path / "words.txt").write_text(WORDS)
    batch, fails = read_lattices([str(tmp_path / "lats.pt")])
    assert not fails and batch.utt_ids == ["lats-0", "lats-1"]
    paths = all_paths(batch, 1)
    second = ("hello", "there") if ragged else ("hello",)
    if with_lm:
        assert paths == sorted([(("hello", "world"), -2.5, -1.5), (second, -2.25, -0.25)])
    else:
        assert paths == sorted([(("hello", "world"), -4.0, 0.0), (second, -2.5, 0.0)])
    assert torch.equal(batch.fsas.scores, batch.fsas.am_scores + batch.fsas.lm_scores)


def test_single_fsa_and_missing_table(tmp_path):
    fsa = k2.Fsa.from_str("0 1 2 -1.0\n1 2 -1 0.0\n2")
    torch.save(fsa.as_dict(), tmp_path / "one.pt")
    batch, fails = read_lattices([str(tmp_path / "one.pt")], fmt="k2")
    assert len(batch) == 0 and "words.txt" in fails[0].message and "one.pt" in fails[0].source
    (tmp_path / "w.txt").write_text(WORDS)
    batch, fails = read_lattices([str(tmp_path / "one.pt")], words=str(tmp_path / "w.txt"))
    assert not fails and batch.utt_ids == ["one"] and words_on_arcs(batch) == ["world", "-1"]
    (tmp_path / "bad.pt").write_bytes(b"PK\x03\x04 not really")
    _, fails = read_lattices([str(tmp_path / "bad.pt")])
    assert "bad.pt" in fails[0].message


def test_round_trip_keeps_everything_and_is_loadable_by_k2(tmp_path):
    batch, _ = read_lattices([str(THEANO / "lattice.slf"), str(THEANO / "lattice.lat")])
    write_lattices(batch, str(tmp_path / "x.pt.gz"), "k2")
    with gzip.open(tmp_path / "x.pt.gz", "rb") as f:
        d = torch.load(f)
    assert d["utt_ids"] == ["lattice", "utterance 123"]
    fsa = k2.Fsa.from_dict({k: v for k, v in d.items() if k not in ("utt_ids", "symbols", "headers")})
    assert fsa.shape[0] == 2 and torch.equal(fsa.aux_labels, batch.fsas.labels)
    again, fails = read_lattices([str(tmp_path / "x.pt.gz")])
    assert not fails and again.utt_ids == batch.utt_ids
    assert again.headers[0]["lmscale"] == 12.3
    assert torch.equal(again.fsas.arcs.values(), batch.fsas.arcs.values())
    assert words_on_arcs(again) == words_on_arcs(batch)
    assert all_paths(again, 1) == all_paths(batch, 0)  # SLF and Kaldi versions agree after k2 too
