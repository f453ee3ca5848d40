"""``unloc eval MODEL``: score any checkpoint with the TOFU suite (metrics/suite.py) and write
open-unlearning's output files, so scripts written for them read these unchanged:

* ``TOFU_EVAL.json``: every metric, ``{"agg_value", "value_by_index"}`` (open-unlearning's
  names and shapes; top-level keys sorted, items in split order);
* ``TOFU_SUMMARY.json``: ``{metric: agg_value}`` of the top-level metrics;
* ``TOFU_ITEMS.csv``: one row per item of each split, with its per-item values;
* ``eval_config.json``: what was scored, with which settings, and how long it took.

MODEL is a Hugging Face model directory, an unloc delta (its parent chain is resolved and
verified), or a hub id (which needs the network). The data is a TOFU folder in the hub's
layout, a dataset directory of the pipeline (``results/data/<name>``), ``minitofu``, or a hub
dataset id. ``--reference`` (the retain model's TOFU_EVAL.json, the retain model itself, or
the pipeline's ``reference_stats`` file) gives FQ and privleak their reference.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from unloc import io
from unloc.metrics.suite import SPLIT_ROLES
from unloc.metrics.tofu import CONVENTIONS, TofuEvalConfig
from unloc.registry import setting

log = logging.getLogger("unloc")

FORGET_SPLITS = ("forget01", "forget05", "forget10")
EVAL_FILE, SUMMARY_FILE, ITEMS_FILE, CONFIG_FILE = ("TOFU_EVAL.json", "TOFU_SUMMARY.json", "TOFU_ITEMS.csv",
                                                    "eval_config.json")
ROLES = tuple(SPLIT_ROLES.values())  # forget first, then the three utility splits


@dataclass(frozen=True, kw_only=True)
class EvaluateSettings:
    """How ``unloc eval`` scores: its options' defaults, and the config's ``evaluate`` section,
    which the workflow's ``evaluate`` rule passes on as these options."""

    compat: Literal["unloc", "open_unlearning"] = setting(
        "unloc", "scoring conventions: unloc's or open-unlearning's, to put numbers next to published ones "
                 "(docs/metrics.md lists the differences)")
    max_new_tokens: int = setting(200, "greedy generation length for ROUGE (open-unlearning's 200)", minimum=1)
    batch_size: int = setting(64, "sequences per forward pass (and rows decoded at once)", minimum=1)
    utility_items: int | None = setting(None, "score only N evenly spaced items of each utility split",
                                        minimum=1)


def settings_options(settings: EvaluateSettings) -> str:
    """``settings`` as the options of ``unloc eval`` (for the workflow's rule)."""
    values = {f.name: getattr(settings, f.name) for f in fields(settings)}
    return " ".join(f"--{name.replace('_', '-')} {value}" for name, value in values.items() if value is not None)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from unloc.metrics.suite import EVAL_METRICS

    def option(name: str, **kwargs):
        f = next(f for f in fields(EvaluateSettings) if f.name == name)
        default = f"default {f.default}" if f.default is not None else "default: all"
        parser.add_argument(f"--{name.replace('_', '-')}", default=f.default,
                            help=f"{f.metadata['help']} ({default})", **kwargs)

    parser.add_argument("model", help="HF model directory, unloc delta (.safetensors) or hub id (org/name)")
    parser.add_argument("--data", required=True,
                        help="TOFU folder in the hub layout (forget01.json, ...), a pipeline dataset directory "
                             "(results/data/<name>), 'minitofu', or a hub dataset id (locuslab/TOFU)")
    parser.add_argument("--forget-split", default="forget10", choices=FORGET_SPLITS,
                        help="TOFU forget split (default forget10); a pipeline dataset has its own")
    parser.add_argument("--holdout-split", default=None,
                        help="the MIA's non-members (default: holdoutNN of --forget-split); none: skip the MIA")
    parser.add_argument("--reference", default=None,
                        help="for forget_quality and privleak: the retain model's TOFU_EVAL.json, the retain "
                             "model itself (scored here), or the pipeline's θr truth ratios (reference_stats); "
                             "without it forget_quality is null and privleak compares with an AUC of 0.5")
    option("compat", choices=sorted(CONVENTIONS))
    parser.add_argument("--system-prompt", default=None, help="system prompt of chat models (default: the "
                                                              "chat template's own)")
    option("max_new_tokens", type=int)
    option("batch_size", type=int)
    parser.add_argument("--max-length", type=int, default=512, help="tokens per QA (default 512)")
    option("utility_items", type=int)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                        help="forward passes in fp32 or under bf16 autocast (default fp32)")
    parser.add_argument("--metrics", default=None,
                        help="comma-separated metrics (default: every one the data allows): "
                             + ", ".join(EVAL_METRICS.names()))
    parser.add_argument("--out", required=True, help="output directory")


