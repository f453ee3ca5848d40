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


def test_injection_lr_reruns_only_injection_and_descendants(built):
    jobs = dry_run_with(built, lambda c: c["inject"].update(lr=c["inject"]["lr"] * 2))
    assert jobs == {
        "inject_forget[seed=7]", "inject_forget[seed=19]",
        "es[ckpt=theta_o_s7]", "es[ckpt=theta_o_s19]", "sanity[]", "all[]",
    }


def test_new_mask_seed_builds_only_that_seed(built):
    jobs = dry_run_with(built, lambda c: c["masks"].update(seeds=[7, 23]))
    assert jobs == {
        "make_mask[seed=23]", "inject_forget[seed=23]", "es[ckpt=theta_o_s23]", "sanity[]", "all[]",
    }


def test_retain_lr_reruns_theta_r_and_below_not_theta_p_or_masks(built):
    jobs = dry_run_with(built, lambda c: c["finetune_retain"].update(lr=c["finetune_retain"]["lr"] / 2))
    assert jobs == {
        "finetune[which=r]", "inject_forget[seed=7]", "inject_forget[seed=19]",
        "es[ckpt=theta_r]", "es[ckpt=theta_o_s7]", "es[ckpt=theta_o_s19]", "sanity[]", "all[]",
    }


def test_eval_setting_reruns_only_evaluation(built):
    jobs = dry_run_with(built, lambda c: c["eval"].update(es_convention="open_unlearning"))
    assert jobs == {"es[ckpt=theta_p]", "es[ckpt=theta_r]", "es[ckpt=theta_o_s7]", "es[ckpt=theta_o_s19]",
                    "sanity[]", "all[]"}
