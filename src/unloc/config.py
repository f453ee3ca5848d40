"""The experiment config, checked against the registries before any job starts.

Snakemake validates the config's structure against ``workflow/schemas/config.schema.yaml``
(keys, types, enums of the fixed sections). Every block that holds a variant's or a training
run's settings is then read into its settings dataclass here, so an unknown or mistyped key
fails with its path and a suggestion (``unlearn.npo.betta: unknown setting; did you mean
'beta'?``), and every default is filled in from the one place it is defined: the dataclass.

``check_config`` returns an ``Experiment``: what the rules build their params, wildcard
constraints and ``expand()`` lists from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from unloc.evaluation import EvaluateSettings
from unloc.figures import FIGURES
from unloc.localizers import LOCALIZERS
from unloc.metrics.curve import CURVE_METRICS, curve_columns
from unloc.objectives import OBJECTIVES, ObjectiveRun, parse_objective
from unloc.registry import ConfigError, parse_settings, suggest
from unloc.sanity import SanitySettings
from unloc.stages import EvalSettings, MixSettings
from unloc.stats import StatsSettings
from unloc.tables import GEFFECT, ORIGINAL, TABLES, UWC, WME, WME_AVERAGE
from unloc.train import InjectSettings, LoopSettings, TrainSettings
from unloc.uwc import UwcSettings, sweep_metrics
from unloc.wme import EDITS, REFERENCES, WmeSettings, check_baselines

TRAIN_SECTIONS = ("pretrain", "finetune_retain", "finetune_full")
UNLEARN_KEYS = ("objectives", "localizers", "train", "eval_batch_size")
MASK_KEYS = ("ratio", "seeds")
INJECTION_MASK = "oracle"  # θo is injected into the oracle region
ORIGINAL_KEYS = ("seeds", "masks")


@dataclass(frozen=True)
class OriginalRun:
    """One unlearning run of seeds/000 Section 3: from θfull, in one localizer's ``ratio`` mask of
    the seeds it runs (all of ``original.seeds``, or the first where the mask does not depend on
    the seed), with the table's objective at the LR calibrated for that localizer."""

    table: str
    localizer: str
    ratio: float
    seeds: tuple[int, ...]
    objective: ObjectiveRun


@dataclass(frozen=True)
class Original:
    """The config's ``original`` section, checked: the runs of every configured Section 3 table,
    and the settings of every localizer their masks need (``original.masks.<localizer>``)."""

    seeds: tuple[int, ...]
    localizers: dict[str, Any]
    runs: dict[tuple[str, str], OriginalRun]  # (table, localizer) -> its runs

    def masks(self) -> list[tuple[str, float, int]]:
        """(localizer, ratio, seed) of every mask the runs train in and of the masks those read."""
        wanted = {(run.localizer, run.ratio, seed) for run in self.runs.values() for seed in run.seeds}
        out: set[tuple[str, float, int]] = set()
        while wanted:
            localizer, ratio, seed = wanted.pop()
            out.add((localizer, ratio, seed))
            wanted |= {(m, ratio, seed) for m in LOCALIZERS[localizer].masks(self.localizers[localizer])} - out
        return sorted(out)


GEFFECT_KEYS = ("splits", "objectives", "regularizer", "train", "probe_every", "uwc")


@dataclass(frozen=True)
class GEffect:
    """The config's ``geffect`` section (seeds/001), checked: its forget splits, the objectives
    run on each, the unlearning loop, the probe interval, and each (split, objective) run's
    objective block as the unlearn_all stage takes it (the section's regularizer filled in,
    the split's overrides merged)."""

    splits: tuple[str, ...]
    objectives: tuple[str, ...]
    train: LoopSettings
    probe_every: int
    blocks: dict[tuple[str, str], dict]
    uwc: UwcSettings
    # the UWC runs of the configured Tables 2-10: (table, split, value) -> objective block
    uwc_runs: dict[tuple[str, str, float], dict] = field(default_factory=dict)


