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
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from unloc import io, stats
from unloc.localizers import LOCALIZERS
from unloc.metrics.curve import CURVE_LABELS as LABELS
from unloc.objectives import OBJECTIVES
from unloc.registry import Registry, Spec, parse_settings
from unloc.sanity import Verdict, read_verdict
from unloc.stats import StatsSettings
from unloc.uwc import UwcSettings, select
from unloc.wme import (
    EDITS,
    FOPRT_ROWS,
    REFERENCES,
    VALUE_COLUMNS,
    WME_METRICS,
    method_label,
    read_wme_evals,
    summarise,
    wme_rows,
)

logger = logging.getLogger("unloc")
INJECTED = "injected"  # the scenario of curves that start from θo (seeds/000 Section 4)
ORIGINAL = "original"  # the scenario of curves that start from θfull (seeds/000 Section 3)
GEFFECT = "geffect"  # seeds/001's tables: evaluations of full-parameter unlearning runs, not curves
UWC = "uwc"  # seeds/001's Tables 2-10: UWC-selected mixtures of full-parameter runs with θfull
WME = "wme"  # seeds/004's tables: evaluations of references, baselines and edits, per forget split and run


@dataclass(frozen=True, kw_only=True)
class TableSpec(Spec):
    """``localizers``: the ones the table compares. A table of the ``original`` scenario (seeds/000
    Section 3) also names the runs it rests on: each of its localizers' ``ratio`` mask of θfull,
    unlearned with ``objective``; its first localizer is the baseline the others are tested
    against, and ``title`` is its markdown heading. A table with an ``experiment`` (Table 6) runs
    Section 4 in an experiment of its own, ``results/{name}/<experiment>/``: the config's
    ``<table>`` block says on what data, and its ``objective``, ``ratio`` and ``localizers`` fix
    what that experiment runs. A UWC table of seeds/001 (scenario ``uwc``) sweeps its
    ``objective``'s setting ``sweep`` over ``grid`` (the paper's; ``geffect.uwc.values`` picks a
    subset), with the settings ``fixed`` holds, one full-parameter run and mixing sweep each.
    A WME table (scenario ``wme``, seeds/004) reports the methods ``rows`` (wme.py) on ``split``:
    one forget split, ``"average"`` (the mean over wme.splits) or None (each of wme.sweep_splits)."""

    markdown: Callable[[pd.DataFrame, StatsSettings], str]
    localizers: tuple[str, ...] = ()
    scenario: str = "injected"
    objective: str | None = None
    ratio: float | None = None
    title: str = ""
    experiment: str | None = None
    sweep: str | None = None
    fixed: tuple[tuple[str, object], ...] = ()
    grid: tuple[float, ...] = ()
    rows: tuple[str, ...] = ()
    split: str | None = None


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
                sanity_csv=None, uwc_settings=None) -> pd.DataFrame:
    """A table's CSV and markdown; on injected curves both carry the sanity verdict (a ``sanity``
    column: pass or fail; a line under the markdown title). A seeds/001 table reads `unloc eval`
    results (scenario ``geffect``: ``read_evals``) or UWC sweeps (``uwc``: ``read_uwc_curves``,
    selected by ``uwc_settings``, the config's geffect.uwc) in place of curves."""
    spec = TABLES[name]
    settings = parse_settings(StatsSettings, stats_settings, "stats")
    verdict = None
    if spec.scenario == GEFFECT:  # evaluations of whole models, not mixing curves
        table = spec.fn(read_evals(curve_paths), settings, model)
    elif spec.scenario == WME:
        table = spec.fn(read_wme_evals(curve_paths), settings, model)
    elif spec.scenario == UWC:
        settings = parse_settings(UwcSettings, uwc_settings, "geffect.uwc")
        table = spec.fn(read_uwc_curves(curve_paths, name), settings, model)
    else:
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


class SweepMetric(NamedTuple):
    """A table metric of mixing sweeps: the curve columns it reads, its value on one seed's sweep
    ({column: [α]}), and App. D's test of two scenarios' sweeps ({column: [seeds, α]}, seeds paired)."""

    columns: tuple[str, ...]
    per_seed: Callable[[dict[str, np.ndarray]], float]
    test: Callable[..., float]  # (a, b, n_resamples, seed, plus_one) -> p


