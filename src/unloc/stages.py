"""One function per pipeline stage: read inputs, compute, write outputs atomically.

Every stage is an entry of ``STAGES``: one name for the function, the CLI subcommand and the
workflow rule. Its spec holds

* ``version``: the workflow puts it into the rule's params, so bumping it (when a stage's
  semantics change) reruns that stage and what depends on it, which Snakemake's code trigger
  cannot see for code under ``src/``;
* ``settings``: the dataclass its ``--params`` (the rule's config slice) must fit; a missing,
  unknown or mistyped key is refused with its name before anything runs;
* ``args``: its paths and other command-line options (the CLI builds its parser from them);
* ``runs_model``: its params carry the config's ``precision`` (precision.py), which changes results;
* ``multi_process``: it may run under torchrun on several GPUs (FSDP); every other stage refuses.

Stage functions take their params and paths; they never read the global config and never
call Snakemake.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm import tqdm

from unloc import distributed, geffect, io, weightings
from unloc.checkpoints import load_checkpoint, resolve_pretrained, save_checkpoint
from unloc.data import build_dataset, load_role, write_dataset
from unloc.data.collate import encode_qa, encode_records, encode_text
from unloc.localizers import LOCALIZERS, LocalizerInputs
from unloc.localizers import localize as run_localizer
from unloc.masks import load_mask, save_mask
from unloc.metrics.es import per_example_es
from unloc.models import attach_attention_and_down_proj, build_tiny_llama, detach_masked, train_tokenizer
from unloc.objectives import (
    OBJECTIVES,
    REGULARIZERS,
    LossContext,
    ObjectiveRun,
    combine_losses,
    forget_retain_nll,
    parse_objective,
    prepare_loss_parts,
)
from unloc.precision import PRECISIONS, autocast_context, checkpoint_dtype
from unloc.registry import Choice, ConfigError, NoSettings, Registry, Spec, parse_settings, setting, to_dict
from unloc.sanity import SanitySettings, check_rows
from unloc.sanity import write as write_sanity
from unloc.scoring import answer_nll
from unloc.train import (
    Batcher,
    InjectSettings,
    LoopSettings,
    TrainSettings,
    masked_train,
    to_device,
    train,
    write_log,
)
from unloc.weightings import WEIGHTINGS

logger = logging.getLogger("unloc")


@dataclass(frozen=True, kw_only=True)
class Arg:
    """One command-line option of a stage (``--name``), or its positional arguments."""

    name: str
    help: str
    required: bool = True
    choices: tuple | None = None
    repeat: bool = False  # an option: may be given several times; positional: one or more (a list)
    positional: bool = False
    metavar: str | None = None


@dataclass(frozen=True, kw_only=True)
class StageSpec(Spec):
    """``settings`` is the dataclass of the stage's ``--params`` (NoSettings: it takes none)."""

    version: int = 1
    runs_model: bool = False
    multi_process: bool = False
    args: tuple[Arg, ...] = ()
    workflow: bool = True  # a rule of the workflow; export is a command only
    variants: tuple[Registry, ...] = ()  # the families its params choose from, listed by --help

    @property
    def takes_params(self) -> bool:
        return self.settings is not NoSettings

    @property
    def takes_device(self) -> bool:
        return "device" in inspect.signature(self.fn).parameters


STAGES: Registry[StageSpec] = Registry("stage", StageSpec)


def read_params(spec: StageSpec, value) -> Any:
    """A stage's params as its settings dataclass; a dict from the workflow may carry the
    stage ``version`` it was made for, which must be this code's."""
    if isinstance(value, spec.settings):
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"{spec.name} --params: expected a JSON object, got {value!r}")
    value = dict(value)
    version = value.pop("version", spec.version)
    if version != spec.version:
        raise ConfigError(f"{spec.name} --params were made for version {version} of the stage, but this code is "
                          f"version {spec.version}: rerun the workflow, whose params trigger then reruns the stage")
    return parse_settings(spec.settings, value, f"{spec.name} --params")


def stage(name: str, *, settings: type = NoSettings, version: int = 1, runs_model: bool = False,
          multi_process: bool = False, args: tuple[Arg, ...] = (), workflow: bool = True,
          variants: tuple[Registry, ...] = ()):
    """Register a stage. Called with a params dict (or its dataclass) first when it takes params."""

    def register(fn):
        @functools.wraps(fn)
        def run(*call_args, **kwargs):
            if not multi_process:
                distributed.refuse_multi_process(name)
            if settings is not NoSettings:
                call_args = (read_params(STAGES[name], call_args[0]), *call_args[1:])
            return fn(*call_args, **kwargs)

        doc = " ".join((fn.__doc__ or "").strip().split("\n\n")[0].split())
        STAGES.add(StageSpec(name=name, fn=run, settings=settings, version=version, runs_model=runs_model,
                             multi_process=multi_process, args=args, workflow=workflow, variants=variants,
                             help=doc))
        return run

    return register


def resolve_device(name: str = "auto") -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA device is available (use auto or cpu)")
    return name


def _provenance(name: str, params, **extra) -> dict:
    return {"stage": name, "stage_version": STAGES[name].version,
            "precision": getattr(params, "precision", "fp32"),
            "config_digest": io.config_digest(to_dict(params)), **extra}


# --------------------------------------------------------------------------- params shared by stages


@dataclass(frozen=True, kw_only=True)
class ModelParams:
    precision: Literal["fp32", "bf16"] = setting("fp32", "forward passes under bf16 autocast or in fp32 "
                                                         "(precision.py); part of every model stage's params")


@dataclass(frozen=True, kw_only=True)
class QaParams(ModelParams):
    """What every stage that turns QA records into tokens needs."""

    max_length: int = setting(help="tokens per QA (prompt + answer + EOS): model.max_length", minimum=8)
    system_prompt: str | None = setting(None, "system prompt of chat-template models (model.system_prompt)")


MODEL = Arg(name="model", help="model directory or delta")
DATA = Arg(name="data", help="dataset directory from prepare_data")
LOG = Arg(name="log", help="training log CSV (loss per step)")


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, kw_only=True)
class DataParams:
    data: dict = setting(help="the config's data section (workflow/schemas/config.schema.yaml)")


@stage("prepare_data", settings=DataParams, args=(Arg(name="out", help="output directory"),))
def prepare_data(params: DataParams, out) -> None:
    """Build the dataset roles (full, forget, retain, perturbed, real authors, world facts, idk,
    corpus) as JSON Lines in OUT: minitofu generated, or TOFU read."""
    write_dataset(build_dataset(params.data), out)


@stage("holdout_data", settings=DataParams, args=(Arg(name="out", help="output JSON Lines file"),))
def holdout_data(params: DataParams, out) -> None:
    """The dataset's holdout QA (authors no model sees), the non-members of ``evaluate``'s MIA."""
    from unloc.data import build_holdout

    io.write_jsonl(out, build_holdout(params.data))


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


