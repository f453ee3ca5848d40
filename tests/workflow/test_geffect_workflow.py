"""seeds/001 through the workflow: per forget split its data and θr (the experiment's own split
reuses its own), full-parameter unlearning of θfull with G-effect probes, the evaluations, Table 1
and the probe figure; the UWC runs and sweeps of Tables 3 and 10; a changed objective block reruns
that objective's runs alone, a changed UWC budget the UWC tables alone."""

import copy
import math

import pandas as pd
import pytest

from helpers import build_targets, load_config, planned_jobs, rules_of, write_config

pytestmark = pytest.mark.slow

G = "results/quick/geffect"
SPLITS = ("forget05", "forget10")  # quick's 20 authors: forget05 is one author, forget10 (its own split) two
OBJECTIVES = ("ga", "npo")
UWC_TABLES = ("geffect_table3", "geffect_table10")  # NPO's β; RMU's c at the deep third
TARGETS = ("geffect_table1", "geffect_probes", *UWC_TABLES)  # `all` would build seeds/000's Section 4 as well


@pytest.fixture(scope="module")
def geffect(tmp_path_factory):
    config = load_config()
    config["tables"], config["figures"] = ["geffect_table1", *UWC_TABLES], ["geffect_probes"]
    config["geffect"] = {**config["geffect"], "splits": list(SPLITS), "objectives": list(OBJECTIVES),
                         "train": {**config["geffect"]["train"], "epochs": 2, "batch_size": 4},
                         "probe_every": 2, "ga": {"lr": 3e-3}, "npo": {"lr": 3e-3, "beta": 0.5},
                         "uwc": {"splits": ["forget05"], "alphas": 3, "measure": "es_retain", "max_drop": 0.1,
                                 "values": {"geffect_table3": [0.5, 2.0], "geffect_table10": [4.0]}}}
    return build_targets(tmp_path_factory.mktemp("geffect") / "work", config, *TARGETS)


def test_each_split_gets_its_data_and_theta_r_and_every_run_its_probes(geffect):
    workdir, _, planned = geffect
    assert rules_of(planned) == {"prepare_data", "prepare_data_split", "pretrain", "finetune", "finetune_split",
                                 "unlearn_all", "evaluate_geffect", "unlearn_all_uwc", "score_point_uwc", "mix_all",
                                 "table", "figure", *TARGETS}
    assert "finetune[which=full]" in planned and "finetune[which=r]" in planned  # θfull, and forget10's θr
    # forget10 is the experiment's own split: its data and θr are the experiment's
    assert {j for j in planned if j.startswith(("prepare_data_split", "finetune_split"))} == {
        "prepare_data_split[split=forget05]", "finetune_split[split=forget05]"}
    assert (workdir / "results/quick/splits/forget05/theta_r").is_dir()
    assert not (workdir / "results/quick/splits/forget10/theta_r").exists()
    forget05 = (workdir / "results/data/minitofu-quick/splits/forget05/forget.jsonl").read_text().splitlines()
    forget10 = (workdir / "results/data/minitofu-quick/forget.jsonl").read_text().splitlines()
    assert len(forget10) == 2 * len(forget05) and set(forget05) < set(forget10)
    for split in SPLITS:
        for objective in OBJECTIVES:
            probes = pd.read_csv(workdir / f"{G}/{split}/{objective}/probe.csv")
            steps = len(pd.read_csv(workdir / f"{G}/{split}/{objective}/train_log.csv"))
            assert list(probes["step"]) == list(range(0, steps + 1, 2))
            assert (probes["e_u_total"] < 0).all()  # both objectives push the forget NLL up
            assert probes["risk_forget"].iloc[-1] > probes["risk_forget"].iloc[0]


def test_table1_reads_every_split_and_method_and_the_figure_exists(geffect):
    workdir = geffect[0]
    table = pd.read_csv(workdir / "results/quick/tables/geffect_table1.csv")
    assert list(zip(table["split"], table["method"])) == [
        (s, m) for s in SPLITS for m in ("before unlearning", "GA", "NPO")]
    for column in ("es_exact_retain", "es_exact_unlearn", "es_perturb_retain", "es_perturb_unlearn", "mu", "fq"):
        assert table[column].between(0, 1).all(), column
    assert all(math.isclose(ln, math.log(fq)) for ln, fq in zip(table["ln_fq"], table["fq"]))
    before = table[table["method"] == "before unlearning"].set_index("split")
    assert before["es_exact_retain"].nunique() == 1  # one held-out retain set, θfull on every split
    md = (workdir / "results/quick/tables/geffect_table1.md").read_text()
    assert md.startswith("# Table 1 (seeds/001)") and "| forget05 | GA |" in md
    assert (workdir / "results/quick/figures/geffect_probes.png").stat().st_size > 10_000


