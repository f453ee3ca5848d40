"""SIMU's Sophia-style optimizer (optim.Sophia): eqs. 3-4 against a by-hand computation, masked
training against the full-parameter definition, the GNB Hessian refresh, and its config."""

import copy

import pytest
import torch

from unloc import io
from unloc.localizers import oracle_mask
from unloc.masks import Mask
from unloc.models import attach_masked, detach_masked, gather
from unloc.optim import OPTIMIZERS, NaiveMaskedOptimizer, Sophia, SophiaSettings, build_optimizer, sophia_gnb_refresh
from unloc.registry import ConfigError
from unloc.scoring import answer_nll

from tinymodels import make_tiny_model, random_lm_batch

# --------------------------------------------------------------------------- eqs. 3-4 by hand


def sophia_by_hand(theta, grads, lr, wd, betas, gamma, eps):
    """Eqs. 3-4 with decoupled weight decay, one Python float at a time; returns θ, m, H."""
    beta1, beta2 = betas
    theta, m, h = list(theta), [0.0] * len(theta), [0.0] * len(theta)
    for g_t in grads:
        for i, g in enumerate(g_t):
            m[i] = beta1 * m[i] + (1 - beta1) * g
            h[i] = beta2 * h[i] + (1 - beta2) * g * g
            theta[i] -= lr * wd * theta[i]
            theta[i] -= lr * max(-1.0, min(1.0, m[i] / max(gamma * h[i], eps)))
    return theta, m, h


def run_sophia(theta, grads, lr, wd, settings):
    p = torch.nn.Parameter(torch.tensor(theta))
    opt = Sophia([p], lr, wd, settings)
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
    return p.detach(), opt.state[p]


THETA = [1.0, -2.0, 0.5, 3.0]
LR, WD = 0.1, 0.2
SETTINGS = SophiaSettings(betas=(0.9, 0.8), gamma=0.5, eps=1e-3)
# On the first step m / (γH) = (1−β1) / (γ (1−β2) g) = 1 / g: entry 0 (g = 0.5) is clipped at +1, entry 1
# (g = −4) is not; entry 2's γH = 1e-9 falls below ε = 1e-3, so ε divides; entry 3 only decays.
GRADS = [[0.5, -4.0, 1e-4, 0.0], [0.3, -2.0, -1e-4, 1.0], [-0.5, 3.0, 2e-4, 0.0]]


def test_first_step_clips_at_one_and_floors_the_denominator_at_eps():
    got, _ = run_sophia(THETA, GRADS[:1], LR, WD, SETTINGS)
    decayed = [t * (1 - LR * WD) for t in THETA]
    expected = [decayed[0] - LR * 1.0,  # clip binds: m / (γH) = 2
                decayed[1] - LR * (-0.25),  # m / (γH) = −0.4 / 1.6
                decayed[2] - LR * (1e-5 / 1e-3),  # max(γH, ε) = ε: m / ε = 0.01
                decayed[3]]  # no gradient yet: weight decay alone
    torch.testing.assert_close(got, torch.tensor(expected), rtol=1e-6, atol=1e-7)


