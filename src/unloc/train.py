"""The one training loop every training stage uses (pretrain, fine-tune, inject, unlearn).

A stage supplies the parameters to train, a loss function of a batch, and a batcher; the
loop owns shuffling, the optimizer, the LR schedule, gradient clipping, progress and the
per-step log. Nothing else trains.

Under torchrun (``launch``) every rank runs the same loop over the same global batches; the
loss function picks the rank's examples and returns its share of the batch loss, FSDP sums
the gradients, the log records the shares' sum (the global loss) and the main rank writes it.

Under ``precision: bf16`` only the loss computation (the forward pass) runs under autocast;
backward and the optimizer step see the fp32 parameters and their fp32 gradients.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, fields
from typing import Callable, Iterator

import torch
from tqdm import tqdm

from unloc import io
from unloc.data.collate import Encoded, collate
from unloc.distributed import Launch, sum_over_ranks
from unloc.optim import OPTIMIZERS, lr_lambda
from unloc.precision import autocast_context


@dataclass
class TrainConfig:
    lr: float
    epochs: int
    batch_size: int
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    schedule: str = "constant"
    warmup_ratio: float = 0.0
    max_grad_norm: float | None = 1.0
    seed: int = 0
    precision: str = "fp32"  # the forward passes' autocast (precision.py)

    @classmethod
    def from_params(cls, params: dict, **overrides) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in {**params, **overrides}.items() if k in names})


class Batcher:
    """Shuffled mini-batches of encoded examples, reshuffled every epoch from a fixed seed.

    Every batch carries ``index``, the positions of its examples, so a loss can look up
    per-example inputs computed once (reference log-likelihoods). With ``paired``, each
    batch becomes ``{"main": ..., "paired": ...}`` with a batch drawn at random from a second
    set (the retain set beside the forget set); with ``aligned``, ``{"main": ..., "win": ...}``
    where ``win`` holds the aligned set's examples at the same positions (DPO's IDK answers).
    """

    def __init__(self, examples: list[Encoded], batch_size: int, pad_id: int, seed: int,
                 paired: list[Encoded] | None = None, aligned: list[Encoded] | None = None):
        if not examples:
            raise ValueError("no training examples")
        if aligned is not None and len(aligned) != len(examples):
            raise ValueError(f"aligned set has {len(aligned)} examples, expected {len(examples)}")
        self.examples, self.paired, self.aligned = examples, paired, aligned
        self.batch_size, self.pad_id, self.seed = batch_size, pad_id, seed

    def __len__(self) -> int:
        return -(-len(self.examples) // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[dict]:
        rng = random.Random(self.seed * 100_003 + epoch)
        order = list(range(len(self.examples)))
        rng.shuffle(order)
        for start in range(0, len(order), self.batch_size):
            ids = order[start:start + self.batch_size]
            batch = collate([self.examples[i] for i in ids], self.pad_id)
            batch["index"] = torch.tensor(ids)
            if self.paired is not None:
                picks = rng.sample(range(len(self.paired)), min(self.batch_size, len(self.paired)))
                yield {"main": batch, "paired": collate([self.paired[i] for i in picks], self.pad_id)}
            elif self.aligned is not None:
                yield {"main": batch, "win": collate([self.aligned[i] for i in ids], self.pad_id)}
            else:
                yield batch


def to_device(batch, device):
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch.to(device) if isinstance(batch, torch.Tensor) else batch


def train(params: list[torch.nn.Parameter], loss_fn: Callable[[dict], torch.Tensor], batcher: Batcher,
          cfg: TrainConfig, *, device="cpu", log_path=None, desc: str = "train",
          on_step: Callable[[int], None] | None = None, launch: Launch | None = None) -> list[dict]:
    """Minimise ``loss_fn`` over ``cfg.epochs`` epochs of ``batcher``; return the step log."""
    main = launch is None or launch.is_main
    torch.manual_seed(cfg.seed)
    optimizer = OPTIMIZERS[cfg.optimizer](params, cfg.lr, cfg.weight_decay)
    total = cfg.epochs * len(batcher)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(cfg.schedule, total, int(cfg.warmup_ratio * total)))
    log, step, start = [], 0, time.time()
    bar = tqdm(total=total, desc=desc, unit="step", mininterval=2.0, dynamic_ncols=True,
               disable=not main)
    for epoch in range(cfg.epochs):
        for batch in batcher.epoch(epoch):
            with autocast_context(device, cfg.precision):
                loss = loss_fn(to_device(batch, device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm is not None:
                # Sharded gradients are DTensors, whose norm is taken over all shards: the global norm.
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
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


LOG_COLUMNS = ["step", "epoch", "loss", "lr", "seconds"]


def write_log(path, rows: list[dict]) -> None:
    io.write_csv(path, rows, LOG_COLUMNS)
