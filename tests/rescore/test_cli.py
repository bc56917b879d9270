"""afp-rescore / afp-rescore-merge / make rescore end to end on small SLF lattices."""
import gzip
import json
import os
import subprocess

import pytest
import torch
from click.testing import CliRunner

from lattices.lattice_batch import LatticeBatch
from lattices.reader import read_lattices
from models.scoring import sentence_log_probs
from rescore.cli import rescore_command
from rescore.merge_cli import merge_command
from rescore.run import parse_shard
from tests.lattice_utils import enumerate_paths
from tests.rescore.conftest import ARPA

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LM_SCALE, WP = 2.0, -0.5


def run(*args):
    return CliRunner(mix_stderr=False).invoke(rescore_command, [str(a) for a in args])


def common(out, lm, *extra):
    return ["--lm", lm, "--out", out, "--am-scale", 1, "--lm-scale", LM_SCALE, "--word-penalty", WP, "--device", "cpu", *extra]


def read_text(path):
    return dict((line.split()[0], line.split()[1:]) for line in open(path) if line.strip())


def afp_logprob(lm_path):
    from models.checkpoint import load_checkpoint

    model, vocab, _ = load_checkpoint(lm_path)
    return lambda seqs: sentence_log_probs(model, [vocab.encode(s) for s in seqs], vocab.bos_id, vocab.eos_id)


def arpa_logprob(path):
    from models.ngram import NgramLM

    lm = NgramLM.from_arpa(path)
    return lambda seqs: torch.tensor([lm.sentence_log_prob(list(s)) for s in seqs], dtype=torch.float64)


def brute_force_best(lats_dir, lm_path, logprob=None):
    """Best word sequence per utterance: max over paths of am + LM_SCALE*log P(words) + WP*len,
    with log P = ``logprob(word sequences)`` (default: the AFP checkpoint ``lm_path``)."""
    logprob = logprob or afp_logprob(lm_path)
    batch, _ = read_lattices([lats_dir])
    best = {}
    for i, utt in enumerate(batch.utt_ids):
        fsa = batch.fsas[i]
        cands = {}
        for path in enumerate_paths(fsa):
            words = tuple(batch.symbols.get(int(fsa.labels[a])) for a in path if fsa.labels[a] > 0)
            am = sum(float(fsa.am_scores[a]) for a in path)
            cands[words] = max(cands.get(words, -1e30), am)
        seqs = list(cands)
        lp = logprob(seqs)
        totals = [cands[s] + LM_SCALE * float(lp[j]) + WP * len(s) for j, s in enumerate(seqs)]
        best[utt] = list(seqs[max(range(len(seqs)), key=totals.__getitem__)])
    return best


def test_rescoring_outputs_and_exact_one_best(setup, tmp_path):
    tmp, lats, lms = setup
    out = str(tmp_path / "out")
    r = run(*common(out, lms["afp2"], "--ref", tmp / "ref.txt", "--lm-scales", "0.5,2", "--nbest", 3, "--write-lattices", lats))
    assert r.exit_code == 0, r.stderr
    assert read_text(os.path.join(out, "text")) == brute_force_best(lats, lms["afp2"])
    recs = [json.loads(line) for line in open(os.path.join(out, "nbest.jsonl"))]
    assert set(recs[0]) == {"utt", "rank", "words", "total", "am", "lm"} and max(r["rank"] for r in recs) <= 3
    for utt in {r["utt"] for r in recs}:
        totals = [r["total"] for r in recs if r["utt"] == utt]
        assert totals == sorted(totals, reverse=True)
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert m["utterances_done"] == 6 and m["utterances_failed"] == 0 and m["device"] == "cpu"
    assert m["arcs_after_expansion"] >= m["arcs_before_expansion"] > 0 and m["distinct_histories"] > 0 and m["arcs_per_s"] > 0
    assert open(os.path.join(out, "wer.txt")).readline().startswith("%WER")
    summary = open(os.path.join(out, "wer-summary.txt")).read().splitlines()
    assert summary[0].split() == ["settings", "WER"] and {s.split()[0] for s in summary[1:]} == {"lm_scale_0.5", "lm_scale_2"}
    with gzip.open(os.path.join(out, "hyps.supervisions.jsonl.gz"), "rt") as f:
        assert len(f.readlines()) == 6
    relat, fails = read_lattices([os.path.join(out, "lattices")])
    assert len(relat) == 6 and not fails  # rescored lattices, in the input format (SLF)
    assert open(os.path.join(out, "failures.txt")).read() == ""


