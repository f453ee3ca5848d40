"""Tables from mixing curves: per-curve AUES and MU95, then Table 2 (seeds/000 Section 4).

A curve is one ``curve.csv`` (one row per α) of one (objective, scenario, seed). Table 2 puts
Random and Oracle side by side per objective and metric: mean ± std over seeds, the per-seed
|Δ| mean ± std, the paper's p-value (App. D), and the seed-level bootstrap CI of
Oracle − Random and a TOST equivalence p-value (docs/statistics.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from unloc import io, stats

TABLE2_COLUMNS = ["model", "objective", "metric", "random_mean", "random_std", "oracle_mean", "oracle_std",
                  "abs_diff_mean", "abs_diff_std", "p_value", "ci_low", "ci_high", "tost_p"]
OBJECTIVE_NAMES = {"wga": "WGA", "npo": "NPO", "dpo": "DPO", "rmu": "RMU"}


@dataclass(frozen=True)
class Curve:
    objective: str
    scenario: str
    seed: int
    frame: pd.DataFrame


def read_curves(paths: list[str]) -> list[Curve]:
    """Curves from paths of the form .../mix/{objective}/{scenario}/s{seed}/curve.csv."""
    curves = []
    for path in paths:
        parts = str(path).split("/")
        objective, scenario, seed = parts[-4], parts[-3], int(parts[-2].lstrip("s"))
        frame = pd.read_csv(path).sort_values("alpha", kind="stable").reset_index(drop=True)
        curves.append(Curve(objective, scenario, seed, frame))
    return curves


def _stack(curves: list[Curve], scenario: str, column: str, seeds: list[int]) -> np.ndarray:
    by_seed = {c.seed: c.frame[column].to_numpy(float) for c in curves if c.scenario == scenario}
    return np.stack([by_seed[s] for s in seeds])


def _std(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1)) if len(x) > 1 else 0.0


def table2(curves: list[Curve], model: str, params: dict) -> pd.DataFrame:
    """Long-format Table 2: one row per (objective, metric in {AUES, MU95})."""
    rows = []
    for objective in dict.fromkeys(c.objective for c in curves):
        mine = [c for c in curves if c.objective == objective]
        seeds = sorted({c.seed for c in mine if c.scenario == "oracle"} & {c.seed for c in mine if c.scenario == "random"})
        if not seeds:
            continue
        get = lambda scenario, column: _stack(mine, scenario, column, seeds)  # noqa: E731
        fs_o, rs_o, fs_r, rs_r = get("oracle", "fs"), get("oracle", "rs"), get("random", "fs"), get("random", "rs")
        mu_o, fq_o, mu_r, fq_r = get("oracle", "mu"), get("oracle", "log10_fq"), get("random", "mu"), get("random", "log10_fq")
        per_seed = {
            "AUES": (np.array([stats.aues(f, r) for f, r in zip(fs_o, rs_o)]),
                     np.array([stats.aues(f, r) for f, r in zip(fs_r, rs_r)])),
            "MU95": (np.array([stats.mu95(m, q) for m, q in zip(mu_o, fq_o)]),
                     np.array([stats.mu95(m, q) for m, q in zip(mu_r, fq_r)])),
        }
        tests = {
            "AUES": stats.aues_permutation_test(fs_o, rs_o, fs_r, rs_r, params["n_resamples"], params["seed"],
                                                params["plus_one"])[1],
            "MU95": stats.mu95_shuffle_test(mu_o, fq_o, mu_r, fq_r, params["n_resamples"], params["seed"],
                                            params["plus_one"])[1],
        }
        for metric, (oracle, random) in per_seed.items():
            diff_mean, low, high = stats.paired_bootstrap_ci(oracle, random, params["n_resamples"], params["seed"])
            rows.append({
                "model": model, "objective": objective, "metric": metric,
                "random_mean": float(np.mean(random)), "random_std": _std(random),
                "oracle_mean": float(np.mean(oracle)), "oracle_std": _std(oracle),
                "abs_diff_mean": float(np.mean(np.abs(oracle - random))), "abs_diff_std": _std(np.abs(oracle - random)),
                "p_value": tests[metric], "ci_low": low, "ci_high": high,
                "tost_p": stats.tost_paired(oracle, random, params["tost_margin"][metric.lower()])
                if len(seeds) > 1 else float("nan"),
            })
    return pd.DataFrame(rows, columns=TABLE2_COLUMNS)


def _pm(mean: float, std: float, digits: int) -> str:
    if math.isnan(mean):
        return "not reached"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def table2_markdown(table: pd.DataFrame, params: dict) -> str:
    """The paper's layout: objective x {AUES, MU95}; Random, Oracle, |Δ|, p, plus CI and TOST."""
    model = ", ".join(dict.fromkeys(table["model"])) or "?"
    margins = ", ".join(f"{k.upper()} ±{v}" for k, v in params["tost_margin"].items())
    lines = [
        f"### Table 2: Random vs Oracle ({model})",
        "",
        "| Method | Metric | Random | Oracle | \\|Δ\\| | p-value | 95% CI (Oracle − Random) | TOST p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        digits = 3 if r["metric"] == "AUES" else 2
        lines.append(
            f"| {OBJECTIVE_NAMES.get(r['objective'], r['objective'])} | {r['metric']} (↑) "
            f"| {_pm(r['random_mean'], r['random_std'], digits)} | {_pm(r['oracle_mean'], r['oracle_std'], digits)} "
            f"| {_pm(r['abs_diff_mean'], r['abs_diff_std'], digits)} | {r['p_value']:.2f} "
            f"| [{r['ci_low']:.{digits}f}, {r['ci_high']:.{digits}f}] | {r['tost_p']:.3f} |")
    lines += [
        "",
        "Mean ± std over mask seeds. p-value: App. D (AUES paired permutation test; MU95 pooled shuffle test), "
        f"{params['n_resamples']} resamples. CI: paired bootstrap over seeds. TOST: equivalence within "
        f"{margins} (small p = equivalent). MU95 is log10 FQ where MU first falls to 95% of θo's.",
    ]
    return "\n".join(lines) + "\n"


def write_table2(curve_paths: list[str], model: str, params: dict, out_csv, out_md) -> pd.DataFrame:
    table = table2(read_curves(curve_paths), model, params)
    io.atomic_write_text(out_csv, table.to_csv(index=False))
    io.atomic_write_text(out_md, table2_markdown(table, params))
    return table
