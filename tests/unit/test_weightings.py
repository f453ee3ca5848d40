"""WME's weightings and edit: each formula on hand-made tensors whose answer is known by
construction, the checks on their inputs, and the registry's contract."""

import pytest
import torch

from unloc.weightings import (
    WEIGHTINGS,
    FisherSettings,
    GradSettings,
    PruningSettings,
    RandomSettings,
    TauSettings,
    WeightedSettings,
    edit,
    task_vector,
)


def t(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def weigh(name: str, settings, tv, g_f=None, g_r=None):
    return WEIGHTINGS[name].fn(settings, tv, g_f, g_r)


def exactly(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


# --------------------------------------------------------------------------- gradient ratios


def test_grad_is_the_share_of_the_forget_gradient():
    tv = {"w": torch.zeros(4)}
    w = weigh("grad", GradSettings(), tv, {"w": t(1, 0, -3, 0)}, {"w": t(-1, 2, 0, 0)})["w"]
    exactly(w, t(0.5, 0, 1, 0.5))
    assert w[3].item() == 0.5  # 0/0, guarded by ε on both sides
    assert w.dtype == torch.float32
    assert ((w >= 0) & (w <= 1)).all()


def test_fisher_squares_the_set_level_gradients():
    tv = {"w": torch.zeros(2)}
    w = weigh("fisher", FisherSettings(), tv, {"w": t(1, -2)}, {"w": t(2, 1)})["w"]
    exactly(w, t(0.2, 0.8))  # 1 / (1 + 4), 4 / (4 + 1)
    assert ((w >= 0) & (w <= 1)).all()


def test_empirical_fisher_is_used_as_it_is():
    squares_f, squares_r = t(1.0, 4.0, 0.25, 9.0), t(4.0, 1.0, 0.0, 9.0)
    tv = {"w": torch.zeros(4)}
    as_given = weigh("fisher", FisherSettings(empirical=True), tv, {"w": squares_f}, {"w": squares_r})["w"]
    from_roots = weigh("fisher", FisherSettings(), tv, {"w": squares_f.sqrt()}, {"w": squares_r.sqrt()})["w"]
    exactly(as_given, from_roots)
    exactly(as_given, t(0.2, 0.8, 1.0, 0.5))


def test_empirical_fisher_refuses_negative_entries():
    with pytest.raises(ValueError, match="fisher.*negative"):
        weigh("fisher", FisherSettings(empirical=True), {"w": torch.zeros(2)}, {"w": t(1, -1)}, {"w": t(1, 1)})


def test_tau_one_is_grad_two_is_fisher_zero_is_one_half():
    tv = {"a": torch.zeros(5), "b": torch.zeros(2, 2)}
    g_f = {"a": t(1, 0, -3, 0.5, 7), "b": torch.tensor([[0.1, -2.0], [0.0, 4.0]])}
    g_r = {"a": t(-1, 2, 0, 0.25, 3), "b": torch.tensor([[0.3, 1.0], [0.0, -8.0]])}
    grad_w, fisher_w = weigh("grad", GradSettings(), tv, g_f, g_r), weigh("fisher", FisherSettings(), tv, g_f, g_r)
    for name in tv:
        assert torch.equal(weigh("tau", TauSettings(tau=1.0), tv, g_f, g_r)[name], grad_w[name])
        assert torch.equal(weigh("tau", TauSettings(tau=2.0), tv, g_f, g_r)[name], fisher_w[name])
        exactly(weigh("tau", TauSettings(tau=0.0), tv, g_f, g_r)[name], torch.full_like(tv[name], 0.5))
    exactly(weigh("tau", TauSettings(tau=3.0), tv, g_f, g_r)["a"][3:4], t(0.125 / (0.125 + 0.015625)))


def test_tau_has_no_default():
    with pytest.raises(ValueError, match="tau.*required"):
        WEIGHTINGS["tau"].parse({}, "edit.tau")
    assert WEIGHTINGS["tau"].parse({"tau": 2}, "edit.tau") == TauSettings(tau=2.0)


def test_softmax_of_the_magnitudes():
    a, b = t(0.0, 1.0, -2.0, 0.5), t(0.0, -3.0, 1.0, 0.5)
    w = weigh("softmax", None, {"w": torch.zeros(4)}, {"w": a}, {"w": b})["w"]
    expected = a.abs().exp() / (a.abs().exp() + b.abs().exp())
    torch.testing.assert_close(w, expected, rtol=0, atol=1e-6)
    exactly(w[[0, 3]], t(0.5, 0.5))


def test_softmax_stays_finite_for_huge_gradients():
    w = weigh("softmax", None, {"w": torch.zeros(3)}, {"w": t(1e4, 0, 1e4)}, {"w": t(0, -1e4, 1e4)})["w"]
    assert not w.isnan().any()
    exactly(w, t(1.0, 0.0, 0.5))


# --------------------------------------------------------------------------- without gradients


def test_tv_is_ones_and_weighted_is_omega():
    tv = {"a": t(1, -2), "b": torch.zeros(2, 3, dtype=torch.bfloat16)}
    ones = weigh("tv", None, tv)
    scaled = weigh("weighted", WeightedSettings(omega=0.3), tv)
    for name in tv:
        assert torch.equal(ones[name], torch.ones(tv[name].shape))
        assert torch.equal(scaled[name], torch.full(tv[name].shape, 0.3))
        assert scaled[name].dtype == torch.float32
    assert torch.equal(weigh("weighted", WeightedSettings(), tv)["a"], t(0.5, 0.5))


def test_random_depends_on_the_seed_and_shapes_only():
    tv = {"a": torch.zeros(3, 4), "b": torch.zeros(50)}
    reordered = {"b": torch.ones(50), "a": torch.ones(3, 4)}
    first = weigh("random", RandomSettings(seed=7), tv)
    again = weigh("random", RandomSettings(seed=7), reordered)
    other = weigh("random", RandomSettings(seed=8), tv)
    assert list(first) == ["a", "b"] and list(again) == ["b", "a"]
    for name in tv:
        assert torch.equal(first[name], again[name])
        assert not torch.equal(first[name], other[name])
        assert first[name].shape == tv[name].shape and first[name].dtype == torch.float32
        assert ((first[name] >= 0) & (first[name] < 1)).all()
    assert first["b"].unique().numel() == 50  # drawn per entry, not one value broadcast


def test_pruning_threshold_is_global():
    # 25% of 8 entries: the two smallest |τ|, 0.1 and -0.2, lie in different tensors; 25% of each
    # tensor on its own would zero none of "a" (2 entries) and only -0.2 of "b" (6 entries)
    tv = {"b": t(0.5, -0.2, 4.0, 5.0, 6.0, 0.3), "a": t(0.1, 7.0)}
    w = weigh("pruning", PruningSettings(percent=25), tv)
    assert torch.equal(w["a"], t(0, 1))
    assert torch.equal(w["b"], t(1, 0, 1, 1, 1, 1))
    assert list(w) == ["b", "a"]


def test_pruning_zeroes_exactly_the_count_among_ties():
    # five entries of |τ| = 1 compete for 3 zeros (37.5% of 8); the earliest in sorted name order go
    tv = {"b": t(1, 1, 9, 9), "a": t(9, 1, -1, 1)}
    w = weigh("pruning", PruningSettings(percent=37.5), tv)
    assert torch.equal(w["a"], t(1, 0, 0, 0))
    assert torch.equal(w["b"], t(1, 1, 1, 1))


def test_pruning_rounds_the_count_down_from_the_decimal_percent():
    # 0.29% of 10,000 is 29, though 0.29 / 100 * 10_000 in binary floats is 28.999...
    tv = {"w": torch.arange(1, 10_001, dtype=torch.float32)}
    w = weigh("pruning", PruningSettings(percent=0.29), tv)["w"]
    assert int((w == 0).sum()) == 29 and torch.equal(w[:29], torch.zeros(29))
    assert int((weigh("pruning", PruningSettings(percent=0.295), tv)["w"] == 0).sum()) == 29


def test_pruning_nothing_is_tv():
    tv = {"a": t(0.0, -1.0), "b": torch.zeros(2, 2)}
    w = weigh("pruning", PruningSettings(percent=0), tv)
    for name in tv:
        assert torch.equal(w[name], torch.ones(tv[name].shape))
    assert torch.equal(weigh("pruning", PruningSettings(percent=100), tv)["b"], torch.zeros(2, 2))


# --------------------------------------------------------------------------- the edit


def models():
    theta_0 = {"w": t(1.0, 2.0, 3.0), "step": torch.tensor([5])}
    theta_fgt = {"w": t(1.5, 1.0, 3.0), "step": torch.tensor([6])}
    theta_full = {"w": t(2.0, 2.0, 2.0), "other": t(-4.0, 8.0)}
    return theta_full, theta_fgt, theta_0


def test_task_vector_of_floating_tensors():
    _, theta_fgt, theta_0 = models()
    tv = task_vector(theta_fgt, theta_0)
    assert list(tv) == ["w"]  # the integer buffer is skipped
    assert torch.equal(tv["w"], t(0.5, -1.0, 0.0))
    bf16 = task_vector({"w": theta_fgt["w"].bfloat16()}, {"w": theta_0["w"].bfloat16()})
    assert bf16["w"].dtype == torch.float32 and torch.equal(bf16["w"], t(0.5, -1.0, 0.0))


def test_edit_subtracts_the_weighted_task_vector():
    theta_full, theta_fgt, theta_0 = models()
    out = edit(theta_full, theta_fgt, theta_0, {"w": torch.ones(3)})
    assert torch.equal(out["w"], t(1.5, 3.0, 2.0))  # θ_full − (θ_fgt − θ_0)
    half = edit(theta_full, theta_fgt, theta_0, {"w": t(0.5, 0.25, 1.0)})
    assert torch.equal(half["w"], t(1.75, 2.25, 2.0))


def test_edit_with_zero_weights_and_absent_names_keeps_theta_full():
    theta_full, theta_fgt, theta_0 = models()
    theta_full["w"] = t(2.1, -0.0, 1e-8)
    out = edit(theta_full, theta_fgt, theta_0, {"w": torch.zeros(3)})
    assert torch.equal(out["w"], theta_full["w"])
    assert torch.equal(out["other"], t(-4.0, 8.0))
    assert list(out) == ["w", "other"]


def test_edit_keeps_bf16():
    theta_full, theta_fgt, theta_0 = models()
    full = {"w": theta_full["w"].bfloat16()}
    out = edit(full, {"w": theta_fgt["w"].bfloat16()}, {"w": theta_0["w"].bfloat16()}, {"w": torch.ones(3)})
    assert out["w"].dtype == torch.bfloat16
    assert torch.equal(out["w"], t(1.5, 3.0, 2.0).bfloat16())


@pytest.mark.parametrize("broken", ["theta_fgt", "theta_0", "weights"])
def test_edit_names_a_mismatched_parameter(broken):
    theta_full, theta_fgt, theta_0 = models()
    inputs = {"theta_fgt": theta_fgt, "theta_0": theta_0, "weights": {"w": torch.ones(3)}}
    inputs[broken] = {**inputs[broken], "w": torch.ones(2)}
    with pytest.raises(ValueError, match=r"'w' has shape \(2,\)"):
        edit(theta_full, **inputs)


@pytest.mark.parametrize("broken", ["theta_fgt", "theta_0"])
def test_edit_names_a_parameter_missing_from_a_model(broken):
    theta_full, theta_fgt, theta_0 = models()
    inputs = {"theta_fgt": theta_fgt, "theta_0": theta_0, "weights": {"w": torch.ones(3)}}
    inputs[broken] = {}
    with pytest.raises(ValueError, match="'w' is missing"):
        edit(theta_full, **inputs)


def test_edit_refuses_weights_for_names_theta_full_lacks():
    theta_full, theta_fgt, theta_0 = models()
    with pytest.raises(ValueError, match="'extra'"):
        edit(theta_full, theta_fgt, theta_0, {"w": torch.ones(3), "extra": torch.ones(1)})


# --------------------------------------------------------------------------- input checks and registry

GRADIENT_WEIGHTINGS = {"grad": GradSettings(), "fisher": FisherSettings(), "tau": TauSettings(tau=1.0),
                       "softmax": None}


@pytest.mark.parametrize("name", sorted(GRADIENT_WEIGHTINGS))
def test_gradient_weightings_need_both_gradients(name):
    tv, g = {"w": torch.zeros(2)}, {"w": torch.ones(2)}
    with pytest.raises(ValueError, match=f"'{name}'.*g_f is None"):
        weigh(name, GRADIENT_WEIGHTINGS[name], tv, None, g)
    with pytest.raises(ValueError, match=f"'{name}'.*g_r is None"):
        weigh(name, GRADIENT_WEIGHTINGS[name], tv, g, None)
    with pytest.raises(ValueError, match=f"'{name}'.*g_r lacks parameter.*'v'"):
        weigh(name, GRADIENT_WEIGHTINGS[name], {**tv, "v": torch.zeros(1)}, {**g, "v": torch.ones(1)}, g)


@pytest.mark.parametrize("name", sorted(GRADIENT_WEIGHTINGS))
def test_gradient_shape_mismatch_names_the_parameter(name):
    tv = {"layer.weight": torch.zeros(2, 3)}
    with pytest.raises(ValueError, match=r"g_f\['layer.weight'\] has shape \(3, 2\), the task vector's is \(2, 3\)"):
        weigh(name, GRADIENT_WEIGHTINGS[name], tv, {"layer.weight": torch.ones(3, 2)},
              {"layer.weight": torch.ones(2, 3)})


def test_registry_help_and_gradient_use():
    assert set(WEIGHTINGS) == {"tv", "weighted", "grad", "fisher", "tau", "softmax", "random", "pruning"}
    for spec in WEIGHTINGS.specs():
        assert spec.help and "\n" not in spec.help, spec.name
    assert {spec.name for spec in WEIGHTINGS.specs() if spec.uses_gradients} == {"grad", "fisher", "tau", "softmax"}


def test_settings_bounds():
    with pytest.raises(ValueError, match="omega.*maximum"):
        WEIGHTINGS["weighted"].parse({"omega": 1.5}, "edit.weighted")
    with pytest.raises(ValueError, match="percent.*maximum"):
        WEIGHTINGS["pruning"].parse({"percent": 101}, "edit.pruning")
    assert WEIGHTINGS["pruning"].parse(None, "edit.pruning") == PruningSettings(percent=0.5)
