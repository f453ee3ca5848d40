"""G-effect probes: the dot products against one direct autograd computation, GA's e_u = -|grad R|²
by construction, the parameter groups, the logged weights, and that probing leaves training
bit-identical."""

import math

import pytest
import torch

from unloc import io
from unloc.data.collate import collate
from unloc.geffect import (
    COLUMNS,
    GROUPS,
    PROBE_EPOCH,
    NpoReference,
    Prober,
    parameter_groups,
    probe,
)
from unloc.objectives import LossContext, parse_objective, prepare_loss, prepare_loss_parts
from unloc.scoring import batch_token_logprobs, sequence_logprob
from unloc.train import Batcher, TrainSettings, train

from tinymodels import make_tiny_model, random_examples


def sets():
    return {"forget": random_examples(10, seed=1), "retain": random_examples(9, seed=2),
            "idk": random_examples(10, seed=3)}


def npo_kl(model, data):
    """NPO + KL through the registry, its batcher, and its reference for the weights."""
    ctx = LossContext(model, data, pad_id=0, eval_batch_size=4)
    loss_fn = prepare_loss(parse_objective("npo", {"lr": 1.0, "beta": 0.5, "regularizer": "kl"}, "npo"), ctx)
    batcher = Batcher(data["forget"], 4, 0, seed=0, main="forget", paired={"retain": data["retain"]})
    reference = NpoReference(0.5, ctx.reference_logprobs("forget"), ctx.reference_token_logprobs("forget"))
    return loss_fn, batcher, reference


def perturb(model, seed=11, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p += scale * torch.randn(p.shape, generator=g)


def test_groups_split_the_decoder_in_thirds_and_cover_every_parameter_once():
    model = make_tiny_model(layers=6)
    groups = parameter_groups(model)
    layer_of = {g: sorted({int(n.split(".layers.")[1].split(".")[0]) for n in groups[g]})
                for g in ("shallow", "middle", "deep")}
    assert layer_of == {"shallow": [0, 1], "middle": [2, 3], "deep": [4, 5]}
    assert groups["embed"] == ["model.embed_tokens.weight"] and groups["lm"] == ["lm_head.weight"]
    assert groups["other"] == ["model.norm.weight"]
    names = [n for members in groups.values() for n in members]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())


def test_a_tied_head_counts_once_under_embed():
    model = make_tiny_model()
    model.lm_head.weight = model.model.embed_tokens.weight
    groups = parameter_groups(model)
    assert groups["lm"] == [] and groups["embed"] == ["model.embed_tokens.weight"]


def direct_gradients(model, loss):
    return {n: g for (n, _), g in zip(model.named_parameters(), torch.autograd.grad(loss, list(model.parameters())))}


def test_g_effects_equal_one_direct_autograd_computation():
    """e = <grad R(D), grad L_u(D_u)> in total and per group, R the mean sequence NLL over all of D
    in one batch, L_u the size-weighted mean of the probe pass's batch losses as one scalar."""
    model, data = make_tiny_model(seed=4, layers=3), sets()
    loss_fn, batcher, _ = npo_kl(model, data)
    perturb(model)  # away from the reference, where NPO's and KL's gradients are not special
    batches = list(batcher.epoch(PROBE_EPOCH))
    row = probe(model, loss_fn, batches, data["forget"], data["retain"], pad_id=0, batch_size=3)

    n = len(data["forget"])
    objective = sum(loss_fn(b) * len(b["forget"]["input_ids"]) / n for b in batches)
    g_l = direct_gradients(model, objective)
    by_layer = {"shallow": ".layers.0.", "middle": ".layers.1.", "deep": ".layers.2."}
    for prefix, examples in (("e_u", data["forget"]), ("e_r", data["retain"])):
        risk = -sequence_logprob(model, collate(examples, 0)).mean()
        g_r = direct_gradients(model, risk)
        dots = {name: (g_r[name].double() * g_l[name].double()).sum().item() for name in g_r}
        assert row[f"{prefix}_total"] == pytest.approx(sum(dots.values()), rel=1e-5, abs=1e-9)
        assert row[f"{prefix}_embed"] == pytest.approx(dots["model.embed_tokens.weight"], rel=1e-5, abs=1e-9)
        assert row[f"{prefix}_lm"] == pytest.approx(dots["lm_head.weight"], rel=1e-5, abs=1e-9)
        for group, marker in by_layer.items():
            expected = sum(v for name, v in dots.items() if marker in name)
            assert row[f"{prefix}_{group}"] == pytest.approx(expected, rel=1e-5, abs=1e-9)
        groups = sum(row[f"{prefix}_{g}"] for g in (*GROUPS, "other"))
        assert groups == pytest.approx(row[f"{prefix}_total"], rel=1e-9, abs=1e-12)
        assert row[f"risk_{'forget' if prefix == 'e_u' else 'retain'}"] == pytest.approx(risk.item(), rel=1e-5)


