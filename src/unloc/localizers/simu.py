"""SIMU's critical neurons (Selective Influence Machine Unlearning, seeds/003): the output neurons
of the down projections that an integrated-gradients attribution on the forget set (DEPN's
privacy-neuron detector, Wu et al., 2023) finds decisive for the forget answers.

Neuron k of layer l is output coordinate k of that layer's ``mlp.down_proj`` (row k of its
weight, a ``rows`` mask). With β^l_{i,k} its original output on example i and a_j = (j/m)·β the
activation scaled along the straight path from 0, j = 1..m,

    Att(w^k_l) = (1/m) Σ_j Σ_i Σ_t β^l_{i,k,t} · ∂log P_i(a_j)/∂a^l_{j,k,t},

and neuron k is critical when Att(w^k_l) ≥ t · M_l, M_l = max_k Att(w^k_l) > 0 (``threshold`` t).

How the definition is read here:

* **Samples and positions.** An example (a forget QA pair) is the set of its next-token samples:
  each answer token (EOS included) given the prompt and the answer tokens before it, scored in
  one teacher-forced pass. β is the down projection's output at every position that predicts an
  answer token; they are scaled together, the prompt's positions keep their activation, and the
  attribution sums over the positions. log P_i is the example's summed answer log-probability,
  so a neuron's effect on later answer tokens through attention counts too (scoring each answer
  token in a pass of its own would cost one forward per token).
* **Log-probability, not probability.** DEPN integrates ∂P/∂a. P of a multi-token answer is a
  product of token probabilities, so its gradient vanishes with the answer's length and the
  examples the model knows least would weigh nothing; ∂log P/∂a = (1/P) ∂P/∂a gives every
  example the same weight. Either way a neuron whose activation raises the forget answer's
  probability scores positive.
* **All neurons of a layer on one path.** Every coordinate of one layer's output is scaled by
  the same α_j = j/m, so one backward per step gives the attribution of all d_model neurons of
  the layer (integrated gradients of the layer's output as a whole, which by completeness sum
  to log P(β) − log P(0) as m grows). Scaling one neuron at a time, the others at β, would cost
  d_model times more. The layers are attributed one at a time, the others untouched.
* **t = 1.** ``≥`` rather than DEPN's ``>``, so that t = 1 keeps each layer's maximum; a layer
  whose maximum is not positive has no critical neuron (no neuron there supports the answers).
* **Variants** (``mask``). ``dual``: every neuron critical for the forget set, those that are
  critical for the retain set too ("dual" neurons) included. ``forget_only``: the same neurons
  less those critical for the retain set at the same t, so forget_only ⊆ dual and the two differ
  exactly by the dual neurons. The retain set is attributed only for ``forget_only``.
* **Ratio.** The code base sizes every mask by ``ratio`` (Section 3 compares localizers at equal
  size), SIMU by its threshold. As for MemFlex, the threshold defines the region and the ratio
  caps it: when more neurons are critical than ``ratio`` of all rows, those with the highest
  relative attribution Att/M_l are kept (the same as raising t for every layer at once); when
  fewer are, all of them are, and the mask is smaller than the ratio (logged, and recorded in
  the mask's metadata). ``ratio`` 1 gives SIMU's threshold mask as it is.

The model is in eval mode and its parameters are frozen while attributing (their ``.grad`` is
never set); the attribution is computed in the model's dtype (fp32 as the localize stage loads
it) and accumulated in fp64, so it depends only on the model, the examples and the settings.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Literal

import torch

from unloc.data.collate import IGNORE, Encoded
from unloc.localizers import LOCALIZERS, Localization, LocalizerInputs
from unloc.localizers.attribution import batches, top_ratio_mask
from unloc.masks import Mask, n_selected
from unloc.models import decoder_layers
from unloc.registry import setting
from unloc.scoring import batch_token_logprobs

logger = logging.getLogger("unloc")


@dataclass(frozen=True)
class SimuSettings:
    threshold: float = setting(0.3, "t: neuron k of layer l is critical when its attribution is at least t times the "
                                    "layer's largest", exclusive_minimum=0, maximum=1)
    steps: int = setting(5, "m: integration steps from 0 to the original activation", minimum=1)
    batch_size: int = setting(16, "examples per forward and backward pass", minimum=1)
    mask: Literal["dual", "forget_only"] = setting("dual", "dual: the neurons critical for the forget set; "
                                                           "forget_only: less those critical for the retain set too")


def answer_positions(labels: torch.Tensor) -> torch.Tensor:
    """[batch, length] bool: the positions that predict an answer token (position t predicts token t + 1)."""
    predicts = torch.zeros_like(labels, dtype=torch.bool)
    predicts[:, :-1] = labels[:, 1:] != IGNORE
    return predicts


@contextlib.contextmanager
def frozen_parameters(model):
    """No parameter requires grad (the backward stops at the scaled activation), restored afterwards."""
    params = list(model.parameters())
    before = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, before):
            p.requires_grad_(flag)


@dataclass
class ScaledOutput:
    """What one forward pass through a scaled down projection leaves: its original output β and
    the scaled activation α·β at the answer positions, a leaf to take the gradient for."""

    beta: torch.Tensor | None = None
    scaled: torch.Tensor | None = None


@contextlib.contextmanager
def scaled_down_proj(model, layer: int, alpha: float, positions: torch.Tensor):
    """Layer ``layer``'s down projection outputs α·β at ``positions`` (β elsewhere) while inside."""
    captured = ScaledOutput()

    def scale(module, args, output):
        captured.beta = output.detach()
        captured.scaled = (alpha * captured.beta).requires_grad_()
        return torch.where(positions[..., None], captured.scaled, captured.beta)

    # the module the MLP calls, so the hook sees its output whether or not masked training wraps it
    hook = decoder_layers(model)[layer].mlp.down_proj.register_forward_hook(scale)
    try:
        yield captured
    finally:
        hook.remove()


