"""Unlearning objectives and regularizers: known values, the direction of a gradient step, the
registry's contract, and (trl style) that every one of them moves only the masked entries."""

import copy
import math

import pytest
import torch

from unloc.data.collate import Encoded
from unloc.localizers import oracle_mask
from unloc.models import DEPTH_THIRDS, last_layer_of_third
from unloc.objectives import (
    OBJECTIVES,
    REGULARIZERS,
    SUB_BATCHES,
    LossContext,
    RmuSettings,
    dpo_loss,
    ga_loss,
    kl_to_reference,
    l2_mlp_loss,
    mlp_outputs,
    npo_loss,
    parse_objective,
    po_loss,
    prepare_loss,
    rmu_loss,
    rmu_steering,
    rr_loss,
    tnpo_loss,
    wga_loss,
)
from unloc.registry import ConfigError
from unloc.scoring import answer_nll, batch_token_logprobs, layer_hidden_states, sequence_logprob
from unloc.train import Batcher, TrainSettings, masked_train

from tinymodels import make_tiny_model, random_lm_batch


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


def test_registries_name_the_objectives_and_regularizers():
    assert set(OBJECTIVES) == {"ga", "wga", "npo", "tnpo", "wtnpo", "po", "dpo", "rmu", "l2_mlp"}
    assert set(REGULARIZERS) == {"gd", "kl", "rr"}
    for spec in [*OBJECTIVES.specs(), *REGULARIZERS.specs()]:
        assert spec.help and set(spec.needs) <= set(SUB_BATCHES), spec.name


def test_ga_is_the_mean_answer_log_likelihood_and_wga_with_alpha_zero(tiny_model):
    batch = random_lm_batch()
    assert ga_loss(tiny_model, batch).item() == pytest.approx(-answer_nll(tiny_model, batch).item(), rel=1e-6)
    assert wga_loss(tiny_model, batch, alpha=0.0).item() == pytest.approx(ga_loss(tiny_model, batch).item(), rel=1e-6)


def test_wga_weights_tokens_by_their_probability(tiny_model):
    batch = random_lm_batch()
    logits = tiny_model(input_ids=batch["input_ids"]).logits[:, :-1]
    logp = torch.log_softmax(logits, -1).gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
    mask = batch["labels"][:, 1:] != -100
    expected = (logp.exp() ** 0.1 * logp)[mask].mean()
    assert wga_loss(tiny_model, batch, alpha=0.1).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("name", ["ga", "wga", "npo", "tnpo", "wtnpo"])
def test_a_descent_step_lowers_the_forget_likelihood(name):
    model, batch = make_tiny_model(seed=1).train(), random_lm_batch(seed=2)
    before = seq_logp(model, batch)
    with torch.no_grad():
        token_ref = batch_token_logprobs(model, batch)[0]
    loss = {"ga": lambda: ga_loss(model, batch), "wga": lambda: wga_loss(model, batch, alpha=0.1),
            "npo": lambda: npo_loss(model, batch, beta=0.5, ref_logprob=before),
            "tnpo": lambda: tnpo_loss(model, batch, beta=4.0, ref_token_logprobs=token_ref),
            "wtnpo": lambda: tnpo_loss(model, batch, beta=5.0, alpha=1.5, ref_token_logprobs=token_ref)}[name]()
    sgd_step(model, loss)
    assert (seq_logp(model, batch) < before).all()


def test_npo_at_the_reference_is_two_over_beta_log_two(tiny_model):
    batch = random_lm_batch()
    ref = seq_logp(tiny_model, batch)
    assert npo_loss(tiny_model, batch, beta=0.5, ref_logprob=ref).item() == pytest.approx(4 * math.log(2), rel=1e-5)
    # far below the reference the loss vanishes: NPO stops pushing once forgotten
    assert npo_loss(tiny_model, batch, beta=0.5, ref_logprob=ref + 200).item() < 1e-6


