"""Model mixing rewrites only the delta's entries and equals full-model interpolation, at every
mask granularity."""

import copy

import pytest
import torch

from unloc import io
from unloc.localizers import oracle_mask
from unloc.masks import Mask
from unloc.mixing import DeltaMixer, FullMixer, alpha_grid, interpolate_state_dicts
from unloc.models import assign, down_proj, entry_delta, gather, gather_entries

from tinymodels import make_tiny_model


def mask_of(granularity: str) -> Mask:
    g = torch.Generator().manual_seed(5)
    return {"columns": lambda: oracle_mask(2, 64, 0.1, seed=5),
            "rows": lambda: Mask({layer: torch.rand(32, generator=g) < 0.2 for layer in range(2)}, "rows"),
            "elements": lambda: Mask({layer: torch.rand(32, 64, generator=g) < 0.1 for layer in range(2)}, "elements"),
            }[granularity]()


def theta_o_and_u(granularity="columns"):
    theta_o = make_tiny_model(seed=0)
    theta_u = copy.deepcopy(theta_o)
    indices = mask_of(granularity).indices()
    before = gather_entries(theta_o, granularity, indices)
    with torch.no_grad():
        for layer, idx in indices.items():
            weight = down_proj(theta_u, layer).weight
            old = gather(weight, granularity, idx)
            assign(weight, granularity, idx, old + torch.randn(old.shape))
    delta = io.Delta(entry_delta(theta_u, before, granularity, indices), parent=None, granularity=granularity)
    return theta_o, theta_u, delta


def test_alpha_grid_is_the_papers():
    assert alpha_grid(21) == [round(0.05 * i, 10) for i in range(21)]


@pytest.mark.parametrize("granularity", io.GRANULARITIES)
@pytest.mark.parametrize("alpha", [0.0, 0.05, 0.5, 1.0])
def test_sparse_mixing_equals_full_interpolation(alpha, granularity):
    theta_o, theta_u, delta = theta_o_and_u(granularity)
    expected = interpolate_state_dicts(theta_o.state_dict(), theta_u.state_dict(), alpha)
    mixed = copy.deepcopy(theta_o)
    DeltaMixer(mixed, delta).set_alpha(alpha)
    for key, value in mixed.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=1e-6, msg=key)


@pytest.mark.parametrize("granularity", io.GRANULARITIES)
def test_alpha_zero_restores_theta_o_exactly_after_any_sweep(granularity):
    theta_o, _, delta = theta_o_and_u(granularity)
    mixed = copy.deepcopy(theta_o)
    mixer = DeltaMixer(mixed, delta)
    for alpha in alpha_grid(5):
        mixer.set_alpha(alpha)
    mixer.set_alpha(0.0)
    for (key, a), b in zip(theta_o.state_dict().items(), mixed.state_dict().values()):
        assert torch.equal(a, b), key


def perturbed_copy(model, seed=1):
    theta_u = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in theta_u.parameters():
            p.add_(torch.randn(p.shape, generator=g))
    return theta_u


def test_full_mixing_is_exact_at_both_ends_and_linear_between():
    theta_full = make_tiny_model(seed=0)
    theta_u = perturbed_copy(theta_full)
    before = {k: v.clone() for k, v in theta_full.state_dict().items()}
    after = dict(theta_u.named_parameters())
    mixer = FullMixer(theta_full, {k: v.detach() for k, v in after.items()})
    for alpha in (1.0, 0.3, 0.0):
        mixer.set_alpha(alpha)
        expected = interpolate_state_dicts(before, theta_u.state_dict(), alpha)
        for key, value in theta_full.state_dict().items():
            if alpha in (0.0, 1.0):  # bit for bit: θfull itself and θu itself
                assert torch.equal(value, (before if alpha == 0.0 else theta_u.state_dict())[key]), key
            else:
                torch.testing.assert_close(value, expected[key], rtol=1e-6, atol=1e-6)


def test_full_mixing_refuses_a_model_of_another_shape():
    theta_full = make_tiny_model(seed=0)
    other = {k: v.detach() for k, v in make_tiny_model(seed=0, d_ff=96).named_parameters()}
    with pytest.raises(ValueError, match="shape"):
        FullMixer(theta_full, other)
    with pytest.raises(ValueError, match="lacks parameters"):
        FullMixer(theta_full, dict(list(other.items())[:2]))
