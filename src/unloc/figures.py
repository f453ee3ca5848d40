"""Figures from mixing curves, one registry entry each (``FIGURES``): FS-RS (the AUES curves)
and MU-FQ (the MU95 curves), Oracle vs Random, every seed, one panel per objective; and seeds/000
Figure 1 (L2 MLP matching: Oracle vs Random A/B/C, both planes). PNG and PDF.

A figure spec names the curve columns it plots (``needs``: x then y) and its axis labels, or
draws its own layout (``draw``); a figure that rests on runs of its own (Figure 1) has settings,
its config block of the same name. Its report caption is ``workflow/report/<figure>.rst``. The
``figure`` stage writes ``results/{name}/figures/<figure>.png`` and ``.pdf``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on clusters or CI

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from unloc import io  # noqa: E402
from unloc.registry import Registry, Spec, setting  # noqa: E402
from unloc.tables import GEFFECT, WME, WME_AVERAGE, WME_MAIN_ROWS, injection_verdict, objective_label, read_curves  # noqa: E402,I001
from unloc.wme import (  # noqa: E402
    EDITS,
    FOPRT_LEVELS,
    FOPRT_ROWS,
    FOPRT_SERIES,
    SAMPLE_FRACTIONS,
    WME_METRICS,
    read_wme_evals,
    summarise,
)

COLORS = {"oracle": "tab:red", "random": "tab:blue"}


@dataclass(frozen=True, kw_only=True)
class FigureSpec(Spec):
    """``fn(ax, curves)`` adds what the figure draws beyond the curves (a threshold line);
    ``draw(curves, model) -> Figure``, where set, draws the whole figure instead. ``runs``: whose
    curves it plots (``section4``: every Section 4 sweep; ``own``: the runs its settings name;
    ``geffect``: the probe logs of the geffect section's runs, ``read_probes``; ``wme``: the
    evaluations of the methods ``rows`` on wme.splits, or with ``split`` None on wme.sweep_splits,
    as a WME table's)."""

    labels: tuple[str, str] = ("", "")
    title: str
    draw: Callable | None = None
    runs: str = "section4"
    rows: tuple[str, ...] = ()
    split: str | None = None


FIGURES: Registry[FigureSpec] = Registry("figure", FigureSpec)


@FIGURES.register("fs_rs", needs=("fs", "rs"), labels=("FS (forget strength)", "RS (retain strength)"),
                  title="FS–RS")
def fs_rs(ax, curves) -> None:
    """FS-RS curves: the area under each is its AUES."""


@FIGURES.register("mu_fq", needs=("log10_fq", "mu"), labels=("log10 FQ (forget quality)", "MU (model utility)"),
                  title="MU–FQ")
def mu_fq(ax, curves) -> None:
    """MU-FQ curves with the line of 95% of θo's MU, where MU95 reads log10 FQ."""
    mu0 = sum(c.frame["mu"].iloc[0] for c in curves) / max(1, len(curves))
    ax.axhline(0.95 * mu0, color="gray", ls="--", lw=0.8, label="95% of θo's MU")


def plot_figure(name: str, curve_paths: list[str], model: str, out_png, out_pdf, sanity_csv=None) -> None:
    """A figure's PNG and PDF; on injected curves whose sanity check failed, the figure says so."""
    spec = FIGURES[name]
    if spec.runs == GEFFECT:  # G-effect probe logs, not mixing curves
        fig, verdict = spec.draw(read_probes(curve_paths), model), None
    elif spec.runs == WME:  # evaluations of whole models
        fig, verdict = spec.draw(read_wme_evals(curve_paths), model), None
    else:
        curves = read_curves(curve_paths)
        verdict = injection_verdict(curves, sanity_csv)
        fig = spec.draw(curves, model) if spec.draw else _per_objective(spec, curves, model)
    failed = verdict is not None and not verdict.passed
    if failed:
        fig.text(0.5, 0.01, "SANITY CHECK FAILED: θo did not memorize the forget set (sanity.csv)",
                 ha="center", va="bottom", color="tab:red", fontsize=9, weight="bold")
    fig.tight_layout(rect=(0, 0.06 if failed else 0, 1, 1))
    for path in (out_png, out_pdf):
        with io.atomic_path(path) as tmp:
            fig.savefig(tmp, format=str(path).rsplit(".", 1)[-1], dpi=150)
    plt.close(fig)


def _per_objective(spec: FigureSpec, curves, model: str):
    """One panel per objective, every seed's curve of each localizer."""
    (x_col, y_col), (x_label, y_label) = spec.needs, spec.labels
    objectives = list(dict.fromkeys(c.objective for c in curves))
    fig, axes = plt.subplots(1, len(objectives), figsize=(3.6 * len(objectives), 3.4), squeeze=False)
    for ax, objective in zip(axes[0], objectives):
        mine = [c for c in curves if c.objective == objective]
        for c in mine:
            first = c.seed == min(x.seed for x in curves if x.localizer == c.localizer)
            ax.plot(c.frame[x_col], c.frame[y_col], "-o", ms=2.5, lw=1, alpha=0.75, color=COLORS.get(c.localizer),
                    label=c.localizer.capitalize() if first else None)
        spec.fn(ax, mine)
        ax.set_title(objective_label(objective))
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(y_label)
    axes[0][-1].legend(fontsize=8)
    # a one- or two-panel figure is too narrow for the title on one line
    sep = ": " if len(objectives) > 2 else "\n"
    fig.suptitle(f"{model}{sep}{spec.title} curves by model mixing (all seeds)", fontsize=10)
    return fig


# --------------------------------------------------------------------------- Figure 1


@dataclass(frozen=True)
class Figure1Settings:
    """seeds/000 Figure 1's runs (App. F): θo of one mask seed unlearned with ``objective`` inside
    its V_tgt (Oracle) and inside regions drawn outside that V_tgt with other seeds (Random A, B,
    C); the objective's LR and settings are its ``unlearn.<objective>`` block."""

    seed: int = setting(7, "mask seed of θo and of the Oracle region V_tgt (App. F: 7)")
    random_seeds: tuple[int, ...] = setting((7, 11, 49), "seeds of Random A, B, C: V_rdm drawn outside that V_tgt "
                                                         "(App. F: 7, 11, 49)")
    objective: str = setting("l2_mlp", "the unlearning objective (seeds/000 §4: L2 matching of θr's MLP outputs)")

    def __post_init__(self):
        if not self.random_seeds or len(set(self.random_seeds)) != len(self.random_seeds):
            raise ValueError(f"random_seeds {list(self.random_seeds)}: expected distinct seeds, at least one")


def random_name(rank: int, seed: int) -> str:
    """Random A, B, C, ... in the order of their seeds."""
    return f"Random {chr(ord('A') + rank)} (seed {seed})"


def draw_figure1(curves, model: str):
    """RS vs FS (left) and MU vs log10 FQ (right) along the mixing sweep: Oracle and Random A/B/C."""
    oracle = [c for c in curves if c.localizer == "oracle"]
    randoms = sorted((c for c in curves if c.localizer == "random"), key=lambda c: c.seed)
    blues = plt.get_cmap("Blues")
    styles = [(c, "Oracle", "tab:red") for c in oracle]
    styles += [(c, random_name(i, c.seed), blues(0.45 + 0.5 * i / max(1, len(randoms) - 1)))
               for i, c in enumerate(randoms)]
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.6))
    for ax, (x, y), (x_label, y_label) in zip(
            axes, (("fs", "rs"), ("log10_fq", "mu")),
            (("FS (forget strength)", "RS (retain strength)"), ("log10 FQ (forget quality)", "MU (model utility)"))):
        for c, label, color in styles:
            ax.plot(c.frame[x], c.frame[y], "-o", ms=2.5, lw=1, color=color, label=label)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower left")  # where an RS-FS curve starts (high RS, low FS) it is empty
    objective = objective_label(curves[0].objective) if curves else "?"
    fig.suptitle(f"{model}: Oracle vs Random, unlearned by {objective} (Figure 1)", fontsize=10)
    return fig


