"""Optimizers for the training loop.

Masked stages hand the optimizer only the gathered masked columns (see
``models.MaskedDownProj``), so plain AdamW over those is exactly full-parameter AdamW
restricted to the mask, decoupled weight decay included, with state for the mask alone.
"""

from __future__ import annotations

import math

import torch


def adamw(params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    # foreach=False: the per-tensor reference kernel, the same arithmetic whatever the
    # number of tensors, so gathered and full-parameter runs agree bit for bit.
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=False)


OPTIMIZERS = {"adamw": adamw}


def lr_lambda(schedule: str, total_steps: int, warmup_steps: int):
    """Multiplier of the base LR at each step: linear warmup, then constant/linear/cosine."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if schedule == "linear":
            return max(0.0, 1.0 - progress)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        raise ValueError(f"unknown lr schedule {schedule!r}: allowed constant, linear, cosine")

    return factor


class NaiveMaskedAdamW:
    """The definition masked training must match, for tests and benchmarks only.

    Full-parameter AdamW over every parameter, with the gradient zeroed outside the mask and,
    after each step, every entry outside the mask put back (decoupled weight decay would
    otherwise still shrink it). Optimizer state is kept for the whole model.
    """

    def __init__(self, model, value_vector_mask: dict[int, torch.Tensor], lr: float, weight_decay: float):
        self.params = dict(model.named_parameters())
        self.start = {n: p.detach().clone() for n, p in self.params.items()}
        self.allowed = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in self.params.items()}
        for layer, m in value_vector_mask.items():
            self.allowed[f"model.layers.{layer}.mlp.down_proj.weight"][:, m] = True
        self.optimizer = adamw(list(self.params.values()), lr, weight_decay)

    def zero_grad(self):
        self.optimizer.zero_grad()

    @torch.no_grad()
    def step(self):
        for n, p in self.params.items():
            p.grad *= self.allowed[n]
        self.optimizer.step()
        for n, p in self.params.items():
            p.copy_(torch.where(self.allowed[n], p, self.start[n]))
