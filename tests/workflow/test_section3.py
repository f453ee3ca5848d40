"""seeds/000 Section 3 through the workflow, on a copy of the quick build: θfull, every mask of
Tables 1, 3, 4 and 5 (the attribution localizers scored on θfull, Random drawn over all value
vectors or weights), their unlearning runs from θfull and sweeps, and the four tables; nothing
of Section 4 reruns, one changed value reruns exactly what depends on it, and a job killed with
SIGKILL loses nothing."""

import copy
import shutil

import pandas as pd
import pytest

from unloc.localizers import LOCALIZERS
from unloc.masks import load_mask, n_selected
from unloc.tables import ORIGINAL, TABLES

from helpers import assert_bit_identical, planned_jobs, rebuild_with_a_killed_job, snakemake, write_config

pytestmark = pytest.mark.slow

SECTION3 = [spec.name for spec in TABLES.specs() if spec.scenario == ORIGINAL]
SEEDS = [7, 19]
M = "results/quick/original/masks"


@pytest.fixture(scope="module")
def section3(quick_build, tmp_path_factory):
    """The quick build copied (mtimes and Snakemake's records kept) and its Section 3 tables built,
    with θfull fine-tuned for 2 epochs instead of 30 (the plumbing is under test, not θfull's
    quality)."""
    built, config = quick_build
    workdir = tmp_path_factory.mktemp("section3") / "work"
    shutil.copytree(built, workdir, symlinks=True)
    config = copy.deepcopy(config)
    config["finetune_full"]["epochs"] = 2
    config["tables"] = [*config["tables"], *SECTION3]
    write_config(workdir, config)
    planned = planned_jobs(workdir, *SECTION3)
    snakemake(workdir, "--cores", "2", *SECTION3)
    return workdir, config, planned


def runs_of(table):
    """(localizer, seed) of every run a Section 3 table rests on in the quick config."""
    return {(name, seed) for name in TABLES[table].localizers
            for seed in (SEEDS if LOCALIZERS[name].seeded else SEEDS[:1])}


def test_section3_runs_from_theta_full_and_leaves_section4_alone(section3):
    workdir, _, planned = section3
    runs = {f"{rule}[table={t}, localizer={name}, seed={seed}]" for t in SECTION3 for name, seed in runs_of(t)
            for rule in ("unlearn_original", "mix_eval_original")}
    assert runs <= planned
    assert {"finetune[which=full]", "score_point_full[]"} <= planned
    assert not {job for job in planned if job.split("[")[0] in ("inject_forget", "unlearn", "mix_eval", "pretrain")}
    # Tables 1 and 4 share their 10% masks; a deterministic localizer is scored once
    scored = {job for job in planned if job.startswith("localize_scored")}
    assert scored == {"localize_scored[localizer=activations, ratio=0.1, seed=7]",
                      "localize_scored[localizer=wagle, ratio=0.1, seed=7]",
                      "localize_scored[localizer=wagle, ratio=0.05, seed=7]",
                      "localize_scored[localizer=wagle_weights, ratio=0.8, seed=7]",
                      *(f"localize_scored[localizer=memflex, ratio=0.1, seed={s}]" for s in SEEDS)}
    assert planned_jobs(workdir, *SECTION3) == set()
    assert planned_jobs(workdir) == set(), "rule all asks for nothing more"


def test_section3_masks_are_of_theta_full_and_of_the_tables_ratio(section3):
    workdir = section3[0]
    for name in ("activations", "memflex", "wagle"):
        mask = load_mask(workdir / f"{M}/{name}/p0.1/s7/mask.safetensors")
        assert mask.metadata["source_model"] == "results/quick/theta_full", name
        assert 0 < mask.count() <= n_selected(mask.size(), 0.1), name
        assert (workdir / f"{M}/{name}/p0.1/s7/scores.safetensors").is_file()
    random = load_mask(workdir / f"{M}/random/p0.05/s7/mask.safetensors")
    assert random.count() == n_selected(random.size(), 0.05) and random.metadata["method"] == "random"
    for name in ("random_weights", "wagle_weights"):
        mask = load_mask(workdir / f"{M}/{name}/p0.8/s7/mask.safetensors")
        assert mask.granularity == "elements" and mask.count() == n_selected(mask.size(), 0.8), name


