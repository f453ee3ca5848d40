"""seeds/000 Figure 1 through the workflow, on a copy of the quick build: θo of seed 7 unlearned by
L2 matching of θr's MLP outputs inside V_tgt and inside Random A/B/C (drawn outside that V_tgt
with seeds 7, 11, 49), each swept, and the figure; nothing of Table 2 reruns."""

import copy
import shutil

import pandas as pd
import pytest
import torch

from unloc.masks import load_mask

from helpers import planned_jobs, snakemake, write_config

pytestmark = pytest.mark.slow

RANDOM_SEEDS = (7, 11, 49)
F = "results/quick/figure1"


@pytest.fixture(scope="module")
def figure1(quick_build, tmp_path_factory):
    built, config = quick_build
    workdir = tmp_path_factory.mktemp("figure1") / "work"
    shutil.copytree(built, workdir, symlinks=True)
    config = copy.deepcopy(config)
    config["figures"] = [*config["figures"], "figure1"]
    write_config(workdir, config)
    planned = planned_jobs(workdir, "figure1")
    snakemake(workdir, "--cores", "2", "figure1")
    return workdir, config, planned


def test_figure1_runs_its_own_four_sweeps_from_theta_o_and_nothing_else(figure1):
    workdir, _, planned = figure1
    runs = [("oracle", 7), *(("random", s) for s in RANDOM_SEEDS)]
    assert planned == {*(f"localize_figure1[seed={s}]" for s in RANDOM_SEEDS),
                       *(f"{rule}[localizer={loc}, seed={s}]" for loc, s in runs
                         for rule in ("unlearn_figure1", "mix_eval_figure1")),
                       "figure[figure=figure1]", "figure1[]"}
    for localizer, seed in runs:
        curve = pd.read_csv(workdir / f"{F}/mix/{localizer}/s{seed}/curve.csv")
        assert (set(curve["objective"]), set(curve["localizer"]), set(curve["seed"])) == ({"l2_mlp"}, {localizer},
                                                                                          {seed})
        point = pd.read_csv(workdir / "results/quick/mix/theta_o/s7/point.csv")
        assert curve.iloc[0]["mu"] == point.iloc[0]["mu"]  # every sweep starts at θo of seed 7
    for ext in ("png", "pdf"):
        assert (workdir / f"results/quick/figures/figure1.{ext}").stat().st_size > 1000
    assert planned_jobs(workdir) == set(), "rule all asks for nothing more"


def test_random_a_b_c_are_drawn_outside_v_tgt_of_seed_7(figure1):
    workdir = figure1[0]
    v_tgt = load_mask(workdir / "results/quick/masks/oracle/s7/mask.safetensors").flat()
    masks = {s: load_mask(workdir / f"{F}/masks/random/s{s}/mask.safetensors").flat() for s in RANDOM_SEEDS}
    assert all(not (m & v_tgt).any() and m.sum() == v_tgt.sum() for m in masks.values())
    assert not torch.equal(masks[11], masks[49])
    # Random A is Section 4's V_rdm of seed 7
    assert torch.equal(masks[7], load_mask(workdir / "results/quick/masks/random/s7/mask.safetensors").flat())


def test_a_changed_figure1_lr_reruns_its_runs_alone(figure1):
    workdir, config, _ = figure1
    changed = copy.deepcopy(config)
    changed["unlearn"]["l2_mlp"]["lr"] *= 2
    path = write_config(workdir, changed, name="changed.yaml")
    rerun = planned_jobs(workdir, "--configfile", str(path), "--", "all")
    runs = [("oracle", 7), *(("random", s) for s in RANDOM_SEEDS)]
    assert rerun == {*(f"{rule}[localizer={loc}, seed={s}]" for loc, s in runs
                       for rule in ("unlearn_figure1", "mix_eval_figure1")), "figure[figure=figure1]", "all[]"}