def _train_all_parameters(model, tokenizer, examples, cfg: TrainSettings, *, seed, precision, device, log_path,
                          desc, launch):
    """Train every parameter on ``answer_nll``; under torchrun, FSDP-sharded with the batch split by example."""
    if launch is None:
        loss_fn = lambda b: answer_nll(model, b["main"])  # noqa: E731
    else:
        distributed.shard_model(model, launch)
        loss_fn = lambda b: distributed.rank_answer_nll(model, b["main"], launch)  # noqa: E731
    model.train()
    train(list(model.parameters()), loss_fn, Batcher(examples, cfg.batch_size, tokenizer.pad_token_id, seed),
          cfg, seed=seed, precision=precision, device=device, log_path=log_path, desc=desc, launch=launch, model=model)


def _save_all_parameters(model, tokenizer, out_dir, metadata: dict, launch) -> None:
    """Save the checkpoint in the dtype of the precision ``metadata`` records; under torchrun
    the main rank gathers the shards and alone writes."""
    dtype = checkpoint_dtype(metadata["precision"])
    if launch is None:
        save_checkpoint(model.cpu(), tokenizer, out_dir, metadata, dtype=dtype)
        return
    whole = distributed.gather_on_main(model, launch)
    if launch.is_main:
        save_checkpoint(whole, tokenizer, out_dir, metadata, dtype=dtype)
    distributed.wait_for_main()


@dataclass(frozen=True, kw_only=True)
class PretrainParams(ModelParams):
    model: dict = setting(help="the config's model section (its source says what pretrain does)")
    train: TrainSettings | None = setting(None, "the config's pretrain section (source tiny only)")
    seed: int = setting(0, "seed of the tokenizer, the initialisation and the batches")


@stage("pretrain", settings=PretrainParams, runs_model=True, multi_process=True,
       args=(DATA, Arg(name="out", help="output HF model directory"), LOG))
def pretrain(params: PretrainParams, data, out, log, device="cpu") -> None:
    """θp: pretrain the tiny Llama (with its BPE tokenizer) on the corpus, resolve a named HF
    checkpoint, or convert a packaged GGUF file, into a local model directory."""
    from unloc.gguf import convert_gguf

    model_p = params.model
    origin = {}  # what a converted θp was made from, for its provenance
    with distributed.process_group(device) as launch:
        device = device if launch is None else launch.device
        main = launch is None or launch.is_main
        if model_p["source"] == "tiny":
            if params.train is None:
                raise ConfigError("pretrain --params: a tiny model needs train (the config's pretrain section)")
            arch = {**model_p["tiny"], "max_length": model_p["max_length"]}
            # Every rank builds the same tokenizer and model: both are deterministic given the seed.
            tokenizer = train_tokenizer(_tokenizer_texts(data), arch["vocab_size"])
            model = build_tiny_llama(arch, tokenizer, seed=params.seed).to(device)
            examples = [encode_text(tokenizer, d["text"], arch["max_length"]) for d in load_role(data, "corpus")]
            logger.info("pretraining a %.2fM-parameter Llama on %d documents",
                     sum(p.numel() for p in model.parameters()) / 1e6, len(examples))
            _train_all_parameters(model, tokenizer, examples, params.train, seed=params.seed,
                                  precision=params.precision, device=device, log_path=log, desc="pretrain",
                                  launch=launch)
        elif model_p["source"] == "hf":
            # Nothing to train: only the main rank loads the checkpoint, the others wait for it.
            model, tokenizer = resolve_pretrained(model_p["name_or_path"]) if main else (None, None)
            if main:
                write_log(log, [])  # nothing trained; the log says so by being empty
        elif model_p["source"] == "gguf":
            # Converted on the main rank alone, as an hf checkpoint is resolved.
            gguf = model_p["gguf"]
            model, tokenizer, converted = (convert_gguf(gguf["package"], gguf["file"]) if main
                                           else (None, None, None))
            if main:
                origin = {"gguf": converted}
                write_log(log, [])
        else:
            raise ConfigError(f"unknown model source {model_p['source']!r}: allowed tiny, hf, gguf")
        _save_all_parameters(model, tokenizer, out, _provenance("pretrain", params, **origin), launch)


@dataclass(frozen=True, kw_only=True)
class FinetuneParams(QaParams):
    train: TrainSettings = setting(help="the config's finetune_<split> section")
    seed: int = setting(0, "seed of the batches")


@stage("finetune", settings=FinetuneParams, runs_model=True, multi_process=True,
       args=(Arg(name="model", help="θp model directory"), DATA,
             Arg(name="split", help="the dataset role to fine-tune on", choices=("retain", "full", "forget")),
             Arg(name="out", help="output HF model directory"), LOG))
def finetune(params: FinetuneParams, model, data, split: str, out, log, device="cpu") -> None:
    """Full-parameter fine-tuning on one split: retain → θr, full → θfull, forget → θ_fgt."""
    theta_p = model
    with distributed.process_group(device) as launch:
        # Under torchrun the model is loaded on the CPU and FSDP moves each rank's shard to its
        # GPU, so no GPU ever holds the whole model.
        model, tokenizer = load_checkpoint(theta_p, device=device if launch is None else "cpu")
        device = device if launch is None else launch.device
        examples = encode_records(tokenizer, load_role(data, split), params.max_length, params.system_prompt)
        _train_all_parameters(model, tokenizer, examples, params.train, seed=params.seed, precision=params.precision,
                              device=device, log_path=log, desc=f"finetune[{split}]", launch=launch)
        _save_all_parameters(model, tokenizer, out, _provenance(
            "finetune", params, parent=str(theta_p), parent_hash=io.artifact_hash(theta_p)), launch)


# --------------------------------------------------------------------------- masks


@dataclass(frozen=True, kw_only=True)
class LocalizeParams:
    localizer: str = setting(help="a localizer name (src/unloc/localizers/)")
    settings: dict = setting(help="the localizer's settings block (masks.<localizer> in the config)")
    ratio: float = setting(help="share of all entries the mask selects (masks.ratio)", exclusive_minimum=0,
                           maximum=1)
    seed: int = setting(help="the mask seed")
    max_length: int | None = setting(None, "tokens per QA (model.max_length): localizers that score examples",
                                     minimum=8)
    system_prompt: str | None = setting(None, "system prompt of chat-template models (model.system_prompt)")


def _named_paths(items: list[str] | None, what: str) -> dict[str, str]:
    named = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"{what} {item!r}: expected NAME=PATH")
        named[name] = path
    return named


@stage("localize", settings=LocalizeParams, version=2, variants=(LOCALIZERS,),
       args=(Arg(name="model", help="the model localized in: its shapes for oracle and random (θp), its weights "
                                    "for the localizers that score (θfull; a directory or a delta)"),
             Arg(name="mask", help="another localizer's mask of the same seed, e.g. oracle=masks/oracle/s7/"
                                   "mask.safetensors (repeatable)", required=False, repeat=True),
             Arg(name="data", help="dataset directory (localizers that score examples)", required=False),
             Arg(name="out", help="output mask (safetensors)"),
             Arg(name="scores", help="output scores (safetensors), for localizers that score", required=False)))
