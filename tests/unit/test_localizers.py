"""Localizers: the oracle region V_tgt and the random region V_rdm (seeds/000 Section 4), the
localize stage that writes them, and what the registry requires of every localizer."""

import json

import numpy as np
import pytest
import torch

from unloc import io, stages
from unloc.localizers import (
    LOCALIZERS,
    Localization,
    LocalizerInputs,
    LocalizerSpec,
    localize,
    oracle_mask,
    random_mask,
)
from unloc.masks import Mask, load_mask, model_mask_shape, n_selected
from unloc.registry import ConfigError


def test_oracle_is_the_ratio_of_all_value_vectors_and_seeded():
    a, b = oracle_mask(4, 100, 0.1, seed=7), oracle_mask(4, 100, 0.1, seed=7)
    assert a.count() == 40 and a.granularity == "columns"
    assert (a.flat() == b.flat()).all()
    assert not (a.flat() == oracle_mask(4, 100, 0.1, seed=8).flat()).all()


def test_oracle_is_drawn_over_the_whole_model_not_per_layer():
    # Per-layer draws would give exactly 10 per layer every time; whole-model draws vary.
    per_layer = {tuple(int(m.sum()) for m in oracle_mask(4, 100, 0.1, seed=s).layers.values()) for s in range(20)}
    assert len(per_layer) > 1


def test_random_region_is_disjoint_from_the_oracle_and_as_large():
    tgt = oracle_mask(6, 50, 0.1, seed=3)
    rdm = random_mask(6, 50, 0.1, seed=3, outside=tgt)
    assert rdm.count() == tgt.count() == n_selected(300, 0.1)
    assert not (tgt.flat() & rdm.flat()).any()


def test_random_region_is_uniform_outside_the_oracle():
    tgt = oracle_mask(2, 50, 0.2, seed=0)
    hits = np.zeros(100)
    for s in range(400):
        hits += random_mask(2, 50, 0.2, seed=s, outside=tgt).flat().numpy().reshape(-1)
    outside = ~tgt.flat().numpy().reshape(-1)
    assert hits[~outside].sum() == 0
    # each outside vector is picked with probability 20/80 = 0.25
    assert abs(hits[outside].mean() / 400 - 0.25) < 0.01


def test_random_without_an_exclusion_is_uniform_over_all_value_vectors():
    hits = sum(random_mask(2, 50, 0.2, seed=s).flat().numpy().reshape(-1).astype(float) for s in range(400))
    assert abs(hits.mean() / 400 - 0.2) < 0.01 and hits.min() > 0


def test_ratio_too_large_for_a_disjoint_region():
    with pytest.raises(ValueError, match="cannot draw"):
        random_mask(1, 10, 0.6, seed=0, outside=oracle_mask(1, 10, 0.6, seed=0))


def fake_model_dir(tmp_path, n_layers=3, d_model=16, d_ff=40):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"num_hidden_layers": n_layers, "hidden_size": d_model,
                                                   "intermediate_size": d_ff}))
    (model / "model.safetensors").write_bytes(b"only the shapes are read")
    return model


def test_localize_stage_writes_the_oracle_and_a_random_region_outside_it(tmp_path):
    model = fake_model_dir(tmp_path)
    params = {"localizer": "oracle", "settings": {}, "ratio": 0.1, "seed": 7}
    stages.localize(params, model, tmp_path / "oracle.safetensors")
    stages.localize({**params, "localizer": "random"}, model, tmp_path / "random.safetensors",
                    mask=[f"oracle={tmp_path / 'oracle.safetensors'}"])
    tgt, rdm = load_mask(tmp_path / "oracle.safetensors"), load_mask(tmp_path / "random.safetensors")
    assert tgt.count() == rdm.count() == 12
    assert not (tgt.flat() & rdm.flat()).any()
    assert torch.equal(tgt.flat(), oracle_mask(3, 40, 0.1, 7).flat())
    assert tgt.metadata["seed"] == "7" and tgt.metadata["method"] == "oracle" and rdm.metadata["method"] == "random"
    assert len(tgt.metadata["source_hash"]) == 64