@FIGURES.register("figure1", settings=Figure1Settings, needs=("fs", "rs", "log10_fq", "mu"), draw=draw_figure1,
                  runs="own", title="Figure 1")
def figure1(ax, curves) -> None:
    """seeds/000 Figure 1: Oracle vs Random A/B/C unlearned by L2 matching of θr's MLP outputs."""


# --------------------------------------------------------------------------- seeds/001 G-effect probes

GROUP_COLORS = {"total": "black", "embed": "tab:gray", "shallow": "tab:green", "middle": "tab:orange",
                "deep": "tab:purple", "lm": "tab:brown", "regularizer": "tab:cyan"}
"""The lines of a G-effect panel: the objective's total and per-group G-effects, and its
regularizer's total (geffect.COLUMNS)."""


@dataclass(frozen=True)
class ProbeLog:
    """One run's G-effect probe log (geffect.py), labelled by its path
    ``.../geffect/<split>/<objective>/probe.csv``."""

    split: str
    objective: str
    frame: pd.DataFrame


def read_probes(paths: list[str]) -> list[ProbeLog]:
    logs = []
    for path in paths:
        path = Path(path)
        frame = pd.read_csv(path)
        if "step" not in frame.columns or "e_u_total" not in frame.columns or frame.empty:
            raise io.ArtifactError(f"{path}: not a G-effect probe log (no rows, or no step/e_u_total column)")
        logs.append(ProbeLog(path.parent.parent.name, path.parent.name, frame))
    return logs