SWEEP_METRICS = {
    "AUES": SweepMetric(("fs", "rs"), lambda s: stats.aues(s["fs"], s["rs"]),
                        lambda a, b, *args: stats.aues_permutation_test(a["fs"], a["rs"], b["fs"], b["rs"], *args)[1]),
    "MU95": SweepMetric(("mu", "log10_fq"), lambda s: stats.mu95(s["mu"], s["log10_fq"]),
                        lambda a, b, *args: stats.mu95_shuffle_test(a["mu"], a["log10_fq"], b["mu"], b["log10_fq"],
                                                                    *args)[1]),
}
BOTH = ("AUES", "MU95")


def metric_columns(metrics: tuple[str, ...]) -> tuple[str, ...]:
    """The curve columns ``metrics`` read, in order."""
    return tuple(c for m in metrics for c in SWEEP_METRICS[m].columns)


SWEEP_COLUMNS = metric_columns(BOTH)


def _metric_comparison(a: dict[str, np.ndarray], b: dict[str, np.ndarray], settings: StatsSettings,
                       metrics: tuple[str, ...] = BOTH) -> dict:
    """``metrics`` (AUES, MU95) of two scenarios' sweeps ({column: [seeds, α]}, seeds paired) with
    the App. D tests, the paired bootstrap CI of a − b and the TOST p: {metric: dict of per-seed
    values and statistics}."""
    n, seed, plus_one = settings.n_resamples, settings.seed, settings.plus_one
    of_a, of_b = _per_seed(a, metrics), _per_seed(b, metrics)
    margins = {"AUES": settings.tost_margin.aues, "MU95": settings.tost_margin.mu95}
    out = {}
    for metric in metrics:
        values_a, values_b = of_a[metric], of_b[metric]
        diff_mean, low, high = stats.paired_bootstrap_ci(values_a, values_b, n, seed)
        tost = stats.tost_paired(values_a, values_b, margins[metric]) if len(values_a) > 1 else float("nan")
        out[metric] = {"a": values_a, "b": values_b, "p_value": SWEEP_METRICS[metric].test(a, b, n, seed, plus_one),
                       "ci_low": low, "ci_high": high, "tost_p": tost}
    return out


def _per_seed(sweeps: dict[str, np.ndarray], metrics: tuple[str, ...] = BOTH) -> dict[str, np.ndarray]:
    """Each metric's value on every seed's sweep."""
    n_seeds = len(next(iter(sweeps.values())))
    return {m: np.array([SWEEP_METRICS[m].per_seed({c: v[i] for c, v in sweeps.items()}) for i in range(n_seeds)])
            for m in metrics}


def _sweeps(curves: list[Curve], localizer: str, seeds: list[int],
            columns: tuple[str, ...] = SWEEP_COLUMNS) -> dict[str, np.ndarray]:
    return {col: _stack(curves, localizer, col, seeds) for col in columns}


def oracle_vs_random(curves: list[Curve], settings: StatsSettings, model: str,
                     metrics: tuple[str, ...] = BOTH) -> pd.DataFrame:
    """Seeds/000 Section 4's comparison: Random vs Oracle per objective and metric, with the App. D
    tests, CI and TOST (long format: one row per objective and metric)."""
    columns = metric_columns(metrics)
    rows = []
    for objective in dict.fromkeys(c.objective for c in curves):
        mine = [c for c in curves if c.objective == objective]
        seeds = sorted({c.seed for c in mine if c.localizer == "oracle"}
                       & {c.seed for c in mine if c.localizer == "random"})
        if not seeds:
            continue
        compared = _metric_comparison(_sweeps(mine, "oracle", seeds, columns), _sweeps(mine, "random", seeds, columns),
                                      settings, metrics)
        for metric, c in compared.items():
            oracle, random = c["a"], c["b"]
            rows.append({
                "model": model, "objective": objective, "metric": metric,
                "random_mean": float(np.mean(random)), "random_std": _std(random),
                "oracle_mean": float(np.mean(oracle)), "oracle_std": _std(oracle),
                "abs_diff_mean": float(np.mean(np.abs(oracle - random))), "abs_diff_std": _std(np.abs(oracle - random)),
                "p_value": c["p_value"], "ci_low": c["ci_low"], "ci_high": c["ci_high"], "tost_p": c["tost_p"],
            })
    return pd.DataFrame(rows, columns=TABLE2_COLUMNS)


