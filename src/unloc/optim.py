"""Optimizers for the training loop (train.py), and the learning-rate schedules.

* ``adamw``: torch's AdamW with decoupled weight decay.
* ``sophia``: SIMU's Sophia-style second-order update (``Sophia``): a clipped step of the
  gradient's running average over a running diagonal Hessian estimate, the estimate being either
  the running average of squared gradients (SIMU's eq. 4 as printed) or Sophia's Gauss-Newton-Bartlett
  estimate, refreshed every k steps by the ``second_order`` hook ``sophia_gnb_refresh``.

Masked stages hand the optimizer only the gathered masked entries (models.MaskedDownProj), so
an element-wise optimizer over those (AdamW, Sophia) is exactly the full-parameter optimizer
restricted to the mask, decoupled weight decay included, with state for the mask alone (SIMU's
eqs. 5-7: moments, Hessian estimate and parameters updated only inside the mask).
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
from typing import Literal

import torch
import torch.nn.functional as F

from unloc.data.collate import IGNORE
from unloc.registry import ConfigError, Registry, Spec, setting
from unloc.scoring import batch_logits


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


@dataclass(frozen=True)
class SophiaSettings:
    """SIMU's Sophia-style update (eqs. 3-4). SIMU gives none of these values; the defaults are the
    Sophia paper's (Liu et al. 2023)."""

    betas: tuple[float, float] = setting(
        (0.965, 0.99), "β1, β2: coefficients of the running averages of the gradient and of the Hessian "
                       "estimate (Sophia's defaults; SIMU does not give them)")
    gamma: float = setting(0.01, "γ of eq. 3 (Sophia's ρ): the step is clip(m / max(γ·H, ε), 1) "
                                 "(Sophia's default; SIMU does not give it)", exclusive_minimum=0)
    eps: float = setting(1e-12, "ε of eq. 3, the floor of the denominator γ·H (Sophia's default; SIMU does "
                                "not give it)", exclusive_minimum=0)
    hessian: Literal["ema_grad_squared", "gnb"] = setting(
        "ema_grad_squared", "the diagonal Hessian estimate H: ema_grad_squared, the running average of "
                            "squared gradients updated every step (eq. 4 as SIMU prints it), or gnb, Sophia's "
                            "Gauss-Newton-Bartlett estimate refreshed every hessian_every steps (on the model "
                            "the training loop attaches to the optimizer)")
    hessian_every: int = setting(10, "k: gnb refreshes H on the steps divisible by k (Sophia's default; SIMU "
                                     "does not give it); unused by ema_grad_squared", minimum=1)
    seed: int = setting(0, "seed of the labels gnb samples from the model's own predictions", minimum=0)

    def __post_init__(self):
        if len(self.betas) != 2 or not all(0 <= beta < 1 for beta in self.betas):
            raise ConfigError(f"betas: expected two coefficients in [0, 1), got {list(self.betas)}")


