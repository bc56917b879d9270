"""Kaldi archives (files, pipes, stdin, scp entries; text or binary) read as they are parsed, and
only the lattices a shard keeps: the same lattices and failures (line numbers and offsets
included) as parsing the whole archive at once."""
import contextlib
import gzip
import io
import struct
import time
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lattices.kaldi_text as kaldi_text
import lattices.reader as reader
from lattices.fsa_build import ArcList, Failure
from lattices.kaldi_archive import iter_kaldi, iter_kaldi_archive, kaldi_archive_bytes, word_lookup
from lattices.kaldi_text import iter_kaldi_text, parse_kaldi_text
from lattices.normalize import NormalizationRules
from lattices.reader import NoWordTableWarning, iter_lattice_batches, read_lattices, shard_of

from tests.lattices.test_kaldi_binary import LAT1

IDS = {1: "w1", 2: "w2", 3: "w3"}
GOOD = "0 1 1 1.5,2.5,1_2\n1 2 2 0.5,1,3\n2 3 3 1,1,\n3 0.25,0.5,\n"
BAD = {"word": "0 1 9 1,1,\n1 0,0,\n", "weight": "0 1 1 1,x,\n1\n", "final": "0 1 1 1,1,\n"}


def _archive(kinds):
    return "".join(f"u{i}\n{GOOD if k == 'good' else BAD[k]}\n" for i, k in enumerate(kinds))


def _same(a, b):
    """The same lattices (ids, arcs, scores, frames) and failures, in the same order."""
    assert [type(x) for x in a] == [type(x) for x in b]
    for x, y in zip(a, b):
        if isinstance(x, Failure):
            assert x == y
        else:
            assert (x.utt_id, x.start, x.words) == (y.utt_id, y.start, y.words)
            assert repr(x.finals) == repr(y.finals)  # a corrupt cost may be NaN, which == would not match
            for f in ("src", "dst", "am", "lm", "start_times", "end_times"):
                np.testing.assert_array_equal(getattr(x, f), getattr(y, f), err_msg=f)  # NaN matches NaN


def _whole(text, keep=None):
    lats, fails = parse_kaldi_text(text, "a.ark", IDS)
    return [x for x in lats + fails if keep is None or keep(x.utt_id if isinstance(x, ArcList) else x.source.split(":")[-1])]


@settings(max_examples=60, deadline=None)
@given(kinds=st.lists(st.sampled_from(["good", "good", "word", "weight", "final"]), min_size=1, max_size=12),
       chunk=st.integers(1, 400), piece=st.integers(1, 500), n=st.integers(1, 3), i=st.integers(0, 2))
def test_chunks_and_shards_give_what_the_whole_archive_gives(kinds, chunk, piece, n, i):
    text = _archive(kinds)
    keep = shard_of(i % n, n) if n > 1 else None
    data = text.encode()
    pieces = [data[k:k + piece] for k in range(0, len(data), piece)]  # as a file is read
    items = list(iter_kaldi_text(iter(pieces), "a.ark", IDS, keep=keep, chunk_bytes=chunk))
    _same(items, list(iter_kaldi_text(data, "a.ark", IDS, keep=keep, chunk_bytes=chunk)))
    expect = _whole(text, keep)
    by_type = lambda xs: [x for x in xs if isinstance(x, ArcList)] + [x for x in xs if isinstance(x, Failure)]  # noqa: E731
    _same(by_type(items), by_type(expect))  # within a chunk lattices come before failures
    assert all(":" in f.message for f in items if isinstance(f, Failure))


def test_messages_keep_the_files_line_numbers():
    text = _archive(["good", "good", "weight"])
    line = text.splitlines().index("0 1 1 1,x,") + 1
    fails = [x for x in iter_kaldi_text(text.encode(), "a.ark", IDS, chunk_bytes=1) if isinstance(x, Failure)]
    assert len(fails) == 1 and f"a.ark:u2:{line}:" in fails[0].message


def test_empty_and_blank_archives_are_one_failure():
    for data in (b"", b"\n\n  \n"):
        assert [f.message for f in iter_kaldi_text(data, "e.ark", IDS)] == ["e.ark: empty Kaldi lattice archive"]


