"""Figures from mixing curves: FS-RS (the AUES curves) and MU-FQ (the MU95 curves), Oracle vs
Random, every seed, one panel per objective; PNG and PDF."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display on clusters or CI

import matplotlib.pyplot as plt  # noqa: E402

from unloc import io  # noqa: E402
from unloc.tables import OBJECTIVE_NAMES, read_curves  # noqa: E402

COLORS = {"oracle": "tab:red", "random": "tab:blue"}
KINDS = {
    "fs_rs": ("fs", "rs", "FS (forget strength)", "RS (retain strength)"),
    "mu_fq": ("log10_fq", "mu", "log10 FQ (forget quality)", "MU (model utility)"),
}


def plot_curves(curve_paths: list[str], kind: str, model: str, out_png, out_pdf) -> None:
    x_col, y_col, x_label, y_label = KINDS[kind]
    curves = read_curves(curve_paths)
    objectives = list(dict.fromkeys(c.objective for c in curves))
    fig, axes = plt.subplots(1, len(objectives), figsize=(3.6 * len(objectives), 3.4), squeeze=False)
    for ax, objective in zip(axes[0], objectives):
        for c in (c for c in curves if c.objective == objective):
            f = c.frame
            label = c.scenario.capitalize() if c.seed == min(x.seed for x in curves if x.scenario == c.scenario) else None
            ax.plot(f[x_col], f[y_col], "-o", ms=2.5, lw=1, alpha=0.75, color=COLORS.get(c.scenario), label=label)
        if kind == "mu_fq":
            mu0 = sum(c.frame["mu"].iloc[0] for c in curves if c.objective == objective) / max(
                1, sum(1 for c in curves if c.objective == objective))
            ax.axhline(0.95 * mu0, color="gray", ls="--", lw=0.8, label="95% of θo's MU")
        ax.set_title(f"{OBJECTIVE_NAMES.get(objective, objective)}")
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(y_label)
    axes[0][-1].legend(fontsize=8)
    # a one- or two-panel figure is too narrow for the title on one line
    sep = ": " if len(objectives) > 2 else "\n"
    fig.suptitle(f"{model}{sep}{'FS–RS' if kind == 'fs_rs' else 'MU–FQ'} curves by model mixing (all seeds)",
                 fontsize=10)
    fig.tight_layout()
    for path in (out_png, out_pdf):
        with io.atomic_path(path) as tmp:
            fig.savefig(tmp, format=str(path).rsplit(".", 1)[-1], dpi=150)
    plt.close(fig)
