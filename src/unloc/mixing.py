"""Model mixing: θ(α) = (1 - α) θo + α θu (seeds/000 App. B).

θu - θo is nonzero only on the masked value vectors, so θ(α) = θo + α (θu - θo) differs
from θo only there. ``ColumnMixer`` keeps one copy of θo and rewrites just those columns for
each α, instead of interpolating two full state dicts.
"""

from __future__ import annotations

import torch

from unloc.models import check_columns_fit, down_proj


class ColumnMixer:
    """Switch a θo model to θ(α) in place by rewriting only the delta's columns."""

    def __init__(self, model, delta):
        self.model = model
        self.columns = []
        for layer, (idx, values) in delta.columns.items():
            check_columns_fit(model, layer, idx, values.shape[0])
            weight = down_proj(model, layer).weight
            idx = idx.to(weight.device)
            self.columns.append((weight, idx, weight[:, idx].detach().clone(), values.to(weight.device, torch.float32)))

    @torch.no_grad()
    def set_alpha(self, alpha: float) -> None:
        for weight, idx, base, values in self.columns:
            weight[:, idx] = (base.float() + alpha * values).to(weight.dtype)


@torch.no_grad()
def interpolate_state_dicts(theta_o: dict, theta_u: dict, alpha: float) -> dict:
    """The full-model baseline: (1 - α) θo + α θu over every tensor."""
    return {k: torch.lerp(v.float(), theta_u[k].float(), alpha).to(v.dtype) for k, v in theta_o.items()}


def alpha_grid(n_points: int) -> list[float]:
    """α = 0, 1/(n-1), ..., 1 (the paper's 0, 0.05, ..., 1 for n = 21)."""
    return [round(i / (n_points - 1), 10) for i in range(n_points)]