def test_afp_with_long_context_equals_exact_nbest_baseline(setup, tmp_path):
    """With K >= every path length the AFP model is the full RNN: both methods agree."""
    _, lats, lms = setup
    a, b = str(tmp_path / "afp"), str(tmp_path / "exact")
    assert run(*common(a, lms["long"], "--method", "afp", lats)).exit_code == 0
    assert run(*common(b, lms["long"], "--method", "nbest-exact", "--nbest", 1000, lats)).exit_code == 0
    assert read_text(os.path.join(a, "text")) == read_text(os.path.join(b, "text"))


def test_interpolate_zero_keeps_the_lattice_ranking(setup, tmp_path):
    _, lats, lms = setup
    out = str(tmp_path / "w0")
    assert run(*common(out, lms["afp2"], "--interpolate", 0, lats)).exit_code == 0
    long = str(tmp_path / "w0long")
    assert run(*common(long, lms["long"], "--interpolate", 0, lats)).exit_code == 0
    assert read_text(os.path.join(out, "text")) == read_text(os.path.join(long, "text"))  # the LM played no part


def test_bad_inputs_are_listed_and_the_rest_is_rescored(setup, tmp_path):
    tmp, lats, lms = setup
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "garbage.slf").write_text("this is not a lattice\n")
    (bad / "cyclic.slf").write_text("VERSION=1.0\nN=2 L=2\nI=0\nI=1\nJ=0 S=0 E=1 W=w1 a=-1\nJ=1 S=1 E=0 W=w2 a=-1\n")
    out = str(tmp_path / "out")
    r = run(*common(out, lms["afp2"], lats, bad))
    assert r.exit_code == 1
    failures = open(os.path.join(out, "failures.txt")).read()
    assert "garbage.slf" in failures and "cyclic" in failures
    assert len(read_text(os.path.join(out, "text"))) == 6
    assert "failed: " in r.stderr and "garbage.slf" in r.stderr
    named = [line for line in r.stderr.splitlines() if line.startswith("failed: ") and "garbage.slf" in line]
    assert len(named) == 1 and named[0].count("garbage.slf") == 1  # the file is named once, not twice
    assert run(*common(out, lms["afp2"], lats, bad)).stderr.startswith(f"{out}: already done")
    missing = run(*common(str(tmp_path / "x"), str(tmp_path / "nope.pt"), lats))
    assert missing.exit_code == 2 and "nope.pt" in missing.stderr


def test_shards_merge_to_the_full_run(setup, tmp_path):
    tmp, lats, lms = setup
    full = str(tmp_path / "full")
    assert run(*common(full, lms["afp2"], "--ref", tmp / "ref.txt", lats)).exit_code == 0
    shards = [str(tmp_path / f"s{i}") for i in range(3)]
    for i, d in enumerate(shards):
        assert run(*common(d, lms["afp2"], "--shard", f"{i}/3", "--ref", tmp / "ref.txt", lats)).exit_code == 0
    assert sum(len(read_text(os.path.join(d, "text"))) for d in shards) == 6
    merged = str(tmp_path / "merged")
    r = CliRunner(mix_stderr=False).invoke(merge_command, ["--out", merged, "--ref", str(tmp / "ref.txt"), *shards])
    assert r.exit_code == 0, r.stderr
    assert read_text(os.path.join(merged, "text")) == read_text(os.path.join(full, "text"))
    m, f = json.load(open(os.path.join(merged, "metrics.json"))), json.load(open(os.path.join(full, "metrics.json")))
    assert m["utterances_done"] == 6 and m["wer"] == pytest.approx(f["wer"])
    unfinished = CliRunner(mix_stderr=False).invoke(merge_command, ["--out", merged, shards[0], str(tmp_path)])
    assert unfinished.exit_code == 1 and "not finished" in unfinished.stderr
    with pytest.raises(ValueError, match="0 <= I < N"):
        parse_shard("3/3")
    with pytest.raises(ValueError, match="look like I/N"):
        parse_shard("half")


@pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, ".venv", "bin", "afp-rescore")), reason="needs make install")
def test_make_rescore_runs_shards_in_parallel_and_resumes(setup, tmp_path):
    tmp, lats, lms = setup
    out = str(tmp_path / "job")
    cmd = ["make", "-s", "-C", ROOT, "rescore", f"LATS={lats}", f"LM={lms['afp2']}", f"OUT={out}", "JOBS=2",
           f"REF={tmp / 'ref.txt'}", "RESCORE_FLAGS=--device cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(read_text(os.path.join(out, "text"))) == 6 and os.path.exists(os.path.join(out, "shards", "1", "metrics.json"))
    os.remove(os.path.join(out, "shards", "1", "metrics.json"))  # as if shard 1 had crashed
    os.remove(os.path.join(out, "metrics.json"))
    mtime = os.path.getmtime(os.path.join(out, "shards", "0", "metrics.json"))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert os.path.getmtime(os.path.join(out, "shards", "0", "metrics.json")) == mtime  # not redone
    assert json.load(open(os.path.join(out, "metrics.json")))["utterances_done"] == 6


def test_threads_sets_torchs_cpu_threads_and_changes_no_output(setup, tmp_path):
    _, lats, lms = setup
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        default = str(tmp_path / "default")
        assert run(*common(default, lms["afp2"], lats)).exit_code == 0
        assert torch.get_num_threads() == 2
        one = str(tmp_path / "one")
        r = run(*common(one, lms["afp2"], "--threads", 1, lats))
        assert r.exit_code == 0, r.stderr
        assert torch.get_num_threads() == 1
        assert read_text(os.path.join(one, "text")) == read_text(os.path.join(default, "text"))
    finally:
        torch.set_num_threads(before)
    assert run(*common(str(tmp_path / "zero"), lms["afp2"], "--threads", 0, lats)).exit_code == 2


def test_make_rescore_shares_the_cores_between_local_shards_only():
    def shard_commands(*make_vars):  # the shard commands `make rescore` would run (make -n)
        cmd = ["make", "-n", "-C", ROOT, "/nonexistent/job/metrics.json", "OUT=/nonexistent/job", "JOBS=3", *make_vars]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return [line for line in proc.stdout.replace("\\\n", " ").splitlines() if "--shard" in line]

    local = shard_commands("NPROC=8")
    assert len(local) == 3 and all("--threads 2 " in line for line in local)  # 8 cores / 3 jobs
    assert all("--threads 1 " in line for line in shard_commands("NPROC=2"))  # at least one each
    assert not any("--threads" in line for line in shard_commands("NPROC=8", "SUBMIT=srun"))  # the allocation's own
    assert all("--threads 5 " in line for line in shard_commands("RESCORE_THREADS=5"))
    finer = shard_commands("NPROC=8", "SHARDS=5")  # more pieces than jobs: still cores / JOBS threads
    assert [line.split("--shard ")[1].split()[0] for line in finer] == [f"{i}/5" for i in range(5)]
    assert all("--threads 2 " in line for line in finer)


def test_non_finite_scores_fail_only_that_utterance(setup):
    from rescore.pipeline import RescoreOptions, rescore_batch
    from rescore.scorers import load_scorer

    _, lats, lms = setup
    batch, _ = read_lattices([lats])
    am = batch.fsas.am_scores.clone()
    am[0] = float("nan")  # first arc of utt0
    fsas = batch.fsas.clone()
    fsas.am_scores = am
    out = rescore_batch(LatticeBatch(fsas, batch.utt_ids, batch.symbols, batch.headers), load_scorer(lms["afp2"]),
                        [(1.0, 1.0, 0.0)] * len(batch), RescoreOptions())
    assert out.failures == [("utt0", "NaN or infinite acoustic/LM score on an arc")]
    assert out.utt_ids == [f"utt{i}" for i in range(1, 6)]
    assert torch.isnan(fsas.am_scores[0])  # input untouched


def test_arpa_as_the_new_lm_and_as_the_old_lm(setup, tmp_path):
    tmp, lats, lms = setup
    out = str(tmp_path / "arpa")
    r = run(*common(out, lms["arpa"], lats))  # a 3-gram: expansion order 2
    assert r.exit_code == 0, r.stderr
    assert json.load(open(os.path.join(out, "metrics.json")))["order"] == 2
    assert read_text(os.path.join(out, "text")) == brute_force_best(lats, None, arpa_logprob(lms["arpa"]))
    mixed = str(tmp_path / "mixed")
    r = run(*common(mixed, lms["afp2"], "--old-lm", lms["arpa"], "--interpolate", 0.3, lats))
    assert r.exit_code == 0, r.stderr
    afp, ngram = afp_logprob(lms["afp2"]), arpa_logprob(lms["arpa"])
    both = lambda seqs: 0.7 * ngram(seqs) + 0.3 * afp(seqs)  # noqa: E731
    assert read_text(os.path.join(mixed, "text")) == brute_force_best(lats, None, both)
    assert json.load(open(os.path.join(mixed, "metrics.json")))["old_lm"] == lms["arpa"]
    full = str(tmp_path / "nbest-exact")  # the N-best of the 3-gram lattice, rescored by the full RNN
    r = run(*common(full, lms["long"], "--method", "nbest-exact", "--nbest", 1000, "--old-lm", lms["arpa"],
                    "--interpolate", 0.3, lats))
    assert r.exit_code == 0, r.stderr
    rnn = afp_logprob(lms["long"])
    both = lambda seqs: 0.7 * ngram(seqs) + 0.3 * rnn(seqs)  # noqa: E731
    assert read_text(os.path.join(full, "text")) == brute_force_best(lats, None, both)


def test_read_failures_inside_a_sharded_file_are_reported_once(tmp_path):
    from lattices.reader import shard_of
    from rescore.run import RunOptions, _batches

    (tmp_path / "words.txt").write_text("<eps> 0\nw1 1\nw2 2\n")
    ark = tmp_path / "lats.ark"  # in one multi-utterance file: utt2 has a cycle (a validation failure),
    good = "0 1 1 1.0,2.0,\n1 2 2 1.0,1.0,\n2 0,0,\n\n"  # utt5 a malformed line (a parse failure)
    ark.write_text(f"utt1\n{good}utt2\n0 1 1 1.0,1.0,\n1 0 2 1.0,1.0,\n1 0,0,\n\nutt3\n{good}utt4\n{good}"
                   f"utt5\n0 1 x 1,1,\n1\n\nutt6\n{good}utt7\n{good}")
    shards = []
    for i in range(3):
        stream, fails = _batches(RunOptions(lattices=[str(ark)], lm="unused", out="unused", shard=(i, 3), batch_arcs=1))
        utts = []
        for batch, read_fails in stream:
            utts += batch.utt_ids
            fails += [(f.source, f.message) for f in read_fails]
        shards.append((utts, [src for src, _ in fails]))
    owner = {u: next(i for i in range(3) if shard_of(i, 3)(u)) for u in [f"utt{k}" for k in range(1, 8)]}
    assert len(set(owner.values())) > 1  # the ids spread over the shards
    # each utterance is read by the shard its id hashes to, and each failure is reported once, there
    assert [utts for utts, _ in shards] == [[u for u in ["utt1", "utt3", "utt4", "utt6", "utt7"] if owner[u] == i] for i in range(3)]
    assert [srcs for _, srcs in shards] == [[f"{ark}:{u}" for u in ["utt2", "utt5"] if owner[u] == i] for i in range(3)]


def test_real_kaldi_binary_archive_rescored_with_ctm_and_binary_lattices(setup, tmp_path):
    """A real binary Kaldi archive (no words.txt: ids are words) through an rspecifier: the CTM's
    words equal the text, and --write-lattices writes a binary archive that reads back."""
    import warnings

    from lattices.reader import NoWordTableWarning

    _, _, lms = setup
    lat1 = os.path.join(os.path.dirname(__file__), "..", "data", "lattices", "kaldi-binary", "lat.1")
    out = str(tmp_path / "out")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoWordTableWarning)
        r = run("--lm", lms["afp2"], "--out", out, "--am-scale", 0.1, "--device", "cpu", "--write-lattices",
                "--frame-subsampling-factor", 3, "ark:" + lat1)
        assert r.exit_code == 0, r.stderr
        text = read_text(os.path.join(out, "text"))
        ctm = {}
        for line in open(os.path.join(out, "ctm")):
            utt, channel, start, dur, word, conf = line.split()
            assert channel == "1" and 0.0 <= float(conf) <= 1.0 and float(dur) >= 0
            ctm.setdefault(utt, []).append(word)
        assert len(text) == 10 and ctm == {u: w for u, w in text.items() if w}
        assert open(os.path.join(out, "lattices.ark"), "rb").read(64).split(b" ", 1)[1][:4] == b"\xd6\xfd\xb2\x7e"
        back, fails = read_lattices([os.path.join(out, "lattices.ark")])
        assert len(back) == 10 and not fails