def test_a_text_archive_streams_a_batch_before_the_rest_is_parsed(tmp_path, monkeypatch):
    ark = tmp_path / "big.ark"
    ark.write_text(_archive(["good"] * 40))
    (tmp_path / "words.txt").write_text("<eps> 0\nw1 1\nw2 2\nw3 3\n")
    monkeypatch.setattr(kaldi_text, "CHUNK_BYTES", 200)  # a few lattices a chunk
    parsed = []
    real = kaldi_text.parse_kaldi_text
    monkeypatch.setattr(kaldi_text, "parse_kaldi_text", lambda text, *a: parsed.append(text.count("\n")) or real(text, *a))
    reads = []
    real_open = reader.open_bytes

    @contextlib.contextmanager
    def counting_open(path):  # records what is read of the file
        with real_open(path) as f:
            def read(n=-1):
                data = f.read(n)
                reads.append(len(data))
                return data

            yield SimpleNamespace(read=read)
    monkeypatch.setattr(reader, "open_bytes", counting_open)
    monkeypatch.setattr(reader, "_READ_BYTES", 64)
    stream = iter_lattice_batches([str(ark)], batch_arcs=3)
    first, _ = next(stream)
    assert len(first.utt_ids) == 1 and len(parsed) == 1  # one chunk parsed, not the archive
    assert reads and sum(reads) < ark.stat().st_size / 4  # and the file read only so far
    assert sum(len(b.utt_ids) for b, _ in stream) == 39 and len(parsed) > 5


def test_a_binary_archive_by_shard_and_an_scp_that_opens_only_kept_entries(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoWordTableWarning)
        full, _ = read_lattices([LAT1], rules=NormalizationRules.raw_words())
        data = open(LAT1, "rb").read()
        every = [x.utt_id for x in iter_kaldi_archive(data, LAT1, word_lookup(None))]
        assert every == full.utt_ids
        parts = [[x.utt_id for x in iter_kaldi_archive(data, LAT1, word_lookup(None), keep=shard_of(i, 3))] for i in range(3)]
        assert sorted(u for p in parts for u in p) == sorted(every) and all(parts)
        assert parts[1] == [u for u in every if shard_of(1, 3)(u)]
        # an scp file whose entries of other shards point at a missing archive: never opened
        scp = tmp_path / "lat.scp"
        offset = {u: data.index(u.encode() + b" ") + len(u) + 1 for u in every}  # just past "key ", as Kaldi writes
        scp.write_text("".join(f"{u} {LAT1 if shard_of(0, 2)(u) else tmp_path / 'missing.ark'}:{offset[u]}\n" for u in every))
        items = list(iter_kaldi("scp:" + str(scp), word_lookup(None), keep=shard_of(0, 2)))
        assert [x.utt_id for x in items] == [u for u in every if shard_of(0, 2)(u)]
        assert len(list(iter_kaldi("scp:" + str(scp), word_lookup(None)))) == len(every)  # unsharded: the rest fail
        assert any(isinstance(x, Failure) for x in iter_kaldi("scp:" + str(scp), word_lookup(None)))


def test_binary_and_text_archives_stream_the_same_lattices(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoWordTableWarning)
        batch, _ = read_lattices([LAT1], rules=NormalizationRules.raw_words())
    text = kaldi_archive_bytes(batch, binary=False)
    ids = {i: batch.symbols.get(i) for i in range(1, len(batch.symbols))}
    whole, fails = parse_kaldi_text(text.decode(), "t.ark", ids)
    assert not fails
    _same(list(iter_kaldi_text(text, "t.ark", ids, chunk_bytes=64)), whole)


@pytest.mark.parametrize("n", [2, 5])
def test_each_utterance_belongs_to_exactly_one_shard(n):
    ids = [f"spk{i}-utt{j}" for i in range(20) for j in range(5)]
    owners = [[i for i in range(n) if shard_of(i, n)(u)] for u in ids]
    assert all(len(o) == 1 for o in owners)
    counts = np.bincount([o[0] for o in owners], minlength=n)
    assert counts.min() > 0.5 * len(ids) / n  # spread about evenly


