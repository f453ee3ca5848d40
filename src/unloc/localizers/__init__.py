"""Localizers: which entries of the down projections an unlearning run may update.

Each entry of ``LOCALIZERS`` turns its inputs into a mask (masks.Mask) of ``ratio`` of all
entries at its granularity; a localizer that scores entries also returns the raw scores,
which the ``localize`` stage stores beside the mask. The stage writes
``results/{name}/masks/{localizer}/s{seed}/mask.safetensors`` (and ``scores.safetensors``).

A localizer's spec says what it reads (``needs``):

* ``model``: only the shapes of the model it localizes in (its ``config.json``);
* ``weights``: the model itself (LocalizerInputs.model), with its tokenizer's pad id;
* ``forget``, ``retain``: the encoded examples of those dataset roles (LocalizerInputs.sets);

``seeded`` whether its mask depends on the seed (a deterministic scoring does not: Section 3
runs it once, where Random runs every seed), and ``masks(settings)`` names the masks of other
localizers of the same seed it reads (Section 4's Random region is drawn outside the Oracle
region).

One file per localizer:

* ``uniform.py``: ``oracle`` (V_tgt) and ``random`` (V_rdm), seeds/000 Section 4 (and Section
  3's Random baseline, drawn over all value vectors);
* ``activations.py``, ``memflex.py``, ``wagle.py``: the attribution methods of seeds/000
  Section 3 and App. C, scoring value vectors (and WAGLE also single weights) of a model from
  its forget and retain data; ``attribution.py`` holds what they share (set-level gradients of
  the down projections, the top-ratio selection);
* ``simu.py``: SIMU's critical neurons (seeds/003), output rows of the down projections chosen by
  an integrated-gradients attribution on the forget set and a per-layer threshold, at most
  ``ratio`` of all rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from unloc.data.collate import Encoded
from unloc.masks import Mask
from unloc.registry import Registry, Spec

NEEDS = ("model", "weights", "forget", "retain")


@dataclass(frozen=True, kw_only=True)
class LocalizerSpec(Spec):
    granularity: str = "columns"
    scores: bool = False  # also writes scores.safetensors
    # whether its mask depends on the seed; one that does not is built (and unlearned in) once
    seeded: bool = True
    label: str = ""  # how tables and figures print it (default: the name, capitalized)
    masks: Callable[[object], tuple[str, ...]] = lambda settings: ()

    def __post_init__(self):
        if not self.label:
            object.__setattr__(self, "label", self.name.capitalize())
        unknown = [n for n in self.needs if n not in NEEDS]
        if unknown:
            raise ValueError(f"localizer {self.name}: unknown needs {unknown} (allowed: {', '.join(NEEDS)})")

    @property
    def reads_weights(self) -> bool:
        return "weights" in self.needs

    @property
    def roles(self) -> tuple[str, ...]:
        """The dataset roles it scores examples of."""
        return tuple(n for n in self.needs if n in ("forget", "retain"))


LOCALIZERS: Registry[LocalizerSpec] = Registry("localizer", LocalizerSpec)


@dataclass
class LocalizerInputs:
    """What a localizer may read: the model's ``config.json``, the model itself (for those that
    need ``weights``), other localizers' masks of the same seed by name, the encoded examples of
    the roles it scores and the device."""

    model_config: dict
    model: torch.nn.Module | None = None
    pad_id: int = 0
    masks: dict[str, Mask] | None = None
    sets: dict[str, list[Encoded]] = field(default_factory=dict)
    device: str = "cpu"


@dataclass
class Localization:
    mask: Mask
    scores: dict[int, torch.Tensor] | None = None  # per layer, the shape of the mask's layers
    # further per-layer tensors a localizer computes on the way (MemFlex's cosines), stored beside
    details: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)


def localize(name: str, settings, inputs: LocalizerInputs, ratio: float, seed: int) -> Localization:
    """Run localizer ``name`` and stamp its mask's metadata."""
    spec = LOCALIZERS[name]
    result = spec.fn(inputs, settings, ratio, seed)
    if result.mask.granularity != spec.granularity:
        raise AssertionError(f"localizer {name} returned a {result.mask.granularity} mask, declared {spec.granularity}")
    result.mask.metadata.update({"method": name, "ratio": ratio, "seed": seed})
    return result


# The variants register themselves on import, in this order (the order `unloc localize --help` lists).
from unloc.localizers.uniform import oracle_mask, random_mask  # noqa: E402, F401, I001
from unloc.localizers import activations, memflex, wagle  # noqa: E402, F401, I001
from unloc.localizers import simu  # noqa: E402, F401, I001