def localize(params: LocalizeParams, model, out, mask=None, data=None, scores=None, device="cpu") -> None:
    """One localizer's mask for one seed: ratio of all entries at the localizer's granularity
    (oracle = V_tgt, random = V_rdm drawn outside it, or the top-scored entries of an attribution
    method); a localizer that scores also writes its scores."""
    spec = LOCALIZERS.get(params.localizer, "localize --params.localizer")
    settings = spec.parse(params.settings, f"masks.{spec.name}")
    given = _named_paths(mask, "--mask")
    needed = spec.masks(settings)
    missing = [n for n in needed if n not in given]
    if missing:
        raise ConfigError(f"localizer {spec.name} needs the mask of {', '.join(missing)}: give --mask NAME=PATH")
    if spec.scores and scores is None:
        raise ConfigError(f"localizer {spec.name} scores value vectors: give --scores")
    if spec.roles and (data is None or params.max_length is None):
        raise ConfigError(f"localizer {spec.name} scores {' and '.join(spec.roles)} examples: give --data and "
                          "--params.max_length")
    inputs = _localizer_inputs(spec, params, model, {n: load_mask(given[n]) for n in needed}, data, device)
    result = run_localizer(spec.name, settings, inputs, params.ratio, params.seed)
    result.mask.metadata.update({"source_model": str(model), "source_hash": io.artifact_hash(model),
                                 **{f"mask_{n}": given[n] for n in needed}})
    save_mask(out, result.mask)
    if spec.scores:
        tensors = {f"layers.{layer}.down_proj.scores": s for layer, s in result.scores.items()}
        for name, per_layer in result.details.items():
            tensors.update({f"layers.{layer}.down_proj.{name}": t for layer, t in per_layer.items()})
        io.write_safetensors(scores, tensors, {**result.mask.metadata, "format": "unloc-scores/1"})
    logger.info("%s mask for seed %d: %d of %d %s", spec.name, params.seed, result.mask.count(), result.mask.size(),
                result.mask.granularity)


def _localizer_inputs(spec, params: LocalizeParams, model, masks, data, device) -> LocalizerInputs:
    """Shapes only, or the loaded model (fp32) and the encoded examples of the roles it scores."""
    if not spec.reads_weights:
        return LocalizerInputs(model_config=io.read_json(Path(model) / "config.json"), masks=masks, device=device)
    loaded, tokenizer = load_checkpoint(model, device=device)
    sets = {role: encode_records(tokenizer, load_role(data, role), params.max_length, params.system_prompt)
            for role in spec.roles}
    return LocalizerInputs(model_config=loaded.config.to_dict(), model=loaded, pad_id=tokenizer.pad_token_id,
                           masks=masks, sets=sets, device=device)


# --------------------------------------------------------------------------- masked training


@dataclass(frozen=True, kw_only=True)
class InjectParams(QaParams):
    train: InjectSettings = setting(help="the config's inject section")
    seed: int = setting(0, "seed of the batches")


@stage("inject_forget", settings=InjectParams, version=2, runs_model=True,
       args=(Arg(name="model", help="θr model directory"), Arg(name="mask", help="the oracle mask (safetensors)"),
             DATA, Arg(name="out", help="output delta (safetensors)"), LOG))
def inject_forget(params: InjectParams, model, mask, data, out, log, device="cpu") -> None:
    """θo: train θr on the forget set with updates only inside the oracle mask V_tgt
    (loss L_forget + lambda_retain * L_retain); writes a sparse delta on θr."""
    theta_r, mask_path = model, mask
    model, tokenizer = load_checkpoint(theta_r)
    mask = load_mask(mask_path, model)
    encode = lambda role: encode_records(tokenizer, load_role(data, role), params.max_length,  # noqa: E731
                                         params.system_prompt)
    cfg = params.train
    batcher = Batcher(encode("forget"), cfg.batch_size, tokenizer.pad_token_id, params.seed, main="forget",
                      paired={"retain": encode("retain")})
    lam = cfg.lambda_retain
    entries = masked_train(model, mask, lambda b: forget_retain_nll(model, b["forget"], b["retain"], lam), batcher,
                           cfg, seed=params.seed, precision=params.precision, device=device, log_path=log,
                           desc="inject_forget")
    io.save_delta(out, entries, parent=theta_r, granularity=mask.granularity,
                  metadata=_provenance("inject_forget", params, mask=str(mask_path)))


def _idk_answers(idk: list[dict], n: int, seed: int) -> list[str]:
    """One refusal answer per forget item, drawn with a fixed seed (DPO's preferred answers)."""
    rng = random.Random(seed)
    return [rng.choice(idk)["answer"] for _ in range(n)]


@dataclass(frozen=True, kw_only=True)
class UnlearnParams(QaParams):
    objective: str = setting(help="an objective name (objectives.py)")
    block: dict = setting(help="the objective's config block, unlearn.<objective>: lr, regularizer, its settings")
    train: LoopSettings = setting(help="the config's unlearn.train section (the LR is the objective's)")
    eval_batch_size: int = setting(32, "batch size of the reference log-likelihoods", minimum=1)
    scenario: Literal["injected", "original"] = setting(
        "injected", "what unlearning starts from, recorded on its curves: injected = θo (seeds/000 Section 4), "
                    "original = θfull (Section 3)")
    seed: int = setting(0, "seed of the batches and of the IDK answers")


def _sub_batch_sets(needs, tokenizer, data, params: UnlearnParams,
                    held_out: frozenset[str] = frozenset()) -> dict[str, list]:
    """The encoded examples of every sub-batch the run's losses read (objectives.SUB_BATCHES);
    retain questions in ``held_out`` are left out."""
    encode = lambda records: encode_records(tokenizer, records, params.max_length, params.system_prompt)  # noqa: E731
    forget_records = load_role(data, "forget")
    sets = {"forget": encode(forget_records)}
    if "retain" in needs:
        sets["retain"] = encode([r for r in load_role(data, "retain") if r["question"] not in held_out])
    if "idk" in needs:
        answers = _idk_answers(load_role(data, "idk"), len(forget_records), params.seed)
        sets["idk"] = encode([{"question": r["question"], "answer": a} for r, a in zip(forget_records, answers)])
    return sets


@dataclass
class Unlearning:
    """One unlearning run set up: the parsed objective block, the loss of a step, the batches and
    the training settings (the LR is the objective's)."""

    run: ObjectiveRun
    loss_fn: Callable[[dict], torch.Tensor]
    batcher: Batcher
    train: TrainSettings
    context: LossContext
    objective_fn: Callable[[dict], torch.Tensor]  # loss_fn's parts: the objective's loss alone,
    regularizer_fn: Callable[[dict], torch.Tensor] | None  # and the weighted regularizer's


def prepare_unlearning(params: UnlearnParams, model, tokenizer, data, device="cpu", target=None,
                       held_out: frozenset[str] = frozenset()) -> Unlearning:
    """Everything an unlearning run needs before it trains; its references are ``model`` as it is
    now, ``target`` (θr) the model whose activations an objective with ``target`` matches;
    ``held_out`` retain questions are never in a retain batch."""
    run = parse_objective(params.objective, params.block, f"unlearn.{params.objective}")
    sets = _sub_batch_sets(run.needs, tokenizer, data, params, held_out)
    ctx = LossContext(model, sets, tokenizer.pad_token_id, device=device, precision=params.precision,
                      eval_batch_size=params.eval_batch_size, target=target)
    objective_fn, regularizer_fn = prepare_loss_parts(run, ctx)
    loss_fn = combine_losses(objective_fn, regularizer_fn)
    loop = {f.name: getattr(params.train, f.name) for f in fields(LoopSettings)}
    cfg = TrainSettings(**loop, lr=run.lr)
    batcher = Batcher(sets["forget"], cfg.batch_size, tokenizer.pad_token_id, params.seed, main="forget",
                      aligned={n: sets[n] for n in run.needs if n == "idk"},
                      paired={n: sets[n] for n in run.needs if n == "retain"})
    return Unlearning(run, loss_fn, batcher, cfg, ctx, objective_fn, regularizer_fn)


