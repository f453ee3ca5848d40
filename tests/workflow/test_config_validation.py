"""The config is checked before any job starts: its structure against the schema, then every
settings block against its dataclass (src/unloc/config.py), with the key's path and a suggestion."""

import copy
import json
import shlex
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from unloc.config import check_config
from unloc.registry import ConfigError
from unloc.tables import GEFFECT, ORIGINAL, TABLES, UWC, WME

from helpers import REPO, load_config, snakemake, write_config

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
CONFIGS = sorted(p.relative_to(REPO).as_posix() for p in [REPO / "config.yaml", *(REPO / "config").glob("*.yaml")])


@pytest.mark.parametrize("name", CONFIGS)
def test_every_shipped_config_is_valid_as_the_workflow_merges_it(name):
    config = load_config(name)
    validate(copy.deepcopy(config), SCHEMA)
    check_config(config)


TINY_CALIBRATED = ("finetune_retain", "finetune_full", "inject", "unlearn.train", "unlearn.eval_batch_size", "mix",
                   "eval", "model.max_length")


def leaves(tree: dict, prefix: str = "") -> set[str]:
    """Dotted paths of every value set in ``tree`` (an empty block sets nothing: its defaults hold)."""
    out = set()
    for key, value in tree.items():
        path = f"{prefix}{key}"
        out |= leaves(value, f"{path}.") if isinstance(value, dict) else {path}
    return out


@pytest.mark.parametrize("name", [c for c in CONFIGS if yaml.safe_load((REPO / c).read_text()).get("model", {})
                                  .get("source", "tiny") != "tiny"])
def test_a_real_model_config_inherits_nothing_calibrated_for_the_tiny_model(name):
    """config.yaml's training values, batch sizes and lengths are the tiny model's: a config of
    another model sets each of them itself, so none is inherited unseen (the objectives' blocks too)."""
    base, own = yaml.safe_load((REPO / "config.yaml").read_text()), yaml.safe_load((REPO / name).read_text())
    merged = load_config(name)
    section3 = [t for t in merged["tables"] if TABLES[t].scenario == ORIGINAL]  # their LRs
    figure_objectives = [s.objective for s in check_config(merged).figure_settings.values()]  # Figure 1's
    # Table 6's experiment: its injection, and the size of the generated PII world when it runs on one
    pii = []
    if "table6" in merged["tables"]:
        pii.append("table6.config.inject")
        if merged["table6"]["config"]["data"].get("source") == "pii":
            pii.append("table6.config.data.pii")
    # the objectives' LRs: seeds/000's where it builds a seeds/000 table or figure, seeds/001's
    # (the geffect section's, every objective its tables run) where it builds one of those
    seed001 = [t for t in merged["tables"] if TABLES[t].scenario in (GEFFECT, UWC)]
    seed000 = [t for t in merged["tables"] if t not in seed001 and TABLES[t].scenario != WME] or figure_objectives
    geffect_objectives = {*merged["geffect"]["objectives"], *(TABLES[t].objective for t in seed001
                                                               if TABLES[t].scenario == UWC)} if seed001 else ()
    # seeds/004's: θ_fgt's fine-tuning and every baseline's LR, where it builds one of its tables
    seed004 = [t for t in merged["tables"] if TABLES[t].scenario == WME]
    wme = ["wme.finetune_forget.lr", *(f"wme.baselines.{b}.lr" for b, block in merged["wme"]["baselines"].items()
                                       if block is not None)] if seed004 else []
    sections = [*TINY_CALIBRATED, *wme,
                *(f"unlearn.{o}" for o in [*base["unlearn"]["objectives"], *figure_objectives] if seed000),
                *(f"geffect.{o}.lr" for o in geffect_objectives), *(f"original.{t}" for t in section3), *pii]
    tiny = {leaf for leaf in leaves(base) if any(leaf == s or leaf.startswith(f"{s}.") for s in sections)}
    missing = sorted(tiny - leaves(own))
    assert not missing, f"{name} inherits the tiny model's {', '.join(missing)}"