@TABLES.register("table2", needs=SWEEP_COLUMNS, localizers=("oracle", "random"), markdown=table2_markdown)
def table2(curves: list[Curve], settings: StatsSettings, model: str) -> pd.DataFrame:
    """Table 2: Random vs Oracle, AUES and MU95 (one row per objective and metric)."""
    return oracle_vs_random(curves, settings, model)


# --------------------------------------------------------------------------- Section 3: Tables 1, 3, 4, 5

SECTION3_COLUMNS = ["model", "objective", "ratio", "localizer", "metric", "mean", "std", "n_seeds", "p_value",
                    "ci_low", "ci_high", "tost_p"]
THETA_FULL_ROW = "original"  # the row of θfull itself: its log10 FQ, before any unlearning


def localizer_label(name: str) -> str:
    """How tables and figures print a localizer (its spec's label)."""
    return LOCALIZERS[name].label if name in LOCALIZERS else name


def _paired_sweeps(curves: list[Curve], localizer: str, seeds: list[int], table: str) -> tuple[dict, int]:
    """A localizer's sweeps paired with the baseline's ``seeds``, and how many runs they are: its
    own sweep of each seed, or, for a localizer whose mask does not depend on the seed (run
    once), its one sweep at every seed, which is what a run per seed would have given."""
    mine = [c for c in curves if c.localizer == localizer]
    if LOCALIZERS[localizer].seeded:
        missing = sorted(set(seeds) - {c.seed for c in mine})
        if missing:
            raise io.ArtifactError(f"{table}: no sweep of {localizer} for the seeds {missing} of the baseline")
        return _sweeps(mine, localizer, seeds), len(seeds)
    if len(mine) != 1:
        raise io.ArtifactError(f"{table}: expected one sweep of {localizer} (its mask does not depend on the seed), "
                               f"got {len(mine)}")
    one = mine[0].frame
    return {col: np.repeat(one[col].to_numpy(float)[None], len(seeds), axis=0) for col in SWEEP_COLUMNS}, 1


def localizers_vs_baseline(curves: list[Curve], settings: StatsSettings, model: str, spec: TableSpec) -> pd.DataFrame:
    """Seeds/000 Section 3's comparison: AUES and MU95 of every localizer's sweeps from θfull
    (mean ± std over the runs), each tested against the baseline's (App. D tests, the seed-level
    bootstrap CI of localizer − baseline, TOST), plus θfull's own log10 FQ (the "Original" row)."""
    curves = [c for c in curves if c.scenario == ORIGINAL]
    baseline, *others = spec.localizers
    seeds = sorted({c.seed for c in curves if c.localizer == baseline})
    if not seeds:
        raise io.ArtifactError(f"{spec.name}: no sweep of its baseline {baseline}")
    base = _sweeps(curves, baseline, seeds)
    common = {"model": model, "objective": spec.objective, "ratio": spec.ratio}
    nan = float("nan")
    rows = [{**common, "localizer": THETA_FULL_ROW, "metric": "MU95", "mean": float(base["log10_fq"][0, 0]),
             "std": nan, "n_seeds": 1, "p_value": nan, "ci_low": nan, "ci_high": nan, "tost_p": nan}]
    for metric, values in _per_seed(base).items():
        rows.append({**common, "localizer": baseline, "metric": metric, "mean": float(np.mean(values)),
                     "std": _std(values), "n_seeds": len(seeds), "p_value": nan, "ci_low": nan, "ci_high": nan,
                     "tost_p": nan})
    for localizer in others:
        sweeps, runs = _paired_sweeps(curves, localizer, seeds, spec.name)
        for metric, c in _metric_comparison(sweeps, base, settings).items():
            values = c["a"][:runs]
            rows.append({**common, "localizer": localizer, "metric": metric, "mean": float(np.mean(values)),
                         "std": _std(values), "n_seeds": runs, "p_value": c["p_value"], "ci_low": c["ci_low"],
                         "ci_high": c["ci_high"], "tost_p": c["tost_p"] if runs > 1 else nan})
    return pd.DataFrame(rows, columns=SECTION3_COLUMNS)


def _cell(mean: float, std: float, runs: int, digits: int, best: bool) -> str:
    if math.isnan(mean):
        return "not reached"
    text = f"{mean:.{digits}f}" if runs == 1 else f"{mean:.{digits}f} ± {std:.{digits}f}"
    return f"**{text}**" if best else text


