"""Artifacts on disk: the only module that reads or writes safetensors.

Four kinds of artifact leave a stage:

* a **full checkpoint**: a Hugging Face model directory (``config.json``,
  ``model.safetensors``, tokenizer files) plus ``unloc.json`` with its provenance and the
  content hash of its weights;
* a **sparse delta**: one safetensors file holding, per layer, the indices of the changed
  entries of ``mlp.down_proj.weight`` (value-vector columns, output rows or single elements)
  and the new-minus-parent values; its metadata names the parent artifact (path relative to
  the delta, content hash), the stage, the config digest and the stage version;
* a **mask**: one safetensors file of boolean tensors (one per layer) with its granularity
  and metadata;
* **gradients**: one safetensors file of float32 tensors, one per set (forget, retain) and
  parameter name, with the statistic they hold (WME's g_f and g_r, or empirical Fishers).

Full checkpoints (checkpoints.py writes them with ``save_pretrained``) are written in the
dtype the stage asks for (bf16 under ``precision: bf16``), deltas always in fp32, so that
θr + δ rebuilds θo to fp32 rounding whatever θr's dtype.

Every write is atomic: the bytes go to a temporary sibling that is renamed into place only
once complete, so an interrupted job never leaves a half file that Snakemake would trust.
Nothing here unpickles: no ``torch.load``.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

CHECKPOINT_META = "unloc.json"
DELTA_FORMAT = "unloc-delta/2"
MASK_FORMAT = "unloc-mask/2"
GRADIENTS_FORMAT = "unloc-gradients/1"


class ArtifactError(RuntimeError):
    """A stage input is missing, corrupt, or does not fit what it is applied to."""


# --------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``final``; rename it over ``final`` on success only."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{final.name}.tmp-"
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=final.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, dir=final.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        # mkstemp/mkdtemp create owner-only files; give the result the usual umask mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, (0o777 if is_dir else 0o666) & ~umask)
        if is_dir and final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike):
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"missing file: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path}: not valid JSON ({e})") from e


def write_jsonl(path: str | os.PathLike, records) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def write_csv(path: str | os.PathLike, rows: list[dict], columns: list[str]) -> None:
    """A CSV table with a header, written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """A CSV table's rows as written (strings), as ``write_csv`` wrote them."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"missing file: {path}")
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """JSON Lines, skipping blank lines (TOFU's files have no final newline)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"missing file: {path}")
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ArtifactError(f"{path}:{lineno}: not a JSON line ({e})") from e
    return records


# --------------------------------------------------------------------------- hashing


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def config_digest(params) -> str:
    """A short stable digest of a stage's parameters (canonical JSON)."""
    blob = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def weights_sha256(model_dir: str | os.PathLike) -> str:
    """Content hash of a checkpoint directory's weight files (in name order)."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise ArtifactError(f"{model_dir}: no *.safetensors weight files")
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()


def artifact_hash(path: str | os.PathLike) -> str:
    """The content hash a child artifact records for its parent."""
    path = Path(path)
    if path.is_dir():
        meta_file = path / CHECKPOINT_META
        if meta_file.is_file():
            return read_json(meta_file)["content_hash"]
        return weights_sha256(path)
    if path.is_file():
        return file_sha256(path)
    raise ArtifactError(f"missing artifact: {path}")


# --------------------------------------------------------------------------- safetensors


def write_safetensors(path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write tensors and metadata atomically, as the same bytes for the same content."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    data = canonical_safetensors(safetensors_bytes(tensors, metadata={k: str(v) for k, v in metadata.items()}))
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def canonical_safetensors(data: bytes) -> bytes:
    """The same safetensors file with the keys of its JSON header sorted.

    The library writes the metadata from a hash map whose order differs from process to
    process, so the same content would give different bytes, and a child artifact that pins
    its parent by file hash would record a different hash on every rerun. Tensor offsets are
    relative to the data section, so reordering the header moves no tensor.
    """
    n = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the format pads the header to 8 bytes with spaces
    return len(header).to_bytes(8, "little") + header + data[8 + n:]


def read_safetensors(path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"missing file: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (a safetensors handle, not a dict)
    except (SafetensorError, OSError, ValueError) as e:
        raise ArtifactError(f"{path}: corrupt or truncated safetensors file ({e})") from e
    return tensors, metadata


def _expect_format(path, metadata: dict[str, str], fmt: str) -> None:
    if metadata.get("format") != fmt:
        raise ArtifactError(
            f"{path}: expected a {fmt!r} artifact, found format {metadata.get('format')!r}"
        )


Gradients = dict[str, dict[str, torch.Tensor]]
"""Per set name ("forget", "retain"), one float32 tensor per parameter name."""


def save_gradients(path, gradients: Gradients, metadata: dict) -> None:
    """Every set's tensors in one file, keyed ``<set>/<parameter name>``; ``metadata`` must say
    the ``statistic`` they hold. Every set covers the same parameters at the same shapes."""
    if "statistic" not in metadata:
        raise ValueError(f"{path}: gradients metadata must name their statistic")
    _check_gradient_sets(gradients, ValueError, path)
    tensors = {}
    for set_name, per_param in gradients.items():
        if not set_name or "/" in set_name:
            raise ValueError(f"{path}: set name {set_name!r} must be non-empty and hold no '/'")
        for name, t in per_param.items():
            if not t.is_floating_point():
                raise ValueError(f"{path}: {set_name}/{name} has dtype {t.dtype}; gradients are floating point")
            tensors[f"{set_name}/{name}"] = t.to(torch.float32)
    write_safetensors(path, tensors, {**metadata, "format": GRADIENTS_FORMAT})


def load_gradients(path) -> tuple[Gradients, dict[str, str]]:
    """(gradients per set and parameter name, metadata) of a gradients file, refusing anything
    that is not one."""
    tensors, metadata = read_safetensors(path)
    _expect_format(path, metadata, GRADIENTS_FORMAT)
    if "statistic" not in metadata:
        raise ArtifactError(f"{path}: gradients metadata has no 'statistic'")
    gradients: Gradients = {}
    for key, t in tensors.items():
        set_name, sep, name = key.partition("/")
        if not sep or not set_name or not name:
            raise ArtifactError(f"{path}: unexpected tensor {key!r} (expected <set>/<parameter name>)")
        if t.dtype != torch.float32:
            raise ArtifactError(f"{path}: {key} has dtype {t.dtype}; gradients are stored in float32")
        gradients.setdefault(set_name, {})[name] = t
    _check_gradient_sets(gradients, ArtifactError, path)
    return gradients, metadata


def _check_gradient_sets(gradients: Gradients, error: type[Exception], path) -> None:
    """At least one set, and all with the same parameter names and shapes: a weighting pairs
    g_f and g_r entry by entry."""
    if not gradients or not any(gradients.values()):
        raise error(f"{path}: no gradients")
    shapes = {set_name: {n: tuple(t.shape) for n, t in per_param.items()} for set_name, per_param in gradients.items()}
    first, *others = shapes
    for set_name in others:
        if shapes[set_name] != shapes[first]:
            differ = sorted(set(shapes[set_name].items()) ^ set(shapes[first].items()))
            raise error(f"{path}: sets {first!r} and {set_name!r} differ in parameters or shapes "
                        f"(first differing: {differ[0][0]!r})")


# --------------------------------------------------------------------------- masks and deltas
#
# Both are per decoder layer and address entries of ``mlp.down_proj.weight`` [d_model, d_ff]
# at one of three granularities: value-vector ``columns`` (seeds/000), output ``rows``
# (SIMU's neurons), single ``elements`` (WAGLE per weight, WME).

GRANULARITIES = ("columns", "rows", "elements")
MASK_DIMS = {"columns": 1, "rows": 1, "elements": 2}


def check_granularity(granularity: str, where: str) -> str:
    if granularity not in GRANULARITIES:
        raise ArtifactError(f"{where}: unknown granularity {granularity!r} (allowed: {', '.join(GRANULARITIES)})")
    return granularity


def save_mask(path, layers: dict[int, torch.Tensor], granularity: str, metadata: dict) -> None:
    """Per layer a boolean tensor: [d_ff] (columns), [d_model] (rows) or [d_model, d_ff] (elements)."""
    check_granularity(granularity, str(path))
    for layer, m in layers.items():
        if m.dtype != torch.bool or m.dim() != MASK_DIMS[granularity]:
            raise ValueError(f"{path}: layer {layer}: a {granularity} mask is a {MASK_DIMS[granularity]}-D bool "
                             f"tensor, got {m.dim()}-D {m.dtype}")
    tensors = {f"layers.{layer}.down_proj": m for layer, m in layers.items()}
    write_safetensors(path, tensors, {**metadata, "granularity": granularity, "format": MASK_FORMAT})


def load_mask(path) -> tuple[dict[int, torch.Tensor], str, dict[str, str]]:
    """(layers, granularity, metadata) of a mask file, refusing anything that is not one."""
    tensors, metadata = read_safetensors(path)
    _expect_format(path, metadata, MASK_FORMAT)
    granularity = check_granularity(metadata.get("granularity", "?"), str(path))
    layers = {}
    for key, m in tensors.items():
        if m.dtype != torch.bool:
            raise ArtifactError(f"{path}: {key} has dtype {m.dtype}; a mask holds bool tensors only")
        if m.dim() != MASK_DIMS[granularity]:
            raise ArtifactError(f"{path}: {key} is {m.dim()}-D; a {granularity} mask holds "
                                f"{MASK_DIMS[granularity]}-D tensors")
        layers[_layer_of(key, path)] = m
    if not layers or sorted(layers) != list(range(len(layers))):
        raise ArtifactError(f"{path}: mask layers must be 0..L-1, found {sorted(layers)}")
    return layers, granularity, metadata


def _layer_of(key: str, path) -> int:
    parts = key.split(".")
    if len(parts) < 3 or parts[0] != "layers" or not parts[1].isdigit() or parts[2] != "down_proj":
        raise ArtifactError(f"{path}: unexpected tensor {key!r} (expected layers.<l>.down_proj...)")
    return int(parts[1])


@dataclass
class Delta:
    """New-minus-parent values of some entries of each layer's ``mlp.down_proj.weight``.

    ``layers[layer] = (indices [k] int64, values)``: for ``columns`` the value vectors changed and
    values [d_model, k]; for ``rows`` the output rows and values [k, d_ff]; for ``elements`` flat
    (row-major) indices into the weight and values [k]. ``parent`` is the artifact it applies
    to, ``path`` the file it was read from (None when built in memory).
    """

    layers: dict[int, tuple[torch.Tensor, torch.Tensor]]
    parent: Path | None
    granularity: str = "columns"
    metadata: dict[str, str] = field(default_factory=dict)
    path: Path | None = None


def delta_value_shape_ok(granularity: str, idx: torch.Tensor, values: torch.Tensor) -> bool:
    k = idx.numel()
    if granularity == "columns":
        return values.dim() == 2 and values.shape[1] == k
    if granularity == "rows":
        return values.dim() == 2 and values.shape[0] == k
    return values.dim() == 1 and values.shape[0] == k


def save_delta(path, layers, *, parent, metadata: dict, granularity: str = "columns") -> None:
    """Write a sparse delta whose metadata pins its parent by relative path and hash."""
    path, parent = Path(path), Path(parent)
    check_granularity(granularity, str(path))
    tensors = {}
    for layer, (idx, values) in layers.items():
        if not delta_value_shape_ok(granularity, idx, values):
            raise ValueError(f"{path}: layer {layer}: {idx.numel()} {granularity} indices but values of shape "
                             f"{tuple(values.shape)}")
        tensors[f"layers.{layer}.down_proj.{granularity}"] = idx.to(torch.int64)
        # fp32 whatever the weights' dtype: a bf16 delta would round θo away from what was trained
        tensors[f"layers.{layer}.down_proj.delta"] = values.to(torch.float32)
    meta = {
        **{k: str(v) for k, v in metadata.items()},
        "format": DELTA_FORMAT,
        "granularity": granularity,
        "parent": os.path.relpath(parent.resolve(), path.parent.resolve()),
        "parent_hash": artifact_hash(parent),
    }
    write_safetensors(path, tensors, meta)


def load_delta(path) -> Delta:
    path = Path(path)
    tensors, metadata = read_safetensors(path)
    _expect_format(path, metadata, DELTA_FORMAT)
    granularity = check_granularity(metadata.get("granularity", "?"), str(path))
    layers = {}
    for key, idx in tensors.items():
        if key.endswith(".delta"):
            continue
        layer = _layer_of(key, path)
        if key != f"layers.{layer}.down_proj.{granularity}":
            raise ArtifactError(f"{path}: tensor {key!r} does not belong to a {granularity} delta")
        values = tensors.get(f"layers.{layer}.down_proj.delta")
        if values is None or idx.dtype != torch.int64 or not delta_value_shape_ok(granularity, idx, values):
            raise ArtifactError(f"{path}: layer {layer} has mismatched indices and values")
        layers[layer] = (idx, values)
    if any(_layer_of(k, path) not in layers for k in tensors):
        raise ArtifactError(f"{path}: a layer has values but no indices")
    for key in ("parent", "parent_hash"):
        if key not in metadata:
            raise ArtifactError(f"{path}: delta metadata has no {key!r}")
    parent = (path.parent / metadata["parent"]).resolve()
    return Delta(layers=layers, parent=parent, granularity=granularity, metadata=metadata, path=path)


def delta_chain(path) -> tuple[Path, list[Delta]]:
    """Follow parents from ``path`` to the full checkpoint it is built on.

    Returns the base checkpoint directory and the deltas to apply to it, base first.
    Every link is verified: a delta whose recorded parent hash does not match the
    artifact now at that path is refused.
    """
    path = Path(path)
    deltas: list[Delta] = []
    seen = set()
    while not path.is_dir():
        if not path.exists():
            raise ArtifactError(f"missing artifact: {path}")
        if path.resolve() in seen:
            raise ArtifactError(f"{path}: delta chain loops back on itself")
        seen.add(path.resolve())
        delta = load_delta(path)
        if not delta.parent.exists():
            raise ArtifactError(f"{path}: parent artifact {delta.parent} is missing")
        actual = artifact_hash(delta.parent)
        if actual != delta.metadata["parent_hash"]:
            raise ArtifactError(
                f"{path}: was made from a parent with hash {delta.metadata['parent_hash'][:12]}..., "
                f"but {delta.parent} now has hash {actual[:12]}... (wrong or rebuilt parent)"
            )
        deltas.append(delta)
        path = delta.parent
    return path, deltas[::-1]


def artifact_metadata(path) -> dict:
    """What an artifact records about how it was made: a delta's metadata or a checkpoint
    directory's ``unloc.json`` (empty for a plain HF directory)."""
    path = Path(path)
    if path.is_dir():
        meta_file = path / CHECKPOINT_META
        return read_json(meta_file) if meta_file.is_file() else {}
    return load_delta(path).metadata
