"""One function per pipeline stage: read inputs, compute, write outputs atomically.

Each stage is registered with a ``version``; the workflow puts it into the rule's params, so
bumping it (when a stage's semantics change) reruns that stage and what depends on it,
which Snakemake's code trigger cannot see for code under ``src/``.
Stage functions take the rule's params slice (a dict) and paths; they never read the
global config and never call Snakemake. Stages registered with ``runs_model`` also get the
config's ``precision`` in their params (precision.py): it changes their results.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from unloc import distributed, io
from unloc.data import build_dataset, load_role, write_dataset
from unloc.data.collate import collate, encode_qa, encode_records, encode_text
from unloc.masks import check_mask_fits, load_mask, random_mask, save_mask, target_mask
from unloc.metrics.es import per_example_es
from unloc.models import (attach_masked_columns, build_tiny_llama, column_delta, detach_masked_columns,
                          convert_gguf, gather_columns, resolve_pretrained, train_tokenizer)
from unloc.objectives import OBJECTIVES, answer_nll, forget_retain_nll, rmu_steering, sequence_logprob
from unloc.precision import autocast_context, checkpoint_dtype, precision_of
from unloc.train import Batcher, TrainConfig, to_device, train, write_log

log = logging.getLogger("unloc")


@dataclass(frozen=True)
class Stage:
    fn: Callable
    version: int
    runs_model: bool  # its params carry the config's precision


STAGES: dict[str, Stage] = {}


def stage(name: str, version: int, multi_process: bool = False, runs_model: bool = False):
    """Register a stage; one without ``multi_process`` refuses a torchrun launch of several processes,
    one with ``runs_model`` runs a model's forward passes in its params' ``precision``."""

    def register(fn):
        @functools.wraps(fn)
        def guarded(*args, **kwargs):
            if not multi_process:
                distributed.refuse_multi_process(name)
            return fn(*args, **kwargs)

        STAGES[name] = Stage(guarded, version, runs_model)
        return guarded

    return register


def resolve_device(name: str = "auto") -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA device is available (use auto or cpu)")
    return name


def _provenance(name: str, params: dict, **extra) -> dict:
    return {"stage": name, "stage_version": STAGES[name].version, "precision": precision_of(params),
            "config_digest": io.config_digest(params), **extra}


# --------------------------------------------------------------------------- data


@stage("prepare_data", version=1)
def prepare_data(params: dict, out_dir) -> None:
    """Build every dataset role (minitofu generated, or TOFU read) as JSON Lines."""
    write_dataset(build_dataset(params["data"]), out_dir)


# --------------------------------------------------------------------------- full-parameter models


def _tokenizer_texts(data_dir) -> list[str]:
    texts = [d["text"] for d in load_role(data_dir, "corpus")]
    for role in ("full", "forget_perturbed", "retain_perturbed", "real_authors_perturbed", "world_facts_perturbed"):
        for r in load_role(data_dir, role):
            texts.append(r["question"])
            for key in ("answer", "paraphrased_answer", "paraphrased_question"):
                if key in r:
                    texts.append(r[key])
            texts.extend(r.get("perturbed_answer", []))
    texts.extend(r["answer"] for r in load_role(data_dir, "idk"))
    return texts


def _train_all_parameters(model, tokenizer, examples, cfg: TrainConfig, *, device, log_path, desc, launch):
    """Train every parameter on ``answer_nll``; under torchrun, FSDP-sharded with the batch split by example."""
    if launch is None:
        loss_fn = lambda b: answer_nll(model, b)  # noqa: E731
    else:
        distributed.shard_model(model, launch)
        loss_fn = lambda b: distributed.rank_answer_nll(model, b, launch)  # noqa: E731
    model.train()
    train(list(model.parameters()), loss_fn, Batcher(examples, cfg.batch_size, tokenizer.pad_token_id, cfg.seed),
          cfg, device=device, log_path=log_path, desc=desc, launch=launch)


def _save_all_parameters(model, tokenizer, out_dir, metadata: dict, launch) -> None:
    """Save the checkpoint in the dtype of the precision ``metadata`` records; under torchrun
    the main rank gathers the shards and alone writes."""
    dtype = checkpoint_dtype(metadata["precision"])
    if launch is None:
        io.save_checkpoint(model.cpu(), tokenizer, out_dir, metadata, dtype=dtype)
        return
    whole = distributed.gather_on_main(model, launch)
    if launch.is_main:
        io.save_checkpoint(whole, tokenizer, out_dir, metadata, dtype=dtype)
    distributed.wait_for_main()


@stage("pretrain", version=1, multi_process=True, runs_model=True)
def pretrain(params: dict, data_dir, out_dir, log_path, device="cpu") -> None:
    """θp: train the tiny Llama from scratch on the corpus, resolve a named checkpoint, or
    convert a packaged GGUF file."""
    model_p = params["model"]
    origin = {}  # what a converted θp was made from, for its provenance
    with distributed.process_group(device) as launch:
        device = device if launch is None else launch.device
        main = launch is None or launch.is_main
        if model_p["source"] == "tiny":
            arch = {**model_p["tiny"], "max_length": model_p["max_length"]}
            # Every rank builds the same tokenizer and model: both are deterministic given the seed.
            tokenizer = train_tokenizer(_tokenizer_texts(data_dir), arch["vocab_size"])
            model = build_tiny_llama(arch, tokenizer, seed=params["seed"]).to(device)
            examples = [encode_text(tokenizer, d["text"], arch["max_length"]) for d in load_role(data_dir, "corpus")]
            cfg = TrainConfig.from_params(params["train"], seed=params["seed"], precision=precision_of(params))
            log.info("pretraining a %.2fM-parameter Llama on %d documents",
                     sum(p.numel() for p in model.parameters()) / 1e6, len(examples))
            _train_all_parameters(model, tokenizer, examples, cfg, device=device, log_path=log_path,
                                  desc="pretrain", launch=launch)
        elif model_p["source"] == "hf":
            # Nothing to train: only the main rank loads the checkpoint, the others wait for it.
            model, tokenizer = resolve_pretrained(model_p["name_or_path"]) if main else (None, None)
            if main:
                write_log(log_path, [])  # nothing trained; the log says so by being empty
        elif model_p["source"] == "gguf":
            # Converted on the main rank alone, as an hf checkpoint is resolved.
            gguf = model_p["gguf"]
            model, tokenizer, converted = (convert_gguf(gguf["package"], gguf["file"]) if main
                                           else (None, None, None))
            if main:
                origin = {"gguf": converted}
                write_log(log_path, [])
        else:
            raise ValueError(f"unknown model source {model_p['source']!r}: allowed tiny, hf, gguf")
        _save_all_parameters(model, tokenizer, out_dir, _provenance("pretrain", params, **origin), launch)


@stage("finetune", version=1, multi_process=True, runs_model=True)
def finetune(params: dict, theta_p, data_dir, split: str, out_dir, log_path, device="cpu") -> None:
    """θr (split=retain) or θfull (split=full): full-parameter fine-tuning on answer tokens."""
    with distributed.process_group(device) as launch:
        # Under torchrun the model is loaded on the CPU and FSDP moves each rank's shard to its
        # GPU, so no GPU ever holds the whole model.
        model, tokenizer = io.load_checkpoint(theta_p, device=device if launch is None else "cpu")
        device = device if launch is None else launch.device
        examples = encode_records(tokenizer, load_role(data_dir, split), params["max_length"],
                                  params.get("system_prompt"))
        cfg = TrainConfig.from_params(params["train"], seed=params["seed"], precision=precision_of(params))
        _train_all_parameters(model, tokenizer, examples, cfg, device=device, log_path=log_path,
                              desc=f"finetune[{split}]", launch=launch)
        _save_all_parameters(model, tokenizer, out_dir, _provenance(
            "finetune", params, parent=str(theta_p), parent_hash=io.artifact_hash(theta_p)), launch)


# --------------------------------------------------------------------------- masks


@stage("make_mask", version=1)
def make_mask(params: dict, model_dir, seed: int, out_target, out_random) -> None:
    """V_tgt (ratio of all value vectors, seeded) and V_rdm (as many, from outside V_tgt)."""
    config = io.read_json(Path(model_dir) / "config.json")
    n_layers, d_ff = config["num_hidden_layers"], config["intermediate_size"]
    source = {"source_model": str(model_dir), "source_hash": io.artifact_hash(model_dir)}
    tgt = target_mask(n_layers, d_ff, params["ratio"], seed)
    rdm = random_mask(tgt, params["ratio"], seed)
    for mask, path in ((tgt, out_target), (rdm, out_random)):
        mask.metadata.update(source)
        save_mask(path, mask)
    log.info("masks for seed %d: %d of %d value vectors each", seed, tgt.count(), n_layers * d_ff)


# --------------------------------------------------------------------------- masked training


def masked_train(model, mask, loss_fn, batcher: Batcher, cfg: TrainConfig, *, device, log_path, desc):
    """Train only the masked value vectors; return the sparse delta payload vs the start."""
    check_mask_fits(mask, model)
    indices = mask.indices()
    before = gather_columns(model, indices)
    model.to(device).train()
    params = attach_masked_columns(model, indices)
    train(params, loss_fn, batcher, cfg, device=device, log_path=log_path, desc=desc)
    detach_masked_columns(model)
    return column_delta(model.cpu(), before, indices)


@stage("inject_forget", version=1, runs_model=True)
def inject_forget(params: dict, theta_r, mask_path, data_dir, out_delta, log_path, device="cpu") -> None:
    """θo: learn the forget set inside V_tgt only, with lambda_retain * retain loss."""
    model, tokenizer = io.load_checkpoint(theta_r)
    mask = load_mask(mask_path, model)
    encode = lambda role: encode_records(tokenizer, load_role(data_dir, role), params["max_length"],  # noqa: E731
                                         params.get("system_prompt"))
    cfg = TrainConfig.from_params(params["train"], seed=params["seed"], precision=precision_of(params))
    batcher = Batcher(encode("forget"), cfg.batch_size, tokenizer.pad_token_id, cfg.seed, paired=encode("retain"))
    lam = params["train"]["lambda_retain"]
    columns = masked_train(model, mask, lambda b: forget_retain_nll(model, b, lam), batcher, cfg,
                           device=device, log_path=log_path, desc="inject_forget")
    io.save_delta(out_delta, columns, parent=theta_r,
                  metadata=_provenance("inject_forget", params, mask=str(mask_path)))


# --------------------------------------------------------------------------- unlearning


@torch.no_grad()
def _sequence_logprobs(model, examples, pad_id, batch_size, device, precision) -> torch.Tensor:
    """log p(y|x) of every example under a frozen model (the NPO/DPO reference, θo)."""
    model.eval()
    with autocast_context(device, precision):
        out = [sequence_logprob(model, to_device(collate(examples[i:i + batch_size], pad_id), device))
               for i in range(0, len(examples), batch_size)]
    return torch.cat(out)


def _idk_answers(idk: list[dict], n: int, seed: int) -> list[str]:
    """One refusal answer per forget item, drawn with a fixed seed (DPO's preferred answers)."""
    rng = random.Random(seed)
    return [rng.choice(idk)["answer"] for _ in range(n)]


def objective_loss(name: str, hparams: dict, model, tokenizer, forget, data_dir, params, device):
    """The loss of one batch for objective ``name``, its per-example inputs prepared once on θo.

    Returns ``(loss_fn, aligned)``: ``aligned`` is the set DPO pairs with each forget item.
    """
    fn, pad, precision = OBJECTIVES[name], tokenizer.pad_token_id, precision_of(params)
    if name == "wga":
        return (lambda b: fn(model, b, alpha=hparams["alpha"])), None
    if name == "npo":
        ref = _sequence_logprobs(model.to(device), forget, pad, params["eval_batch_size"], device, precision)
        return (lambda b: fn(model, b, beta=hparams["beta"], ref_logprob=ref[b["index"]])), None
    if name == "dpo":
        records = load_role(data_dir, "forget")
        idk = encode_records(tokenizer, [{"question": r["question"], "answer": a} for r, a in zip(
            records, _idk_answers(load_role(data_dir, "idk"), len(records), params["seed"]))],
            params["max_length"], params.get("system_prompt"))
        ref_lose = _sequence_logprobs(model.to(device), forget, pad, params["eval_batch_size"], device, precision)
        ref_win = _sequence_logprobs(model, idk, pad, params["eval_batch_size"], device, precision)
        return (lambda b: fn(model, b, beta=hparams["beta"], ref_win=ref_win[b["main"]["index"]],
                             ref_lose=ref_lose[b["main"]["index"]])), idk
    if name == "rmu":
        steering = rmu_steering(model.config.hidden_size, hparams["scale"], hparams["steering_seed"]).to(device)
        return (lambda b: fn(model, b, layer=hparams["layer"], steering=steering)), None
    raise ValueError(f"unknown objective {name!r}: allowed {', '.join(OBJECTIVES)}")


@stage("unlearn", version=1, runs_model=True)
def unlearn(params: dict, theta_o, mask_path, data_dir, out_delta, log_path, device="cpu") -> None:
    """θu: unlearn the forget set from θo with updates only inside one mask (Oracle or Random)."""
    name = params["objective"]
    model, tokenizer = io.load_checkpoint(theta_o)
    mask = load_mask(mask_path, model)
    forget = encode_records(tokenizer, load_role(data_dir, "forget"), params["max_length"], params.get("system_prompt"))
    hparams = params["hparams"]
    loss_fn, aligned = objective_loss(name, hparams, model, tokenizer, forget, data_dir, params, device)
    cfg = TrainConfig.from_params(params["train"], lr=hparams["lr"], seed=params["seed"],
                                  precision=precision_of(params))
    batcher = Batcher(forget, cfg.batch_size, tokenizer.pad_token_id, cfg.seed, aligned=aligned)
    columns = masked_train(model, mask, loss_fn, batcher, cfg, device=device, log_path=log_path,
                           desc=f"unlearn[{name}]")
    io.save_delta(out_delta, columns, parent=theta_o,
                  metadata=_provenance("unlearn", params, mask=str(mask_path)))


# --------------------------------------------------------------------------- evaluation


@stage("es", version=1, runs_model=True)
def es(params: dict, checkpoint, data_dir, out_json, device="cpu") -> None:
    """Mean teacher-forced ES of one model on the forget and retain splits."""
    model, tokenizer = io.load_checkpoint(checkpoint, device=device)
    result = {"checkpoint": str(checkpoint)}
    start = time.time()
    for role in ("forget", "retain"):
        records = load_role(data_dir, role)
        limit = params.get("max_items")
        if limit:
            records = records[:limit]
        examples = [encode_qa(tokenizer, r["question"], r["answer"], params["max_length"], params.get("system_prompt"))
                    for r in records]
        with autocast_context(device, precision_of(params)):
            scores = per_example_es(model, examples, tokenizer.pad_token_id, params["batch_size"], device,
                                    params["es_convention"])
        result[f"es_{role}"] = float(scores.mean())
        result[f"n_{role}"] = len(examples)
    result["seconds"] = round(time.time() - start, 2)
    io.write_json(out_json, result)


def _tofu_eval_config(params, device):
    from unloc.metrics.tofu import TofuEvalConfig

    return TofuEvalConfig(max_length=params["max_length"], batch_size=params["batch_size"],
                          max_new_tokens=params["max_new_tokens"], system_prompt=params.get("system_prompt"),
                          device=device)


@stage("reference_stats", version=2, runs_model=True)
def reference_stats(params: dict, checkpoint, data_dir, out_path, device="cpu") -> None:
    """θr's raw per-item forget truth ratios, computed once: the sample FQ's KS test compares to."""
    from unloc.metrics.tofu import forget_truth_ratios

    model, tokenizer = io.load_checkpoint(checkpoint, device=device)
    with autocast_context(device, precision_of(params)):
        tr = forget_truth_ratios(model, tokenizer, load_role(data_dir, "forget_perturbed"),
                                 _tofu_eval_config(params, device))
    io.write_safetensors(out_path, {"forget_truth_ratio": tr.double()},
                         _provenance("reference_stats", params, model=str(checkpoint)))


def curve_columns() -> list[str]:
    from unloc.metrics.tofu import UTILITY_PARTS

    return ["alpha", "es_forget", "es_retain", "fs", "rs", "fq", "log10_fq", "mu", *UTILITY_PARTS]


@stage("mix_eval", version=3, runs_model=True)
def mix_eval(params: dict, theta_u, reference, data_dir, out_csv, device="cpu") -> None:
    """One row per α of θ(α) = (1 - α) θo + α θu: ES forget/retain, FS, RS, FQ, MU and its parts."""
    from unloc.metrics.point import RS_FROM_MU_PASS, check_forget_items, evaluate_point
    from unloc.mixing import ColumnMixer, alpha_grid

    io.delta_chain(theta_u)  # verifies every parent link before anything is computed
    delta = io.load_delta(theta_u)
    model, tokenizer = io.load_checkpoint(delta.parent, device=device)  # θo
    mixer = ColumnMixer(model, delta)
    ref_tr = io.read_safetensors(reference)[0]["forget_truth_ratio"]
    cfg = _tofu_eval_config(params, device)
    roles = {r: load_role(data_dir, r) for r in ("forget_perturbed", "retain_perturbed",
                                                 "real_authors_perturbed", "world_facts_perturbed")}
    check_forget_items(load_role(data_dir, "forget"), roles["forget_perturbed"])
    rs_items = params["rs_items"]
    retain_es = None
    if rs_items != RS_FROM_MU_PASS:
        retain = load_role(data_dir, "retain")[: None if rs_items == "all" else rs_items]
        retain_es = encode_records(tokenizer, retain, params["max_length"], params.get("system_prompt"))
    rows = []
    for alpha in tqdm(alpha_grid(params["alphas"]), desc="mix_eval", unit="α", mininterval=2.0):
        mixer.set_alpha(alpha)  # fp32 arithmetic on the fp32 weights; only the forward passes autocast
        with autocast_context(device, precision_of(params)):
            point = evaluate_point(model, tokenizer, roles, ref_tr, cfg, params["es_convention"], retain_es)
        rows.append({"alpha": alpha, **point})
    io.write_csv(out_csv, rows, curve_columns())


@stage("sanity", version=1)
def sanity(named_results: dict[str, str], out_csv) -> None:
    """One row per checkpoint; rows named ``theta_o[s*]`` are also averaged into ``theta_o``."""
    rows = [{"checkpoint": name, **_es_of(path)} for name, path in named_results.items()]
    seeds = [r for r in rows if r["checkpoint"].startswith("theta_o[")]
    if seeds:
        rows.insert(next(i for i, r in enumerate(rows) if r in seeds), {
            "checkpoint": "theta_o",
            "es_forget": sum(r["es_forget"] for r in seeds) / len(seeds),
            "es_retain": sum(r["es_retain"] for r in seeds) / len(seeds)})
    io.write_csv(out_csv, [{"checkpoint": r["checkpoint"], "es_forget": f"{r['es_forget']:.4f}",
                            "es_retain": f"{r['es_retain']:.4f}"} for r in rows],
                 ["checkpoint", "es_forget", "es_retain"])


def _es_of(path) -> dict:
    result = io.read_json(path)
    return {"es_forget": result["es_forget"], "es_retain": result["es_retain"]}


# --------------------------------------------------------------------------- tables and figures


@stage("table2", version=1)
def table2(params: dict, model_name: str, curve_paths: list[str], out_csv, out_md) -> None:
    """Table 2 from the mixing curves (tables.py)."""
    from unloc.tables import write_table2

    write_table2(curve_paths, model_name, params, out_csv, out_md)


@stage("figure", version=1)
def figure(kind: str, model_name: str, curve_paths: list[str], out_png, out_pdf) -> None:
    """FS-RS or MU-FQ curves from the mixing curves (figures.py)."""
    from unloc.figures import plot_curves

    plot_curves(curve_paths, kind, model_name, out_png, out_pdf)


# --------------------------------------------------------------------------- export


def export(artifact, out_dir, precision: str | None = None) -> None:
    """Materialise a checkpoint or delta chain as a full HF directory, in the dtype of
    ``precision``: by default the precision the artifact was made under (fp32 where it records none)."""
    distributed.refuse_multi_process("export")
    precision = precision or io.artifact_metadata(artifact).get("precision", "fp32")
    model, tokenizer = io.load_checkpoint(artifact)
    metadata = {"stage": "export", "source": str(artifact), "source_hash": io.artifact_hash(artifact),
                "precision": precision}
    io.save_checkpoint(model, tokenizer, out_dir, metadata, dtype=checkpoint_dtype(precision))
