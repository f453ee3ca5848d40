"""The full-parameter unlearning stage of seeds/001 (``unlearn_all``): it trains every parameter,
never puts a held-out retain item in a batch, and its G-effect probes leave the result
bit-identical to an unprobed run."""

import math

import pytest
import torch

from tinyworld import build_tiny_world
from unloc import io, stages
from unloc.checkpoints import load_checkpoint
from unloc.data import load_role
from unloc.geffect import COLUMNS
from unloc.masks import Mask, save_mask
from unloc.registry import ConfigError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# seeds/001's loop (weight decay 0, warm-up over the first of its epochs, linear decay), cut to 2 epochs
UNLEARN_ALL = {"precision": "fp32", "max_length": 96, "system_prompt": None, "seed": 0, "eval_batch_size": 8,
               "objective": "npo", "block": {"lr": 1e-3, "beta": 0.5, "regularizer": "kl"},
               "train": {"epochs": 2, "batch_size": 2, "weight_decay": 0.0, "schedule": "linear",
                         "warmup_ratio": 0.5}}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_tiny_world(tmp_path_factory.mktemp("unlearn_all"), "theta_full")


def run(built, out, **params):
    probe = out / "probe.csv" if params.get("probe_every") else None
    stages.unlearn_all({**UNLEARN_ALL, **params}, built / "theta_full", built / "data", out / "theta_u",
                       out / "log.csv", probe)
    return load_checkpoint(out / "theta_u")[0]


def test_every_parameter_trains_and_probes_change_nothing(built, tmp_path):
    before = load_checkpoint(built / "theta_full")[0].state_dict()
    plain = run(built, tmp_path / "plain").state_dict()
    probed = run(built, tmp_path / "probed", probe_every=2).state_dict()
    for key in before:
        assert torch.equal(plain[key], probed[key]), key
        # every weight matrix and norm moves; only embedding rows of tokens no batch holds may stay
        assert not torch.equal(before[key], plain[key]), key
    rows = io.read_csv(tmp_path / "probed" / "probe.csv")
    steps = len(io.read_csv(tmp_path / "plain" / "log.csv"))
    assert [int(r["step"]) for r in rows] == list(range(0, steps + 1, 2))
    assert list(rows[0]) == COLUMNS
    # the tiny Llama ties its LM head to the embedding: counted under embed, lm is NaN (geffect.parameter_groups)
    tied = ("e_u_lm", "e_r_lm")
    assert all(math.isnan(float(r[c])) for r in rows for c in tied)
    assert all(math.isfinite(float(r[c])) for r in rows for c in COLUMNS if c not in tied)
    assert all(float(r["e_u_total"]) < 0 for r in rows)  # NPO raises the forget NLL at every probe
    # NPO's weights start at 1 (the model is its own reference) and fall as it unlearns
    assert float(rows[0]["npo_weight"]) == pytest.approx(1.0, abs=1e-5)
    assert float(rows[-1]["npo_weight"]) < 0.9
    assert float(rows[-1]["risk_forget"]) > float(rows[0]["risk_forget"])


def test_held_out_retain_items_are_in_no_retain_batch(built):
    model, tokenizer = load_checkpoint(built / "theta_full")
    held_out = frozenset(r["question"] for r in load_role(built / "data", stages.HELD_OUT_RETAIN))
    retain = load_role(built / "data", "retain")
    assert held_out and held_out < {r["question"] for r in retain}
    params = stages.read_params(stages.STAGES["unlearn_all"], {**UNLEARN_ALL})
    run_ = stages.prepare_unlearning(params, model, tokenizer, built / "data", held_out=held_out)
    texts = {tokenizer.decode(e.input_ids) for e in run_.context.sets["retain"]}
    assert len(run_.context.sets["retain"]) == len(retain) - len(held_out)
    assert not any(q in text for q in held_out for text in texts)


def test_probe_path_and_probe_every_go_together(built, tmp_path):
    with pytest.raises(ConfigError, match="--probe and probe_every go together"):
        stages.unlearn_all({**UNLEARN_ALL, "probe_every": 2}, built / "theta_full", built / "data",
                           tmp_path / "theta_u", tmp_path / "log.csv")
    with pytest.raises(ConfigError, match="l2_mlp matches a target model"):
        stages.unlearn_all({**UNLEARN_ALL, "objective": "l2_mlp", "block": {"lr": 1e-3}}, built / "theta_full",
                           built / "data", tmp_path / "theta_u", tmp_path / "log.csv")
    assert not (tmp_path / "theta_u").exists()


MIX = {"precision": "fp32", "max_length": 96, "system_prompt": None,
       "mix": {"alphas": 3, "batch_size": 8, "max_new_tokens": 4, "metrics": ["es", "es_perturb", "mu"]}}