def test_shipped_configs_hold_only_what_differs_from_their_defaults():
    """Override-only: no value of a config/ file repeats what config.yaml already says."""
    base = yaml.safe_load((REPO / "config.yaml").read_text())
    repeats = []
    for name in CONFIGS:
        if name == "config.yaml":
            continue
        own = yaml.safe_load((REPO / name).read_text())
        for leaf in sorted(leaves(own)):
            if any(leaf == s or leaf.startswith(f"{s}.") for s in TINY_CALIBRATED) or \
                    leaf.startswith(("unlearn.", "original.table")):
                continue  # restated on purpose: see the test above
            value, default = own, base
            for part in leaf.split("."):
                value, default = value[part], default.get(part) if isinstance(default, dict) else None
            if value == default:
                repeats.append(f"{name}: {leaf} = {value!r}")
    assert not repeats, "these repeat config.yaml: " + "; ".join(repeats)


@pytest.mark.parametrize("mutate,key,message", [
    (lambda c: c.update(unlearning={}), "", "'unlearning' was unexpected"),
    (lambda c: c["masks"].update(ratio=2), "['masks']['ratio']", "2 is greater than the maximum of 0.5"),
    (lambda c: c["data"]["tofu"].update(retain_items="first5"), "['data']['tofu']['retain_items']",
     "'first5' is not of type 'integer', 'null'"),
    (lambda c: c["data"]["tofu"].update(utility_items=0), "['data']['tofu']['utility_items']",
     "0 is less than the minimum of 1"),
    (lambda c: c["unlearn"].update(objectives="npo"), "['unlearn']['objectives']", "'npo' is not of type 'array'"),
    (lambda c: c["original"].update(seeds=[7, 7]), "['original']['seeds']", "has non-unique elements"),
    (lambda c: c["table6"].update(seed=[7]), "['table6']", "'seed' was unexpected"),
    (lambda c: c["data"].update(lume={"path": "x", "forget_fraction": 1}), "['data']['lume']['forget_fraction']",
     "1 is greater than or equal to the maximum of 1"),
])
def test_bad_structure_fails_the_schema_naming_the_key(mutate, key, message):
    config = load_config()
    mutate(config)
    with pytest.raises(Exception) as err:
        validate(copy.deepcopy(config), SCHEMA)
    text = str(err.value)
    assert message in text
    assert f"On instance{key}" in text or f"On instance['{key}']" in text


def with_figure1(config: dict) -> dict:
    """``config`` building Figure 1; returns its (new) ``figure1`` block."""
    config["figures"] = [*config["figures"], "figure1"]
    return config.setdefault("figure1", {})


def with_table6(config: dict) -> dict:
    """``config`` building Table 6; returns its ``table6`` block."""
    config["tables"] = [*config["tables"], "table6"]
    return config["table6"]


def section3(config: dict) -> dict:
    """``config`` building every Section 3 table; returns its ``original`` section."""
    config["tables"] = [*config["tables"], *(s.name for s in TABLES.specs() if s.scenario == ORIGINAL)]
    return config["original"]