@dataclass(frozen=True)
class Wme:
    """The config's ``wme`` section (seeds/004), checked: its settings, each baseline's objective
    and block, and the methods the configured WME tables read on each forget split."""

    settings: WmeSettings
    baselines: dict[str, tuple[str, dict]]  # name -> (objective, its block)
    methods: dict[str, tuple[str, ...]]  # split -> the methods evaluated on it, references first

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.methods)

    def table_splits(self, spec) -> tuple[str, ...]:
        """The forget splits a WME table reports: its own, wme.splits (the average's) or
        wme.sweep_splits (a sweep table's)."""
        if spec.split is None:
            return self.settings.sweep_splits or self.settings.splits
        return self.settings.splits if spec.split == WME_AVERAGE else (spec.split,)


@dataclass(frozen=True)
class Experiment:
    train: dict[str, TrainSettings]  # pretrain, finetune_retain, finetune_full
    inject: InjectSettings
    unlearn_train: LoopSettings
    objectives: dict[str, ObjectiveRun]  # every objective block of unlearn, checked
    unlearn_objectives: tuple[str, ...]  # the ones the experiment runs (unlearn.objectives)
    localizers: dict[str, Any]  # settings of every localizer built: the configured ones and what they read
    localizer_settings: dict[str, Any]  # settings of every registered localizer (its masks.<name> block)
    unlearn_localizers: tuple[str, ...]
    mix: MixSettings
    eval: EvalSettings
    evaluate: EvaluateSettings  # `unloc eval` of the named checkpoints (the evaluate rule)
    stats: StatsSettings
    tables: tuple[str, ...]
    figures: tuple[str, ...]
    sanity: SanitySettings
    original: Original
    figure_settings: dict[str, Any]  # of every configured figure with runs of its own (its config block)
    experiment_configs: dict[str, dict]  # {table: the config of the experiment it runs in} (Table 6)
    geffect: GEffect | None  # seeds/001's runs, when the config has a geffect section
    wme: Wme | None = None  # seeds/004's runs, when the config has a wme section


def merge_configs(base: dict, override: dict) -> dict:
    """``override`` merged key by key over ``base``, as Snakemake merges a --configfile over config.yaml
    (mappings merge recursively; any other value, lists included, replaces)."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge_configs(base.get(key) if isinstance(base.get(key), dict) else {}, value) \
            if isinstance(value, dict) else value
    return out


DEFAULTS = Path(__file__).resolve().parents[2] / "config.yaml"  # the checkout's (an editable install)


def load_config(path=None, defaults=DEFAULTS) -> dict:
    """The config the workflow runs for ``path``: the file merged over the checkout's config.yaml."""
    import yaml

    base = yaml.safe_load(Path(defaults).read_text())
    return base if path is None else merge_configs(base, yaml.safe_load(Path(path).read_text()) or {})


def _names(registry, values, path: str) -> tuple[str, ...]:
    for i, name in enumerate(values):
        registry.get(name, f"{path}[{i}]")
    return tuple(values)


def _check_blocks(section: dict, fixed: tuple[str, ...], registry, path: str) -> None:
    """Keys of ``section`` besides ``fixed`` must be names of ``registry`` (their blocks)."""
    for key in section:
        if key not in fixed and key not in registry:
            allowed = ", ".join([*fixed, *registry.names()])
            raise ConfigError(f"{path}.{key}: unknown key{suggest(key, [*fixed, *registry.names()])} "
                              f"(allowed: {allowed})")


def _localizer_closure(wanted: tuple[str, ...], settings_of: dict[str, Any], where: str = "masks",
                       path: str = "unlearn.localizers") -> dict[str, Any]:
    """Settings of ``wanted`` and of every localizer whose mask they read, dependencies first."""
    out: dict[str, Any] = {}

    def visit(name: str, path: str, chain: tuple[str, ...]) -> None:
        if name in out:
            return
        if name in chain:
            raise ConfigError(f"{where}: localizers read each other's masks in a loop: {' -> '.join((*chain, name))}")
        spec = LOCALIZERS.get(name, path)
        settings = settings_of[name]
        for dependency in spec.masks(settings):
            visit(dependency, f"{where}.{name} (reads the mask of)", (*chain, name))
        out[name] = settings

    for i, name in enumerate(wanted):
        visit(name, f"{path}[{i}]", ())
    return out


