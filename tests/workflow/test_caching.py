"""Build the quick config once, then change one value at a time and check exactly what reruns."""

import copy

import pytest

from helpers import fresh_workdir, load_config, planned_jobs, snakemake, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    config = load_config()
    workdir = fresh_workdir(tmp_path_factory.mktemp("quick"), config)
    snakemake(workdir, "--cores", "2")
    assert planned_jobs(workdir) == set(), "a finished build should have nothing left to do"
    return workdir, config


def dry_run_with(built, change) -> set[str]:
    workdir, config = built
    changed = copy.deepcopy(config)
    change(changed)
    path = write_config(workdir, changed, name="changed.yaml")
    return planned_jobs(workdir, "--configfile", str(path))


def test_sanity_csv_has_every_checkpoint(built):
    workdir, _ = built
    rows = (workdir / "results/quick/sanity.csv").read_text().splitlines()
    assert rows[0] == "checkpoint,es_forget,es_retain"
    assert [r.split(",")[0] for r in rows[1:]] == ["theta_p", "theta_r", "theta_o", "theta_o[s7]", "theta_o[s19]"]


SEEDS = (7, 19)


REPORTS = {"table2[]", "figure[kind=fs_rs]", "figure[kind=mu_fq]"}


def unlearn_and_mix(seeds=SEEDS, objective="npo") -> set[str]:
    """Unlearning and mixing jobs of the given seeds, and the tables and figures built on them."""
    return REPORTS | {f"{rule}[objective={objective}, scenario={scenario}, seed={seed}]"
                      for rule in ("unlearn", "mix_eval") for scenario in ("oracle", "random") for seed in seeds}


def test_injection_lr_reruns_only_injection_and_descendants(built):
    jobs = dry_run_with(built, lambda c: c["inject"].update(lr=c["inject"]["lr"] * 2))
    assert jobs == {
        "inject_forget[seed=7]", "inject_forget[seed=19]",
        "es[ckpt=theta_o_s7]", "es[ckpt=theta_o_s19]", "sanity[]", "all[]",
    } | unlearn_and_mix()


def test_new_mask_seed_builds_only_that_seed(built):
    jobs = dry_run_with(built, lambda c: c["masks"].update(seeds=[7, 23]))
    assert jobs == {
        "make_mask[seed=23]", "inject_forget[seed=23]", "es[ckpt=theta_o_s23]", "sanity[]", "all[]",
    } | unlearn_and_mix(seeds=(23,))


def test_retain_lr_reruns_theta_r_and_below_not_theta_p_or_masks(built):
    jobs = dry_run_with(built, lambda c: c["finetune_retain"].update(lr=c["finetune_retain"]["lr"] / 2))
    assert jobs == {
        "finetune[which=r]", "inject_forget[seed=7]", "inject_forget[seed=19]", "reference_stats[]",
        "es[ckpt=theta_r]", "es[ckpt=theta_o_s7]", "es[ckpt=theta_o_s19]", "sanity[]", "all[]",
    } | unlearn_and_mix()


def test_npo_lr_reruns_only_npo_unlearning_its_curves_and_the_tables(built):
    jobs = dry_run_with(built, lambda c: c["unlearn"]["npo"].update(lr=c["unlearn"]["npo"]["lr"] * 2))
    assert jobs == {"all[]"} | unlearn_and_mix()


def test_other_objectives_settings_do_not_touch_npo(built):
    assert dry_run_with(built, lambda c: c["unlearn"]["wga"].update(lr=1.0)) == set()


def test_stats_settings_rerun_only_the_table(built):
    assert dry_run_with(built, lambda c: c["stats"].update(n_resamples=2000)) == {"table2[]", "all[]"}


def test_es_convention_reruns_only_evaluation(built):
    jobs = dry_run_with(built, lambda c: c["eval"].update(es_convention="open_unlearning"))
    mix = {j for j in unlearn_and_mix() if not j.startswith("unlearn")}
    assert jobs == {"es[ckpt=theta_p]", "es[ckpt=theta_r]", "es[ckpt=theta_o_s7]", "es[ckpt=theta_o_s19]",
                    "sanity[]", "all[]"} | mix


def test_curve_has_one_row_per_alpha_and_the_agreed_columns(built):
    workdir, config = built
    lines = (workdir / "results/quick/mix/npo/oracle/s7/curve.csv").read_text().splitlines()
    assert lines[0].split(",")[:8] == ["alpha", "es_forget", "es_retain", "fs", "rs", "fq", "log10_fq", "mu"]
    assert len(lines[0].split(",")) == 8 + 9
    assert [float(r.split(",")[0]) for r in lines[1:]] == [0.0, 0.25, 0.5, 0.75, 1.0]
