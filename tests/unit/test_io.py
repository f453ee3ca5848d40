"""Artifacts: deltas pin their parent, corrupt and mismatched files fail clearly, writes are atomic."""

import pytest
import torch

from tinymodels import make_tiny_model
from unloc import io
from unloc.masks import load_mask, save_mask, target_mask
from unloc.models import apply_delta, column_delta, down_proj, gather_columns

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def save_tiny(path, seed=0):
    io.save_checkpoint(make_tiny_model(seed), None, path, {"stage": "test"})
    return path


def perturbed_columns(model, indices):
    before = gather_columns(model, indices)
    with torch.no_grad():
        for l, idx in indices.items():
            down_proj(model, l).weight[:, idx] += 0.5
    return column_delta(model, before, indices)


def test_delta_round_trip_reproduces_the_model(tmp_path):
    parent = save_tiny(tmp_path / "parent")
    model, _ = io.load_checkpoint(parent)
    indices = target_mask(2, 64, 0.2, seed=1).indices()
    columns = perturbed_columns(model, indices)
    io.save_delta(tmp_path / "d" / "delta.safetensors", columns, parent=parent, metadata={"stage": "t"})
    rebuilt, _ = io.load_checkpoint(tmp_path / "d" / "delta.safetensors")
    for (k, a), b in zip(model.state_dict().items(), rebuilt.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=k)


def test_delta_on_a_wrong_parent_is_refused(tmp_path):
    parent = save_tiny(tmp_path / "parent")
    model, _ = io.load_checkpoint(parent)
    columns = perturbed_columns(model, target_mask(2, 64, 0.1, seed=1).indices())
    io.save_delta(tmp_path / "delta.safetensors", columns, parent=parent, metadata={})
    save_tiny(tmp_path / "parent", seed=1)  # parent rebuilt with other weights
    with pytest.raises(io.ArtifactError, match="wrong or rebuilt parent"):
        io.load_checkpoint(tmp_path / "delta.safetensors")


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
        io.load_checkpoint(tmp_path / "nope.safetensors")


def test_mask_that_does_not_fit_the_model_names_both_shapes(tmp_path):
    path = tmp_path / "mask.safetensors"
    save_mask(path, target_mask(3, 64, 0.1, seed=0))
    with pytest.raises(ValueError, match="3 layers x 64 value vectors does not fit the model's 2 layers x 64"):
        load_mask(path, make_tiny_model())


def test_delta_with_wrong_shapes_is_refused(tiny_model):
    delta = io.Delta(columns={0: (torch.tensor([1, 200]), torch.zeros(32, 2))}, parent=None)
    with pytest.raises(ValueError, match="out of range"):
        apply_delta(tiny_model, delta)
    delta = io.Delta(columns={5: (torch.tensor([1]), torch.zeros(32, 1))}, parent=None)
    with pytest.raises(ValueError, match="layer 5"):
        apply_delta(tiny_model, delta)


def test_a_mask_is_not_a_delta(tmp_path):
    path = tmp_path / "mask.safetensors"
    save_mask(path, target_mask(2, 64, 0.1, seed=0))
    with pytest.raises(io.ArtifactError, match="expected a 'unloc-delta/1' artifact"):
        io.load_delta(path)


def test_interrupted_write_leaves_nothing(tmp_path):
    final = tmp_path / "out.txt"
    with pytest.raises(KeyboardInterrupt):
        with io.atomic_path(final) as tmp:
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
    model, _ = io.load_checkpoint(parent)
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
        subprocess.run([sys.executable, "-c", WRITE_IN_A_NEW_PROCESS, str(path)], check=True)
    assert len({io.file_sha256(p) for p in paths}) == 1
    tensors, metadata = io.read_safetensors(paths[0])
    assert torch.equal(tensors["b.delta"], torch.arange(6.0).reshape(2, 3))
    assert torch.equal(tensors["a.columns"], torch.tensor([3, 1]))
    assert metadata == {f"key{i}": f"value{i}" for i in range(12)}
    assert int.from_bytes(paths[0].read_bytes()[:8], "little") % 8 == 0