def check_config(config: dict) -> Experiment:
    """Every settings block of ``config`` read and checked; raises ConfigError naming the key."""
    train = {s: parse_settings(TrainSettings, config[s], s) for s in TRAIN_SECTIONS}
    inject = parse_settings(InjectSettings, config["inject"], "inject")

    unlearn = config["unlearn"]
    _check_blocks(unlearn, UNLEARN_KEYS, OBJECTIVES, "unlearn")
    objective_names = _names(OBJECTIVES, unlearn["objectives"], "unlearn.objectives")
    for name in objective_names:
        if name not in unlearn:
            raise ConfigError(f"unlearn.{name}: objective {name} is in unlearn.objectives but has no block "
                              f"(at least its lr: unlearn.{name}: {{lr: ...}})")
    runs = {name: parse_objective(name, unlearn[name], f"unlearn.{name}") for name in OBJECTIVES if name in unlearn}
    unlearn_train = parse_settings(LoopSettings, unlearn["train"], "unlearn.train")

    masks = config["masks"]
    _check_blocks(masks, MASK_KEYS, LOCALIZERS, "masks")
    for name in masks:
        if name in LOCALIZERS and LOCALIZERS[name].reads_weights:
            raise ConfigError(f"masks.{name}: {name} scores θfull for seeds/000 Section 3, whose localizers take their "
                              f"settings from original.masks.{name}")
    wanted = _names(LOCALIZERS, unlearn["localizers"], "unlearn.localizers")
    for i, name in enumerate(wanted):
        if LOCALIZERS[name].reads_weights:
            raise ConfigError(
                f"unlearn.localizers[{i}]: {name} scores θfull (seeds/000 Section 3), but these runs unlearn θo "
                f"(Section 4), which only the uniform regions fit: "
                f"{', '.join(s.name for s in LOCALIZERS.specs() if not s.reads_weights)}. Section 3's tables "
                f"(original.<table>) unlearn θfull in its mask")
    # every block is checked, also of a localizer no run uses
    localizer_settings = {spec.name: spec.parse(masks.get(spec.name), f"masks.{spec.name}")
                          for spec in LOCALIZERS.specs()}
    localizers = _localizer_closure((INJECTION_MASK, *wanted), localizer_settings)

    mix = parse_settings(MixSettings, config["mix"], "mix")
    columns = set(curve_columns(mix.metrics))
    tables = _names(TABLES, config["tables"], "tables")
    for name in tables:
        spec = TABLES[name]
        if spec.experiment or spec.scenario in (GEFFECT, UWC, WME):
            continue  # its runs are its experiment's (check_experiments) or the geffect section's
        _needs(f"tables: {name}", spec.needs, columns, "mix.metrics")
        if spec.scenario == ORIGINAL:
            continue  # its runs are its own (the original section)
        missing = [loc for loc in spec.localizers if loc not in wanted]
        if missing:
            raise ConfigError(f"tables: {name} compares {', '.join(spec.localizers)}, but unlearn.localizers "
                              f"lacks {', '.join(missing)}")
    for i, name in enumerate(objective_names):
        if OBJECTIVES[name].target:
            raise ConfigError(f"unlearn.objectives[{i}]: {name} matches θr's activations; its Oracle-vs-Random runs "
                              f"are Figure 1's (figures: [figure1]), not Table 2's")
    geffect = check_geffect(config["geffect"]) if config.get("geffect") else None
    for name in tables:
        if TABLES[name].scenario in (GEFFECT, UWC) and geffect is None:
            raise ConfigError(f"tables: {name} is seeds/001's, whose runs the geffect section configures; "
                              "the config has none")
    if geffect is not None:
        geffect = check_uwc(config["geffect"], geffect, tables)
    figures = _names(FIGURES, config["figures"], "figures")
    wme_outputs = [(f"tables: {n}", TABLES[n]) for n in tables if TABLES[n].scenario == WME] + \
                  [(f"figures: {n}", FIGURES[n]) for n in figures if FIGURES[n].runs == WME]
    wme = check_wme(config["wme"], wme_outputs) if config.get("wme") else None
    if wme_outputs and wme is None:
        raise ConfigError(f"{wme_outputs[0][0]} is seeds/004's, whose runs the wme section configures; the config "
                          "has none")
    for name in figures:
        if FIGURES[name].runs == GEFFECT and geffect is None:
            raise ConfigError(f"figures: {name} plots seeds/001's runs, which the geffect section configures; "
                              "the config has none")
    figure_settings = {}
    for name in figures:
        if FIGURES[name].runs in (GEFFECT, WME):
            continue  # it plots probe logs or evaluations, not curves
        _needs(f"figures: {name}", FIGURES[name].needs, columns, "mix.metrics")
        if FIGURES[name].runs == "own":
            figure_settings[name] = _own_runs(name, config, runs)
    for name in FIGURES.names():
        if name in config and name not in figures:
            FIGURES[name].parse(config[name], name)  # checked, though unused

    return Experiment(
        train=train, inject=inject, unlearn_train=unlearn_train,
        objectives=runs, unlearn_objectives=objective_names, localizers=localizers,
        localizer_settings=localizer_settings,
        unlearn_localizers=wanted, mix=mix, eval=parse_settings(EvalSettings, config["eval"], "eval"),
        evaluate=parse_settings(EvaluateSettings, config.get("evaluate"), "evaluate"),
        stats=parse_settings(StatsSettings, config["stats"], "stats"), tables=tables, figures=figures,
        sanity=parse_settings(SanitySettings, config.get("sanity"), "sanity"),
        original=check_original(config.get("original") or {}, tables, unlearn), figure_settings=figure_settings,
        experiment_configs=check_experiments(config, tables), geffect=geffect, wme=wme)


