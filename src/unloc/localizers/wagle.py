"""WAGLE (Jia et al., 2024; seeds/000 App. C and App. E): weight attribution for forgetting,
penalised by interference with retention.

Per weight j of a down projection, at the model θ being localized in,

    S_j = θ_j [∇L_f(θ)]_j − (1/γ) [∇L_r(θ)]_j [∇L_f(θ)]_j,

with L_f, L_r the token-mean answer NLL over the whole forget and retain sets, and γ the average
diagonal Hessian over the retain set. γ is estimated by the diagonal of the empirical Fisher
(Gauss-Newton) of the retain NLL: the mean over ``hessian_items`` retain examples (evenly spaced
through the set) of each example's squared gradient, averaged over every down_proj weight. This
is the usual positive estimate of a log-likelihood's diagonal Hessian and, unlike a Hutchinson
estimate, cannot come out negative or zero by noise (docs/decisions.md). ``gamma`` sets it as a
value instead. With the estimate, 1/γ is large (squared gradients are small), so the retention
term dominates the score: on the embedded default it is 380-670 times the θ·g_f term.

* ``wagle``: the score of value vector v_i is the mean of S_j over its d_model weights
  (seeds/000's reformulation, Tables 1, 3, 4);
* ``wagle_weights``: WAGLE's own per-weight localization, the top ``ratio`` of single weights
  (an elements mask; Table 5 uses 80%).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unloc.localizers import LOCALIZERS, Localization, LocalizerInputs
from unloc.localizers.attribution import batches, down_proj_gradients_only, set_gradient, top_ratio_mask
from unloc.models import down_proj
from unloc.registry import setting
from unloc.scoring import answer_nll


@dataclass(frozen=True)
class WagleSettings:
    batch_size: int = setting(16, "examples per backward pass of the set-level gradients", minimum=1)
    hessian_items: int = setting(128, "retain examples the diagonal Hessian γ is estimated on (evenly spaced; "
                                      "all of them when the set is smaller)", minimum=1)
    gamma: float | None = setting(None, "γ as a value instead of the estimate (null: estimated on the retain set)",
                                  exclusive_minimum=0)


def wagle_weight_scores(theta: torch.Tensor, g_forget: torch.Tensor, g_retain: torch.Tensor,
                        gamma: float) -> torch.Tensor:
    """S = θ ⊙ g_f − (g_r ⊙ g_f) / γ, elementwise."""
    return theta * g_forget - g_retain * g_forget / gamma


def evenly_spaced(examples: list, n: int) -> list:
    """``n`` of ``examples`` spread evenly over the list (all of them when there are fewer)."""
    if n >= len(examples):
        return list(examples)
    return [examples[(i * len(examples)) // n] for i in range(n)]


def diagonal_fisher_mean(model, examples, pad_id: int, device) -> float:
    """γ: the mean over examples and over every down_proj weight of the squared per-example
    gradient of its answer NLL (the empirical Fisher's diagonal, averaged)."""
    model.eval()
    total, count = 0.0, 0
    with down_proj_gradients_only(model) as weights:
        for batch in batches(examples, pad_id, 1, device):
            grads = torch.autograd.grad(answer_nll(model, batch), weights)
            total += float(sum(g.double().pow(2).sum() for g in grads))
            count += 1
        n_weights = sum(w.numel() for w in weights)
    return total / (count * n_weights)


def wagle_scores(model, forget, retain, pad_id: int, settings: WagleSettings, device="cpu"):
    """Per layer, S_j of every down_proj weight ([d_model, d_ff]) and the γ used."""
    g_f = set_gradient(model, forget, pad_id, settings.batch_size, device)
    g_r = set_gradient(model, retain, pad_id, settings.batch_size, device)
    gamma = settings.gamma
    if gamma is None:
        gamma = diagonal_fisher_mean(model, evenly_spaced(retain, settings.hessian_items), pad_id, device)
    if not gamma > 0:
        raise ValueError(f"wagle: the retain set's diagonal Hessian estimate is {gamma}: its gradients are all zero")
    scores = {layer: wagle_weight_scores(down_proj(model, layer).weight.detach(), g_f[layer], g_r[layer], gamma).cpu()
              for layer in g_f}
    return scores, gamma


@LOCALIZERS.register("wagle", label="WAGLE", settings=WagleSettings, needs=("weights", "forget", "retain"),
                     scores=True, seeded=False)
def wagle(inputs: LocalizerInputs, settings: WagleSettings, ratio: float, seed: int) -> Localization:
    """The value vectors with the highest mean WAGLE weight score (seeds/000's per-vector
    reformulation); deterministic, so the seed only labels the mask."""
    return _select(inputs, settings, ratio, "columns")


@LOCALIZERS.register("wagle_weights", label="WAGLE (per weight)", settings=WagleSettings,
                     needs=("weights", "forget", "retain"), scores=True, seeded=False, granularity="elements")
def wagle_weights(inputs: LocalizerInputs, settings: WagleSettings, ratio: float, seed: int) -> Localization:
    """WAGLE's own localization: the top ``ratio`` of single down_proj weights by score
    (seeds/000 App. E, Table 5)."""
    return _select(inputs, settings, ratio, "elements")


def _select(inputs: LocalizerInputs, settings: WagleSettings, ratio: float, granularity: str) -> Localization:
    """The top ``ratio`` of single weights (elements) or of value vectors by their mean weight score (columns)."""
    scores, gamma = wagle_scores(inputs.model, inputs.sets["forget"], inputs.sets["retain"], inputs.pad_id, settings,
                                 inputs.device)
    if granularity == "columns":
        scores = {layer: s.mean(dim=0) for layer, s in scores.items()}
    mask = top_ratio_mask(scores, ratio, granularity)
    mask.metadata["gamma"] = gamma
    return Localization(mask, scores)