def registered_loss(name: str, block: dict, model, sets=None):
    """The registered objective ``name``'s loss, prepared on ``model`` (its reference), and a
    batch of variable-length examples (so rows are padded)."""
    sets = sets or examples_for_every_sub_batch()
    ctx = LossContext(model, sets, pad_id=0, eval_batch_size=3)
    run = parse_objective(name, {"lr": 1.0, **block}, f"unlearn.{name}")
    batcher = Batcher(sets["forget"], 5, 0, seed=0, main="forget", aligned={"idk": sets["idk"]},
                      paired={"retain": sets["retain"]})
    return prepare_loss(run, ctx), next(batcher.epoch(0))


def perturb(model, seed=7, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p += scale * torch.randn(p.shape, generator=g)


@pytest.mark.parametrize("name,block,equals", [
    ("tnpo", {"beta": 4.0}, lambda m, b: ga_loss(m, b)),
    ("wtnpo", {"beta": 5.0, "alpha": 1.5}, lambda m, b: wga_loss(m, b, alpha=1.5)),
])
def test_token_npo_at_the_reference_is_ga_or_wga(name, block, equals):
    """At θ = θ_ref every TNPO weight is 2 σ(0) = 1, so TNPO is GA and WTNPO is WGA with its α."""
    model = make_tiny_model(seed=3)
    loss_fn, batch = registered_loss(name, block, model)
    assert batch["forget"]["attention_mask"].eq(0).any()  # padded rows: the reference must line up
    assert loss_fn(batch).item() == pytest.approx(equals(model, batch["forget"]).item(), rel=1e-5)


@pytest.mark.parametrize("beta,alpha", [(4.0, 0.0), (0.5, 0.0), (5.0, 1.5)])
def test_token_npo_weights_each_token_by_the_printed_formula(beta, alpha):
    """w = 2 p^β / (p^β + p_ref^β) · p^α per answer token, p_ref from the model before training;
    the loss is the token mean of w · log p (seeds/001 eq. 6, App. D.2), in float64 by hand."""
    model = make_tiny_model(seed=3)
    name, block = ("tnpo", {"beta": beta}) if alpha == 0 else ("wtnpo", {"beta": beta, "alpha": alpha})
    loss_fn, batch = registered_loss(name, block, model)
    forget = batch["forget"]
    with torch.no_grad():
        ref, mask = batch_token_logprobs(model, forget)
        perturb(model)
        logp, _ = batch_token_logprobs(model, forget)
    p, p_ref = logp.double().exp(), ref.double().exp()
    weight = 2 * p ** beta / (p ** beta + p_ref ** beta) * p ** alpha
    expected = (weight * logp.double())[mask].mean()
    assert loss_fn(batch).item() == pytest.approx(expected.item(), rel=1e-5)


def test_token_npo_weights_are_not_differentiated():
    model, batch = make_tiny_model(seed=3).train(), random_lm_batch(seed=4)
    with torch.no_grad():
        ref = batch_token_logprobs(model, batch)[0]
        perturb(model)
        logp, mask = batch_token_logprobs(model, batch)
        weight = 2 * torch.sigmoid(2.0 * (logp - ref)) * mask
    tnpo_loss(model, batch, beta=2.0, ref_token_logprobs=ref).backward()
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    logp, mask = batch_token_logprobs(model, batch)
    ((weight * logp).sum() / mask.sum()).backward()
    for a, (name, p) in zip(got, model.named_parameters()):
        assert torch.allclose(a, p.grad, rtol=1e-5, atol=1e-8), name


def test_po_is_the_refusal_nll_and_a_step_makes_the_refusal_likelier():
    model = make_tiny_model(seed=1).train()
    loss_fn, batch = registered_loss("po", {}, model)
    loss = loss_fn(batch)
    assert loss.item() == pytest.approx(answer_nll(model, batch["idk"]).item(), rel=1e-6)
    assert loss.item() == pytest.approx(po_loss(model, batch["idk"]).item(), rel=1e-6)
    before = seq_logp(model, batch["idk"])
    sgd_step(model, loss)
    assert (seq_logp(model, batch["idk"]) > before).all()


def test_rr_is_zero_at_the_reference_and_the_answer_positions_squared_distance_after():
    model = make_tiny_model(seed=2)
    reference = copy.deepcopy(model)
    batch = random_lm_batch(seed=5)
    batch["labels"][1, -4:] = -100  # row 1 has a shorter answer: fewer positions count
    zero = rr_loss(model, reference, batch, layer=0)
    assert zero.item() == 0.0
    perturb(model)
    h, r = layer_hidden_states(model, batch, 0), layer_hidden_states(reference, batch, 0)
    rows = []
    for b in range(4):
        # phi([x, y_<i]) for i = 1..|y|: the positions whose next token is an answer token
        at = [t for t in range(11) if batch["labels"][b, t + 1] != -100]
        rows.append(torch.stack([((h[b, t] - r[b, t]) ** 2).sum() for t in at]).mean())
    expected = torch.stack(rows).mean()
    assert rr_loss(model, reference, batch, layer=0).item() == pytest.approx(expected.item(), rel=1e-5)


def test_rr_regularizer_defaults_to_the_last_layer_and_checks_its_layer():
    model = make_tiny_model(seed=2)
    sets = examples_for_every_sub_batch()
    ctx = LossContext(model, sets, pad_id=0)
    batch = next(Batcher(sets["forget"], 4, 0, seed=0, main="forget", paired={"retain": sets["retain"]}).epoch(0))
    with_rr = prepare_loss(parse_objective("ga", {"lr": 1.0, "regularizer": "rr"}, "ga"), ctx)
    plain = prepare_loss(parse_objective("ga", {"lr": 1.0}, "ga"), ctx)
    assert with_rr(batch).item() == pytest.approx(plain(batch).item(), rel=1e-6)  # θ = θo: RR is 0
    perturb(model)
    reference = ctx.reference_model()
    expected = plain(batch) + rr_loss(model, reference, batch["retain"], layer=1)
    assert with_rr(batch).item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="rr.layer 2: the model has 2 layers"):
        prepare_loss(parse_objective("ga", {"lr": 1.0, "regularizer": {"name": "rr", "layer": 2}}, "ga"), ctx)