@pytest.mark.parametrize("mutate,message", [
    (lambda c: c["inject"].update(lrr=1e-3), "inject.lrr: unknown setting; did you mean 'lr'?"),
    (lambda c: c["inject"].update(lr="fast"), "inject.lr: expected a number, got a string 'fast'"),
    (lambda c: c["pretrain"].update(lambda_retain=2), "pretrain.lambda_retain: unknown setting"),
    (lambda c: c["finetune_retain"].update(schedule="cosin"),
     "finetune_retain.schedule: 'cosin' is not one of 'constant', 'linear', 'cosine'; did you mean 'cosine'?"),
    (lambda c: c["finetune_retain"].update(optimizer="adam"),
     "finetune_retain.optimizer.name: unknown optimizer 'adam'; did you mean 'adamw'?"),
    (lambda c: c["masks"].update(seed=[1]), "masks.seed: unknown key; did you mean 'seeds'?"),
    (lambda c: c["masks"].update(random={"outsid": None}), "masks.random.outsid: unknown setting; did you mean"),
    (lambda c: c["unlearn"].update(objectives=["npoo"]),
     "unlearn.objectives[0]: unknown objective 'npoo'; did you mean 'npo'?"),
    (lambda c: c["unlearn"].update(localizers=["oracle", "randon"]),
     "unlearn.localizers[1]: unknown localizer 'randon'; did you mean 'random'?"),
    (lambda c: c["unlearn"]["npo"].update(betta=0.1), "unlearn.npo.betta: unknown setting; did you mean 'beta'?"),
    (lambda c: c["unlearn"]["wga"].update(alpha="x"), "unlearn.wga.alpha: expected a number"),
    (lambda c: c["unlearn"].update(nop={"lr": 1}), "unlearn.nop: unknown key; did you mean 'npo'?"),
    (lambda c: c["unlearn"].update(objectives=["ga"]), "unlearn.ga: objective ga is in unlearn.objectives but has no "
                                                        "block"),
    (lambda c: c["unlearn"]["npo"].update(regularizer={"name": "gdd"}),
     "unlearn.npo.regularizer.name: unknown regularizer 'gdd'; did you mean 'gd'?"),
    (lambda c: c["eval"].update(es_convention="mine"), "eval.es_convention: 'mine' is not one of 'paper'"),
    (lambda c: c["mix"].update(metrics=["es", "mmu"]),
     "mix.metrics[1]: unknown curve metric 'mmu'; did you mean 'mu'?"),
    (lambda c: c["mix"].update(metrics=["es"]), "tables: table2 reads the curve columns mu, log10_fq, which no curve"),
    (lambda c: c["unlearn"].update(localizers=["oracle"]), "tables: table2 compares oracle, random, but"),
    (lambda c: c.update(tables=["tabel2"]), "tables[0]: unknown table 'tabel2'; did you mean 'table2'?"),
    (lambda c: c["stats"].update(tost_margin={"aues": 0}), "stats.tost_margin.aues: 0.0 must be greater than 0"),
    (lambda c: c["masks"].update(memflex={"sigma": 1e-4}),
     "masks.memflex: memflex scores θfull for seeds/000 Section 3, whose localizers take their settings from "
     "original.masks.memflex"),
    (lambda c: c["unlearn"].update(localizers=["oracle", "random", "wagle"]),
     "unlearn.localizers[2]: wagle scores θfull (seeds/000 Section 3)"),
    (lambda c: c["original"].update(tabel3={"lr": {}}), "original.tabel3: unknown key; did you mean 'table3'?"),
    (lambda c: c["original"]["masks"].update(memflx={}), "original.masks.memflx: unknown key; did you mean 'memflex'?"),
    (lambda c: c["original"]["masks"].update(wagle={"gama": 1}), "original.masks.wagle.gama: unknown setting"),
    # the quick config builds no Section 3 table in `all`: these list one, whose block is then checked
    (lambda c: section3(c)["table1"]["lr"].pop("memflex"), "original.table1.lr.memflex: required setting missing"),
    (lambda c: section3(c)["table3"]["lr"].update(memflex=1e-3), "original.table3.lr.memflex: table3 compares "
                                                                 "random, wagle only"),
    (lambda c: section3(c)["table4"]["lr"].update(wagle="high"),
     "original.table4.lr.wagle: expected a positive number, got 'high'"),
    (lambda c: section3(c).update(table5={"learning_rate": 1}), "original.table5: expected {lr: {localizer: "),
    (lambda c: section3(c) and c["unlearn"]["rmu"].update(layr=2), "unlearn.rmu.layr: unknown setting"),
    (lambda c: with_figure1(c).update(seed=8), "figure1.seed: 8 is not one of masks.seeds [7, 19]"),
    (lambda c: with_figure1(c).update(random_seeds=[7, 7]), "figure1: random_seeds [7, 7]: expected distinct seeds"),
    (lambda c: (with_figure1(c), c["unlearn"].pop("l2_mlp")),
     "unlearn.l2_mlp: figure1 unlearns with l2_mlp, which has no block"),
    (lambda c: c.update(figure1={"sed": 7}), "figure1.sed: unknown setting; did you mean 'seed'?"),
    (lambda c: c["unlearn"].update(objectives=["npo", "l2_mlp"]),
     "unlearn.objectives[1]: l2_mlp matches θr's activations; its Oracle-vs-Random runs are Figure 1's"),
    (lambda c: with_table6(c)["config"].update(tables=["table2"]),
     "table6.config.tables: set by table6 itself (it fixes name, tables, figures, masks.ratio, masks.seeds"),
    (lambda c: with_table6(c)["config"].update(unlearn={"npo": {"betta": 0.1}}),
     "table6's experiment (table6.config merged over this config): unlearn.npo.betta: unknown setting; did you mean "
     "'beta'?"),
    (lambda c: with_table6(c)["config"]["data"].update(name=c["data"]["name"]),
     "table6.config.data.name: its data differ from this config's, so they need a name of their own"),
    (lambda c: (c.pop("table6"), c["tables"].append("table6")), "table6: required block missing"),
    (lambda c: c["geffect"].update(probe_evry=2), "geffect.probe_evry: unknown key; did you mean 'probe_every'?"),
    (lambda c: c["geffect"].pop("ga"), "geffect.ga: objective ga is in geffect.objectives but has no block"),
    (lambda c: c["geffect"]["wga"].update(splits={"forget_10": {"alpha": 1.0}}),
     "geffect.wga.splits.forget_10: not a forget split name (forgetNN, as geffect.splits)"),
    (lambda c: (c["geffect"].update(splits=["forget01"]), c["geffect"]["wga"].update(splits={"forget10": {"alfa": 1}})),
     "geffect.wga.splits.forget10.alfa: unknown setting; did you mean 'alpha'?"),
    (lambda c: c["geffect"]["tnpo"].update(splits={"forget10": {"betta": 5.0}}),
     "geffect.tnpo.splits.forget10.betta: unknown setting; did you mean 'beta'?"),
    (lambda c: c["geffect"].update(objectives=["npo", "l2_mlp"], l2_mlp={"lr": 1.0}),
     "geffect.objectives[1]: l2_mlp matches θr's activations, which only masked unlearning supports"),
    (lambda c: c["geffect"]["train"].update(warmup=0.2), "geffect.train.warmup: unknown setting"),
    (lambda c: (c.pop("geffect"), c["tables"].append("geffect_table1")),
     "tables: geffect_table1 is seeds/001's, whose runs the geffect section configures; the config has none"),
    (lambda c: c["wme"].update(sweep_split=["forget05"]),
     "wme.sweep_split: unknown setting; did you mean 'sweep_splits'?"),
    (lambda c: (c["wme"].update(splits=["forget05", "forget10"]), c["tables"].append("wme_table2")),
     "tables: wme_table2 reports forget01, which wme.splits lacks (forget05, forget10)"),
    (lambda c: (c["wme"]["baselines"].update(npo_pluss={"objective": "npo", "lr": 1.0}),
                c["tables"].append("wme_table1")),
     "wme.baselines.npo_pluss: no configured WME table or figure reports it (their baseline rows: ga, gd, npo, "),
    (lambda c: c["wme"]["baselines"]["gd"].update(objective="gdd"), "wme.baselines.gd: unknown objective 'gdd'"),
    (lambda c: c["wme"]["baselines"]["npo"].update(betta=0.1), "wme.baselines.npo.betta: unknown setting"),
    (lambda c: c["wme"]["baselines"].update(tv={"objective": "ga", "lr": 1.0}),
     "wme.baselines.tv: a baseline's name must be lower-case letters, digits and _, and not a reference or edit"),
    (lambda c: c["wme"]["finetune_forget"].pop("lr"), "wme.finetune_forget.lr: required setting missing"),
    (lambda c: (c.pop("wme"), c["tables"].append("wme_table8")),
     "tables: wme_table8 is seeds/004's, whose runs the wme section configures; the config has none"),
    (lambda c: c["geffect"]["uwc"].update(max_drop=1.5), "geffect.uwc.max_drop: 1.5 is greater than the maximum of 1"),
    (lambda c: (c["geffect"]["uwc"].update(splits=["forget20"]), c["tables"].append("geffect_table2")),
     "geffect.uwc.splits[0]: forget20 is not one of geffect.splits (forget01, forget05, forget10)"),
    (lambda c: c["geffect"]["uwc"].update(measure="utility"), "geffect.uwc.measure: 'utility' is not a curve column"),
    (lambda c: c["geffect"]["uwc"]["values"].update(geffect_table1=[1.0]),
     "geffect.uwc.values.geffect_table1: not a UWC table (allowed: geffect_table2, "),
    (lambda c: c["geffect"]["uwc"]["values"].update(geffect_table3=[]),
     "geffect.uwc.values.geffect_table3: expected a non-empty list of distinct numbers (values of npo.beta)"),
    (lambda c: c["geffect"]["uwc"]["values"].update(geffect_table3=[0.5, -1.0]),
     "geffect.uwc.values.geffect_table3[1] (npo on forget05).beta: -1.0 must be greater than 0"),
    (lambda c: (c["geffect"].pop("rmu"), c["geffect"]["objectives"].remove("rmu"),
                c["tables"].append("geffect_table8")),
     "geffect.rmu: geffect_table8 tunes rmu, which needs a block in the geffect section (at least its lr"),
])
def test_bad_settings_fail_the_registry_check_naming_the_key(mutate, message):
    config = load_config()
    mutate(config)
    validate(copy.deepcopy(config), SCHEMA)  # the structure is fine: only the settings are wrong
    with pytest.raises(ConfigError) as err:
        check_config(config)
    assert message in str(err.value)


