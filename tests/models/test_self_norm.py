"""Self-normalised training (--self-norm) and the --no-normalize guard."""
import gzip
import json

import pytest
import torch
from click.testing import CliRunner

from models.checkpoint import load_checkpoint, self_norm_offset
from models.train_cli import train_command
from rescore.scorers import load_scorer

PATTERN = ["the cat sat on the mat", "a dog ran to the park", "the cat ran to the mat", "a dog sat on the park"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The same tiny LM trained twice, without and with the variance regulariser."""
    tmp = tmp_path_factory.mktemp("selfnorm")
    train = tmp / "train.txt.gz"
    with gzip.open(train, "wt") as f:
        f.write("\n".join(PATTERN * 20) + "\n")
    valid = tmp / "valid.txt"
    valid.write_text("\n".join(PATTERN) + "\n")
    out = {}
    for name, alpha in (("plain", "0"), ("selfnorm", "0.2")):
        args = ["--train", str(train), "--valid", str(valid), "--out", str(tmp / name), "--hidden", "16", "--embed", "16",
                "--batch-size", "8", "--epochs", "6", "--lr", "0.02", "--device", "cpu", "--self-norm", alpha, "--no-progress"]
        result = CliRunner().invoke(train_command, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        out[name] = (str(tmp / name / "model.pt"), json.loads((tmp / name / "metrics.json").read_text()))
    return out


def test_self_normalised_training_drives_log_z_towards_zero(trained):
    plain, selfnorm = trained["plain"][1], trained["selfnorm"][1]
    assert selfnorm["config"]["self_norm"] == 0.2 and plain["config"]["self_norm"] == 0.0
    assert abs(selfnorm["valid_log_norm_mean"]) < 0.5 * abs(plain["valid_log_norm_mean"])
    assert selfnorm["valid_log_norm_mean"] ** 2 + selfnorm["valid_log_norm_std"] ** 2 < \
        0.25 * (plain["valid_log_norm_mean"] ** 2 + plain["valid_log_norm_std"] ** 2)
    assert selfnorm["valid_ppl"] < 4.0  # still a good LM (the pattern is nearly deterministic)


def test_checkpoint_records_alpha_and_measured_log_z(trained):
    path, metrics = trained["selfnorm"]
    model, _, extra = load_checkpoint(path)
    assert model.config.self_norm == 0.2
    assert extra["log_norm"]["tokens"] == metrics["valid_tokens"]
    assert self_norm_offset(path, model, extra) == pytest.approx(extra["log_norm"]["mean"])


def test_no_normalize_is_refused_for_a_model_not_trained_that_way(trained):
    path = trained["plain"][0]
    with pytest.raises(ValueError, match=r"model.pt: --no-normalize needs a self-normalised LM.*trained without it"):
        load_scorer(path, normalize=False)
    scorer = load_scorer(trained["selfnorm"][0], normalize=False)
    assert not scorer.normalize and scorer.log_norm_offset != 0.0
    # without the normaliser the scores are the raw logits minus the measured offset
    hist, lengths = torch.tensor([[1, 5]]), torch.tensor([2])
    raw = scorer.score(hist, lengths, torch.tensor([0]), torch.tensor([6]))
    normalised = load_scorer(trained["selfnorm"][0]).score(hist, lengths, torch.tensor([0]), torch.tensor([6]))
    assert abs(float(raw - normalised)) < 1.0  # close, because log Z is close to its mean


def test_no_normalize_is_refused_for_an_ngram(tmp_path):
    arpa = tmp_path / "lm.arpa"
    arpa.write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-1.0 <s>\n-0.5 </s>\n-0.5 a\n\n\\end\\\n")
    with pytest.raises(ValueError, match="not to an ARPA n-gram"):
        load_scorer(str(arpa), normalize=False)
