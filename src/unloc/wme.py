"""seeds/004 (WME) in the pipeline: the methods its tables compare and how their evaluations
become table rows.

A *method* is a model per forget split and run:

- ``full`` (θfull) and ``gt`` (the split's θr), the references, one model per split;
- a *baseline*, a full-parameter unlearning run from θfull (``wme.baselines``: GA, GD, NPO,
  NPO+), one per run;
- an *edit* of ``EDITS``: θfull + W ⊙ (−(θ_fgt − θ_0)) with a weighting (weightings.py), one per
  run, since each run fine-tunes its own θ_fgt.

A run is one seed of ``wme.seeds``. The seed orders θ_fgt's and the baselines' batches, draws
the random weighting, and draws the sample of a gradient pass on a fraction of the data. The
references and the evaluation are deterministic, so their spread is 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unloc import io
from unloc.registry import ConfigError, setting
from unloc.train import LoopSettings, TrainSettings
from unloc.weightings import WEIGHTINGS

REFERENCES = {"full": "Full", "gt": "GT"}
"""The reference methods and their labels: θfull, and the split's θr (the ground truth)."""

THETA_0, THETA_FULL = "theta_0", "theta_full"  # where an edit's gradients are taken


@dataclass(frozen=True)
class EditMethod:
    """One edit of a WME table: its label, its weighting block (``{name: ..., <settings>}``), the
    model its gradients are taken at, and the share of each set they are taken on."""

    label: str
    weighting: tuple[tuple[str, object], ...]  # the weighting block's items, name first
    at: str = THETA_0
    sample_fraction: float = 1.0

    @property
    def block(self) -> dict:
        return dict(self.weighting)

    @property
    def uses_gradients(self) -> bool:
        return WEIGHTINGS[self.block["name"]].uses_gradients

    @property
    def statistic(self) -> str:
        """The gradients stage's statistic: fisher's empirical option reads per-example squares."""
        return "empirical_fisher" if self.block.get("empirical") else "mean_gradient"

    def weighting_for(self, seed: int) -> dict:
        """The weighting block of one run: the random weighting draws with the run's seed."""
        block = self.block
        return {**block, "seed": seed} if block["name"] == "random" else block

    def gradients_key(self, seed: int) -> str | None:
        """The name of the gradients file the edit reads (None: it reads none). A sample of the
        data depends on the run's seed; the whole data does not, so its runs share one file."""
        if not self.uses_gradients:
            return None
        key = f"{self.at}-{self.statistic}"
        return key if self.sample_fraction == 1.0 else f"{key}-f{self.sample_fraction:g}-s{seed}"


def _edit(label: str, name: str, at: str = THETA_0, fraction: float = 1.0, **settings) -> EditMethod:
    return EditMethod(label, (("name", name), *settings.items()), at, fraction)


TAUS = (0.0, 0.25, 0.5, 4.0)  # Table 8's τ besides 1 (WME-grad), 2 (WME-fisher) and 8 (below)
SAMPLE_FRACTIONS = (0.2, 0.4, 0.8)  # Fig. 8
# Fig. 6's grids, which the paper does not print. Table 7's points (ω = 0.5, λ = 0.5%) are among
# them; the ends need no edit of their own: ω = 0 and λ = 100% give θfull, ω = 1 and λ = 0 TV.
OMEGAS = (0.25, 0.5, 0.75)
PRUNING_PERCENTS = (0.5, 10.0, 50.0, 90.0)


def weighted_method(omega: float) -> str:
    """The edit of Weighted at ω (Table 7's ω = 0.5 is ``weighted``)."""
    return "weighted" if omega == 0.5 else f"weighted_w{omega:g}"


def pruning_method(percent: float) -> str:
    """The edit of Pruning at λ% (Table 7's λ = 0.5 is ``pruning``)."""
    return "pruning" if percent == 0.5 else f"pruning_l{percent:g}"


EDITS: dict[str, EditMethod] = {
    "tv": _edit("TV", "tv"),
    "wme_grad": _edit("WME-grad", "grad"),
    "wme_fisher": _edit("WME-fisher", "fisher"),
    # Table 7: the choices of f_oprt (ω = 0.5 and λ = 0.5 as printed there); Fig. 6: their grids
    "random": _edit("Random ω", "random"),
    **{weighted_method(w): _edit(f"Weighted ω = {w:g}", "weighted", omega=w) for w in OMEGAS},
    **{pruning_method(p): _edit(f"Pruning λ = {p:g}", "pruning", percent=p) for p in PRUNING_PERCENTS},
    "wme_grad_full": _edit("WME-grad(θ_full)", "grad", THETA_FULL),
    "wme_fisher_full": _edit("WME-fisher(θ_full)", "fisher", THETA_FULL),
    "softmax": _edit("WME+SoftMax", "softmax"),
    # Table 8: the τ sweep (τ = 1 and 2 are WME-grad and WME-fisher, eq. 4-5)
    **{f"tau{t:g}": _edit(f"τ = {t:g}", "tau", tau=t) for t in (*TAUS, 8.0)},
    # Fig. 8: the gradients of a share of the samples
    **{f"wme_{w}_f{f:g}": _edit(f"WME-{w}, {f:.0%} of the samples", w, fraction=f)
       for w in ("grad", "fisher") for f in SAMPLE_FRACTIONS},
}
"""Every edit a WME table or figure reads, by method name."""

