"""WME's ``edit`` stage: θ_final = θ_full + W ⊙ (−(θ_fgt − θ_0)) on the models of ``finetune``
(θ_full on all data, θ_fgt on the forget set only) and the gradients of ``gradients``, checked
against the formula computed here from the three state dicts, and the checks that refuse a
θ_fgt of another θ_0, gradients of another model and a --gradients that does not fit the weighting."""

import json
import shutil

import pytest
import torch

from tinyworld import build_tiny_world
from unloc import io, stages
from unloc.checkpoints import load_checkpoint
from unloc.cli import main
from unloc.registry import ConfigError
from unloc.weightings import WEIGHTINGS, edit, task_vector

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

FINETUNE = {"precision": "fp32", "max_length": 96, "system_prompt": None, "seed": 0,
            "train": {"lr": 1e-3, "epochs": 2, "batch_size": 4}}
GRADIENTS = {"precision": "fp32", "max_length": 96, "system_prompt": None, "batch_size": 8}
GRAD_EPS = 1e-12  # GradSettings' default ε
PICKED = "model.layers.0.mlp.down_proj.weight"  # the tensor whose grad weights are computed here by hand


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """θ_0 (pretrained), θ_full and θ_fgt fine-tuned from it, and the gradients at θ_0."""
    root = tmp_path_factory.mktemp("wme_edit")
    build_tiny_world(root, "theta_0", num_layers=2, epochs=1)
    for split, name in (("full", "theta_full"), ("forget", "theta_fgt")):
        stages.finetune(FINETUNE, root / "theta_0", root / "data", split, root / name, root / f"{name}.csv")
    stages.gradients(GRADIENTS, root / "theta_0", root / "data", root / "gradients.safetensors")
    return root


def run_edit(built, out, weighting, gradients=None, theta_0=None):
    stages.edit({"precision": "fp32", "weighting": weighting}, built / "theta_full", built / "theta_fgt",
                theta_0 or built / "theta_0", out, gradients)
    return parameters(out)


def parameters(path) -> dict[str, torch.Tensor]:
    return {name: p.detach() for name, p in load_checkpoint(path)[0].named_parameters()}


@pytest.fixture(scope="module")
def states(built):
    return {name: parameters(built / name) for name in ("theta_full", "theta_fgt", "theta_0")}


def test_tv_subtracts_the_whole_forget_task_vector(built, states, tmp_path):
    edited = run_edit(built, tmp_path / "out", "tv")
    full, fgt, base = states["theta_full"], states["theta_fgt"], states["theta_0"]
    assert edited.keys() == full.keys()
    for name, tensor in edited.items():
        torch.testing.assert_close(tensor, full[name] - (fgt[name] - base[name]), rtol=0, atol=1e-6)
        # fine-tuning on the forget set (with weight decay) moves every parameter, so the edit does too
        assert not torch.equal(tensor, full[name]), name


def test_weighted_with_omega_zero_leaves_theta_full_as_it_is(built, states, tmp_path):
    edited = run_edit(built, tmp_path / "out", {"name": "weighted", "omega": 0.0})
    assert edited.keys() == states["theta_full"].keys()
    for name, tensor in edited.items():
        assert torch.equal(tensor, states["theta_full"][name]), name


def test_grad_weights_each_entry_by_its_share_of_the_gradient_magnitudes(built, states, tmp_path):
    path = built / "gradients.safetensors"
    edited = run_edit(built, tmp_path / "out", "grad", gradients=path)
    full, fgt, base = states["theta_full"], states["theta_fgt"], states["theta_0"]
    sets, _ = io.load_gradients(path)
    g_f, g_r = sets["forget"][PICKED].abs(), sets["retain"][PICKED].abs()
    by_hand = (g_f + GRAD_EPS) / (g_r + g_f + 2 * GRAD_EPS)
    assert not torch.allclose(by_hand, torch.ones_like(by_hand))  # a weighting, not tv
    torch.testing.assert_close(edited[PICKED], full[PICKED] - by_hand * (fgt[PICKED] - base[PICKED]),
                               rtol=0, atol=1e-6)
    grad = WEIGHTINGS["grad"]
    weights = grad.fn(grad.settings(), task_vector(fgt, base), sets["forget"], sets["retain"])
    assert all(((w >= 0) & (w <= 1)).all() for w in weights.values())
    expected = edit(full, fgt, base, weights)
    for name, tensor in edited.items():
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=1e-6)


