"""Artifacts: deltas pin their parent, corrupt and mismatched files fail clearly, writes are atomic."""

import pytest
import torch

from unloc import io
from unloc.checkpoints import load_checkpoint, save_checkpoint
from unloc.localizers import oracle_mask as target_mask
from unloc.masks import Mask, load_mask, save_mask
from unloc.models import apply_delta, down_proj, entry_delta, gather_entries

from tinymodels import make_tiny_model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def save_tiny(path, seed=0):
    save_checkpoint(make_tiny_model(seed), None, path, {"stage": "test"})
    return path


def perturbed_columns(model, indices):
    before = gather_entries(model, "columns", indices)
    with torch.no_grad():
        for layer, idx in indices.items():
            down_proj(model, layer).weight[:, idx] += 0.5
    return entry_delta(model, before, "columns", indices)


def test_delta_round_trip_reproduces_the_model(tmp_path):
    parent = save_tiny(tmp_path / "parent")
    model, _ = load_checkpoint(parent)
    indices = target_mask(2, 64, 0.2, seed=1).indices()
    columns = perturbed_columns(model, indices)
    io.save_delta(tmp_path / "d" / "delta.safetensors", columns, parent=parent, metadata={"stage": "t"})
    rebuilt, _ = load_checkpoint(tmp_path / "d" / "delta.safetensors")
    for (k, a), b in zip(model.state_dict().items(), rebuilt.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=k)


def test_delta_on_a_wrong_parent_is_refused(tmp_path):
    parent = save_tiny(tmp_path / "parent")
    model, _ = load_checkpoint(parent)
    columns = perturbed_columns(model, target_mask(2, 64, 0.1, seed=1).indices())
    io.save_delta(tmp_path / "delta.safetensors", columns, parent=parent, metadata={})
    save_tiny(tmp_path / "parent", seed=1)  # parent rebuilt with other weights
    with pytest.raises(io.ArtifactError, match="wrong or rebuilt parent"):
        load_checkpoint(tmp_path / "delta.safetensors")


def test_truncated_safetensors_is_a_clear_error(tmp_path):
    mask = target_mask(2, 64, 0.1, seed=0)
    path = tmp_path / "mask.safetensors"
    save_mask(path, mask)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(io.ArtifactError, match="corrupt or truncated"):
        load_mask(path)


def test_missing_artifact_names_the_path(tmp_path):
    with pytest.raises(io.ArtifactError, match="missing"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_mask_that_does_not_fit_the_model_names_both_shapes(tmp_path):
    path = tmp_path / "mask.safetensors"
    save_mask(path, target_mask(3, 64, 0.1, seed=0))
    with pytest.raises(io.ArtifactError, match="3 layers x 64 value vectors does not fit the model's 2 layers x 64"):
        load_mask(path, make_tiny_model())


def test_delta_with_wrong_shapes_is_refused(tiny_model):
    delta = io.Delta(layers={0: (torch.tensor([1, 200]), torch.zeros(32, 2))}, parent=None)
    with pytest.raises(ValueError, match="out of range"):
        apply_delta(tiny_model, delta)
    delta = io.Delta(layers={5: (torch.tensor([1]), torch.zeros(32, 1))}, parent=None)
    with pytest.raises(ValueError, match="layer 5"):
        apply_delta(tiny_model, delta)


def test_a_mask_is_not_a_delta(tmp_path):
    path = tmp_path / "mask.safetensors"
    save_mask(path, target_mask(2, 64, 0.1, seed=0))
    with pytest.raises(io.ArtifactError, match="expected a 'unloc-delta/2' artifact"):
        io.load_delta(path)


def test_interrupted_write_leaves_nothing(tmp_path):
    final = tmp_path / "out.txt"
    with pytest.raises(KeyboardInterrupt), io.atomic_path(final) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_records_its_content_hash(tmp_path):
    path = save_tiny(tmp_path / "ckpt")
    meta = io.read_json(path / io.CHECKPOINT_META)
    assert meta["content_hash"] == io.weights_sha256(path)


def test_export_materialises_a_delta_as_a_plain_hf_directory(tmp_path):
    from transformers import AutoModelForCausalLM

    from unloc.cli import main

    parent = save_tiny(tmp_path / "parent")
    model, _ = load_checkpoint(parent)
    columns = perturbed_columns(model, target_mask(2, 64, 0.1, seed=2).indices())
    io.save_delta(tmp_path / "delta.safetensors", columns, parent=parent, metadata={})
    assert main(["export", str(tmp_path / "delta.safetensors"), str(tmp_path / "full")]) == 0
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "full")
    for (k, a), b in zip(model.state_dict().items(), exported.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=k)


WRITE_IN_A_NEW_PROCESS = """
import sys, torch
from unloc import io
tensors = {"b.delta": torch.arange(6.0).reshape(2, 3), "a.columns": torch.tensor([3, 1])}
io.write_safetensors(sys.argv[1], tensors, {f"key{i}": f"value{i}" for i in range(12)})
"""