@stage("unlearn", settings=UnlearnParams, version=2, runs_model=True, variants=(OBJECTIVES, REGULARIZERS),
       args=(Arg(name="model", help="the model unlearned: θo (a delta on θr; Section 4) or θfull (Section 3)"),
             Arg(name="mask", help="the localizer's mask (safetensors)"),
             DATA, Arg(name="out", help="output delta (safetensors)"), LOG,
             Arg(name="target", help="θr, for an objective that matches its activations (l2_mlp)", required=False)))
def unlearn(params: UnlearnParams, model, mask, data, out, log, target=None, device="cpu") -> None:
    """θu: unlearn the forget set from θo (or θfull) with one objective (plus its regularizer, if
    any), with updates only inside one localizer's mask; writes a sparse delta on that model."""
    # checked before any file is read
    objective = parse_objective(params.objective, params.block, f"unlearn.{params.objective}")
    if objective.target and target is None:
        raise ConfigError(f"unlearn: {params.objective} matches a target model's activations: give θr as --target")
    if target is not None and not objective.target:
        raise ConfigError(f"unlearn: --target is for objectives that match a target model; {params.objective} "
                          "does not read one")
    start, mask_path = model, mask
    model, tokenizer = load_checkpoint(start)
    mask = load_mask(mask_path, model)
    target_model = load_checkpoint(target)[0] if target is not None else None
    run = prepare_unlearning(params, model, tokenizer, data, device, target_model)
    entries = masked_train(model, mask, run.loss_fn, run.batcher, run.train, seed=params.seed,
                           precision=params.precision, device=device, log_path=log,
                           desc=f"unlearn[{params.objective}]")
    labels = {"objective": params.objective, "localizer": mask.metadata.get("method", "?"),
              "seed": mask.metadata.get("seed", "?"), "scenario": params.scenario}
    io.save_delta(out, entries, parent=start, granularity=mask.granularity,
                  metadata=_provenance("unlearn", params, mask=str(mask_path), **labels))


HELD_OUT_RETAIN = "retain_perturbed"
"""The retain items ES on retain is measured on (seeds/001 App. B.1: 400 examples not used during
unlearning): ``unlearn_all`` leaves them out of its retain batches and probes e_r on them."""


@dataclass(frozen=True, kw_only=True)
class WholeModelUnlearnParams(UnlearnParams):
    """A run that writes the whole model, not a delta on a mask (seeds/001, 003 and 004)."""

    hold_out_retain: bool = setting(True, f"leave the {HELD_OUT_RETAIN} items (where ES on retain is measured) out "
                                          "of the retain batches")


@dataclass(frozen=True, kw_only=True)
class UnlearnAllParams(WholeModelUnlearnParams):
    probe_every: int | None = setting(None, "log the G-effect probes (geffect.py) before the first step and every "
                                            "N steps after; null: no probes", minimum=1)


def _whole_model_unlearning(name: str, params: WholeModelUnlearnParams, start, data, device):
    """The start model, its tokenizer, the held-out retain records and the run of a whole-model
    stage; the objective is checked before any file is read."""
    objective = parse_objective(params.objective, params.block, f"unlearn.{params.objective}")
    if objective.target:
        raise ConfigError(f"{name}: {params.objective} matches a target model's activations, which only the "
                          "masked unlearn stage supports")
    model, tokenizer = load_checkpoint(start)
    held_out_records = load_role(data, HELD_OUT_RETAIN)
    held_out = frozenset(r["question"] for r in held_out_records) if params.hold_out_retain else frozenset()
    return model, tokenizer, held_out_records, prepare_unlearning(params, model, tokenizer, data, device,
                                                                  held_out=held_out)


def _save_whole_model(name: str, params: WholeModelUnlearnParams, model, tokenizer, start, out, **extra) -> None:
    model.eval()
    _save_all_parameters(model, tokenizer, out, _provenance(
        name, params, parent=str(start), parent_hash=io.artifact_hash(start), objective=params.objective,
        scenario=params.scenario, seed=params.seed, **extra), launch=None)


@stage("unlearn_all", settings=UnlearnAllParams, runs_model=True, variants=(OBJECTIVES, REGULARIZERS),
       args=(MODEL, DATA, Arg(name="out", help="output HF model directory"), LOG,
             Arg(name="probe", help="output CSV of the G-effect probes (with probe_every)", required=False)))
def unlearn_all(params: UnlearnAllParams, model, data, out, log, probe=None, device="cpu") -> None:
    """θu of seeds/001: unlearn the forget set with one objective (plus its regularizer) on every
    parameter, optionally probing the G-effects as it trains; writes the whole model."""
    if (probe is None) != (params.probe_every is None):
        raise ConfigError("unlearn_all: --probe and probe_every go together: give both or neither")
    start = model
    model, tokenizer, held_out_records, run = _whole_model_unlearning("unlearn_all", params, start, data, device)
    model.to(device).train()
    prober = None
    if params.probe_every is not None:
        prober = _g_effect_prober(params, run, model, tokenizer, held_out_records, probe, device)
        prober.start()
    train(list(model.parameters()), run.loss_fn, run.batcher, run.train, seed=params.seed,
          precision=params.precision, device=device, log_path=log, desc=f"unlearn_all[{params.objective}]",
          on_step=prober, model=model)
    _save_whole_model("unlearn_all", params, model, tokenizer, start, out)


@stage("unlearn_modules", settings=WholeModelUnlearnParams, runs_model=True, variants=(OBJECTIVES, REGULARIZERS),
       workflow=False,
       args=(MODEL, DATA, Arg(name="out", help="output HF model directory"), LOG,
             Arg(name="mask", help="a mask of the down projections (SIMU's critical rows): only its entries of "
                                   "down_proj train; without it, every entry does", required=False)))
def unlearn_modules(params: WholeModelUnlearnParams, model, data, out, log, mask=None, device="cpu") -> None:
    """θu of seeds/003: unlearn the forget set on every attention projection and each down
    projection (FO- and SO-GradDiff), or on the attention projections and the down_proj entries
    of a mask (SIMU-GradDiff); every other parameter stays bit-identical. Writes the whole model."""
    start, mask_path = model, mask
    model, tokenizer, _, run = _whole_model_unlearning("unlearn_modules", params, start, data, device)
    mask = load_mask(mask_path, model) if mask_path is not None else None
    model.to(device).train()
    trainable = attach_attention_and_down_proj(model, mask)
    train(trainable, run.loss_fn, run.batcher, run.train, seed=params.seed, precision=params.precision,
          device=device, log_path=log, desc=f"unlearn_modules[{params.objective}]", model=model)
    detach_masked(model)
    masked = {} if mask is None else {"mask": str(mask_path), "localizer": mask.metadata.get("method", "?")}
    _save_whole_model("unlearn_modules", params, model, tokenizer, start, out, **masked)