def test_no_ctm_writes_no_ctm_and_the_same_text(setup, tmp_path):
    """--no-ctm skips the word times and confidences, and nothing else."""
    import warnings

    from lattices.reader import NoWordTableWarning

    _, _, lms = setup
    lat1 = os.path.join(os.path.dirname(__file__), "..", "data", "lattices", "kaldi-binary", "lat.1")
    outs = {flag: str(tmp_path / flag) for flag in ("--ctm", "--no-ctm")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoWordTableWarning)
        for flag, out in outs.items():
            r = run("--lm", lms["afp2"], "--out", out, "--am-scale", 0.1, "--device", "cpu", flag, "ark:" + lat1)
            assert r.exit_code == 0, r.stderr
    assert os.path.getsize(os.path.join(outs["--ctm"], "ctm")) > 0
    assert not os.path.exists(os.path.join(outs["--no-ctm"], "ctm"))
    for name in ("text", "nbest.jsonl"):
        assert open(os.path.join(outs["--ctm"], name)).read() == open(os.path.join(outs["--no-ctm"], name)).read()

# --- input that cannot hurt (issue 11, section 4): each of these failed on the main of stop 9 ---

def test_bad_lm_and_reference_files_get_messages_not_tracebacks(setup, tmp_path):
    tmp, lats, lms = setup
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    torch.save("5", tmp_path / "five.pt")
    cases = {"bad.gz": "bad.gz", "five.pt": "five.pt"}
    for name, needle in cases.items():
        r = run(*common(str(tmp_path / f"o-{name}"), str(tmp_path / name)), lats)
        assert r.exit_code == 1 and needle in r.stderr and "Traceback" not in r.stderr, (name, r.stderr)
    # gzipped references and a gzipped ARPA file, neither named .gz
    (tmp_path / "refs.txt").write_bytes(gzip.compress(open(tmp / "ref.txt", "rb").read()))
    (tmp_path / "lm3").write_bytes(gzip.compress(ARPA.encode()))
    out = str(tmp_path / "gz")
    r = run(*common(out, str(tmp_path / "lm3"), "--ref", tmp_path / "refs.txt"), lats)
    assert r.exit_code == 0, r.stderr
    assert read_text(os.path.join(out, "text")) == brute_force_best(lats, None, arpa_logprob(lms["arpa"]))


