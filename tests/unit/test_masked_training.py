"""Masked training equals the full-parameter optimizer restricted to the mask, step by step, at
every mask granularity and for every registered optimizer (DESIGN §5)."""

import copy

import pytest
import torch

from unloc import io
from unloc.localizers import oracle_mask
from unloc.masks import Mask
from unloc.models import MaskedDownProj, attach_masked, detach_masked, down_proj
from unloc.optim import OPTIMIZERS, NaiveMaskedOptimizer, build_optimizer
from unloc.scoring import answer_nll

from tinymodels import make_tiny_model, random_lm_batch

STEPS, LR, WD = 5, 1e-2, 0.1


def masks(seed=7) -> dict[str, Mask]:
    """A mask of each granularity for the tiny model (2 layers, d_model 32, d_ff 64)."""
    g = torch.Generator().manual_seed(seed)
    return {"columns": oracle_mask(n_layers=2, d_ff=64, ratio=0.1, seed=seed),
            "rows": Mask({layer: torch.rand(32, generator=g) < 0.15 for layer in range(2)}, "rows"),
            "elements": Mask({layer: torch.rand(32, 64, generator=g) < 0.1 for layer in range(2)}, "elements")}


def allowed_entries(mask: Mask, layer: int) -> torch.Tensor:
    """[d_model, d_ff] bool: the entries of the layer's down_proj the mask lets move."""
    m = mask.layers[layer]
    return {"columns": lambda: m[None, :].expand(32, 64), "rows": lambda: m[:, None].expand(32, 64),
            "elements": lambda: m}[mask.granularity]()


def naive_reference(model, mask, batches, choice):
    opt = NaiveMaskedOptimizer(model, mask, LR, WD, choice)
    states = []
    for batch in batches:
        opt.zero_grad()
        answer_nll(model, batch).backward()
        opt.step()
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    return states


def efficient(model, mask, batches, choice):
    params = attach_masked(model, mask.granularity, mask.indices())
    opt = build_optimizer(choice, params, LR, WD)
    states = []
    for batch in batches:
        opt.zero_grad()
        answer_nll(model, batch).backward()
        opt.step()
        snapshot = copy.deepcopy(model)
        detach_masked(snapshot)
        states.append({k: v.detach().clone() for k, v in snapshot.state_dict().items()})
    detach_masked(model)
    return states, opt


@pytest.mark.parametrize("optimizer", OPTIMIZERS.names())
@pytest.mark.parametrize("granularity", io.GRANULARITIES)
def test_masked_training_matches_the_naive_reference_bit_for_bit(optimizer, granularity):
    choice = OPTIMIZERS.choose(optimizer, "optimizer")
    base = make_tiny_model()
    mask = masks()[granularity]
    batches = [random_lm_batch(seed=s) for s in range(STEPS)]
    ref = naive_reference(copy.deepcopy(base).train(), mask, batches, choice)
    got, opt = efficient(copy.deepcopy(base).train(), mask, batches, choice)
    for step, (a, b) in enumerate(zip(ref, got)):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"step {step}: {key} differs"
    # optimizer state exists only for the masked entries
    trainable = sum(p.numel() for group in opt.param_groups for p in group["params"])
    assert trainable == sum(int(allowed_entries(mask, layer).sum()) for layer in mask.layers)


@pytest.mark.parametrize("granularity", io.GRANULARITIES)
def test_only_masked_entries_change(granularity):
    model = make_tiny_model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mask = masks(seed=3)[granularity]
    efficient(model, mask, [random_lm_batch(seed=s) for s in range(3)], OPTIMIZERS.choose("adamw", "optimizer"))
    after = model.state_dict()
    for key in before:
        if key.endswith("mlp.down_proj.weight"):
            allowed = allowed_entries(mask, int(key.split(".")[2]))
            assert torch.equal(before[key][~allowed], after[key][~allowed]), key
            assert (before[key][allowed] != after[key][allowed]).all(), f"{key}: a masked entry did not move"
        else:
            assert torch.equal(before[key], after[key]), f"{key} changed but is outside the mask"


@pytest.mark.parametrize("granularity", io.GRANULARITIES)
def test_masked_forward_is_identical_to_plain(tiny_model, granularity):
    batch = random_lm_batch()
    plain = tiny_model(input_ids=batch["input_ids"]).logits
    mask = masks(seed=1)[granularity]
    attach_masked(tiny_model, granularity, mask.indices())
    assert isinstance(tiny_model.model.layers[0].mlp.down_proj, MaskedDownProj)
    masked = tiny_model(input_ids=batch["input_ids"]).logits
    assert torch.equal(plain, masked)
    assert isinstance(down_proj(tiny_model, 0), torch.nn.Linear)


def test_mask_that_does_not_fit_is_refused(tiny_model):
    mask = oracle_mask(n_layers=2, d_ff=128, ratio=0.1, seed=0)
    with pytest.raises(ValueError, match="d_ff"):
        attach_masked(tiny_model, "columns", mask.indices())


def test_the_training_loop_calls_an_optimizers_second_order_hook_after_every_step(monkeypatch):
    """The hook a curvature-keeping optimizer (Sophia) registers: called with the optimizer, the
    loss function and the step's batch, after the step's update, once per step."""
    from unloc.data.collate import Encoded
    from unloc.optim import OptimizerSpec, adamw
    from unloc.train import Batcher, TrainSettings, train

    calls = []

    def hook(optimizer, loss_fn, batch, step):
        calls.append((type(optimizer).__name__, step, float(loss_fn(batch))))

    spec = OptimizerSpec(name="adamw_with_hook", fn=lambda p, lr, wd, s: adamw(p, lr, wd), second_order=hook)
    monkeypatch.setitem(OPTIMIZERS._specs, spec.name, spec)
    model = make_tiny_model().train()
    examples = [Encoded(list(range(3, 13)), [-100] * 4 + list(range(7, 13)), 5) for _ in range(6)]
    cfg = TrainSettings(lr=1e-2, epochs=2, batch_size=4, optimizer=spec.name)
    log = train(list(model.parameters()), lambda b: answer_nll(model, b["main"]), Batcher(examples, 4, 0, seed=0),
                cfg, seed=0)
    assert [(name, step) for name, step, _ in calls] == [("AdamW", s) for s in range(4)]
    # after the update: the hook sees the loss the next step starts from, lower than the logged one
    assert all(after < row["loss"] for (_, _, after), row in zip(calls, log))