def test_rmu_steering_as_drawn_or_of_unit_length():
    raw = rmu_steering(32, scale=3.0, seed=4, unit=False)
    u = torch.rand(32, generator=torch.Generator().manual_seed(4))
    assert torch.equal(raw, 3.0 * u)
    assert torch.allclose(rmu_steering(32, scale=3.0, seed=4), 3.0 * u / u.norm())
    run = parse_objective("rmu", {"lr": 1.0, "layer": 0, "unit_direction": False}, "unlearn.rmu")
    assert run.objective.settings.unit_direction is False


def test_dpo_at_the_reference_and_its_direction():
    model = make_tiny_model(seed=4).train()
    win, lose = random_lm_batch(seed=2), random_lm_batch(seed=1)
    ref_win, ref_lose = seq_logp(model, win), seq_logp(model, lose)
    loss = dpo_loss(model, win, lose, beta=0.5, ref_win=ref_win, ref_lose=ref_lose)
    assert loss.item() == pytest.approx(2 * math.log(2), rel=1e-5)
    sgd_step(model, loss)
    margin = (seq_logp(model, win) - ref_win) - (seq_logp(model, lose) - ref_lose)
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


@pytest.mark.parametrize("third, layer", [("shallow", 0), ("middle", 1), ("deep", 2)])
def test_rmu_at_a_third_of_the_depth_steers_that_thirds_deepest_layer(third, layer):
    model = make_tiny_model(seed=2, layers=3)
    ctx = LossContext(model=model, sets={}, pad_id=0)
    batch = random_lm_batch(seed=3)
    steering = rmu_steering(32, scale=4.0, seed=0)
    loss = OBJECTIVES["rmu"].fn(ctx, RmuSettings(layer=third, scale=4.0))({"forget": batch})
    assert loss.item() == pytest.approx(rmu_loss(model, batch, layer=layer, steering=steering).item(), rel=1e-6)
    assert [last_layer_of_third(t, 32) for t in DEPTH_THIRDS] == [10, 21, 31]  # seeds/001's 11/22/33, 1-based


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