# --------------------------------------------------------------------------- inputs


def load_model(name: str, device: str):
    """A model and its tokenizer (with a pad token) from a directory, a delta or a hub id."""
    from unloc.checkpoints import ensure_pad_token, load_checkpoint, resolve_pretrained

    if Path(name).exists():
        model, tokenizer = load_checkpoint(name, device=device)
    else:
        model, tokenizer = resolve_pretrained(name)
        model = model.to(device).eval()
    if tokenizer is None:
        raise io.ArtifactError(f"{name}: no tokenizer files next to the model")
    ensure_pad_token(tokenizer)
    return model, tokenizer


def load_roles(data: str, forget_split: str, holdout_split: str | None,
               utility_items: int | None) -> dict[str, list[dict]]:
    """The records of every split the suite reads (``holdout`` only where there is one)."""
    from unloc.data import build_dataset, build_holdout, load_role, tofu

    path = Path(data)
    holdout_name = holdout_split or forget_split.replace("forget", "holdout")
    if data == "minitofu":
        params = {"source": "minitofu", "forget_split": forget_split}
        roles = {**build_dataset(params), "holdout": build_holdout(params)}  # minitofu's defaults
    elif path.is_dir() and (path / "forget_perturbed.jsonl").is_file():  # a pipeline dataset
        roles = {role: load_role(path, role) for role in (*ROLES, "forget")}
        if (path / "holdout.jsonl").is_file():
            roles["holdout"] = load_role(path, "holdout")
    elif path.is_dir() or (not path.exists() and data.count("/") == 1):  # TOFU, local or on the hub
        config, _ = tofu.source({"tofu": {"path": str(path)} if path.is_dir() else {"hub_name": data}})
        names = tofu.config_names(forget_split)
        roles = {role: config(names[role]) for role in (*ROLES, "forget")}
        if holdout_split != "none":
            roles["holdout"] = config(holdout_name)
    else:
        raise FileNotFoundError(f"--data {data}: not a TOFU folder, a pipeline dataset directory, 'minitofu' "
                                "or a hub dataset id")
    if holdout_split == "none":
        roles.pop("holdout", None)
    if utility_items is not None:
        for role in ROLES[1:]:
            roles[role] = tofu.evenly_spaced(roles[role], utility_items)
    return roles


def load_reference(path: str | None, evaluate_model):
    """The ``suite.Reference`` of ``--reference``; ``evaluate_model(path)`` scores a model given as one."""
    from unloc.metrics.suite import Reference

    if path is None:
        return None
    p = Path(path)
    if p.suffix == ".json":
        logs = io.read_json(p)
        tr = logs.get("forget_truth_ratio", {}).get("value_by_index")
        if tr is None:
            raise io.ArtifactError(f"{p}: no forget_truth_ratio.value_by_index (not a TOFU_EVAL.json)")
        auc = logs.get("mia_min_k", {}).get("agg_value")
        return Reference(np.array([v["score"] for v in tr.values()], dtype=np.float64), auc, str(p))
    if p.is_file() and p.suffix == ".safetensors":
        tensors, _ = io.read_safetensors(p)
        if "forget_truth_ratio" in tensors:  # reference_stats: θr's truth ratios only
            return Reference(tensors["forget_truth_ratio"].double().numpy(), None, str(p))
    results = evaluate_model(path)  # a model: score what the reference needs
    tr = np.array([v["score"] for v in results["forget_truth_ratio"]["value_by_index"].values()])
    auc = results["mia_min_k"]["agg_value"] if "mia_min_k" in results else None
    return Reference(tr, auc, str(p))


# --------------------------------------------------------------------------- scoring


def score(model, tokenizer, roles: dict, cfg: TofuEvalConfig, names: list[str], reference=None,
          precision: str = "fp32", progress: bool = True) -> dict[str, dict]:
    """Every metric of ``names`` on one model (metrics/suite.py)."""
    from unloc.metrics.curve import PointScores, check_forget_items
    from unloc.metrics.suite import SCORED_ROLES, Suite, generation_roles
    from unloc.precision import autocast_context

    if "forget" in roles:
        check_forget_items(roles["forget"], roles["forget_perturbed"])
    point = PointScores(model, tokenizer, roles, cfg, cfg.conventions.es, perturbed_roles=SCORED_ROLES,
                        generation_roles=generation_roles(names))
    suite = Suite(point, reference)
    results = {}
    with autocast_context(cfg.device, precision):
        for name in tqdm(names, desc="eval", unit="metric", disable=not progress):
            start = time.time()
            results[name] = suite.result(name)
            log.debug("%s = %s (%.1fs)", name, results[name].get("agg_value"), time.time() - start)
    return results