def test_geffect_blocks_take_the_section_regularizer_and_their_split_overrides():
    geffect = check_config(load_config("config.yaml")).geffect
    assert geffect.splits == ("forget01", "forget05", "forget10")
    assert geffect.blocks[("forget05", "wga")]["alpha"] == 5.0 and geffect.blocks[("forget10", "wga")]["alpha"] == 7.0
    assert geffect.blocks[("forget01", "npo")]["regularizer"] == {"name": "kl", "weight": 1.0}
    config = load_config("config.yaml")
    config["geffect"]["po"]["regularizer"] = None  # an objective's own choice wins, none included
    assert check_config(config).geffect.blocks[("forget01", "po")]["regularizer"] is None
    assert (geffect.train.weight_decay, geffect.train.schedule, geffect.train.warmup_ratio) == (0.0, "linear", 0.2)


def test_wme_runs_each_tables_rows_on_its_splits_references_first():
    wme = check_config(load_config("config.yaml")).wme
    assert wme.splits == ("forget01", "forget05", "forget10")
    main = ("full", "gt", "ga", "gd", "npo", "npo_plus", "tv", "wme_grad", "wme_fisher")
    assert wme.methods["forget01"] == main
    # the sweep tables (7, 8) add their edits on wme.sweep_splits only
    assert wme.methods["forget05"][:len(main)] == main and "tau0.25" in wme.methods["forget05"]
    assert wme.baselines["npo_plus"] == ("npo", {"lr": 1.0e-3, "beta": 0.1,
                                                 "regularizer": {"name": "gd", "weight": 1.0}})
    config = load_config("config.yaml")
    config["tables"] = ["wme_table8"]
    config["wme"]["sweep_splits"] = []  # empty: those of wme.splits
    assert set(check_config(config).wme.methods) == {"forget01", "forget05", "forget10"}