def _own_runs(name: str, config: dict, runs: dict[str, ObjectiveRun]):
    """The settings of a figure that rests on runs of its own (Figure 1): its block, checked
    against the seeds θo is injected for and the objective blocks."""
    settings = FIGURES[name].parse(config.get(name), name)
    if settings.seed not in config["masks"]["seeds"]:
        raise ConfigError(f"{name}.seed: {settings.seed} is not one of masks.seeds {config['masks']['seeds']} "
                          f"(the seeds θo is injected for)")
    OBJECTIVES.get(settings.objective, f"{name}.objective")
    if settings.objective not in runs:
        raise ConfigError(f"unlearn.{settings.objective}: {name} unlearns with {settings.objective}, which has no "
                          f"block (at least its lr: unlearn.{settings.objective}: {{lr: ...}})")
    return settings


def _seed_list(seeds) -> bool:
    """A non-empty list of distinct integers."""
    return (isinstance(seeds, list) and bool(seeds) and len(set(seeds)) == len(seeds)
            and all(isinstance(x, int) and not isinstance(x, bool) for x in seeds))


def check_original(section: dict, tables: tuple[str, ...], unlearn: dict) -> Original:
    """The ``original`` section: Section 3's mask seeds, its localizers' settings and one block per
    configured Section 3 table (``lr``: the learning rate of each of its localizers)."""
    section3 = [t for t in tables if TABLES[t].scenario == ORIGINAL]
    allowed = [*ORIGINAL_KEYS, *(s.name for s in TABLES.specs() if s.scenario == ORIGINAL)]
    for key in section:
        if key not in allowed:
            raise ConfigError(f"original.{key}: unknown key{suggest(key, allowed)} (allowed: {', '.join(allowed)})")
    seeds = section.get("seeds")
    if section3 and not _seed_list(seeds):
        raise ConfigError(f"original.seeds: expected a non-empty list of distinct integers (the mask seeds of "
                          f"{', '.join(section3)}), got {seeds!r}")
    blocks = section.get("masks") or {}
    if not isinstance(blocks, dict):
        raise ConfigError(f"original.masks: expected a mapping of localizer settings blocks, got {blocks!r}")
    _check_blocks(blocks, (), LOCALIZERS, "original.masks")
    settings = {spec.name: spec.parse(blocks.get(spec.name), f"original.masks.{spec.name}")
                for spec in LOCALIZERS.specs()}
    runs: dict[tuple[str, str], OriginalRun] = {}
    for table in section3:
        spec = TABLES[table]
        block = section.get(table)
        path = f"original.{table}"
        if not isinstance(block, dict) or set(block) != {"lr"} or not isinstance(block["lr"], dict):
            raise ConfigError(f"{path}: expected {{lr: {{localizer: learning rate}}}} for "
                              f"{', '.join(spec.localizers)} (calibrated per model), got {block!r}")
        lrs = block["lr"]
        unknown = [k for k in lrs if k not in spec.localizers]
        if unknown:
            raise ConfigError(f"{path}.lr.{unknown[0]}: {table} compares {', '.join(spec.localizers)} only")
        objective_block = {k: v for k, v in (unlearn.get(spec.objective) or {}).items() if k != "lr"}
        for localizer in spec.localizers:
            if localizer not in lrs:
                raise ConfigError(f"{path}.lr.{localizer}: required setting missing (the LR of {table}'s "
                                  f"{spec.objective} run in the {localizer} mask, calibrated per model)")
            lr = lrs[localizer]
            if isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0:
                raise ConfigError(f"{path}.lr.{localizer}: expected a positive number, got {lr!r}")
            # the objective's other settings (β, RMU's layer, a regularizer) are Section 4's
            run = parse_objective(spec.objective, {**objective_block, "lr": lr}, f"unlearn.{spec.objective}")
            run_seeds = tuple(seeds) if LOCALIZERS[localizer].seeded else (seeds[0],)
            runs[(table, localizer)] = OriginalRun(table, localizer, spec.ratio, run_seeds, run)
    wanted = tuple(dict.fromkeys(run.localizer for run in runs.values()))
    closure = _localizer_closure(wanted, settings, "original.masks", "original (its tables' localizers)")
    return Original(seeds=tuple(seeds or ()), localizers=closure, runs=runs)


