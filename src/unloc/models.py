"""Models: build the tiny Llama, and address, train and change entries of the down projections.

Value vector ``i`` of a layer is column ``i`` of its ``mlp.down_proj.weight`` (shape
``d_model x d_ff``) in HF Llama and OLMo2; row ``j`` is output neuron ``j`` (SIMU's neurons).
Masked stages change only the entries a mask selects, at one of three granularities
(io.GRANULARITIES): whole columns, whole rows or single elements.
``MaskedDownProj`` trains a gathered copy of the selected entries, so the optimizer holds
state for those alone and every other parameter stays bit-identical.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


# --------------------------------------------------------------------------- building


def train_tokenizer(texts, vocab_size: int):
    """A byte-level BPE tokenizer trained on ``texts``, as an HF fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)


def build_tiny_llama(arch: dict, tokenizer, seed: int):
    """A freshly initialised ``LlamaForCausalLM`` of the size given in ``arch``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=arch["hidden_size"],
        intermediate_size=arch["intermediate_size"],
        num_hidden_layers=arch["num_layers"],
        num_attention_heads=arch["num_heads"],
        num_key_value_heads=arch["num_heads"],
        max_position_embeddings=arch["max_length"],
        tie_word_embeddings=arch.get("tie_embeddings", True),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


# --------------------------------------------------------------------------- the down projections


def decoder_layers(model) -> nn.ModuleList:
    return model.model.layers


DEPTH_THIRDS = ("shallow", "middle", "deep")
"""seeds/001's layer groups: thirds of the decoder's depth."""


def depth_third(layer: int, n_layers: int) -> str:
    """The third of the depth a 0-based layer lies in: layer l of n is in third floor(3l / n)."""
    return DEPTH_THIRDS[3 * layer // n_layers]


def last_layer_of_third(third: str, n_layers: int) -> int:
    """The deepest layer of a third (10, 21 and 31 of 32: seeds/001's RMU at layers 11/22/33,
    counted as hidden-state indices)."""
    if third not in DEPTH_THIRDS:
        raise ValueError(f"{third!r}: not a third of the depth ({', '.join(DEPTH_THIRDS)})")
    return max(layer for layer in range(n_layers) if depth_third(layer, n_layers) == third)


def down_proj(model, layer: int) -> nn.Linear:
    """The layer's down projection (the plain linear, also while masked training wraps it)."""
    module = decoder_layers(model)[layer].mlp.down_proj
    return module.linear if isinstance(module, MaskedDownProj) else module


def value_vector_shape(model) -> tuple[int, int, int]:
    """(num_layers, d_model, d_ff) of the value-vector grid."""
    d_model, d_ff = down_proj(model, 0).weight.shape
    return len(decoder_layers(model)), d_model, d_ff


def index_bound(granularity: str, d_model: int, d_ff: int) -> int:
    """How many entries of one layer an index of ``granularity`` can name."""
    return {"columns": d_ff, "rows": d_model, "elements": d_model * d_ff}[granularity]


def check_fits(model, layer: int, granularity: str, indices: torch.Tensor, values_shape=None, what="delta"):
    """Raise a clear error when ``indices`` (and values of ``values_shape``) do not fit ``layer``."""
    n_layers, d_model, d_ff = value_vector_shape(model)
    if not 0 <= layer < n_layers:
        raise ValueError(f"{what} names layer {layer}, but the model has {n_layers} layers")
    bound = index_bound(granularity, d_model, d_ff)
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= bound):
        raise ValueError(f"{what}: layer {layer} {granularity} index out of range for d_model = {d_model}, "
                         f"d_ff = {d_ff}")
    if values_shape is None:
        return
    k = indices.numel()
    expected = {"columns": (d_model, k), "rows": (k, d_ff), "elements": (k,)}[granularity]
    if tuple(values_shape) != expected:
        if granularity == "columns" and len(values_shape) == 2 and values_shape[0] != d_model:
            raise ValueError(f"{what}: layer {layer} has {values_shape[0]} rows, but the model's d_model is {d_model}")
        raise ValueError(f"{what}: layer {layer} values have shape {tuple(values_shape)}, expected {expected}")


def gather(weight: torch.Tensor, granularity: str, idx: torch.Tensor) -> torch.Tensor:
    """The entries of ``weight`` that ``idx`` names (a copy)."""
    if granularity == "columns":
        return weight[:, idx]
    if granularity == "rows":
        return weight[idx, :]
    return weight.reshape(-1)[idx]


