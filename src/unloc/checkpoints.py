"""Full checkpoints: Hugging Face model directories, saved atomically with their provenance and
loaded with any chain of sparse deltas applied.

A checkpoint directory holds ``config.json``, the weights (``save_pretrained``'s safetensors),
the tokenizer files and ``unloc.json`` (io.CHECKPOINT_META: the stage that made it and the
content hash of its weights). Weights are written in the dtype the stage asks for (bf16 under
``precision: bf16``); every artifact loads as an fp32 model, the master weights any training
that follows needs and the weights deltas are applied to and mixed in.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from unloc import io
from unloc.models import apply_delta


def save_checkpoint(model, tokenizer, out_dir, metadata: dict, *, dtype: torch.dtype = torch.float32) -> None:
    """Save a full HF checkpoint directory atomically, with provenance in ``unloc.json``.

    The weights are written in ``dtype``; the model in memory is left as it is.
    """
    with io.atomic_path(out_dir, is_dir=True) as tmp:
        model.save_pretrained(tmp, state_dict=_state_dict_in(model, dtype))
        _record_config_dtype(tmp, dtype)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        meta = {**metadata, "content_hash": io.weights_sha256(tmp)}
        (tmp / io.CHECKPOINT_META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _state_dict_in(model, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The model's state dict with floating-point tensors in ``dtype``.

    Tied tensors (input and output embeddings) stay one tensor: ``save_pretrained`` finds
    ties by shared storage and writes them once. Tensors already in ``dtype`` are not copied.
    """
    converted: dict[tuple, torch.Tensor] = {}
    state = {}
    for name, tensor in model.state_dict().items():
        if not tensor.is_floating_point():
            state[name] = tensor
            continue
        key = (tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()))
        if key not in converted:
            converted[key] = tensor.to(dtype)
        state[name] = converted[key]
    return state


def _record_config_dtype(model_dir: Path, dtype: torch.dtype) -> None:
    """``save_pretrained`` writes the in-memory dtype into config.json; name the file's dtype."""
    config_file = model_dir / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["dtype"] = str(dtype).removeprefix("torch.")
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def load_checkpoint(path, *, device="cpu"):
    """Load any model artifact, a checkpoint directory or a delta chain, with its tokenizer.

    The model is always fp32, whatever dtype its files hold.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, deltas = io.delta_chain(path)
    if not (base / "config.json").is_file():
        raise io.ArtifactError(f"{base}: not a model directory (no config.json)")
    try:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).to(device)
    except (OSError, io.SafetensorError, ValueError) as e:
        raise io.ArtifactError(f"{base}: could not load checkpoint ({e})") from e
    has_tokenizer = (base / "tokenizer_config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(base) if has_tokenizer else None
    for delta in deltas:
        try:
            apply_delta(model, delta)
        except ValueError as e:
            raise io.ArtifactError(f"{delta.path}: does not fit the model {base} ({e})") from e
    model.eval()
    return model, tokenizer


def resolve_pretrained(name_or_path: str, dtype: torch.dtype = torch.float32):
    """Load a named HF checkpoint (a local directory, or a hub id where the hub is reachable)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = Path(name_or_path)
    if not local.exists() and (name_or_path.startswith((".", "/")) or name_or_path.count("/") != 1):
        raise FileNotFoundError(f"model {name_or_path!r}: no such directory, and not a hub id 'org/name'")
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype)
    ensure_pad_token(tokenizer)
    return model, tokenizer


def ensure_pad_token(tokenizer) -> None:
    if tokenizer.pad_token is None:
        # Llama-3 ships no pad token; padding is masked out everywhere, so EOS serves.
        tokenizer.pad_token = tokenizer.eos_token
