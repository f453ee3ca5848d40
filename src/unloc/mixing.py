"""Model mixing: θ(α) = (1 - α) θo + α θu (seeds/000 App. B; seeds/001's UWC over whole models).

θu - θo is nonzero only on the masked entries, so θ(α) = θo + α (θu - θo) differs from θo
only there. ``DeltaMixer`` keeps one copy of θo and rewrites just those entries for each α,
instead of interpolating two full state dicts.
"""

from __future__ import annotations

import torch

from unloc.models import assign, check_fits, down_proj, gather


class DeltaMixer:
    """Switch a θo model to θ(α) in place by rewriting only the delta's entries."""

    def __init__(self, model, delta):
        self.model, self.granularity = model, delta.granularity
        self.entries = []
        for layer, (idx, values) in delta.layers.items():
            check_fits(model, layer, delta.granularity, idx, values.shape)
            weight = down_proj(model, layer).weight
            idx = idx.to(weight.device)
            base = gather(weight, delta.granularity, idx).detach().clone()
            self.entries.append((weight, idx, base, values.to(weight.device, torch.float32)))

    @torch.no_grad()
    def set_alpha(self, alpha: float) -> None:
        for weight, idx, base, values in self.entries:
            assign(weight, self.granularity, idx, (base.float() + alpha * values).to(weight.dtype))


class FullMixer:
    """Switch a θ_before model to θ(α) = θ_before + α (θu - θ_before) in place, over every
    parameter (seeds/001's UWC mixes whole models: its unlearning touches them all).

    Keeps both models in fp32 on the host, so that the accelerator holds the mixed model alone (a
    7B model's two fp32 copies would not fit beside it), and mixes one tensor at a time on the
    model's device with ``torch.lerp``, which is exact at both ends: α = 0 gives θ_before and
    α = 1 gives θu bit for bit."""

    def __init__(self, model, theta_u: dict[str, torch.Tensor]):
        params = dict(model.named_parameters())
        if set(params) - set(theta_u):
            missing = sorted(set(params) - set(theta_u))[:3]
            raise ValueError(f"θu lacks parameters of the model it is mixed into: {', '.join(missing)}")
        self.entries = []
        for name, param in params.items():
            other = theta_u[name]
            if other.shape != param.shape:
                raise ValueError(f"{name}: θu's shape {tuple(other.shape)} differs from {tuple(param.shape)}")
            self.entries.append((param, param.detach().to("cpu", torch.float32, copy=True),
                                 other.to("cpu", torch.float32)))

    @torch.no_grad()
    def set_alpha(self, alpha: float) -> None:
        for param, before, after in self.entries:
            param.copy_(torch.lerp(before.to(param.device), after.to(param.device), alpha).to(param.dtype))


@torch.no_grad()
def interpolate_state_dicts(theta_o: dict, theta_u: dict, alpha: float) -> dict:
    """The full-model baseline: (1 - α) θo + α θu over every tensor."""
    return {k: torch.lerp(v.float(), theta_u[k].float(), alpha).to(v.dtype) for k, v in theta_o.items()}


def alpha_grid(n_points: int) -> list[float]:
    """α = 0, 1/(n-1), ..., 1 (the paper's 0, 0.05, ..., 1 for n = 21)."""
    return [round(i / (n_points - 1), 10) for i in range(n_points)]
