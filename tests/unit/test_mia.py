"""MIA scores, AUC and privleak (metrics/mia.py) against their definitions, on cases whose answer
is known by construction."""

import itertools
import math
import zlib

import numpy as np
import pytest

from unloc.metrics.mia import mia_auc, min_k_score, privleak, zlib_score


def pair_count_auc(forget, holdout) -> float:
    """The definition: the share of (forget, holdout) pairs where the holdout item scores
    higher, a tie counting half."""
    pairs = list(itertools.product(forget, holdout))
    return sum(1.0 if h > f else 0.5 if h == f else 0.0 for f, h in pairs) / len(pairs)


def test_auc_is_one_when_every_forget_item_scores_below_every_holdout_item():
    assert mia_auc([0.1, 0.2, 0.3], [0.5, 0.9]) == 1.0


def test_auc_is_zero_when_the_order_is_reversed():
    assert mia_auc([0.5, 0.9], [0.1, 0.2, 0.3]) == 0.0


def test_auc_is_one_half_when_the_sets_cannot_be_told_apart():
    assert mia_auc([0.4, 0.4, 0.4], [0.4, 0.4]) == 0.5
    assert mia_auc([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == 0.5


def test_auc_counts_a_tie_as_half_a_pair():
    # pairs (f, h): (1, 1) tie, (1, 2) win, (3, 1) loss, (3, 2) loss -> (0.5 + 1) / 4
    assert mia_auc([1.0, 3.0], [1.0, 2.0]) == pytest.approx(0.375, abs=1e-15)


def test_auc_equals_the_pair_count_on_random_scores_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        forget = rng.integers(0, 6, size=rng.integers(1, 12)).astype(float)
        holdout = rng.integers(0, 6, size=rng.integers(1, 12)).astype(float)
        assert mia_auc(forget, holdout) == pytest.approx(pair_count_auc(forget, holdout), abs=1e-12)


def test_auc_refuses_empty_or_non_finite_scores():
    with pytest.raises(ValueError, match="forget and holdout"):
        mia_auc([], [0.1])
    with pytest.raises(ValueError, match="finite"):
        mia_auc([float("nan")], [0.1])


def test_min_k_takes_the_mean_of_the_lowest_k_share_of_log_probs():
    logps = [-1.0, -5.0, -2.0, -4.0, -3.0]
    assert min_k_score(logps, k=0.4) == 4.5  # int(5 * 0.4) = 2 lowest: -5, -4
    assert min_k_score(logps, k=1.0) == 3.0  # all of them: minus the mean log-prob
    assert min_k_score(logps, k=0.1) == 5.0  # int(0.5) = 0 -> at least one token


def test_min_k_of_an_empty_answer_is_zero_and_k_must_be_a_fraction():
    assert min_k_score([], k=0.4) == 0.0
    for k in (0.0, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            min_k_score([-1.0], k=k)


def test_zlib_score_divides_the_loss_by_the_compressed_length():
    text = "The author was born in Santiago in 1975."
    assert zlib_score(2.0, text) == 2.0 / len(zlib.compress(text.encode("utf-8")))
    # the same loss looks more "remembered" (lower score) on text that does not compress
    rng = np.random.default_rng(0)
    repetitive, varied = "ab" * 40, "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz "), size=80))
    assert len(repetitive) == len(varied) == 80
    assert zlib_score(1.0, varied) < zlib_score(1.0, repetitive)


def test_privleak_is_zero_at_the_reference_and_minus_100_for_a_perfect_attack():
    assert privleak(0.73, 0.73) == 0.0
    assert privleak(1.0, 0.5) == pytest.approx(-100.0)
    assert privleak(0.0, 0.5) == pytest.approx(100.0)
    assert privleak(0.6) == pytest.approx((0.4 - 0.5) / 0.5 * 100)
    assert math.isfinite(privleak(0.9, 1.0))  # a reference AUC of 1: the epsilon keeps it finite


def test_privleak_refuses_a_value_that_is_not_an_auc():
    with pytest.raises(ValueError, match="reference_auc"):
        privleak(0.5, 1.2)
