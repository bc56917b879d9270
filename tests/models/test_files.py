"""One I/O module: gzip detected by content, streamed reading, atomic + durable writes, references."""
import gzip
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import models.files as files
from models.files import atomic_open, read_references, read_text


def test_gzip_is_detected_by_content_not_by_name(tmp_path):
    ref = tmp_path / "ref.txt"  # gzipped, but named like plain text
    ref.write_bytes(gzip.compress(b"u1 HELLO WORLD\nu2 \n"))
    assert read_references(str(ref)) == {"u1": ["HELLO", "WORLD"], "u2": []}
    plain = tmp_path / "plain.gz"  # plain, but named like gzip
    plain.write_text("u1 A\n")
    assert read_references(str(plain)) == {"u1": ["A"]}


def test_corrupt_gzip_and_binary_files_name_the_path(tmp_path):
    bad = tmp_path / "lm.arpa"
    bad.write_bytes(gzip.compress(b"\\data\\\n" * 100)[:30])
    with pytest.raises(ValueError, match="lm.arpa: cannot read"):
        read_text(str(bad))
    binary = tmp_path / "ref"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="ref: not UTF-8 text"):
        read_references(str(binary))
    dup = tmp_path / "dup"
    dup.write_text("u1 a\nu1 b\n")
    with pytest.raises(ValueError, match="dup:2: duplicate utterance id 'u1'"):
        read_references(str(dup))


def test_atomic_open_syncs_before_the_rename_and_leaves_nothing_on_error(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(files.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(files.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    target = tmp_path / "metrics.json.gz"
    with atomic_open(str(target)) as f:
        f.write("done\n")
    assert events[:2] == ["fsync", "replace"] and read_text(str(target)) == "done\n"
    with pytest.raises(RuntimeError):
        with atomic_open(str(tmp_path / "half")) as f:
            f.write("half")
            raise RuntimeError("crash")
    assert sorted(os.listdir(tmp_path)) == ["metrics.json.gz"]


def _split(data, cuts):
    """``data`` cut at the (sorted, distinct) offsets ``cuts``."""
    bounds = [0] + sorted({c % (len(data) + 1) for c in cuts}) + [len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


@settings(max_examples=80, deadline=None)
@given(members=st.lists(st.binary(max_size=3000), min_size=1, max_size=3), padding=st.integers(0, 5),
       cuts=st.lists(st.integers(0, 10**6), max_size=6))
def test_gunzip_pieces_streams_what_gzip_decompresses(members, padding, cuts):
    """Members one after another, zero padding between them, pieces cut anywhere."""
    data = b"".join(gzip.compress(m) + b"\0" * padding for m in members)
    out = list(files.gunzip_pieces(_split(data, cuts), "x.gz"))
    assert b"".join(out) == gzip.decompress(data) == b"".join(members)
    plain = b"not gzip" + data
    assert b"".join(files.gunzip_pieces(_split(plain, cuts), "x")) == plain  # unchanged when not gzip


def test_gunzip_pieces_limits_its_output_and_names_bad_data():
    bomb = gzip.compress(b"\0" * (5 * files.READ_BYTES))
    out = list(files.gunzip_pieces([bomb], "z.gz"))  # one small piece in, bounded pieces out
    assert sum(map(len, out)) == 5 * files.READ_BYTES and max(map(len, out)) <= files.READ_BYTES
    whole = gzip.compress(b"lattice " * 1000)
    with pytest.raises(ValueError, match="cut.gz: truncated gzip data"):
        list(files.gunzip_pieces([whole[:len(whole) // 2]], "cut.gz"))
    with pytest.raises(ValueError, match="bad.gz: corrupt gzip data"):
        list(files.gunzip_pieces([whole + b"garbage!"], "bad.gz"))


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=1, max_size=2000), cuts=st.lists(st.integers(0, 10**6), max_size=8),
       steps=st.lists(st.integers(1, 300), min_size=1, max_size=20))
def test_byte_window_holds_the_stream_from_pos_and_no_more_than_it_needs(data, cuts, steps):
    """Consuming the stream in steps: the window always shows the stream's bytes at base + pos,
    and a window that had to grow holds less than twice what was asked for (plus one piece)."""
    pieces = _split(data, cuts)
    w = files.ByteWindow(iter(pieces), base=7)
    at = 0
    for n in steps:
        grew = len(w.data) - w.pos < n
        w.ensure(n)
        assert w.data[w.pos:w.pos + n] == data[at:at + n]
        assert w.base + w.pos == 7 + at
        if grew:
            assert len(w.data) - w.pos < 2 * n + max(map(len, pieces))
        w.pos += min(n, len(w.data) - w.pos)
        at = w.base + w.pos - 7
    assert b"".join(w.rest()) == data[at:]
