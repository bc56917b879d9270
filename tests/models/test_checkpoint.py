import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.config import LMConfig
from models.lm import AFPLanguageModel
from models.vocab import Vocabulary


def small_model(tie: bool = True):
    vocab = Vocabulary.from_sentences([["a", "b", "c"]])
    torch.manual_seed(0)
    model = AFPLanguageModel(LMConfig(vocab_size=vocab.size, embed=6, hidden=6, layers=2, cell="gru", tie=tie, iterations=3))
    model.set_nonpredictable(vocab.nonpredictable_ids())
    return model.eval(), vocab


def test_round_trip_gives_the_same_function(tmp_path):
    model, vocab = small_model()
    path = str(tmp_path / "m.pt")
    save_checkpoint(path, model, vocab, extra={"lr": 0.5, "state": {"best": float("inf"), 3: [1, None]}, "t": torch.ones(2)})
    loaded, vocab2, extra = load_checkpoint(path)
    assert vocab2 == vocab and loaded.config == model.config
    assert extra["lr"] == 0.5 and extra["state"] == {"best": float("inf"), 3: [1, None]}
    assert torch.equal(extra["t"], torch.ones(2))
    ids = torch.tensor([[1, 4, 5, 6]])
    torch.testing.assert_close(loaded(ids), model(ids))
    assert loaded.output.weight.data_ptr() == loaded.embedding.weight.data_ptr()  # still tied
    assert loaded.output_mask.tolist() == model.output_mask.tolist()


def test_checkpoint_is_plain_data_not_a_pickled_module(tmp_path):
    model, vocab = small_model()
    path = str(tmp_path / "m.pt")
    save_checkpoint(path, model, vocab)
    raw = torch.load(path, weights_only=True)  # would fail on any pickled class
    assert raw["format"] == "afp-rescore-lm" and raw["version"] == 1


@pytest.mark.parametrize("content, message", [
    (b"", "not a readable"),
    (b"garbage\x00\x01", "not a readable"),
])
def test_corrupt_files_name_the_path(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as err:
        load_checkpoint(str(path))
    assert str(path) in str(err.value)


def test_foreign_and_newer_and_inconsistent_checkpoints(tmp_path):
    path = str(tmp_path / "x.pt")
    torch.save({"weights": torch.ones(1)}, path)
    with pytest.raises(ValueError, match="not an afp-rescore LM checkpoint"):
        load_checkpoint(path)
    model, vocab = small_model()
    save_checkpoint(path, model, vocab)
    raw = torch.load(path)
    raw["version"] = 99
    torch.save(raw, path)
    with pytest.raises(ValueError, match="newer than this tool"):
        load_checkpoint(path)
    raw["version"] = 1
    raw["tensors"] = raw["tensors"][:-1]  # drop a weight
    torch.save(raw, path)
    with pytest.raises(ValueError, match="x.pt"):
        load_checkpoint(path)
    with pytest.raises(ValueError, match="not found"):
        load_checkpoint(str(tmp_path / "missing.pt"))