# --- binary archives, pipes, stdin and scp entries are read as they are parsed too ---

TEXT_ENTRY = b"utext\n0 1 1 1,1,\n1 0,0,\n\n"  # a text lattice inside a binary archive


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(0, 200_000), flip=st.one_of(st.none(), st.integers(0, 200_000)),
       piece=st.integers(1, 40_000), mixed=st.booleans(), n=st.integers(1, 3), i=st.integers(0, 2))
def test_a_binary_archive_in_pieces_gives_what_its_bytes_give(cut, flip, piece, mixed, n, i):
    """Any pieces of an archive (cut short or with a corrupt byte, with a text entry inside, for a
    shard) give the same lattices and the same messages, offsets included, as its whole bytes."""
    data = bytearray(open(LAT1, "rb").read())
    if mixed:
        data[29615:29615] = TEXT_ENTRY
    if flip is not None and flip < len(data):
        data[flip] ^= 0xA5
    data = bytes(data[:max(cut, 1)])
    keep = shard_of(i % n, n) if n > 1 else None
    ids = word_lookup(None)
    pieces = (data[k:k + piece] for k in range(0, len(data), piece))
    _same(list(iter_kaldi_archive(pieces, LAT1, ids, keep=keep)), list(iter_kaldi_archive(data, LAT1, ids, keep=keep)))


def _counting_reads(monkeypatch, module):
    """Record the size of every read of a file that ``module`` opens."""
    reads = []
    real_open = module.open_bytes

    @contextlib.contextmanager
    def counting_open(path):
        with real_open(path) as f:
            def read(n=-1):
                data = f.read(n)
                reads.append(len(data))
                return data

            yield SimpleNamespace(read=read, seek=f.seek)
    monkeypatch.setattr(module, "open_bytes", counting_open)
    return reads


def test_a_binary_archive_streams_a_batch_before_the_rest_is_read(tmp_path, monkeypatch):
    reads = _counting_reads(monkeypatch, reader)
    monkeypatch.setattr(reader, "_READ_BYTES", 4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoWordTableWarning)
        stream = iter_lattice_batches([LAT1], batch_arcs=1)
        first, _ = next(stream)
        assert len(first.utt_ids) == 1 and sum(reads) < 190_150 / 2  # its first lattice is 29,615 bytes
        assert sum(len(b.utt_ids) for b, _ in stream) == 9 and sum(reads) == 190_150


def test_an_scp_entry_reads_its_own_lattice_only(tmp_path, monkeypatch):
    import lattices.kaldi_archive as kaldi_archive

    reads = _counting_reads(monkeypatch, kaldi_archive)
    monkeypatch.setattr(kaldi_archive, "_SCP_READ", 1024)
    data = open(LAT1, "rb").read()
    key = "CVTE201703_00030_165830_5107"  # the largest, 80,584..147,619
    scp = tmp_path / "one.scp"
    scp.write_text(f"{key} {LAT1}:{data.index(key.encode()) + len(key) + 1}\n")
    (lat,) = iter_kaldi("scp:" + str(scp), word_lookup(None))
    assert lat.utt_id == key and len(lat.src) == 757
    assert 147_619 - 80_584 <= sum(reads) < 2 * (147_619 - 80_584)


def test_a_pipe_is_read_as_the_command_runs_and_its_failure_comes_after_its_lattices():
    ids = word_lookup(None)
    for command in (f"cat {LAT1}", f"gzip -c {LAT1}"):
        items = []
        with pytest.raises(ValueError, match="exited with status 3"):
            items.extend(iter_kaldi(f"ark:{command}; exit 3 |", ids))
        assert [type(x) for x in items] == [ArcList] * 10  # every lattice, then the failure
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoWordTableWarning)
        batch, fails = read_lattices([f"ark:gzip -c {LAT1}; echo oops >&2; exit 3 |"], rules=NormalizationRules.raw_words())
    assert len(batch.utt_ids) == 10 and len(fails) == 1 and fails[0].message.endswith("exited with status 3: oops")
    began = time.monotonic()
    stream = iter_kaldi(f"ark:cat {LAT1}; sleep 30 |", ids)
    assert isinstance(next(stream), ArcList)  # before the command ends
    stream.close()  # and the command is stopped, not waited for
    assert time.monotonic() - began < 15


