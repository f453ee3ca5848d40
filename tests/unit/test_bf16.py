"""The bf16 path of GPU jobs, run on the CPU (CPU autocast supports bfloat16).

Under ``precision: bf16`` forward passes run under autocast while weights, the trainable masked
columns and their AdamW state stay fp32; full checkpoints are written in bf16 and load as fp32;
deltas are fp32. Under ``fp32`` no autocast is entered at all.
"""

from __future__ import annotations

import contextlib
import csv
import math

import pytest
import torch
from torch import nn

from unloc import io, stages, train
from unloc.checkpoints import load_checkpoint
from unloc.data import build_dataset, load_role, write_dataset
from unloc.data.collate import encode_records
from unloc.localizers import oracle_mask
from unloc.masks import load_mask, save_mask
from unloc.metrics.curve import CURVE_LABELS, curve_columns
from unloc.models import MaskedDownProj
from unloc.objectives import LossContext
from unloc.precision import autocast_context, check_precision
from unloc.registry import ConfigError
from unloc.scoring import answer_nll
from unloc.train import Batcher, TrainSettings, masked_train

from tinymodels import make_tiny_model, random_lm_batch

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

DATA = {"name": "t", "source": "minitofu", "forget_split": "forget10",
        "minitofu": {"seed": 0, "n_authors": 10, "qa_per_author": 4, "n_retain_perturbed": 4,
                     "n_real_authors": 4, "n_world_facts": 4, "corpus_docs": 20}}
TINY = {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 4, "vocab_size": 400}
BF16 = {"precision": "bf16"}
PRETRAIN = {**BF16, "model": {"source": "tiny", "max_length": 64, "tiny": TINY}, "seed": 0,
            "train": {"lr": 1e-2, "epochs": 8, "batch_size": 4}}
INJECT = {**BF16, "max_length": 96, "system_prompt": None, "seed": 0,
          "train": {"lr": 1e-2, "epochs": 2, "batch_size": 4, "weight_decay": 0.01, "lambda_retain": 2.0}}
ES = {"max_length": 96, "system_prompt": None, "eval": {"batch_size": 16}}
REFERENCE = {"max_length": 96, "system_prompt": None, "batch_size": 16}
MASK_SEED = 7
UNLEARN = {"train": {"epochs": 1, "batch_size": 4, "weight_decay": 0.01}, "eval_batch_size": 8, "seed": 0,
           "max_length": 96, "system_prompt": None}
BLOCKS = {"ga": {"lr": 1e-2}, "wga": {"lr": 1e-2, "alpha": 0.1}, "npo": {"lr": 1e-2, "beta": 0.5},
          "dpo": {"lr": 1e-2, "beta": 0.5}, "rmu": {"lr": 1e-2, "layer": 1, "scale": 2.0, "steering_seed": 0}}
MIX = {"max_length": 96, "system_prompt": None, "mix": {"alphas": 2, "batch_size": 16, "max_new_tokens": 8}}

