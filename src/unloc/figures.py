"""Figures from mixing curves, one registry entry each (``FIGURES``): FS-RS (the AUES curves)
and MU-FQ (the MU95 curves), Oracle vs Random, every seed, one panel per objective; PNG and PDF.

A figure spec names the curve columns it plots (``needs``: x then y) and its axis labels; its
report caption is ``workflow/report/<figure>.rst``. The ``figure`` stage writes
``results/{name}/figures/<figure>.png`` and ``.pdf``.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # files only; no display on clusters or CI

import matplotlib.pyplot as plt  # noqa: E402

from unloc import io  # noqa: E402
from unloc.registry import Registry, Spec  # noqa: E402
from unloc.tables import injection_verdict, objective_label, read_curves  # noqa: E402

COLORS = {"oracle": "tab:red", "random": "tab:blue"}


@dataclass(frozen=True, kw_only=True)
class FigureSpec(Spec):
    """``fn(ax, curves)`` adds what the figure draws beyond the curves (a threshold line)."""

    labels: tuple[str, str]
    title: str


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
    (x_col, y_col), (x_label, y_label) = spec.needs, spec.labels
    curves = read_curves(curve_paths)
    verdict = injection_verdict(curves, sanity_csv)
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
    failed = verdict is not None and not verdict.passed
    if failed:
        fig.text(0.5, 0.01, "SANITY CHECK FAILED: θo did not memorize the forget set (sanity.csv)",
                 ha="center", va="bottom", color="tab:red", fontsize=9, weight="bold")
    fig.tight_layout(rect=(0, 0.06 if failed else 0, 1, 1))
    for path in (out_png, out_pdf):
        with io.atomic_path(path) as tmp:
            fig.savefig(tmp, format=str(path).rsplit(".", 1)[-1], dpi=150)
    plt.close(fig)