def test_a_changed_objective_block_reruns_its_runs_alone(geffect):
    workdir, config, _ = geffect
    changed = copy.deepcopy(config)
    changed["geffect"]["npo"]["lr"] = 1e-3
    write_config(workdir, changed)
    try:
        planned = planned_jobs(workdir, *TARGETS)
    finally:
        write_config(workdir, config)
    assert planned == {"unlearn_all[split=forget05, objective=npo]", "unlearn_all[split=forget10, objective=npo]",
                       "evaluate_geffect[split=forget05, method=npo]", "evaluate_geffect[split=forget10, method=npo]",
                       "table[table=geffect_table1]", "figure[figure=geffect_probes]", "geffect_table1[]",
                       "geffect_probes[]",
                       # Table 3 tunes NPO from its block: its runs change too, RMU's (Table 10) do not
                       *(f"{rule}[split=forget05, table=geffect_table3, value={v}]"
                         for rule in ("unlearn_all_uwc", "mix_all") for v in ("0.5", "2.0")),
                       "table[table=geffect_table3]", "geffect_table3[]"}
    assert planned_jobs(workdir, *TARGETS) == set()


def test_uwc_tables_select_a_mixture_of_each_run_within_the_budget(geffect):
    workdir = geffect[0]
    planned = geffect[2]
    assert {j for j in planned if j.startswith("unlearn_all_uwc")} == {
        "unlearn_all_uwc[split=forget05, table=geffect_table3, value=0.5]",
        "unlearn_all_uwc[split=forget05, table=geffect_table3, value=2.0]",
        "unlearn_all_uwc[split=forget05, table=geffect_table10, value=4.0]"}
    assert {j for j in planned if j.startswith("score_point_uwc")} == {"score_point_uwc[split=forget05]"}
    uwc = workdir / f"{G}/forget05/uwc"
    curve = pd.read_csv(uwc / "geffect_table3/2.0/curve.csv")
    assert list(curve["alpha"]) == [0.0, 0.5, 1.0] and set(curve["objective"]) == {"npo"}
    origin = pd.read_csv(uwc / "theta_full.csv")
    assert curve.iloc[0][origin.columns].tolist() == origin.iloc[0].tolist()  # α = 0 is θfull's shared point
    table = pd.read_csv(workdir / "results/quick/tables/geffect_table3.csv")
    assert list(table["value"]) == ["theta_full", "0.5", "2.0"]
    assert (table["measure_drop"] <= 0.1 + 1e-12).all() and table["alpha"].isin([0.0, 0.5, 1.0]).all()
    for row in table.iloc[1:].itertuples():  # the selected point is the sweep's own row
        swept = pd.read_csv(uwc / f"geffect_table3/{row.value}/curve.csv").set_index("alpha")
        assert swept.loc[row.alpha, "es_forget"] == row.es_exact_unlearn
    rmu = pd.read_csv(workdir / "results/quick/tables/geffect_table10.csv")
    assert list(rmu["setting"]) == ["scale", "scale"]
    assert "UWC tuning for RMU (deep)" in (workdir / "results/quick/tables/geffect_table10.md").read_text()


def test_a_changed_uwc_budget_rebuilds_the_uwc_tables_alone(geffect):
    workdir, config, _ = geffect
    changed = copy.deepcopy(config)
    changed["geffect"]["uwc"]["max_drop"] = 0.5
    changed["geffect"]["uwc"]["values"]["geffect_table3"] = [0.5, 2.0, 4.0]
    write_config(workdir, changed)
    try:
        planned = planned_jobs(workdir, *TARGETS)
    finally:
        write_config(workdir, config)
    assert planned == {"unlearn_all_uwc[split=forget05, table=geffect_table3, value=4.0]",
                       "mix_all[split=forget05, table=geffect_table3, value=4.0]",
                       "table[table=geffect_table3]", "table[table=geffect_table10]", "geffect_table3[]",
                       "geffect_table10[]"}