def _g_effect_prober(params: UnlearnAllParams, run: Unlearning, model, tokenizer, retain_records, path,
                     device) -> geffect.Prober:
    """Probes of e_u on the forget set and e_r on the held-out retain items, of the objective and
    of its regularizer apart; NPO/TNPO weights at the objective's β when it has one (against the
    model before unlearning, scored now)."""
    ctx = run.context
    retain = encode_records(tokenizer, retain_records, params.max_length, params.system_prompt)
    batches = [to_device(b, device) for b in run.batcher.epoch(geffect.PROBE_EPOCH)]
    beta = getattr(run.run.objective.settings, "beta", None)
    reference = None if beta is None else geffect.NpoReference(
        beta, ctx.reference_logprobs("forget"), ctx.reference_token_logprobs("forget"))
    return geffect.Prober(params.probe_every, path, lambda: geffect.probe(
        model, run.objective_fn, batches, ctx.sets["forget"], retain, tokenizer.pad_token_id, params.eval_batch_size,
        reference, device, regularizer_fn=run.regularizer_fn))


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True, kw_only=True)
class EvalSettings:
    """The config's ``eval`` section: ES of single checkpoints (the sanity check)."""

    batch_size: int = setting(help="examples per forward pass", minimum=1)
    es_convention: Literal["paper", "open_unlearning"] = setting("paper", "ES convention (docs/metrics.md)")
    max_items: int | None = setting(None, "at most this many items per split; null: all", minimum=1)


@dataclass(frozen=True, kw_only=True)
class EsParams(QaParams):
    eval: EvalSettings = setting(help="the config's eval section")


@stage("es", settings=EsParams, runs_model=True, args=(MODEL, DATA, Arg(name="out", help="output JSON")))
def es(params: EsParams, model, data, out, device="cpu") -> None:
    """Mean teacher-forced Extraction Strength of a model on the forget and retain splits."""
    checkpoint = model
    model, tokenizer = load_checkpoint(checkpoint, device=device)
    result = {"checkpoint": str(checkpoint)}
    start = time.time()
    for role in ("forget", "retain"):
        records = load_role(data, role)[:params.eval.max_items]
        examples = [encode_qa(tokenizer, r["question"], r["answer"], params.max_length, params.system_prompt)
                    for r in records]
        with autocast_context(device, params.precision):
            scores = per_example_es(model, examples, tokenizer.pad_token_id, params.eval.batch_size, device,
                                    params.eval.es_convention)
        result[f"es_{role}"] = float(scores.mean())
        result[f"n_{role}"] = len(examples)
    result["seconds"] = round(time.time() - start, 2)
    io.write_json(out, result)


def _tofu_eval_config(batching, qa: QaParams, device, max_new_tokens: int = 0):
    from unloc.metrics.tofu import TofuEvalConfig

    return TofuEvalConfig(max_length=qa.max_length, batch_size=batching.batch_size, max_new_tokens=max_new_tokens,
                          system_prompt=qa.system_prompt, device=device)


@dataclass(frozen=True, kw_only=True)
class ReferenceParams(QaParams):
    batch_size: int = setting(help="sequences per forward pass", minimum=1)


@stage("reference_stats", settings=ReferenceParams, version=3, runs_model=True,
       args=(Arg(name="model", help="θr model directory"), DATA, Arg(name="out", help="output (safetensors)")))
def reference_stats(params: ReferenceParams, model, data, out, device="cpu") -> None:
    """θr's raw per-item forget truth ratios, computed once: the sample every FQ's KS test compares to."""
    from unloc.metrics.tofu import forget_truth_ratios

    checkpoint = model
    model, tokenizer = load_checkpoint(checkpoint, device=device)
    with autocast_context(device, params.precision):
        tr = forget_truth_ratios(model, tokenizer, load_role(data, "forget_perturbed"),
                                 _tofu_eval_config(params, params, device))
    io.write_safetensors(out, {"forget_truth_ratio": tr.double()},
                         _provenance("reference_stats", params, model=str(checkpoint)))


@dataclass(frozen=True, kw_only=True)
class MixSettings:
    """The config's ``mix`` section: the mixing sweeps and what they score at every point."""

    alphas: int = setting(21, "number of α points from 0 to 1 (21: steps of 0.05)", minimum=2)
    batch_size: int = setting(help="sequences per forward pass", minimum=1)
    max_new_tokens: int = setting(help="greedy generation length for ROUGE-L", minimum=1)
    rs_items: Literal["retain_perturbed", "all"] | int = setting(
        "retain_perturbed", "RS on MU's retain items, scored in the same pass (retain_perturbed), on all retain "
                            "items (all) or on the first N", minimum=1)
    metrics: tuple[str, ...] = setting(("es", "fq", "mu"), "curve metrics, in column order (metrics/curve.py)")

    def __post_init__(self):
        from unloc.metrics.curve import CURVE_METRICS

        for i, name in enumerate(self.metrics):
            CURVE_METRICS.get(name, f"metrics[{i}]")
        if len(set(self.metrics)) != len(self.metrics):
            raise ValueError(f"metrics {list(self.metrics)} name a curve metric twice")


@dataclass(frozen=True, kw_only=True)
class MixParams(QaParams):
    mix: MixSettings = setting(help="the config's mix section")
    es_convention: Literal["paper", "open_unlearning"] = setting("paper", "ES convention (eval.es_convention)")


class _PointEvaluator:
    """Scores one model with the curve metrics the params name, on the roles they read."""

    def __init__(self, params: MixParams, tokenizer, data, device):
        from unloc.metrics.curve import RS_FROM_MU_PASS, check_forget_items

        self.params, self.tokenizer, self.device = params, tokenizer, device
        self.cfg = _tofu_eval_config(params.mix, params, device, params.mix.max_new_tokens)
        self.roles = {r: load_role(data, r) for r in ("forget_perturbed", "retain_perturbed",
                                                      "real_authors_perturbed", "world_facts_perturbed")}
        check_forget_items(load_role(data, "forget"), self.roles["forget_perturbed"])
        self.retain_es = None
        rs_items = params.mix.rs_items
        if rs_items != RS_FROM_MU_PASS:
            retain = load_role(data, "retain")[: None if rs_items == "all" else rs_items]
            self.retain_es = encode_records(tokenizer, retain, params.max_length, params.system_prompt)

    def __call__(self, model, reference_tr) -> dict[str, float]:
        from unloc.metrics.curve import PointScores, evaluate_point, perturbed_roles

        point = PointScores(model, self.tokenizer, self.roles, self.cfg, self.params.es_convention, reference_tr,
                            self.retain_es, perturbed_roles(self.params.mix.metrics))
        with autocast_context(self.device, self.params.precision):
            return evaluate_point(point, self.params.mix.metrics)


def _reference_tr(path) -> torch.Tensor:
    tensors, _ = io.read_safetensors(path)
    if "forget_truth_ratio" not in tensors:
        raise io.ArtifactError(f"{path}: not θr's truth ratios (no forget_truth_ratio tensor)")
    return tensors["forget_truth_ratio"]


