"""Numeric precision of the stages that run a model: the config's ``precision`` (fp32 | bf16).

Under ``bf16`` (GPU jobs, DESIGN §7-8) the weights stay fp32 in memory: they are the master
weights the optimizer updates (only the masked columns in the masked stages, all parameters,
FSDP-sharded, in fine-tuning). Forward passes run under ``torch.autocast`` in bfloat16, which
casts each matrix product's inputs; backward follows the casts recorded in the forward pass.
Full checkpoints are written in bf16 (half the disk), sparse deltas always in fp32 (io.py).
Under ``fp32`` nothing is cast and no autocast is entered.
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: allowed {', '.join(PRECISIONS)}")
    return precision


def autocast_context(device: str, precision: str):
    """The context every forward pass of a stage runs in: bf16 autocast on ``device``'s type
    (cuda or cpu), or nothing at all under fp32."""
    if check_precision(precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def checkpoint_dtype(precision: str) -> torch.dtype:
    """The dtype full checkpoints are written in (deltas are fp32 whatever the precision)."""
    return torch.bfloat16 if check_precision(precision) == "bf16" else torch.float32