def draw_geffect(logs: list[ProbeLog], model: str):
    """seeds/001 Figs. 3-8: e_u (solid) and e_r (dashed) of the objective over unlearning steps, in
    total and per layer group, and of its regularizer in total, one panel per objective (rows) and
    forget split (columns), on a symmetric log scale (GA's magnitudes dwarf the others'). A tied
    LM head has no lm line (geffect.py)."""
    objectives = list(dict.fromkeys(log.objective for log in logs))
    splits = list(dict.fromkeys(log.split for log in logs))
    fig, axes = plt.subplots(len(objectives), len(splits), figsize=(3.4 * len(splits), 2.5 * len(objectives)),
                             squeeze=False, sharex="col")
    by_run = {(log.objective, log.split): log.frame for log in logs}
    for i, objective in enumerate(objectives):
        for j, split in enumerate(splits):
            ax, frame = axes[i][j], by_run.get((objective, split))
            if frame is None:
                ax.set_visible(False)
                continue
            for group, color in GROUP_COLORS.items():
                for prefix, style in (("e_u", "-"), ("e_r", "--")):
                    column = f"{prefix}_{group}"
                    if column in frame and frame[column].notna().any():
                        ax.plot(frame["step"], frame[column], style, lw=1.2 if group == "total" else 0.8,
                                color=color, label=f"{group}" if prefix == "e_u" else None)
            ax.axhline(0, color="gray", lw=0.5)
            ax.set_yscale("symlog", linthresh=1e-3)
            ax.set_title(f"{objective_label(objective)}, {split}", fontsize=9)
            ax.grid(alpha=0.3)
            if i == len(objectives) - 1:
                ax.set_xlabel("unlearning step")
        axes[i][0].set_ylabel("G-effect")
    axes[0][-1].legend(fontsize=7, title="e_u solid, e_r dashed", title_fontsize=7)
    fig.suptitle(f"{model}: G-effects of the unlearning objectives (seeds/001)", fontsize=10)
    return fig


@FIGURES.register("geffect_probes", needs=("step", "e_u_total", "e_r_total"), draw=draw_geffect, runs=GEFFECT,
                  title="G-effect probes")
def geffect_probes(ax, curves) -> None:
    """seeds/001 Figs. 3-8: unlearning and retaining G-effects over steps, per objective and layer group."""


# --------------------------------------------------------------------------- seeds/004 (WME)


def _wme_panels(evals, rows: tuple[str, ...]):
    """Per split, the table rows (wme.summarise) of ``rows``; and a figure with one panel each."""
    splits = list(dict.fromkeys(e.split for e in evals))
    fig, axes = plt.subplots(1, len(splits), figsize=(4.0 * len(splits), 3.6), squeeze=False)
    return [(ax, split, summarise(evals, rows, (split,))) for ax, split in zip(axes[0], splits)], fig


def _wme_scatter(evals, model: str, x: str, y: str, labels: tuple[str, str], title: str):
    panels, fig = _wme_panels(evals, WME_MAIN_ROWS)
    for ax, split, rows in panels:
        for i, row in enumerate(rows):
            ax.errorbar(row[f"{x}_mean"], row[f"{y}_mean"], xerr=row[f"{x}_std"], yerr=row[f"{y}_std"], fmt="o",
                        ms=5, capsize=2, color=f"C{i}", label=row["method"])
        ax.set_title(split, fontsize=9)
        ax.set_xlabel(labels[0])
        ax.grid(alpha=0.3)
    panels[0][0].set_ylabel(labels[1])
    panels[-1][0].legend(fontsize=7)
    fig.suptitle(f"{model}: {title} (seeds/004)", fontsize=10)
    return fig


