"""seeds/004 through the workflow: per forget split and run, θ_fgt, the gradients, the edits and the
training baselines that the configured WME tables and figures report, each evaluated against the
split's θr; Table 1 (the average), Table 8 (the τ sweep on one split) and two figures; a changed
baseline block reruns that baseline alone, a new seed that seed's runs alone."""

import copy

import numpy as np
import pandas as pd
import pytest

from unloc import io

from helpers import build_targets, load_config, planned_jobs, rules_of, write_config

pytestmark = pytest.mark.slow

W = "results/quick/wme"
SPLITS = ("forget05", "forget10")  # quick's 20 authors: forget05 is one author, forget10 (its own split) two
TARGETS = ("wme_table1", "wme_table8", "wme_mu_fq", "wme_tau")
MAIN = ("Full", "GT", "GA", "GD", "NPO", "NPO+", "TV", "WME-grad", "WME-fisher")


@pytest.fixture(scope="module")
def wme(tmp_path_factory):
    config = load_config()
    config["tables"], config["figures"] = ["wme_table1", "wme_table8"], ["wme_mu_fq", "wme_tau"]
    config["evaluate"] = {"max_new_tokens": 8}  # the jobs' start-up dominates; generation need not
    config["wme"] = {**config["wme"], "splits": list(SPLITS), "sweep_splits": ["forget05"], "seeds": [0, 1],
                     "finetune_forget": {**config["wme"]["finetune_forget"], "lr": 3e-3, "epochs": 10, "batch_size": 4},
                     "train": {**config["wme"]["train"], "epochs": 2, "batch_size": 4}}
    return build_targets(tmp_path_factory.mktemp("wme") / "work", config, *TARGETS)


def test_each_run_fine_tunes_its_theta_fgt_and_the_runs_share_the_whole_data_gradients(wme):
    workdir, _, planned = wme
    assert rules_of(planned) == {"prepare_data", "prepare_data_split", "pretrain", "finetune", "finetune_split",
                                 "finetune_forget", "gradients", "edit", "unlearn_all_wme", "evaluate_wme",
                                 "evaluate_wme_reference", "table", "figure", *TARGETS}
    assert {j for j in planned if j.startswith("finetune_split")} == {"finetune_split[split=forget05]"}
    assert {j for j in planned if j.startswith("finetune_forget")} == {
        f"finetune_forget[split={s}, seed={seed}]" for s in SPLITS for seed in (0, 1)}
    # Tables 1 and 8 read gradients at θ_0 of the whole data only: one file per split, for both runs
    assert {j for j in planned if j.startswith("gradients")} == {
        f"gradients[split={s}, key=theta_0-mean_gradient]" for s in SPLITS}
    gradients, metadata = io.load_gradients(workdir / f"{W}/forget05/gradients/theta_0-mean_gradient.safetensors")
    assert set(gradients) == {"forget", "retain"} and metadata["statistic"] == "mean_gradient"
    assert metadata["model"].endswith("theta_p")  # θ_0
    fgt = [workdir / f"{W}/forget05/theta_fgt/s{seed}/model.safetensors" for seed in (0, 1)]
    assert fgt[0].read_bytes() != fgt[1].read_bytes()  # the seed orders the batches


def test_table1_averages_every_method_over_the_splits_and_runs(wme):
    workdir = wme[0]
    table = pd.read_csv(workdir / "results/quick/tables/wme_table1.csv")
    assert list(table["method"]) == list(MAIN) and (table["split"] == "average").all()
    assert list(table["runs"]) == [1, 1] + [2] * 7
    rows = table.set_index("method")
    assert rows.loc["GT", "fq_log10_mean"] == 0.0  # θr against itself: p = 1
    assert rows.loc["Full", "fq_log10_mean"] < rows.loc["GT", "fq_log10_mean"]
    # subtracting the whole forget task vector undoes the forget set's memorisation
    assert rows.loc["TV", "es_forget_mean"] < rows.loc["Full", "es_forget_mean"] - 0.2
    for column in ("mu", "es_forget", "es_retain", "rouge_forget", "rouge_retain", "rouge_ra", "rouge_wf"):
        assert table[f"{column}_mean"].between(0, 1).all(), column
    assert np.allclose(table["es_gap_mean"], table["es_retain_mean"] - table["es_forget_mean"])
    md = (workdir / "results/quick/tables/wme_table1.md").read_text()
    assert md.startswith("# Table 1 (seeds/004)") and "| average | WME-grad |" in md and "Gib is not reported" in md
    for figure in ("wme_mu_fq", "wme_tau"):
        assert (workdir / f"results/quick/figures/{figure}.png").stat().st_size > 10_000


def test_table8_sweeps_tau_on_the_sweep_split_only(wme):
    workdir = wme[0]
    table = pd.read_csv(workdir / "results/quick/tables/wme_table8.csv")
    assert (table["split"] == "forget05").all()
    assert list(table["method"]) == ["Full", "GT", "τ = 0", "τ = 0.25", "τ = 0.5", "WME-grad", "WME-fisher",
                                     "τ = 4", "τ = 8"]
    assert not (workdir / f"{W}/forget10/tau0.25").exists()
    # τ = 1 is WME-grad: Tables 1 and 8 read one edit per run, not two
    assert {j for j in wme[2] if j.startswith("edit[split=forget05, method=wme_grad")} == {
        "edit[split=forget05, method=wme_grad, seed=0]", "edit[split=forget05, method=wme_grad, seed=1]"}


def test_a_changed_baseline_reruns_it_alone_and_a_new_seed_adds_its_runs_alone(wme):
    workdir, config, _ = wme
    changed = copy.deepcopy(config)
    changed["wme"]["baselines"]["gd"]["lr"] = 2e-3
    write_config(workdir, changed)
    try:
        planned = planned_jobs(workdir, *TARGETS)
    finally:
        write_config(workdir, config)
    assert planned == {*(f"{rule}[split={s}, method=gd, seed={seed}]" for rule in ("unlearn_all_wme", "evaluate_wme")
                         for s in SPLITS for seed in (0, 1)),
                       "table[table=wme_table1]", "figure[figure=wme_mu_fq]", "wme_table1[]", "wme_mu_fq[]"}
    changed = copy.deepcopy(config)
    changed["wme"]["seeds"] = [0, 1, 2]
    write_config(workdir, changed)
    try:
        planned = planned_jobs(workdir, *TARGETS)
    finally:
        write_config(workdir, config)
    runs = {j for j in planned if not j.startswith(("table", "figure", "wme_"))}
    assert runs and all("seed=2" in j for j in runs)
    assert "finetune_forget[split=forget05, seed=2]" in runs and not any(j.startswith("gradients") for j in runs)
    assert planned_jobs(workdir, *TARGETS) == set()