def test_localize_stage_refuses_a_missing_input_mask_and_bad_settings(tmp_path):
    model = fake_model_dir(tmp_path)
    params = {"localizer": "random", "settings": {}, "ratio": 0.1, "seed": 7}
    with pytest.raises(ConfigError, match="localizer random needs the mask of oracle"):
        stages.localize(params, model, tmp_path / "random.safetensors")
    with pytest.raises(ConfigError, match="masks.random.outsde: unknown setting; did you mean 'outside'"):
        stages.localize({**params, "settings": {"outsde": None}}, model, tmp_path / "random.safetensors")
    with pytest.raises(ConfigError, match="unknown localizer 'oracel'; did you mean 'oracle'"):
        stages.localize({**params, "localizer": "oracel"}, model, tmp_path / "random.safetensors")
    assert not (tmp_path / "random.safetensors").exists()


def test_a_scoring_localizer_writes_its_scores_beside_its_mask(tmp_path, monkeypatch):
    """The stage side of a localizer that scores (Activations, MemFlex, WAGLE register so)."""

    def by_index(inputs, settings, ratio, seed):
        scores = {layer: torch.arange(40, dtype=torch.float32) + layer for layer in range(3)}
        top = {layer: s - layer >= 36 for layer, s in scores.items()}  # the top 4 of each layer
        return Localization(Mask(top, "columns"), scores)

    spec = LocalizerSpec(name="by_index", fn=by_index, needs=("model",), scores=True)
    monkeypatch.setitem(LOCALIZERS._specs, "by_index", spec)
    model = fake_model_dir(tmp_path)
    params = {"localizer": "by_index", "settings": {}, "ratio": 0.1, "seed": 0}
    with pytest.raises(ConfigError, match="give --scores"):
        stages.localize(params, model, tmp_path / "mask.safetensors")
    stages.localize(params, model, tmp_path / "mask.safetensors", scores=tmp_path / "scores.safetensors")
    tensors, metadata = io.read_safetensors(tmp_path / "scores.safetensors")
    assert torch.equal(tensors["layers.2.down_proj.scores"], torch.arange(40.0) + 2)
    assert metadata["method"] == "by_index" and load_mask(tmp_path / "mask.safetensors").count() == 12


@pytest.mark.parametrize("name", LOCALIZERS.names())
def test_every_localizer_returns_a_mask_of_its_granularity_and_ratio(name):
    """Shapes alone for the uniform regions; a tiny random model and random QA for those that score."""
    from tinymodels import make_tiny_model, random_examples

    spec = LOCALIZERS[name]
    settings = spec.parse({}, f"masks.{name}")
    if spec.reads_weights:
        model = make_tiny_model(seed=0, layers=3, d_model=16, d_ff=40)
        inputs = LocalizerInputs(model_config=model.config.to_dict(), model=model, pad_id=0,
                                 sets={role: random_examples(6, seed=i) for i, role in enumerate(spec.roles)})
    else:
        config = {"num_hidden_layers": 3, "hidden_size": 16, "intermediate_size": 40}
        masks = {dep: oracle_mask(3, 40, 0.1, 1) for dep in spec.masks(settings)}
        inputs = LocalizerInputs(model_config=config, masks=masks)
    result = localize(name, settings, inputs, 0.1, 5)
    assert isinstance(result, Localization) and result.mask.granularity == spec.granularity
    assert result.mask.shape == model_mask_shape(inputs.model_config, spec.granularity)
    assert result.mask.count() == n_selected(result.mask.size(), 0.1)
    assert result.mask.metadata["method"] == name
    assert (result.scores is not None) == spec.scores
    # `seeded` is truthful: Section 3 runs a localizer that declares its mask seed-free only once
    other_seed = localize(name, settings, inputs, 0.1, 6).mask
    assert torch.equal(other_seed.flat(), result.mask.flat()) == (not spec.seeded)


def test_random_weights_is_the_ratio_of_all_single_weights_uniformly():
    config = {"num_hidden_layers": 2, "hidden_size": 5, "intermediate_size": 10}
    inputs = LocalizerInputs(model_config=config)
    masks = [localize("random_weights", None, inputs, 0.8, seed).mask for seed in range(200)]
    assert {m.granularity for m in masks} == {"elements"} and masks[0].shape == (2, 5, 10)
    assert {m.count() for m in masks} == {80}
    hits = sum(m.flat().numpy().reshape(-1).astype(float) for m in masks) / 200
    assert abs(hits.mean() - 0.8) < 1e-9 and hits.min() > 0.6 and hits.max() < 0.95  # uniform, not fixed
