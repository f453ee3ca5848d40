"""Model mixing rewrites only the delta's columns and equals full-model interpolation."""

import copy

import pytest
import torch

from tinymodels import make_tiny_model
from unloc.io import Delta
from unloc.masks import target_mask
from unloc.mixing import ColumnMixer, alpha_grid, interpolate_state_dicts
from unloc.models import column_delta, down_proj, gather_columns


def theta_o_and_u():
    theta_o = make_tiny_model(seed=0)
    theta_u = copy.deepcopy(theta_o)
    indices = target_mask(2, 64, 0.1, seed=5).indices()
    before = gather_columns(theta_o, indices)
    with torch.no_grad():
        for layer, idx in indices.items():
            down_proj(theta_u, layer).weight[:, idx] += torch.randn(32, len(idx))
    return theta_o, theta_u, Delta(column_delta(theta_u, before, indices), parent=None)


def test_alpha_grid_is_the_papers():
    assert alpha_grid(21) == [round(0.05 * i, 10) for i in range(21)]


@pytest.mark.parametrize("alpha", [0.0, 0.05, 0.5, 1.0])
def test_sparse_mixing_equals_full_interpolation(alpha):
    theta_o, theta_u, delta = theta_o_and_u()
    expected = interpolate_state_dicts(theta_o.state_dict(), theta_u.state_dict(), alpha)
    mixed = copy.deepcopy(theta_o)
    ColumnMixer(mixed, delta).set_alpha(alpha)
    for key, value in mixed.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=1e-6, msg=key)


def test_alpha_zero_restores_theta_o_exactly_after_any_sweep():
    theta_o, _, delta = theta_o_and_u()
    mixed = copy.deepcopy(theta_o)
    mixer = ColumnMixer(mixed, delta)
    for alpha in alpha_grid(5):
        mixer.set_alpha(alpha)
    mixer.set_alpha(0.0)
    for (key, a), b in zip(theta_o.state_dict().items(), mixed.state_dict().values()):
        assert torch.equal(a, b), key
