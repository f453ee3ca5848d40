"""Activations (Chang et al., 2024; seeds/000 App. C): a value vector matters for the forget set
as much as its coefficient promotes it into the residual stream.

    A^l(i) = 1/T Σ_t |h^l_{i,t}| ‖v^l_i‖

averaged over the forget set, with h^l_{i,t} the coefficient of v^l_i at the position that
predicts answer token t (input [p, s_<t]). The scores are standardized within each layer
(z-scores) before the top ``ratio`` of all value vectors is selected across layers: App. C
normalizes "within each layer to enable localization across layers" without saying how
(docs/decisions.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from unloc.localizers import LOCALIZERS, Localization, LocalizerInputs
from unloc.localizers.attribution import (
    mean_activation_magnitudes,
    standardize_per_layer,
    top_ratio_mask,
    value_vector_norms,
)
from unloc.registry import setting


@dataclass(frozen=True)
class ActivationsSettings:
    batch_size: int = setting(16, "forget examples per forward pass", minimum=1)


def activation_scores(model, forget, pad_id: int, batch_size: int, device="cpu"):
    """Raw A^l(i) per layer ([d_ff] each): mean |coefficient| over answer positions × ‖v_i‖."""
    magnitudes = mean_activation_magnitudes(model, forget, pad_id, batch_size, device)
    norms = value_vector_norms(model)
    return {layer: magnitudes[layer] * norms[layer] for layer in magnitudes}


@LOCALIZERS.register("activations", settings=ActivationsSettings, needs=("weights", "forget"), scores=True,
                     seeded=False)
def activations(inputs: LocalizerInputs, settings: ActivationsSettings, ratio: float, seed: int) -> Localization:
    """The value vectors most strongly activated on the forget answers, weighted by their norm
    (seeds/000 App. C); deterministic, so the seed only labels the mask."""
    raw = activation_scores(inputs.model, inputs.sets["forget"], inputs.pad_id, settings.batch_size, inputs.device)
    scores = standardize_per_layer(raw)
    return Localization(top_ratio_mask(scores, ratio, "columns"), scores, {"raw_scores": raw})
