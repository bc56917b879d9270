import torch

from models.config import LMConfig
from models.evaluate import evaluate
from models.lm import AFPLanguageModel
from models.stability import project_recurrent_weights
from models.text import make_batches


def test_projection_bounds_spectral_norm_and_leaves_small_weights_alone():
    torch.manual_seed(0)
    model = AFPLanguageModel(LMConfig(vocab_size=11, embed=6, hidden=8, layers=2, cell="elman"))
    with torch.no_grad():
        model.layers[0].weight_hh_l0.mul_(10)
        model.layers[1].weight_hh_l0.mul_(0.01)
    small_before = model.layers[1].weight_hh_l0.clone()
    norms = project_recurrent_weights(model, 0.9)
    assert norms["layers.0.weight_hh_l0"] > 0.9
    assert float(torch.linalg.matrix_norm(model.layers[0].weight_hh_l0, ord=2)) <= 0.9 + 1e-5
    assert torch.equal(model.layers[1].weight_hh_l0, small_before)


def test_contractive_elman_fixed_point_residual_shrinks_geometrically():
    """With ||W_hh|| <= 0.5 the tanh map is a contraction: the gap to the exact RNN shrinks with K."""
    torch.manual_seed(1)
    model = AFPLanguageModel(LMConfig(vocab_size=11, embed=6, hidden=8, cell="elman")).double()
    project_recurrent_weights(model, 0.5)
    batches = make_batches([torch.randint(3, 11, (30,)).tolist() for _ in range(4)], 4, bos=1, eos=2)
    gaps = [evaluate(model, batches, torch.device("cpu"), "afp", k, diagnostics=True).gap_to_exact for k in (1, 2, 4, 8)]
    assert all(b < a * 0.6 for a, b in zip(gaps, gaps[1:])), gaps
    res = evaluate(model, batches, torch.device("cpu"), "afp", 40, diagnostics=True)
    assert res.residual == 0.0 and res.gap_to_exact < 1e-12  # K >= T: the exact RNN
