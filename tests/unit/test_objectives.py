"""Unlearning objectives (App. A): known values and the direction of a gradient step."""

import copy
import math

import pytest
import torch

from tinymodels import make_tiny_model, random_lm_batch
from unloc.objectives import (OBJECTIVES, answer_nll, dpo_loss, layer_hidden_states, npo_loss, rmu_loss,
                              rmu_steering, sequence_logprob, wga_loss)


def sgd_step(model, loss, lr=0.05):
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= lr * p.grad


@torch.no_grad()
def seq_logp(model, batch):
    return sequence_logprob(model, batch)


def test_registry_names_the_four_objectives():
    assert set(OBJECTIVES) == {"wga", "npo", "dpo", "rmu"}


def test_wga_with_alpha_zero_is_gradient_ascent(tiny_model):
    batch = random_lm_batch()
    assert wga_loss(tiny_model, batch, alpha=0.0).item() == pytest.approx(-answer_nll(tiny_model, batch).item(), rel=1e-6)


def test_wga_weights_tokens_by_their_probability(tiny_model):
    batch = random_lm_batch()
    logits = tiny_model(input_ids=batch["input_ids"]).logits[:, :-1]
    logp = torch.log_softmax(logits, -1).gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
    mask = batch["labels"][:, 1:] != -100
    expected = (logp.exp() ** 0.1 * logp)[mask].mean()
    assert wga_loss(tiny_model, batch, alpha=0.1).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("name", ["wga", "npo"])
def test_a_descent_step_lowers_the_forget_likelihood(name):
    model, batch = make_tiny_model(seed=1).train(), random_lm_batch(seed=2)
    before = seq_logp(model, batch)
    kwargs = {"alpha": 0.1} if name == "wga" else {"beta": 0.5, "ref_logprob": before}
    sgd_step(model, OBJECTIVES[name](model, batch, **kwargs))
    assert (seq_logp(model, batch) < before).all()


def test_npo_at_the_reference_is_two_over_beta_log_two(tiny_model):
    batch = random_lm_batch()
    ref = seq_logp(tiny_model, batch)
    assert npo_loss(tiny_model, batch, beta=0.5, ref_logprob=ref).item() == pytest.approx(4 * math.log(2), rel=1e-5)
    # far below the reference the loss vanishes: NPO stops pushing once forgotten
    assert npo_loss(tiny_model, batch, beta=0.5, ref_logprob=ref + 200).item() < 1e-6


def test_dpo_at_the_reference_and_its_direction():
    model = make_tiny_model(seed=4).train()
    batch = {"main": random_lm_batch(seed=1), "win": random_lm_batch(seed=2)}
    ref_win, ref_lose = seq_logp(model, batch["win"]), seq_logp(model, batch["main"])
    loss = dpo_loss(model, batch, beta=0.5, ref_win=ref_win, ref_lose=ref_lose)
    assert loss.item() == pytest.approx(2 * math.log(2), rel=1e-5)
    sgd_step(model, loss)
    margin = (seq_logp(model, batch["win"]) - ref_win) - (seq_logp(model, batch["main"]) - ref_lose)
    assert (margin > 0).all()


def test_rmu_is_the_mean_squared_distance_to_the_steering_vector(tiny_model):
    batch = random_lm_batch()
    batch["attention_mask"][0, -3:] = 0  # padding is not scored
    steering = rmu_steering(32, scale=2.0, seed=0)
    assert steering.norm().item() == pytest.approx(2.0) and (steering >= 0).all()
    h = layer_hidden_states(tiny_model, batch, layer=0)
    m = batch["attention_mask"].float()
    expected = ((((h - steering) ** 2).sum(-1) * m).sum(1) / m.sum(1)).mean()
    assert rmu_loss(tiny_model, batch, layer=0, steering=steering).item() == pytest.approx(expected.item(), rel=1e-5)


def test_rmu_step_moves_hidden_states_towards_the_steering_vector():
    model, batch = make_tiny_model(seed=2).train(), random_lm_batch(seed=3)
    steering = rmu_steering(32, scale=2.0, seed=1)
    before = rmu_loss(model, batch, layer=1, steering=steering)
    sgd_step(model, before, lr=0.01)
    assert rmu_loss(model, batch, layer=1, steering=steering).item() < before.item()


def test_rmu_layer_gets_no_gradient_from_later_layers():
    model, batch = make_tiny_model(seed=2), random_lm_batch(seed=3)
    rmu_loss(model, batch, layer=0, steering=rmu_steering(32, 2.0, 0)).backward()
    assert model.model.layers[1].mlp.down_proj.weight.grad is None
    assert model.model.layers[0].mlp.down_proj.weight.grad.abs().sum() > 0