def check_geffect(section: dict) -> GEffect:
    """The ``geffect`` section: its splits and objectives, and every run's objective block."""
    if not isinstance(section, dict):
        raise ConfigError(f"geffect: expected a mapping, got {section!r}")
    _check_blocks(section, GEFFECT_KEYS, OBJECTIVES, "geffect")
    for key in ("splits", "objectives", "train", "probe_every"):
        if key not in section:
            raise ConfigError(f"geffect.{key}: required setting missing")
    splits = section["splits"]
    if not isinstance(splits, list) or not splits or len(set(splits)) != len(splits) or not all(
            isinstance(s, str) and re.fullmatch(r"forget\d\d", s) for s in splits):
        raise ConfigError(f"geffect.splits: expected a non-empty list of distinct forgetNN names, got {splits!r}")
    objectives = _names(OBJECTIVES, section["objectives"], "geffect.objectives")
    probe_every = section["probe_every"]
    if isinstance(probe_every, bool) or not isinstance(probe_every, int) or probe_every < 1:
        raise ConfigError(f"geffect.probe_every: expected a positive integer (steps between probes), got "
                          f"{probe_every!r}")
    train = parse_settings(LoopSettings, section["train"], "geffect.train")
    blocks: dict[tuple[str, str], dict] = {}
    for i, name in enumerate(objectives):
        path = f"geffect.{name}"
        if OBJECTIVES[name].target:
            raise ConfigError(f"geffect.objectives[{i}]: {name} matches θr's activations, which only masked "
                              "unlearning supports")
        block = section.get(name)
        if not isinstance(block, dict) or "lr" not in block:
            raise ConfigError(f"{path}: objective {name} is in geffect.objectives but has no block "
                              f"(at least its lr: {path}: {{lr: ...}})")
        by_split = block.get("splits") or {}
        if not isinstance(by_split, dict):
            raise ConfigError(f"{path}.splits: expected {{<split>: <settings overrides>}}, got {by_split!r}")
        # an override of a split not run is still checked, so that a config merged over one with
        # more splits (config.yaml's forget10 values) needs no clearing
        for split in by_split:
            if not (isinstance(split, str) and re.fullmatch(r"forget\d\d", split)):
                raise ConfigError(f"{path}.splits.{split}: not a forget split name (forgetNN, as geffect.splits)")
            parse_objective(name, _split_block(section, name, split), f"{path}.splits.{split}")
        for split in splits:
            blocks[(split, name)] = _split_block(section, name, split)
    for name in OBJECTIVES.names():  # a block of an objective not run is still checked
        if name in section and name not in objectives:
            parse_objective(name, {k: v for k, v in section[name].items() if k != "splits"}, f"geffect.{name}")
    uwc = parse_settings(UwcSettings, section.get("uwc"), "geffect.uwc")
    sweep_metrics(uwc)  # the measure and the removal column are curve columns
    for table, values in (uwc.values or {}).items():
        if table not in TABLES or TABLES[table].scenario != UWC:
            uwc_tables = [n for n in TABLES.names() if TABLES[n].scenario == UWC]
            raise ConfigError(f"geffect.uwc.values.{table}: not a UWC table (allowed: {', '.join(uwc_tables)})")
        if not isinstance(values, list) or not values or len(set(values)) != len(values) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ConfigError(f"geffect.uwc.values.{table}: expected a non-empty list of distinct numbers (values "
                              f"of {TABLES[table].objective}.{TABLES[table].sweep}), got {values!r}")
    return GEffect(splits=tuple(splits), objectives=objectives, train=train, probe_every=probe_every, blocks=blocks,
                   uwc=replace(uwc, splits=uwc.splits or tuple(splits)))


