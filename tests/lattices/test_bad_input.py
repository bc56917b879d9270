"""Input that cannot hurt (issue 11, section 4): crafted, ambiguous, non-finite and oversized
lattices give a per-file or per-utterance failure naming it, never code execution, silent damage,
a raw traceback or a huge allocation."""
import json
import os
import resource
import time

import k2
import pytest
import torch
from click.testing import CliRunner

from lattices.cli import cli
from lattices.safe_pickle import RaggedState, load_tensor_dict
from lattices.reader import read_lattices

WORDS = "<eps> 0\nfoo 5\n"


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _nbest(*args):
    return CliRunner(mix_stderr=False).invoke(cli, ["nbest", *map(str, args)])


def test_a_crafted_pt_file_runs_no_code(tmp_path):
    marker = tmp_path / "PWNED"
    torch.save({"arcs": _Evil(marker)}, tmp_path / "evil.pt")
    r = CliRunner(mix_stderr=False).invoke(cli, ["info", str(tmp_path / "evil.pt")])
    assert not marker.exists()
    assert r.exit_code == 1 and "evil.pt" in r.stderr and "refused" in r.stderr and "system" in r.stderr


def test_safe_loader_reads_tensors_and_refuses_everything_else(tmp_path):
    import io

    buf = io.BytesIO()
    d = {"a": torch.arange(6, dtype=torch.int32).reshape(2, 3)[:, 1:], "b": [1, 2.5, "x", None], "c": (True,),
         "r": k2.RaggedTensor([[1, 2], [], [3]])}
    torch.save(d, buf)
    out = load_tensor_dict(buf.getvalue(), "ok.pt")
    assert torch.equal(out["a"], d["a"]) and out["b"] == d["b"] and out["c"] == d["c"]
    assert isinstance(out["r"], RaggedState) and out["r"].row_splits[0].tolist() == [0, 2, 2, 3]
    assert out["r"].values.tolist() == [1, 2, 3]
    for protocol in (2, 4):
        buf = io.BytesIO()
        torch.save({"x": _Evil(tmp_path / "x")}, buf, pickle_protocol=protocol)
        with pytest.raises(ValueError, match="bad.pt: refused: the file would call posix.system"):
            load_tensor_dict(buf.getvalue(), "bad.pt")
    good = io.BytesIO()
    torch.save(d, good)
    for cut in (10, 200, len(good.getvalue()) - 30):
        with pytest.raises(ValueError, match="cut.pt"):
            load_tensor_dict(good.getvalue()[:cut], "cut.pt")
    assert not (tmp_path / "x").exists()


def test_k2_file_with_fewer_headers_than_fsas(tmp_path):
    fsa = k2.Fsa.from_str("0 1 5 -1.0\n1 2 -1 0.0\n2")
    d = k2.create_fsa_vec([fsa, fsa]).as_dict()
    d.update(utt_ids=["a", "b"], symbols=[("<eps>", 0), ("foo", 5)], headers=json.dumps([{}]))
    torch.save(d, tmp_path / "two.pt")
    batch, fails = read_lattices([str(tmp_path / "two.pt")])
    assert len(batch) == 0 and "1 headers for 2 FSAs" in fails[0].message and "two.pt" in fails[0].source


def test_slf_with_two_start_nodes_and_no_start_is_an_error(tmp_path):
    (tmp_path / "two.slf").write_text("VERSION=1.0\nN=4 L=3\nJ=0 S=0 E=2 W=a a=-1\nJ=1 S=1 E=2 W=b a=-1\n"
                                      "J=2 S=2 E=3 W=c a=-1\n")
    r = _nbest("-n", 3, tmp_path / "two.slf")
    assert r.exit_code == 1 and "two.slf" in r.stderr and "start=" in r.stderr and r.stdout == ""
    (tmp_path / "two.slf").write_text("VERSION=1.0\nstart=1\nN=4 L=3\nJ=0 S=0 E=2 W=a a=-1\nJ=1 S=1 E=2 W=b a=-1\n"
                                      "J=2 S=2 E=3 W=c a=-1\n")
    r = _nbest("-n", 3, tmp_path / "two.slf")
    assert r.exit_code == 0 and json.loads(r.stdout)["words"] == "b c"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_scores_fail_the_utterance_in_every_command(tmp_path, value):
    (tmp_path / "bad.slf").write_text(f"VERSION=1.0\nN=3 L=3\nJ=0 S=0 E=1 W=a a=-1\nJ=1 S=0 E=1 W=b a={value}\n"
                                      "J=2 S=1 E=2 W=c a=-1\n")
    (tmp_path / "good.slf").write_text("VERSION=1.0\nN=3 L=2\nJ=0 S=0 E=1 W=a a=-1\nJ=1 S=1 E=2 W=c a=-1\n")
    r = _nbest("-n", 3, tmp_path / "bad.slf", tmp_path / "good.slf")
    assert r.exit_code == 1 and "bad.slf" in r.stderr and "non-finite" in r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]  # strict JSON: no NaN
    assert [x["utt"] for x in recs] == ["good"]
    for command in (["info"], ["convert", "--to", "k2", "--out", str(tmp_path / "o.pt")]):
        r = CliRunner(mix_stderr=False).invoke(cli, [*command, str(tmp_path / "bad.slf")])
        assert r.exit_code == 1 and "non-finite" in r.stderr


def _fast_and_small(fn):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    out = fn()
    assert time.perf_counter() - t0 < 5.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB
    return out


def test_declared_sizes_are_bounded_by_the_content(tmp_path):
    (tmp_path / "huge.slf").write_text("VERSION=1.0\nN=2000000000 L=1\nJ=0 S=0 E=1 W=a\n")
    batch, fails = _fast_and_small(lambda: read_lattices([str(tmp_path / "huge.slf")]))
    assert not fails and batch.fsas.arcs.shape().tot_size(1) == 3  # nodes 0 and 1, and k2's final state
    (tmp_path / "far.slf").write_text("VERSION=1.0\nN=2000000000 L=1\nJ=0 S=5 E=1999999999 W=a\n")
    batch, fails = _fast_and_small(lambda: read_lattices([str(tmp_path / "far.slf")]))
    assert not fails and batch.fsas.num_arcs == 2
    (tmp_path / "words.txt").write_text(WORDS)
    (tmp_path / "far.ark").write_text("u1\n0 3000000000 5 1,2,\n3000000000 0,0,\n\n")
    batch, fails = _fast_and_small(lambda: read_lattices([str(tmp_path / "far.ark")]))
    assert not fails and batch.fsas.arcs.shape().tot_size(1) == 3
