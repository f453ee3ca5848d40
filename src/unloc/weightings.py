"""Weightings: WME's parameter-wise weights of a negated task vector.

WME ("Parameter-wise Weighted Model Editing for Efficient and Retentive LLM Unlearning") edits
the model fine-tuned on all data, θ_full, with the task vector of the forget set,
τ = θ_fgt − θ_0 (θ_0 the original model, θ_fgt θ_0 fine-tuned on the forget set only)::

    θ_final = θ_full + W ⊙ (−τ)

W has the shape of each parameter and entries in [0, 1]; an entry near 1 removes what the
forget set taught that weight, one near 0 keeps θ_full's value. Each entry of ``WEIGHTINGS``
computes W as ``fn(settings, task_vector, g_f, g_r) -> {name: W}``, in float32, for every name
of the task vector. ``g_f`` and ``g_r`` are the set-level gradients ∇L(D_f; θ_0) and
∇L(D_r; θ_0), one tensor per parameter name; only the weightings whose spec says
``uses_gradients`` (grad, fisher, tau, softmax) read them, the others (tv, weighted, random,
pruning) take None. ``task_vector`` and ``edit`` compute τ and θ_final.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

import torch

from unloc.registry import Registry, Spec, setting

Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True, kw_only=True)
class WeightingSpec(Spec):
    """``fn`` is ``fn(settings, task_vector, g_f, g_r) -> {name: W}``; ``uses_gradients`` says it
    reads the set-level gradients g_f and g_r (the others accept None for both)."""

    uses_gradients: bool = False


WEIGHTINGS: Registry[WeightingSpec] = Registry("weighting", WeightingSpec)


# --------------------------------------------------------------------------- settings


def _eps_setting():
    # one Field per class: dataclasses bind a field object to the class that declares it
    return setting(1e-12, "ε added to both sides of the ratio, so that an entry with no gradient on either set "
                          "gets 0.5 (the paper does not give it)", exclusive_minimum=0)


@dataclass(frozen=True)
class WeightedSettings:
    omega: float = setting(0.5, "ω: the weight of every entry", minimum=0, maximum=1)


@dataclass(frozen=True)
class GradSettings:
    eps: float = _eps_setting()


@dataclass(frozen=True)
class FisherSettings:
    eps: float = _eps_setting()
    empirical: bool = setting(False, "g_f and g_r are already empirical Fishers (means of squared per-example "
                                     "gradients, non-negative) and are used as they are, not squared")


@dataclass(frozen=True)
class TauSettings:
    tau: float = setting(help="τ: the power of |g| (1: grad, 2: fisher, 0: 0.5 everywhere)", minimum=0)
    eps: float = _eps_setting()


@dataclass(frozen=True)
class RandomSettings:
    seed: int = setting(0, "seed of the generator that draws W")


@dataclass(frozen=True)
class PruningSettings:
    percent: float = setting(0.5, "the percentage of all entries, those of smallest |τ| over every parameter "
                                  "together, whose weight is 0 (the paper's λ = 0.5, read as 0.5%)",
                             minimum=0, maximum=100)


# --------------------------------------------------------------------------- shared pieces


def _constant(task_vector: Mapping[str, torch.Tensor], value: float) -> Tensors:
    return {name: torch.full_like(t, value, dtype=torch.float32) for name, t in task_vector.items()}


def _check_gradients(weighting: str, task_vector: Mapping[str, torch.Tensor], g_f, g_r) -> None:
    """Both gradients given, with every parameter of the task vector at its shape."""
    for which, gradients in (("g_f", g_f), ("g_r", g_r)):
        if gradients is None:
            raise ValueError(f"weighting {weighting!r} reads the set-level gradients, but {which} is None")
        missing = [name for name in task_vector if name not in gradients]
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise ValueError(f"weighting {weighting!r}: {which} lacks parameter(s) "
                             f"{', '.join(map(repr, missing[:3]))}{more} of the task vector")
        for name, t in task_vector.items():
            if gradients[name].shape != t.shape:
                raise ValueError(f"weighting {weighting!r}: {which}[{name!r}] has shape "
                                 f"{tuple(gradients[name].shape)}, the task vector's is {tuple(t.shape)}")


def _elementwise(weighting: str, task_vector: Mapping[str, torch.Tensor], g_f, g_r,
                 fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Tensors:
    """W[name] = fn(g_f[name], g_r[name]) in float32 for every name of the task vector."""
    _check_gradients(weighting, task_vector, g_f, g_r)
    return {name: fn(g_f[name].float(), g_r[name].float()) for name in task_vector}


def _share(a: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    """(a + ε) / (a + b + 2ε) for non-negative a, b, written so that a = b gives exactly 0.5."""
    a = a + eps
    return a / (a + (b + eps))


def _magnitude_share(g_f: torch.Tensor, g_r: torch.Tensor, power: float, eps: float) -> torch.Tensor:
    # grad, fisher and tau all go through here, so tau at 1 and 2 matches them bit for bit
    return _share(g_f.abs() ** power, g_r.abs() ** power, eps)


def _zero_count(percent: float, n: int) -> int:
    """floor(percent/100 · n), with percent as written in the config (0.29, not its binary neighbour
    0.28999…, which would round 29 of 10,000 entries down to 28)."""
    return math.floor(Decimal(repr(percent)) * n / 100)


def _keep_all_but_smallest(magnitudes: Mapping[str, torch.Tensor], count: int) -> Tensors:
    """0 for the ``count`` smallest entries over all tensors together, 1 elsewhere (float32).

    Ties at the threshold are broken as a stable sort of the flattened tensors, concatenated in
    sorted name order, would break them: the earliest go first. Only the threshold is found on
    the concatenation (k-th value: no sort, no int64 index of every entry); the rest goes tensor
    by tensor.
    """
    names = sorted(magnitudes)
    if count == 0:
        return {name: torch.ones_like(magnitudes[name]) for name in names}
    threshold = torch.cat([magnitudes[name].flatten() for name in names]).kthvalue(count).values
    ties_to_zero = count - sum(int((magnitudes[name] < threshold).sum()) for name in names)
    keep = {}
    for name in names:
        m = magnitudes[name]
        zero = (m < threshold).flatten()
        if ties_to_zero > 0:
            ties = (m == threshold).flatten().nonzero().squeeze(1)[:ties_to_zero]
            zero[ties] = True
            ties_to_zero -= len(ties)
        keep[name] = (~zero).to(torch.float32).view_as(m)
    return keep


# --------------------------------------------------------------------------- weightings


@WEIGHTINGS.register("tv")
def tv(settings, task_vector: Tensors, g_f: Tensors | None, g_r: Tensors | None) -> Tensors:
    """Task-vector negation: W = 1, the whole forget task vector is subtracted."""
    return _constant(task_vector, 1.0)


@WEIGHTINGS.register("weighted", settings=WeightedSettings)
def weighted(settings: WeightedSettings, task_vector: Tensors, g_f: Tensors | None, g_r: Tensors | None) -> Tensors:
    """W = ω for every entry: a scaled task-vector negation."""
    return _constant(task_vector, settings.omega)


@WEIGHTINGS.register("grad", settings=GradSettings, uses_gradients=True)
def grad(settings: GradSettings, task_vector: Tensors, g_f: Tensors | None, g_r: Tensors | None) -> Tensors:
    """Gradient ratio (WME eq. 4): W = (|g_f| + ε) / (|g_r| + |g_f| + 2ε)."""
    return _elementwise("grad", task_vector, g_f, g_r, lambda f, r: _magnitude_share(f, r, 1, settings.eps))


@WEIGHTINGS.register("fisher", settings=FisherSettings, uses_gradients=True)
def fisher(settings: FisherSettings, task_vector: Tensors, g_f: Tensors | None, g_r: Tensors | None) -> Tensors:
    """Fisher ratio (WME eq. 5): W = (g_f² + ε) / (g_r² + g_f² + 2ε) on the set-level gradients; with
    ``empirical``, g_f and g_r are already empirical Fishers and take the place of g_f² and g_r²."""
    if not settings.empirical:
        return _elementwise("fisher", task_vector, g_f, g_r, lambda f, r: _magnitude_share(f, r, 2, settings.eps))

    def empirical_share(f: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        # abs() would hide raw gradients passed by mistake; a mean of squares is never negative
        if (f < 0).any() or (r < 0).any():
            raise ValueError("weighting 'fisher' with empirical: true reads empirical Fishers, "
                             "but g_f or g_r has negative entries")
        return _magnitude_share(f, r, 1, settings.eps)

    return _elementwise("fisher", task_vector, g_f, g_r, empirical_share)


@WEIGHTINGS.register("tau", settings=TauSettings, uses_gradients=True)
def tau(settings: TauSettings, task_vector: Tensors, g_f: Tensors | None, g_r: Tensors | None) -> Tensors:
    """General power ratio: W = (|g_f|^τ + ε) / (|g_f|^τ + |g_r|^τ + 2ε); τ = 1 is grad, τ = 2 fisher."""
    return _elementwise("tau", task_vector, g_f, g_r,
                        lambda f, r: _magnitude_share(f, r, settings.tau, settings.eps))


@WEIGHTINGS.register("softmax", uses_gradients=True)
def softmax(settings, task_vector: Tensors, g_f: Tensors | None, g_r: Tensors | None) -> Tensors:
    """Softmax of the magnitudes: W = exp(|g_f|) / (exp(|g_f|) + exp(|g_r|)) = sigmoid(|g_f| − |g_r|)."""
    # the sigmoid form never forms exp(|g|), which overflows float32 beyond |g| ≈ 88
    return _elementwise("softmax", task_vector, g_f, g_r, lambda f, r: torch.sigmoid(f.abs() - r.abs()))


@WEIGHTINGS.register("random", settings=RandomSettings)
def random(settings: RandomSettings, task_vector: Tensors, g_f: Tensors | None, g_r: Tensors | None) -> Tensors:
    """W ~ Uniform[0, 1) per entry, drawn from a generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(settings.seed)
    # sorted names and a CPU generator: W depends on the seed and the shapes only, not on the
    # order of the dict or the device
    drawn = {name: torch.rand(task_vector[name].shape, generator=generator, dtype=torch.float32)
             for name in sorted(task_vector)}
    return {name: drawn[name].to(t.device) for name, t in task_vector.items()}


