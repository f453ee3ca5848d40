"""WME's cost against training baselines (seeds/004 Table 9 / Fig. 9), measured side by side.

On one forget split of an experiment whose θp, θfull and split data exist, runs in this process
and times, with the config's settings (the wme section):

- WME: θ_fgt (``finetune --split forget`` from θp), the gradients at θp (whole data and a 20%
  share), and the edits WME-grad and WME-fisher;
- the training baselines GD and NPO+ (``unlearn_all`` from θfull in wme.train's loop).

Prints each stage's time, the WME totals (θ_fgt + gradients + edit, as Table 9 adds them) and
their ratios to GD's and NPO+'s, all measured in this run; no thresholds. Every output goes to a
temporary directory.

    snakemake --cores 2 results/tiny/theta_full results/data/minitofu/splits/forget05/forget.jsonl
    python benchmarks/wme_runtime.py --split forget05 [--configfile config/quick.yaml] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from unloc.config import check_config, load_config
from unloc.registry import to_dict
from unloc.stages import STAGES
from unloc.tables import ORIGINAL


def timed(label: str, fn, times: dict) -> None:
    start = time.perf_counter()
    fn()
    times[label] = time.perf_counter() - start
    print(f"  {label:<28} {times[label]:8.1f} s", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configfile", default=None, help="a config merged over config.yaml (default: config.yaml)")
    p.add_argument("--split", default="forget05", help="the forget split (its data must exist)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    config = load_config(args.configfile)
    experiment = check_config(config)
    if experiment.wme is None:
        raise SystemExit("the config has no wme section")
    wme = experiment.wme.settings
    results = Path("results") / config["name"]
    data = Path("results/data") / config["data"]["name"]
    if args.split != config["data"]["forget_split"]:
        data = data / "splits" / args.split
    theta_p, theta_full = results / "theta_p", results / "theta_full"
    for path in (theta_p, theta_full, data / "forget.jsonl"):
        if not path.exists():
            raise SystemExit(f"{path} is missing: build it first (see --help)")
    for name in ("gd", "npo_plus"):
        if name not in experiment.wme.baselines:
            raise SystemExit(f"wme.baselines has no {name}")

    qa = {"max_length": config["model"]["max_length"], "system_prompt": config["model"]["system_prompt"],
          "precision": config["precision"]}
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"{config['name']}, {args.split}, {args.threads} threads, device {args.device}")
        timed("θ_fgt (finetune_forget)", lambda: STAGES["finetune"].fn(
            {"train": to_dict(wme.finetune_forget), "seed": 0, **qa}, theta_p, data, "forget", tmp / "theta_fgt",
            tmp / "fgt.csv", device=args.device), times)
        for label, fraction in (("gradients", 1.0), ("gradients, 20%", 0.2)):
            timed(label, lambda f=fraction, label=label: STAGES["gradients"].fn(
                {"batch_size": wme.gradients_batch_size, "sample_fraction": f, **qa}, theta_p, data,
                tmp / f"{label}.safetensors", device=args.device), times)
        for weighting in ("grad", "fisher"):
            timed(f"edit ({weighting})", lambda w=weighting: STAGES["edit"].fn(
                {"weighting": w, "precision": config["precision"]}, theta_full, tmp / "theta_fgt", theta_p,
                tmp / f"edit_{w}", gradients=tmp / "gradients.safetensors"), times)
        for name in ("gd", "npo_plus"):
            objective, block = experiment.wme.baselines[name]
            timed(f"baseline {name}", lambda o=objective, b=block, n=name: STAGES["unlearn_all"].fn(
                {"objective": o, "block": b, "train": to_dict(wme.train), "scenario": ORIGINAL, "seed": 0,
                 "eval_batch_size": config["unlearn"]["eval_batch_size"], **qa},
                theta_full, data, tmp / n, tmp / f"{n}.csv", device=args.device), times)

    fgt = times["θ_fgt (finetune_forget)"]
    totals = {f"WME ({w}){share}": fgt + times[g] + times[f"edit ({w})"]
              for w in ("grad", "fisher") for share, g in (("", "gradients"), (" w/ 20%", "gradients, 20%"))}
    print("\ntotal (θ_fgt + gradients + edit) and ratio to each baseline (> 1: the baseline takes longer)")
    for label, total in totals.items():
        ratios = ", ".join(f"{name} / WME {times[f'baseline {name}'] / total:.2f}x" for name in ("gd", "npo_plus"))
        print(f"  {label:<22} {total:8.1f} s   {ratios}")


if __name__ == "__main__":
    main()