FOPRT_SERIES = {  # Fig. 6: x (the hyper-parameter on [0, 1]) and the method there, ends included
    "Weighted, ω": ((0.0, "full"), *((w, weighted_method(w)) for w in OMEGAS), (1.0, "tv")),
    "Pruning, λ/100": ((0.0, "tv"), *((p / 100, pruning_method(p)) for p in PRUNING_PERCENTS), (1.0, "full")),
}
FOPRT_LEVELS = ("random", "softmax", "wme_grad", "wme_fisher")  # Fig. 6's choices without a hyper-parameter
FOPRT_ROWS = ("full", "gt", *dict.fromkeys(m for points in FOPRT_SERIES.values() for _, m in points
                                            if m != "full"), *FOPRT_LEVELS)

BASELINE_LABELS = {"ga": "GA", "gd": "GD", "npo": "NPO", "npo_plus": "NPO+"}
"""The paper's labels of its training baselines (App. A.3); another baseline is labelled by its name."""


def method_label(method: str) -> str:
    if method in REFERENCES:
        return REFERENCES[method]
    if method in EDITS:
        return EDITS[method].label
    return BASELINE_LABELS.get(method, method)


@dataclass(frozen=True, kw_only=True)
class WmeSettings:
    """The config's ``wme`` section (seeds/004)."""

    splits: tuple[str, ...] = setting(("forget01", "forget05", "forget10"),
                                      "forget splits of Tables 1-4 (Table 1 averages them)")
    sweep_splits: tuple[str, ...] = setting((), "forget splits of the edit sweeps (Tables 7 and 8, Fig. 8); "
                                                "empty: those of splits")
    seeds: tuple[int, ...] = setting((0, 1, 2), "the runs (the paper's 3): each seed orders θ_fgt's and the "
                                                "baselines' batches and draws the random weighting and the "
                                                "gradient samples")
    finetune_forget: TrainSettings = setting(help="θ_fgt: θ_0 (θp) fine-tuned on the forget set alone (the paper: "
                                                  "20 epochs, LR 1e-5, batch 32, weight decay 0.01, one warm-up epoch)")
    gradients_batch_size: int = setting(16, "examples per forward pass of the set-level gradients (the mean over "
                                            "the set does not depend on it)", minimum=1)
    train: LoopSettings = setting(help="the baselines' loop (App. A.4: 10 epochs with one of warm-up, batch 32, "
                                       "weight decay 0.01); each baseline's lr is its own")
    baselines: dict = setting(help="{name: {objective: <an objective>, lr: ..., <its settings>, regularizer: ...}}: "
                                   "the training baselines, full-parameter runs from θfull (GA, GD = GA with the gd "
                                   "regularizer at weight α, NPO, NPO+ = NPO with it); null: not run, and the "
                                   "tables leave its row out")


# --------------------------------------------------------------------------- evaluations

WME_METRICS = ("forget_truth_ratio", "forget_quality", "model_utility", "extraction_strength",
               "retain_extraction_strength", "forget_Q_A_ROUGE", "retain_Q_A_ROUGE", "ra_Q_A_ROUGE", "wf_Q_A_ROUGE")
"""The `unloc eval` metrics of WME's tables and figures (and FQ's reference, the forget truth
ratios): the evaluate_wme rules compute only these."""

COLUMNS = {  # table column: the metric it reads
    "fq_log10": "forget_quality",
    "mu": "model_utility",
    "es_forget": "extraction_strength",
    "es_retain": "retain_extraction_strength",
    "rouge_forget": "forget_Q_A_ROUGE",
    "rouge_retain": "retain_Q_A_ROUGE",
    "rouge_ra": "ra_Q_A_ROUGE",
    "rouge_wf": "wf_Q_A_ROUGE",
}
VALUE_COLUMNS = (*COLUMNS, "es_gap")  # es_gap: ES(D_r) - ES(D_f), Tables 10-12's column


@dataclass(frozen=True)
class WmeEvaluation:
    """One `unloc eval` result of a WME method on a forget split, in one run (seed None: a reference)."""

    split: str
    method: str
    seed: int | None
    values: dict[str, float]


_SEED_DIR = re.compile(r"s(\d+)")