def test_uwc_runs_are_each_tables_objective_block_with_its_fixed_and_swept_settings():
    config = load_config("config.yaml")
    geffect = check_config(config).geffect
    assert geffect.uwc.splits == ("forget05",)
    assert len(geffect.uwc_runs) == 9 * 2  # two values of each of the nine tables
    assert geffect.uwc_runs[("geffect_table6", "forget05", 5.0)] == {
        **geffect.blocks[("forget05", "wtnpo")], "alpha": 1.0, "beta": 5.0}
    assert geffect.uwc_runs[("geffect_table9", "forget05", 1.0)] == {
        **geffect.blocks[("forget05", "rmu")], "layer": "middle", "scale": 1.0}
    del config["geffect"]["uwc"]  # the defaults: the paper's whole grids on every split
    geffect = check_config(config).geffect
    assert len(geffect.uwc_runs) == 3 * (6 * 10 + 3 * 7) and geffect.uwc.measure == "mu"


def test_a_section3_table_runs_each_localizer_on_the_seeds_its_mask_depends_on():
    original = check_config(load_config("config.yaml")).original
    assert original.seeds == (7, 19, 99)
    runs = {key: run.seeds for key, run in original.runs.items()}
    assert runs[("table1", "random")] == runs[("table1", "memflex")] == (7, 19, 99)
    assert runs[("table1", "activations")] == runs[("table1", "wagle")] == runs[("table5", "wagle_weights")] == (7,)
    run = original.runs[("table4", "wagle")]
    assert (run.ratio, run.objective.objective.spec.name) == (0.1, "rmu")
    assert run.objective.objective.settings.layer == 2  # the objective's own settings: unlearn.rmu's
    assert original.localizers["random"].outside is None  # Section 3's Random: over all value vectors
    # Tables 1 and 4 share their 10% masks: one per (localizer, ratio, seed)
    masks = original.masks()
    assert len(masks) == len(set(masks)) and ("wagle", 0.1, 7) in masks and ("wagle", 0.05, 7) in masks


