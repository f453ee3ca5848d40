"""ES on the forget and retain sets after every epoch of one training stage: how this project
chooses a stage's learning rate and epochs for a new model (docs/decisions.md, SmolLM2 on a CPU).

It trains exactly as the stage does (the same loss, batcher, optimizer and masks) but writes
nothing: it prints one line per epoch. Runs on the artifacts of a pipeline run, e.g.

  R=results/smollm2-tofu-cpu D=results/data/tofu-forget01-cpu
  python scripts/es_by_epoch.py finetune --model $R/theta_p --data $D --lr 1e-4 --epochs 4
  python scripts/es_by_epoch.py inject --model $R/theta_r --mask $R/masks/oracle/s7/mask.safetensors \\
      --data $D --lr 1e-2 --epochs 8 --batch-size 4
  python scripts/es_by_epoch.py npo --model $R/theta_o/s7/delta.safetensors \\
      --mask $R/masks/oracle/s7/mask.safetensors --data $D --lr 3e-3 --epochs 5 --forget-only

Everything but the LR, epochs and batch size (the schedule, weight decay, λ_retain, β, RMU's
layer, an objective's regularizer) comes from ``--config`` merged over ``config.yaml``, as the
workflow merges it, and checked as the workflow checks it (defaults filled in). Run it from the
repository root.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from unloc.checkpoints import load_checkpoint
from unloc.config import check_config, load_config
from unloc.data import load_role
from unloc.data.collate import encode_records
from unloc.masks import load_mask
from unloc.metrics.es import per_example_es
from unloc.models import attach_masked
from unloc.objectives import OBJECTIVES, forget_retain_nll
from unloc.scoring import answer_nll
from unloc.stages import UnlearnParams, prepare_unlearning
from unloc.train import Batcher, train


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=["finetune", "inject", *OBJECTIVES])
    p.add_argument("--model", required=True, help="checkpoint or delta to start from (θp, θr or θo)")
    p.add_argument("--data", required=True, help="dataset directory of the run")
    p.add_argument("--mask", help="mask to train in (inject and the objectives)")
    p.add_argument("--config", default="config/smollm2-tofu-cpu.yaml",
                   help="config giving max_length, system_prompt, λ_retain and the objectives' hyper-parameters")
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--forget-only", action="store_true", help="skip retain ES (unlearning changes the forget ES)")
    p.add_argument("--target", help="θr, for an objective that matches its activations (l2_mlp)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    config = load_config(a.config)
    experiment = check_config(config)  # every training section with its defaults filled in
    run = {"max_length": config["model"]["max_length"], "system_prompt": config["model"]["system_prompt"]}
    seed = config["seed"]
    model, tokenizer = load_checkpoint(a.model)
    forget, retain = (encode_records(tokenizer, load_role(a.data, role), run["max_length"], run["system_prompt"])
                      for role in ("forget", "retain"))
    pad = tokenizer.pad_token_id

    def es() -> str:
        model.eval()
        with torch.no_grad():
            text = f"forget ES {per_example_es(model, forget, pad, 32).mean():.4f}"
            if not a.forget_only:
                text += f"  retain ES {per_example_es(model, retain, pad, 32).mean():.4f}"
        model.train()
        return text

    if a.stage != "finetune" and a.mask is None:
        raise SystemExit(f"{a.stage} trains inside a mask: give --mask")
    # the stage's schedule, weight decay and clipping; LR, epochs and batch size from the command line
    override = {"lr": a.lr, "epochs": a.epochs, "batch_size": a.batch_size}
    if a.stage == "finetune":
        cfg = dataclasses.replace(experiment.train["finetune_retain"], **override)
        params, batcher = list(model.parameters()), Batcher(retain, a.batch_size, pad, seed)
        loss_fn = lambda b: answer_nll(model, b["main"])  # noqa: E731
    elif a.stage == "inject":
        cfg = dataclasses.replace(experiment.inject, **override)
        mask = load_mask(a.mask, model)
        params = attach_masked(model, mask.granularity, mask.indices())
        batcher = Batcher(forget, a.batch_size, pad, seed, main="forget", paired={"retain": retain})
        lam = cfg.lambda_retain
        loss_fn = lambda b: forget_retain_nll(model, b["forget"], b["retain"], lam)  # noqa: E731
    else:
        block = {**(config["unlearn"].get(a.stage) or {}), "lr": a.lr}
        train_settings = dataclasses.replace(experiment.unlearn_train, epochs=a.epochs, batch_size=a.batch_size)
        unlearn_params = UnlearnParams(objective=a.stage, block=block, train=train_settings,
                                       eval_batch_size=config["unlearn"]["eval_batch_size"], seed=seed, **run)
        # set up as the unlearn stage sets it up, before the mask is attached: NPO's and DPO's
        # references are the model as loaded
        target = load_checkpoint(a.target)[0] if a.target else None
        unlearning = prepare_unlearning(unlearn_params, model, tokenizer, a.data, target=target)
        loss_fn, batcher, cfg = unlearning.loss_fn, unlearning.batcher, unlearning.train
        mask = load_mask(a.mask, model)
        params = attach_masked(model, mask.granularity, mask.indices())

    start = time.time()
    print(f"epoch 0: {es()}", flush=True)

    def on_step(step: int) -> None:
        if step % len(batcher) == 0:
            print(f"epoch {step // len(batcher)}: {es()}  ({time.time() - start:.0f} s)", flush=True)

    model.train()
    train(params, loss_fn, batcher, cfg, seed=seed, on_step=on_step)


if __name__ == "__main__":
    main()
