"""``unloc <stage>``: the thin command line the workflow's rules call, one subcommand per stage.

Stage parameters arrive as one JSON object (``--params``), the slice of the config the rule
passes; paths arrive as options. The CLI never calls Snakemake.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from unloc import distributed, io
from unloc.precision import PRECISIONS

log = logging.getLogger("unloc")

PARAMS_HELP = "the stage's config slice as a JSON object (the workflow passes it; see config.yaml)"


def _params(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"--params is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--params must be a JSON object")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unloc",
        description="Stages of the unloc pipeline (Does Localization Inform Unlearning?). "
                    "Normally run by Snakemake; each stage reads its inputs and writes its outputs atomically.")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where to run (auto: cuda if available); not part of any result")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")

    def add(name, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text)
        return p

    p = add("prepare-data", "Build the dataset roles (full, forget, retain, perturbed, real authors, "
                            "world facts, idk, corpus) as JSON Lines in OUT.")
    p.add_argument("--params", type=_params, required=True, help=PARAMS_HELP)
    p.add_argument("--out", required=True, help="output directory")

    p = add("pretrain", "θp: pretrain the tiny Llama (with its BPE tokenizer) on the corpus, "
                        "or resolve a named HF checkpoint into a local model directory.")
    p.add_argument("--params", type=_params, required=True, help=PARAMS_HELP)
    p.add_argument("--data", required=True, help="dataset directory from prepare-data")
    p.add_argument("--out", required=True, help="output HF model directory")
    p.add_argument("--log", required=True, help="training log CSV (loss per step)")

    p = add("finetune", "Full-parameter fine-tuning on one split: retain → θr, full → θfull.")
    p.add_argument("--params", type=_params, required=True, help=PARAMS_HELP)
    p.add_argument("--model", required=True, help="θp model directory")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--split", required=True, choices=["retain", "full"])
    p.add_argument("--out", required=True, help="output HF model directory")
    p.add_argument("--log", required=True, help="training log CSV (loss per step)")

    p = add("make-mask", "Draw V_tgt (a ratio of all value vectors) and V_rdm (as many, outside V_tgt).")
    p.add_argument("--params", type=_params, required=True, help=PARAMS_HELP)
    p.add_argument("--model", required=True, help="model directory whose shapes the masks fit")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out-target", required=True)
    p.add_argument("--out-random", required=True)

    p = add("inject", "θo: train θr on the forget set with updates only in V_tgt "
                      "(loss L_forget + lambda_retain * L_retain); writes a sparse delta.")
    p.add_argument("--params", type=_params, required=True, help=PARAMS_HELP)
    p.add_argument("--model", required=True, help="θr model directory")
    p.add_argument("--mask", required=True, help="target mask (safetensors)")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--out", required=True, help="output delta (safetensors)")
    p.add_argument("--log", required=True, help="training log CSV")

    p = add("unlearn", "θu: unlearn the forget set from θo with one objective (wga, npo, dpo, rmu), "
                       "updates only inside one mask (Oracle = V_tgt, Random = V_rdm); writes a sparse delta on θo.")
    p.add_argument("--params", type=_params, required=True, help=PARAMS_HELP)
    p.add_argument("--model", required=True, help="θo (delta on θr)")
    p.add_argument("--mask", required=True, help="the scenario's mask (safetensors)")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--out", required=True, help="output delta (safetensors)")
    p.add_argument("--log", required=True, help="training log CSV")

    p = add("es", "Mean teacher-forced Extraction Strength of a model on the forget and retain splits.")
    p.add_argument("--params", type=_params, required=True, help=PARAMS_HELP)
    p.add_argument("--model", required=True, help="model directory or delta")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--out", required=True, help="output JSON")

    p = add("reference-stats", "θr's per-item forget truth ratios, cached once for every FQ (KS test).")
    p.add_argument("--params", type=_params, required=True, help=PARAMS_HELP)
    p.add_argument("--model", required=True, help="θr model directory")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--out", required=True, help="output (safetensors)")

    p = add("mix-eval", "Model mixing θ(α) = (1-α)θo + αθu over an α grid; one CSV row per α with ES forget/retain, "
                        "FS, RS, FQ, log10 FQ, MU and its 9 parts.")
    p.add_argument("--params", type=_params, required=True, help=PARAMS_HELP)
    p.add_argument("--model", required=True, help="θu (a delta on θo)")
    p.add_argument("--reference", required=True, help="θr's forget truth ratios from reference-stats")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--out", required=True, help="output curve.csv")

    p = add("table2", "Table 2 (Random vs Oracle: AUES and MU95, mean ± std over seeds, |Δ|, App. D p-value, "
                      "bootstrap CI, TOST) from mixing curves, as CSV and markdown.")
    p.add_argument("--params", type=_params, required=True, help=PARAMS_HELP)
    p.add_argument("--model", required=True, help="model name for the table header")
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-md", required=True)
    p.add_argument("curves", nargs="+", help=".../mix/{objective}/{scenario}/s{seed}/curve.csv files")

    p = add("figure", "FS–RS or MU–FQ curves (Oracle vs Random, every seed, a panel per objective) as PNG and PDF.")
    p.add_argument("--kind", required=True, choices=["fs_rs", "mu_fq"])
    p.add_argument("--model", required=True, help="model name for the title")
    p.add_argument("--out-png", required=True)
    p.add_argument("--out-pdf", required=True)
    p.add_argument("curves", nargs="+", help="curve.csv files")

    p = add("sanity", "Collect ES results into results/{model}/sanity.csv.")
    p.add_argument("--result", action="append", required=True, metavar="NAME=JSON",
                   help="a named ES result, e.g. theta_r=results/tiny/es/theta_r.json (repeatable)")
    p.add_argument("--out", required=True)

    p = add("export", "Materialise a delta chain (or copy a checkpoint) as a full HF model directory.")
    p.add_argument("artifact", help="delta (.safetensors) or model directory")
    p.add_argument("out", help="output HF model directory")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="dtype of the written weights (default: the precision the artifact was made under)")
    return parser


def run(args) -> None:
    from unloc import stages

    s, device = args.stage, stages.resolve_device(args.device)
    if s == "prepare-data":
        stages.prepare_data(args.params, args.out)
    elif s == "pretrain":
        stages.pretrain(args.params, args.data, args.out, args.log, device=device)
    elif s == "finetune":
        stages.finetune(args.params, args.model, args.data, args.split, args.out, args.log, device=device)
    elif s == "make-mask":
        stages.make_mask(args.params, args.model, args.seed, args.out_target, args.out_random)
    elif s == "inject":
        stages.inject_forget(args.params, args.model, args.mask, args.data, args.out, args.log, device=device)
    elif s == "unlearn":
        stages.unlearn(args.params, args.model, args.mask, args.data, args.out, args.log, device=device)
    elif s == "es":
        stages.es(args.params, args.model, args.data, args.out, device=device)
    elif s == "reference-stats":
        stages.reference_stats(args.params, args.model, args.data, args.out, device=device)
    elif s == "mix-eval":
        stages.mix_eval(args.params, args.model, args.reference, args.data, args.out, device=device)
    elif s == "table2":
        stages.table2(args.params, args.model, args.curves, args.out_csv, args.out_md)
    elif s == "figure":
        stages.figure(args.kind, args.model, args.curves, args.out_png, args.out_pdf)
    elif s == "sanity":
        named = dict(item.split("=", 1) for item in args.result)
        stages.sanity(named, args.out)
    elif s == "export":
        stages.export(args.artifact, args.out, args.precision)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO
    if not distributed.is_main_process():
        # torchrun's other ranks report warnings and errors only: one job log, not one copy per rank.
        level = max(level, logging.WARNING)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    logging.basicConfig(level=level,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    if args.threads:
        import torch

        torch.set_num_threads(distributed.threads_per_process(args.threads))
    start = time.time()
    paths = {k: v for k, v in vars(args).items() if k not in ("stage", "params", "verbose", "threads")}
    log.info("unloc %s: start; %s", args.stage, ", ".join(f"{k}={v}" for k, v in paths.items()))
    if getattr(args, "params", None) is not None:
        log.info("params (digest %s): %s", io.config_digest(args.params), json.dumps(args.params, sort_keys=True))
    try:
        run(args)
    except (io.ArtifactError, ValueError, FileNotFoundError) as e:
        log.error("unloc %s failed: %s", args.stage, e)
        return 1
    log.info("unloc %s: done in %.1fs", args.stage, time.time() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