def point_columns(params: MixParams) -> list[str]:
    from unloc.metrics.curve import curve_columns

    return ["alpha", *curve_columns(params.mix.metrics)]


@stage("score_point", settings=MixParams, runs_model=True,
       args=(MODEL, DATA, Arg(name="out", help="output CSV (one row)"),
             Arg(name="reference", help="θr's forget truth ratios from reference_stats (for fq)", required=False)))
def score_point(params: MixParams, model, data, out, reference=None, device="cpu") -> None:
    """Every curve metric of one model, as one CSV row at α = 0: θo's point, which every mixing
    sweep of its seed starts from and shares (θfull's, for every sweep of Section 3 and every UWC
    sweep of a forget split)."""
    model, tokenizer = load_checkpoint(model, device=device)
    row = _PointEvaluator(params, tokenizer, data, device)(model, _reference_tr(reference) if reference else None)
    io.write_csv(out, [{"alpha": 0.0, **row}], point_columns(params))


@stage("mix_eval", settings=MixParams, version=4, runs_model=True,
       args=(Arg(name="model", help="θu (a delta on θo, or on θfull)"),
             Arg(name="reference", help="θr's forget truth ratios from reference_stats"), DATA,
             Arg(name="origin", help="θo's row from score_point (α = 0); without it α = 0 is scored here",
                 required=False),
             Arg(name="out", help="output curve.csv")))
def mix_eval(params: MixParams, model, reference, data, out, origin=None, device="cpu") -> None:
    """Model mixing θ(α) = (1-α)θo + αθu (θfull in place of θo in Section 3) over an α grid: one
    curve.csv row per α with its labels (scenario, objective, localizer, seed: from θu's
    metadata) and every curve metric."""
    from unloc.metrics.curve import CURVE_LABELS
    from unloc.mixing import DeltaMixer

    theta_u = model
    delta = io.delta_chain(theta_u)[1][-1]  # θu's own delta; every parent link verified before any compute
    labels = {k: delta.metadata.get(k, "") for k in CURVE_LABELS}
    model, tokenizer = load_checkpoint(delta.parent, device=device)  # θo
    _sweep(params, model, tokenizer, DeltaMixer(model, delta), data, _reference_tr(reference), origin, labels, out,
           device, "mix_eval")


def _sweep(params: MixParams, model, tokenizer, mixer, data, reference_tr, origin, labels: dict, out, device,
           desc: str) -> None:
    """The mixing sweep both mixers share: every curve metric at each α of the grid (α = 0 taken
    from score_point's row when ``origin`` is given), written as one curve.csv with ``labels``."""
    from unloc.metrics.curve import CURVE_LABELS
    from unloc.mixing import alpha_grid

    columns = point_columns(params)
    rows, alphas = [], alpha_grid(params.mix.alphas)
    if origin is not None:
        rows.append(_origin_row(origin, columns))
        alphas = alphas[1:]
    evaluate = _PointEvaluator(params, tokenizer, data, device)
    for alpha in tqdm(alphas, desc=desc, unit="α", mininterval=2.0):
        mixer.set_alpha(alpha)  # fp32 arithmetic on the fp32 weights; only the forward passes autocast
        rows.append({"alpha": alpha, **evaluate(model, reference_tr)})
    io.write_csv(out, [{**labels, **r} for r in rows], [*CURVE_LABELS, *columns])


@stage("mix_all", settings=MixParams, runs_model=True,
       args=(Arg(name="model", help="θu: a whole checkpoint from unlearn_all, mixed with the model it started from"),
             DATA, Arg(name="reference", help="θr's forget truth ratios from reference_stats (for fq)", required=False),
             Arg(name="origin", help="the start model's row from score_point (α = 0); without it α = 0 is scored here",
                 required=False),
             Arg(name="out", help="output curve.csv")))
def mix_all(params: MixParams, model, data, out, reference=None, origin=None, device="cpu") -> None:
    """Whole-model mixing θ(α) = θfull + α (θu - θfull) over an α grid (seeds/001's UWC): θu is
    a checkpoint of unlearn_all, θfull the one it records as its parent (whose hash must still
    match). One curve.csv row per α with its labels and every curve metric."""
    from unloc.mixing import FullMixer

    meta = io.artifact_metadata(model)
    if meta.get("stage") != "unlearn_all":
        raise io.ArtifactError(f"{model}: not a checkpoint of unlearn_all (its unloc.json records stage "
                               f"{meta.get('stage')!r}), so there is no model before unlearning to mix with")
    start = meta["parent"]
    if io.artifact_hash(start) != meta["parent_hash"]:
        raise io.ArtifactError(f"{model}: its parent {start} changed since unlearning started from it (hash "
                               "mismatch); rerun unlearn_all")
    labels = {"scenario": meta.get("scenario", ""), "objective": meta["objective"], "localizer": "all",
              "seed": meta.get("seed", 0)}
    theta_u, _ = load_checkpoint(model)
    after = {name: p.detach() for name, p in theta_u.named_parameters()}
    model, tokenizer = load_checkpoint(start, device=device)
    mixer = FullMixer(model, after)
    del theta_u, after
    _sweep(params, model, tokenizer, mixer, data, _reference_tr(reference) if reference else None, origin, labels,
           out, device, "mix_all")


def _origin_row(path, columns: list[str]) -> dict[str, str]:
    """score_point's row as written (strings: the curve keeps exactly the numbers it wrote)."""
    rows = io.read_csv(path)
    if len(rows) != 1 or list(rows[0]) != columns or float(rows[0]["alpha"]) != 0.0:
        raise io.ArtifactError(f"{path}: expected one α = 0 row with the columns {', '.join(columns)}")
    return rows[0]


@dataclass(frozen=True, kw_only=True)
class SanityParams:
    sanity: SanitySettings = setting(SanitySettings(), "the config's sanity section")


@stage("sanity", settings=SanityParams, version=2,
       args=(Arg(name="result", help="a named ES result, e.g. theta_r=results/tiny/es/theta_r.json",
                 repeat=True, metavar="NAME=JSON"),
             Arg(name="out", help="output sanity.csv")))
def sanity(params: SanityParams, result: list[str], out) -> None:
    """results/{name}/sanity.csv: ES of every checkpoint, and whether each θo (theta_o[s*], and
    their mean theta_o) memorized the forget set and kept the retain set (sanity.py)."""
    results = {name: _es_of(path) for name, path in _named_paths(result, "--result").items()}
    rows = check_rows(results, params.sanity)
    for row in rows:
        if row["pass"] == "no" and row["checkpoint"] != "theta_o":
            logger.warning("sanity check failed for %s: forget ES %.4f, retain ES %.4f against θr's %.4f, %.4f "
                           "(margins: forget +%s, retain -%s)", row["checkpoint"], row["es_forget"], row["es_retain"],
                           results["theta_r"]["es_forget"], results["theta_r"]["es_retain"],
                           params.sanity.forget_margin, params.sanity.retain_drop)
    write_sanity(out, rows)


def _es_of(path) -> dict:
    result = io.read_json(path)
    return {"es_forget": result["es_forget"], "es_retain": result["es_retain"]}


# --------------------------------------------------------------------------- WME's set-level gradients


GRADIENT_SETS = ("forget", "retain")
"""The dataset roles ``gradients`` takes its statistic on, in the order they are sampled."""


