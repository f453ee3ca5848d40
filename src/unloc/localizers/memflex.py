"""MemFlex (Tian et al., 2024; seeds/000 App. C): a value vector is selected when the forget set
pulls it somewhere the retain set does not, and pulls it hard.

With the answer labels of every example replaced by random tokens, the set-level gradient of
the NLL is taken for each value vector and averaged over ``draws`` draws of the random labels:
g_unl on the forget set, g_ret on the retain set. Then

    A^l(i) = 1[cos(g^l_unl,i, g^l_ret,i) < μ  and  ‖g^l_unl,i‖ > σ].

μ = 0.95 (App. C). σ is either a value (App. C: 1.6e-4 for Llama-3.1-8B-Instruct, 1.4e-4 for
OLMo2-7B-Instruct, chosen there so that about 10% are selected), or, by default, set by
quantile: the ``ratio`` of all value vectors with the largest ‖g_unl‖ among those that pass the
cosine test. When fewer than that pass the cosine test, all of them are selected and the mask
is smaller than ``ratio`` (logged, and recorded in the mask's metadata): the test, not the
ratio, defines MemFlex's region, and filling it up with vectors that fail the test would make
it another method.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unloc.data.collate import IGNORE
from unloc.localizers import LOCALIZERS, Localization, LocalizerInputs
from unloc.localizers.attribution import Relabel, set_gradient, top_ratio_mask
from unloc.masks import Mask, n_selected
from unloc.registry import setting

logger = logging.getLogger("unloc")


@dataclass(frozen=True)
class MemFlexSettings:
    mu: float = setting(0.95, "cosine threshold: selected when cos(g_unl, g_ret) < mu", minimum=-1, maximum=1)
    sigma: float | None = setting(None, "gradient-norm threshold: selected when ||g_unl|| > sigma; null: set by "
                                        "quantile so that the ratio is selected", minimum=0)
    draws: int = setting(4, "draws of random labels each gradient is averaged over", minimum=1)
    batch_size: int = setting(16, "examples per backward pass", minimum=1)


def random_labels(vocab_size: int, seed: int, role: int, draw: int) -> Relabel:
    """A relabelling (attribution.Relabel): every answer label replaced by a uniformly random
    token, drawn from a generator seeded by (seed, role, draw, batch number)."""

    def relabel(batch: dict, number: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(((seed * 7 + role) * 1_000_003 + draw) * 1_000_003 + number)
        labels = batch["labels"]
        noise = torch.randint(0, vocab_size, labels.shape, generator=g).to(labels.device)
        return torch.where(labels != IGNORE, noise, labels)

    return relabel


def perturbed_gradient(model, examples, pad_id: int, settings: MemFlexSettings, seed: int, role: int, device):
    """The set-level gradient under random labels, averaged over ``settings.draws`` draws."""
    vocab = model.config.vocab_size
    total = None
    for draw in range(settings.draws):
        g = set_gradient(model, examples, pad_id, settings.batch_size, device, random_labels(vocab, seed, role, draw))
        total = g if total is None else {layer: total[layer] + g[layer] for layer in g}
    return {layer: (t / settings.draws).cpu() for layer, t in total.items()}


def memflex_tests(g_unl: dict[int, torch.Tensor], g_ret: dict[int, torch.Tensor]):
    """Per layer, cos(g_unl,i, g_ret,i) and ‖g_unl,i‖ of every value vector (columns of [d_model, d_ff])."""
    cos = {layer: F.cosine_similarity(g_unl[layer], g_ret[layer], dim=0, eps=1e-30) for layer in g_unl}
    norm = {layer: g_unl[layer].norm(dim=0) for layer in g_unl}
    return cos, norm


def memflex_mask(cos, norm, settings: MemFlexSettings, ratio: float) -> Mask:
    """The vectors that pass both tests (σ given), or the ``ratio`` of all vectors with the largest
    ‖g_unl‖ among those that pass the cosine test (σ null; fewer when fewer pass it)."""
    passes_cos = {layer: (cos[layer] < settings.mu) & (norm[layer] > 0) for layer in cos}
    if settings.sigma is not None:
        return Mask({layer: passes_cos[layer] & (norm[layer] > settings.sigma) for layer in cos}, "columns")
    total = sum(m.numel() for m in norm.values())
    k, candidates = n_selected(total, ratio), sum(int(m.sum()) for m in passes_cos.values())
    if candidates <= k:
        return Mask({layer: m.clone() for layer, m in passes_cos.items()}, "columns")
    ranked = {layer: torch.where(passes_cos[layer], norm[layer], torch.tensor(-1.0)) for layer in norm}
    return top_ratio_mask(ranked, ratio, "columns")


@LOCALIZERS.register("memflex", label="MemFlex", settings=MemFlexSettings, needs=("weights", "forget", "retain"),
                     scores=True)
def memflex(inputs: LocalizerInputs, settings: MemFlexSettings, ratio: float, seed: int) -> Localization:
    """Value vectors whose random-label gradient on the forget set points away from the retain
    set's (cos < mu) and is large (> sigma, or by quantile), seeds/000 App. C."""
    model, device = inputs.model, inputs.device
    g_unl = perturbed_gradient(model, inputs.sets["forget"], inputs.pad_id, settings, seed, 0, device)
    g_ret = perturbed_gradient(model, inputs.sets["retain"], inputs.pad_id, settings, seed, 1, device)
    cos, norm = memflex_tests(g_unl, g_ret)
    mask = memflex_mask(cos, norm, settings, ratio)
    selected, wanted = mask.count(), n_selected(mask.size(), ratio)
    if selected != wanted:
        logger.warning("memflex: %d value vectors pass the tests, not the %d of ratio %g (%s)", selected, wanted,
                       ratio, "fewer pass the cosine test" if settings.sigma is None else f"sigma {settings.sigma}")
    selected_norms = torch.cat([norm[layer][mask.layers[layer]] for layer in sorted(norm)])
    mask.metadata.update({"selected": selected, "sigma_effective": float(selected_norms.min()) if selected else 0.0})
    scores = {layer: torch.where(cos[layer] < settings.mu, norm[layer], torch.zeros(())) for layer in norm}
    return Localization(mask, scores, {"cos": cos, "grad_norm": norm})