@WEIGHTINGS.register("pruning", settings=PruningSettings)
def pruning(settings: PruningSettings, task_vector: Tensors, g_f: Tensors | None, g_r: Tensors | None) -> Tensors:
    """Magnitude pruning of the task vector: W = 0 for the ``percent``% of entries with the smallest
    |τ|, over all parameters together (one global threshold), W = 1 elsewhere."""
    magnitudes = {name: t.float().abs() for name, t in task_vector.items()}
    count = _zero_count(settings.percent, sum(m.numel() for m in magnitudes.values()))
    keep = _keep_all_but_smallest(magnitudes, count)
    return {name: keep[name] for name in task_vector}


# --------------------------------------------------------------------------- the edit


def task_vector(theta_fgt: Mapping[str, torch.Tensor], theta_0: Mapping[str, torch.Tensor]) -> Tensors:
    """τ = θ_fgt − θ_0 in float32 for every floating-point tensor of θ_fgt (integer buffers are skipped)."""
    out = {}
    for name, fgt in theta_fgt.items():
        if not fgt.is_floating_point():
            continue
        if name not in theta_0:
            raise ValueError(f"task vector: parameter {name!r} of θ_fgt is missing from θ_0")
        if theta_0[name].shape != fgt.shape:
            raise ValueError(f"task vector: parameter {name!r} has shape {tuple(fgt.shape)} in θ_fgt, "
                             f"{tuple(theta_0[name].shape)} in θ_0")
        out[name] = fgt.float() - theta_0[name].float()
    return out


