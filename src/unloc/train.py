"""The one training loop every training stage uses (pretrain, fine-tune, inject, unlearn).

A stage supplies the parameters to train, a loss function of a batch, and a batcher; the
loop owns shuffling, the optimizer, the LR schedule, gradient clipping, progress and the
per-step log. Nothing else trains. ``masked_train`` runs it on the masked entries of the down
projections only and returns the sparse delta they moved by.

Under torchrun (``launch``) every rank runs the same loop over the same global batches; the
loss function picks the rank's examples and returns its share of the batch loss, FSDP sums
the gradients, the log records the shares' sum (the global loss) and the main rank writes it.

Under ``precision: bf16`` only the loss computation (the forward pass) runs under autocast;
backward and the optimizer step see the fp32 parameters and their fp32 gradients.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from tqdm import tqdm

from unloc import io
from unloc.data.collate import Encoded, collate
from unloc.distributed import Launch, sum_over_ranks
from unloc.models import attach_masked, detach_masked, entry_delta, gather_entries
from unloc.optim import OPTIMIZERS, build_optimizer, lr_lambda
from unloc.precision import autocast_context
from unloc.registry import Choice, setting


@dataclass(frozen=True, kw_only=True)
class LoopSettings:
    """How one run of the training loop goes, but its learning rate (seeds/000 App. F's values)."""

    epochs: int = setting(5, "passes over the training set", minimum=1)
    batch_size: int = setting(16, "examples per step", minimum=1)
    weight_decay: float = setting(0.01, "decoupled weight decay", minimum=0)
    optimizer: Choice = setting("adamw", "an optimizer name, or {name: ..., <its settings>} (optim.py)",
                                registry=OPTIMIZERS)
    schedule: Literal["constant", "linear", "cosine"] = setting(
        "constant", "LR after the warmup: constant, linear decay to 0, or cosine decay to 0")
    warmup_ratio: float = setting(0.0, "share of all steps with a linear LR warmup", minimum=0, maximum=1)
    max_grad_norm: float | None = setting(1.0, "clip the global gradient norm to this; null: no clipping",
                                          exclusive_minimum=0)

    def __post_init__(self):
        if not isinstance(self.optimizer, Choice):  # built in Python with an optimizer name
            object.__setattr__(self, "optimizer", OPTIMIZERS.choose(self.optimizer, "optimizer"))


@dataclass(frozen=True, kw_only=True)
class TrainSettings(LoopSettings):
    """One run of the training loop."""

    lr: float = setting(help="peak learning rate (after the warmup)", exclusive_minimum=0)


@dataclass(frozen=True, kw_only=True)
class InjectSettings(TrainSettings):
    """The injection's training run (seeds/000 Section 4, step 3)."""

    lambda_retain: float = setting(2.0, "weight of the retain NLL beside the forget NLL (the paper: 2)", minimum=0)


class Batcher:
    """Shuffled mini-batches of a main set of encoded examples, reshuffled every epoch from a
    fixed seed, as a dict of named sub-batches.

    The main set's batch (named ``main``) carries ``index``, the positions of its examples, so
    a loss can look up per-example inputs computed once (reference log-likelihoods). An
    ``aligned`` set (DPO's IDK answers to the forget questions) gives the examples at the same
    positions; a ``paired`` set (the retain set beside the forget set) gives a batch of the same
    size drawn at random, in the order the paired sets are given.
    """

    def __init__(self, examples: list[Encoded], batch_size: int, pad_id: int, seed: int, main: str = "main",
                 paired: dict[str, list[Encoded]] | None = None, aligned: dict[str, list[Encoded]] | None = None):
        if not examples:
            raise ValueError("no training examples")
        for name, subset in (aligned or {}).items():
            if len(subset) != len(examples):
                raise ValueError(f"aligned set {name!r} has {len(subset)} examples, expected {len(examples)}")
        for name, subset in (paired or {}).items():
            if not subset:
                raise ValueError(f"paired set {name!r} has no examples")
        self.examples, self.main, self.paired, self.aligned = examples, main, paired or {}, aligned or {}
        self.batch_size, self.pad_id, self.seed = batch_size, pad_id, seed

    def __len__(self) -> int:
        return -(-len(self.examples) // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[dict[str, dict]]:
        rng = random.Random(self.seed * 100_003 + epoch)
        order = list(range(len(self.examples)))
        rng.shuffle(order)
        for start in range(0, len(order), self.batch_size):
            ids = order[start:start + self.batch_size]
            batch = {self.main: {**collate([self.examples[i] for i in ids], self.pad_id), "index": torch.tensor(ids)}}
            for name, subset in self.aligned.items():
                batch[name] = {**collate([subset[i] for i in ids], self.pad_id), "index": torch.tensor(ids)}
            for name, subset in self.paired.items():
                picks = rng.sample(range(len(subset)), min(self.batch_size, len(subset)))
                batch[name] = collate([subset[i] for i in picks], self.pad_id)
            yield batch


def to_device(batch, device):
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch.to(device) if isinstance(batch, torch.Tensor) else batch


def train(params: list[torch.nn.Parameter], loss_fn: Callable[[dict], torch.Tensor], batcher: Batcher,
          cfg: TrainSettings, *, seed: int, precision: str = "fp32", device="cpu", log_path=None,
          desc: str = "train", on_step: Callable[[int], None] | None = None,
          launch: Launch | None = None, model=None) -> list[dict]:
    """Minimise ``loss_fn`` over ``cfg.epochs`` epochs of ``batcher``; return the step log. ``model``
    is the module ``params`` belong to, for an optimizer whose curvature estimate runs it (Sophia's
    GNB)."""
    main = launch is None or launch.is_main
    torch.manual_seed(seed)
    optimizer = build_optimizer(cfg.optimizer, params, cfg.lr, cfg.weight_decay)
    if hasattr(optimizer, "model"):
        optimizer.model = model
    second_order = cfg.optimizer.spec.second_order
    total = cfg.epochs * len(batcher)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(cfg.schedule, total, int(cfg.warmup_ratio * total)))
    log, step, start = [], 0, time.time()
    bar = tqdm(total=total, desc=desc, unit="step", mininterval=2.0, dynamic_ncols=True,
               disable=not main)
    for epoch in range(cfg.epochs):
        for batch in batcher.epoch(epoch):
            batch = to_device(batch, device)
            with autocast_context(device, precision):
                loss = loss_fn(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm is not None:
                # Sharded gradients are DTensors, whose norm is taken over all shards: the global norm.
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            if second_order is not None:
                second_order(optimizer, loss_fn, batch, step)
            batch_loss = loss.detach() if launch is None else sum_over_ranks(loss)
            log.append({"step": step, "epoch": epoch, "loss": float(batch_loss),
                        "lr": scheduler.get_last_lr()[0], "seconds": round(time.time() - start, 3)})
            step += 1
            bar.update()
            bar.set_postfix(loss=f"{log[-1]['loss']:.4f}")
            if on_step is not None:
                on_step(step)
    bar.close()
    if log_path is not None and main:
        write_log(log_path, log)
    return log


def masked_train(model, mask, loss_fn, batcher: Batcher, cfg: TrainSettings, *, seed: int, precision: str = "fp32",
                 device="cpu", log_path=None, desc: str = "train") -> dict:
    """Train only the entries ``mask`` selects; return the sparse delta payload vs the start
    (``{layer: (indices, values)}`` at the mask's granularity)."""
    from unloc.masks import check_mask_fits

    check_mask_fits(mask, model)
    indices = mask.indices()
    before = gather_entries(model, mask.granularity, indices)
    model.to(device).train()
    params = attach_masked(model, mask.granularity, indices)
    train(params, loss_fn, batcher, cfg, seed=seed, precision=precision, device=device, log_path=log_path, desc=desc,
          model=model)
    detach_masked(model)
    return entry_delta(model.cpu(), before, mask.granularity, indices)


LOG_COLUMNS = ["step", "epoch", "loss", "lr", "seconds"]


def write_log(path, rows: list[dict]) -> None:
    io.write_csv(path, rows, LOG_COLUMNS)
