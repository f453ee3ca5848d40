"""seeds/001 through the workflow: per forget split its data and θr (the experiment's own split
reuses its own), full-parameter unlearning of θfull with G-effect probes, the evaluations, Table 1
and the probe figure; a changed objective block reruns that objective's runs alone."""

import copy
import math

import pandas as pd
import pytest

from helpers import fresh_workdir, load_config, planned_jobs, snakemake, write_config

pytestmark = pytest.mark.slow

G = "results/quick/geffect"
SPLITS = ("forget05", "forget10")  # quick's 20 authors: forget05 is one author, forget10 (its own split) two
OBJECTIVES = ("ga", "npo")
TARGETS = ("geffect_table1", "geffect_probes")  # `all` would build seeds/000's Section 4 as well


def rules_of(jobs: set[str]) -> set[str]:
    return {job.partition("[")[0] for job in jobs}


@pytest.fixture(scope="module")
def geffect(tmp_path_factory):
    config = load_config()
    config["tables"], config["figures"] = ["geffect_table1"], ["geffect_probes"]
    config["geffect"] = {**config["geffect"], "splits": list(SPLITS), "objectives": list(OBJECTIVES),
                         "train": {**config["geffect"]["train"], "epochs": 2, "batch_size": 4},
                         "probe_every": 2, "ga": {"lr": 3e-3}, "npo": {"lr": 3e-3, "beta": 0.5}}
    workdir = fresh_workdir(tmp_path_factory.mktemp("geffect") / "work", config)
    planned = planned_jobs(workdir, *TARGETS)
    snakemake(workdir, "--cores", "2", *TARGETS)
    return workdir, config, planned


def test_each_split_gets_its_data_and_theta_r_and_every_run_its_probes(geffect):
    workdir, _, planned = geffect
    assert rules_of(planned) == {"prepare_data", "prepare_data_split", "pretrain", "finetune", "finetune_split",
                                 "unlearn_all", "evaluate_geffect", "table", "figure", *TARGETS}
    assert "finetune[which=full]" in planned and "finetune[which=r]" in planned  # θfull, and forget10's θr
    # forget10 is the experiment's own split: its data and θr are the experiment's
    assert {j for j in planned if j.startswith(("prepare_data_split", "finetune_split"))} == {
        "prepare_data_split[split=forget05]", "finetune_split[split=forget05]"}
    assert (workdir / f"{G}/forget05/theta_r").is_dir() and not (workdir / f"{G}/forget10/theta_r").exists()
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
                       "geffect_probes[]"}
    assert planned_jobs(workdir, *TARGETS) == set()