# Measured (torch 2.13 CPU): bf16 autocast moves θo's logits by at most 0.026 (largest |logit|
# 5.6), summed answer log-likelihoods (-150 to -200 nats) by at most 0.03 and forget truth ratios
# by at most 0.2% of their value, mixing-curve probabilities and truth ratios by under 1%. The
# bounds below leave room above those; ES of this barely trained model is 0 under both precisions.
LOGIT_ATOL = 0.1
LOGPROB_ATOL = 0.5
TRUTH_RATIO_RTOL = 0.05
CURVE_RTOL = 0.05
ES_ATOL = 0.05


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Dataset, θp pretrained under bf16, a target mask, and θo injected under bf16 (θp as its θr)."""
    root = tmp_path_factory.mktemp("bf16")
    write_dataset(build_dataset(DATA), root / "data")
    stages.pretrain(PRETRAIN, root / "data", root / "theta_p", root / "pretrain.csv")
    save_mask(root / "target.safetensors", oracle_mask(TINY["num_layers"], TINY["intermediate_size"], 0.1, MASK_SEED))
    stages.inject_forget(INJECT, root / "theta_p", root / "target.safetensors", root / "data",
                         root / "theta_o.safetensors", root / "inject.csv")
    return root


@contextlib.contextmanager
def linear_output_dtypes():
    """Record the output dtype of every linear layer (plain or masked) that runs a forward pass."""
    seen: dict[str, set[torch.dtype]] = {}

    def record(module, args, output):
        if isinstance(module, (nn.Linear, MaskedDownProj)):
            seen.setdefault(type(module).__name__, set()).add(output.dtype)

    handle = nn.modules.module.register_module_forward_hook(record)
    try:
        yield seen
    finally:
        handle.remove()


def recording_optimizers(monkeypatch) -> list[torch.optim.Optimizer]:
    """Every optimizer the training loop creates from now on."""
    created = []
    build = train.build_optimizer

    def recorded(*args):
        created.append(build(*args))
        return created[-1]

    monkeypatch.setattr(train, "build_optimizer", recorded)
    return created


@torch.no_grad()
def off_the_bf16_grid(model) -> None:
    """Move every weight a little, to fp32 values bf16 cannot hold (a bf16 checkpoint loads as
    bf16-exact values), so that a bf16 round trip of any weight shows."""
    for p in model.parameters():
        p.mul_(1 + 2 ** -12)
        assert not torch.equal(p, p.bfloat16().float())


def logged_losses(path) -> list[tuple[int, float]]:
    with open(path, newline="") as f:
        return [(int(row["epoch"]), float(row["loss"])) for row in csv.DictReader(f)]


def retain_batcher(tokenizer, data_dir, n_items=12) -> Batcher:
    """One batch of the first retain items: few steps suffice to fit it through 10% of the value vectors."""
    records = load_role(data_dir, "retain")[:n_items]
    return Batcher(encode_records(tokenizer, records, 96), n_items, tokenizer.pad_token_id, seed=0, main="retain")


# --------------------------------------------------------------------------- masked training


def test_masked_training_runs_bf16_forwards_on_fp32_master_columns(built, tmp_path, monkeypatch):
    model, tokenizer = load_checkpoint(built / "theta_p")
    off_the_bf16_grid(model)
    mask = load_mask(built / "target.safetensors", model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizers = recording_optimizers(monkeypatch)
    cfg = TrainSettings(lr=1e-1, epochs=8, batch_size=12)
    with linear_output_dtypes() as seen:
        masked_train(model, mask, lambda b: answer_nll(model, b["retain"]), retain_batcher(tokenizer, built / "data"),
                     cfg, seed=0, precision="bf16", device="cpu", log_path=tmp_path / "log.csv", desc="test")

    # every matrix product of the forward passes ran in bf16, the masked down projections included
    assert seen == {"Linear": {torch.bfloat16}, "MaskedDownProj": {torch.bfloat16}}

    # the optimizer holds fp32 master columns of the masked value vectors alone, and fp32 state for them
    (optimizer,) = optimizers
    d_model = TINY["hidden_size"]
    expected = sorted((d_model, int(m.sum())) for m in mask.layers.values() if m.any())
    params = [p for group in optimizer.param_groups for p in group["params"]]
    assert sorted(tuple(p.shape) for p in params) == expected
    assert all(p.dtype == torch.float32 for p in params)
    assert len(optimizer.state) == len(params)
    for p, state in optimizer.state.items():
        assert state.keys() == {"step", "exp_avg", "exp_avg_sq"}
        for name in ("exp_avg", "exp_avg_sq"):
            assert state[name].dtype == torch.float32 and state[name].shape == p.shape, name
        assert state["step"].dtype == torch.float32 and state["step"].numel() == 1

    # every weight outside the mask is bit for bit what it was; the weights stay fp32
    after = model.state_dict()
    for key, old in before.items():
        assert after[key].dtype == torch.float32, key
        if key.endswith("mlp.down_proj.weight"):
            m = mask.layers[int(key.split(".")[2])]
            assert torch.equal(old[:, ~m], after[key][:, ~m]), key
            assert not torch.equal(old[:, m], after[key][:, m]), f"{key}: the masked columns did not move"
        else:
            assert torch.equal(old, after[key]), f"{key} changed but is outside the mask"

    losses = logged_losses(tmp_path / "log.csv")
    assert all(math.isfinite(loss) for _, loss in losses)
    assert losses[-1][1] < losses[0][1] - 0.1


def test_training_loop_autocasts_the_loss_only_under_bf16(built, tmp_path):
    model, tokenizer = load_checkpoint(built / "theta_p")
    mask = load_mask(built / "target.safetensors", model)
    for precision, expected in (("fp32", False), ("bf16", True)):
        autocast_on = []

        def loss_fn(batch, autocast_on=autocast_on):
            autocast_on.append(torch.is_autocast_enabled("cpu"))
            return answer_nll(model, batch["retain"])

        cfg = TrainSettings(lr=1e-3, epochs=1, batch_size=12)
        masked_train(model, mask, loss_fn, retain_batcher(tokenizer, built / "data"), cfg, seed=0,
                     precision=precision, device="cpu", log_path=None, desc="test")
        assert autocast_on and set(autocast_on) == {expected}, precision


# --------------------------------------------------------------------------- artifacts


def test_bf16_checkpoint_is_written_in_bf16_and_loads_as_fp32(built):
    theta_p = built / "theta_p"
    weights, _ = io.read_safetensors(theta_p / "model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}
    assert io.read_json(theta_p / "config.json")["dtype"] == "bfloat16"
    assert io.artifact_metadata(theta_p)["precision"] == "bf16"

    model, _ = load_checkpoint(theta_p)
    state = model.state_dict()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    for key, stored in weights.items():
        assert torch.equal(state[key], stored.float()), key


def test_export_writes_the_recorded_precision_unless_told_otherwise(built, tmp_path):
    stages.export(built / "theta_o.safetensors", tmp_path / "recorded")
    stages.export(built / "theta_o.safetensors", tmp_path / "fp32", precision="fp32")
    for name, precision, dtype in (("recorded", "bf16", torch.bfloat16), ("fp32", "fp32", torch.float32)):
        weights, _ = io.read_safetensors(tmp_path / name / "model.safetensors")
        assert {t.dtype for t in weights.values()} == {dtype}, name
        assert io.artifact_metadata(tmp_path / name)["precision"] == precision, name


def test_delta_trained_under_bf16_is_fp32_and_records_bf16(built):
    tensors, metadata = io.read_safetensors(built / "theta_o.safetensors")
    deltas = {k: v for k, v in tensors.items() if k.endswith(".delta")}
    assert deltas and {v.dtype for v in deltas.values()} == {torch.float32}
    assert metadata["precision"] == "bf16"
    # fp32 values that bf16 cannot hold: a bf16 delta would have rounded the trained columns
    assert any(not torch.equal(v, v.bfloat16().float()) for v in deltas.values())
    theta_o, _ = load_checkpoint(built / "theta_o.safetensors")
    assert all(p.dtype == torch.float32 for p in theta_o.parameters())


# --------------------------------------------------------------------------- evaluation


def test_es_stage_under_bf16_autocasts_and_stays_close_to_fp32(built, tmp_path):
    results = {}
    for precision in ("fp32", "bf16"):
        with linear_output_dtypes() as seen:
            stages.es({**ES, "precision": precision}, built / "theta_o.safetensors", built / "data",
                      tmp_path / f"{precision}.json")
        expected = torch.bfloat16 if precision == "bf16" else torch.float32
        assert seen == {"Linear": {expected}}, precision
        results[precision] = io.read_json(tmp_path / f"{precision}.json")
    for split in ("forget", "retain"):
        assert results["bf16"][f"es_{split}"] == pytest.approx(results["fp32"][f"es_{split}"], abs=ES_ATOL)


def test_reference_stats_under_bf16_differ_from_fp32_within_tolerance(built, tmp_path):
    ratios = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / f"{precision}.safetensors"
        stages.reference_stats({**REFERENCE, "precision": precision}, built / "theta_o.safetensors",
                               built / "data", out)
        tensors, metadata = io.read_safetensors(out)
        assert metadata["precision"] == precision
        ratios[precision] = tensors["forget_truth_ratio"]
    assert not torch.equal(ratios["fp32"], ratios["bf16"])
    torch.testing.assert_close(ratios["bf16"], ratios["fp32"], rtol=TRUTH_RATIO_RTOL, atol=0)


def test_every_objective_unlearns_under_bf16_and_mixing_stays_close_to_fp32(built, tmp_path):
    for objective, block in BLOCKS.items():
        out = tmp_path / f"{objective}.safetensors"
        with linear_output_dtypes() as seen:
            stages.unlearn({**UNLEARN, **BF16, "objective": objective, "block": block},
                           built / "theta_o.safetensors", built / "target.safetensors", built / "data", out,
                           tmp_path / f"{objective}.csv")
        # the NPO/DPO reference passes (plain linears) and the training passes (masked ones too)
        assert seen == {"Linear": {torch.bfloat16}, "MaskedDownProj": {torch.bfloat16}}, objective
        tensors, metadata = io.read_safetensors(out)
        assert {v.dtype for k, v in tensors.items() if k.endswith(".delta")} == {torch.float32}, objective
        assert metadata["precision"] == "bf16"
        assert all(math.isfinite(loss) for _, loss in logged_losses(tmp_path / f"{objective}.csv")), objective

    curves = {}
    for precision in ("fp32", "bf16"):
        reference = tmp_path / f"reference_{precision}.safetensors"
        stages.reference_stats({**REFERENCE, "precision": precision}, built / "theta_p", built / "data", reference)
        stages.mix_eval({**MIX, "precision": precision}, tmp_path / "npo.safetensors", reference, built / "data",
                        tmp_path / f"curve_{precision}.csv")
        with open(tmp_path / f"curve_{precision}.csv", newline="") as f:
            curves[precision] = torch.tensor([[float(v) for k, v in row.items() if k not in CURVE_LABELS]
                                              for row in csv.DictReader(f)], dtype=torch.float64)
    assert curves["fp32"].shape == (MIX["mix"]["alphas"], len(curve_columns(("es", "fq", "mu"))) + 1)
    assert not torch.equal(curves["fp32"], curves["bf16"])
    torch.testing.assert_close(curves["bf16"], curves["fp32"], rtol=CURVE_RTOL, atol=1e-6)


def test_bf16_logits_differ_from_fp32_within_tolerance(built):
    model, _ = load_checkpoint(built / "theta_o.safetensors")
    batch = random_lm_batch(vocab=TINY["vocab_size"])
    with torch.no_grad():
        plain = model(input_ids=batch["input_ids"]).logits
        with autocast_context("cpu", "bf16"):
            autocast = model(input_ids=batch["input_ids"]).logits
    assert autocast.dtype == torch.bfloat16
    assert not torch.equal(plain, autocast.float())
    torch.testing.assert_close(autocast.float(), plain, rtol=0, atol=LOGIT_ATOL)


def test_reference_logprobs_run_under_bf16_autocast(built):
    model, tokenizer = load_checkpoint(built / "theta_o.safetensors")
    forget = encode_records(tokenizer, load_role(built / "data", "forget"), 96)
    refs = {}
    for precision in ("fp32", "bf16"):
        ctx = LossContext(model, {"forget": forget}, tokenizer.pad_token_id, precision=precision, eval_batch_size=8)
        with linear_output_dtypes() as seen:
            refs[precision] = ctx.reference_logprobs("forget")
        assert seen["Linear"] == {torch.bfloat16 if precision == "bf16" else torch.float32}
        assert refs[precision].dtype == torch.float32
    assert not torch.equal(refs["fp32"], refs["bf16"])
    torch.testing.assert_close(refs["bf16"], refs["fp32"], rtol=0, atol=LOGPROB_ATOL)


# --------------------------------------------------------------------------- fp32 is the previous behaviour


def test_fp32_enters_no_autocast_and_changes_nothing():
    model = make_tiny_model()
    batch = random_lm_batch()
    with torch.no_grad():
        plain = model(input_ids=batch["input_ids"]).logits
        with autocast_context("cpu", "fp32"):
            assert not torch.is_autocast_enabled("cpu")
            within = model(input_ids=batch["input_ids"]).logits
    assert within.dtype == torch.float32
    assert torch.equal(plain, within)


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        check_precision("fp16")
    with pytest.raises(ConfigError, match="precision: 'fp16' is not one of 'fp32', 'bf16'"):
        stages.es({**ES, "precision": "fp16"}, "model", "data", "out.json")
