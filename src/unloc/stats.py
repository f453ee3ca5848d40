"""Table 2 statistics: AUES, MU95 and the tests that compare two scenarios (seeds/000 App. B, D).

Every function is pure numpy/scipy: arrays in, floats out, no I/O. Sweeps are ordered by the
mixing coefficient α (index 0 is θo). Where the paper is silent, the conventions are DESIGN §6's
and are written out in ``docs/statistics.md``:

* AUES: trapezoid rule over the points sorted by FS (stable), no extrapolation by default.
* MU95: first point along α (after θo) with MU <= threshold · MU(θo), linear interpolation in MU
  with the previous point, NaN when never reached.
* Paper tests (seeded, vectorised over resamples), p = share of resampled statistics >= the
  observed one; seeds enter through the mean over seeds, resampling stays within a seed.
* Beyond the paper: a paired bootstrap CI and a TOST equivalence test on per-seed values,
  because a large p from the tests above does not show that the scenarios are equivalent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as _sps

from unloc.registry import setting

__all__ = [
    "aues",
    "mu95",
    "aues_permutation_test",
    "mu95_shuffle_test",
    "paired_bootstrap_ci",
    "tost_paired",
]


# --------------------------------------------------------------------------- metrics


def _aues_rows(fs: np.ndarray, rs: np.ndarray, extend: bool) -> np.ndarray:
    """AUES along the last axis; leading axes are batch axes (resamples, seeds)."""
    order = np.argsort(fs, axis=-1, kind="stable")  # ties keep α order
    x = np.take_along_axis(fs, order, axis=-1)
    y = np.take_along_axis(rs, order, axis=-1)
    if extend:
        # Flat extension to FS in [0, 1]: RS of the lowest-FS point from 0, of the highest to 1.
        lead = x.shape[:-1] + (1,)
        x = np.concatenate([np.zeros(lead), x, np.ones(lead)], axis=-1)
        y = np.concatenate([y[..., :1], y, y[..., -1:]], axis=-1)
    return np.trapezoid(y, x, axis=-1)


def aues(fs: ArrayLike, rs: ArrayLike, extend: bool = False) -> float:
    """Area under the RS-versus-FS curve of one mixing sweep.

    The points are sorted by FS with a stable sort, so points with equal FS keep their α order
    (the area does not depend on it: a tie is a zero-width segment, but the curve drawn does).
    No extrapolation by default: the area covers only [min FS, max FS], so a sweep that never
    forgets much is not credited with RS it was never measured at. ``extend=True`` extends the
    curve flat to FS in [0, 1]. The ideal curve (RS = 1 for all FS) scores 1; RS = 1 - FS
    scores 0.5.
    """
    fs_arr, rs_arr = _as_sweep_pair(fs, rs)
    if fs_arr.ndim != 1:
        raise ValueError(f"aues takes one sweep (1-D), got shape {fs_arr.shape}")
    return float(_aues_rows(fs_arr, rs_arr, extend))


MIN_LOG10_FQ = float(np.log10(np.nextafter(0.0, 1.0)))  # log10 of the smallest positive double, -323.3


def _mu95_rows(mu: np.ndarray, log10_fq: np.ndarray, threshold: float) -> np.ndarray:
    """MU95 along the last axis, with ``mu[..., 0]`` the reference (θo); NaN where not reached.

    log10 FQ is floored at ``MIN_LOG10_FQ`` (FQ at the smallest positive double), so a point whose
    p-value underflowed interpolates like any other instead of turning the result into NaN."""
    log10_fq = np.maximum(log10_fq, MIN_LOG10_FQ)
    target = threshold * mu[..., :1]
    below = mu[..., 1:] <= target
    reached = below.any(axis=-1)
    i = (np.argmax(below, axis=-1) + 1)[..., None]  # first crossing index >= 1
    mu_prev = np.take_along_axis(mu, i - 1, axis=-1)[..., 0]
    mu_cur = np.take_along_axis(mu, i, axis=-1)[..., 0]
    fq_prev = np.take_along_axis(log10_fq, i - 1, axis=-1)[..., 0]
    fq_cur = np.take_along_axis(log10_fq, i, axis=-1)[..., 0]
    # mu_prev > target >= mu_cur wherever reached, so the denominator is positive there.
    denom = np.where(reached, mu_prev - mu_cur, 1.0)
    frac = (mu_prev - target[..., 0]) / denom
    # (1 - f)·prev + f·cur returns the point's own log10 FQ exactly when f = 1 (exact crossing).
    return np.where(reached, (1.0 - frac) * fq_prev + frac * fq_cur, np.nan)


def mu95(mu: ArrayLike, log10_fq: ArrayLike, threshold: float = 0.95) -> float:
    """log10 FQ where MU first drops to ``threshold`` x MU(θo) along the mixing sweep.

    ``mu`` and ``log10_fq`` are ordered by α with ``mu[0]`` the MU of θo. The crossing is the
    first index i >= 1 with ``mu[i] <= threshold * mu[0]`` (first along α, so a later recovery
    of MU does not move it); MU is interpolated linearly between points i-1 and i to where it
    equals the target, and log10 FQ is interpolated at the same fraction. Returns NaN when MU
    never drops that far (Table 2's "not reached"), and when θo has no utility to lose (MU of θo
    is 0, as a harmonic mean is when any of its parts is): MU95 is undefined there.
    """
    mu_arr, fq_arr = _as_sweep_pair(mu, log10_fq)
    if mu_arr.ndim != 1 or mu_arr.size < 2:
        raise ValueError(f"mu95 takes one sweep of >= 2 points, got shape {mu_arr.shape}")
    if not mu_arr[0] > 0:
        return float("nan")
    return float(_mu95_rows(mu_arr, fq_arr, threshold))


# --------------------------------------------------------------------------- paper tests (App. D)


def aues_permutation_test(
    fs_a: ArrayLike,
    rs_a: ArrayLike,
    fs_b: ArrayLike,
    rs_b: ArrayLike,
    n_resamples: int = 10_000,
    seed: int = 0,
    plus_one: bool = False,
    extend: bool = False,
) -> tuple[float, float]:
    """Paired permutation test of the AUES difference between scenarios a and b (App. D).

    Inputs have shape [n_seeds, n_alpha] (a 1-D input is one seed). Under H0 the scenario label
    of each (seed, α) point pair is exchangeable, so each resample swaps the two scenarios'
    (FS, RS) points independently with probability 1/2 at every (seed, α). The statistic is
    |mean over seeds of AUES_a - mean over seeds of AUES_b|; with one seed this is exactly the
    paper's test, with several it compares seed means while never mixing seeds.

    Returns (observed statistic, p) with p = share of resamples >= observed, or
    (count + 1) / (n + 1) with ``plus_one``.
    """
    fa, ra, fb, rb = _as_seed_arrays(fs_a, rs_a, fs_b, rs_b)
    observed = _abs_mean_diff(_aues_rows(fa, ra, extend), _aues_rows(fb, rb, extend))
    rng = np.random.default_rng(seed)
    swap = rng.random((n_resamples,) + fa.shape) < 0.5
    null = _abs_mean_diff(
        _aues_rows(np.where(swap, fb, fa), np.where(swap, rb, ra), extend),
        _aues_rows(np.where(swap, fa, fb), np.where(swap, ra, rb), extend),
    )
    return observed, _p_value(null, observed, plus_one)


def mu95_shuffle_test(
    mu_a: ArrayLike,
    fq_a: ArrayLike,
    mu_b: ArrayLike,
    fq_b: ArrayLike,
    n_resamples: int = 10_000,
    seed: int = 0,
    plus_one: bool = False,
    threshold: float = 0.95,
) -> tuple[float, float]:
    """Pooled shuffle-and-split test of the MU95 difference between scenarios a and b (App. D).

    Inputs (MU and log10 FQ) have shape [n_seeds, n_alpha], ordered by α (1-D = one seed).
    Per seed and resample, the 2·n_alpha MU-FQ points of both scenarios are pooled (each keeps
    its α index), shuffled and split into two groups of n_alpha; each group is ordered by α
    (ties: scenario a's point first) and its MU95 is computed against the seed's θo (α = 0),
    which is prepended as the curve's start, so a group that did not draw an α = 0 point still
    has a reference and a previous point. θo is shared by both scenarios; its MU and log10 FQ
    are taken as the mean of the two scenarios' α = 0 values (identical in the pipeline), and
    the observed statistic uses the same reference.

    Statistic: |mean over seeds MU95_a - mean over seeds MU95_b|; a seed whose MU95 is NaN
    makes its scenario's mean NaN (averaging the other seeds would change the estimand). A NaN
    resample never counts as >= observed; a NaN observed statistic returns (nan, nan).

    Known weakness (DESIGN §6): a group's MU95 depends only on the pooled points that bracket
    the threshold, so the null distribution is as wide as the spread of FQ around the crossing
    and the test rarely gives a small p; see ``docs/statistics.md`` for a measured example.
    """
    ma, qa, mb, qb = _as_seed_arrays(mu_a, fq_a, mu_b, fq_b)
    if not np.all(ma[:, 0] > 0) or not np.all(mb[:, 0] > 0):
        return float("nan"), float("nan")  # MU95 is undefined where θo's MU is 0
    n_seeds, n_alpha = ma.shape
    ref_mu = (ma[:, :1] + mb[:, :1]) / 2
    ref_fq = (qa[:, :1] + qb[:, :1]) / 2

    def group_mu95(mu: np.ndarray, fq: np.ndarray) -> np.ndarray:
        lead = mu.shape[:-1] + (1,)
        return _mu95_rows(
            np.concatenate([np.broadcast_to(ref_mu, lead), mu], axis=-1),
            np.concatenate([np.broadcast_to(ref_fq, lead), fq], axis=-1),
            threshold,
        )

    observed = _abs_mean_diff(group_mu95(ma, qa), group_mu95(mb, qb))
    if np.isnan(observed):
        return float("nan"), float("nan")

    # Pool interleaved by α (position 2·k + scenario), so sorting pool positions orders a group
    # by α with scenario a first among equal α.
    pool_mu = np.stack([ma, mb], axis=-1).reshape(n_seeds, 2 * n_alpha)
    pool_fq = np.stack([qa, qb], axis=-1).reshape(n_seeds, 2 * n_alpha)
    rng = np.random.default_rng(seed)
    perm = np.argsort(rng.random((n_resamples, n_seeds, 2 * n_alpha)), axis=-1)
    idx_a = np.sort(perm[..., :n_alpha], axis=-1)
    idx_b = np.sort(perm[..., n_alpha:], axis=-1)
    pm = np.broadcast_to(pool_mu, perm.shape)
    pq = np.broadcast_to(pool_fq, perm.shape)
    null = _abs_mean_diff(
        group_mu95(np.take_along_axis(pm, idx_a, -1), np.take_along_axis(pq, idx_a, -1)),
        group_mu95(np.take_along_axis(pm, idx_b, -1), np.take_along_axis(pq, idx_b, -1)),
    )
    return observed, _p_value(null, observed, plus_one)


# --------------------------------------------------------------------------- seed-level statistics


def paired_bootstrap_ci(
    a: ArrayLike,
    b: ArrayLike,
    n_resamples: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """Mean of the per-seed differences a[s] - b[s] with a percentile bootstrap CI.

    Seeds are the experimental unit (each seed redraws the regions, θo and the unlearning), so
    the bootstrap resamples seeds with replacement, keeping each seed's pair together. With 5
    seeds the percentile CI is narrow-ish by construction (at most 5^5 distinct resamples); read
    it as a descriptive interval. NaN in any seed (e.g. MU95 not reached) returns NaNs.
    """
    d = _paired_diff(a, b)
    if not np.all(np.isfinite(d)):
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_resamples, d.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(d.mean()), float(low), float(high)


def tost_paired(a: ArrayLike, b: ArrayLike, margin: float) -> float:
    """TOST p-value for equivalence of mean(a - b) within ±margin (paired t, df = n - 1).

    p = max of the one-sided p-values for H0: mean <= -margin and H0: mean >= +margin; a small
    p means the data show the scenarios equivalent within the margin, which a large p from a
    difference test cannot. Zero variance of the differences (e.g. identical inputs): the
    t statistics are ±inf, so p = 0 when |mean| < margin and p = 1 otherwise. NaN in any seed
    returns NaN.
    """
    if not margin > 0:
        raise ValueError(f"margin must be positive, got {margin}")
    d = _paired_diff(a, b)
    if d.size < 2:
        raise ValueError("TOST needs at least 2 paired values")
    if not np.all(np.isfinite(d)):
        return float("nan")
    mean = d.mean()
    se = d.std(ddof=1) / np.sqrt(d.size)
    if se == 0:
        return 0.0 if abs(mean) < margin else 1.0
    df = d.size - 1
    p_lower = _sps.t.sf((mean + margin) / se, df)  # H0: mean <= -margin
    p_upper = _sps.t.cdf((mean - margin) / se, df)  # H0: mean >= +margin
    return float(max(p_lower, p_upper))


# --------------------------------------------------------------------------- helpers


def _as_sweep_pair(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x_arr, y_arr = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x_arr.shape != y_arr.shape:
        raise ValueError(f"shape mismatch: {x_arr.shape} vs {y_arr.shape}")
    return x_arr, y_arr


def _as_seed_arrays(*arrays: ArrayLike) -> list[np.ndarray]:
    """Four arrays of one shape [n_seeds, n_alpha]; a 1-D input is one seed."""
    out = [np.atleast_2d(np.asarray(x, dtype=float)) for x in arrays]
    if len({x.shape for x in out}) != 1 or out[0].ndim != 2:
        shapes = [x.shape for x in out]
        raise ValueError(f"inputs must share one [n_seeds, n_alpha] shape, got {shapes}")
    return out


def _paired_diff(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    a_arr, b_arr = _as_sweep_pair(a, b)
    if a_arr.ndim != 1:
        raise ValueError(f"per-seed values must be 1-D, got shape {a_arr.shape}")
    return a_arr - b_arr


def _abs_mean_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """|mean over the seed axis (last) of a - mean of b|; NaN propagates."""
    diff = np.abs(a.mean(axis=-1) - b.mean(axis=-1))
    return float(diff) if diff.ndim == 0 else diff


def _p_value(null: np.ndarray, observed: float, plus_one: bool) -> float:
    """Share of resampled statistics >= observed (NaN counts as not >=).

    A relative tolerance of 100 ulp (as scipy.stats.permutation_test) keeps resamples that equal
    the observed statistic in exact arithmetic, e.g. the identity swap, from being lost to
    rounding in a different summation order.
    """
    tol = abs(observed) * 100 * np.finfo(float).eps
    count = int(np.count_nonzero(null >= observed - tol))
    n = null.size
    return (count + 1) / (n + 1) if plus_one else count / n


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class TostMargins:
    aues: float = setting(0.02, "equivalence margin for AUES (Oracle - Random)", exclusive_minimum=0)
    mu95: float = setting(1.0, "equivalence margin for MU95, in log10 FQ", exclusive_minimum=0)


@dataclass(frozen=True)
class StatsSettings:
    """The tests every table runs (the config's ``stats`` section)."""

    n_resamples: int = setting(10000, "permutation, shuffle and bootstrap resamples", minimum=100)
    seed: int = setting(0, "seed of the resampling")
    plus_one: bool = setting(False, "p = (count + 1) / (n + 1) instead of the paper's count / n")
    tost_margin: TostMargins = setting(TostMargins(), "TOST equivalence margins per curve statistic")
