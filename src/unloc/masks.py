"""The mask type: which entries of each layer's ``mlp.down_proj`` a masked stage may update.

A mask is, per decoder layer, a boolean tensor at one of three granularities (io.GRANULARITIES):

* ``columns``: [d_ff], one flag per value vector (seeds/000);
* ``rows``: [d_model], one flag per output neuron (SIMU);
* ``elements``: [d_model, d_ff], one flag per weight (WAGLE per weight, WME).

Masks are made by the localizers (localizers/) and stored by io.py with their granularity
and metadata (method, ratio, seed, source model); loading checks dtype, granularity and shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from unloc import io
from unloc.models import value_vector_shape


@dataclass
class Mask:
    layers: dict[int, torch.Tensor]  # layer -> bool tensor of the granularity's shape
    granularity: str = "columns"
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        io.check_granularity(self.granularity, "mask")

    @property
    def shape(self) -> tuple[int, ...]:
        """(layers, *per-layer shape)."""
        return (len(self.layers), *next(iter(self.layers.values())).shape)

    def count(self) -> int:
        return int(sum(int(m.sum()) for m in self.layers.values()))

    def size(self) -> int:
        """Entries a mask of this shape could select."""
        return int(sum(m.numel() for m in self.layers.values()))

    def indices(self) -> dict[int, torch.Tensor]:
        """Selected indices per layer (int64, ascending); row-major flat indices for elements."""
        return {layer: torch.nonzero(m.reshape(-1), as_tuple=False).flatten() for layer, m in self.layers.items()}

    def flat(self) -> torch.Tensor:
        return torch.stack([self.layers[layer] for layer in sorted(self.layers)])


def n_selected(n_entries: int, ratio: float) -> int:
    """How many of ``n_entries`` a mask of ``ratio`` selects."""
    return int(round(ratio * n_entries))


def model_mask_shape(model_config: dict, granularity: str) -> tuple[int, ...]:
    """(layers, *per-layer shape) of a ``granularity`` mask for a model's ``config.json``."""
    n_layers, d_model, d_ff = (model_config["num_hidden_layers"], model_config["hidden_size"],
                               model_config["intermediate_size"])
    return (n_layers, *{"columns": (d_ff,), "rows": (d_model,), "elements": (d_model, d_ff)}[granularity])


def check_mask_fits(mask: Mask, model, where: str = "mask") -> None:
    n_layers, d_model, d_ff = value_vector_shape(model)
    per_layer = {"columns": (d_ff,), "rows": (d_model,), "elements": (d_model, d_ff)}[mask.granularity]
    if mask.shape != (n_layers, *per_layer):
        what = {"columns": "value vectors", "rows": "output rows", "elements": "weights"}[mask.granularity]
        got = " x ".join(map(str, mask.shape[1:]))
        want = " x ".join(map(str, per_layer))
        raise io.ArtifactError(
            f"{where}: shape {mask.shape[0]} layers x {got} {what} does not fit "
            f"the model's {n_layers} layers x {want} {what}")


def save_mask(path, mask: Mask) -> None:
    io.save_mask(path, mask.layers, mask.granularity, mask.metadata)


def load_mask(path, model=None) -> Mask:
    layers, granularity, metadata = io.load_mask(path)
    shapes = {tuple(m.shape) for m in layers.values()}
    if len(shapes) != 1:
        raise io.ArtifactError(f"{path}: layers have different shapes {sorted(shapes)}")
    mask = Mask(layers, granularity, metadata)
    if model is not None:
        check_mask_fits(mask, model, where=str(path))
    return mask
