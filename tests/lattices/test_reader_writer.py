import gzip
import random
import shutil
from pathlib import Path
from typing import List, Tuple

import k2
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lattices.lattice_batch import LatticeBatch
from lattices.normalize import NormalizationRules
from lattices.reader import Failure, read_lattices
from lattices.writer import write_lattices
from tests.lattice_utils import fsa_from_arcs, make_symbols, random_lattice_arcs

DATA = Path(__file__).resolve().parents[1] / "data" / "lattices"
THEANO = DATA / "theanolm"
RAW = NormalizationRules.raw_words()


def words_on_arcs(batch: LatticeBatch) -> List[str]:
    return [batch.symbols.get(int(x)) if x > 0 else ("<eps>" if x == 0 else "-1") for x in batch.fsas.labels.tolist()]


def all_paths(batch: LatticeBatch, i: int) -> List[Tuple[Tuple[str, ...], float, float]]:
    """Every start→final path of lattice i: (words without epsilons, am total, lm total), sorted."""
    fsa = batch.fsas[i]
    arcs = fsa.as_dict()["arcs"][:, :3].tolist()
    am, lm = fsa.am_scores.tolist(), fsa.lm_scores.tolist()
    out_arcs = {}
    for j, (s, d, lab) in enumerate(arcs):
        out_arcs.setdefault(s, []).append((d, lab, j))
    paths = []

    def dfs(state, words, a, l):
        for d, lab, j in out_arcs.get(state, []):
            if lab == -1:
                paths.append((tuple(words), round(a + am[j], 2), round(l + lm[j], 2)))
            else:
                dfs(d, words + ([batch.symbols.get(lab)] if lab > 0 else []), a + am[j], l + lm[j])

    dfs(0, [], 0.0, 0.0)
    return sorted(paths)


def test_theanolm_slf_and_kaldi_are_the_same_lattice():
    slf, f1 = read_lattices([str(THEANO / "lattice.slf")], words=str(THEANO / "words.txt"))
    kal, f2 = read_lattices([str(THEANO / "lattice.lat")], words=str(THEANO / "words.txt"))
    assert not f1 and not f2
    assert slf.utt_ids == ["lattice"] and kal.utt_ids == ["utterance 123"]
    p1, p2 = all_paths(slf, 0), all_paths(kal, 0)
    assert len(p1) > 10
    assert p1 == p2
    # one path summed by hand from the SLF links J=0,4,19,33,35,37
    assert (("to", "it", "didn't", "elaborate"), -20037.63, -353.0) in p1


def test_directory_list_file_and_mixed_formats(tmp_path):
    lst = tmp_path / "lats.txt"
    lst.write_text(f"{THEANO / 'lattice.slf'}\n{DATA / 'ami-ihm'}\n")
    batch, fails = read_lattices(["@" + str(lst), str(THEANO / "lattice.lat"), str(DATA / "pocketsphinx")])
    assert not fails, fails
    assert batch.utt_ids == ["lattice", "AMI_ES2011a_H00_FEE041_0003427_0003714", "utterance 123",
                             "2033-164914-0007", "3005-163389-0007"]
    assert batch.fsas.shape[0] == 5
    assert not hasattr(batch.fsas, "start_times")  # the Kaldi lattice has no times
    # a list file is also detected without '@'
    batch2, fails2 = read_lattices([str(lst)])
    assert not fails2 and batch2.utt_ids == ["lattice", "AMI_ES2011a_H00_FEE041_0003427_0003714"]
    assert hasattr(batch2.fsas, "start_times")
    assert torch.equal(batch2.fsas.scores, batch2.fsas.am_scores + batch2.fsas.lm_scores)


def test_failures_are_collected_not_raised(tmp_path):
    (tmp_path / "good.slf").write_text((THEANO / "lattice.slf").read_text())
    (tmp_path / "cyclic.slf").write_text("VERSION=1.0\nend=2\nN=3 L=3\nJ=0 S=0 E=1 W=a\nJ=1 S=1 E=2 W=b\nJ=2 S=2 E=1 W=c\n")
    (tmp_path / "empty.slf").write_text("VERSION=1.0\nstart=0 end=1\nN=2 L=0\nI=0\nI=1\n")
    (tmp_path / "junk.bin").write_bytes(b"\x00\x01garbage")
    batch, fails = read_lattices([str(tmp_path), str(tmp_path / "missing.slf")])
    assert batch.utt_ids == ["good"]
    by = {Path(f.source.split(":")[0]).name: f.message for f in fails}
    assert set(by) == {"cyclic.slf", "empty.slf", "junk.bin", "missing.slf"}
    assert "cycle" in by["cyclic.slf"] and str(tmp_path / "cyclic.slf") in by["cyclic.slf"]
    assert "empty" in by["empty.slf"]
    assert all(isinstance(f, Failure) for f in fails)
    with pytest.raises(ValueError, match="unknown lattice format"):
        read_lattices([str(tmp_path)], fmt="htk")


def test_format_override_and_oov(tmp_path):
    # forcing the wrong format makes the file fail, naming it
    _, fails = read_lattices([str(THEANO / "lattice.slf")], fmt="kaldi", words=str(THEANO / "words.txt"))
    assert len(fails) == 1 and "lattice.slf" in fails[0].source
    small = tmp_path / "words.txt"
    small.write_text("<eps> 0\nto 1\nit 2\n")
    _, fails = read_lattices([str(THEANO / "lattice.slf")], words=str(small))
    assert len(fails) == 1 and "lattice.slf:lattice" == Path(fails[0].source).name
    assert "not in the given words.txt" in fails[0].message and "'" in fails[0].message
    small.write_text("<eps> 0\nto 1\nit 2\n<unk> 3\n")
    batch, fails = read_lattices([str(THEANO / "lattice.slf")], words=str(small))
    assert not fails and set(words_on_arcs(batch)) == {"<eps>", "to", "it", "<unk>", "-1"}