def merge(weight: torch.Tensor, granularity: str, idx: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``weight`` with the named entries replaced by ``values``, out of place (differentiable in ``values``)."""
    if granularity == "columns":
        return weight.index_copy(1, idx, values)
    if granularity == "rows":
        return weight.index_copy(0, idx, values)
    return weight.reshape(-1).index_copy(0, idx, values).view_as(weight)


@torch.no_grad()
def assign(weight: torch.Tensor, granularity: str, idx: torch.Tensor, values: torch.Tensor) -> None:
    """In place: the named entries of ``weight`` become ``values``."""
    if granularity == "columns":
        weight[:, idx] = values
    elif granularity == "rows":
        weight[idx, :] = values
    else:
        weight.view(-1)[idx] = values


@torch.no_grad()
def apply_delta(model, delta, alpha: float = 1.0) -> None:
    """In place: the delta's entries += alpha * values, for every layer of a sparse delta."""
    for layer, (idx, values) in delta.layers.items():
        check_fits(model, layer, delta.granularity, idx, values.shape)
        weight = down_proj(model, layer).weight
        new = gather(weight, delta.granularity, idx) + (alpha * values.to(torch.float32)).to(weight.dtype)
        assign(weight, delta.granularity, idx, new)


@torch.no_grad()
def gather_entries(model, granularity: str, indices: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """Copies (on the CPU) of the named entries of every layer: what a delta is taken against."""
    return {layer: gather(down_proj(model, layer).weight, granularity, idx).detach().clone().cpu()
            for layer, idx in indices.items()}


@torch.no_grad()
def entry_delta(model, before: dict[int, torch.Tensor], granularity: str, indices: dict[int, torch.Tensor]):
    """New-minus-``before`` values of the named entries: the payload of a sparse delta."""
    out = {}
    for layer, idx in indices.items():
        if idx.numel() == 0:
            continue
        new = gather(down_proj(model, layer).weight, granularity, idx).detach().cpu()
        out[layer] = (idx.cpu(), new - before[layer])
    return out


class MaskedDownProj(nn.Module):
    """``down_proj`` whose masked entries are a trainable gathered parameter, ``trainable``.

    The forward pass rebuilds the full weight with ``index_copy`` so it computes exactly
    what the unmasked layer would (bit-identical logits); the gradient reaches only
    ``trainable`` ([d_model, k] columns, [k, d_ff] rows or [k] elements), so the optimizer
    keeps state for the masked entries alone.
    """

    def __init__(self, linear: nn.Linear, granularity: str, indices: torch.Tensor):
        super().__init__()
        self.linear, self.granularity = linear, granularity
        self.register_buffer("indices", indices.to(linear.weight.device), persistent=False)
        self.trainable = nn.Parameter(gather(linear.weight.detach(), granularity, self.indices).clone())

    def merged_weight(self) -> torch.Tensor:
        return merge(self.linear.weight, self.granularity, self.indices, self.trainable)

    def forward(self, x):
        return F.linear(x, self.merged_weight(), self.linear.bias)


def attach_masked(model, granularity: str, indices: dict[int, torch.Tensor]) -> list[nn.Parameter]:
    """Freeze ``model`` and make only the masked down_proj entries trainable.

    Returns the trainable parameters (one per layer with a non-empty mask). Call
    ``detach_masked`` afterwards to write them back into ordinary linears.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    params = []
    for layer, idx in indices.items():
        if idx.numel() == 0:
            continue
        mlp = decoder_layers(model)[layer].mlp
        check_fits(model, layer, granularity, idx, what="mask")
        mlp.down_proj = MaskedDownProj(mlp.down_proj, granularity, idx)
        params.append(mlp.down_proj.trainable)
    return params


def attention_projections(model) -> list[nn.Parameter]:
    """The weights (and biases) of every linear of each layer's self-attention: q, k, v and o
    (norms inside the attention, such as OLMo2's q_norm and k_norm, are not projections)."""
    return [p for layer in decoder_layers(model) for module in layer.self_attn.modules()
            if isinstance(module, nn.Linear) for p in module.parameters()]


def attach_attention_and_down_proj(model, mask=None) -> list[nn.Parameter]:
    """Freeze ``model`` but its attention projections and its down projections (seeds/003's
    trainable modules); with ``mask`` (masks.Mask) only the down_proj entries it selects, as
    ``attach_masked``, whose ``detach_masked`` writes them back."""
    if mask is None:
        for p in model.parameters():
            p.requires_grad_(False)
        down = [p for layer in decoder_layers(model) for p in layer.mlp.down_proj.parameters()]
    else:
        down = attach_masked(model, mask.granularity, mask.indices())
    params = [*attention_projections(model), *down]
    for p in params:
        p.requires_grad_(True)
    return params


@torch.no_grad()
def detach_masked(model) -> None:
    """Write trained entries back and restore the plain ``nn.Linear`` down projections."""
    for layer in decoder_layers(model):
        masked = layer.mlp.down_proj
        if isinstance(masked, MaskedDownProj):
            weight = masked.linear.weight
            assign(weight, masked.granularity, masked.indices, masked.trainable.detach().to(weight.dtype))
            layer.mlp.down_proj = masked.linear
