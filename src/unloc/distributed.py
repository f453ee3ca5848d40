"""Several processes for the full-parameter stages: a torchrun launch, FSDP shards, one writer.

Full-parameter AdamW in fp32 holds about 16 bytes per parameter (weights, gradients, two
moments), so a 7-8B model does not fit one 80 GB GPU. Launched by ``torchrun``, pretrain and
finetune shard all of it across the ranks with FSDP2 and split every batch between them by
example; the main rank alone writes the outputs. Every other stage runs in one process and
refuses a multi-process launch. A run without torchrun never creates a process group.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from unloc.data.collate import IGNORE
from unloc.scoring import batch_token_logprobs


@dataclass(frozen=True)
class Launch:
    """This process's place in a torchrun launch."""

    rank: int
    local_rank: int
    world_size: int
    device: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_world_size(environ: Mapping[str, str] = os.environ) -> int:
    """How many processes torchrun started (its ``WORLD_SIZE``); 1 without torchrun."""
    return int(environ.get("WORLD_SIZE", "1"))


def is_main_process(environ: Mapping[str, str] = os.environ) -> bool:
    """Rank 0 of a torchrun launch, or the only process; the one that logs and writes."""
    return int(environ.get("RANK", "0")) == 0


def refuse_multi_process(stage: str, environ: Mapping[str, str] = os.environ) -> None:
    """Fail before any work when a single-process stage is launched on several processes:
    each would otherwise compute the same result and race to write the same outputs."""
    n = launched_world_size(environ)
    if n > 1:
        raise ValueError(
            f"stage {stage!r} was launched on {n} processes (WORLD_SIZE={n}), but only pretrain and "
            "finetune run on several; masked stages (inject, unlearn) and evaluation run on one "
            "device: launch it without torchrun")


def threads_per_process(threads: int, environ: Mapping[str, str] = os.environ) -> int:
    """A job's CPU threads shared out between torchrun's processes, so they do not oversubscribe its cores."""
    return max(1, threads // launched_world_size(environ))


def rank_device(device: str, local_rank: int) -> str:
    """torchrun starts one process per GPU of a node; local rank k takes GPU k."""
    return f"cuda:{local_rank}" if device.startswith("cuda") else "cpu"


@contextlib.contextmanager
def process_group(device: str, environ: Mapping[str, str] = os.environ) -> Iterator[Launch | None]:
    """The process group of a torchrun launch, torn down on exit; ``None`` in a single process.

    NCCL on GPUs, gloo on the CPU (what tests use).
    """
    if launched_world_size(environ) == 1:
        yield None
        return
    local_rank = int(environ["LOCAL_RANK"])
    launch = Launch(rank=int(environ["RANK"]), local_rank=local_rank,
                    world_size=launched_world_size(environ), device=rank_device(device, local_rank))
    if launch.device.startswith("cuda"):
        torch.cuda.set_device(launch.device)
        # Binding the GPU up front lets NCCL connect eagerly and barriers know their device.
        dist.init_process_group("nccl", device_id=torch.device(launch.device))
    else:
        dist.init_process_group("gloo")
    try:
        yield launch
    finally:
        dist.destroy_process_group()


def shard_model(model, launch: Launch) -> None:
    """Shard ``model`` in place with FSDP2: each decoder layer, then the rest as the root.

    A group per layer means a rank gathers one layer's full weights at a time. Gradients are
    summed over ranks, not averaged: each rank's loss is already its share of the global
    batch's loss (``rank_answer_nll``), so the sum is the single-process gradient. FSDP moves
    the parameters to the mesh's device, so the model may arrive on the CPU.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, fully_shard

    from unloc.models import decoder_layers

    mesh = init_device_mesh(torch.device(launch.device).type, (launch.world_size,))
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            # A plain SUM is what every backend (gloo included) implements.
            module.set_force_sum_reduction_for_comms(True)


def rank_rows(n_examples: int, launch: Launch) -> torch.Tensor:
    """This rank's examples of a global batch: a contiguous block; block sizes differ by at most one."""
    return torch.tensor_split(torch.arange(n_examples), launch.world_size)[launch.rank]


def rank_answer_nll(model, batch: dict, launch: Launch) -> torch.Tensor:
    """This rank's share of ``answer_nll`` of the global ``batch`` (which every rank receives).

    The summed token NLL of the rank's examples over the answer-token count of the WHOLE
    batch, so the shares (and their gradients) add up over ranks to ``answer_nll`` of the
    batch. A rank left without examples (a final batch smaller than the world) still runs
    forward and backward on a borrowed example with zero weight: FSDP's collectives need
    every rank.
    """
    total_tokens = (batch["labels"][:, 1:] != IGNORE).sum().clamp(min=1)  # what answer_nll divides by
    rows, weight = rank_rows(len(batch["labels"]), launch), 1.0
    if rows.numel() == 0:
        rows, weight = torch.arange(1), 0.0
    rows = rows.to(batch["labels"].device)
    logp, _ = batch_token_logprobs(model, {k: v[rows] for k, v in batch.items()})
    return -weight * logp.sum() / total_tokens


def sum_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The sum of ``value`` over all ranks (a rank's loss share summed is the global loss)."""
    total = value.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def gather_on_main(model, launch: Launch):
    """The whole model as a plain HF model on the main rank's CPU; ``None`` on other ranks.

    Collective for a sharded model: every rank must call it. A model that was never sharded
    (a resolved checkpoint that only the main rank loaded) is returned as it is.
    """
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
    )
    from torch.distributed.fsdp import FSDPModule
    from transformers import AutoModelForCausalLM

    if not isinstance(model, FSDPModule):
        return model if launch.is_main else None
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not launch.is_main:
        return None
    # Built on the meta device and given the gathered tensors: no second initialisation of a large model.
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(model.config)
    plain.load_state_dict(state, assign=True)
    plain.tie_weights()
    # Non-persistent buffers (rotary frequencies) are in no state dict; FSDP leaves them unsharded.
    for name, buffer in model.named_buffers():
        owner, _, attr = name.rpartition(".")
        setattr(plain.get_submodule(owner), attr, buffer.detach().cpu())
    return plain


def wait_for_main() -> None:
    """Hold every rank until the main rank has written the outputs: a rank that exits early
    can make torchrun end the launch while the checkpoint is still being written."""
    dist.barrier()
