import gzip
import json
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from lattices.cli import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _fixture_dir() -> str:
    return os.path.join(ROOT, "tests", "data", "lattices")


AMI = "ami-ihm/AMI_ES2011a_H00_FEE041_0003427_0003714.lat.gz"
AMI_UTT = "AMI_ES2011a_H00_FEE041_0003427_0003714"

# u1: "hello world" (best), "hi world", "hello" ... ; lmscale in header.
SLF_GOOD = """VERSION=1.0
UTTERANCE=u1
lmscale=2.0 wdpenalty=-0.5
start=0 end=4
N=5 L=6
I=0 t=0.00
I=1 t=0.40
I=2 t=0.40
I=3 t=0.90
I=4 t=1.00
J=0 S=0 E=1 W=hello a=-1.0 l=-0.5
J=1 S=0 E=2 W=hi a=-1.5 l=-0.5
J=2 S=1 E=3 W=world a=-1.0 l=-1.0
J=3 S=2 E=3 W=world a=-1.0 l=-1.0
J=4 S=3 E=4 W=!NULL a=0.0 l=0.0
J=5 S=1 E=4 W=there a=-4.0 l=-2.0
"""

SLF_CYCLE = """VERSION=1.0
start=0 end=3
N=4 L=4
I=0 t=0.0
I=1 t=0.5
I=2 t=0.6
I=3 t=1.0
J=0 S=0 E=1 W=a a=-1.0
J=1 S=1 E=2 W=b a=-1.0
J=2 S=2 E=1 W=c a=-1.0
J=3 S=2 E=3 W=d a=-1.0
"""


@pytest.fixture
def slf_files(tmp_path):
    good = tmp_path / "u1.slf"
    good.write_text(SLF_GOOD)
    loop = tmp_path / "loop.slf"
    loop.write_text(SLF_CYCLE)
    garbage = tmp_path / "garbage.slf"
    garbage.write_text("this is not a lattice\n")
    return str(good), str(loop), str(garbage)


def _run(args, **kw):
    result = CliRunner(mix_stderr=False).invoke(cli, args, catch_exceptions=False, **kw)
    return result


def test_nbest_on_ami_matches_its_reference_nbest_list():
    d = _fixture_dir()
    r = _run(["nbest", "-n", "5", os.path.join(d, AMI)])
    assert r.exit_code == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["rank"] for x in rows] == [1, 2, 3, 4, 5]
    assert all(x["utt"] == AMI_UTT for x in rows)
    # The 100-best list that came with the lattice: "utt-k am lm ... | words", sorted by am+lm.
    ref = []
    with open(os.path.join(d, "ami-ihm", AMI_UTT + ".nbest")) as f:
        for line in f:
            head, words = line.split("|")
            fields = head.split()
            ref.append((" ".join(words.split()), float(fields[1]), float(fields[2])))
    ref.sort(key=lambda t: -(t[1] + t[2]))
    for got, (words, am, lm) in zip(rows, ref):
        assert got["words"] == words
        assert got["am"] == pytest.approx(am, abs=1e-2)
        assert got["lm"] == pytest.approx(lm, abs=1e-2)
        assert got["total"] == pytest.approx(am + lm, abs=2e-2)
    totals = [x["total"] for x in rows]
    assert totals == sorted(totals, reverse=True)


def test_nbest_scales_from_header_text_output_and_options(slf_files, tmp_path):
    good, _, _ = slf_files
    out, text = str(tmp_path / "nb.jsonl"), str(tmp_path / "text")
    r = _run(["nbest", "--nbest", "10", good, "--out", out, "--text", text])
    assert r.exit_code == 0, r.stderr
    assert "lm_scale=2 word_penalty=-0.5" in r.stderr and "from header" in r.stderr
    rows = [json.loads(line) for line in open(out)]
    assert [x["words"] for x in rows] == ["hello world", "hi world", "hello there"]
    # hello world: am -2, lm -1.5 -> -2 + 2*-1.5 - 0.5*2 = -6
    assert rows[0]["total"] == pytest.approx(-6.0)
    assert (rows[0]["am"], rows[0]["lm"]) == (pytest.approx(-2.0), pytest.approx(-1.5))
    assert open(text).read() == "u1 hello world\n"
    r = _run(["nbest", "--lm-scale", "0", "--word-penalty", "0", good])
    assert r.exit_code == 0
    row = json.loads(r.stdout.splitlines()[0])
    assert row["total"] == pytest.approx(-2.0)
    assert "lm_scale=0 word_penalty=0" in r.stderr


