"""SIMU's critical neurons (localizers/simu.py): the integrated-gradients attribution of the down
projections' output neurons against finite differences and completeness, on models built so that
the decisive neuron is known, and the per-layer threshold, the ratio cap and the two variants."""

import pytest
import torch
import torch.nn.functional as F

from unloc.data.collate import IGNORE, collate
from unloc.localizers import LOCALIZERS, LocalizerInputs, localize
from unloc.localizers.simu import (
    SimuSettings,
    critical_neurons,
    integrated_gradients,
    simu_mask,
    within_ratio,
)
from unloc.masks import model_mask_shape
from unloc.registry import ConfigError
from unloc.scoring import sequence_logprob

from tinymodels import make_tiny_model, random_examples


def down_proj(model, layer):
    return model.model.layers[layer].mlp.down_proj


def inputs_for(model, forget, retain) -> LocalizerInputs:
    return LocalizerInputs(model_config=model.config.to_dict(), model=model, pad_id=0,
                           sets={"forget": forget, "retain": retain})


def train_one_row(model, layer: int, row: int, examples, sign: float = 1.0, steps: int = 30, lr: float = 0.5):
    """Move row ``row`` of the layer's down projection alone along the gradient of the examples'
    answer log-probability (sign 1: to support the answers, -1: to oppose them)."""
    weight = down_proj(model, layer).weight
    batch = collate(examples, 0)
    for _ in range(steps):
        (grad,) = torch.autograd.grad(sequence_logprob(model, batch).sum(), weight)
        with torch.no_grad():
            weight[row] += sign * lr * grad[row] / grad[row].norm()


