"""Tests for unloc.stats: AUES, MU95, the App. D tests, and the seed-level statistics."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import stats as sps

from unloc.stats import (
    MIN_LOG10_FQ,
    aues,
    aues_permutation_test,
    mu95,
    mu95_shuffle_test,
    paired_bootstrap_ci,
    tost_paired,
)

ALPHA = np.linspace(0.0, 1.0, 21)
N_SEEDS = 5


# --------------------------------------------------------------------------- AUES


def test_aues_ideal_curve_is_one():
    assert aues(ALPHA, np.ones_like(ALPHA)) == pytest.approx(1.0, abs=1e-12)


def test_aues_diagonal_is_half():
    assert aues(ALPHA, 1.0 - ALPHA) == pytest.approx(0.5, abs=1e-12)


def test_aues_unsorted_equals_sorted():
    rng = np.random.default_rng(3)
    fs = np.sort(rng.uniform(0.0, 1.0, 21))
    rs = 1.0 - fs**2 + rng.normal(0.0, 0.02, 21)
    perm = rng.permutation(21)
    assert aues(fs[perm], rs[perm]) == pytest.approx(aues(fs, rs), abs=1e-12)
    assert aues(fs[::-1], rs[::-1]) == pytest.approx(aues(fs, rs), abs=1e-12)


def test_aues_no_extrapolation_vs_extend():
    # FS covers [0.2, 0.9]. Trapezoids: 0.3 * (0.9 + 0.8) / 2 + 0.4 * (0.8 + 0.4) / 2 = 0.495.
    fs, rs = [0.2, 0.5, 0.9], [0.9, 0.8, 0.4]
    assert aues(fs, rs) == pytest.approx(0.495, abs=1e-12)
    # extend adds the flat pieces 0.2 * 0.9 (FS 0 -> 0.2) and 0.1 * 0.4 (FS 0.9 -> 1): 0.715.
    assert aues(fs, rs, extend=True) == pytest.approx(0.715, abs=1e-12)


def test_aues_step_curve():
    # RS 0.9 on FS [0, 0.3], a vertical drop at FS 0.3 (tie kept in α order), RS 0.2 to FS 1.
    fs, rs = [0.0, 0.3, 0.3, 1.0], [0.9, 0.9, 0.2, 0.2]
    assert aues(fs, rs) == pytest.approx(0.3 * 0.9 + 0.7 * 0.2, abs=1e-12)


# --------------------------------------------------------------------------- MU95


def test_mu95_crossing_exactly_at_a_point():
    mu = [1.0, 0.98, 0.95, 0.90]
    fq = [-1.0, -2.0, -4.0, -6.0]
    assert mu95(mu, fq) == -4.0


def test_mu95_interpolates_between_points():
    # Target 0.95 * 2.0 = 1.9 lies 0.06 / 0.10 = 0.6 of the way from MU 1.96 to 1.86,
    # so log10 FQ = -3 + 0.6 * (-8 - (-3)) = -6.
    mu = [2.0, 1.96, 1.86, 1.5]
    fq = [0.0, -3.0, -8.0, -12.0]
    assert mu95(mu, fq) == pytest.approx(-6.0, abs=1e-12)
    # A different threshold moves the target: 0.9 * 2.0 = 1.8 lies 0.06 / 0.36 past 1.86.
    assert mu95(mu, fq, threshold=0.9) == pytest.approx(-8.0 - (0.06 / 0.36) * 4.0, abs=1e-12)


def test_mu95_through_an_underflowed_fq_is_finite():
    """A p-value that underflowed (log10 FQ = -inf) on the point before an exact crossing: the
    result is the crossing point's log10 FQ, not NaN (0 x -inf); one beyond the crossing is floored."""
    mu, fq = [1.0, 0.97, 0.95, 0.5], [-1.0, -np.inf, -4.0, -5.0]
    assert mu95(mu, fq) == -4.0
    assert mu95([1.0, 0.96, 0.9], [-1.0, -3.0, -np.inf]) == pytest.approx(-3.0 + (0.01 / 0.06) * (MIN_LOG10_FQ + 3.0))
    assert pytest.approx(-323.306, abs=1e-3) == MIN_LOG10_FQ