def test_batch_failures_named_rest_processed_exit_1(slf_files):
    good, loop, garbage = slf_files
    r = _run(["nbest", garbage, good, loop])
    assert r.exit_code == 1
    assert json.loads(r.stdout.splitlines()[0])["words"] == "hello world"
    assert len(r.stdout.splitlines()) == 1
    assert garbage in r.stderr
    assert "loop" in r.stderr and "cycle" in r.stderr
    r = _run(["info", good, garbage])
    assert r.exit_code == 1 and "u1" in r.stdout and garbage in r.stderr


def test_info(slf_files):
    good, _, _ = slf_files
    r = _run(["info", "--json", good])
    assert r.exit_code == 0, r.stderr
    row = json.loads(r.stdout)
    assert row["utt"] == "u1"
    assert row["words"] == 4 and row["min_words"] == 2 and row["max_words"] == 2
    assert row["am"] and row["lm"] and row["times"]
    r = _run(["info", good])
    assert r.stdout.splitlines()[0].split("\t")[:3] == ["utt", "states", "arcs"]


def test_oracle(slf_files, tmp_path):
    good, _, _ = slf_files
    ref = tmp_path / "ref.txt"
    ref.write_text("u1 HI THERE WORLD\nother x\n")
    out = str(tmp_path / "oracle.jsonl")
    r = _run(["oracle", "--ref", str(ref), good, "--out", out])
    assert r.exit_code == 0, r.stderr
    assert "oracle WER 33.33% (1 errors / 3 words, 1 utterances)" in r.stdout
    assert json.loads(open(out).read())["oracle"] in ("hi world", "hello world")
    r = _run(["oracle", "--ref", str(ref), "--keep-case", good])
    assert "oracle WER 100.00%" in r.stdout
    ref.write_text("nobody x\n")
    r = _run(["oracle", "--ref", str(ref), good])
    assert r.exit_code == 1 and "no reference" in r.stderr


def test_convert_round_trip(slf_files, tmp_path):
    good, _, _ = slf_files
    k2_out = str(tmp_path / "lats.pt")
    r = _run(["convert", "--to", "k2", good, "--out", k2_out])
    assert r.exit_code == 0, r.stderr
    a = _run(["nbest", "-n", "3", "--lm-scale", "1", "--word-penalty", "0", good]).stdout
    b = _run(["nbest", "-n", "3", "--lm-scale", "1", "--word-penalty", "0", k2_out]).stdout
    assert a == b and a
    slf_dir = str(tmp_path / "slf")
    r = _run(["convert", "--to", "slf", k2_out, "--out", slf_dir])
    assert r.exit_code == 0, r.stderr
    c = _run(["nbest", "-n", "3", "--lm-scale", "1", "--word-penalty", "0", slf_dir]).stdout
    assert c == a


def test_draw(slf_files, tmp_path):
    good, _, _ = slf_files
    dot = str(tmp_path / "u1.dot")
    r = _run(["draw", "u1", good, "-o", dot])
    assert r.exit_code == 0, r.stderr
    src = open(dot).read()
    assert "digraph" in src and "hello" in src and "red" in src
    r = _run(["draw", "nope", good, "-o", dot])
    assert r.exit_code != 0 and "nope" in r.stderr
    r = _run(["draw", "u1", good, "-o", str(tmp_path / "x.jpg2")])
    assert r.exit_code != 0
    if shutil.which("dot"):
        svg = str(tmp_path / "u1.svg")
        r = _run(["draw", "u1", good, "-o", svg, "--beam", "3"])
        assert r.exit_code == 0, r.stderr
        assert "<svg" in open(svg).read()


def test_shim_runs():
    r = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bin", "afp-lattice"), "--help"], capture_output=True, text=True
    )
    assert r.returncode == 0
    for cmd in ("info", "convert", "nbest", "oracle", "draw"):
        assert cmd in r.stdout


def test_draw_without_dot_binary_fails_clearly(slf_files, tmp_path, monkeypatch):
    import lattices.draw

    good, _, _ = slf_files
    monkeypatch.setattr(lattices.draw.shutil, "which", lambda name: None)
    r = _run(["draw", "u1", good, "-o", str(tmp_path / "u1.svg")])
    assert r.exit_code == 1
    assert "apt-get install graphviz" in r.stderr
    assert not os.path.exists(tmp_path / "u1.svg")


