"""Properties of the AFP recurrence against the exact (sequential) RNN."""
import pytest
import torch

from models.config import LMConfig
from models.lm import AFPLanguageModel

CELLS = ["lstm", "gru", "elman"]


def make_model(cell: str, layers: int, device: str, iterations: int = 3, seed: int = 0) -> AFPLanguageModel:
    torch.manual_seed(seed)
    cfg = LMConfig(vocab_size=23, embed=8, hidden=12, layers=layers, cell=cell, iterations=iterations)
    model = AFPLanguageModel(cfg).double().to(device).eval()
    with torch.no_grad():  # bigger recurrent weights so the test is not trivially contractive
        for layer in model.layers:
            layer.weight_hh_l0.mul_(3.0)
    return model


def random_ids(batch: int, length: int, device: str, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 23, (batch, length), generator=g).to(device)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_afp_with_k_at_least_length_equals_exact(cell, layers, device):
    model = make_model(cell, layers, device)
    ids = random_ids(4, 9, device)
    exact, _ = model.hidden_states(ids, mode="exact")
    for k in (9, 12):
        afp, _ = model.hidden_states(ids, mode="afp", iterations=k)
        torch.testing.assert_close(afp, exact, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("k", [1, 2, 4])
def test_afp_state_is_exact_rnn_over_last_k_inputs(cell, layers, k, device):
    model = make_model(cell, layers, device)
    ids = random_ids(3, 8, device)
    afp, _ = model.hidden_states(ids, mode="afp", iterations=k)
    for t in range(ids.shape[1]):
        window = ids[:, max(0, t - k + 1) : t + 1]
        ref, _ = model.hidden_states(window, mode="exact")
        torch.testing.assert_close(afp[:, t], ref[:, -1], rtol=1e-10, atol=1e-10)
    if k < ids.shape[1]:  # and it is really a truncation, not the full RNN
        exact, _ = model.hidden_states(ids, mode="exact")
        assert (afp[:, -1] - exact[:, -1]).abs().max() > 1e-6


@pytest.mark.parametrize("cell", CELLS)
def test_gradients_of_both_modes_agree_when_functions_agree(cell, device):
    grads = {}
    ids = random_ids(2, 6, device)
    for mode in ("exact", "afp"):
        model = make_model(cell, 2, device)
        loss = model(ids[:, :-1], mode=mode, iterations=6).gather(-1, ids[:, 1:, None]).sum()
        loss.backward()
        grads[mode] = {n: p.grad.clone() for n, p in model.named_parameters()}
    for name, g in grads["exact"].items():
        torch.testing.assert_close(grads["afp"][name], g, rtol=1e-8, atol=1e-10, msg=name)


@pytest.mark.parametrize("mode", ["afp", "exact"])
def test_batched_equals_one_at_a_time(mode, device):
    model = make_model("lstm", 2, device)
    lengths = [5, 9, 2, 7]
    ids = random_ids(4, 9, device)
    batched = model(ids, mode=mode, iterations=3)
    for i, n in enumerate(lengths):  # right padding never changes earlier positions
        alone = model(ids[i : i + 1, :n], mode=mode, iterations=3)
        torch.testing.assert_close(batched[i, :n], alone[0], rtol=1e-10, atol=1e-10)


def test_return_previous_iteration(device):
    model = make_model("gru", 2, device)
    ids = random_ids(2, 7, device)
    hk, prev = model.hidden_states(ids, mode="afp", iterations=3, return_previous=True)
    h2, _ = model.hidden_states(ids, mode="afp", iterations=2)
    torch.testing.assert_close(prev, h2)
    _, prev_converged = model.hidden_states(ids, mode="afp", iterations=20, return_previous=True)
    exact, _ = model.hidden_states(ids, mode="exact")
    torch.testing.assert_close(prev_converged, exact)


def test_dropout_mask_is_shared_by_all_iterations():
    """In training mode with dropout, AFP with K >= T still equals exact under the same masks."""
    torch.manual_seed(0)
    cfg = LMConfig(vocab_size=23, embed=8, hidden=12, layers=3, cell="lstm", dropout=0.5)
    model = AFPLanguageModel(cfg).double().train()
    ids = random_ids(2, 6, "cpu")
    torch.manual_seed(5)
    exact, _ = model.hidden_states(ids, mode="exact")
    torch.manual_seed(5)
    afp, _ = model.hidden_states(ids, mode="afp", iterations=6)
    torch.testing.assert_close(afp, exact)