def test_the_objective_and_its_regularizer_are_probed_apart_and_add_up():
    model, data = make_tiny_model(seed=4, layers=3), sets()
    loss_fn, batcher, _ = npo_kl(model, data)
    ctx = LossContext(model, data, pad_id=0, eval_batch_size=4)
    objective, regularizer = prepare_loss_parts(
        parse_objective("npo", {"lr": 1.0, "beta": 0.5, "regularizer": {"name": "kl", "weight": 2.0}}, "npo"), ctx)
    perturb(model)  # KL is 0 with a zero gradient at the reference
    batches = list(batcher.epoch(PROBE_EPOCH))
    args = (batches, data["forget"], data["retain"], 0, 3)
    apart = probe(model, objective, *args, regularizer_fn=regularizer)
    combined = probe(model, lambda b: objective(b) + regularizer(b), *args)
    alone = probe(model, objective, *args)
    for prefix in ("e_u", "e_r"):
        assert apart[f"{prefix}_total"] == pytest.approx(alone[f"{prefix}_total"], rel=1e-9)
        assert apart[f"{prefix}_regularizer"] != pytest.approx(0.0, abs=1e-9)
        assert apart[f"{prefix}_total"] + apart[f"{prefix}_regularizer"] == pytest.approx(
            combined[f"{prefix}_total"], rel=1e-5)
        assert math.isnan(alone[f"{prefix}_regularizer"])


def test_ga_on_the_risk_itself_has_e_u_minus_the_squared_gradient_norm():
    """L_u = -R(D_u) batch by batch (the mean log p(s)), so e_u = -|grad R(D_u)|² < 0 by construction."""
    model, data = make_tiny_model(seed=2), sets()
    batches = list(Batcher(data["forget"], 4, 0, seed=0, main="forget").epoch(PROBE_EPOCH))
    row = probe(model, lambda b: sequence_logprob(model, b["forget"]).mean(), batches, data["forget"],
                data["retain"], pad_id=0, batch_size=4)
    g_r = direct_gradients(model, -sequence_logprob(model, collate(data["forget"], 0)).mean())
    squared_norm = sum((g.double() ** 2).sum().item() for g in g_r.values())
    assert row["e_u_total"] < 0
    assert row["e_u_total"] == pytest.approx(-squared_norm, rel=1e-5)


def test_weights_are_one_at_the_reference_and_the_printed_formula_after():
    model, data = make_tiny_model(seed=4), sets()
    loss_fn, batcher, reference = npo_kl(model, data)
    batches = list(batcher.epoch(PROBE_EPOCH))
    at_reference = probe(model, loss_fn, batches, data["forget"], data["retain"], 0, 4, reference)
    assert at_reference["npo_weight"] == pytest.approx(1.0, abs=1e-5)
    assert at_reference["tnpo_weight"] == pytest.approx(1.0, abs=1e-5)
    before = batch_token_logprobs(model, collate(data["forget"], 0))
    perturb(model)
    row = probe(model, loss_fn, batches, data["forget"], data["retain"], 0, 4, reference)
    with torch.no_grad():
        (ref, mask), (logp, _) = before, batch_token_logprobs(model, collate(data["forget"], 0))
    p, p_ref = logp.double().exp(), ref.double().exp()
    seq, seq_ref = (logp.double() * mask).sum(1), (ref.double() * mask).sum(1)
    npo = 2 * seq.exp() ** 0.5 / (seq.exp() ** 0.5 + seq_ref.exp() ** 0.5)
    tnpo = (2 * p ** 0.5 / (p ** 0.5 + p_ref ** 0.5))[mask]
    assert row["npo_weight"] == pytest.approx(npo.mean().item(), rel=1e-5)
    assert row["tnpo_weight"] == pytest.approx(tnpo.mean().item(), rel=1e-5)
    assert row["inverse_confidence"] == pytest.approx((1 / p[mask]).mean().item(), rel=1e-5)
    assert not math.isnan(row["npo_weight"]) and row["npo_weight"] != pytest.approx(1.0, abs=1e-3)


def test_probing_every_step_leaves_training_bit_identical_and_logs_each_probe(tmp_path):
    data = sets()
    cfg = TrainSettings(lr=1e-2, epochs=2, batch_size=4)

    def run(probed: bool):
        model = make_tiny_model(seed=6).train()
        loss_fn, batcher, reference = npo_kl(model, data)
        on_step = None
        if probed:
            batches = list(batcher.epoch(PROBE_EPOCH))
            on_step = Prober(2, tmp_path / "probe.csv", lambda: probe(
                model, loss_fn, batches, data["forget"], data["retain"], 0, 4, reference))
            on_step.start()
        log = train(list(model.parameters()), loss_fn, batcher, cfg, seed=0, on_step=on_step)
        return model.state_dict(), log

    (plain, plain_log), (probed, probed_log) = run(False), run(True)
    for key in plain:
        assert torch.equal(plain[key], probed[key]), key
    assert [r["loss"] for r in plain_log] == [r["loss"] for r in probed_log]
    rows = io.read_csv(tmp_path / "probe.csv")
    assert [int(r["step"]) for r in rows] == [0, 2, 4, 6]  # 3 batches x 2 epochs, every 2nd step and before
    assert list(rows[0]) == COLUMNS
    assert float(rows[0]["e_u_total"]) != float(rows[-1]["e_u_total"])