def answer_log_probability(model, batch, layer: int, change) -> torch.Tensor:
    """Σ log p(answer tokens) in fp64, with layer ``layer``'s down_proj output replaced by ``change(output)``."""
    hook = down_proj(model, layer).register_forward_hook(lambda module, args, output: change(output))
    try:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    finally:
        hook.remove()
    labels = batch["labels"][:, 1:]
    logp = F.log_softmax(logits[:, :-1].double(), -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    return (logp * (labels != IGNORE)).sum()


def predicting_positions(examples) -> torch.Tensor:
    """[n, length]: the positions whose next token is an answer token, from the examples' labels."""
    batch = collate(examples, 0)
    out = torch.zeros_like(batch["labels"], dtype=torch.bool)
    for i, e in enumerate(examples):
        for t, label in enumerate(e.labels):
            if label != IGNORE:
                out[i, t - 1] = True
    return out


# --------------------------------------------------------------------------- settings


def test_settings_parse_with_defaults_and_unknown_keys_fail_naming_them():
    spec = LOCALIZERS["simu"]
    assert spec.parse({}, "masks.simu") == SimuSettings(threshold=0.3, steps=5, batch_size=16, mask="dual")
    assert spec.granularity == "rows" and spec.scores and not spec.seeded and spec.roles == ("forget", "retain")
    assert spec.parse({"mask": "forget_only", "threshold": 1}, "masks.simu").threshold == 1.0
    with pytest.raises(ConfigError, match=r"masks\.simu\.treshold: unknown setting; did you mean 'threshold'"):
        spec.parse({"treshold": 0.5}, "masks.simu")
    with pytest.raises(ConfigError, match=r"masks\.simu\.threshold: 0(\.0)? must be greater than 0"):
        spec.parse({"threshold": 0}, "masks.simu")
    with pytest.raises(ConfigError, match=r"masks\.simu\.threshold: 1.5 is greater than the maximum"):
        spec.parse({"threshold": 1.5}, "masks.simu")
    with pytest.raises(ConfigError, match=r"masks\.simu\.mask: 'retain_only' is not one of"):
        spec.parse({"mask": "retain_only"}, "masks.simu")


# --------------------------------------------------------------------------- the attribution


def gradient_at_scaled_output(model, batch, layer: int, positions, alpha: float):
    """β and ∂log P/∂a, the layer's whole down_proj output replaced by a leaf a (α·β at ``positions``, β elsewhere)."""
    leaf = {}

    def replace(out):
        leaf["beta"] = out.detach()
        leaf["a"] = torch.where(positions, alpha * out, out).detach().requires_grad_()
        return leaf["a"]

    (grad,) = torch.autograd.grad(answer_log_probability(model, batch, layer, replace), leaf["a"])
    return leaf["beta"], grad


@torch.no_grad()
def derivative_along_neuron(model, batch, layer: int, positions, alpha: float, k: int, eps: float = 1e-3):
    """d/dε log P(α·β + ε β_k e_k) at ε = 0 (the answer positions moved, the rest at β), by central differences."""
    along_k = torch.zeros(down_proj(model, layer).out_features, dtype=torch.float64)
    along_k[k] = 1.0
    moved = lambda e: lambda out: torch.where(positions, alpha * out + e * out * along_k, out)
    up, down = (answer_log_probability(model, batch, layer, moved(e)) for e in (eps, -eps))
    return (up - down) / (2 * eps)


def test_attribution_is_the_mean_over_steps_of_beta_times_the_gradient_at_the_scaled_output():
    """(1/m) Σ_j Σ_t β_{k,t} ∂log P/∂a_{k,t} at a = (j/m)β on the answer positions, by autograd with the layer's
    whole output a leaf, and (coarser: the norms compute in fp32 whatever the model's dtype) by finite differences."""
    model, examples = make_tiny_model(seed=1).double(), random_examples(1, seed=2)
    layer, steps = 0, 3
    got = integrated_gradients(model, examples, 0, steps, batch_size=1)[layer].double()
    batch, positions = collate(examples, 0), predicting_positions(examples)[..., None]
    by_autograd = torch.zeros(32, dtype=torch.float64)
    by_differences = torch.zeros(32, dtype=torch.float64)
    for j in range(1, steps + 1):
        beta, grad = gradient_at_scaled_output(model, batch, layer, positions, j / steps)
        by_autograd += (beta * grad * positions).sum((0, 1)) / steps
        for k in range(32):
            by_differences[k] += derivative_along_neuron(model, batch, layer, positions, j / steps, k) / steps
    largest = float(by_autograd.abs().max())
    assert largest > 1e-3  # a test of something
    assert torch.allclose(got, by_autograd, rtol=1e-4, atol=1e-6 * largest)
    assert torch.allclose(got, by_differences, rtol=1e-2, atol=1e-2 * largest)


def test_a_layer_s_attributions_sum_to_the_log_probability_it_adds_over_a_zeroed_output():
    """Completeness of integrated gradients along the joint path: Σ_k Att_k → log P(β) − log P(0) as m grows."""
    model, examples = make_tiny_model(seed=5), random_examples(4, seed=6)
    train_one_row(model, layer=0, row=3, examples=examples)  # so that each layer's output matters
    train_one_row(model, layer=1, row=9, examples=examples, sign=-1.0)
    batch, positions = collate(examples, 0), predicting_positions(examples)[..., None]
    attributions = integrated_gradients(model, examples, 0, steps=400, batch_size=4)
    for layer in range(2):
        total = float(attributions[layer].sum())
        with torch.no_grad():
            full = answer_log_probability(model, batch, layer, lambda out: out)
            zeroed = answer_log_probability(model, batch, layer, lambda out: torch.where(positions, 0 * out, out))
        assert abs(full - zeroed) > 0.3  # the layer matters
        assert total == pytest.approx(float(full - zeroed), rel=0.01)  # a right Riemann sum: O(1/m) off


def test_attribution_does_not_depend_on_the_batch_size_and_leaves_the_model_as_it_was():
    model, examples = make_tiny_model(seed=7), random_examples(5, seed=8)
    model.model.embed_tokens.weight.requires_grad_(False)  # a flag the computation must restore
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    one, all_five = (integrated_gradients(model, examples, 0, steps=2, batch_size=b) for b in (1, 5))
    for layer in range(2):
        assert one[layer].shape == (32,)
        assert torch.allclose(one[layer], all_five[layer], rtol=1e-4, atol=1e-7)
    assert all(p.grad is None for p in model.parameters())
    assert not model.model.embed_tokens.weight.requires_grad and down_proj(model, 0).weight.requires_grad
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())


def test_the_neuron_trained_to_support_the_forget_answers_scores_highest_and_is_critical():
    model, forget = make_tiny_model(seed=3), random_examples(4, seed=4)
    train_one_row(model, layer=0, row=11, examples=forget)
    train_one_row(model, layer=1, row=5, examples=forget, sign=-1.0)  # opposes the answers: a negative score
    result = localize("simu", SimuSettings(), inputs_for(model, forget, random_examples(4, seed=9)), 1.0, 7)
    scores = result.scores
    assert int(scores[0].argmax()) == 11 and scores[0][11] > 10 * scores[0][torch.arange(32) != 11].abs().max()
    assert int(scores[1].argmin()) == 5 and scores[1][5] < 0
    assert bool(result.mask.layers[0][11]) and not result.mask.layers[1][5]
    assert result.mask.layers[0].sum() == 1  # nothing else in layer 0 comes near 0.3 of it