def test_three_steps_match_eqs_3_and_4_by_hand():
    got, state = run_sophia(THETA, GRADS, LR, WD, SETTINGS)
    theta, m, h = sophia_by_hand(THETA, GRADS, LR, WD, SETTINGS.betas, SETTINGS.gamma, SETTINGS.eps)
    torch.testing.assert_close(got, torch.tensor(theta), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(state["exp_avg"], torch.tensor(m), rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(state["hessian"], torch.tensor(h), rtol=1e-6, atol=1e-15)
    assert state["exp_avg"].dtype == state["hessian"].dtype == torch.float32


def test_with_gnb_the_step_leaves_the_hessian_to_the_hook():
    p = torch.nn.Parameter(torch.tensor(THETA))
    opt = Sophia([p], LR, 0.0, SophiaSettings(hessian="gnb", gamma=0.5, eps=1e-3))
    opt.state_of(p)["hessian"].fill_(4.0)  # γH = 2
    p.grad = torch.tensor([10.0, -10.0, 1.0, 0.0])
    opt.step()
    assert torch.equal(opt.state[p]["hessian"], torch.full((4,), 4.0))
    # m = 0.035·g: the step divides it by the hook's γH = 2, clipped at ±1
    expected = [t - LR * max(-1.0, min(1.0, 0.035 * g / 2)) for t, g in zip(THETA, [10.0, -10.0, 1.0, 0.0])]
    torch.testing.assert_close(p.detach(), torch.tensor(expected), rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- masked training

MASK_LR, MASK_WD, MASK_STEPS = 1e-2, 0.5, 4
CONFIG = {"name": "sophia", "gamma": 0.05, "betas": [0.9, 0.95]}


def mask_of(granularity: str) -> Mask:
    """A mask of ``granularity`` for the tiny model (2 layers, d_model 32, d_ff 64)."""
    g = torch.Generator().manual_seed(5)
    return {"columns": lambda: oracle_mask(n_layers=2, d_ff=64, ratio=0.1, seed=5),
            "rows": lambda: Mask({layer: torch.rand(32, generator=g) < 0.15 for layer in range(2)}, "rows"),
            "elements": lambda: Mask({layer: torch.rand(32, 64, generator=g) < 0.1 for layer in range(2)},
                                     "elements")}[granularity]()


def train_naive(model, mask, batches, choice) -> dict:
    opt = NaiveMaskedOptimizer(model, mask, MASK_LR, MASK_WD, choice)
    for batch in batches:
        opt.zero_grad()
        answer_nll(model, batch).backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train_masked(model, mask, batches, choice) -> dict:
    opt = build_optimizer(choice, attach_masked(model, mask.granularity, mask.indices()), MASK_LR, MASK_WD)
    for batch in batches:
        opt.zero_grad()
        answer_nll(model, batch).backward()
        opt.step()
    detach_masked(model)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("granularity", io.GRANULARITIES)
def test_masked_sophia_equals_the_naive_reference_and_leaves_the_rest_alone(granularity):
    choice = OPTIMIZERS.choose(CONFIG, "optimizer")
    base, mask = make_tiny_model().train(), mask_of(granularity)
    batches = [random_lm_batch(seed=s) for s in range(MASK_STEPS)]
    ref = train_naive(copy.deepcopy(base), mask, batches, choice)
    got = train_masked(copy.deepcopy(base), mask, batches, choice)
    start = base.state_dict()
    for key in start:
        assert torch.equal(ref[key], got[key]), f"{key} differs from the naive reference"
        if not key.endswith("mlp.down_proj.weight"):
            assert torch.equal(got[key], start[key]), f"{key} moved but is outside the mask"
            continue
        layer = int(key.split(".")[2])
        moved = gather(got[key] != start[key], granularity, mask.indices()[layer])
        assert moved.all(), f"{key}: a masked entry did not move"
        # weight decay > 0 would shrink every entry it reached: outside the mask none may change
        assert int((got[key] != start[key]).sum()) == moved.numel(), f"{key}: an entry outside the mask moved"


def test_sophia_in_the_training_loop_lowers_the_loss():
    from unloc.data.collate import Encoded
    from unloc.train import Batcher, TrainSettings, train

    model = make_tiny_model().train()
    examples = [Encoded(list(range(3, 13)), [-100] * 4 + list(range(7, 13)), 5) for _ in range(4)]
    cfg = TrainSettings(lr=1e-2, epochs=5, batch_size=4, optimizer="sophia")
    log = train(list(model.parameters()), lambda b: answer_nll(model, b["main"]), Batcher(examples, 4, 0, seed=0),
                cfg, seed=0)
    assert log[-1]["loss"] < log[0]["loss"]


def test_masked_training_with_gnb_gets_the_model_from_the_loop():
    """The loop hands the model to the optimizer, so a config that chooses GNB trains (it would
    otherwise stop at the first refresh) and keeps the entries outside the mask."""
    from unloc.data.collate import Encoded
    from unloc.train import Batcher, TrainSettings, masked_train

    model = make_tiny_model().train()
    before = copy.deepcopy(model.state_dict())
    examples = [Encoded(list(range(3, 13)), [-100] * 4 + list(range(7, 13)), 5) for _ in range(4)]
    cfg = TrainSettings(lr=1e-2, epochs=3, batch_size=2, weight_decay=0.1,
                        optimizer={"name": "sophia", "hessian": "gnb", "hessian_every": 2})
    mask = mask_of("columns")
    delta = masked_train(model, mask, lambda b: answer_nll(model, b["main"]), Batcher(examples, 2, 0, seed=0), cfg,
                         seed=0)
    assert delta and all(v.abs().sum() > 0 for _, v in delta.values())
    for name, value in model.state_dict().items():
        if "down_proj" not in name:
            assert torch.equal(value, before[name]), name


# --------------------------------------------------------------------------- GNB Hessian refresh


def gnb_batch() -> dict:
    return {"forget": random_lm_batch(seed=0), "retain": random_lm_batch(seed=1)}


def gnb_optimizer(model, params, **settings) -> Sophia:
    opt = Sophia(params, 1e-2, 0.0, SophiaSettings(hessian="gnb", **settings))
    opt.model = model
    return opt


def down_projs(model) -> list[torch.nn.Parameter]:
    return [layer.mlp.down_proj.weight for layer in model.model.layers]


def test_gnb_refreshes_only_on_steps_divisible_by_k_with_a_non_negative_estimate():
    model = make_tiny_model().train()
    unused = torch.nn.Parameter(torch.ones(3))  # the loss never reaches it: a zero gradient, H stays 0
    opt = gnb_optimizer(model, [*down_projs(model), unused], hessian_every=3)
    refreshed = []
    for step in range(7):
        before = [opt.state_of(p)["hessian"].clone() for p in opt.parameters()]
        sophia_gnb_refresh(opt, None, gnb_batch(), step)
        after = [opt.state[p]["hessian"] for p in opt.parameters()]
        if any(not torch.equal(a, b) for a, b in zip(before, after)):
            refreshed.append(step)
    assert refreshed == [0, 3, 6]
    for p in down_projs(model):
        hessian = opt.state[p]["hessian"]
        assert (hessian >= 0).all() and (hessian > 0).any()
        assert p.grad is None  # the estimate's gradient is not the training gradient
    assert torch.equal(opt.state[unused]["hessian"], torch.zeros(3))


def gnb_hessian(seed: int, model=None) -> list[torch.Tensor]:
    model = model or make_tiny_model().train()
    opt = gnb_optimizer(model, down_projs(model), seed=seed)
    sophia_gnb_refresh(opt, None, gnb_batch(), 0)
    return [opt.state[p]["hessian"] for p in down_projs(model)]


def test_gnb_is_reproducible_from_its_seed():
    same, again, other = gnb_hessian(seed=0), gnb_hessian(seed=0), gnb_hessian(seed=1)
    assert all(torch.equal(a, b) for a, b in zip(same, again))
    assert not all(torch.equal(a, b) for a, b in zip(same, other))


def test_gnb_draws_new_labels_at_each_refresh():
    model = make_tiny_model().train()
    hessians = []
    for step in (0, 10):
        opt = gnb_optimizer(model, down_projs(model))
        sophia_gnb_refresh(opt, None, gnb_batch(), step)
        hessians.append([opt.state[p]["hessian"] for p in down_projs(model)])
    assert not all(torch.equal(a, b) for a, b in zip(*hessians))


def test_gnb_leaves_the_global_random_state_alone():
    model = make_tiny_model().train()  # which seeds the global generator itself
    torch.manual_seed(3)
    gnb_hessian(seed=0, model=model)
    drawn = torch.rand(4)
    torch.manual_seed(3)
    assert torch.equal(drawn, torch.rand(4))


def test_gnb_is_a_running_average():
    """From H = 0, one refresh gives (1−β2)·B·ĝ²; the same refresh again (same labels, same ĝ) gives
    β2·H + (1−β2)·B·ĝ² = (1 + β2)·H."""
    model = make_tiny_model().train()
    opt = gnb_optimizer(model, down_projs(model))
    sophia_gnb_refresh(opt, None, gnb_batch(), 0)
    first = [opt.state[p]["hessian"].clone() for p in down_projs(model)]
    sophia_gnb_refresh(opt, None, gnb_batch(), 0)
    beta2 = opt.settings.betas[1]
    for h, p in zip(first, down_projs(model)):
        torch.testing.assert_close(opt.state[p]["hessian"], (1 + beta2) * h)


def test_gnb_is_b_times_the_squared_gradient_of_the_sampled_labels_cross_entropy(monkeypatch):
    """With the sampling made deterministic (the most likely token), one refresh from H = 0 is
    (1−β2)·B·ĝ², ĝ the gradient of the mean cross-entropy over the scored positions of both sub-batches."""
    monkeypatch.setattr(torch, "multinomial", lambda probs, n, generator=None: probs.argmax(-1, keepdim=True))
    model, batch = make_tiny_model().train(), gnb_batch()
    opt = gnb_optimizer(model, down_projs(model))
    sophia_gnb_refresh(opt, None, batch, 0)
    # by hand: position t's logits predict label t + 1; a prompt label (-100) is not scored
    logits = torch.cat([model(input_ids=b["input_ids"]).logits[:, :-1][b["labels"][:, 1:] != -100]
                        for b in batch.values()])
    tokens = len(logits)
    assert tokens == 2 * 4 * (12 - 4)
    nll = torch.nn.functional.cross_entropy(logits, logits.argmax(-1), reduction="sum") / tokens
    for p, g in zip(down_projs(model), torch.autograd.grad(nll, down_projs(model))):
        torch.testing.assert_close(opt.state[p]["hessian"], (1 - opt.settings.betas[1]) * tokens * g * g)


def test_gnb_on_the_masked_entries_is_the_full_estimate_restricted_to_the_mask():
    model, mask = make_tiny_model().train(), mask_of("columns")
    full = gnb_hessian(seed=0, model=copy.deepcopy(model))
    params = attach_masked(model, "columns", mask.indices())
    opt = gnb_optimizer(model, params)
    sophia_gnb_refresh(opt, None, gnb_batch(), 0)
    for (layer, idx), p in zip(mask.indices().items(), params):
        torch.testing.assert_close(opt.state[p]["hessian"], gather(full[layer], "columns", idx))


def test_gnb_without_a_model_says_it_needs_one():
    model = make_tiny_model().train()
    opt = Sophia(down_projs(model), 1e-2, 0.0, SophiaSettings(hessian="gnb"))
    with pytest.raises(RuntimeError, match="gnb Hessian estimate needs the model"):
        sophia_gnb_refresh(opt, None, gnb_batch(), 0)


def test_gnb_hook_does_nothing_for_the_squared_gradient_estimate():
    model = make_tiny_model().train()
    opt = Sophia(down_projs(model), 1e-2, 0.0, SophiaSettings())  # no model needed: the hook is a no-op
    sophia_gnb_refresh(opt, None, gnb_batch(), 0)
    assert not opt.state


def test_gnb_on_a_batch_without_known_sub_batches_names_them():
    model = make_tiny_model().train()
    opt = gnb_optimizer(model, down_projs(model))
    with pytest.raises(ValueError, match="forget, retain; the batch has idk"):
        sophia_gnb_refresh(opt, None, {"idk": random_lm_batch()}, 0)


def test_the_sophia_registration_carries_the_gnb_hook():
    assert OPTIMIZERS["sophia"].second_order is sophia_gnb_refresh


# --------------------------------------------------------------------------- config


def test_a_config_block_gives_its_settings():
    choice = OPTIMIZERS.choose({"name": "sophia", "gamma": 0.05}, "x")
    assert choice.name == "sophia"
    assert choice.settings == SophiaSettings(gamma=0.05)
    assert isinstance(build_optimizer(choice, [torch.nn.Parameter(torch.ones(2))], 1e-2, 0.0), Sophia)


@pytest.mark.parametrize("block, message", [
    ({"gama": 0.05}, "x.gama: unknown setting; did you mean 'gamma'?"),
    ({"hessian": "gbn"}, "x.hessian: 'gbn' is not one of"),
    ({"hessian_every": 0}, "x.hessian_every: 0 is less than the minimum of 1"),
    ({"gamma": 0}, "x.gamma: 0.0 must be greater than 0"),
    ({"betas": [0.9, 1.0]}, r"x.betas: expected two coefficients in \[0, 1\), got \[0.9, 1.0\]"),
    ({"betas": [0.9]}, r"x.betas: expected two coefficients"),
])
def test_a_bad_config_block_is_refused_naming_the_key(block, message):
    with pytest.raises(ConfigError, match=message):
        OPTIMIZERS.choose({"name": "sophia", **block}, "x")
