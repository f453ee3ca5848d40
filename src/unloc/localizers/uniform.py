"""The uniform regions of seeds/000: Oracle and Random.

* ``oracle`` (V_tgt, Section 4): ``ratio`` of all value vectors drawn uniformly over the whole
  model (not per layer); θo learns the forget set inside it, so it is where the knowledge is;
* ``random`` (V_rdm): as many value vectors, drawn uniformly from outside V_tgt (Section 4), or
  over all value vectors (``outside: null``, Section 3's Random baseline);
* ``random_weights``: ``ratio`` of all single down_proj weights, uniformly (the Random baseline
  of WAGLE's per-weight localization, seeds/000 App. E Table 5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from unloc.localizers import LOCALIZERS, Localization, LocalizerInputs
from unloc.masks import Mask, model_mask_shape, n_selected
from unloc.registry import setting


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


@LOCALIZERS.register("random_weights", label="Random (per weight)", needs=("model",), granularity="elements")
def random_weights(inputs: LocalizerInputs, settings, ratio: float, seed: int) -> Localization:
    """``ratio`` of all single down_proj weights, drawn uniformly over the model (the per-weight
    Random baseline of seeds/000 App. E, Table 5)."""
    shape = model_mask_shape(inputs.model_config, "elements")
    return Localization(_uniform_mask(shape, ratio, np.random.default_rng([seed, 2]), "elements"))