def test_duplicate_utterance_ids(tmp_path):
    (tmp_path / "a").mkdir()
    shutil.copy(THEANO / "lattice.slf", tmp_path / "lattice.slf")
    shutil.copy(THEANO / "lattice.slf", tmp_path / "a" / "lattice.slf.gz")  # plain text despite .gz name
    batch, fails = read_lattices([str(tmp_path / "lattice.slf"), str(tmp_path / "a")])
    assert len(batch) == 1 and len(fails) == 1 and "duplicate" in fails[0].message


@pytest.mark.parametrize("fmt,out", [("slf", "slf"), ("slf", "slf.gz"), ("kaldi", "lats.ark"), ("kaldi-text", "lats.ark"),
                                     ("kaldi", "lats.ark.gz"), ("k2", "lats.pt"), ("k2", "lats.pt.gz")])
def test_round_trip_every_format(tmp_path, fmt, out):
    # in utterance-id order, as the SLF directory will be read back
    paths = [str(DATA / "pocketsphinx"), str(DATA / "ami-ihm"), str(THEANO / "lattice.slf")]
    batch, fails = read_lattices(paths, rules=RAW)
    assert not fails
    write_lattices(batch, str(tmp_path / out), fmt)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    again, fails = read_lattices([str(tmp_path / out)], rules=RAW)
    assert not fails
    assert again.utt_ids == batch.utt_ids
    assert torch.equal(again.fsas.arcs.values()[:, :3], batch.fsas.arcs.values()[:, :3])
    assert words_on_arcs(again) == words_on_arcs(batch)
    assert torch.equal(again.fsas.am_scores, batch.fsas.am_scores)
    assert torch.equal(again.fsas.lm_scores, batch.fsas.lm_scores)
    if not fmt.startswith("kaldi"):  # written Kaldi lattices carry no transition ids, so no times
        assert torch.allclose(again.fsas.start_times, batch.fsas.start_times, atol=0.006)
        assert torch.allclose(again.fsas.end_times, batch.fsas.end_times, atol=0.006)
    if fmt.startswith("kaldi"):
        assert (tmp_path / "words.txt").exists()
    if out.endswith(".gz") and fmt != "slf":
        assert (tmp_path / out).read_bytes()[:2] == b"\x1f\x8b"
    if fmt == "slf" and out.endswith(".gz"):
        assert sorted(p.name for p in (tmp_path / out).iterdir())[0] == "2033-164914-0007.slf.gz"
        with gzip.open(tmp_path / out / "lattice.slf.gz", "rt") as f:
            assert "lmscale=12.3" in f.read()


def test_cross_format_kaldi_to_slf_keeps_paths(tmp_path):
    kal, _ = read_lattices([str(THEANO / "lattice.lat")], words=str(THEANO / "words.txt"))
    write_lattices(kal, str(tmp_path / "slf"), "slf")
    text = (tmp_path / "slf" / "utterance 123.slf").read_text()
    assert 'UTTERANCE="utterance 123"' in text and "W=!NULL" in text  # final weights on !NULL links
    back, fails = read_lattices([str(tmp_path / "slf")], words=str(THEANO / "words.txt"))
    assert not fails
    assert all_paths(back, 0) == all_paths(kal, 0)


def test_inputs_not_mutated(tmp_path):
    batch, _ = read_lattices([str(THEANO / "lattice.slf")])
    before = batch.fsas.am_scores.clone(), list(batch.utt_ids), [dict(h) for h in batch.headers]
    write_lattices(batch, str(tmp_path / "x.pt"), "k2")
    write_lattices(batch, str(tmp_path / "x"), "slf")
    assert torch.equal(before[0], batch.fsas.am_scores) and before[1] == batch.utt_ids and before[2] == batch.headers
    with pytest.raises(ValueError, match="output format"):
        write_lattices(batch, str(tmp_path / "y"), "htk")


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 4), fmt=st.sampled_from(["slf", "kaldi", "kaldi-text", "k2"]))
def test_random_lattices_round_trip_through_every_writer(tmp_path_factory, seed, n, fmt):
    """Valid input never reads back as a different lattice: random lattices (ties, epsilons,
    duplicate arcs) written in each format read back with the same paths, words and scores."""
    rng = random.Random(seed)
    symbols = make_symbols()
    lattices = [random_lattice_arcs(rng) for _ in range(n)]
    for arcs, _ in lattices:  # two final arcs from one state: no format but k2 and SLF can hold that
        finals = [a[0] for a in arcs if a[2] == -1]
        assume(len(finals) == len(set(finals)))
    fsas = k2.create_fsa_vec([fsa_from_arcs(*lat) for lat in lattices])
    batch = LatticeBatch(fsas, [f"u{i}" for i in range(n)], symbols)
    out = tmp_path_factory.mktemp("rt") / ("lats" if fmt == "slf" else "lats.x")
    write_lattices(batch, str(out), fmt)
    again, fails = read_lattices([str(out)], rules=RAW)
    assert not fails and again.utt_ids == batch.utt_ids
    for i in range(n):
        assert all_paths(again, i) == all_paths(batch, i)