def test_fq_is_floored_at_the_smallest_positive_double():
    from unloc.metrics.tofu import SMALLEST_FQ, forget_quality, log10_fq

    apart = np.arange(1000.0), np.arange(1000.0) + 1e6  # KS statistic 1 on 1000 vs 1000: p underflows to 0
    assert sps.ks_2samp(*apart).pvalue == 0.0
    assert forget_quality(*apart) == SMALLEST_FQ == 5e-324
    close = np.arange(400.0), np.arange(400.0) + 1e6  # 400 vs 400: p = 1.1e-239, above the floor
    assert forget_quality(*close) == sps.ks_2samp(*close).pvalue
    assert log10_fq(*apart) == pytest.approx(MIN_LOG10_FQ)


def test_mu95_is_undefined_not_an_error_where_theta_o_has_no_utility():
    """MU is a harmonic mean: one zero part (no ROUGE overlap on a split) makes MU(θo) 0, and a
    table must still be built (a NaN, printed "not reached"), as it was not before."""
    assert np.isnan(mu95([0.0, 0.0, 0.0], [-1.0, -2.0, -3.0]))
    zero = np.zeros((2, 3))
    assert all(np.isnan(mu95_shuffle_test(zero, zero - 1, zero, zero - 1, n_resamples=100, seed=0)))


def test_mu95_never_reached_is_nan():
    assert np.isnan(mu95([1.0, 0.99, 0.97, 0.951], [-1.0, -2.0, -3.0, -4.0]))


def test_mu95_mu_up_then_down_uses_first_crossing():
    # MU rises above θo first; the first point <= 0.95 is index 3, the previous index 2.
    # Fraction (1.02 - 0.95) / (1.02 - 0.90) = 7/12 -> -7 + 7/12 * 5. The later recovery
    # (0.99) and second dip (0.5) do not matter.
    mu = [1.0, 1.04, 1.02, 0.90, 0.99, 0.5]
    fq = [-10.0, -9.0, -7.0, -2.0, -1.0, -30.0]
    assert mu95(mu, fq) == pytest.approx(-7.0 + 7.0 / 12.0 * 5.0, abs=1e-12)


# --------------------------------------------------------------------------- AUES permutation test


