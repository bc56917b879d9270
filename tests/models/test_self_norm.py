"""Self-normalised training (--self-norm) and the --no-normalize guard."""
import gzip
import json

import k2
import pytest
import torch
from click.testing import CliRunner

from lattices.lattice_batch import LatticeBatch

from models.checkpoint import load_checkpoint, self_norm_offset
from models.train_cli import train_command
from rescore.pipeline import RescoreOptions, rescore_batch
from rescore.scorers import load_scorer
from tests.lattice_utils import fsa_from_arcs

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


def test_the_exact_nbest_baseline_skips_the_normaliser_too(trained):
    """--method nbest-exact --no-normalize scores hypotheses as --method afp --no-normalize does:
    the paths are shorter than K = 4, so both compute the same raw-logit sums."""
    path = trained["selfnorm"][0]
    symbols = k2.SymbolTable.from_str("<eps> 0\nthe 1\ncat 2\ndog 3\nmat 4")
    arcs = [(0, 1, 1, -1.0, 0.0), (1, 2, 2, -1.0, 0.0), (1, 2, 3, -1.2, 0.0), (1, 3, 4, -2.5, 0.0), (2, 3, 0, 0.0, 0.0),
            (3, 4, -1, 0.0, 0.0)]
    batch = LatticeBatch(k2.create_fsa_vec([fsa_from_arcs(arcs, final=4)]), ["u"], symbols)
    lm = {}
    for normalize in (True, False):
        scorer = load_scorer(path, normalize=normalize)
        for method in ("afp", "nbest-exact"):
            out = rescore_batch(batch, scorer, [(1.0, 1.0, 0.0)], RescoreOptions(method=method, nbest=3, ctm=False))
            lm[normalize, method] = {tuple(h.words): h.lm for h in out.hyps[0]}
    assert len(lm[False, "afp"]) == 3
    for words, score in lm[False, "afp"].items():
        assert lm[False, "nbest-exact"][words] == pytest.approx(score, abs=1e-4)
        assert abs(lm[True, "nbest-exact"][words] - score) > 1e-3  # the normaliser was really skipped
