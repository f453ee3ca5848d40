"""``unloc <stage>``: the thin command line the workflow's rules call, one subcommand per stage.

Subcommands and their options come from the stage registry (stages.STAGES): a stage's params
arrive as one JSON object (``--params``: the slice of the config its rule passes, checked
against the stage's params dataclass), its paths as options. The CLI never calls Snakemake.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from unloc import distributed, io
from unloc.registry import ConfigError, describe

log = logging.getLogger("unloc")


def _params(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"--params is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--params must be a JSON object")
    return value


def _params_help(spec) -> str:
    keys = ", ".join(name for name, *_ in describe(spec.settings))
    return f"the stage's config slice as a JSON object (the workflow passes it); keys: {keys}"


def _variants_epilog(spec) -> str | None:
    """Every variant of the families a stage's params choose from, with its settings and defaults."""
    lines = []
    for registry in spec.variants:
        lines.append(f"{registry.family}s:")
        for variant in registry.specs():
            lines.append(f"  {variant.name}: {variant.help}" if variant.help else f"  {variant.name}")
            for name, kind, default, text in describe(variant.settings):
                shown = "null" if default is None else default
                lines.append(f"      {name} ({kind}, default {shown}): {text}")
    return "\n".join(lines) or None


def build_parser() -> argparse.ArgumentParser:
    from unloc.stages import STAGES

    parser = argparse.ArgumentParser(
        prog="unloc",
        description="Stages of the unloc pipeline (Does Localization Inform Unlearning?). "
                    "Normally run by Snakemake; each stage reads its inputs and writes its outputs atomically.")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where to run (auto: cuda if available); not part of any result")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and a traceback on failure")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    from unloc import evaluation

    evaluation.add_arguments(sub.add_parser(
        "eval", help="score any checkpoint with the TOFU suite; writes open-unlearning's TOFU_EVAL.json",
        description=evaluation.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    for spec in STAGES.specs():
        p = sub.add_parser(spec.name, help=spec.help, description=spec.help, epilog=_variants_epilog(spec),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if spec.takes_params:
            p.add_argument("--params", type=_params, required=True, help=_params_help(spec))
        for arg in spec.args:
            if arg.positional:
                p.add_argument(arg.name, nargs="+" if arg.repeat else None, help=arg.help)
            else:
                p.add_argument(f"--{arg.name.replace('_', '-')}", dest=arg.name, required=arg.required,
                               choices=arg.choices, action="append" if arg.repeat else "store",
                               metavar=arg.metavar, help=arg.help)
    return parser


def run(args) -> None:
    from unloc.stages import STAGES, resolve_device

    if args.stage == "eval":
        from unloc import evaluation

        return evaluation.run(args, resolve_device(args.device))
    spec = STAGES[args.stage]
    kwargs = {arg.name: getattr(args, arg.name) for arg in spec.args}
    if spec.takes_device:
        kwargs["device"] = resolve_device(args.device)
    if spec.takes_params:
        spec.fn(args.params, **kwargs)
    else:
        spec.fn(**kwargs)


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
    except (io.ArtifactError, ConfigError, ValueError, FileNotFoundError) as e:
        # A bad input, not a bug: one line naming it; -v adds the traceback.
        log.error("unloc %s failed: %s", args.stage, e, exc_info=args.verbose)
        return 1
    log.info("unloc %s: done in %.1fs", args.stage, time.time() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