def test_pocketsphinx_fixture_nbest_oracle_draw(tmp_path):
    d = _fixture_dir()
    lats = os.path.join(d, "pocketsphinx")
    if not os.path.isdir(lats):
        pytest.skip("pocketsphinx fixtures not found")
    r = _run(["nbest", "-n", "20", lats])
    assert r.exit_code == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    utts = sorted({x["utt"] for x in rows})
    assert len(utts) == 2
    for u in utts:
        mine = [x for x in rows if x["utt"] == u]
        assert [x["rank"] for x in mine] == list(range(1, 21))
        assert len({x["words"] for x in mine}) == 20
        totals = [x["total"] for x in mine]
        assert totals == sorted(totals, reverse=True)
    # Oracle against the 1-best itself is 0 errors; against an empty reference, all insertions.
    ref = tmp_path / "ref.txt"
    ref.write_text("".join(f"{x['utt']} {x['words']}\n" for x in rows if x["rank"] == 1))
    r = _run(["oracle", "--ref", str(ref), lats])
    assert r.exit_code == 0, r.stderr
    assert "oracle WER 0.00% (0 errors" in r.stdout
    r = _run(["info", "--json", lats])
    for row in map(json.loads, r.stdout.splitlines()):
        assert row["am"] and not row["lm"] and row["times"] and row["arcs"] > 1000
    if shutil.which("dot"):
        r = _run(["draw", utts[0], lats, "-o", str(tmp_path / "p.svg"), "--beam", "10"])
        assert r.exit_code == 0, r.stderr


def test_default_lm_scale_is_not_silent(tmp_path):
    """Lattices without a scale header and no --lm-scale or --am-scale: a warning that says what to do."""
    from lattices.lattice_batch import DefaultScalesWarning

    good = tmp_path / "u1.slf"
    good.write_text(SLF_GOOD.replace("lmscale=2.0 wdpenalty=-0.5\n", ""))
    good = str(good)
    with pytest.warns(DefaultScalesWarning, match="tune them on a dev set"):
        _run(["nbest", "-n", "1", good])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DefaultScalesWarning)
        r = _run(["nbest", "-n", "1", "--lm-scale", "10", good])
        assert r.exit_code == 0
        r = _run(["nbest", "-n", "1", "--am-scale", "0.1", good])  # Kaldi's convention: the ratio is set
        assert r.exit_code == 0


def test_prune_keeps_paths_within_the_beam_and_writes_the_scales(tmp_path):
    """On real pocketsphinx lattices: every n-best path within the beam survives pruning with its
    total unchanged, the lattices shrink, and the header carries the scales."""
    lats = os.path.join(_fixture_dir(), "pocketsphinx")
    out = tmp_path / "pruned"
    scales = ["--am-scale", "1", "--lm-scale", "1", "--word-penalty", "-0.5"]
    r = _run(["prune", *scales, "--beam", "8", "--to", "slf", "--out", str(out), lats])
    assert r.exit_code == 0, r.stderr
    before = [json.loads(x) for x in _run(["nbest", "-n", "200", *scales, lats]).stdout.splitlines()]
    after = [json.loads(x) for x in _run(["nbest", "-n", "200", str(out)]).stdout.splitlines()]
    for utt in {x["utt"] for x in before}:
        best = max(x["total"] for x in before if x["utt"] == utt)
        inside = {x["words"]: x["total"] for x in before if x["utt"] == utt and x["total"] >= best - 8}
        kept = {x["words"]: x["total"] for x in after if x["utt"] == utt}
        assert inside and all(kept.get(w) == pytest.approx(t, abs=1e-3) for w, t in inside.items())
    arcs = [sum(json.loads(x)["arcs"] for x in _run(["info", "--json", p]).stdout.splitlines()) for p in (lats, str(out))]
    assert arcs[1] < arcs[0] / 2
    text = gzip.open(next(out.glob("*"))).read().decode() if str(next(out.glob("*"))).endswith(".gz") else next(out.glob("*")).read_text()
    assert "lmscale=1" in text and "wdpenalty=-0.5" in text