def test_gradients_are_given_exactly_to_the_weightings_that_read_them(built, tmp_path):
    with pytest.raises(ConfigError, match="'grad'.*--gradients"):
        run_edit(built, tmp_path / "grad", "grad")
    with pytest.raises(ConfigError, match="'tv' reads no gradients"):
        run_edit(built, tmp_path / "tv", "tv", gradients=built / "gradients.safetensors")
    assert not (tmp_path / "grad").exists() and not (tmp_path / "tv").exists()


def test_theta_fgt_of_another_theta_0_is_refused_before_anything_is_written(built, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(io.ArtifactError, match="theta_fgt: not fine-tuned from .*theta_full"):
        run_edit(built, out, "tv", theta_0=built / "theta_full")
    assert not out.exists()


def test_gradients_of_another_model_are_refused(built, tmp_path):
    # the same θ_0 under another path: θ_fgt's lineage holds (same hash), the gradients were taken elsewhere
    copy = tmp_path / "theta_0_copy"
    shutil.copytree(built / "theta_0", copy)
    out = tmp_path / "out"
    with pytest.raises(io.ArtifactError, match="neither θ_0"):
        run_edit(built, out, "grad", gradients=built / "gradients.safetensors", theta_0=copy)
    assert not out.exists()


def test_gradients_of_another_statistic_are_refused(built, tmp_path):
    sets, metadata = io.load_gradients(built / "gradients.safetensors")
    fishers = tmp_path / "fishers.safetensors"
    io.save_gradients(fishers, sets, {**metadata, "statistic": "empirical_fisher"})
    with pytest.raises(ConfigError, match="reads mean_gradient"):
        run_edit(built, tmp_path / "out", "grad", gradients=fishers)
    assert not (tmp_path / "out").exists()


def test_the_edit_records_its_stage_weighting_and_inputs(built, tmp_path):
    gradients = built / "gradients.safetensors"
    run_edit(built, tmp_path / "out", {"name": "grad", "eps": 1e-8}, gradients=gradients)
    meta = io.artifact_metadata(tmp_path / "out")
    assert meta["stage"] == "edit" and meta["weighting"] == "grad"
    assert meta["parent"] == str(built / "theta_full")
    assert meta["parent_hash"] == io.artifact_hash(built / "theta_full")
    assert meta["theta_fgt_hash"] == io.artifact_hash(built / "theta_fgt")
    assert meta["theta_0_hash"] == io.artifact_hash(built / "theta_0")
    assert meta["gradients_hash"] == io.file_sha256(gradients)
    assert io.artifact_metadata(built / "theta_fgt")["parent_hash"] == io.artifact_hash(built / "theta_0")


def test_the_command_line_runs_the_edit_and_reports_a_refusal(built, tmp_path):
    paths = ["--theta-full", str(built / "theta_full"), "--theta-fgt", str(built / "theta_fgt"),
             "--theta-0", str(built / "theta_0")]
    assert main(["edit", "--params", json.dumps({"weighting": "tv"}), *paths, "--out", str(tmp_path / "tv")]) == 0
    assert io.artifact_metadata(tmp_path / "tv")["weighting"] == "tv"
    assert main(["edit", "--params", json.dumps({"weighting": "grad"}), *paths, "--out", str(tmp_path / "grad")]) == 1
    assert not (tmp_path / "grad").exists()