def chosen_metrics(option: str | None, roles) -> list[str]:
    from unloc.metrics.suite import EVAL_METRICS, available

    possible = available(roles)
    if option is None:
        skipped = [n for n in EVAL_METRICS.names() if n not in possible]
        if skipped:
            log.warning("no holdout split: %s skipped", ", ".join(skipped))
        return possible
    names = [n.strip() for n in option.split(",") if n.strip()]
    for name in names:
        spec = EVAL_METRICS.get(name, "--metrics")
        if name not in possible:
            raise ValueError(f"--metrics: {name} needs the split(s) {', '.join(spec.needs)}, which the data lacks")
    return names


# --------------------------------------------------------------------------- outputs


def eval_json(results: dict[str, dict]) -> str:
    """TOFU_EVAL.json's text as open-unlearning writes it: top-level keys sorted, indent 4."""
    return json.dumps(dict(sorted(results.items())), indent=4) + "\n"


def item_rows(results: dict[str, dict], roles: dict[str, list[dict]]) -> tuple[list[dict], list[str]]:
    """TOFU_ITEMS.csv: a row per (split, index) with the question and each metric's per-item value."""
    from unloc.metrics.suite import EVAL_METRICS

    rows: dict[tuple[str, str], dict] = {}
    columns = ["split", "index", "question"]

    def put(role, by_index, column, field):
        for index, values in by_index.items():
            row = rows.setdefault((role, index), {"split": role, "index": index,
                                                  "question": roles[role][int(index)]["question"]})
            row[column] = values[field]
            if "generation" in values:
                row["generation"] = values["generation"]
        if column not in columns:
            columns.append(column)

    for name, result in results.items():
        spec = EVAL_METRICS[name]
        if spec.item_field is None:
            continue
        if "auc" in result:  # an MIA: a score per forget and per holdout item
            for block, role in (("forget", spec.needs[0]), ("holdout", spec.needs[1])):
                put(role, result[block]["value_by_index"], name, spec.item_field)
        else:
            put(spec.needs[0], result["value_by_index"], name, spec.item_field)
    if any("generation" in r for r in rows.values()):
        columns.append("generation")
    return list(rows.values()), columns


def write_outputs(out_dir: Path, results: dict[str, dict], roles: dict, config: dict) -> dict[str, float]:
    from unloc.metrics.suite import summary

    out_dir.mkdir(parents=True, exist_ok=True)
    summarised = summary(results)
    io.atomic_write_text(out_dir / EVAL_FILE, eval_json(results))
    io.atomic_write_text(out_dir / SUMMARY_FILE, json.dumps(summarised, indent=4) + "\n")
    rows, columns = item_rows(results, roles)
    io.write_csv(out_dir / ITEMS_FILE, rows, columns)
    io.write_json(out_dir / CONFIG_FILE, config)
    return summarised


def summary_table(summarised: dict[str, float]) -> str:
    width = max(map(len, summarised), default=6)
    return "\n".join([f"{'metric':<{width}}  value", f"{'-' * width}  ------",
                      *(f"{name:<{width}}  {value:.5g}" for name, value in summarised.items())])


def run(args, device: str) -> None:
    start = time.time()
    for name in ("batch_size", "max_new_tokens", "max_length", "utility_items"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')}: must be at least 1, got {value}")
    cfg = TofuEvalConfig(max_length=args.max_length, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                         system_prompt=args.system_prompt, device=device, conventions=CONVENTIONS[args.compat])
    roles = load_roles(args.data, args.forget_split, args.holdout_split, args.utility_items)
    names = chosen_metrics(args.metrics, roles)
    items = {role: len(records) for role, records in roles.items() if role in (*ROLES, "holdout")}
    log.info("eval %s on %s: %s", args.model, args.data, ", ".join(f"{role} {n}" for role, n in items.items()))

    def evaluate_reference(path):
        log.info("scoring the reference model %s", path)
        model, tokenizer = load_model(path, device)
        needed = ["forget_truth_ratio", *(["mia_min_k"] if "holdout" in roles else [])]
        return score(model, tokenizer, roles, cfg, needed, precision=args.precision)

    reference = load_reference(args.reference, evaluate_reference)
    model, tokenizer = load_model(args.model, device)
    results = score(model, tokenizer, roles, cfg, names, reference, args.precision)
    config = {"model": args.model, "data": args.data, "reference": args.reference,
              "seconds": round(time.time() - start, 1),
              "settings": {**asdict(cfg), "device": None, "precision": args.precision,
                           "forget_split": args.forget_split, "holdout_split": args.holdout_split,
                           "utility_items": args.utility_items},
              "items": items}
    summarised = write_outputs(Path(args.out), results, roles, config)
    print(summary_table(summarised))
    log.info("wrote %s, %s, %s in %s", EVAL_FILE, SUMMARY_FILE, ITEMS_FILE, args.out)
