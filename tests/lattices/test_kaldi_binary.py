"""Kaldi binary lattices: a real archive against an independent reader and Kaldi's own n-best,
round trips, rspecifiers, frame-level Lattices, word times, and corrupt input."""
import functools
import gzip
import io
import shutil
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lattices.kaldi_archive import IdsAsWords, kaldi_archive_bytes, read_kaldi
from lattices.kaldi_binary import read_fst, state_frames
from lattices.nbest import hypothesis_records, nbest
from lattices.normalize import NormalizationRules
from lattices.reader import NoWordTableWarning, read_lattices

DATA = Path(__file__).resolve().parents[1] / "data" / "lattices" / "kaldi-binary"
LAT1 = str(DATA / "lat.1")
RAW = NormalizationRules.raw_words()


# --- an independent reader, written from the format description only (struct over a stream) ---

def _independent(path):
    """key -> (start, {state: final cost}, [(src, dst, word, graph+acoustic*scale parts)])."""
    f = io.BytesIO(open(path, "rb").read())
    out = {}
    while True:
        key = b""
        c = f.read(1)
        if not c:
            return out
        while c != b" ":
            key += c
            c = f.read(1)

        def unpack(fmt):
            return struct.unpack(fmt, f.read(struct.calcsize(fmt)))

        def string():
            (n,) = unpack("<i")
            return f.read(n).decode()

        assert unpack("<i")[0] == 2125659606
        assert (string(), string()) == ("vector", "compactlattice44")
        _, _, _, start, nstates, _ = unpack("<iiQqqq")
        finals, arcs = {}, []
        for s in range(nstates):
            g, a, n = unpack("<ffi")
            f.read(4 * n)
            if np.isfinite(g):
                finals[s] = (g, a)
            (narcs,) = unpack("<q")
            for _ in range(narcs):
                il, ol, g, a, n = unpack("<iiffi")
                f.read(4 * n)
                (d,) = unpack("<i")
                arcs.append((s, d, il, g, a))
        out[key.decode()] = (start, finals, arcs)


def _viterbi(start, finals, arcs, am_scale):
    by_src = {}
    for s, d, w, g, a in arcs:
        by_src.setdefault(s, []).append((d, w, g + am_scale * a))

    @functools.lru_cache(maxsize=None)
    def best(s):
        cands = [(finals[s][0] + am_scale * finals[s][1], ())] if s in finals else []
        for d, w, cost in by_src.get(s, []):
            c, words = best(d)
            cands.append((cost + c, ((w,) if w else ()) + words))
        return min(cands)

    return best(start)


def _ours(batch, am_scale):
    lists = nbest(batch.fsas, 1, scales=[(am_scale, 1.0, 0.0)] * len(batch))
    return {r["utt"]: r for r in hypothesis_records(batch.utt_ids, lists, batch.symbols)}


def test_real_binary_archive_gives_the_independent_readers_1best():
    with pytest.warns(NoWordTableWarning):
        batch, fails = read_lattices([LAT1], rules=RAW)
    assert fails == [] and len(batch) == 10
    ref = _independent(LAT1)
    ours = _ours(batch, 0.1)
    for utt, (start, finals, arcs) in ref.items():
        cost, words = _viterbi(start, finals, arcs, 0.1)
        assert ours[utt]["words"] == " ".join(map(str, words))
        assert ours[utt]["total"] == pytest.approx(-cost, abs=1e-2)