def check_wme(section: dict, outputs: list[tuple[str, Any]]) -> Wme:
    """The ``wme`` section, and per forget split the methods that the configured WME tables and
    figures (``outputs``: (where, spec)) read: Tables 1-4 on wme.splits, the sweep tables on
    wme.sweep_splits."""
    settings = parse_settings(WmeSettings, section, "wme")
    for key in ("splits", "sweep_splits"):
        splits = getattr(settings, key)
        if len(set(splits)) != len(splits) or not all(re.fullmatch(r"forget\d\d", s) for s in splits):
            raise ConfigError(f"wme.{key}: expected a list of distinct forgetNN names, got {list(splits)!r}")
    if not settings.splits:
        raise ConfigError("wme.splits: expected at least one forget split")
    if not settings.seeds or len(set(settings.seeds)) != len(settings.seeds):
        raise ConfigError(f"wme.seeds: expected a non-empty list of distinct seeds, got {list(settings.seeds)!r}")
    baselines = check_baselines(settings.baselines, parse_objective)
    wme = Wme(settings=settings, baselines=baselines, methods={})
    methods: dict[str, dict[str, None]] = {}
    for where, spec in outputs:
        if spec.split not in (None, WME_AVERAGE) and spec.split not in settings.splits:
            raise ConfigError(f"{where} reports {spec.split}, which wme.splits lacks "
                              f"({', '.join(settings.splits)})")
        for method in spec.rows:
            if method not in REFERENCES and method not in EDITS and method not in baselines:
                continue  # a baseline the config does not run: its row is left out (wme.wme_rows)
            for split in wme.table_splits(spec):
                methods.setdefault(split, dict.fromkeys(REFERENCES))[method] = None
    reported = {m for ms in methods.values() for m in ms}
    for name in baselines if outputs else ():
        if name not in reported:  # a typo would otherwise leave its row out unseen
            rows = sorted({m for _, spec in outputs for m in spec.rows if m not in REFERENCES and m not in EDITS})
            raise ConfigError(f"wme.baselines.{name}: no configured WME table or figure reports it (their baseline "
                              f"rows: {', '.join(rows) or 'none'})")
    return replace(wme, methods={s: tuple(m) for s, m in methods.items()})


def _split_block(section: dict, name: str, split: str) -> dict:
    """geffect.<name> for one split: its overrides merged, the section's regularizer filled in."""
    block = section[name]
    base = {k: v for k, v in block.items() if k != "splits"}
    base.setdefault("regularizer", section.get("regularizer"))
    return {**base, **((block.get("splits") or {}).get(split) or {})}


def check_uwc(section: dict, geffect: GEffect, tables: tuple[str, ...]) -> GEffect:
    """The runs of the configured UWC tables (seeds/001 Tables 2-10): per split of geffect.uwc
    and value of the table's grid (or geffect.uwc.values), its objective's geffect block with the
    table's fixed settings and the value of its swept one."""
    runs = {}
    uwc_tables = [t for t in tables if TABLES[t].scenario == UWC]
    for i, split in enumerate(geffect.uwc.splits if uwc_tables else ()):
        if split not in geffect.splits:
            raise ConfigError(f"geffect.uwc.splits[{i}]: {split} is not one of geffect.splits "
                              f"({', '.join(geffect.splits)})")
    values_of = geffect.uwc.values or {}
    for table in dict.fromkeys([*uwc_tables, *values_of]):  # values of a table not built are still checked
        spec = TABLES[table]
        if not isinstance(section.get(spec.objective), dict):
            raise ConfigError(f"geffect.{spec.objective}: {table} tunes {spec.objective}, which needs a block in the "
                              f"geffect section (at least its lr: geffect.{spec.objective}: {{lr: ...}})")
        where = f"geffect.uwc.values.{table}" if table in values_of else table
        for split in geffect.uwc.splits:
            for i, value in enumerate(values_of.get(table, spec.grid)):
                block = {**_split_block(section, spec.objective, split), **dict(spec.fixed), spec.sweep: float(value)}
                parse_objective(spec.objective, block, f"{where}[{i}] ({spec.objective} on {split})")
                if table in uwc_tables:
                    runs[(table, split, float(value))] = block
    return replace(geffect, uwc_runs=runs)