def edit(theta_full: Mapping[str, torch.Tensor], theta_fgt: Mapping[str, torch.Tensor],
         theta_0: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor]) -> Tensors:
    """θ_final = θ_full + W ⊙ (−(θ_fgt − θ_0)) for every name of ``weights``, computed in float32 and
    returned in θ_full's dtype; every other tensor of θ_full is passed on as it is (not copied)."""
    stray = [name for name in weights if name not in theta_full]
    if stray:
        raise ValueError(f"edit: weights name parameter(s) {', '.join(map(repr, stray))} that θ_full lacks")
    out = {}
    for name, full in theta_full.items():
        if name not in weights:
            out[name] = full
            continue
        for model, state in (("θ_fgt", theta_fgt), ("θ_0", theta_0)):
            if name not in state:
                raise ValueError(f"edit: parameter {name!r} is missing from {model}")
        for model, state in (("θ_fgt", theta_fgt), ("θ_0", theta_0), ("W", weights)):
            if state[name].shape != full.shape:
                raise ValueError(f"edit: parameter {name!r} has shape {tuple(state[name].shape)} in {model}, "
                                 f"{tuple(full.shape)} in θ_full")
        forget_direction = theta_fgt[name].float() - theta_0[name].float()
        out[name] = (full.float() - weights[name].float() * forget_direction).to(full.dtype)
    return out
