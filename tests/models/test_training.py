"""afp-train-lm / afp-lm-ppl end to end on tiny data."""
import gzip
import json
import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from models.checkpoint import load_payload
from models.lm import AFPLanguageModel
from models.ppl_cli import ppl_command
from models.train_cli import train_command
from models.training import TrainOptions, train_lm

PATTERN = ["the cat sat on the mat", "a dog ran to the park", "the cat ran to the mat", "a dog sat on the park"]


@pytest.fixture
def corpus(tmp_path):
    train = tmp_path / "train.txt.gz"
    with gzip.open(train, "wt") as f:
        f.write("\n".join(PATTERN * 20) + "\n\n")
    valid = tmp_path / "valid.txt"
    valid.write_text("\n".join(PATTERN) + "\n")
    return str(train), str(valid)


def run_train(*args: str):
    result = CliRunner().invoke(train_command, list(args) + ["--no-progress"], catch_exceptions=False)
    return result


def base_args(corpus, out, *extra):
    train, valid = corpus
    return ["--train", train, "--valid", valid, "--out", str(out), "--hidden", "16", "--embed", "16", "--batch-size", "8",
            "--device", "cpu", *extra]


def test_training_learns_and_writes_outputs(corpus, tmp_path):
    out = tmp_path / "lm"
    result = run_train(*base_args(corpus, out, "--epochs", "4", "--lr", "0.02", "--iterations", "3", "--test", corpus[1]))
    assert result.exit_code == 0, result.output
    assert {"model.pt", "last.pt", "train.log", "metrics.json"} <= set(os.listdir(out))
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("valid_ppl", "test_ppl", "train_tokens_per_s", "mode", "iterations", "epochs", "valid_fixed_point_residual"):
        assert metrics[key] is not None, key
    assert metrics["mode"] == "afp" and metrics["iterations"] == 3 and metrics["epochs"] == 4
    assert metrics["valid_ppl"] < 4.0  # 17 tokens in the vocabulary; the pattern is nearly deterministic
    ppl = CliRunner().invoke(ppl_command, ["--lm", str(out / "model.pt"), "--text", corpus[1], "--device", "cpu"])
    assert ppl.exit_code == 0, ppl.output
    assert json.loads(ppl.output)["ppl"] == pytest.approx(metrics["valid_ppl"], rel=1e-6)


def test_bptt_mode_trains_the_exact_rnn(corpus, tmp_path):
    out = tmp_path / "lm"
    assert run_train(*base_args(corpus, out, "--mode", "bptt", "--max-steps", "3", "--cell", "gru")).exit_code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mode"] == "bptt" and metrics["config"]["mode"] == "exact" and metrics["steps"] == 3
    assert metrics["valid_fixed_point_residual"] is None


def test_dry_run_writes_nothing(corpus, tmp_path):
    out = tmp_path / "lm"
    result = run_train(*base_args(corpus, out, "--dry-run"))
    assert result.exit_code == 0 and '"parameters"' in result.output
    assert not out.exists()


def test_resume_continues_and_rejects_mismatches(corpus, tmp_path):
    out = tmp_path / "lm"
    assert run_train(*base_args(corpus, out, "--epochs", "1")).exit_code == 0
    assert run_train(*base_args(corpus, out, "--epochs", "2", "--resume")).exit_code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and [h["epoch"] for h in metrics["history"]] == [1, 2]
    other = run_train(*base_args(corpus, out, "--epochs", "3", "--resume", "--hidden", "32"))
    assert other.exit_code != 0 and "options differ" in other.output and "hidden" in other.output
    words = tmp_path / "words.txt"
    words.write_text("<eps> 0\n<s> 1\n</s> 2\n<unk> 3\ncat 4\n")
    other = run_train(*base_args(corpus, out, "--epochs", "3", "--resume", "--vocab", str(words)))
    assert other.exit_code != 0 and "vocabulary" in other.output
    fresh = run_train(*base_args(corpus, tmp_path / "none", "--resume"))
    assert fresh.exit_code != 0 and "no resumable checkpoint" in fresh.output


def test_resume_mid_epoch_equals_an_uninterrupted_run(corpus, tmp_path):
    """--checkpoint-every: a run stopped inside an epoch and resumed ends with the same weights
    as one that was never stopped (10 batches per epoch here)."""
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert run_train(*base_args(corpus, straight, "--epochs", "1", "--checkpoint-every", "3")).exit_code == 0
    assert run_train(*base_args(corpus, interrupted, "--epochs", "1", "--checkpoint-every", "3", "--max-steps", "4")).exit_code == 0
    stopped = json.loads((interrupted / "metrics.json").read_text())
    assert stopped["epochs"] == 0 and stopped["steps"] == 4
    assert run_train(*base_args(corpus, interrupted, "--epochs", "1", "--checkpoint-every", "3", "--resume")).exit_code == 0
    a, b = (load_payload(str(d / "last.pt"))["state_dict"] for d in (straight, interrupted))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    history = json.loads((interrupted / "metrics.json").read_text())["history"]
    assert [(h["epoch"], h["batch"], h["step"]) for h in history] == [(0, 3, 3), (0, 4, 4), (0, 6, 6), (0, 9, 9), (1, 0, 10)]
    # a checkpoint step that ends the epoch validates once, as the end of the epoch
    assert run_train(*base_args(corpus, tmp_path / "five", "--epochs", "1", "--checkpoint-every", "5")).exit_code == 0
    history = json.loads((tmp_path / "five" / "metrics.json").read_text())["history"]
    assert [(h["epoch"], h["batch"], h["step"]) for h in history] == [(0, 5, 5), (1, 0, 10)]


def test_empty_training_file_is_a_clear_error(corpus, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    result = run_train("--train", str(empty), *base_args(corpus, tmp_path / "lm")[2:])
    assert result.exit_code != 0 and "empty.txt: no sentences" in result.output


def test_nan_loss_is_a_clear_error(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(AFPLanguageModel, "token_nll", lambda self, i, t, mode=None, iterations=None: torch.full(t.shape, float("nan"), requires_grad=True))
    train, valid = corpus
    with pytest.raises(ValueError, match="loss is nan at epoch 1, step 1"):
        train_lm(TrainOptions(train=[train], valid=valid, out=str(tmp_path / "lm"), hidden=8, embed=8, device="cpu", progress=False))


def test_lhotse_supervision_manifest_as_training_text(corpus, tmp_path):
    lhotse = pytest.importorskip("lhotse")  # installed by make install; a bare GPU box may lack it
    SupervisionSegment, SupervisionSet = lhotse.SupervisionSegment, lhotse.SupervisionSet

    sups = SupervisionSet.from_segments(
        SupervisionSegment(id=f"s{i}", recording_id=f"r{i}", start=0, duration=1, text=t) for i, t in enumerate(PATTERN * 5))
    manifest = str(tmp_path / "sups.jsonl.gz")
    sups.to_file(manifest)
    out = tmp_path / "lm"
    result = run_train("--train", manifest, *base_args(corpus, out, "--max-steps", "2")[2:])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text())["train_sentences"] == 20


def test_torchrun_ddp_two_processes(corpus, tmp_path):
    """Multi-process data parallel training on CPU (gloo) without any user code change."""
    out = tmp_path / "lm"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           os.path.join(os.path.dirname(__file__), "..", "..", "bin", "afp-train-lm"), *base_args(corpus, out, "--max-steps", "4"),
           "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"torchrun did not exit; its stderr ended with:\n{(e.stderr or b'').decode()[-3000:]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 4
