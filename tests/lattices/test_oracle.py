import random

import k2
import kaldialign
import pytest

from lattices.oracle import canonical_labels, oracle_paths, oracle_wer
from models.files import read_references
from lattices.validate import validate_lattices
from tests.lattice_utils import enumerate_paths, fsa_from_arcs


def _edit_distance(a, b) -> int:
    return kaldialign.edit_distance(list(a), list(b))["total"]


def _brute_force_oracle(fsa, ref) -> int:
    labels = fsa.labels.tolist()
    return min(_edit_distance([labels[a] for a in p if labels[a] > 0], ref) for p in enumerate_paths(fsa))


def test_oracle_matches_brute_force(random_lattices):
    rng = random.Random(5)
    vec = validate_lattices(k2.create_fsa_vec(random_lattices), [str(i) for i in range(len(random_lattices))])
    refs = [[rng.randint(1, 7) for _ in range(rng.randint(0, 6))] for _ in random_lattices]  # 7 is OOV
    results = oracle_paths(vec, refs)
    labels_all = [vec[i].labels.tolist() for i in range(len(refs))]
    for i, (res, ref) in enumerate(zip(results, refs)):
        fsa = vec[i]
        assert res.ref_len == len(ref)
        assert res.errors == _brute_force_oracle(fsa, ref), i
        # the returned word sequence is a real path with exactly that many errors
        seqs = {tuple(labels_all[i][a] for a in p if labels_all[i][a] > 0) for p in enumerate_paths(fsa)}
        assert tuple(res.words) in seqs
        assert _edit_distance(res.words, ref) == res.errors


def test_oracle_exact_path_has_zero_errors():
    arcs = [(0, 1, 1, 0, 0), (1, 2, 0, 0, 0), (2, 3, 2, 0, 0), (0, 3, 4, 0, 0), (3, 4, -1, 0, 0)]
    vec = validate_lattices(k2.create_fsa_vec([fsa_from_arcs(arcs, 4)]), ["u"])
    [res] = oracle_paths(vec, [[1, 2]])
    assert (res.errors, res.words) == (0, [1, 2])
    [res] = oracle_paths(vec, [[]])
    assert (res.errors, res.words) == (1, [4])
    [res] = oracle_paths(vec, [[1, 2, 3, 4]])
    assert res.errors == 2


def test_oracle_wer_case_insensitive_and_oov():
    symbols = k2.SymbolTable.from_str("<eps> 0\nhello 1\nworld 2\nWORLD 3")
    arcs = [(0, 1, 1, 0, 0), (1, 2, 3, 0, 0), (2, 3, -1, 0, 0)]
    vec = validate_lattices(k2.create_fsa_vec([fsa_from_arcs(arcs, 3)]), ["u"])
    before = vec.labels.clone()
    per_utt, summary = oracle_wer(vec, symbols, [["HELLO", "world", "zzz"]], lowercase=True)
    assert (summary.errors, summary.ref_words) == (1, 3)
    assert per_utt[0][1] == ["hello", "WORLD"]  # spelled as on the lattice's arc, not as the variant compared
    assert summary.wer == pytest.approx(1 / 3)
    _, summary = oracle_wer(vec, symbols, [["HELLO", "world"]], lowercase=False)
    assert summary.errors == 2
    assert (vec.labels == before).all()
    assert (canonical_labels(vec, symbols, True).labels.tolist()) == [1, 2, -1]


def test_read_references(tmp_path):
    p = tmp_path / "text"
    p.write_text("a HELLO WORLD\nb\n\nc X\n")
    assert read_references(str(p)) == {"a": ["HELLO", "WORLD"], "b": [], "c": ["X"]}
    p.write_text("a x\na y\n")
    with pytest.raises(ValueError, match="duplicate"):
        read_references(str(p))


def test_read_references_lhotse(tmp_path):
    from lhotse import SupervisionSegment, SupervisionSet

    sups = SupervisionSet.from_segments(
        [SupervisionSegment(id="s1", recording_id="r1", start=0, duration=1, text="A B")]
    )
    path = str(tmp_path / "sups.jsonl.gz")
    sups.to_file(path)
    assert read_references(path) == {"s1": ["A", "B"], "r1": ["A", "B"]}