def section3_markdown(table: pd.DataFrame, settings: StatsSettings, spec: TableSpec) -> str:
    """The paper's layout (Method x AUES, MU95; the best of each in bold) with the p-values and
    CIs of each localizer against the baseline."""
    model = ", ".join(dict.fromkeys(table["model"])) or "?"
    baseline = localizer_label(spec.localizers[0])
    rows = {(r["localizer"], r["metric"]): r for _, r in table.iterrows()}
    methods = [m for m in dict.fromkeys(table["localizer"]) if m != THETA_FULL_ROW]
    best = {metric: max((rows[(m, metric)]["mean"] for m in methods if not math.isnan(rows[(m, metric)]["mean"])),
                        default=math.nan) for metric in ("AUES", "MU95")}
    lines = [f"### {spec.title} ({model})", "",
             f"| Method | AUES (↑) | MU95 (↑) | p AUES | p MU95 | 95% CI AUES (− {baseline}) "
             f"| 95% CI MU95 (− {baseline}) |",
             "|---|---|---|---|---|---|---|"]
    original = rows.get((THETA_FULL_ROW, "MU95"))
    if original is not None:
        lines.append(f"| Original | – | {original['mean']:.2f} |  |  |  |  |")
    for method in methods:
        aues, mu95 = rows[(method, "AUES")], rows[(method, "MU95")]
        cells = [_cell(r["mean"], r["std"], r["n_seeds"], d, r["mean"] == best[m])
                 for r, d, m in ((aues, 3, "AUES"), (mu95, 2, "MU95"))]
        if method == spec.localizers[0]:
            tests = ["", "", "", ""]
        else:
            tests = [f"{aues['p_value']:.2f}", f"{mu95['p_value']:.2f}",
                     f"[{aues['ci_low']:.3f}, {aues['ci_high']:.3f}]", f"[{mu95['ci_low']:.2f}, {mu95['ci_high']:.2f}]"]
        lines.append(f"| {localizer_label(method)} | {' | '.join(cells)} | {' | '.join(tests)} |")
    n_seeds = rows[(spec.localizers[0], "AUES")]["n_seeds"]
    lines += [
        "",
        f"From θfull, {OBJECTIVES[spec.objective].label} on {spec.ratio:.0%} of the down_proj "
        f"{'weights' if LOCALIZERS[spec.localizers[0]].granularity == 'elements' else 'value vectors'}. "
        f"Mean ± std over {n_seeds} mask seeds; a localizer whose mask does not depend on the seed is one run "
        f"(no ± std), tested against each {baseline} seed. Original: log10 FQ of θfull. p: App. D "
        f"(AUES paired permutation test; MU95 pooled shuffle test) against {baseline}, {settings.n_resamples} "
        "resamples. CI: paired bootstrap over seeds. MU95 is log10 FQ where MU first falls to 95% of θfull's.",
    ]
    return "\n".join(lines) + "\n"


def _register_section3(name: str, title: str, objective: str, ratio: float, localizers: tuple[str, ...]) -> None:
    def table(curves: list[Curve], settings: StatsSettings, model: str) -> pd.DataFrame:
        return localizers_vs_baseline(curves, settings, model, TABLES[name])

    TABLES.register(name, needs=SWEEP_COLUMNS, localizers=localizers, scenario=ORIGINAL, objective=objective,
                    ratio=ratio, title=title, markdown=lambda t, s: section3_markdown(t, s, TABLES[name]),
                    help=f"{title}: seeds/000 Section 3 (from θfull)")(table)


# seeds/000 Table 1 and App. E's Tables 3-5: each changes one thing of Table 1's setting
_register_section3("table1", "Table 1: localization methods vs Random", "npo", 0.1,
                   ("random", "activations", "memflex", "wagle"))
_register_section3("table3", "Table 3: a 5% localization ratio under NPO", "npo", 0.05, ("random", "wagle"))
_register_section3("table4", "Table 4: RMU at a 10% localization ratio", "rmu", 0.1, ("random", "wagle"))
_register_section3("table5", "Table 5: individual-weight localization, 80% of the weights", "npo", 0.8,
                   ("random_weights", "wagle_weights"))


# --------------------------------------------------------------------------- Table 6 (App. E.2)