@FIGURES.register("wme_mu_fq", runs=WME, needs=WME_METRICS, rows=WME_MAIN_ROWS, split=WME_AVERAGE,
                  title="WME: MU vs FQ",
                  draw=lambda evals, model: _wme_scatter(evals, model, "fq_log10", "mu", ("log10 FQ ↑", "MU ↑"),
                                                         "MU vs FQ per method, mean ± std over the runs"))
def wme_mu_fq(ax, curves) -> None:
    """seeds/004 Fig. 4: MU against log10 FQ per method and forget split, with error bars."""


@FIGURES.register("wme_es", runs=WME, needs=WME_METRICS, rows=WME_MAIN_ROWS, split=WME_AVERAGE,
                  title="WME: ES(D_f) vs ES(D_r)",
                  draw=lambda evals, model: _wme_scatter(evals, model, "es_forget", "es_retain",
                                                         ("ES(D_f) ↓", "ES(D_r) ↑"),
                                                         "ES on the forget vs the retain set, mean ± std"))
def wme_es(ax, curves) -> None:
    """seeds/004 Fig. 11: ES(D_r) against ES(D_f) per method and forget split, with error bars."""


ROUGE_SETS = (("rouge_forget", "forget"), ("rouge_retain", "retain"), ("rouge_ra", "real authors"),
              ("rouge_wf", "world facts"))


def draw_wme_rouge(evals, model: str):
    """seeds/004 Fig. 5: ROUGE on the four sets for TV, WME-grad and WME-fisher, GT's shaded."""
    panels, fig = _wme_panels(evals, ("gt", "tv", "wme_grad", "wme_fisher"))
    width = 0.27
    for ax, split, (gt, *edits) in panels:
        positions = range(len(ROUGE_SETS))
        ax.bar(positions, [gt[f"{c}_mean"] for c, _ in ROUGE_SETS], width * 3.3, color="lightgray", label="GT")
        for i, row in enumerate(edits):
            ax.bar([p + (i - 1) * width for p in positions], [row[f"{c}_mean"] for c, _ in ROUGE_SETS], width,
                   yerr=[row[f"{c}_std"] for c, _ in ROUGE_SETS], capsize=2, color=f"C{i}", label=row["method"])
        ax.set_xticks(list(positions), [name for _, name in ROUGE_SETS], fontsize=8)
        ax.set_title(split, fontsize=9)
        ax.set_ylim(0, 1)
    panels[0][0].set_ylabel("ROUGE-L recall")
    panels[-1][0].legend(fontsize=7)
    fig.suptitle(f"{model}: ROUGE on the four evaluation sets (seeds/004)", fontsize=10)
    return fig


@FIGURES.register("wme_rouge", runs=WME, needs=WME_METRICS, rows=("gt", "tv", "wme_grad", "wme_fisher"),
                  split=WME_AVERAGE, title="WME: four-way ROUGE", draw=draw_wme_rouge)
def wme_rouge(ax, curves) -> None:
    """seeds/004 Fig. 5: ROUGE on forget, retain, real authors and world facts per edit."""


WME_CURVE_METRICS = (("fq_log10", "log10 FQ ↑"), ("mu", "MU ↑"), ("es_forget", "ES(D_f) ↓"),
                     ("es_retain", "ES(D_r) ↑"))
TAU_ROWS = ("tau0", "tau0.25", "tau0.5", "wme_grad", "wme_fisher", "tau4", "tau8")


def _wme_metric_lines(evals, model: str, series: dict[str, tuple[tuple[float, str], ...]], xlabel: str, title: str,
                      reference: str | None = None):
    """One panel per metric: each series' mean ± std over its x values, one line per split (and
    series), with the value of ``reference`` at x = 1 subtracted where given (a residual)."""
    splits = list(dict.fromkeys(e.split for e in evals))
    fig, axes = plt.subplots(1, len(WME_CURVE_METRICS), figsize=(3.4 * len(WME_CURVE_METRICS), 3.2), squeeze=False)
    for split_index, split in enumerate(splits):
        for series_index, (name, points) in enumerate(series.items()):
            rows = summarise(evals, tuple(m for _, m in points), (split,))
            xs = [x for x, _ in points]
            for ax, (column, label) in zip(axes[0], WME_CURVE_METRICS):
                base = rows[-1][f"{column}_mean"] if reference else 0.0
                ax.errorbar(xs, [r[f"{column}_mean"] - base for r in rows], yerr=[r[f"{column}_std"] for r in rows],
                            fmt="-o", ms=3, capsize=2, color=f"C{split_index * len(series) + series_index}",
                            label=f"{name}, {split}" if len(splits) > 1 or len(series) > 1 else split)
                ax.set_title(label if not reference else f"{label} − at 100%", fontsize=9)
                ax.set_xlabel(xlabel)
                ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"{model}: {title} (seeds/004)", fontsize=10)
    return fig