class Sophia(torch.optim.Optimizer):
    """SIMU's Sophia-style update (eqs. 3-4), per tensor and element-wise:

        m ← β1·m + (1−β1)·g
        H ← β2·H + (1−β2)·g²                  (hessian: ema_grad_squared, every step)
        θ ← θ − lr·wd·θ                        (decoupled weight decay, as AdamW and Sophia)
        θ ← θ − lr·clip(m / max(γ·H, ε), 1)    (clip element-wise to [−1, 1])

    State per parameter: ``exp_avg`` (m) and ``hessian`` (H), in fp32 (fp64 for fp64 parameters).
    With ``hessian: gnb`` the step leaves H alone and ``sophia_gnb_refresh`` refreshes it; that
    estimate needs the model, which the training loop (train.train) attaches as ``optimizer.model``.
    """

    def __init__(self, params, lr: float, weight_decay: float = 0.0, settings: SophiaSettings = SophiaSettings()):
        if lr < 0:
            raise ValueError(f"Sophia: the learning rate must be >= 0, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"Sophia: the weight decay must be >= 0, got {weight_decay}")
        defaults = {"lr": lr, "weight_decay": weight_decay, "betas": tuple(settings.betas),
                    "gamma": settings.gamma, "eps": settings.eps}
        super().__init__(params, defaults)
        self.settings = settings
        self.model: torch.nn.Module | None = None

    def state_of(self, p: torch.Tensor) -> dict:
        """The state of ``p``, zeros on first use (the GNB refresh may come before any step)."""
        state = self.state[p]
        if not state:
            dtype = torch.promote_types(p.dtype, torch.float32)
            state["exp_avg"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
            state["hessian"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
        return state

    def parameters(self) -> list[torch.Tensor]:
        """Every parameter of every group, in group order."""
        return [p for group in self.param_groups for p in group["params"]]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, gamma, eps = group["lr"], group["gamma"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Sophia does not take sparse gradients")
                state = self.state_of(p)
                exp_avg, hessian = state["exp_avg"], state["hessian"]
                grad = p.grad.to(exp_avg.dtype)
                # One rounding per operation, never a fused multiply-add: a vectorised kernel may fuse
                # where its scalar tail does not, and an entry's bits must not depend on where it sits
                # in its tensor (gathered masked entries vs the full weight).
                exp_avg.mul_(beta1).add_(grad * (1 - beta1))
                if self.settings.hessian == "ema_grad_squared":
                    hessian.mul_(beta2).add_(grad * grad * (1 - beta2))
                p.mul_(1 - lr * group["weight_decay"])
                update = (exp_avg / (hessian * gamma).clamp(min=eps)).clamp(-1, 1)
                p.sub_((update * lr).to(p.dtype))
        return loss


# Sub-batches the GNB estimate samples labels on, where the step's batch has them: the training
# loop's main set (fine-tuning), or an unlearning step's forget batch and the retain batch beside it.
GNB_SUB_BATCHES = ("main", "forget", "retain")


def sampled_label_gradient(model, sub_batches: list[dict], params: list[torch.Tensor],
                           generator: torch.Generator) -> tuple[list[torch.Tensor], int]:
    """ĝ and B of Sophia's GNB estimate: the gradient w.r.t. ``params`` of the mean cross-entropy of
    labels sampled from the model's own next-token distribution at every scored position (labels not
    IGNORE), pooled over ``sub_batches``; and B, the number of those positions."""
    logits = []
    for sub in sub_batches:
        scored = sub["labels"][:, 1:] != IGNORE
        logits.append(batch_logits(model, sub)[:, :-1][scored])
    logits = torch.cat(logits).float()
    if len(logits) == 0:
        return [], 0
    with torch.no_grad():
        sampled = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(1)
    loss = F.cross_entropy(logits, sampled)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    # a parameter the loss does not reach has a zero gradient
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)], len(sampled)


def sophia_gnb_refresh(optimizer: Sophia, loss_fn, batch: dict, step: int) -> None:
    """Sophia's second-order hook: with ``hessian: gnb``, on the steps divisible by ``hessian_every``,
    H ← β2·H + (1−β2)·B·ĝ² (Gauss-Newton-Bartlett; ``sampled_label_gradient`` gives ĝ and B).

    The estimate needs the model's logits on the step's batch, which neither ``loss_fn`` (the
    training loss, not GNB's) nor the batch gives, so it takes the model attached to the optimizer
    (``optimizer.model``) and refuses to run without one. Labels are sampled on the batch's
    ``GNB_SUB_BATCHES`` from a generator seeded with (``seed``, step), so a refresh depends on
    neither the refreshes before it nor the global random state, which it leaves untouched.
    Gradients are taken w.r.t. the optimizer's parameters (in masked stages, the masked entries
    alone) with ``torch.autograd.grad``, which leaves their ``.grad`` as they are.
    """
    settings = optimizer.settings
    if settings.hessian != "gnb" or step % settings.hessian_every != 0:
        return
    if optimizer.model is None:
        raise RuntimeError("Sophia's gnb Hessian estimate needs the model: attach it to the optimizer "
                           "(optimizer.model = model), or choose hessian: ema_grad_squared")
    sub_batches = [batch[name] for name in GNB_SUB_BATCHES if name in batch]
    if not sub_batches:
        raise ValueError(f"Sophia's gnb Hessian estimate samples labels on the sub-batches "
                         f"{', '.join(GNB_SUB_BATCHES)}; the batch has {', '.join(batch) or 'none'}")
    device = sub_batches[0]["input_ids"].device
    generator = torch.Generator(device=device).manual_seed(settings.seed * 1_000_003 + step)
    grads, tokens = sampled_label_gradient(optimizer.model, sub_batches, optimizer.parameters(), generator)
    if tokens == 0:  # no scored position: nothing to estimate H from, keep it
        return
    grads = iter(grads)  # in the order of optimizer.parameters(): group by group
    with torch.no_grad():
        for group in optimizer.param_groups:
            beta2 = group["betas"][1]
            for p in group["params"]:
                hessian = optimizer.state_of(p)["hessian"]
                g = next(grads).to(hessian.dtype)
                hessian.mul_(beta2).add_(g * g * ((1 - beta2) * tokens))


@OPTIMIZERS.register("sophia", settings=SophiaSettings, second_order=sophia_gnb_refresh)
def sophia(params, lr: float, weight_decay: float, settings: SophiaSettings = SophiaSettings()) -> Sophia:
    """SIMU's Sophia-style update: a clipped step of the gradient's running average over a diagonal
    Hessian estimate (eqs. 3-4), with decoupled weight decay (``Sophia``)."""
    return Sophia(params, lr, weight_decay, settings)


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