def table6_markdown(table: pd.DataFrame, settings: StatsSettings) -> str:
    """The paper's layout (Metric, Random, Oracle, |Δ|, p) plus the CI and TOST of Table 2."""
    spec = TABLES["table6"]
    model = ", ".join(dict.fromkeys(table["model"])) or "?"
    lines = [f"### {spec.title} ({model})", "",
             "| Metric | Random | Oracle | \\|Δ\\| | p-value | 95% CI (Oracle − Random) | TOST p |",
             "|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        lines.append(f"| {r['metric']} (↑) | {_pm(r['random_mean'], r['random_std'], 3)} "
                     f"| {_pm(r['oracle_mean'], r['oracle_std'], 3)} | {r['abs_diff_mean']:.3f} | {r['p_value']:.2f} "
                     f"| [{r['ci_low']:.3f}, {r['ci_high']:.3f}] | {r['tost_p']:.3f} |")
    lines += [
        "",
        f"{OBJECTIVES[spec.objective].label} on the personal records of its own experiment (θp, θr and θo of their "
        f"own; 10% of the records forgotten), {spec.ratio:.0%} of the value vectors. AUES only: FQ is TOFU's. "
        f"Mean ± std over mask seeds; |Δ|: the mean over seeds of |Oracle − Random| (the paper's 0.017 is not "
        f"the 0.009 between its means). p-value: App. D's paired permutation test, {settings.n_resamples} resamples. "
        f"CI: paired bootstrap over seeds. TOST: equivalence within ±{settings.tost_margin.aues}.",
    ]
    return "\n".join(lines) + "\n"


@TABLES.register("table6", needs=metric_columns(("AUES",)), localizers=("oracle", "random"), objective="npo",
                 ratio=0.1, experiment="pii", title="Table 6: Random vs Oracle on PII records",
                 markdown=table6_markdown, help="Table 6: seeds/000 App. E.2, Section 4 on PII records")
def table6(curves: list[Curve], settings: StatsSettings, model: str) -> pd.DataFrame:
    """Table 6: Random vs Oracle on PII records, AUES only (FQ is defined on TOFU alone)."""
    return oracle_vs_random(curves, settings, model, metrics=("AUES",))


# --------------------------------------------------------------------------- seeds/001 Table 1

GEFFECT_METRICS = ("forget_truth_ratio", "forget_quality", "model_utility", "extraction_strength",
                   "retain_extraction_strength", "forget_para_extraction_strength", "retain_para_extraction_strength")
"""The `unloc eval` metrics seeds/001's Table 1 reads: the evaluate_geffect rule computes only these."""
BEFORE_UNLEARNING = "theta_full"
"""The method name of seeds/001's "before unlearning" row: θfull, which every run unlearns."""


@dataclass(frozen=True)
class Evaluation:
    """One `unloc eval` result of a seeds/001 run: its forget split, its method (an objective, or
    ``BEFORE_UNLEARNING``) and the agg_value of each metric of its TOFU_EVAL.json."""

    split: str
    method: str
    values: dict[str, float | None]


def read_evals(paths: list[str]) -> list[Evaluation]:
    """TOFU_EVAL.json files laid out as ``.../<split>/eval/<method>/TOFU_EVAL.json``."""
    out = []
    for path in paths:
        path = Path(path)
        if path.parent.parent.name != "eval":
            raise io.ArtifactError(f"{path}: expected a seeds/001 evaluation at <split>/eval/<method>/TOFU_EVAL.json")
        results = io.read_json(path)
        missing = [m for m in GEFFECT_METRICS if m not in results]
        if missing:
            raise io.ArtifactError(f"{path}: no {', '.join(missing)} (run `unloc eval` with these metrics)")
        out.append(Evaluation(path.parent.parent.parent.name, path.parent.name,
                              {m: results[m]["agg_value"] for m in GEFFECT_METRICS}))
    return out


GEFFECT_TABLE1_COLUMNS = ["model", "split", "method", "es_exact_retain", "es_exact_unlearn", "es_perturb_retain",
                          "es_perturb_unlearn", "mu", "fq", "ln_fq"]


def _ln(p: float | None) -> float:
    return math.log(p) if p else float("nan")


