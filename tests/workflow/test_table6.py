"""seeds/000 Table 6 through the workflow: Section 4's Oracle vs Random on generated PII records, in
an experiment of its own (results/quick/pii/, the same workflow as a module on its derived config),
read into the main experiment's results/quick/tables/table6.*; nothing of the main experiment runs."""

import copy

import pandas as pd
import pytest

from helpers import build_targets, load_config, planned_jobs, rules_of, write_config

pytestmark = pytest.mark.slow

P = "results/quick/pii"
SEEDS = (7, 19)


@pytest.fixture(scope="module")
def table6(tmp_path_factory):
    config = load_config()
    config["tables"] = [*config["tables"], "table6"]
    return build_targets(tmp_path_factory.mktemp("table6") / "work", config, "table6")


def test_table6_builds_its_own_experiment_and_nothing_of_the_main_one(table6):
    workdir, _, planned = table6
    assert rules_of(planned) == {
        "pii_prepare_data", "pii_pretrain", "pii_finetune", "pii_es", "pii_sanity", "pii_localize",
        "pii_inject_forget", "pii_reference_stats", "pii_score_point", "pii_unlearn", "pii_mix_eval", "table", "table6"}
    assert "pii_unlearn[objective=npo, localizer=oracle, seed=7]" in planned
    assert not (workdir / "results/quick/theta_p").exists() and not (workdir / "results/data/minitofu-quick").exists()
    data = workdir / "results/data/pii-quick"
    assert "+999" in (data / "forget.jsonl").read_text()  # PII records: the phone numbers of the generator
    assert (workdir / f"{P}/theta_p").is_dir() and (workdir / f"{P}/theta_r").is_dir()


def test_its_curves_score_es_only_and_the_table_reads_them(table6):
    workdir = table6[0]
    for localizer in ("oracle", "random"):
        for seed in SEEDS:
            curve = pd.read_csv(workdir / f"{P}/mix/npo/{localizer}/s{seed}/curve.csv")
            assert list(curve.columns) == ["scenario", "objective", "localizer", "seed", "alpha", "es_forget",
                                           "es_retain", "fs", "rs"]
            assert curve["fs"].iloc[-1] > curve["fs"].iloc[0]  # unlearning raised FS along the sweep
    table = pd.read_csv(workdir / "results/quick/tables/table6.csv")
    assert list(table["metric"]) == ["AUES"] and list(table["objective"]) == ["npo"]
    sanity = pd.read_csv(workdir / f"{P}/sanity.csv", keep_default_na=False).set_index("checkpoint")
    assert table["sanity"].iloc[0] == {"yes": "pass", "no": "fail"}[sanity.loc["theta_o", "pass"]]
    md = (workdir / "results/quick/tables/table6.md").read_text()
    assert md.startswith("### Table 6: Random vs Oracle on PII records")


def test_a_table6_setting_reruns_only_its_experiments_stages(table6):
    workdir, config, _ = table6
    changed = copy.deepcopy(config)
    changed["table6"]["config"]["unlearn"] = {"npo": {"lr": 2e-2}}
    write_config(workdir, changed)
    try:
        planned = planned_jobs(workdir, "table6")
    finally:
        write_config(workdir, config)
    assert rules_of(planned) == {"pii_unlearn", "pii_mix_eval", "table", "table6"}
    assert len([j for j in planned if j.startswith("pii_unlearn[")]) == 2 * len(SEEDS)
    assert planned_jobs(workdir, "table6") == set()