def test_expansion_order_above_63(setup, tmp_path):
    tmp, lats, lms = setup
    a, b = str(tmp_path / "k64"), str(tmp_path / "k50")
    assert run(*common(a, lms["long"], "-K", 64), lats).exit_code == 0
    assert run(*common(b, lms["long"]), lats).exit_code == 0  # the model's own K = 50 covers every path already
    assert read_text(os.path.join(a, "text")) == read_text(os.path.join(b, "text"))


def test_arpa_unk_in_capitals_and_unk_option(setup, tmp_path):
    tmp, lats, lms = setup
    (tmp_path / "caps.arpa").write_text(ARPA.replace("<unk>", "<UNK>"))
    (tmp_path / "other.arpa").write_text(ARPA.replace("<unk>", "[oov]"))
    plain = str(tmp_path / "plain")
    assert run(*common(plain, lms["arpa"]), lats).exit_code == 0
    for name, extra in (("caps.arpa", ()), ("other.arpa", ("--unk", "[oov]"))):
        out = str(tmp_path / ("out-" + name))
        r = run(*common(out, str(tmp_path / name), *extra), lats)
        assert r.exit_code == 0, r.stderr
        assert read_text(os.path.join(out, "text")) == read_text(os.path.join(plain, "text"))
        assert open(os.path.join(out, "nbest.jsonl")).read() == open(os.path.join(plain, "nbest.jsonl")).read()


