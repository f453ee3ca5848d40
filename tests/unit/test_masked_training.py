"""Masked training equals full-parameter AdamW restricted to the mask, step by step (DESIGN §5)."""

import copy

import pytest
import torch

from tinymodels import make_tiny_model, random_lm_batch
from unloc.masks import target_mask
from unloc.models import attach_masked_columns, detach_masked_columns, down_proj
from unloc.objectives import answer_nll
from unloc.optim import NaiveMaskedAdamW, adamw

STEPS, LR, WD = 5, 1e-2, 0.1


def naive_reference(model, mask, batches):
    opt = NaiveMaskedAdamW(model, mask.layers, LR, WD)
    states = []
    for batch in batches:
        opt.zero_grad()
        answer_nll(model, batch).backward()
        opt.step()
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    return states


def efficient(model, mask, batches):
    params = attach_masked_columns(model, mask.indices())
    opt = adamw(params, LR, WD)
    states = []
    for batch in batches:
        opt.zero_grad()
        answer_nll(model, batch).backward()
        opt.step()
        snapshot = copy.deepcopy(model)
        detach_masked_columns(snapshot)
        states.append({k: v.detach().clone() for k, v in snapshot.state_dict().items()})
    detach_masked_columns(model)
    return states, opt


def test_masked_adamw_matches_naive_reference_bit_for_bit():
    base = make_tiny_model()
    mask = target_mask(n_layers=2, d_ff=64, ratio=0.1, seed=7)
    batches = [random_lm_batch(seed=s) for s in range(STEPS)]
    ref = naive_reference(copy.deepcopy(base).train(), mask, batches)
    got, opt = efficient(copy.deepcopy(base).train(), mask, batches)
    for step, (a, b) in enumerate(zip(ref, got)):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"step {step}: {key} differs"
    # optimizer state exists only for the masked columns
    state_numel = sum(s["exp_avg"].numel() for s in opt.state.values())
    assert state_numel == mask.count() * 32


def test_only_masked_value_vectors_change(tiny_model):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    mask = target_mask(n_layers=2, d_ff=64, ratio=0.25, seed=3)
    efficient(tiny_model.train(), mask, [random_lm_batch(seed=s) for s in range(3)])
    after = tiny_model.state_dict()
    for key in before:
        if key.endswith("mlp.down_proj.weight"):
            layer = int(key.split(".")[2])
            m = mask.layers[layer]
            assert torch.equal(before[key][:, ~m], after[key][:, ~m]), key
            assert (before[key][:, m] != after[key][:, m]).any(dim=0).all(), f"{key}: a masked column did not move"
        else:
            assert torch.equal(before[key], after[key]), f"{key} changed but is outside the mask"


def test_masked_forward_is_identical_to_plain(tiny_model):
    batch = random_lm_batch()
    plain = tiny_model(input_ids=batch["input_ids"]).logits
    attach_masked_columns(tiny_model, target_mask(2, 64, 0.1, 1).indices())
    masked = tiny_model(input_ids=batch["input_ids"]).logits
    assert torch.equal(plain, masked)
    assert isinstance(down_proj(tiny_model, 0), torch.nn.Module)


def test_mask_that_does_not_fit_is_refused(tiny_model):
    mask = target_mask(n_layers=2, d_ff=128, ratio=0.1, seed=0)
    with pytest.raises(ValueError, match="d_ff"):
        attach_masked_columns(tiny_model, mask.indices())