def geffect_table1_markdown(table: pd.DataFrame, settings: StatsSettings) -> str:
    model = table["model"].iloc[0] if len(table) else ""
    lines = [f"# Table 1 (seeds/001): unlearning objectives with KL, {model}", "",
             "| split | method | ES-exact retain ↑ | ES-exact unlearn ↓ | ES-perturb retain ↑ | ES-perturb unlearn ↓ "
             "| MU ↑ | FQ (ln) ↑ |", "|---|---|---|---|---|---|---|---|"]
    for row in table.itertuples():
        cells = [row.es_exact_retain, row.es_exact_unlearn, row.es_perturb_retain, row.es_perturb_unlearn, row.mu,
                 row.ln_fq]
        lines.append(f"| {row.split} | {row.method} | " + " | ".join(f"{v:.4f}" for v in cells) + " |")
    lines += ["", "The raw end of training (not mixed). Unlearn: the forget split; retain: the held-out retain "
              "items (retain_perturbed), which no run trains on. ES-perturb: the ES of the paraphrased answers. "
              "FQ: KS-test p-value against θr of the same split, as its natural log (seeds/001's; log10 elsewhere)."]
    return "\n".join(lines) + "\n"


@TABLES.register("geffect_table1", scenario=GEFFECT, needs=GEFFECT_METRICS, markdown=geffect_table1_markdown,
                 title="Table 1 (seeds/001): unlearning objectives with KL",
                 help="seeds/001 Table 1: each objective's raw end of training, per forget split")
def geffect_table1(evals: list[Evaluation], settings: StatsSettings, model: str) -> pd.DataFrame:
    """Before unlearning (θfull) and every objective, per forget split, in the order given."""
    rows = []
    for e in evals:
        v = e.values
        rows.append({"model": model, "split": e.split,
                     "method": "before unlearning" if e.method == BEFORE_UNLEARNING else objective_label(e.method),
                     "es_exact_retain": v["retain_extraction_strength"], "es_exact_unlearn": v["extraction_strength"],
                     "es_perturb_retain": v["retain_para_extraction_strength"],
                     "es_perturb_unlearn": v["forget_para_extraction_strength"], "mu": v["model_utility"],
                     "fq": v["forget_quality"], "ln_fq": _ln(v["forget_quality"])})
    return pd.DataFrame(rows, columns=GEFFECT_TABLE1_COLUMNS)


# --------------------------------------------------------------------------- seeds/001 Tables 2-10 (UWC)

PAPER_GRID = (0.05, 0.1, 0.5, 0.7, 1.0, 2.0, 4.0, 5.0, 7.0, 10.0)
"""seeds/001 App. G: the α or β of Tables 2-7."""
PAPER_RMU_GRID = (0.0, 1.0, 2.0, 4.0, 5.0, 7.0, 10.0)
"""seeds/001 App. G: RMU's c in Tables 8-10."""


@dataclass(frozen=True)
class UwcCurve:
    """One UWC mixing sweep: its forget split, the value of its table's swept setting, its rows."""

    split: str
    value: float
    frame: pd.DataFrame


def read_uwc_curves(paths: list[str], table: str) -> list[UwcCurve]:
    """curve.csv files laid out as ``.../<split>/uwc/<table>/<value>/curve.csv``."""
    out = []
    for path in paths:
        path = Path(path)
        value_dir, table_dir = path.parent, path.parent.parent
        if table_dir.parent.name != UWC or table_dir.name != table:
            raise io.ArtifactError(f"{path}: expected a UWC sweep of {table} at <split>/uwc/{table}/<value>/curve.csv")
        try:
            value = float(value_dir.name)
        except ValueError:
            raise io.ArtifactError(f"{path}: {value_dir.name!r} is not the value of a swept setting") from None
        frame = pd.read_csv(path, keep_default_na=False, na_values=["nan", "NaN", ""])
        out.append(UwcCurve(table_dir.parent.parent.name, value, frame))
    return out


UWC_COLUMNS = ["model", "split", "setting", "value", "alpha", "es_exact_retain", "es_exact_unlearn",
               "es_perturb_retain", "es_perturb_unlearn", "measure", "measure_value", "measure_drop"]
UWC_NEEDS = ("es_forget", "es_retain", "es_para_forget", "es_para_retain")
"""The curve columns a UWC table reports (curve metrics es and es_perturb), besides its measure."""


def _uwc_row(model: str, split: str, setting: str, value, point: pd.Series, measure: str, before: float) -> dict:
    drop = 1.0 - point[measure] / before if before else float("nan")
    return {"model": model, "split": split, "setting": setting, "value": value, "alpha": point["alpha"],
            "es_exact_retain": point["es_retain"], "es_exact_unlearn": point["es_forget"],
            "es_perturb_retain": point["es_para_retain"], "es_perturb_unlearn": point["es_para_forget"],
            "measure": measure, "measure_value": point[measure], "measure_drop": drop}