def test_same_content_gives_the_same_bytes_in_every_process(tmp_path):
    """The library orders metadata keys differently per process; a parent's file hash must not."""
    import subprocess
    import sys

    paths = [tmp_path / f"{i}.safetensors" for i in range(4)]
    for path in paths:
        subprocess.run([sys.executable, "-c", WRITE_IN_A_NEW_PROCESS, str(path)], check=True, timeout=600)  # hang guard
    assert len({io.file_sha256(p) for p in paths}) == 1
    tensors, metadata = io.read_safetensors(paths[0])
    assert torch.equal(tensors["b.delta"], torch.arange(6.0).reshape(2, 3))
    assert torch.equal(tensors["a.columns"], torch.tensor([3, 1]))
    assert metadata == {f"key{i}": f"value{i}" for i in range(12)}
    assert int.from_bytes(paths[0].read_bytes()[:8], "little") % 8 == 0


# --------------------------------------------------------------------------- masks and deltas at every granularity


def masks_of_every_granularity(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"columns": Mask({layer: torch.rand(64, generator=g) < 0.2 for layer in range(2)}, "columns"),
            "rows": Mask({layer: torch.rand(32, generator=g) < 0.2 for layer in range(2)}, "rows"),
            "elements": Mask({layer: torch.rand(32, 64, generator=g) < 0.2 for layer in range(2)}, "elements")}


@pytest.mark.parametrize("granularity", io.GRANULARITIES)
def test_mask_and_delta_round_trip_at_every_granularity(tmp_path, granularity):
    mask = masks_of_every_granularity()[granularity]
    save_mask(tmp_path / "mask.safetensors", mask)
    loaded = load_mask(tmp_path / "mask.safetensors", make_tiny_model())
    assert loaded.granularity == granularity and torch.equal(loaded.flat(), mask.flat())

    parent = save_tiny(tmp_path / "parent")
    model, _ = load_checkpoint(parent)
    indices = mask.indices()
    before = gather_entries(model, granularity, indices)
    with torch.no_grad():
        for layer in indices:
            weight, m = down_proj(model, layer).weight, mask.layers[layer]
            allowed = {"columns": m[None, :], "rows": m[:, None], "elements": m}[granularity].expand_as(weight)
            weight += 0.25 * allowed
    io.save_delta(tmp_path / "delta.safetensors", entry_delta(model, before, granularity, indices), parent=parent,
                  metadata={}, granularity=granularity)
    rebuilt, _ = load_checkpoint(tmp_path / "delta.safetensors")
    for (k, a), b in zip(model.state_dict().items(), rebuilt.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=k)
    assert io.load_delta(tmp_path / "delta.safetensors").granularity == granularity


def test_a_float_mask_is_refused_by_name(tmp_path):
    path = tmp_path / "mask.safetensors"
    io.write_safetensors(path, {f"layers.{layer}.down_proj": torch.ones(64) for layer in range(2)},
                         {"format": io.MASK_FORMAT, "granularity": "columns"})
    with pytest.raises(io.ArtifactError, match=f"{path}: layers.0.down_proj has dtype torch.float32"):
        load_mask(path)


@pytest.mark.parametrize("metadata,tensor,message", [
    ({"granularity": "columns"}, torch.ones(32, 64, dtype=torch.bool), "is 2-D; a columns mask holds 1-D tensors"),
    ({"granularity": "diagonal"}, torch.ones(64, dtype=torch.bool), "unknown granularity 'diagonal'"),
    ({}, torch.ones(64, dtype=torch.bool), "unknown granularity '\\?'"),
])
def test_a_mask_of_another_granularity_or_shape_is_refused_by_name(tmp_path, metadata, tensor, message):
    path = tmp_path / "mask.safetensors"
    io.write_safetensors(path, {"layers.0.down_proj": tensor}, {"format": io.MASK_FORMAT, **metadata})
    with pytest.raises(io.ArtifactError, match=f"{path}: .*{message}"):
        load_mask(path)


def test_a_rows_mask_on_a_columns_sized_model_names_both_shapes(tmp_path):
    path = tmp_path / "rows.safetensors"
    save_mask(path, Mask({layer: torch.ones(64, dtype=torch.bool) for layer in range(2)}, "rows"))
    with pytest.raises(io.ArtifactError, match="2 layers x 64 output rows does not fit the model's 2 layers x 32"):
        load_mask(path, make_tiny_model())


def test_a_delta_that_does_not_fit_is_refused_with_its_file_name(tmp_path):
    parent = save_tiny(tmp_path / "parent")
    bad = {0: (torch.tensor([1, 2]), torch.zeros(16, 2))}  # 16 rows, the model's d_model is 32
    io.save_delta(tmp_path / "delta.safetensors", bad, parent=parent, metadata={})
    with pytest.raises(io.ArtifactError, match=f"{tmp_path / 'delta.safetensors'}: .*has 16 rows, but the model's "
                                                "d_model is 32"):
        load_checkpoint(tmp_path / "delta.safetensors")
