"""What the attribution localizers share: batching a role's examples, set-level gradients of the
down projections, activation coefficients, and selecting the top ``ratio`` of scored entries.

The value vector v_i of layer l is column i of that layer's ``mlp.down_proj.weight``
([d_model, d_ff]); its activation coefficient h_i is entry i of the down projection's input.
Every score is computed in fp32 with the model in eval mode (no dropout), so a localizer's
output depends only on the model, the examples and its settings.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from unloc.data.collate import IGNORE, Encoded, collate
from unloc.masks import Mask, n_selected
from unloc.models import decoder_layers, down_proj
from unloc.scoring import batch_token_logprobs

Relabel = Callable[[dict, int], torch.Tensor]  # (batch, batch number) -> labels to score instead


def batches(examples: list[Encoded], pad_id: int, batch_size: int, device) -> Iterator[dict]:
    """The examples in file order, ``batch_size`` at a time, on ``device``."""
    for start in range(0, len(examples), batch_size):
        batch = collate(examples[start:start + batch_size], pad_id)
        yield {k: v.to(device) for k, v in batch.items()}


def scored_tokens(examples: list[Encoded]) -> int:
    """Answer tokens (answer + EOS) the NLL of these examples averages over."""
    return sum(sum(1 for label in e.labels if label != IGNORE) for e in examples)


@contextlib.contextmanager
def down_proj_gradients_only(model):
    """Gradients for the down projections' weights alone (the rest of the model is only passed
    through), restored afterwards; the weights' own .grad is left as it was."""
    params = list(model.parameters())
    before = [p.requires_grad for p in params]
    weights = [down_proj(model, layer).weight for layer in range(len(decoder_layers(model)))]
    saved = [w.grad for w in weights]
    try:
        for p in params:
            p.requires_grad_(False)
        for w in weights:
            w.requires_grad_(True)
            w.grad = None
        yield weights
    finally:
        for w, g in zip(weights, saved):
            w.grad = g
        for p, flag in zip(params, before):
            p.requires_grad_(flag)


def set_gradient(model, examples: list[Encoded], pad_id: int, batch_size: int, device,
                 relabel: Relabel | None = None) -> dict[int, torch.Tensor]:
    """∇ of the token-mean answer NLL over the whole set, for each layer's down_proj weight.

    The gradient of one loss over every answer token of the set, accumulated batch by batch
    (each batch's summed NLL divided by the set's token count), so it does not depend on the
    batch size up to float rounding. ``relabel`` scores other labels (MemFlex's random ones) in
    place of the answers.
    """
    model.eval()
    total = scored_tokens(examples)
    if total == 0:
        raise ValueError("no answer tokens to take the gradient of")
    with down_proj_gradients_only(model) as weights:
        for number, batch in enumerate(batches(examples, pad_id, batch_size, device)):
            if relabel is not None:
                batch = {**batch, "labels": relabel(batch, number)}
            logp, _ = batch_token_logprobs(model, batch)
            (-logp.sum() / total).backward()
        return {layer: w.grad.detach().clone() for layer, w in enumerate(weights)}


@torch.no_grad()
def mean_activation_magnitudes(model, examples: list[Encoded], pad_id: int, batch_size: int,
                               device) -> dict[int, torch.Tensor]:
    """Per layer, the mean over examples of the mean |h_i| over the positions that predict an
    answer token (the answer's T tokens and its EOS: inputs [p, s_<t]); [d_ff] each."""
    model.eval()
    layers = range(len(decoder_layers(model)))
    sums = {layer: torch.zeros(down_proj(model, layer).in_features, dtype=torch.float64) for layer in layers}
    captured: dict[int, torch.Tensor] = {}
    hooks = [down_proj(model, layer).register_forward_pre_hook(
        lambda module, args, layer=layer: captured.__setitem__(layer, args[0].detach())) for layer in layers]
    try:
        for batch in batches(examples, pad_id, batch_size, device):
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            # position t predicts token t + 1: the positions whose next label is an answer token
            predicts = torch.zeros_like(batch["labels"], dtype=torch.bool)
            predicts[:, :-1] = batch["labels"][:, 1:] != IGNORE
            weight = predicts.double() / predicts.sum(1, keepdim=True).clamp(min=1)  # per-example mean
            for layer, h in captured.items():
                sums[layer] += torch.einsum("bt,btf->f", weight, h.abs().double()).cpu()
    finally:
        for hook in hooks:
            hook.remove()
    return {layer: (s / len(examples)).float() for layer, s in sums.items()}


def value_vector_norms(model) -> dict[int, torch.Tensor]:
    """‖v_i‖ of every value vector, per layer ([d_ff] each)."""
    return {layer: down_proj(model, layer).weight.detach().float().norm(dim=0).cpu()
            for layer in range(len(decoder_layers(model)))}


def top_ratio_mask(scores: dict[int, torch.Tensor], ratio: float, granularity: str) -> Mask:
    """The ``ratio`` of all entries with the highest scores, over all layers together; ties go
    to the entry that comes first (layer, then index), so the mask is a function of the scores."""
    layers = sorted(scores)
    flat = torch.stack([scores[layer].float() for layer in layers]).reshape(-1)
    if torch.isnan(flat).any():
        raise ValueError("a score is NaN: the mask would depend on where NaN sorts")
    k = n_selected(flat.numel(), ratio)
    order = torch.sort(flat, descending=True, stable=True).indices
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    chosen[order[:k]] = True
    chosen = chosen.reshape(len(layers), *scores[layers[0]].shape)
    return Mask({layer: chosen[i].clone() for i, layer in enumerate(layers)}, granularity)


def standardize_per_layer(scores: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """Each layer's scores as z-scores (mean 0, std 1 within the layer; a constant layer scores 0),
    so that a layer whose scores are larger overall does not take the whole selection."""
    out = {}
    for layer, s in scores.items():
        s = s.double()
        std = s.std(unbiased=False)
        out[layer] = ((s - s.mean()) / std if std > 0 else torch.zeros_like(s)).float()
    return out