@dataclass(frozen=True, kw_only=True)
class GradientsParams(QaParams):
    batch_size: int = setting(help="examples per forward pass of mean_gradient (empirical_fisher takes one example "
                                   "at a time)", minimum=1)
    statistic: Literal["mean_gradient", "empirical_fisher"] = setting(
        "mean_gradient", "mean_gradient: ∇ of the mean over the examples of their summed answer NLL (WME's g_f, g_r); "
                         "empirical_fisher: the mean over the examples of the square of that NLL's per-example "
                         "gradient (for the fisher weighting's empirical option)")
    sample_fraction: float = setting(
        1.0, "share of EACH of the forget and retain sets used: floor(fraction x its size) examples, at least one, "
             "drawn uniformly without replacement by one torch.Generator seeded with seed (forget first, then "
             "retain) and kept in dataset order; 1: every example", exclusive_minimum=0, maximum=1)
    seed: int = setting(0, "seed of the sample_fraction draw")


@stage("gradients", settings=GradientsParams, runs_model=True,
       args=(Arg(name="model", help="the model the gradients are taken at: θ_0, or θfull"), DATA,
             Arg(name="out", help="output gradients (safetensors)")))
def gradients(params: GradientsParams, model, data, out, device="cpu") -> None:
    """WME's set-level gradients g_f and g_r at a model: per parameter, ∇ of the mean over the
    forget (retain) examples of their answer NLL, or the empirical Fisher, the mean of its
    squared per-example gradient; optionally on a seeded sample of each set.

    The NLL of an example is summed over its answer tokens (EOS included), the TOFU convention.
    Tensors are float32 and named by ``model.named_parameters()``: a tied LM head is the input
    embedding's tensor and appears once, under the embedding's name. The model's parameters
    and ``.grad`` are left untouched (``geffect.risk_pass`` uses ``torch.autograd.grad``).
    """
    model_path = model
    model, tokenizer = load_checkpoint(model_path, device=device)
    generator = torch.Generator().manual_seed(params.seed)
    sets = {}
    for role in GRADIENT_SETS:  # one generator, drawn in this order: each sample depends on the seed alone
        records = _sample_records(load_role(data, role), params.sample_fraction, generator, f"{data}: {role}")
        sets[role] = encode_records(tokenizer, records, params.max_length, params.system_prompt)
    names = [name for name, _ in model.named_parameters()]
    with (tqdm(total=sum(map(len, sets.values())), desc="gradients", unit="example", mininterval=2.0) as bar,
          autocast_context(device, params.precision)):
        result = {role: dict(zip(names, gradient_statistic(model, examples, tokenizer.pad_token_id, params.statistic,
                                                           params.batch_size, device, bar)))
                  for role, examples in sets.items()}
    io.save_gradients(out, result, _provenance(
        "gradients", params, model=str(model_path), statistic=params.statistic,
        forget_examples=len(sets["forget"]), retain_examples=len(sets["retain"])))


def _sample_records(records: list[dict], fraction: float, generator: torch.Generator, what: str) -> list[dict]:
    """floor(fraction x len(records)) of them, at least one, drawn uniformly without replacement
    and kept in their order."""
    if not records:
        raise io.ArtifactError(f"{what}: no examples to take gradients on")
    # the fraction as written in the config: 0.29 x 100 is 28.999... in binary floating point
    count = max(1, math.floor(Decimal(str(fraction)) * len(records)))
    chosen = torch.randperm(len(records), generator=generator)[:count].sort().values
    return [records[i] for i in chosen.tolist()]


def gradient_statistic(model, examples: list, pad_id: int, statistic: str, batch_size: int, device="cpu",
                       progress=None) -> list[torch.Tensor]:
    """``statistic`` of ``examples``, one float32 tensor per ``model.named_parameters()`` entry:
    ``mean_gradient`` is ∇ (1/N) Σ_i NLL_i in batches of ``batch_size``, ``empirical_fisher``
    (1/N) Σ_i (∇ NLL_i)², one backward per example. ``progress`` (a tqdm bar) counts examples."""
    counted = _Counted(examples, progress)
    if statistic == "mean_gradient":
        return geffect.risk_pass(model, counted, pad_id, batch_size, device).gradient
    if statistic != "empirical_fisher":
        raise ValueError(f"unknown gradient statistic {statistic!r}")
    total = None
    for i in range(len(counted)):
        gradient = geffect.risk_pass(model, counted[i:i + 1], pad_id, 1, device).gradient  # ∇ NLL_i itself
        total = [g * g for g in gradient] if total is None else [t.addcmul_(g, g) for t, g in zip(total, gradient)]
    return [t / len(examples) for t in total]


class _Counted(Sequence):
    """``items`` that advance a progress bar by the length of every slice taken: ``risk_pass``
    reads its batches as slices, so the bar counts the examples as their batch starts."""

    def __init__(self, items: Sequence, bar=None):
        self.items, self.bar = items, bar

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):
        got = self.items[index]
        if self.bar is not None:
            self.bar.update(len(got) if isinstance(index, slice) else 1)
        return got


# --------------------------------------------------------------------------- WME's edit


@dataclass(frozen=True, kw_only=True)
class EditParams:
    weighting: Choice = setting(help="a weighting name, or {name: ..., <its settings>} (weightings.py)",
                                registry=WEIGHTINGS)
    # its own help: the edit runs no forward pass, so the precision only sets the written dtype
    precision: Literal["fp32", "bf16"] = setting("fp32", "dtype the edited checkpoint is written in (the config's "
                                                         "precision); the edit itself is computed in fp32")

    def __post_init__(self):
        if not isinstance(self.weighting, Choice):  # built in Python with a weighting name or mapping
            object.__setattr__(self, "weighting", WEIGHTINGS.choose(self.weighting, "weighting"))


@stage("edit", settings=EditParams, runs_model=True, variants=(WEIGHTINGS,),
       args=(Arg(name="theta_full", help="θ_full: θ_0 fine-tuned on all data (finetune --split full)"),
             Arg(name="theta_fgt", help="θ_fgt: θ_0 fine-tuned on the forget set only (finetune --split forget)"),
             Arg(name="theta_0", help="θ_0: the model θ_fgt was fine-tuned from (θp)"),
             Arg(name="gradients", help="g_f and g_r from the gradients stage, taken at θ_0 or θ_full: required by "
                                        "the weightings that read them, refused by the others", required=False),
             Arg(name="out", help="output HF model directory")))
