"""Masks over value vectors: the target region V_tgt, the random region V_rdm, localizers.

A mask is, per layer, a boolean vector over the ``d_ff`` value vectors of that layer's
``mlp.down_proj`` (True = may be updated). Regions are drawn uniformly over the whole
model's value vectors, not per layer, as in the paper (Section 4, step 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from unloc import io
from unloc.models import value_vector_shape

STAGE_VERSION = 1


@dataclass
class Mask:
    layers: dict[int, torch.Tensor]  # layer -> bool [d_ff]
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.layers), int(next(iter(self.layers.values())).numel())

    def count(self) -> int:
        return int(sum(int(m.sum()) for m in self.layers.values()))

    def indices(self) -> dict[int, torch.Tensor]:
        """Masked column indices per layer (int64, ascending)."""
        return {l: torch.nonzero(m, as_tuple=False).flatten() for l, m in self.layers.items()}

    def flat(self) -> torch.Tensor:
        return torch.stack([self.layers[l] for l in sorted(self.layers)])


def _from_flat(flat: np.ndarray, metadata: dict) -> Mask:
    layers = {l: torch.from_numpy(row.copy()) for l, row in enumerate(flat)}
    return Mask(layers, {k: str(v) for k, v in metadata.items()})


def n_selected(n_layers: int, d_ff: int, ratio: float) -> int:
    return int(round(ratio * n_layers * d_ff))


def target_mask(n_layers: int, d_ff: int, ratio: float, seed: int) -> Mask:
    """V_tgt: ``ratio`` of all value vectors, uniformly over the model."""
    rng = np.random.default_rng([seed, 0])
    flat = np.zeros(n_layers * d_ff, dtype=bool)
    flat[rng.choice(flat.size, n_selected(n_layers, d_ff, ratio), replace=False)] = True
    return _from_flat(flat.reshape(n_layers, d_ff), {"method": "target", "ratio": ratio, "seed": seed})


def random_mask(exclude: Mask, ratio: float, seed: int) -> Mask:
    """V_rdm: ``ratio`` of all value vectors drawn from outside ``exclude`` (V \\ V_tgt)."""
    n_layers, d_ff = exclude.shape
    outside = np.flatnonzero(~exclude.flat().numpy().reshape(-1))
    k = n_selected(n_layers, d_ff, ratio)
    if k > outside.size:
        raise ValueError(f"ratio {ratio}: cannot draw {k} value vectors from the {outside.size} outside the target")
    rng = np.random.default_rng([seed, 1])
    flat = np.zeros(n_layers * d_ff, dtype=bool)
    flat[rng.choice(outside, k, replace=False)] = True
    return _from_flat(flat.reshape(n_layers, d_ff), {"method": "random", "ratio": ratio, "seed": seed})


def check_mask_fits(mask: Mask, model, where: str = "mask") -> None:
    n_layers, _, d_ff = value_vector_shape(model)
    if mask.shape != (n_layers, d_ff):
        raise ValueError(
            f"{where}: shape {mask.shape[0]} layers x {mask.shape[1]} value vectors does not fit "
            f"the model's {n_layers} layers x {d_ff} value vectors"
        )


def save_mask(path, mask: Mask) -> None:
    io.save_mask(path, mask.layers, mask.metadata)


def load_mask(path, model=None) -> Mask:
    layers, metadata = io.load_mask(path)
    if not layers or sorted(layers) != list(range(len(layers))):
        raise io.ArtifactError(f"{path}: mask layers must be 0..L-1, found {sorted(layers)}")
    if any(m.dim() != 1 for m in layers.values()):
        raise io.ArtifactError(f"{path}: expected one value-vector mask per layer (1-D tensors)")
    mask = Mask(layers, metadata)
    if model is not None:
        check_mask_fits(mask, model, where=str(path))
    return mask