def test_stdin_is_streamed_and_un_gzipped(monkeypatch):
    monkeypatch.setattr("sys.stdin", SimpleNamespace(buffer=io.BufferedReader(io.BytesIO(gzip.compress(open(LAT1, "rb").read())))))
    lats = list(iter_kaldi("ark:-", word_lookup(None)))
    assert len(lats) == 10 and all(isinstance(x, ArcList) for x in lats)


@settings(max_examples=40, deadline=None)
@given(piece=st.integers(1, 60_000), text=st.booleans(), cut=st.sampled_from([0, 100]))
def test_a_stream_that_fails_still_gives_every_lattice_it_delivered(piece, text, cut):
    """Pieces that end with a failure (a command's exit status): every lattice whole before it
    comes first, then the failure, whatever the pieces (the last ones were once dropped)."""
    data = open(LAT1, "rb").read()
    ids = word_lookup(None)
    if text:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoWordTableWarning)
            batch, _ = read_lattices([LAT1], rules=NormalizationRules.raw_words())
        data = kaldi_archive_bytes(batch, binary=False)
        ids = {i: batch.symbols.get(i) for i in range(1, len(batch.symbols))}
    data = data[:len(data) - cut]  # whole, or the last lattice cut short

    def pieces():
        yield from (data[k:k + piece] for k in range(0, len(data), piece))
        raise ValueError("cmd |: the command exited with status 3")

    items = []
    with pytest.raises(ValueError, match="exited with status 3"):
        items.extend(iter_kaldi_archive(pieces(), "cmd |", ids))
    expect = list(iter_kaldi_archive(data, "cmd |", ids))
    _same(items, expect)
    assert sum(isinstance(x, ArcList) for x in items) == (10 if not cut else 9)


def test_a_corrupt_size_does_not_read_the_rest_of_the_stream_in(monkeypatch):
    import lattices.kaldi_archive as kaldi_archive

    monkeypatch.setattr(kaldi_archive, "MAX_LATTICE_BYTES", 50_000)
    data = bytearray(open(LAT1, "rb").read())
    head = data.index(b"CVTE201703_00030_165754_5069") + 29 + 4 + 4 + 6 + 4 + 16 + 4 + 4 + 8 + 8  # its number of states
    data[head + 8:head + 16] = struct.pack("<q", 10**9)  # the header's arc count: only a hint, so no harm
    (tids,) = struct.unpack_from("<i", data, head + 16 + 8)  # state 0: costs, transition ids, arc count
    data[head + 16 + 12 + 4 * tids:head + 16 + 20 + 4 * tids] = struct.pack("<q", 10**9)  # its arcs: corrupt
    served = []

    def pieces():
        for k in range(0, len(data), 4096):
            served.append(k)
            yield bytes(data[k:k + 4096])
    items = list(iter_kaldi_archive(pieces(), "a.ark", word_lookup(None)))
    assert [type(x) for x in items] == [ArcList, ArcList, Failure]
    assert "more than 0 MiB" in items[-1].message and "cannot be located" in items[-1].message
    assert len(served) * 4096 < 60_190 + 2 * 50_000 + 4096  # read up to the cap, not to the end
    whole = list(iter_kaldi_archive(bytes(data), "a.ark", word_lookup(None)))
    assert [type(x) for x in whole] == [ArcList, ArcList, Failure] and "cannot fit" in whole[-1].message
    data[head + 16 + 12 + 4 * tids:head + 16 + 20 + 4 * tids] = open(LAT1, "rb").read()[head + 16 + 12 + 4 * tids:head + 16 + 20 + 4 * tids]
    assert len([x for x in iter_kaldi_archive(pieces(), "a.ark", word_lookup(None)) if isinstance(x, ArcList)]) == 10