def uwc_table(curves: list[UwcCurve], settings: UwcSettings, model: str, spec: TableSpec) -> pd.DataFrame:
    """Per split (in the order given): θfull (the α = 0 point every sweep shares, "before
    unlearning"), then each swept value's UWC mixture (``uwc.select``)."""
    rows = []
    for split in dict.fromkeys(c.split for c in curves):
        mine = sorted((c for c in curves if c.split == split), key=lambda c: c.value)
        first = mine[0].frame.sort_values("alpha", kind="stable").iloc[0]
        before = first[settings.measure]
        rows.append(_uwc_row(model, split, spec.sweep, BEFORE_UNLEARNING, first, settings.measure, before))
        for curve in mine:
            point = select(curve.frame, settings.measure, settings.max_drop, settings.removal)
            rows.append(_uwc_row(model, split, spec.sweep, curve.value, point, settings.measure, before))
    return pd.DataFrame(rows, columns=UWC_COLUMNS)


def uwc_markdown(table: pd.DataFrame, settings: UwcSettings, spec: TableSpec) -> str:
    model = table["model"].iloc[0] if len(table) else ""
    lines = [f"# {spec.title}, {model}", "",
             f"| split | {objective_label(spec.objective)} {spec.sweep} | UWC α | ES-exact retain ↑ "
             f"| ES-exact unlearn ↓ | ES-perturb retain ↑ | ES-perturb unlearn ↓ | {settings.measure} (drop) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in table.itertuples():
        value = "before unlearning" if row.value == BEFORE_UNLEARNING else f"{float(row.value):.2f}"
        cells = [row.es_exact_retain, row.es_exact_unlearn, row.es_perturb_retain, row.es_perturb_unlearn]
        lines.append(f"| {row.split} | {value} | {float(row.alpha):.2f} | " + " | ".join(f"{v:.4f}" for v in cells)
                     + f" | {row.measure_value:.4f} ({row.measure_drop:.1%}) |")
    fixed = "".join(f", {k} {v}" for k, v in spec.fixed)
    lines += ["", f"{objective_label(spec.objective)}{fixed} with the geffect section's regularizer, on every "
              f"parameter of θfull; each run mixed with θfull, θ(α) = θfull + α (θu - θfull), and the mixture "
              f"selected whose {settings.measure} dropped at most {settings.max_drop:.0%} from θfull's and whose "
              f"{settings.removal} is lowest (UWC; ties: the smaller α). Retain: the held-out retain items; "
              "ES-perturb: ES of the paraphrased answers."]
    return "\n".join(lines) + "\n"


def _register_uwc(name: str, title: str, objective: str, sweep: str, grid: tuple[float, ...],
                  fixed: tuple[tuple[str, object], ...] = ()) -> None:
    def table(curves: list[UwcCurve], settings: UwcSettings, model: str) -> pd.DataFrame:
        return uwc_table(curves, settings, model, TABLES[name])

    TABLES.register(name, scenario=UWC, needs=UWC_NEEDS, objective=objective, sweep=sweep, fixed=fixed, grid=grid,
                    title=title, markdown=lambda t, s: uwc_markdown(t, s, TABLES[name]),
                    help=f"{title}: seeds/001 App. G (UWC-selected mixtures)")(table)


_register_uwc("geffect_table2", "Table 2 (seeds/001): UWC tuning for WGA", "wga", "alpha", PAPER_GRID)
_register_uwc("geffect_table3", "Table 3 (seeds/001): UWC tuning for NPO", "npo", "beta", PAPER_GRID)
_register_uwc("geffect_table4", "Table 4 (seeds/001): UWC tuning for TNPO", "tnpo", "beta", PAPER_GRID)
for _number, _alpha in ((5, 0.5), (6, 1.0), (7, 1.5)):
    _register_uwc(f"geffect_table{_number}", f"Table {_number} (seeds/001): UWC tuning for WTNPO, α = {_alpha}",
                  "wtnpo", "beta", PAPER_GRID, (("alpha", _alpha),))
for _number, _third in ((8, "shallow"), (9, "middle"), (10, "deep")):
    _register_uwc(f"geffect_table{_number}", f"Table {_number} (seeds/001): UWC tuning for RMU ({_third})",
                  "rmu", "scale", PAPER_RMU_GRID, (("layer", _third),))


# --------------------------------------------------------------------------- seeds/004 (WME)

WME_AVERAGE = "average"  # the split of Table 1: the mean over wme.splits
WME_MAIN_ROWS = ("full", "gt", "ga", "gd", "npo", "npo_plus", "tv", "wme_grad", "wme_fisher")
WME_TABLE_COLUMNS = ["model", "split", "method", "runs"] + [f"{c}_{s}" for c in VALUE_COLUMNS for s in ("mean", "std")]
_WME_CELLS = (("fq_log10", "FQ (log10) ↑"), ("mu", "MU ↑"), ("es_forget", "ES(D_f) ↓"), ("es_retain", "ES(D_r) ↑"),
              ("es_gap", "ES(D_r) − ES(D_f) ↑"), ("rouge_forget", "ROUGE forget"), ("rouge_retain", "ROUGE retain"),
              ("rouge_ra", "ROUGE real authors"), ("rouge_wf", "ROUGE world facts"))


def wme_markdown(table: pd.DataFrame, spec: TableSpec) -> str:
    model = table["model"].iloc[0] if len(table) else ""
    runs = sorted(set(table["runs"])) if len(table) else []
    lines = [f"# {spec.title}, {model}", "", "| split | method | " + " | ".join(h for _, h in _WME_CELLS) + " |",
             "|---|---|" + "---|" * len(_WME_CELLS)]
    for row in table.to_dict("records"):
        cells = [f"{row[f'{c}_mean']:.3f}" + (f" ± {row[f'{c}_std']:.3f}" if row["runs"] > 1 else "")
                 for c, _ in _WME_CELLS]
        lines.append(f"| {row['split']} | {row['method']} | " + " | ".join(cells) + " |")
    missing = [method_label(m) for m in spec.rows if m not in REFERENCES and m not in EDITS
               and method_label(m) not in set(table["method"])]
    if missing:
        lines += ["", f"Not run (wme.baselines has none): {', '.join(missing)}."]
    lines += ["", f"Mean ± population std over {'/'.join(map(str, runs))} runs (seeds of wme.seeds: θ_fgt's and the "
              "baselines' batch order, the random weighting's draw, the gradient samples); Full and GT are one "
              "model each. FQ: KS-test p-value against the split's θr, as log10. ES(D_r): ES-exact on the held-out "
              "retain items. Gib is not reported: its classifier is a hub download (docs/decisions.md)."]
    return "\n".join(lines) + "\n"


def _register_wme(name: str, title: str, rows: tuple[str, ...], split: str | None) -> None:
    def table(evals, settings: StatsSettings, model: str) -> pd.DataFrame:
        splits = tuple(dict.fromkeys(e.split for e in evals))
        if split not in (None, WME_AVERAGE):
            splits = (split,)
        kept, _ = wme_rows(rows, evals)
        frame = pd.DataFrame(summarise(evals, kept, splits, average=split == WME_AVERAGE),
                             columns=WME_TABLE_COLUMNS[1:])
        frame.insert(0, "model", model)
        return frame[WME_TABLE_COLUMNS]

    TABLES.register(name, scenario=WME, needs=WME_METRICS, rows=rows, split=split, title=title,
                    markdown=lambda t, s: wme_markdown(t, TABLES[name]), help=f"{title}: seeds/004")(table)


_register_wme("wme_table1", "Table 1 (seeds/004): the average over the forget splits", WME_MAIN_ROWS, WME_AVERAGE)
for _number, _split in ((2, "forget01"), (3, "forget05"), (4, "forget10")):
    _register_wme(f"wme_table{_number}", f"Table {_number} (seeds/004): TOFU {_split}", WME_MAIN_ROWS, _split)
_register_wme("wme_table7", "Table 7 (seeds/004): choices of f_oprt",
              ("full", "gt", "random", "weighted", "pruning", "wme_grad_full", "wme_fisher_full", "wme_grad",
               "wme_fisher", "softmax"), None)
_register_wme("wme_fig6", "Fig. 6 (seeds/004): Weighted's ω and Pruning's λ beside the other f_oprt", FOPRT_ROWS,
              None)
_register_wme("wme_table8", "Table 8 (seeds/004): the τ sweep",
              ("full", "gt", "tau0", "tau0.25", "tau0.5", "wme_grad", "wme_fisher", "tau4", "tau8"), None)