def test_table6_runs_section4_in_an_experiment_of_its_own_on_pii_records():
    config = load_config("config.yaml")
    sub = check_config(config).experiment_configs["table6"]
    validate(copy.deepcopy(sub), SCHEMA)
    assert sub["name"] == "tiny/pii" and sub["tables"] == [] and sub["figures"] == []
    assert sub["data"]["source"] == "pii" and sub["data"]["name"] == "pii"
    assert sub["masks"]["seeds"] == [7, 19, 99] and sub["masks"]["ratio"] == TABLES["table6"].ratio == 0.1
    assert sub["unlearn"]["objectives"] == ["npo"] and sub["unlearn"]["localizers"] == ["oracle", "random"]
    assert sub["mix"]["metrics"] == ["es"]  # AUES only: FS and RS
    assert "table6" not in sub  # so it nests no further
    # everything else is this config's (the model, its training runs, the objective's LR), but for
    # what table6.config sets: the injection's LR and batch size for the PII world
    for key in ("model", "pretrain", "finetune_retain", "precision"):
        assert sub[key] == config[key]
    assert sub["inject"] == {**config["inject"], **config["table6"]["config"]["inject"]}
    assert sub["unlearn"]["npo"] == config["unlearn"]["npo"]
    assert check_config(load_config()).experiment_configs == {}  # the quick config builds no Table 6


@pytest.mark.parametrize("mutate,message", [
    (lambda c: c["inject"].update(lrr=1e-3), "inject.lrr: unknown setting; did you mean 'lr'?"),
    (lambda c: c.update(unlearning={}), "'unlearning' was unexpected"),
])
def test_snakemake_refuses_a_typo_before_running_anything(tmp_path, mutate, message):
    config = load_config()
    mutate(config)
    write_config(tmp_path, config)
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (Path(tmp_path) / "results").exists()


MODEL_STAGES = {"pretrain", "finetune", "inject_forget", "unlearn", "unlearn_all", "es", "reference_stats",
                "score_point", "mix_eval"}
NOT_PLANNED = {"unlearn_all"}  # seeds/001's, which neither config below lists (tests/workflow/test_geffect_workflow.py)


def planned_params(workdir, config_name) -> dict[str, list[dict]]:
    """{CLI subcommand: the --params of each planned job} of a dry run of ``config_name``."""
    path = write_config(workdir, load_config(config_name))
    out = snakemake(workdir, "-n", "-p", "--configfile", str(path), "--", "all").stdout
    params: dict[str, list[dict]] = {}
    for line in out.splitlines():
        if "unloc.cli" in line and "--params" in line:
            words = shlex.split(line[line.index("unloc.cli"):])
            at = words.index("--params")
            params.setdefault(words[at - 1], []).append(json.loads(words[at + 1]))
    return params


@pytest.mark.parametrize("config_name,precision", [("config/quick.yaml", "fp32"), ("config/llama8b.yaml", "bf16")])
def test_precision_is_a_param_of_exactly_the_stages_that_run_a_model(tmp_path, config_name, precision):
    """So changing it reruns every model stage and nothing else (the params trigger)."""
    params = planned_params(tmp_path, config_name)
    assert params.keys() >= MODEL_STAGES - NOT_PLANNED
    for subcommand, jobs in params.items():
        for p in jobs:
            assert p.get("precision") == (precision if subcommand in MODEL_STAGES else None), subcommand


def test_every_rule_passes_its_stage_params_with_defaults_filled_in(tmp_path):
    """The params a job gets are its stage's dataclass in full, so a default changed in code reruns it too."""
    from unloc.registry import to_dict
    from unloc.stages import STAGES, read_params

    for subcommand, jobs in planned_params(tmp_path, "config/quick.yaml").items():
        spec = STAGES[subcommand]
        for p in jobs:
            assert p.pop("version") == spec.version
            assert to_dict(read_params(spec, p)) == p, subcommand
