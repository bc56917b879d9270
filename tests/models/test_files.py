"""One I/O module: gzip detected by content, atomic + durable writes, references."""
import gzip
import os

import pytest

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