def test_kaldis_own_nbest_of_a_real_lattice_is_ours():
    """nbest.txt is Kaldi's 10-best of lat.txt (ranked by graph + acoustic cost); our n-best of the
    text archive, and of it converted to binary and read back, is the same list with the same costs."""
    kaldi, fails = read_kaldi(str(DATA / "nbest.txt"), IdsAsWords())
    assert fails == [] and len(kaldi) == 10
    expected = [(" ".join(w for w in lat.words if w is not None),
                 float(lat.am.sum() + lat.lm.sum() + sum(a + b for a, b in lat.finals.values()))) for lat in kaldi]
    with pytest.warns(NoWordTableWarning):
        text, _ = read_lattices(["ark,t:" + str(DATA / "lat.txt.gz")], rules=RAW)
    binary = kaldi_archive_bytes(text)
    back, fails = read_lattices_from_bytes(binary, text.symbols)
    assert fails == []
    for batch in (text, back):
        lists = nbest(batch.fsas, 10, scales=[(1.0, 1.0, 0.0)])
        got = [(r["words"], r["total"]) for r in hypothesis_records(batch.utt_ids, lists, batch.symbols)]
        assert [w for w, _ in got] == [w for w, _ in expected]
        np.testing.assert_allclose([t for _, t in got], [t for _, t in expected], atol=2e-3)