# --------------------------------------------------------------------------- L2 MLP


@torch.no_grad()
def down_proj_outputs(model, batch):
    """Every layer's down_proj output by the test's own hooks, through the full model (an independent route)."""
    out = []
    handles = [layer.mlp.down_proj.register_forward_hook(lambda m, a, o: out.append(o)) for layer in model.model.layers]
    model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    for h in handles:
        h.remove()
    return out


def l2_mlp_fn(model, target, alpha=None):
    """The registered objective's loss on a forget batch, through prepare, with ``target`` as θr."""
    sets = {"forget": random_examples(8, seed=1)}
    block = {"lr": 1e-3, **({} if alpha is None else {"alpha": alpha})}
    ctx = LossContext(model, sets, pad_id=0, target=target)
    loss_fn = prepare_loss(parse_objective("l2_mlp", block, "unlearn.l2_mlp"), ctx)
    return loss_fn, next(Batcher(sets["forget"], 4, 0, seed=0, main="forget").epoch(0))


@pytest.mark.parametrize("alpha", [None, 0.5, 1.0])
def test_l2_mlp_is_zero_with_a_zero_gradient_at_the_target_and_positive_elsewhere(alpha):
    model = make_tiny_model(seed=1)
    loss_fn, batch = l2_mlp_fn(model, copy.deepcopy(model), alpha)  # same weights: θ = θr
    loss = loss_fn(batch)
    loss.backward()
    assert loss.item() == 0.0
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in model.parameters() if p.grad is not None)  # no NaN
    loss_fn, batch = l2_mlp_fn(model, make_tiny_model(seed=2), alpha)
    assert loss_fn(batch).item() > 0  # small: random init MLP outputs are small


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_l2_mlp_is_the_layer_mean_of_the_token_mean_distance(alpha):
    model, target, batch = make_tiny_model(seed=1), make_tiny_model(seed=2), random_lm_batch(seed=4)
    batch["attention_mask"][1, -5:] = 0  # a shorter row: a token mean over its 7 positions and the others' 36
    h, r = down_proj_outputs(model, batch), down_proj_outputs(target, batch)
    for got, want in zip(mlp_outputs(model, batch), h, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=0)
    m = batch["attention_mask"].bool()
    formula = {1.0: lambda d: d.abs().sum(-1), 2.0: lambda d: (d ** 2).sum(-1),  # L1; squared L2
               0.5: lambda d: torch.linalg.vector_norm(d, ord=0.5, dim=-1) ** 0.5}[alpha]
    expected = torch.stack([formula(a - b)[m].sum() / 43 for a, b in zip(h, r)]).mean()
    got = l2_mlp_loss(model, batch, target_outputs=r, alpha=alpha)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=0)  # relative: the values are ~1e-4


def test_l2_mlp_ignores_padding_positions_and_padded_rows():
    model, target, batch = make_tiny_model(seed=1), make_tiny_model(seed=2), random_lm_batch(seed=4)
    g = torch.Generator().manual_seed(0)
    ids = torch.cat([batch["input_ids"], torch.randint(3, 64, (4, 5), generator=g)], 1)  # 5 padding columns
    ids = torch.cat([ids, torch.randint(3, 64, (1, 17), generator=g)])  # and a row of padding only
    mask = torch.zeros_like(ids)
    mask[:4, :12] = 1
    padded = {"input_ids": ids, "attention_mask": mask}
    plain = l2_mlp_loss(model, batch, target_outputs=down_proj_outputs(target, batch), alpha=2.0)
    got = l2_mlp_loss(model, padded, target_outputs=down_proj_outputs(target, padded), alpha=2.0)
    torch.testing.assert_close(got, plain, rtol=1e-5, atol=0)