def _sweeps(rng: np.random.Generator, rs_shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """[seeds, α] FS and RS: a per-seed curve plus point noise (a seed-level random effect)."""
    seed_curv = rng.uniform(1.0, 3.0, (N_SEEDS, 1))
    fs = np.clip(ALPHA**0.7 + rng.normal(0.0, 0.02, (N_SEEDS, 21)), 0.0, 1.0)
    rs = np.clip(1.0 - ALPHA**seed_curv + rng.normal(0.0, 0.03, (N_SEEDS, 21)), 0.0, 1.0)
    return fs, np.clip(rs + rs_shift, 0.0, 1.0)


def test_aues_permutation_identical_scenarios_p_one():
    fs, rs = _sweeps(np.random.default_rng(0))
    observed, p = aues_permutation_test(fs, rs, fs, rs, n_resamples=2000)
    assert observed == 0.0
    assert p == 1.0


def test_aues_permutation_separated_scenarios_small_p():
    rng = np.random.default_rng(1)
    fs_a, rs = _sweeps(rng)
    fs_b = np.clip(fs_a + rng.normal(0.0, 0.02, fs_a.shape), 0.0, 1.0)
    rs_b = 0.7 * rs
    rs_a = rs_b + 0.3  # oracle RS higher by exactly 0.3 at every (seed, α)
    observed, p = aues_permutation_test(fs_a, rs_a, fs_b, rs_b)
    assert observed > 0.1
    assert p < 0.01
    _, p_plus = aues_permutation_test(fs_a, rs_a, fs_b, rs_b, plus_one=True)
    assert p_plus == pytest.approx((p * 10_000 + 1) / 10_001)


def test_aues_permutation_one_seed_is_1d():
    fs_a, rs_a = _sweeps(np.random.default_rng(2))
    fs_b, rs_b = _sweeps(np.random.default_rng(3))
    flat = aues_permutation_test(fs_a[0], rs_a[0], fs_b[0], rs_b[0], n_resamples=500)
    rows = aues_permutation_test(fs_a[:1], rs_a[:1], fs_b[:1], rs_b[:1], n_resamples=500)
    assert flat == rows
    assert flat[0] == pytest.approx(abs(aues(fs_a[0], rs_a[0]) - aues(fs_b[0], rs_b[0])))


def test_aues_permutation_calibrated_under_null():
    """Both scenarios drawn from one distribution per seed: p must be roughly uniform."""
    rng = np.random.default_rng(1)
    n_datasets = 200
    pvals = np.empty(n_datasets)
    for k in range(n_datasets):
        base_fs, base_rs = _sweeps(rng)
        noise = lambda shape=base_fs.shape: rng.normal(0.0, 0.03, shape)  # noqa: E731
        pvals[k] = aues_permutation_test(
            np.clip(base_fs + noise(), 0, 1),
            np.clip(base_rs + noise(), 0, 1),
            np.clip(base_fs + noise(), 0, 1),
            np.clip(base_rs + noise(), 0, 1),
            n_resamples=1000,
            seed=k,
        )[1]
    # Binomial sd of a share over 200 datasets: 0.015 at 0.05, 0.035 at 0.5; allow ~3 sd.
    assert abs(np.mean(pvals < 0.05) - 0.05) < 0.045
    assert abs(np.mean(pvals < 0.5) - 0.5) < 0.11
    assert sps.kstest(pvals, "uniform").pvalue > 0.01


def test_permutation_tests_are_deterministic():
    rng = np.random.default_rng(4)
    fs_a, rs_a = _sweeps(rng)
    fs_b, rs_b = _sweeps(rng, rs_shift=0.01)
    first = aues_permutation_test(fs_a, rs_a, fs_b, rs_b, n_resamples=2000, seed=11)
    assert aues_permutation_test(fs_a, rs_a, fs_b, rs_b, n_resamples=2000, seed=11) == first
    assert 0.0 < first[1] < 1.0  # an intermediate p, so the seed actually matters
    other = aues_permutation_test(fs_a, rs_a, fs_b, rs_b, n_resamples=2000, seed=12)
    assert other[1] != first[1]

    mu_a, fq_a, mu_b, fq_b = _hovering_mu95_curves()
    once = mu95_shuffle_test(mu_a, fq_a, mu_b, fq_b, n_resamples=2000, seed=5)
    assert mu95_shuffle_test(mu_a, fq_a, mu_b, fq_b, n_resamples=2000, seed=5) == once


def test_tests_are_fast():
    fs_a, rs_a = _sweeps(np.random.default_rng(5))
    fs_b, rs_b = _sweeps(np.random.default_rng(6))
    mu_a, fq_a, mu_b, fq_b = _hovering_mu95_curves()

    def best_of_3(fn) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    assert best_of_3(lambda: aues_permutation_test(fs_a, rs_a, fs_b, rs_b)) < 1.0
    assert best_of_3(lambda: mu95_shuffle_test(mu_a, fq_a, mu_b, fq_b)) < 1.0


# --------------------------------------------------------------------------- MU95 shuffle test


def _clean_mu95_curves() -> tuple[np.ndarray, ...]:
    """Shared monotone MU (crossing at α = 1/6) and log10 FQ curves 5 apart: MU95 -3 vs -8 ± 1."""
    mu = np.tile(1.0 - 0.3 * ALPHA, (N_SEEDS, 1))
    fq_b = -8.0 + 60.0 * (ALPHA - 1.0 / 6.0) + np.linspace(-1.0, 1.0, N_SEEDS)[:, None]
    fq_a = fq_b + 5.0
    fq_a[:, 0] = fq_b[:, 0]  # θo is shared
    return mu, fq_a, mu.copy(), fq_b


def _hovering_mu95_curves() -> tuple[np.ndarray, ...]:
    """MU hovers just above 95% (0.96) and dips below at two α per seed; log10 FQ falls with α.

    MU is shared by the two scenarios; scenario a loses FQ at 15 per unit α, b at 40, so the
    first dip gives MU95 about -3 (a) and -8 (b) in every seed. A shuffled group that misses
    both scenarios' first-dip points crosses at the second dip, far down the FQ curve.
    """
    dips = [(5, 15), (5, 14), (4, 15), (5, 16), (6, 15)]
    mu = np.full((N_SEEDS, 21), 0.96)
    mu[:, 0], mu[:, 20] = 1.0, 0.80
    for s, d in enumerate(dips):
        mu[s, list(d)] = 0.90
    scale = np.array([0.9, 1.1, 1.0, 0.95, 1.05])[:, None]
    return mu, -15.0 * scale * ALPHA, mu.copy(), -40.0 * scale * ALPHA


def _per_seed_mu95(mu: np.ndarray, fq: np.ndarray) -> np.ndarray:
    return np.array([mu95(m, q) for m, q in zip(mu, fq)])


def test_mu95_shuffle_identical_scenarios_p_one():
    mu, fq, _, _ = _clean_mu95_curves()
    assert mu95_shuffle_test(mu, fq, mu, fq, n_resamples=2000) == (0.0, 1.0)


def test_mu95_shuffle_observed_matches_mu95():
    mu_a, fq_a, mu_b, fq_b = _hovering_mu95_curves()
    observed, _ = mu95_shuffle_test(mu_a, fq_a, mu_b, fq_b, n_resamples=100)
    expected = abs(_per_seed_mu95(mu_a, fq_a).mean() - _per_seed_mu95(mu_b, fq_b).mean())
    assert observed == pytest.approx(expected, abs=1e-12)


def test_mu95_shuffle_not_reached_is_nan():
    mu_a, fq_a, mu_b, fq_b = _clean_mu95_curves()
    mu_b[1] = np.maximum(mu_b[1], 0.96)  # in seed 1, scenario b never drops to 95% of θo
    observed, p = mu95_shuffle_test(mu_a, fq_a, mu_b, fq_b, n_resamples=100)
    assert np.isnan(observed) and np.isnan(p)


def test_mu95_shuffle_nan_resamples_do_not_count():
    """Only α = 1 drops below 95% in each scenario: about half the shuffles put both of those
    points in one group, whose partner then never reaches 95% (NaN). Those must not count as
    >= observed, or p would exceed 0.49 on their share alone."""
    mu = np.ones(21)
    mu[20] = 0.9
    fq_a, fq_b = np.full(21, -3.0), np.full(21, -8.0)
    fq_a[0] = fq_b[0] = -1.0
    observed, p = mu95_shuffle_test(mu, fq_a, mu, fq_b)
    assert observed == pytest.approx(5.0)
    assert p < 0.3


def test_mu95_shuffle_single_seed_has_a_p_floor():
    """The paper's one-comparison form: a clean 5-unit gap in log10 FQ is never significant.

    Measured: p = 0.223 (seed 2 of the clean curves, 10 000 resamples). With the statistic on
    5 seed means the same clean curves do reach p < 0.01, which is the contrast this shows.
    """
    mu_a, fq_a, mu_b, fq_b = _clean_mu95_curves()
    assert _per_seed_mu95(mu_a, fq_a)[2] == pytest.approx(-3.0)
    assert _per_seed_mu95(mu_b, fq_b)[2] == pytest.approx(-8.0)
    _, p_one = mu95_shuffle_test(mu_a[2], fq_a[2], mu_b[2], fq_b[2])
    assert p_one > 0.15
    _, p_five = mu95_shuffle_test(mu_a, fq_a, mu_b, fq_b)
    assert p_five < 0.01


def test_mu95_shuffle_misses_consistent_difference_that_seed_statistics_find():
    """MU95 about -3 vs -8 in every seed, yet the shuffle test gives p ~ 0.34 (measured 0.3406).

    The seed-level statistics see the difference: the bootstrap CI of the mean per-seed
    difference excludes 0, a paired t-test rejects, and TOST does not call it equivalent.
    """
    mu_a, fq_a, mu_b, fq_b = _hovering_mu95_curves()
    a, b = _per_seed_mu95(mu_a, fq_a), _per_seed_mu95(mu_b, fq_b)
    assert np.all(a - b > 3.5)  # consistent across all 5 seeds
    assert a.mean() == pytest.approx(-3.1, abs=0.1) and b.mean() == pytest.approx(-8.3, abs=0.1)

    observed, p = mu95_shuffle_test(mu_a, fq_a, mu_b, fq_b)
    assert observed == pytest.approx(a.mean() - b.mean())
    assert p > 0.25

    mean_diff, low, high = paired_bootstrap_ci(a, b)
    assert low > 4.0 and high < 6.5 and low <= mean_diff <= high
    assert sps.ttest_rel(a, b).pvalue < 1e-3
    assert tost_paired(a, b, margin=1.0) > 0.5


# --------------------------------------------------------------------------- seed-level statistics


def test_paired_bootstrap_ci_basics():
    rng = np.random.default_rng(7)
    a = rng.normal(0.6, 0.02, N_SEEDS)
    b = a - 0.01 + rng.normal(0.0, 0.005, N_SEEDS)
    mean_diff, low, high = paired_bootstrap_ci(a, b, seed=1)
    assert mean_diff == pytest.approx(np.mean(a - b))
    assert low < mean_diff < high
    assert (low, high) == paired_bootstrap_ci(a, b, seed=1)[1:]
    # Constant per-seed differences: every resample has the same mean.
    assert paired_bootstrap_ci(a, a - 0.25)[1:] == pytest.approx((0.25, 0.25))
    assert all(np.isnan(paired_bootstrap_ci([1.0, np.nan], [0.0, 0.0])))


def test_tost_matches_two_one_sided_t_tests():
    rng = np.random.default_rng(8)
    a, b = rng.normal(0.0, 1.0, N_SEEDS), rng.normal(0.2, 1.0, N_SEEDS)
    d = a - b
    lower = sps.ttest_1samp(d, -0.5, alternative="greater").pvalue
    upper = sps.ttest_1samp(d, 0.5, alternative="less").pvalue
    assert tost_paired(a, b, 0.5) == pytest.approx(max(lower, upper))


def test_tost_equivalence_for_tiny_differences_but_not_for_real_ones():
    rng = np.random.default_rng(9)
    oracle = rng.normal(0.60, 0.02, N_SEEDS)  # seed-to-seed spread like Table 2's AUES
    tiny = oracle - np.array([0.004, -0.003, 0.002, 0.0, -0.002])
    assert tost_paired(oracle, tiny, margin=0.02) < 0.01
    real = oracle - np.array([0.05, 0.06, 0.04, 0.055, 0.045])
    assert tost_paired(oracle, real, margin=0.02) > 0.99


def test_tost_zero_variance_and_bad_input():
    a = np.array([0.5, 0.6, 0.7])
    assert tost_paired(a, a, margin=0.01) == 0.0  # identical: equivalent
    assert tost_paired(a, a - 0.02, margin=0.01) == 1.0  # constant difference beyond the margin
    assert np.isnan(tost_paired([1.0, np.nan, 2.0], [1.0, 1.0, 1.0], margin=0.1))
    with pytest.raises(ValueError):
        tost_paired(a, a, margin=0.0)
    with pytest.raises(ValueError):
        tost_paired([1.0], [1.0], margin=0.1)