def _arcs(batch, i):
    """Lattice i as sorted (src, dst, word, am, lm) arcs: the same lattice whatever the word ids."""
    fsa = batch.fsas[i]
    arcs = fsa.as_dict()["arcs"][:, :3].tolist()
    return sorted((s, d, batch.symbols.get(w) if w > 0 else w, round(a, 4), round(b, 4))
                  for (s, d, w), a, b in zip(arcs, fsa.am_scores.tolist(), fsa.lm_scores.tolist()))


def _outputs(tmp_path, tag, lats, ref):
    """Every file-writing afp-lattice command on ``lats``: {name: bytes or lattices read back}."""
    from lattices.reader import read_lattices

    d = tmp_path / tag
    d.mkdir()
    got = {}
    for name, args in {"info": ["info", "--json", "--out", str(d / "info.jsonl")],
                       "nbest": ["nbest", "-n", "3", "--lm-scale", "10", "--out", str(d / "nbest.jsonl"), "--text", str(d / "text")],
                       "oracle": ["oracle", "--ref", ref, "--out", str(d / "oracle.jsonl")]}.items():
        r = _run([*args, *lats])
        assert r.exit_code == 0, r.stderr
        got[name] = [(d / f"{name}.jsonl").read_bytes(), r.stdout]
    got["text"] = (d / "text").read_bytes()
    for fmt, out in (("k2", d / "c.pt"), ("slf", d / "slf"), ("kaldi", d / "ark" / "c.ark"), ("kaldi-text", d / "t" / "c.ark")):
        for cmd in (["convert", "--to", fmt], ["prune", "--beam", "8", "--lm-scale", "10", "--to", fmt]):
            target = str(out) + cmd[0]
            r = _run([*cmd, *lats, "--out", target])
            assert r.exit_code == 0, r.stderr
            batch, fails = read_lattices([target], words=os.path.join(os.path.dirname(target), "words.txt") if "kaldi" in fmt else None)
            assert not fails
            got[f"{cmd[0]}-{fmt}"] = {u: _arcs(batch, i) for i, u in enumerate(batch.utt_ids)}
    return got


def test_the_tools_give_the_same_outputs_one_lattice_a_batch(tmp_path, monkeypatch):
    """info, nbest, oracle, convert and prune read their inputs batch by batch (memory holds one
    batch); at one lattice a batch they write what they write from one batch."""
    import lattices.cli.common as common

    d = _fixture_dir()
    lats = [os.path.join(d, "pocketsphinx"), os.path.join(d, AMI), os.path.join(d, "theanolm", "lattice.slf")]
    ref = tmp_path / "ref.txt"
    ref.write_text("2033-164914-0007 the\n3005-163389-0007 a\nAMI_ES2011a_H00_FEE041_0003427_0003714 HERE WE GO\nlattice a b\n")
    whole = _outputs(tmp_path, "whole", lats, str(ref))
    monkeypatch.setattr(common, "BATCH_ARCS", 1)
    streamed = _outputs(tmp_path, "streamed", lats, str(ref))
    assert streamed == whole
    assert len(whole["convert-k2"]) == 4 and whole["text"].count(b"\n") == 4


def test_draw_parses_only_its_utterance(tmp_path, monkeypatch):
    import lattices.kaldi_text as kaldi_text

    parsed = []
    real = kaldi_text.parse_kaldi_text
    monkeypatch.setattr(kaldi_text, "parse_kaldi_text", lambda text, *a: parsed.append(text) or real(text, *a))
    (tmp_path / "words.txt").write_text("<eps> 0\nw1 1\nw2 2\n")
    ark = tmp_path / "lats.ark"
    ark.write_text("u1\n0 1 1 1.0,2.0,\n1 2 2 1.0,1.0,\n2 0,0,\n\nbad\n0 1 9 1,1,\n1\n\nu3\n0 1 2 0.5,0.5,\n1 0,0,\n\n")
    r = _run(["draw", "u3", str(ark), "-o", str(tmp_path / "u3.dot")])
    assert r.exit_code == 0, r.stderr
    assert "bad" not in r.stderr and "w2" in (tmp_path / "u3.dot").read_text()
    assert parsed and not any("u1" in t or "bad" in t for t in parsed)  # the other lattices were not parsed
    r = _run(["draw", "bad", str(ark), "-o", str(tmp_path / "bad.dot")])
    assert r.exit_code != 0 and "word id 9" in r.stderr
