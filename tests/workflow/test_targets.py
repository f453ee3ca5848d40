"""The README's targets, as dry runs: `all_tables` plans every configured table and figure, and
`table6` only its own experiment's jobs."""

from helpers import load_config, planned_jobs, write_config


def test_all_tables_plans_every_table_and_figure_and_table6_only_its_experiment(tmp_path):
    config = load_config()
    config["tables"] = [*config["tables"], "table6"]
    write_config(tmp_path, config)
    every = planned_jobs(tmp_path, "all_tables")
    assert {"table[table=table2]", "table[table=table6]", "figure[figure=fs_rs]", "figure[figure=mu_fq]",
            "all_tables[]"} <= every
    assert "unlearn[objective=npo, localizer=oracle, seed=7]" in every
    assert "pii_unlearn[objective=npo, localizer=oracle, seed=7]" in every
    table6 = planned_jobs(tmp_path, "table6")
    assert {"table[table=table6]", "table6[]", "pii_sanity[]"} <= table6
    assert all(job.startswith("pii_") for job in table6 - {"table[table=table6]", "table6[]"})


def test_a_bare_snakemake_plans_every_artifact_of_the_experiment(tmp_path):
    """`snakemake` with no target builds `all`: the default target lives in the main Snakefile."""
    write_config(tmp_path, load_config())
    planned = planned_jobs(tmp_path)
    assert "all[]" in planned
    assert {"pretrain[]", "finetune[which=r]", "table[table=table2]"} <= planned