def layer_attribution(model, layer: int, examples: list[Encoded], pad_id: int, steps: int, batch_size: int,
                      device="cpu") -> torch.Tensor:
    """Att(w^k_l) of every output neuron k of one layer ([d_model]): (1/m) Σ_j Σ_i Σ_t β_k ∂log P_i/∂a_{j,k}."""
    total = None
    for batch in batches(examples, pad_id, batch_size, device):
        positions = answer_positions(batch["labels"])
        for j in range(1, steps + 1):
            with scaled_down_proj(model, layer, j / steps, positions) as out:
                logp, _ = batch_token_logprobs(model, batch)
            # the examples of a batch do not interact, so one gradient of the sum holds each one's own
            (grad,) = torch.autograd.grad(logp.sum(), out.scaled)
            step = torch.einsum("bt,btd->d", positions.double(), out.beta.double() * grad.double()).cpu()
            total = step if total is None else total + step
    if total is None:
        raise ValueError("no examples to attribute")
    return (total / steps).float()


def integrated_gradients(model, examples: list[Encoded], pad_id: int, steps: int, batch_size: int,
                         device="cpu") -> dict[int, torch.Tensor]:
    """Per layer, the attribution of every output neuron of its down projection ([d_model] each)."""
    model.eval()
    with frozen_parameters(model), torch.enable_grad():
        return {layer: layer_attribution(model, layer, examples, pad_id, steps, batch_size, device)
                for layer in range(len(decoder_layers(model)))}


def relative_scores(scores: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """Att / M_l per layer (1 at the layer's maximum); 0 throughout a layer whose maximum is not positive."""
    out = {}
    for layer, s in scores.items():
        top = s.max()
        out[layer] = s / top if top > 0 else torch.zeros_like(s)
    return out


def critical_neurons(scores: dict[int, torch.Tensor], threshold: float) -> dict[int, torch.Tensor]:
    """Per layer, the neurons whose attribution is at least ``threshold`` times the layer's positive maximum."""
    return {layer: (s >= threshold) & (s > 0) for layer, s in relative_scores(scores).items()}


def within_ratio(critical: dict[int, torch.Tensor], scores: dict[int, torch.Tensor],
                 ratio: float) -> dict[int, torch.Tensor]:
    """The critical neurons, or, when there are more than ``ratio`` of all, those of them with the
    highest relative attribution (ties to the first layer, then the first row)."""
    total = sum(c.numel() for c in critical.values())
    if sum(int(c.sum()) for c in critical.values()) <= n_selected(total, ratio):
        return {layer: c.clone() for layer, c in critical.items()}
    relative = relative_scores(scores)
    # relative scores of critical neurons are ≥ t > 0, so no other neuron is ever ranked above one
    ranked = {layer: torch.where(critical[layer], relative[layer], torch.tensor(-1.0)) for layer in critical}
    return top_ratio_mask(ranked, ratio, "rows").layers


def simu_mask(forget_scores: dict[int, torch.Tensor], retain_scores: dict[int, torch.Tensor] | None,
              threshold: float, ratio: float) -> Mask:
    """The forget set's critical neurons within the ratio (``dual``), less the retain set's critical
    neurons when ``retain_scores`` are given (``forget_only``)."""
    kept = within_ratio(critical_neurons(forget_scores, threshold), forget_scores, ratio)
    if retain_scores is not None:
        for_retain = critical_neurons(retain_scores, threshold)
        kept = {layer: kept[layer] & ~for_retain[layer] for layer in kept}
    return Mask(kept, "rows")


@LOCALIZERS.register("simu", label="SIMU", settings=SimuSettings, needs=("weights", "forget", "retain"),
                     scores=True, seeded=False, granularity="rows")
def simu(inputs: LocalizerInputs, settings: SimuSettings, ratio: float, seed: int) -> Localization:
    """SIMU's critical neurons: the down_proj output rows whose integrated-gradients attribution on
    the forget answers reaches ``threshold`` of their layer's largest (seeds/003, after DEPN), less
    those critical for the retain set too under ``mask: forget_only``; at most ``ratio`` of all rows.
    Deterministic, so the seed only labels the mask."""
    model, pad_id, device = inputs.model, inputs.pad_id, inputs.device
    attribute = lambda role: integrated_gradients(model, inputs.sets[role], pad_id, settings.steps,
                                                  settings.batch_size, device)
    forget = attribute("forget")
    retain = attribute("retain") if settings.mask == "forget_only" else None
    mask = simu_mask(forget, retain, settings.threshold, ratio)
    critical = sum(int(c.sum()) for c in critical_neurons(forget, settings.threshold).values())
    selected, wanted = mask.count(), n_selected(mask.size(), ratio)
    if selected != wanted:
        logger.warning("simu: %d output neurons selected, not the %d of ratio %g (%d critical for the forget set "
                       "at threshold %g, mask %s)", selected, wanted, ratio, critical, settings.threshold,
                       settings.mask)
    mask.metadata.update({"selected": selected, "critical": critical, "threshold": settings.threshold,
                          "variant": settings.mask})
    details = {"retain_scores": retain} if retain is not None else {}
    return Localization(mask, forget, details)
