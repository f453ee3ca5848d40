"""seeds/001's UWC (unlearning with control, App. B.2): mix each unlearned model with the model
before unlearning, θ(α) = θfull + α (θu - θfull), and compare removal at the mixture whose
performance dropped by at most a budget (10% for Phi-1.5, 5% for Llama-2-7B).

The paper does not say which performance it holds. ``measure`` names the curve column (default
``mu``, TOFU's model utility, the performance its Table 1 reports); the drop is relative to the
α = 0 point, θfull itself. Among the mixtures within budget the one that removes most (lowest
``removal``, default ES-exact on the forget set) is selected; ties go to the smaller α, the
mixture closer to θfull. α = 0 is always within budget, so a selection always exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from unloc.registry import ConfigError, setting


@dataclass(frozen=True, kw_only=True)
class UwcSettings:
    """The config's ``geffect.uwc`` block: the mixing sweeps of seeds/001's Tables 2-10 and how a
    mixture is selected from each."""

    splits: tuple[str, ...] = setting((), "forget splits to tune on (a subset of geffect.splits); empty: all of them")
    alphas: int = setting(11, "number of α points from 0 to 1 per sweep (11: steps of 0.1)", minimum=2)
    measure: str = setting("mu", "the curve column whose drop is bounded (mu: model utility; es_retain: ES-exact "
                                 "on the held-out retain items; es_para_retain: their ES-perturb)")
    max_drop: float = setting(0.10, "largest relative drop of the measure from θfull's (seeds/001: 0.10 for "
                                    "Phi-1.5, 0.05 for Llama-2-7B)", minimum=0, maximum=1)
    removal: str = setting("es_forget", "the curve column the selection minimises (es_forget: ES-exact on the "
                                        "forget set)")
    values: dict | None = setting(None, "per table, the values of its swept setting (geffect_table2: [0.5, 5.0]); "
                                        "a table not named sweeps the paper's whole grid")


def select(curve: pd.DataFrame, measure: str, max_drop: float, removal: str) -> pd.Series:
    """The UWC mixture of one sweep: the row with the lowest ``removal`` among those whose
    ``measure`` is at least (1 - max_drop) times its value at α = 0; ties: the smallest α."""
    for column in ("alpha", measure, removal):
        if column not in curve.columns:
            raise ValueError(f"UWC selection reads the curve column {column}, which the sweep did not write")
    curve = curve.sort_values("alpha", kind="stable").reset_index(drop=True)
    if curve["alpha"].iloc[0] != 0.0:
        raise ValueError("UWC selection needs the sweep's α = 0 point (the model before unlearning)")
    floor = (1.0 - max_drop) * curve[measure].iloc[0]
    within = curve[curve[measure] >= floor]
    return within.loc[within[removal].idxmin()]  # idxmin: the first minimum, so the smallest α


SWEEP_METRICS = ("es", "es_perturb")
"""The curve metrics every UWC sweep scores: the columns of Tables 2-10."""


def sweep_metrics(settings: UwcSettings) -> tuple[str, ...]:
    """The curve metrics a UWC sweep scores: ``SWEEP_METRICS`` and those that write the measure
    and the removal column."""
    from unloc.metrics.curve import CURVE_METRICS

    # FQ needs θr's truth ratios at every point, which UWC does not select on
    owners = {c: name for name in CURVE_METRICS.names() if name != "fq" for c in CURVE_METRICS[name].columns}
    metrics = list(SWEEP_METRICS)
    for key in ("measure", "removal"):
        column = getattr(settings, key)
        if column not in owners:
            raise ConfigError(f"geffect.uwc.{key}: {column!r} is not a curve column a UWC sweep can score "
                              f"(allowed: {', '.join(owners)})")
        if owners[column] not in metrics:
            metrics.append(owners[column])
    return tuple(metrics)