def read_wme_evals(paths: list[str]) -> list[WmeEvaluation]:
    """TOFU_EVAL.json files laid out as ``.../<split>/eval/<method>[/s<seed>]/TOFU_EVAL.json``,
    each as the table columns (FQ as log10 p; -inf where p = 0)."""
    out = []
    for path in map(Path, paths):
        seed_dir = _SEED_DIR.fullmatch(path.parent.name)
        method_dir = path.parent.parent if seed_dir else path.parent
        if method_dir.parent.name != "eval":
            raise io.ArtifactError(f"{path}: expected a WME evaluation at <split>/eval/<method>[/s<seed>]/"
                                   "TOFU_EVAL.json")
        results = io.read_json(path)
        missing = [m for m in WME_METRICS if m not in results]
        if missing:
            raise io.ArtifactError(f"{path}: no {', '.join(missing)} (run `unloc eval` with these metrics)")
        values = {column: results[metric]["agg_value"] for column, metric in COLUMNS.items()}
        p = values["fq_log10"]
        if p is None:
            raise io.ArtifactError(f"{path}: forget_quality is null: the evaluation had no reference (θr's)")
        values["fq_log10"] = math.log10(p) if p > 0 else -math.inf
        values["es_gap"] = values["es_retain"] - values["es_forget"]
        out.append(WmeEvaluation(method_dir.parent.parent.name, method_dir.name,
                                 int(seed_dir.group(1)) if seed_dir else None, values))
    return out


def summarise(evals: list[WmeEvaluation], methods: tuple[str, ...], splits: tuple[str, ...] | None = None,
              average: bool = False) -> list[dict]:
    """Per split (or, with ``average``, over ``splits``) and method, in ``methods``' order, the mean
    and population std over the runs of every column, and the number of runs.

    A run of the average is one seed across all splits: its value is the mean over the splits,
    so the mean is the mean of the per-split means and the std is that of the runs' averages.
    A reference has one evaluation per split, which counts as one run with std 0.
    """
    by_key: dict[tuple[str, str], dict[int | None, dict[str, float]]] = {}
    for e in evals:
        by_key.setdefault((e.split, e.method), {})[e.seed] = e.values
    present = tuple(dict.fromkeys(e.split for e in evals))
    splits = splits or present
    rows = []
    for group in ([splits] if average else [(s,) for s in splits]):
        for method in methods:
            runs = [by_key.get((split, method)) for split in group]
            missing = [split for split, r in zip(group, runs) if not r]
            if missing:
                raise io.ArtifactError(f"WME table: no evaluation of {method} on {', '.join(missing)}")
            seeds = sorted(set.intersection(*(set(r) for r in runs)), key=lambda s: -1 if s is None else s)
            if not seeds:
                raise io.ArtifactError(f"WME table: {method} has no run common to {', '.join(group)}")
            row = {"split": "average" if average else group[0], "method": method_label(method), "runs": len(seeds)}
            for column in VALUE_COLUMNS:
                per_run = np.array([np.mean([r[seed][column] for r in runs]) for seed in seeds])
                row[f"{column}_mean"] = float(per_run.mean())
                row[f"{column}_std"] = float(per_run.std())  # population std (ddof 0), as the paper's
            rows.append(row)
    return rows


def wme_rows(rows: tuple[str, ...], evals: list[WmeEvaluation]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the rows reported, the baselines left out): a table's baseline rows that no evaluation
    is of were not configured (wme.baselines), so they are left out; references and edits never are."""
    present = {e.method for e in evals}
    kept = tuple(m for m in rows if m in REFERENCES or m in EDITS or m in present)
    return kept, tuple(m for m in rows if m not in kept)


def check_baselines(baselines: Mapping, parse_objective) -> dict[str, tuple[str, dict]]:
    """``wme.baselines`` as {name: (objective, its block)}, every block checked; a baseline set to
    null is not run (a config merged over config.yaml drops its baselines so)."""
    out = {}
    for name, block in baselines.items():
        path = f"wme.baselines.{name}"
        if block is None:
            continue
        if not re.fullmatch(r"[a-z][a-z0-9_]*", str(name)) or name in REFERENCES or name in EDITS:
            raise ConfigError(f"{path}: a baseline's name must be lower-case letters, digits and _, and not a "
                              f"reference or edit name ({', '.join((*REFERENCES, *EDITS))})")
        if not isinstance(block, Mapping) or "objective" not in block or "lr" not in block:
            raise ConfigError(f"{path}: expected {{objective: <an objective>, lr: ..., <its settings>}}, got "
                              f"{block!r}")
        objective = block["objective"]
        settings = {k: v for k, v in block.items() if k != "objective"}
        run = parse_objective(objective, settings, path)
        if run.objective.spec.target:
            raise ConfigError(f"{path}.objective: {objective} matches a target model's activations, which only "
                              "masked unlearning supports")
        out[name] = (objective, settings)
    return out