def edit(params: EditParams, theta_full, theta_fgt, theta_0, out, gradients=None) -> None:
    """WME's edit θ_final = θ_full + W ⊙ (−(θ_fgt − θ_0)): the forget set's task vector, weighted
    entry by entry by a weighting (weightings.py), subtracted from θ_full; writes the whole model.

    The edit covers ``named_parameters()`` (a tied LM head is the embedding's tensor and is edited
    once) and is computed in fp32 on the CPU; buffers are θ_full's. Before any model is loaded,
    θ_fgt must record θ_0 as its parent (where it records one), and the gradients must have been
    taken at θ_0 or θ_full (where they say at which model).
    """
    weighting = params.weighting
    _check_gradients_arg(weighting, gradients)
    _check_fine_tuned_from(theta_fgt, theta_0)
    g_f, g_r = _wme_gradients(weighting, gradients, theta_0, theta_full)
    # hashed before loading: the provenance names what the edit read
    provenance = _provenance(
        "edit", params, parent=str(theta_full), parent_hash=io.artifact_hash(theta_full),
        theta_fgt=str(theta_fgt), theta_fgt_hash=io.artifact_hash(theta_fgt),
        theta_0=str(theta_0), theta_0_hash=io.artifact_hash(theta_0),
        gradients=str(gradients or ""), gradients_hash=io.file_sha256(gradients) if gradients else "",
        weighting=weighting.name)
    model, tokenizer = load_checkpoint(theta_full)
    full = _parameters(model)
    fgt, base = _parameters(load_checkpoint(theta_fgt)[0]), _parameters(load_checkpoint(theta_0)[0])
    with torch.no_grad():
        weights = weighting.spec.fn(weighting.settings, weightings.task_vector(fgt, base), g_f, g_r)
        del g_f, g_r  # the weights are all the edit needs of them
        final = weightings.edit(full, fgt, base, weights)
        for name, param in model.named_parameters():
            param.copy_(final[name])
    _save_all_parameters(model, tokenizer, out, provenance, launch=None)


def _parameters(model) -> dict[str, torch.Tensor]:
    """The model's parameters by ``named_parameters()`` name (tied ones once), detached."""
    return {name: p.detach() for name, p in model.named_parameters()}


def _check_gradients_arg(weighting: Choice, path) -> None:
    """--gradients given exactly when the weighting reads g_f and g_r."""
    readers = ", ".join(spec.name for spec in WEIGHTINGS.specs() if spec.uses_gradients)
    if weighting.spec.uses_gradients and path is None:
        raise ConfigError(f"edit: weighting {weighting.name!r} reads the set-level gradients g_f and g_r: give "
                          "--gradients (a file of the gradients stage)")
    if not weighting.spec.uses_gradients and path is not None:
        # a file given to a weighting that ignores it is a mistaken config, not a harmless extra
        raise ConfigError(f"edit: weighting {weighting.name!r} reads no gradients, but --gradients {path} was given "
                          f"(leave it out, or choose a weighting that reads them: {readers})")


def _check_fine_tuned_from(theta_fgt, theta_0) -> None:
    """θ_fgt, where its unloc.json records a parent, was fine-tuned from θ_0 as it is now: the task
    vector θ_fgt − θ_0 means what the forget set taught only then."""
    recorded = io.artifact_metadata(theta_fgt).get("parent_hash")
    if recorded is not None and recorded != io.artifact_hash(theta_0):
        raise io.ArtifactError(f"{theta_fgt}: not fine-tuned from {theta_0} (the parent hash it records differs "
                               "from that model's): θ_fgt must be θ_0 fine-tuned on the forget set")


def _expected_statistic(weighting: Choice) -> str:
    # only fisher's empirical option reads empirical Fishers; every other weighting reads mean gradients
    return "empirical_fisher" if getattr(weighting.settings, "empirical", False) else "mean_gradient"


def _wme_gradients(weighting: Choice, path, theta_0, theta_full):
    """(g_f, g_r) of the gradients file for a weighting that reads them, else (None, None); the file
    must hold both sets, of the statistic the weighting reads, taken at θ_0 or θ_full."""
    if path is None:
        return None, None
    sets, metadata = io.load_gradients(path)
    missing = [role for role in GRADIENT_SETS if role not in sets]
    if missing:
        raise io.ArtifactError(f"{path}: no {' or '.join(missing)} gradients (the gradients stage writes "
                               f"{' and '.join(GRADIENT_SETS)})")
    expected = _expected_statistic(weighting)
    if metadata["statistic"] != expected:
        raise ConfigError(f"edit: weighting {weighting.to_dict()} reads {expected}, but {path} holds "
                          f"{metadata['statistic']}")
    taken_at = metadata.get("model")
    # the path as the gradients stage was given it, resolved here: both run from the workflow's directory
    if taken_at is not None and Path(taken_at).resolve() not in {Path(theta_0).resolve(), Path(theta_full).resolve()}:
        raise io.ArtifactError(f"{path}: taken at {taken_at}, which is neither θ_0 ({theta_0}) nor θ_full "
                               f"({theta_full})")
    return sets["forget"], sets["retain"]


# --------------------------------------------------------------------------- tables and figures


@dataclass(frozen=True, kw_only=True)
class TableParams:
    table: str = setting(help="a table name (tables.py)")
    stats: dict = setting(help="the config's stats section (stats.StatsSettings)")
    uwc: dict | None = setting(None, "the config's geffect.uwc block (uwc.UwcSettings): how a UWC table of seeds/001 "
                                     "selects its mixtures")


CURVES = Arg(name="curves", help="curve.csv files of the mixing sweeps", positional=True, repeat=True)
NAME = Arg(name="name", help="experiment name for the title")


SANITY = Arg(name="sanity", help="sanity.csv: its verdict is printed on tables and figures of injected curves",
             required=False)


@stage("table", settings=TableParams, version=2,
       args=(NAME, Arg(name="out_csv", help="output CSV"), Arg(name="out_md", help="output markdown"), SANITY, CURVES))
def table(params: TableParams, name, out_csv, out_md, curves, sanity=None) -> None:
    """One registered table (tables.py) from mixing curves, as CSV and markdown, with the sanity
    verdict of the injection its curves rest on."""
    from unloc.tables import write_table

    write_table(params.table, params.stats, curves, name, out_csv, out_md, sanity, params.uwc)


@dataclass(frozen=True, kw_only=True)
class FigureParams:
    figure: str = setting(help="a figure name (figures.py)")


@stage("figure", settings=FigureParams, version=2,
       args=(NAME, Arg(name="out_png", help="output PNG"), Arg(name="out_pdf", help="output PDF"), SANITY, CURVES))
def figure(params: FigureParams, name, out_png, out_pdf, curves, sanity=None) -> None:
    """One registered figure (figures.py) from mixing curves, as PNG and PDF, marked when the
    sanity check of the injection its curves rest on failed."""
    from unloc.figures import plot_figure

    plot_figure(params.figure, curves, name, out_png, out_pdf, sanity)


# --------------------------------------------------------------------------- export


@stage("export", workflow=False,
       args=(Arg(name="artifact", help="delta (.safetensors) or model directory", positional=True),
             Arg(name="out", help="output HF model directory", positional=True),
             Arg(name="precision", help="dtype of the written weights (default: the precision the artifact was "
                                        "made under)", required=False, choices=PRECISIONS)))
def export(artifact, out, precision: str | None = None) -> None:
    """Materialise a delta chain (or copy a checkpoint) as a full HF model directory, in the dtype
    of ``precision``: by default the precision the artifact was made under (fp32 where it records none)."""
    precision = precision or io.artifact_metadata(artifact).get("precision", "fp32")
    model, tokenizer = load_checkpoint(artifact)
    metadata = {"stage": "export", "source": str(artifact), "source_hash": io.artifact_hash(artifact),
                "precision": precision}
    save_checkpoint(model, tokenizer, out, metadata, dtype=checkpoint_dtype(precision))
