"""Tables from mixing curves, one registry entry each (``TABLES``).

A curve is one ``curve.csv`` (one row per α) whose label columns say what it is: scenario,
objective, localizer and seed. A table spec turns the curves into a long-format DataFrame
(``fn(curves, stats, model)``), renders it as markdown (``markdown(table, stats)``), and names
the curve columns it reads (``needs``) and the localizers it compares (``localizers``); its
report caption is ``workflow/report/<table>.rst``. The ``table`` stage writes
``results/{name}/tables/<table>.csv`` and ``.md``.

Table 2 (seeds/000 Section 4) puts Random and Oracle side by side per objective and metric:
mean ± std over seeds, the per-seed |Δ| mean ± std, the paper's p-value (App. D), and the
seed-level bootstrap CI of Oracle − Random and a TOST equivalence p-value (docs/statistics.md).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from unloc import io, stats
from unloc.metrics.curve import CURVE_LABELS as LABELS
from unloc.objectives import OBJECTIVES
from unloc.registry import Registry, Spec, parse_settings
from unloc.sanity import Verdict, read_verdict
from unloc.stats import StatsSettings

logger = logging.getLogger("unloc")
INJECTED = "injected"  # the scenario of curves that start from θo (seeds/000 Section 4)


@dataclass(frozen=True, kw_only=True)
class TableSpec(Spec):
    markdown: Callable[[pd.DataFrame, StatsSettings], str]
    localizers: tuple[str, ...] = ()


TABLES: Registry[TableSpec] = Registry("table", TableSpec)


@dataclass(frozen=True)
class Curve:
    scenario: str
    objective: str
    localizer: str
    seed: int
    frame: pd.DataFrame


def read_curves(paths: list[str]) -> list[Curve]:
    """Curves with their labels read from their own columns."""
    curves = []
    for path in paths:
        frame = pd.read_csv(path, keep_default_na=False, na_values=["nan", "NaN", ""])
        missing = [c for c in LABELS if c not in frame.columns]
        if missing or frame.empty:
            raise io.ArtifactError(f"{path}: not a mixing curve (no rows, or no {', '.join(missing)} column)")
        labels = {c: frame[c].iloc[0] for c in LABELS}
        if any(frame[c].nunique() != 1 for c in LABELS):
            raise io.ArtifactError(f"{path}: a curve's rows must share their labels ({', '.join(LABELS)})")
        frame = frame.drop(columns=list(LABELS)).sort_values("alpha", kind="stable").reset_index(drop=True)
        curves.append(Curve(str(labels["scenario"]), str(labels["objective"]), str(labels["localizer"]),
                            int(labels["seed"]), frame))
    return curves


def injection_verdict(curves: list[Curve], sanity_csv) -> Verdict | None:
    """The sanity verdict of the injection the curves rest on; None for curves of no injection."""
    if not any(c.scenario == INJECTED for c in curves):
        return None
    if sanity_csv is None:
        raise io.ArtifactError("curves of an injected θo need its sanity.csv (--sanity) for the verdict")
    verdict = read_verdict(sanity_csv)
    if not verdict.passed:
        logger.warning("%s", verdict.line().replace("**", ""))
    return verdict


def write_table(name: str, stats_settings, curve_paths: list[str], model: str, out_csv, out_md,
                sanity_csv=None) -> pd.DataFrame:
    """A table's CSV and markdown; on injected curves both carry the sanity verdict (a ``sanity``
    column: pass or fail; a line under the markdown title)."""
    spec = TABLES[name]
    settings = parse_settings(StatsSettings, stats_settings, "stats")
    curves = read_curves(curve_paths)
    table = spec.fn(curves, settings, model)
    verdict = injection_verdict(curves, sanity_csv)
    markdown = spec.markdown(table, settings)
    if verdict is not None:
        table["sanity"] = "pass" if verdict.passed else "fail"
        title, _, rest = markdown.partition("\n")
        markdown = f"{title}\n\n{verdict.line()}\n{rest}"
    io.atomic_write_text(out_csv, table.to_csv(index=False))
    io.atomic_write_text(out_md, markdown)
    return table


# --------------------------------------------------------------------------- Table 2

TABLE2_COLUMNS = ["model", "objective", "metric", "random_mean", "random_std", "oracle_mean", "oracle_std",
                  "abs_diff_mean", "abs_diff_std", "p_value", "ci_low", "ci_high", "tost_p"]


def _stack(curves: list[Curve], localizer: str, column: str, seeds: list[int]) -> np.ndarray:
    by_seed = {c.seed: c.frame[column].to_numpy(float) for c in curves if c.localizer == localizer}
    return np.stack([by_seed[s] for s in seeds])


def objective_label(name: str) -> str:
    """How tables and figures print an objective (its spec's label)."""
    return OBJECTIVES[name].label if name in OBJECTIVES else name


def _std(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1)) if len(x) > 1 else 0.0


