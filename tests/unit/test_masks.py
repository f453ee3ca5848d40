import numpy as np
import pytest

from unloc.masks import n_selected, random_mask, target_mask


def test_target_is_the_ratio_of_all_value_vectors_and_seeded():
    a, b = target_mask(4, 100, 0.1, seed=7), target_mask(4, 100, 0.1, seed=7)
    assert a.count() == 40
    assert (a.flat() == b.flat()).all()
    assert not (a.flat() == target_mask(4, 100, 0.1, seed=8).flat()).all()


def test_target_is_drawn_over_the_whole_model_not_per_layer():
    # Per-layer draws would give exactly 10 per layer every time; whole-model draws vary.
    per_layer = {tuple(int(m.sum()) for m in target_mask(4, 100, 0.1, seed=s).layers.values()) for s in range(20)}
    assert len(per_layer) > 1


def test_random_region_is_disjoint_from_target_and_as_large():
    tgt = target_mask(6, 50, 0.1, seed=3)
    rdm = random_mask(tgt, 0.1, seed=3)
    assert rdm.count() == tgt.count() == n_selected(6, 50, 0.1)
    assert not (tgt.flat() & rdm.flat()).any()


def test_random_region_is_uniform_outside_the_target():
    tgt = target_mask(2, 50, 0.2, seed=0)
    hits = np.zeros(100)
    for s in range(400):
        hits += random_mask(tgt, 0.2, seed=s).flat().numpy().reshape(-1)
    outside = ~tgt.flat().numpy().reshape(-1)
    assert hits[~outside].sum() == 0
    # each outside vector is picked with probability 20/80 = 0.25
    assert abs(hits[outside].mean() / 400 - 0.25) < 0.01


def test_ratio_too_large_for_a_disjoint_region():
    with pytest.raises(ValueError, match="cannot draw"):
        random_mask(target_mask(1, 10, 0.6, seed=0), 0.6, seed=0)