def test_l2_mlp_gradient_reaches_the_model_only():
    model, target = make_tiny_model(seed=1), make_tiny_model(seed=2)
    loss_fn, batch = l2_mlp_fn(model, target)
    loss_fn(batch).backward()
    assert all(p.grad is None and not p.requires_grad for p in target.parameters()) and not target.training
    assert all(layer.mlp.down_proj.weight.grad.abs().sum() > 0 for layer in model.model.layers)


def test_l2_mlp_needs_a_separate_target_model():
    model = make_tiny_model(seed=1)
    with pytest.raises(ValueError, match=r"l2_mlp matches the activations of a target model \(θr\), but "
                                         "LossContext.target is None"):
        l2_mlp_fn(model, None)
    with pytest.raises(ValueError, match="l2_mlp: the target must be a separate model"):
        l2_mlp_fn(model, model)


# --------------------------------------------------------------------------- regularizers


def test_kl_to_an_identical_reference_is_zero_and_positive_otherwise():
    model, batch = make_tiny_model(seed=1), random_lm_batch(seed=4)
    assert kl_to_reference(model, copy.deepcopy(model), batch).item() == pytest.approx(0.0, abs=1e-6)
    other = make_tiny_model(seed=2)
    assert kl_to_reference(model, other, batch).item() > 0.01


@pytest.mark.parametrize("direction", ["model_to_reference", "reference_to_model"])
def test_kl_is_the_token_mean_of_the_full_distribution_kl_in_its_direction(direction):
    model, reference, batch = make_tiny_model(seed=1), make_tiny_model(seed=2), random_lm_batch(seed=4)
    batch["labels"][1, 6:] = -100  # fewer answer tokens in one row: only answer tokens count
    p = torch.log_softmax(model(input_ids=batch["input_ids"]).logits[:, :-1], -1)
    q = torch.log_softmax(reference(input_ids=batch["input_ids"]).logits[:, :-1], -1)
    a, b = (p, q) if direction == "model_to_reference" else (q, p)
    mask = batch["labels"][:, 1:] != -100
    expected = torch.nn.functional.kl_div(b[mask], a[mask], log_target=True, reduction="batchmean")  # KL(a || b)
    got = kl_to_reference(model, reference, batch, direction=direction)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_kl_gradient_reaches_the_model_only():
    model, reference, batch = make_tiny_model(seed=1), make_tiny_model(seed=2), random_lm_batch(seed=4)
    kl_to_reference(model, reference, batch).backward()
    assert all(p.grad is None for p in reference.parameters())
    assert model.model.layers[0].mlp.down_proj.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------- config blocks


def test_an_objective_block_parses_its_settings_lr_and_regularizer():
    run = parse_objective("dpo", {"lr": 1e-3, "beta": 0.2, "regularizer": {"name": "kl", "weight": 0.5}}, "unlearn.dpo")
    assert run.lr == 1e-3 and run.objective.settings.beta == 0.2
    assert run.regularizer.name == "kl" and run.regularizer.common["weight"] == 0.5
    assert run.needs == ("forget", "idk", "retain")
    assert run.to_dict() == {"lr": 1e-3, "beta": 0.2,
                             "regularizer": {"name": "kl", "weight": 0.5, "direction": "model_to_reference"}}
    assert parse_objective("npo", {"lr": 1e-3}, "unlearn.npo").objective.settings.beta == 0.5  # App. A's default