def test_decode_mbr_writes_text_and_ctm_of_the_mbr_decision(setup, tmp_path):
    """--decode mbr: OUT/text is the lattice-MBR decision on the rescored lattice (equal to
    lattices.mbr on the written lattice), the CTM spells it, and its expected loss is reported."""
    import warnings

    from lattices.lattice_batch import with_utterance_scales
    from lattices.mbr import mbr_decode
    from lattices.nbest import nbest
    from lattices.reader import NoWordTableWarning

    _, _, lms = setup
    lat1 = os.path.join(os.path.dirname(__file__), "..", "data", "lattices", "kaldi-binary", "lat.1")
    out = str(tmp_path / "mbr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoWordTableWarning)
        r = run("--lm", lms["afp2"], "--out", out, "--am-scale", 0.1, "--device", "cpu", "--decode", "mbr",
                "--write-lattices", "--lattice-format", "k2", "ark:" + lat1)
        assert r.exit_code == 0, r.stderr
        lats, _ = read_lattices([os.path.join(out, "lattices")])
    scales = [(0.1, 1.0, 0.0)] * len(lats)
    viterbi = [h[0].words for h in nbest(lats.fsas, 1, scales=scales)]
    expected = mbr_decode(with_utterance_scales(lats.fsas, scales), viterbi)
    text = read_text(os.path.join(out, "text"))
    assert text == {u: [lats.symbols.get(w) for w in m.words] for u, m in zip(lats.utt_ids, expected)}
    ctm = {}
    for line in open(os.path.join(out, "ctm")):
        utt, _, _, _, word, conf = line.split()
        ctm.setdefault(utt, []).append(word)
    assert ctm == {u: w for u, w in text.items() if w}
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert m["decode"] == "mbr" and m["mbr_expected_errors"] <= m["viterbi_expected_errors"] + 1e-6
    r = run("--lm", lms["afp2"], "--out", str(tmp_path / "x"), "--method", "nbest-exact", "--decode", "mbr", "ark:" + lat1)
    assert r.exit_code == 1 and "--decode mbr needs --method afp" in r.stderr


def test_first_pass_then_new_lm_equals_one_joint_expansion(setup, tmp_path):
    """--first-pass-beam: the old LM's own expansion (pruned), then the new LM's. With a beam that
    prunes nothing it gives the 1-best of one joint expansion; a narrow beam only removes paths."""
    tmp, lats, lms = setup
    joint, staged, narrow = (str(tmp_path / n) for n in ("joint", "staged", "narrow"))
    base = common(joint, lms["afp2"], "--old-lm", lms["arpa"], "--interpolate", 0.5)
    assert run(*base, lats).exit_code == 0
    r = run(*common(staged, lms["afp2"], "--old-lm", lms["arpa"], "--interpolate", 0.5, "--first-pass-beam", 1000), lats)
    assert r.exit_code == 0, r.stderr
    assert read_text(os.path.join(staged, "text")) == read_text(os.path.join(joint, "text"))
    m = json.load(open(os.path.join(staged, "metrics.json")))
    assert m["first_pass_seconds"] > 0 and m["utterances_done"] == 6
    r = run(*common(narrow, lms["afp2"], "--old-lm", lms["arpa"], "--interpolate", 0.5, "--first-pass-beam", 0), lats)
    assert r.exit_code == 0, r.stderr
    first = run(*common(str(tmp_path / "ngram"), lms["arpa"]), lats)  # beam 0 keeps only the n-gram's best path
    assert first.exit_code == 0
    assert read_text(os.path.join(narrow, "text")) == read_text(os.path.join(str(tmp_path / "ngram"), "text"))


def test_first_pass_beam_without_an_old_lm_prunes_the_input_lattices(setup, tmp_path):
    """Without --old-lm, --first-pass-beam prunes the input lattices before rescoring (both
    methods): a beam that prunes nothing changes nothing; beam 0 leaves the lattice's own best path."""
    _, lats, lms = setup
    texts = {}
    for method in ("afp", "nbest-exact"):
        for beam in (None, 1000, 0):
            out = str(tmp_path / f"{method}-{beam}")
            r = run(*common(out, lms["afp2"], "--method", method, *(["--first-pass-beam", beam] if beam is not None else [])),
                    lats)
            assert r.exit_code == 0, r.stderr
            texts[method, beam] = read_text(os.path.join(out, "text"))
    assert run(*common(str(tmp_path / "own"), lms["afp2"], "--interpolate", 0), lats).exit_code == 0
    own = read_text(os.path.join(str(tmp_path / "own"), "text"))  # the lattices' own best paths
    for method in ("afp", "nbest-exact"):
        assert texts[method, 1000] == texts[method, None]
        assert texts[method, 0] == own
    assert texts["afp", None] != own  # the LM changes some 1-best when nothing is pruned


def test_first_passed_lattices_are_regrouped_without_changing_the_outputs(setup, tmp_path):
    """After a first-pass beam, the pruned lattices of several input batches are rescored together
    (rescore/regroup.py): the outputs do not depend on how they were grouped."""
    from lattices.normalize import NormalizationRules
    from lattices.reader import expand_paths, iter_lattice_batches

    _, lats, lms = setup
    outs = {}
    for method in ("afp", "nbest-exact"):
        for batch_arcs in (1, 12, 10 ** 6):
            out = str(tmp_path / f"{method}-{batch_arcs}")
            r = run(*common(out, lms["afp2"], "--method", method, "--first-pass-beam", 0.5, "--batch-arcs", batch_arcs,
                            "--nbest", 3), lats)
            assert r.exit_code == 0, r.stderr
            m = json.load(open(os.path.join(out, "metrics.json")))
            assert m["utterances_done"] == 6 and m["first_pass_seconds"] > 0
            outs[method, batch_arcs] = (read_text(os.path.join(out, "text")), open(os.path.join(out, "nbest.jsonl")).read(),
                                        m["batches"])
    read = list(iter_lattice_batches(expand_paths([lats])[0], "auto", None, NormalizationRules(), batch_arcs=12))
    for method in ("afp", "nbest-exact"):
        assert outs[method, 1][:2] == outs[method, 12][:2] == outs[method, 10 ** 6][:2]
        assert outs[method, 1][2] == 6 and outs[method, 10 ** 6][2] == 1
        assert outs[method, 12][2] < len(read)  # pruned lattices of several input batches went together


def test_nbest_exact_with_an_old_lm_is_regrouped_without_changing_the_outputs(setup, tmp_path):
    """nbest-exact takes its lists from the old LM's lattice (a first pass without a beam): that
    pass runs per batch read, and the outputs do not depend on the batch size."""
    _, lats, lms = setup
    outs = []
    for batch_arcs in (1, 12, 10 ** 6):
        out = str(tmp_path / str(batch_arcs))
        r = run(*common(out, lms["afp2"], "--method", "nbest-exact", "--old-lm", lms["arpa"], "--interpolate", 0.5,
                        "--batch-arcs", batch_arcs, "--nbest", 3), lats)
        assert r.exit_code == 0, r.stderr
        m = json.load(open(os.path.join(out, "metrics.json")))
        assert m["utterances_done"] == 6 and m["first_pass_seconds"] > 0
        outs.append((read_text(os.path.join(out, "text")), open(os.path.join(out, "nbest.jsonl")).read()))
    assert outs[0] == outs[1] == outs[2]


def test_each_lattice_is_validated_once_when_first_passed_and_regrouped(setup, tmp_path, monkeypatch):
    """Regrouped lattices were validated as read; the new LM's stage does not check them again."""
    import lattices.validate
    import rescore.pipeline

    _, lats, lms = setup
    seen = []

    def counting(batch, *args, **kwargs):
        seen.extend(batch.utt_ids)
        return lattices.validate.validate_batch(batch, *args, **kwargs)

    monkeypatch.setattr(rescore.pipeline, "validate_batch", counting)
    for method in ("afp", "nbest-exact"):
        seen.clear()
        r = run(*common(str(tmp_path / method), lms["afp2"], "--method", method, "--first-pass-beam", 0.5,
                        "--batch-arcs", 12), lats)
        assert r.exit_code == 0, r.stderr
        assert sorted(seen) == sorted(read_text(os.path.join(str(tmp_path / method), "text")))  # 6, each once


def test_silence_penalty_reaches_the_search(setup, tmp_path):
    """w1 alone after a silence (acoustically better) or w2: a silence penalty flips the 1-best."""
    _, _, lms = setup
    slf = tmp_path / "u.slf"
    slf.write_text("VERSION=1.0\nUTTERANCE=u\nN=3 L=3\nI=0\nI=1\nI=2\n"
                   "J=0 S=0 E=1 W=<sil> a=-1.0\nJ=1 S=1 E=2 W=w1 a=-1.0\nJ=2 S=0 E=2 W=w2 a=-4.0\n")
    hyps = {}
    for pen in (0, -5):
        out = tmp_path / f"pen{pen}"
        r = run("--lm", lms["arpa"], "--out", out, "--am-scale", 1, "--lm-scale", 0, "--word-penalty", 0,
                "--silence-penalty", pen, slf)
        assert r.exit_code == 0, r.stderr
        hyps[pen] = read_text(out / "text")["u"]
    assert hyps == {0: ["w1"], -5: ["w2"]}