# --------------------------------------------------------------------------- the mask


def test_threshold_one_selects_each_layer_s_argmax_and_lower_thresholds_a_superset():
    scores = {0: torch.tensor([0.2, 1.0, 0.5, -3.0]), 1: torch.tensor([-1.0, -0.5, -2.0, -0.1]),
              2: torch.tensor([0.0, 4.0, 1.0, 3.9])}
    top = critical_neurons(scores, 1.0)
    assert top[0].tolist() == [False, True, False, False]
    assert not top[1].any()  # no neuron of layer 1 supports the answers
    assert top[2].tolist() == [False, True, False, False]
    assert critical_neurons(scores, 0.5)[0].tolist() == [False, True, True, False]  # 0.5 ≥ 0.5 · 1.0
    assert critical_neurons(scores, 0.2)[2].tolist() == [False, True, True, True]

    model, forget = make_tiny_model(seed=10, layers=3), random_examples(6, seed=11)
    inputs = inputs_for(model, forget, [])
    masks = {t: localize("simu", SimuSettings(threshold=t), inputs, 1.0, 7).mask for t in (1.0, 0.6, 0.3, 0.1)}
    attributed = localize("simu", SimuSettings(), inputs, 1.0, 7).scores
    for layer in range(3):
        assert torch.equal(masks[1.0].layers[layer].nonzero().flatten(), attributed[layer].argmax().reshape(1))
    for higher, lower in ((1.0, 0.6), (0.6, 0.3), (0.3, 0.1)):
        assert masks[lower].count() > masks[higher].count() and not (masks[higher].flat() & ~masks[lower].flat()).any()
    assert masks[0.3].granularity == "rows"
    assert masks[0.3].shape == model_mask_shape(model.config.to_dict(), "rows") == (3, 32)


def test_the_ratio_caps_the_critical_neurons_by_relative_attribution_and_never_pads():
    # relative scores: layer 0 [0.1, 1, 0.5, -], layer 1 [1, 0.9, 0.05, 0.45]
    scores = {0: torch.tensor([0.1, 1.0, 0.5, -2.0]), 1: torch.tensor([20.0, 18.0, 1.0, 9.0])}
    critical = critical_neurons(scores, 0.4)  # 0.5, 1 | 1, 0.9, 0.45: five of eight
    capped = within_ratio(critical, scores, 3 / 8)  # the three highest relative: layer 0's 1, layer 1's 1 and 0.9
    assert capped[0].tolist() == [False, True, False, False] and capped[1].tolist() == [True, True, False, False]
    assert sum(int(c.sum()) for c in within_ratio(critical, scores, 7 / 8).values()) == 5  # not filled up to 7
    assert simu_mask(scores, None, 0.4, 1.0).count() == 5


def test_forget_only_is_dual_less_the_neurons_critical_for_the_retain_set():
    forget = {0: torch.tensor([1.0, 0.9, 0.1, 0.5])}
    retain = {0: torch.tensor([0.2, 2.0, 0.3, -1.0])}  # neuron 1 is critical for both sets
    dual, forget_only = simu_mask(forget, None, 0.4, 1.0), simu_mask(forget, retain, 0.4, 1.0)
    assert dual.layers[0].tolist() == [True, True, False, True]
    assert forget_only.layers[0].tolist() == [True, False, False, True]

    model, forget_set, retain_set = make_tiny_model(seed=12), random_examples(4, seed=13), random_examples(6, seed=14)
    train_one_row(model, layer=1, row=20, examples=forget_set)
    variants = {mask: localize("simu", SimuSettings(mask=mask), inputs_for(model, forget_set, retain_set), 1.0, 7)
                for mask in ("dual", "forget_only")}
    dual, forget_only = variants["dual"].mask, variants["forget_only"].mask
    assert not (forget_only.flat() & ~dual.flat()).any() and dual.layers[1][20]
    assert set(variants["forget_only"].details) == {"retain_scores"} and not variants["dual"].details
    # the retain set the same as the forget set: every critical neuron is critical for both, the trained one too
    same = localize("simu", SimuSettings(mask="forget_only"), inputs_for(model, forget_set, forget_set), 1.0, 7)
    assert same.mask.count() == 0 and torch.equal(same.details["retain_scores"][1], same.scores[1])