def _needs(what: str, needs, columns: set[str], where: str) -> None:
    missing = [c for c in needs if c not in columns]
    if missing:
        raise ConfigError(f"{what} reads the curve columns {', '.join(missing)}, which no curve metric of "
                          f"{where} writes")


# --------------------------------------------------------------------------- tables with an experiment of their own

EXPERIMENT_KEYS = ("seeds", "config")
# What a table with an experiment of its own (Table 6) fixes in that experiment's config
FIXED_BY_TABLE = ("name", "tables", "figures", "masks.ratio", "masks.seeds", "unlearn.objectives",
                  "unlearn.localizers", "mix.metrics")


def _has(config: dict, dotted: str) -> bool:
    head, _, rest = dotted.partition(".")
    return head in config and (not rest or (isinstance(config[head], dict) and _has(config[head], rest)))


def experiment_config(config: dict, table: str) -> dict:
    """The config of the experiment ``table`` runs in (its spec's ``experiment``; Table 6: Section 4
    on PII records): this config, less the blocks of such tables, with the ``<table>.config``
    block merged over it (its data, its learning rates), then what the table fixes: its results
    directory ``results/{name}/<experiment>``, the mask seeds of ``<table>.seeds``, its ratio,
    objective and localizers, and only the curve metrics it reads."""
    spec = TABLES[table]
    block = config.get(table)
    if not isinstance(block, dict):
        raise ConfigError(f"{table}: required block missing ({{seeds: [...], config: {{data: ...}}}}: the mask seeds "
                          f"of {table} and what its experiment changes of this config)")
    for key in block:
        if key not in EXPERIMENT_KEYS:
            raise ConfigError(f"{table}.{key}: unknown key{suggest(key, EXPERIMENT_KEYS)} "
                              f"(allowed: {', '.join(EXPERIMENT_KEYS)})")
    seeds = block.get("seeds")
    if not _seed_list(seeds):
        raise ConfigError(f"{table}.seeds: expected a non-empty list of distinct integers (its mask seeds), "
                          f"got {seeds!r}")
    overrides = block.get("config") or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{table}.config: expected a mapping merged over this config, got {overrides!r}")
    for dotted in FIXED_BY_TABLE:
        if _has(overrides, dotted):
            raise ConfigError(f"{table}.config.{dotted}: set by {table} itself (it fixes "
                              f"{', '.join(FIXED_BY_TABLE)})")
    if any(TABLES[k].experiment for k in overrides if k in TABLES):
        raise ConfigError(f"{table}.config: holds the block of a table with an experiment of its own")
    base = {k: v for k, v in config.items() if not (k in TABLES and TABLES[k].experiment)}
    sub = merge_configs(base, overrides)
    if sub["data"] != config["data"] and sub["data"]["name"] == config["data"]["name"]:
        raise ConfigError(f"{table}.config.data.name: its data differ from this config's, so they need a name of "
                          f"their own (both would be written to results/data/{config['data']['name']}/)")
    metrics = [m.name for m in CURVE_METRICS.specs() if set(m.columns) & set(spec.needs)]
    return merge_configs(sub, {
        "name": f"{config['name']}/{spec.experiment}", "tables": [], "figures": [],
        "masks": {"ratio": spec.ratio, "seeds": seeds},
        "unlearn": {"objectives": [spec.objective], "localizers": list(spec.localizers)},
        "mix": {"metrics": metrics},
    })


def check_experiments(config: dict, tables: tuple[str, ...]) -> dict[str, dict]:
    """{table: its experiment's config, checked} for every configured table with an experiment of its own."""
    out = {}
    for table in tables:
        if TABLES[table].experiment is None:
            continue
        sub = experiment_config(config, table)
        try:
            check_config(sub)
        except ConfigError as e:
            raise ConfigError(f"{table}'s experiment ({table}.config merged over this config): {e}") from None
        out[table] = sub
    for name in TABLES.names():
        if TABLES[name].experiment and name in config and name not in tables:
            experiment_config(config, name)  # checked, though unused
    return out