def test_every_section3_table_has_its_methods_and_theta_full(section3):
    workdir = section3[0]
    for name in SECTION3:
        table = pd.read_csv(workdir / f"results/quick/tables/{name}.csv")
        assert list(dict.fromkeys(table["localizer"])) == ["original", *TABLES[name].localizers], name
        assert (table["objective"] == TABLES[name].objective).all() and (table["ratio"] == TABLES[name].ratio).all()
        n_seeds = {loc: n for loc, n in zip(table["localizer"], table["n_seeds"])}
        assert n_seeds == {"original": 1, **{loc: len(SEEDS) if LOCALIZERS[loc].seeded else 1
                                             for loc in TABLES[name].localizers}}, name
        assert table[table["metric"] == "AUES"]["mean"].between(0, 1).all(), name
        md = (workdir / f"results/quick/tables/{name}.md").read_text()
        assert md.startswith(f"### {TABLES[name].title} (quick)") and "| Original | – |" in md
    curve = pd.read_csv(workdir / "results/quick/original/mix/table4/wagle/s7/curve.csv")
    assert set(curve["scenario"]) == {ORIGINAL} and set(curve["objective"]) == {"rmu"}


def test_a_changed_lr_reruns_that_run_and_its_table_alone(section3):
    workdir, config, _ = section3
    changed = copy.deepcopy(config)
    changed["original"]["table4"]["lr"]["wagle"] *= 2
    path = write_config(workdir, changed, name="changed.yaml")
    # (`--` ends --configfile's list, which would take the targets for more config files)
    rerun = planned_jobs(workdir, "--configfile", str(path), "--", *SECTION3)
    assert rerun == {"unlearn_original[table=table4, localizer=wagle, seed=7]",
                     "mix_eval_original[table=table4, localizer=wagle, seed=7]", "table[table=table4]", "table4[]"}


def test_a_changed_localizer_setting_reruns_that_localizer_and_its_runs(section3):
    workdir, config, _ = section3
    changed = copy.deepcopy(config)
    changed["original"]["masks"] = {**changed["original"]["masks"], "memflex": {"draws": 2}}
    path = write_config(workdir, changed, name="changed.yaml")
    rerun = planned_jobs(workdir, "--configfile", str(path), "--", *SECTION3)
    assert rerun == {*(f"{rule}[localizer=memflex, ratio=0.1, seed={s}]" for rule in ("localize_scored",)
                       for s in SEEDS),
                     *(f"{rule}[table=table1, localizer=memflex, seed={s}]"
                       for rule in ("unlearn_original", "mix_eval_original") for s in SEEDS),
                     "table[table=table1]", "table1[]"}


def test_a_scoring_localizer_is_refused_for_the_runs_that_unlearn_theta_o(section3):
    workdir, config, _ = section3
    changed = copy.deepcopy(config)
    changed["unlearn"]["localizers"] = ["oracle", "wagle"]
    path = write_config(workdir, changed, name="refused.yaml")
    proc = snakemake(workdir, "-n", "--configfile", str(path), check=False)
    assert proc.returncode != 0
    assert "unlearn.localizers[1]: wagle scores θfull (seeds/000 Section 3)" in proc.stdout + proc.stderr


def test_the_report_holds_every_table_with_its_caption(section3):
    workdir = section3[0]
    snakemake(workdir, "--report", "report.html")
    html = (workdir / "report.html").read_text()
    for n in (1, 2, 3, 4, 5):
        assert f"Table {n} of the paper on this run" in html, n
    assert "snakemake.params.caption" not in html  # rendered, not the template


# MemFlex's Table 1 chain: its masks (both seeds), its runs and sweeps, and the table
MEMFLEX_CHAIN = ["results/quick/original/masks/memflex", "results/quick/original/unlearn/table1/memflex",
                 "results/quick/original/mix/table1/memflex", "results/quick/tables/table1.csv",
                 "results/quick/tables/table1.md"]


@pytest.mark.parametrize("stage,fragment,mid_run_s,kill_scheduler", [
    ("localize", "/memflex/", 3.0, True),
    ("mix_eval", "/table1/memflex/", 2.0, False),
], ids=["memflex-localizer-and-scheduler-killed", "section3-sweep-killed"])
def test_a_plain_rerun_after_kill_9_of_a_section3_job_completes_bit_identical(section3, tmp_path, stage, fragment,
                                                                             mid_run_s, kill_scheduler):
    """A scored localizer writes two artifacts (mask and scores): killed between or during them,
    with Snakemake, the rerun redoes both; a Section 3 sweep killed alone is redone too."""
    built = section3[0]
    workdir = rebuild_with_a_killed_job(tmp_path, built, MEMFLEX_CHAIN, stage, fragment, mid_run_s, kill_scheduler)
    ours = assert_bit_identical(workdir, built)
    assert {f"results/quick/original/masks/memflex/p0.1/s{s}/{f}.safetensors"
            for s in SEEDS for f in ("mask", "scores")} <= ours.keys()