def test_mix_all_sweeps_from_theta_full_to_theta_u_and_checks_the_parent(built, tmp_path):
    run(built, tmp_path)
    theta_u = tmp_path / "theta_u"
    stages.mix_all(MIX, theta_u, built / "data", tmp_path / "curve.csv")
    for name, model in (("full", built / "theta_full"), ("u", theta_u)):
        stages.score_point(MIX, model, built / "data", tmp_path / f"{name}.csv")
    curve = io.read_csv(tmp_path / "curve.csv")
    assert [float(r["alpha"]) for r in curve] == [0.0, 0.5, 1.0]
    assert (curve[0]["objective"], curve[0]["localizer"]) == ("npo", "all")
    # the ends are θfull and θu themselves, bit for bit, so their scores are those of the models
    for row, name in ((curve[0], "full"), (curve[-1], "u")):
        point = io.read_csv(tmp_path / f"{name}.csv")[0]
        assert {k: row[k] for k in point if k != "alpha"} == {k: v for k, v in point.items() if k != "alpha"}
    assert curve[0]["retain_prob"] != curve[-1]["retain_prob"]
    # α = 0.5 is the two models' average: scored as a model of its own, the same numbers
    from unloc.checkpoints import save_checkpoint
    from unloc.mixing import interpolate_state_dicts

    model, tokenizer = load_checkpoint(built / "theta_full")
    model.load_state_dict(interpolate_state_dicts(model.state_dict(), load_checkpoint(theta_u)[0].state_dict(), 0.5))
    save_checkpoint(model, tokenizer, tmp_path / "half", {"stage": "test"})
    stages.score_point(MIX, tmp_path / "half", built / "data", tmp_path / "half.csv")
    half = io.read_csv(tmp_path / "half.csv")[0]
    assert {k: float(curve[1][k]) for k in half if k != "alpha"} == pytest.approx(
        {k: float(v) for k, v in half.items() if k != "alpha"}, rel=1e-5, abs=1e-6)
    # a sweep that starts from score_point's row skips α = 0 and keeps it as written
    stages.mix_all(MIX, theta_u, built / "data", tmp_path / "from_origin.csv", origin=tmp_path / "full.csv")
    assert io.read_csv(tmp_path / "from_origin.csv") == curve
    with pytest.raises(io.ArtifactError, match="not a checkpoint of unlearn_all"):
        stages.mix_all(MIX, built / "theta_full", built / "data", tmp_path / "x.csv")


def test_mix_all_refuses_a_theta_u_whose_parent_changed(built, tmp_path):
    import shutil

    shutil.copytree(built / "theta_full", tmp_path / "theta_full")
    stages.unlearn_all(UNLEARN_ALL, tmp_path / "theta_full", built / "data", tmp_path / "theta_u",
                       tmp_path / "log.csv")
    model, tokenizer = load_checkpoint(tmp_path / "theta_full")
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    shutil.rmtree(tmp_path / "theta_full")
    from unloc.checkpoints import save_checkpoint

    save_checkpoint(model, tokenizer, tmp_path / "theta_full", {"stage": "pretrain"})
    with pytest.raises(io.ArtifactError, match="changed since unlearning started"):
        stages.mix_all(MIX, tmp_path / "theta_u", built / "data", tmp_path / "curve.csv")
    assert not (tmp_path / "curve.csv").exists()


# --------------------------------------------------------------------------- seeds/003's trainable modules

# SIMU's GradDiff (App. B Table 4: λ = 2 on the retain term) with Sophia and decoupled weight decay
UNLEARN_MODULES = {**UNLEARN_ALL, "objective": "ga",
                   "block": {"lr": 1e-3, "regularizer": {"name": "gd", "weight": 2.0}},
                   "train": {**UNLEARN_ALL["train"], "weight_decay": 0.1, "optimizer": "sophia"}}
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")


def run_modules(built, out, mask=None, **params):
    stages.unlearn_modules({**UNLEARN_MODULES, **params}, built / "theta_full", built / "data", out / "theta_u",
                           out / "log.csv", mask)
    return load_checkpoint(out / "theta_u")[0].state_dict()


def test_fo_and_so_train_every_attention_projection_and_down_proj_and_nothing_else(built, tmp_path):
    before = load_checkpoint(built / "theta_full")[0].state_dict()
    for name, optimizer in (("fo", "adamw"), ("so", "sophia")):
        after = run_modules(built, tmp_path / name, train={**UNLEARN_MODULES["train"], "optimizer": optimizer})
        for key in before:
            trained = key.endswith(".mlp.down_proj.weight") or any(f".self_attn.{p}." in key for p in ATTENTION)
            assert torch.equal(before[key], after[key]) != trained, (name, key)


def test_simu_trains_the_attention_projections_and_only_the_masks_down_proj_rows(built, tmp_path):
    model = load_checkpoint(built / "theta_full")[0]
    before = model.state_dict()
    n_layers, d_model = len(model.model.layers), model.config.hidden_size
    rows = {layer: torch.zeros(d_model, dtype=torch.bool) for layer in range(n_layers)}
    rows[0][[1, 5]] = True
    rows[2][0] = True  # layer 1 has no critical neuron: its down_proj stays whole
    save_mask(tmp_path / "mask.safetensors", Mask(rows, "rows", {"method": "simu"}))
    after = run_modules(built, tmp_path / "simu", tmp_path / "mask.safetensors")
    for key in before:
        if any(f".self_attn.{p}." in key for p in ATTENTION):
            assert not torch.equal(before[key], after[key]), key
        elif key.endswith(".mlp.down_proj.weight"):
            selected = rows[int(key.split(".")[2])]
            assert torch.equal(before[key][~selected], after[key][~selected]), key
            assert (before[key][selected] != after[key][selected]).all(dim=1).all(), key
        else:
            assert torch.equal(before[key], after[key]), key
    meta = io.artifact_metadata(tmp_path / "simu" / "theta_u")
    assert meta["stage"] == "unlearn_modules" and meta["localizer"] == "simu"


def test_a_mask_that_does_not_fit_the_model_is_refused_before_training(built, tmp_path):
    wrong = {layer: torch.ones(7, dtype=torch.bool) for layer in range(3)}
    save_mask(tmp_path / "mask.safetensors", Mask(wrong, "rows"))
    with pytest.raises(io.ArtifactError, match="does not fit"):
        run_modules(built, tmp_path / "simu", tmp_path / "mask.safetensors")
    assert not (tmp_path / "simu").exists()
