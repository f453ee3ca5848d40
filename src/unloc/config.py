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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unloc.figures import FIGURES
from unloc.localizers import LOCALIZERS
from unloc.metrics.curve import curve_columns
from unloc.objectives import OBJECTIVES, ObjectiveRun, parse_objective
from unloc.registry import ConfigError, parse_settings, suggest
from unloc.sanity import SanitySettings
from unloc.stages import EvalSettings, MixSettings
from unloc.stats import StatsSettings
from unloc.tables import TABLES
from unloc.train import InjectSettings, LoopSettings, TrainSettings

TRAIN_SECTIONS = ("pretrain", "finetune_retain", "finetune_full")
UNLEARN_KEYS = ("objectives", "localizers", "train", "eval_batch_size")
MASK_KEYS = ("ratio", "seeds")
INJECTION_MASK = "oracle"  # θo is injected into the oracle region


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
    stats: StatsSettings
    tables: tuple[str, ...]
    figures: tuple[str, ...]
    sanity: SanitySettings


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


def _localizer_closure(wanted: tuple[str, ...], settings_of: dict[str, Any]) -> dict[str, Any]:
    """Settings of ``wanted`` and of every localizer whose mask they read, dependencies first."""
    out: dict[str, Any] = {}

    def visit(name: str, path: str, chain: tuple[str, ...]) -> None:
        if name in out:
            return
        if name in chain:
            raise ConfigError(f"masks: localizers read each other's masks in a loop: {' -> '.join((*chain, name))}")
        spec = LOCALIZERS.get(name, path)
        settings = settings_of[name]
        for dependency in spec.masks(settings):
            visit(dependency, f"masks.{name} (reads the mask of)", (*chain, name))
        out[name] = settings

    for i, name in enumerate(wanted):
        visit(name, f"unlearn.localizers[{i}]", ())
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
    wanted = _names(LOCALIZERS, unlearn["localizers"], "unlearn.localizers")
    for i, name in enumerate(wanted):
        if LOCALIZERS[name].reads_weights:
            raise ConfigError(
                f"unlearn.localizers[{i}]: {name} scores θfull (seeds/000 Section 3), but these runs unlearn θo "
                f"(Section 4), which only the uniform regions fit: "
                f"{', '.join(s.name for s in LOCALIZERS.specs() if not s.reads_weights)}. Its mask alone is built by "
                f"`snakemake results/<name>/masks/{name}/s<seed>/mask.safetensors`")
    # every block is checked, also of a localizer no run uses
    localizer_settings = {spec.name: spec.parse(masks.get(spec.name), f"masks.{spec.name}")
                          for spec in LOCALIZERS.specs()}
    localizers = _localizer_closure((INJECTION_MASK, *wanted), localizer_settings)

    mix = parse_settings(MixSettings, config["mix"], "mix")
    columns = set(curve_columns(mix.metrics))
    tables = _names(TABLES, config["tables"], "tables")
    for name in tables:
        spec = TABLES[name]
        _needs(f"tables: {name}", spec.needs, columns, "mix.metrics")
        missing = [loc for loc in spec.localizers if loc not in wanted]
        if missing:
            raise ConfigError(f"tables: {name} compares {', '.join(spec.localizers)}, but unlearn.localizers "
                              f"lacks {', '.join(missing)}")
    figures = _names(FIGURES, config["figures"], "figures")
    for name in figures:
        _needs(f"figures: {name}", FIGURES[name].needs, columns, "mix.metrics")

    return Experiment(
        train=train, inject=inject, unlearn_train=unlearn_train,
        objectives=runs, unlearn_objectives=objective_names, localizers=localizers,
        localizer_settings=localizer_settings,
        unlearn_localizers=wanted, mix=mix, eval=parse_settings(EvalSettings, config["eval"], "eval"),
        stats=parse_settings(StatsSettings, config["stats"], "stats"), tables=tables, figures=figures,
        sanity=parse_settings(SanitySettings, config.get("sanity"), "sanity"))


def _needs(what: str, needs, columns: set[str], where: str) -> None:
    missing = [c for c in needs if c not in columns]
    if missing:
        raise ConfigError(f"{what} reads the curve columns {', '.join(missing)}, which no curve metric of "
                          f"{where} writes")
