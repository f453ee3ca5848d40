"""The attribution localizers (seeds/000 Section 3) through the workflow: on a copy of the quick
build, each mask of Activations, MemFlex and WAGLE is scored on θfull, nothing already built
reruns, and a changed setting of one localizer reruns that localizer alone."""

import copy
import shutil

import pytest

from unloc.localizers import LOCALIZERS
from unloc.masks import load_mask, n_selected

from helpers import planned_jobs, snakemake, write_config

pytestmark = pytest.mark.slow

SCORING = [spec.name for spec in LOCALIZERS.specs() if spec.reads_weights]


@pytest.fixture(scope="module")
def scored(quick_build, tmp_path_factory):
    """The quick build copied (mtimes and Snakemake's records kept), with θfull fine-tuned for 2
    epochs instead of 30 (the localizers' plumbing is under test, not θfull's quality)."""
    built, config = quick_build
    workdir = tmp_path_factory.mktemp("scored") / "work"
    shutil.copytree(built, workdir, symlinks=True)
    config = copy.deepcopy(config)
    config["finetune_full"]["epochs"] = 2
    write_config(workdir, config)
    targets = [f"results/quick/masks/{name}/s7/mask.safetensors" for name in SCORING]
    planned = planned_jobs(workdir, *targets)
    snakemake(workdir, "--cores", "2", *targets)
    return workdir, config, targets, planned


def test_the_masks_are_scored_on_theta_full_and_nothing_built_reruns(scored):
    workdir, _, targets, planned = scored
    assert planned == {"finetune[which=full]"} | {f"localize_scored[localizer={name}, seed=7]" for name in SCORING}
    for name in SCORING:
        mask = load_mask(workdir / f"results/quick/masks/{name}/s7/mask.safetensors")
        assert mask.metadata["source_model"] == "results/quick/theta_full", name
        assert mask.count() <= n_selected(mask.size(), 0.1) and mask.count() > 0, name
        assert (workdir / f"results/quick/masks/{name}/s7/scores.safetensors").is_file()
    assert planned_jobs(workdir, *targets) == set()
    assert planned_jobs(workdir) == set(), "the quick build's own artifacts are untouched"


def test_a_changed_localizer_setting_reruns_that_localizer_alone(scored):
    workdir, config, targets, _ = scored
    changed = copy.deepcopy(config)
    changed["masks"]["memflex"] = {"draws": 2}
    path = write_config(workdir, changed, name="changed.yaml")
    # (`--` ends --configfile's list, which would take the targets for more config files)
    rerun = planned_jobs(workdir, "--configfile", str(path), "--", *targets)
    assert rerun == {"localize_scored[localizer=memflex, seed=7]"}


def test_a_scoring_localizer_is_refused_for_the_runs_that_unlearn_theta_o(scored):
    workdir, config, _, _ = scored
    changed = copy.deepcopy(config)
    changed["unlearn"]["localizers"] = ["oracle", "wagle"]
    path = write_config(workdir, changed, name="refused.yaml")
    proc = snakemake(workdir, "-n", "--configfile", str(path), check=False)
    assert proc.returncode != 0
    assert "unlearn.localizers[1]: wagle scores θfull (seeds/000 Section 3)" in proc.stdout + proc.stderr