def read_lattices_from_bytes(data: bytes, symbols=None):
    """Read an archive given as bytes (with ``symbols`` as the words.txt beside it, if given)."""
    import tempfile

    from lattices.symbols import write_symbols

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "a.ark"
        p.write_bytes(data)
        if symbols is not None:
            write_symbols(symbols, str(Path(d) / "words.txt"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoWordTableWarning)
            return read_lattices([str(p)], rules=RAW)


def _same_lattices(a, b):
    assert a.utt_ids == b.utt_ids
    for name in ("labels", "am_scores", "lm_scores"):
        np.testing.assert_array_equal(getattr(a.fsas, name).numpy(), getattr(b.fsas, name).numpy())
    np.testing.assert_array_equal(a.fsas.arcs.values()[:, :2].numpy(), b.fsas.arcs.values()[:, :2].numpy())


def test_binary_text_binary_round_trip_is_byte_identical():
    with pytest.warns(NoWordTableWarning):
        batch, _ = read_lattices([LAT1], rules=RAW)
    binary = kaldi_archive_bytes(batch)
    text = kaldi_archive_bytes(batch, binary=False)
    from_binary, f1 = read_lattices_from_bytes(binary, batch.symbols)
    from_text, f2 = read_lattices_from_bytes(text, batch.symbols)
    assert f1 == [] and f2 == []
    _same_lattices(batch, from_binary)
    _same_lattices(batch, from_text)
    assert kaldi_archive_bytes(from_text) == binary


def test_written_binary_reads_like_kaldis(tmp_path):
    """The independent reader (which reads Kaldi's real archive above) reads our archive of lat.1 as
    the same lattices: same states, the same arcs (word, graph cost, acoustic cost) up to state
    numbering, the same finals and the same best path; words keep their Kaldi ids."""
    ref = _independent(LAT1)
    ids = sorted({w for _, _, arcs in ref.values() for _, _, w, _, _ in arcs} - {0})
    (tmp_path / "words.txt").write_text("<eps> 0\n" + "".join(f"w{i} {i}\n" for i in ids))
    batch, _ = read_lattices([LAT1], words=str(tmp_path / "words.txt"), rules=RAW)
    (tmp_path / "ours.ark").write_bytes(kaldi_archive_bytes(batch))
    ours = _independent(str(tmp_path / "ours.ark"))
    assert list(ours) == list(ref)
    for key, (start, finals, arcs) in ref.items():
        o_start, o_finals, o_arcs = ours[key]
        assert sorted(x[2:] for x in o_arcs) == sorted(x[2:] for x in arcs)
        assert sorted(o_finals.values()) == sorted(finals.values())
        assert _viterbi(o_start, o_finals, o_arcs, 0.1) == _viterbi(start, finals, arcs, 0.1)


def test_rspecifiers_scp_offsets_pipes_and_gzip(tmp_path):
    arc = tmp_path / "lat.1.gz"
    arc.write_bytes(gzip.compress(open(LAT1, "rb").read()))
    data = open(LAT1, "rb").read()
    keys = list(_independent(LAT1))
    offsets, pos = [], 0
    for k in keys:  # Kaldi's ark,scp offsets point just past "key "
        pos = data.index(k.encode() + b" ", pos) + len(k) + 1
        offsets.append(pos)
    scp = tmp_path / "lat.scp"
    scp.write_text("".join(f"{k} {LAT1}:{o}\n" for k, o in reversed(list(zip(keys, offsets)))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoWordTableWarning)
        plain, _ = read_lattices([LAT1], rules=RAW)
        for spec in ("ark:" + LAT1, str(arc), f"ark:gunzip -c {arc} |", "scp:" + str(scp)):
            batch, fails = read_lattices([spec], rules=RAW)
            assert fails == [] and sorted(batch.utt_ids) == sorted(plain.utt_ids), spec
        piped = tmp_path / "pipe.scp"
        piped.write_text(f"u1 gunzip -c {arc} |\n")
        _, fails = read_lattices(["scp:" + str(piped)], rules=RAW)
        assert len(fails) == 1 and "not run" in fails[0].message
        _, fails = read_lattices(["ark:false |"], rules=RAW)
        assert len(fails) == 1 and "exited with status 1" in fails[0].message


def _lattice4(arcs, finals, start=0):
    """A binary Lattice (lattice4) archive entry: arcs (src, dst, tid, word, graph, acoustic)."""
    n = 1 + max([s for s, *_ in arcs] + [d for _, d, *_ in arcs])
    out = struct.pack("<i", 2125659606) + struct.pack("<i", 6) + b"vector" + struct.pack("<i", 8) + b"lattice4"
    out += struct.pack("<iiQqqq", 2, 0, 3, start, n, len(arcs))
    for s in range(n):
        mine = [a for a in arcs if a[0] == s]
        out += struct.pack("<ffq", *finals.get(s, (np.inf, np.inf)), len(mine))
        for _, d, tid, w, g, a in mine:
            out += struct.pack("<iiffi", tid, w, g, a, d)
    return b"u1 " + out


def test_frame_level_lattice_becomes_a_word_lattice_with_times(tmp_path):
    # two paths over 4 frames: "7 8" and "9"; frame-level arcs, words on some of them
    arcs = [(0, 1, 5, 7, 1.0, 2.0), (1, 2, 6, 0, 0.0, 1.0), (2, 3, 6, 8, 0.5, 1.0), (3, 4, 6, 0, 0.0, 1.0),
            (0, 5, 5, 0, 0.0, 1.5), (5, 6, 5, 0, 0.0, 1.5), (6, 7, 6, 9, 2.0, 1.5), (7, 4, 6, 0, 0.0, 1.5)]
    p = tmp_path / "lat.ark"
    p.write_bytes(_lattice4(arcs, {4: (0.0, 0.0)}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoWordTableWarning)
        batch, fails = read_lattices([str(p)], rules=RAW, frame_seconds=0.03)
    assert fails == []
    assert int((batch.fsas.labels > 0).sum()) == 3 and batch.fsas.num_arcs <= 6  # chains merged
    lists = nbest(batch.fsas, 2, scales=[(1.0, 1.0, 0.0)])
    recs = hypothesis_records(batch.utt_ids, lists, batch.symbols)
    assert [(r["words"], r["total"]) for r in recs] == [("7 8", pytest.approx(-6.5)), ("9", pytest.approx(-8.0))]
    assert float(batch.fsas.end_times.max()) == pytest.approx(4 * 0.03)


def test_word_times_follow_frame_shift_and_subsampling():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoWordTableWarning)
        a, _ = read_lattices([LAT1], rules=RAW, frame_seconds=0.01)
        b, _ = read_lattices([LAT1], rules=RAW, frame_seconds=0.03)
    np.testing.assert_allclose(b.fsas.end_times.numpy(), 3 * a.fsas.end_times.numpy(), rtol=1e-5)
    assert float(a.fsas.end_times.max()) == pytest.approx(4.52, abs=1e-4)  # 452 frames in the first lattice


@pytest.mark.parametrize("cut", [3, 40, 100, 1000, 50000, 190149])
def test_truncated_archive_is_a_failure_not_a_crash(tmp_path, cut):
    p = tmp_path / "cut.ark"
    p.write_bytes(open(LAT1, "rb").read()[:cut])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoWordTableWarning)
        batch, fails = read_lattices([str(p)], fmt="kaldi", rules=RAW)
    assert fails and all(str(p) in f.source for f in fails)


def test_sizes_are_bounded_by_the_data():
    head = struct.pack("<i", 2125659606) + struct.pack("<i", 6) + b"vector" + struct.pack("<i", 16) + b"compactlattice44"
    for states in (3_000_000_000, 10**15):
        data = head + struct.pack("<iiQqqq", 2, 0, 3, 0, states, 0) + b"\0" * 64
        with pytest.raises(ValueError, match="cannot fit"):
            read_fst(data, 0, "x:u")
    ok = head + struct.pack("<iiQqqq", 2, 0, 3, 0, 1, 0) + struct.pack("<ffiq", 0, 0, 0, 2_000_000_000)
    with pytest.raises(ValueError, match="number of arcs"):
        read_fst(ok, 0, "x:u")


def test_cli_reads_binary_and_converts_both_ways(tmp_path):
    from click.testing import CliRunner

    from lattices.cli import cli

    shutil.copy(LAT1, tmp_path / "lat.1")
    with pytest.warns(NoWordTableWarning, match="integer word ids are used"):
        r = CliRunner(mix_stderr=False).invoke(cli, ["convert", "--to", "kaldi-text", "--out", str(tmp_path / "t.ark"),
                                                     "ark:" + str(tmp_path / "lat.1")])
    assert r.exit_code == 0, r.stderr
    r = CliRunner(mix_stderr=False).invoke(cli, ["convert", "--to", "kaldi", "--out", str(tmp_path / "b.ark"),
                                                 "ark,t:" + str(tmp_path / "t.ark")])
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "b.ark").read_bytes()[:40].startswith(b"CVTE201703_00030_165722_1175 \xd6\xfd\xb2\x7e")
    assert (tmp_path / "words.txt").exists()


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 12), data=st.data())
def test_state_frames_is_the_latest_arrival_in_topological_order(n, data):
    """Against a brute force over a random DAG (states numbered in any order, some unreachable or
    also entered from states the start does not reach): a state's time is the latest arrival over
    the paths from the start, for the states Kahn's algorithm passes on from it."""
    rank = data.draw(st.permutations(range(n)))  # topological position -> state id
    pairs = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(lambda p: p[0] < p[1]),
                               max_size=30))
    src = np.array([rank[a] for a, _ in pairs], dtype=np.int64)
    dst = np.array([rank[b] for _, b in pairs], dtype=np.int64)
    frames = np.array(data.draw(st.lists(st.integers(0, 9), min_size=len(pairs), max_size=len(pairs))), dtype=np.int64)
    start = rank[data.draw(st.integers(0, n - 1))]
    # brute force: passed = reached only through passed states (the start, if nothing enters it)
    passed = {start} if start not in dst.tolist() else set()
    for _ in range(n):
        passed |= {int(d) for d in set(dst.tolist()) if all(s in passed for s in src[dst == d].tolist())}
    expect = np.full(n, -1)
    expect[start] = 0
    for pos in range(n):  # topological order: every arc into a state is settled before it is used
        s = rank[pos]
        if s in passed:
            for a in np.flatnonzero(src == s).tolist():
                expect[dst[a]] = max(expect[dst[a]], expect[s] + frames[a])
    assert state_frames(n, start, src, dst, frames).tolist() == expect.tolist()
