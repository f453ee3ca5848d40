"""Optimizers for the training loop (train.py), and the learning-rate schedules.

Masked stages hand the optimizer only the gathered masked entries (models.MaskedDownProj), so
an element-wise optimizer over those (AdamW) is exactly the full-parameter optimizer restricted
to the mask, decoupled weight decay included, with state for the mask alone.
``NaiveMaskedOptimizer`` is that definition written out, for tests and benchmarks.

An optimizer spec builds a ``torch.optim.Optimizer``; ``second_order`` is the optional hook of
an optimizer that keeps a curvature estimate (Sophia's Hessian diagonal): the training loop
calls ``second_order(optimizer, loss_fn, batch, step)`` after each step's update, and the hook
decides itself on which steps to refresh its estimate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from unloc.registry import Registry, Spec, setting


@dataclass(frozen=True, kw_only=True)
class OptimizerSpec(Spec):
    second_order: Callable | None = None


OPTIMIZERS: Registry[OptimizerSpec] = Registry("optimizer", OptimizerSpec)


@dataclass(frozen=True)
class AdamWSettings:
    betas: tuple[float, float] = setting((0.9, 0.999), "coefficients of the running averages of the "
                                                       "gradient and its square (torch's defaults)")
    eps: float = setting(1e-8, "added to the denominator for numerical stability", exclusive_minimum=0)


@OPTIMIZERS.register("adamw", settings=AdamWSettings)
def adamw(params, lr: float, weight_decay: float, settings: AdamWSettings = AdamWSettings()) -> torch.optim.Optimizer:
    """AdamW with decoupled weight decay (torch.optim.AdamW)."""
    # foreach=False: the per-tensor reference kernel, the same arithmetic whatever the
    # number of tensors, so gathered and full-parameter runs agree bit for bit.
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=tuple(settings.betas),
                             eps=settings.eps, foreach=False)


def build_optimizer(choice, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """The optimizer a ``Choice`` of ``OPTIMIZERS`` names, over ``params``."""
    return choice.spec.fn(params, lr, weight_decay, choice.settings)


SCHEDULES = ("constant", "linear", "cosine")


def lr_lambda(schedule: str, total_steps: int, warmup_steps: int):
    """Multiplier of the base LR at each step: linear warmup, then constant/linear/cosine."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {schedule!r}: allowed {', '.join(SCHEDULES)}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


class NaiveMaskedOptimizer:
    """The definition masked training must match, for tests and benchmarks only.

    The full-parameter optimizer over every parameter, with the gradient zeroed outside the
    mask and, after each step, every entry outside the mask put back (decoupled weight decay
    would otherwise still shrink it). Optimizer state is kept for the whole model.
    """

    def __init__(self, model, mask, lr: float, weight_decay: float, choice=None):
        self.params = dict(model.named_parameters())
        self.start = {n: p.detach().clone() for n, p in self.params.items()}
        self.allowed = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in self.params.items()}
        for layer, m in mask.layers.items():
            allowed = self.allowed[f"model.layers.{layer}.mlp.down_proj.weight"]
            if mask.granularity == "columns":
                allowed[:, m] = True
            elif mask.granularity == "rows":
                allowed[m, :] = True
            else:
                allowed[m] = True
        params = list(self.params.values())
        self.optimizer = (adamw(params, lr, weight_decay) if choice is None
                          else build_optimizer(choice, params, lr, weight_decay))

    def zero_grad(self):
        self.optimizer.zero_grad()

    @torch.no_grad()
    def step(self):
        for n, p in self.params.items():
            p.grad *= self.allowed[n]
        self.optimizer.step()
        for n, p in self.params.items():
            p.copy_(torch.where(self.allowed[n], p, self.start[n]))