@pytest.mark.parametrize("block,message", [
    ({"lr": 1e-3, "betta": 0.2}, "unlearn.npo.betta: unknown setting; did you mean 'beta'"),
    ({"beta": 0.2}, "unlearn.npo.lr: required setting missing"),
    ({"lr": "fast"}, "unlearn.npo.lr: expected a number, got a string 'fast'"),
    ({"lr": 1e-3, "beta": -1}, "unlearn.npo.beta: -1.0 must be greater than 0"),
    ({"lr": 1e-3, "regularizer": {"name": "kll"}}, "unlearn.npo.regularizer.name: unknown regularizer 'kll'; "
                                                   "did you mean 'kl'"),
    ({"lr": 1e-3, "regularizer": {"name": "kl", "weight": "x"}}, "unlearn.npo.regularizer.weight: expected a number"),
    ({"lr": 1e-3, "regularizer": {"name": "kl", "direction": "up"}}, "unlearn.npo.regularizer.direction: 'up' is not"),
])
def test_a_bad_objective_block_names_the_key(block, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_objective("npo", block, "unlearn.npo")


def test_an_unknown_objective_suggests_the_closest():
    with pytest.raises(ConfigError, match="unknown objective 'npoo'; did you mean 'npo'.*allowed: ga, wga, npo"):
        parse_objective("npoo", {"lr": 1.0}, "unlearn.npoo")


def test_a_regularizer_adds_its_weighted_loss_to_the_objective():
    model = make_tiny_model(seed=1)
    sets = examples_for_every_sub_batch()
    ctx = LossContext(model, sets, pad_id=0)
    batch = next(Batcher(sets["forget"], 4, 0, seed=0, main="forget", paired={"retain": sets["retain"]}).epoch(0))
    plain = prepare_loss(parse_objective("ga", {"lr": 1.0}, "ga"), ctx)(batch)
    with_gd = prepare_loss(parse_objective("ga", {"lr": 1.0, "regularizer": {"name": "gd", "weight": 0.3}}, "ga"), ctx)
    expected = plain + 0.3 * answer_nll(model, batch["retain"])
    assert with_gd(batch).item() == pytest.approx(expected.item(), rel=1e-6)


# --------------------------------------------------------------------------- every registered loss, masked


def random_examples(n: int, seed: int, vocab: int = 64) -> list[Encoded]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(8, 14, (1,), generator=g))
        ids = torch.randint(3, vocab, (length,), generator=g).tolist()
        out.append(Encoded(ids, [-100] * 4 + ids[4:], length - 5))
    return out


def examples_for_every_sub_batch() -> dict[str, list[Encoded]]:
    forget = random_examples(8, seed=1)
    return {"forget": forget, "retain": random_examples(12, seed=2), "idk": random_examples(8, seed=3)}


def every_run():
    """Every objective alone, and every objective with every regularizer."""
    for objective in OBJECTIVES.specs():
        block = {"lr": 1e-2, **({"layer": 1} if objective.name == "rmu" else {})}  # RMU steers the last layer
        yield objective.name, block
        for regularizer in REGULARIZERS.names():
            yield f"{objective.name}+{regularizer}", {**block, "regularizer": {"name": regularizer, "weight": 1.0}}


@pytest.mark.parametrize("label,block", list(every_run()), ids=lambda x: x if isinstance(x, str) else "")
def test_every_objective_and_regularizer_moves_only_the_masked_value_vectors(label, block):
    model = make_tiny_model(seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run = parse_objective(label.split("+")[0], block, "unlearn")
    sets = {k: v for k, v in examples_for_every_sub_batch().items() if k in run.needs}
    target = make_tiny_model(seed=5) if run.objective.name == "l2_mlp" else None  # θr, whose MLP outputs it matches
    ctx = LossContext(model, sets, pad_id=0, eval_batch_size=4, target=target)
    loss_fn = prepare_loss(run, ctx)
    batcher = Batcher(sets["forget"], 4, 0, seed=0, main="forget",
                      aligned={n: sets[n] for n in run.needs if n == "idk"},
                      paired={n: sets[n] for n in run.needs if n == "retain"})
    mask = oracle_mask(2, 64, 0.25, seed=3)
    entries = masked_train(model, mask, loss_fn, batcher, TrainSettings(lr=1e-2, epochs=2, batch_size=4), seed=0)
    after = model.state_dict()
    for key in before:
        if key.endswith("mlp.down_proj.weight"):
            m = mask.layers[int(key.split(".")[2])]
            assert torch.equal(before[key][:, ~m], after[key][:, ~m]), key
            moved = (before[key][:, m] != after[key][:, m]).any(0)
            assert moved.all(), f"{label}: {key} has masked value vectors that did not move"
        else:
            assert torch.equal(before[key], after[key]), f"{label}: {key} changed but is outside the mask"
    assert set(entries) == set(range(2))