@FIGURES.register("wme_tau", runs=WME, needs=WME_METRICS, rows=TAU_ROWS, title="WME: the τ sweep",
                  draw=lambda evals, model: _wme_metric_lines(
                      evals, model, {"τ": tuple(zip((0, 0.25, 0.5, 1, 2, 4, 8), TAU_ROWS))}, "τ",
                      "metrics against τ, mean ± std over the runs"))
def wme_tau(ax, curves) -> None:
    """seeds/004 Fig. 7: FQ, MU, ES(D_f) and ES(D_r) against τ, per forget split of wme.sweep_splits."""


def draw_wme_foprt(evals, model: str):
    """seeds/004 Fig. 6: one row of panels per forget split, one panel per metric; Weighted and
    Pruning against their hyper-parameter, the choices without one (and GT) as mean ± std bands."""
    splits = list(dict.fromkeys(e.split for e in evals))
    fig, axes = plt.subplots(len(splits), len(WME_CURVE_METRICS), figsize=(3.4 * len(WME_CURVE_METRICS),
                                                                         3.0 * len(splits)), squeeze=False)
    for row_axes, split in zip(axes, splits):
        levels = summarise(evals, ("gt", *FOPRT_LEVELS), (split,))
        series = [(name, points, summarise(evals, tuple(m for _, m in points), (split,)))
                  for name, points in FOPRT_SERIES.items()]
        for ax, (column, label) in zip(row_axes, WME_CURVE_METRICS):
            for i, (name, points, rows) in enumerate(series):
                ax.errorbar([x for x, _ in points], [r[f"{column}_mean"] for r in rows],
                            yerr=[r[f"{column}_std"] for r in rows], fmt="-o", ms=3, capsize=2, color=f"C{i}",
                            label=name)
            for i, row in enumerate(levels):
                mean, std = row[f"{column}_mean"], row[f"{column}_std"]
                style = {"color": "black", "ls": ":"} if i == 0 else {"color": f"C{i + len(FOPRT_SERIES)}", "ls": "--"}
                ax.axhline(mean, lw=1, label=row["method"], **style)
                ax.axhspan(mean - std, mean + std, alpha=0.15, color=style["color"], lw=0)
            ax.set_title(f"{label}, {split}", fontsize=9)
            ax.set_xlabel("ω, or λ/100 (0 and 1: TV or Full)", fontsize=8)
            ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6)
    fig.suptitle(f"{model}: choices of f_oprt against their hyper-parameter, mean ± std over the runs "
                 "(seeds/004)", fontsize=10)
    return fig


@FIGURES.register("wme_foprt", runs=WME, needs=WME_METRICS, rows=FOPRT_ROWS, title="WME: choices of f_oprt",
                  draw=draw_wme_foprt)
def wme_foprt(ax, curves) -> None:
    """seeds/004 Fig. 6: FQ, MU, ES(D_f) and ES(D_r) against Weighted's ω and Pruning's λ, with
    Random, SoftMax, WME-grad, WME-fisher and GT as bands, per forget split of wme.sweep_splits."""


def _fraction_series(weighting: str) -> tuple[tuple[float, str], ...]:
    """0: TV (no gradients), then the shares, then every sample (the residuals' reference, last)."""
    return ((0.0, "tv"), *((f, f"wme_{weighting}_f{f:g}") for f in SAMPLE_FRACTIONS), (1.0, f"wme_{weighting}"))


SAMPLE_ROWS = tuple(dict.fromkeys(m for w in ("grad", "fisher") for _, m in _fraction_series(w)))
assert all(m in EDITS for m in SAMPLE_ROWS if m != "tv") and "tv" in EDITS


@FIGURES.register("wme_samples", runs=WME, needs=WME_METRICS, rows=SAMPLE_ROWS, title="WME: sample efficiency",
                  draw=lambda evals, model: _wme_metric_lines(
                      evals, model, {f"WME-{w}": _fraction_series(w) for w in ("grad", "fisher")},
                      "share of the samples (0: TV)",
                      "residuals against the gradients of every sample", reference="all"))
def wme_samples(ax, curves) -> None:
    """seeds/004 Figs. 8 and 13: each metric minus its value with every sample, against the share of
    the samples the gradients are taken on (0 = TV), per forget split of wme.sweep_splits."""