def _pm(mean: float, std: float, digits: int) -> str:
    if math.isnan(mean):
        return "not reached"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def table2_markdown(table: pd.DataFrame, settings: StatsSettings) -> str:
    """The paper's layout: objective x {AUES, MU95}; Random, Oracle, |Δ|, p, plus CI and TOST."""
    model = ", ".join(dict.fromkeys(table["model"])) or "?"
    margins = f"AUES ±{settings.tost_margin.aues}, MU95 ±{settings.tost_margin.mu95}"
    lines = [
        f"### Table 2: Random vs Oracle ({model})",
        "",
        "| Method | Metric | Random | Oracle | \\|Δ\\| | p-value | 95% CI (Oracle − Random) | TOST p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        digits = 3 if r["metric"] == "AUES" else 2
        lines.append(
            f"| {objective_label(r['objective'])} | {r['metric']} (↑) "
            f"| {_pm(r['random_mean'], r['random_std'], digits)} | {_pm(r['oracle_mean'], r['oracle_std'], digits)} "
            f"| {_pm(r['abs_diff_mean'], r['abs_diff_std'], digits)} | {r['p_value']:.2f} "
            f"| [{r['ci_low']:.{digits}f}, {r['ci_high']:.{digits}f}] | {r['tost_p']:.3f} |")
    lines += [
        "",
        "Mean ± std over mask seeds. p-value: App. D (AUES paired permutation test; MU95 pooled shuffle test), "
        f"{settings.n_resamples} resamples. CI: paired bootstrap over seeds. TOST: equivalence within "
        f"{margins} (small p = equivalent). MU95 is log10 FQ where MU first falls to 95% of θo's.",
    ]
    return "\n".join(lines) + "\n"


@TABLES.register("table2", needs=("fs", "rs", "mu", "log10_fq"), localizers=("oracle", "random"),
                 markdown=table2_markdown)
def table2(curves: list[Curve], settings: StatsSettings, model: str) -> pd.DataFrame:
    """Table 2: Random vs Oracle, AUES and MU95 with the App. D tests, CI and TOST (long format:
    one row per objective and metric)."""
    rows = []
    n, seed, plus_one = settings.n_resamples, settings.seed, settings.plus_one
    for objective in dict.fromkeys(c.objective for c in curves):
        mine = [c for c in curves if c.objective == objective]
        seeds = sorted({c.seed for c in mine if c.localizer == "oracle"}
                       & {c.seed for c in mine if c.localizer == "random"})
        if not seeds:
            continue
        fs_o, rs_o, mu_o, fq_o = (_stack(mine, "oracle", col, seeds) for col in ("fs", "rs", "mu", "log10_fq"))
        fs_r, rs_r, mu_r, fq_r = (_stack(mine, "random", col, seeds) for col in ("fs", "rs", "mu", "log10_fq"))
        per_seed = {
            "AUES": (np.array([stats.aues(f, r) for f, r in zip(fs_o, rs_o)]),
                     np.array([stats.aues(f, r) for f, r in zip(fs_r, rs_r)])),
            "MU95": (np.array([stats.mu95(m, q) for m, q in zip(mu_o, fq_o)]),
                     np.array([stats.mu95(m, q) for m, q in zip(mu_r, fq_r)])),
        }
        tests = {
            "AUES": stats.aues_permutation_test(fs_o, rs_o, fs_r, rs_r, n, seed, plus_one)[1],
            "MU95": stats.mu95_shuffle_test(mu_o, fq_o, mu_r, fq_r, n, seed, plus_one)[1],
        }
        margins = {"AUES": settings.tost_margin.aues, "MU95": settings.tost_margin.mu95}
        for metric, (oracle, random) in per_seed.items():
            diff_mean, low, high = stats.paired_bootstrap_ci(oracle, random, n, seed)
            rows.append({
                "model": model, "objective": objective, "metric": metric,
                "random_mean": float(np.mean(random)), "random_std": _std(random),
                "oracle_mean": float(np.mean(oracle)), "oracle_std": _std(oracle),
                "abs_diff_mean": float(np.mean(np.abs(oracle - random))), "abs_diff_std": _std(np.abs(oracle - random)),
                "p_value": tests[metric], "ci_low": low, "ci_high": high,
                "tost_p": stats.tost_paired(oracle, random, margins[metric]) if len(seeds) > 1 else float("nan"),
            })
    return pd.DataFrame(rows, columns=TABLE2_COLUMNS)
