"""Localizers: which entries of the down projections an unlearning run may update.

Each entry of ``LOCALIZERS`` turns its inputs into a mask (masks.Mask) of ``ratio`` of all
entries at its granularity; a localizer that scores entries also returns the raw scores,
which the ``localize`` stage stores beside the mask. The stage writes
``results/{name}/masks/{localizer}/s{seed}/mask.safetensors``.

A localizer's spec says what it reads: ``needs`` lists input artifacts (``model``: the model
whose shapes, or weights, it localizes in), ``masks(settings)`` the masks of other localizers
of the same seed (Section 4's Random region is drawn outside the Oracle region).

Section 4 of seeds/000 compares two regions:

* ``oracle`` (V_tgt): ``ratio`` of all value vectors drawn uniformly over the whole model (not
  per layer); θo learns the forget set inside it, so it is where the knowledge is;
* ``random`` (V_rdm): as many value vectors, drawn uniformly from outside V_tgt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from unloc.masks import Mask, model_mask_shape, n_selected
from unloc.registry import Registry, Spec, setting


@dataclass(frozen=True, kw_only=True)
class LocalizerSpec(Spec):
    granularity: str = "columns"
    scores: bool = False  # also writes scores.safetensors
    masks: Callable[[object], tuple[str, ...]] = lambda settings: ()


LOCALIZERS: Registry[LocalizerSpec] = Registry("localizer", LocalizerSpec)


@dataclass
class LocalizerInputs:
    """What a localizer may read: the model's ``config.json`` (and directory), other localizers'
    masks of the same seed by name, the dataset directory and the device."""

    model_config: dict
    model_dir: str | None = None
    masks: dict[str, Mask] | None = None
    data_dir: str | None = None
    device: str = "cpu"


@dataclass
class Localization:
    mask: Mask
    scores: dict[int, torch.Tensor] | None = None  # per layer, the shape of the mask's layers


def _uniform_mask(shape: tuple[int, ...], ratio: float, rng: np.random.Generator, granularity: str,
                  candidates: np.ndarray | None = None) -> Mask:
    """``ratio`` of all entries of ``shape``, drawn without replacement from ``candidates``
    (flat indices; default: all of them)."""
    size = int(np.prod(shape))
    k = n_selected(size, ratio)
    pool = size if candidates is None else candidates
    available = size if candidates is None else candidates.size
    if k > available:
        raise ValueError(f"ratio {ratio}: cannot draw {k} entries from the {available} candidates")
    flat = np.zeros(size, dtype=bool)
    flat[rng.choice(pool, k, replace=False)] = True
    flat = flat.reshape(shape)
    return Mask({layer: torch.from_numpy(row.copy()) for layer, row in enumerate(flat)}, granularity)


def oracle_mask(n_layers: int, d_ff: int, ratio: float, seed: int) -> Mask:
    """V_tgt: ``ratio`` of all value vectors, uniformly over the whole model (not per layer)."""
    return _uniform_mask((n_layers, d_ff), ratio, np.random.default_rng([seed, 0]), "columns")


def random_mask(n_layers: int, d_ff: int, ratio: float, seed: int, outside: Mask | None = None) -> Mask:
    """``ratio`` of all value vectors drawn uniformly from outside ``outside`` (V_rdm: outside
    V_tgt), or from all of them."""
    candidates = None
    if outside is not None:
        if outside.shape != (n_layers, d_ff) or outside.granularity != "columns":
            raise ValueError(f"random: the mask to draw outside of has shape {outside.shape}, expected "
                             f"{(n_layers, d_ff)} value vectors")
        candidates = np.flatnonzero(~outside.flat().numpy().reshape(-1))
    return _uniform_mask((n_layers, d_ff), ratio, np.random.default_rng([seed, 1]), "columns", candidates)


@LOCALIZERS.register("oracle", needs=("model",))
def oracle(inputs: LocalizerInputs, settings, ratio: float, seed: int) -> Localization:
    """V_tgt: ``ratio`` of all value vectors, uniformly over the model: the region θo's forget
    set is injected into (seeds/000 Section 4, step 2)."""
    n_layers, d_ff = model_mask_shape(inputs.model_config, "columns")
    return Localization(oracle_mask(n_layers, d_ff, ratio, seed))


@dataclass(frozen=True)
class RandomSettings:
    outside: str | None = setting(
        "oracle", "draw outside this localizer's mask of the same seed (Section 4's V_rdm, outside V_tgt); "
                  "null: uniformly over all value vectors (Section 3)")


@LOCALIZERS.register("random", settings=RandomSettings, needs=("model",),
                     masks=lambda s: (s.outside,) if s.outside else ())
def random(inputs: LocalizerInputs, settings: RandomSettings, ratio: float, seed: int) -> Localization:
    """V_rdm: ``ratio`` of all value vectors drawn uniformly, from outside another localizer's
    region (by default V_tgt: Section 4's Random scenario)."""
    n_layers, d_ff = model_mask_shape(inputs.model_config, "columns")
    outside = inputs.masks[settings.outside] if settings.outside else None
    return Localization(random_mask(n_layers, d_ff, ratio, seed, outside))


def localize(name: str, settings, inputs: LocalizerInputs, ratio: float, seed: int) -> Localization:
    """Run localizer ``name`` and stamp its mask's metadata."""
    spec = LOCALIZERS[name]
    result = spec.fn(inputs, settings, ratio, seed)
    if result.mask.granularity != spec.granularity:
        raise AssertionError(f"localizer {name} returned a {result.mask.granularity} mask, declared {spec.granularity}")
    result.mask.metadata.update({"method": name, "ratio": ratio, "seed": seed})
    return result
