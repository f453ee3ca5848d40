"""Build the quick config once, then change one value at a time and check exactly what reruns."""

import contextlib
import copy
import json
import shutil
from pathlib import Path

import pytest

from helpers import planned_jobs, snakemake, write_config

pytestmark = pytest.mark.slow


@pytest.fixture
def built(quick_build):
    return quick_build


def dry_run_with(built, change) -> set[str]:
    workdir, config = built
    changed = copy.deepcopy(config)
    change(changed)
    path = write_config(workdir, changed, name="changed.yaml")
    return planned_jobs(workdir, "--configfile", str(path))


def test_sanity_csv_has_every_checkpoint_and_the_quick_theta_o_passes(built):
    """The quick build is CI's end-to-end check: its θo must really have memorized the forget set."""
    workdir, _ = built
    rows = [line.split(",") for line in (workdir / "results/quick/sanity.csv").read_text().splitlines()]
    assert rows[0] == ["checkpoint", "es_forget", "es_retain", "pass"]
    assert [r[0] for r in rows[1:]] == ["theta_p", "theta_r", "theta_o", "theta_o[s7]", "theta_o[s19]"]
    assert [r[3] for r in rows[1:]] == ["", "", "yes", "yes", "yes"]
    assert "Sanity check passed" in (workdir / "results/quick/tables/table2.md").read_text()


SEEDS = (7, 19)


REPORTS = {"table[table=table2]", "figure[figure=fs_rs]", "figure[figure=mu_fq]"}


def unlearn_and_mix(seeds=SEEDS, objective="npo") -> set[str]:
    """Unlearning and mixing jobs of the given seeds, and the tables and figures built on them."""
    return REPORTS | {f"{rule}[objective={objective}, localizer={localizer}, seed={seed}]"
                      for rule in ("unlearn", "mix_eval") for localizer in ("oracle", "random") for seed in seeds}


def theta_o_points(seeds=SEEDS) -> set[str]:
    return {f"score_point[seed={seed}]" for seed in seeds}


def test_injection_lr_reruns_only_injection_and_descendants(built):
    jobs = dry_run_with(built, lambda c: c["inject"].update(lr=c["inject"]["lr"] * 2))
    assert jobs == {
        "inject_forget[seed=7]", "inject_forget[seed=19]",
        "es[ckpt=theta_o_s7]", "es[ckpt=theta_o_s19]", "sanity[]", "all[]",
    } | theta_o_points() | unlearn_and_mix()


def test_new_mask_seed_builds_only_that_seed(built):
    jobs = dry_run_with(built, lambda c: c["masks"].update(seeds=[7, 23]))
    assert jobs == {
        "localize[localizer=oracle, seed=23]", "localize[localizer=random, seed=23]", "inject_forget[seed=23]",
        "es[ckpt=theta_o_s23]", "sanity[]", "all[]",
    } | theta_o_points((23,)) | unlearn_and_mix(seeds=(23,))


def test_retain_lr_reruns_theta_r_and_below_not_theta_p_or_masks(built):
    jobs = dry_run_with(built, lambda c: c["finetune_retain"].update(lr=c["finetune_retain"]["lr"] / 2))
    assert jobs == {
        "finetune[which=r]", "inject_forget[seed=7]", "inject_forget[seed=19]", "reference_stats[]",
        "es[ckpt=theta_r]", "es[ckpt=theta_o_s7]", "es[ckpt=theta_o_s19]", "sanity[]", "all[]",
    } | theta_o_points() | unlearn_and_mix()


def test_npo_lr_reruns_only_npo_unlearning_its_curves_and_the_tables(built):
    jobs = dry_run_with(built, lambda c: c["unlearn"]["npo"].update(lr=c["unlearn"]["npo"]["lr"] * 2))
    assert jobs == {"all[]"} | unlearn_and_mix()


@pytest.mark.parametrize("block", [{"beta": 0.25}, {"regularizer": {"name": "kl"}}])
def test_an_npo_setting_or_regularizer_reruns_only_npo_unlearning_and_below(built, block):
    assert dry_run_with(built, lambda c: c["unlearn"]["npo"].update(block)) == {"all[]"} | unlearn_and_mix()


def test_other_objectives_settings_do_not_touch_npo(built):
    assert dry_run_with(built, lambda c: c["unlearn"]["wga"].update(lr=1.0)) == set()


def test_stats_settings_rerun_only_the_table(built):
    assert dry_run_with(built, lambda c: c["stats"].update(n_resamples=2000)) == {"table[table=table2]", "all[]"}


def test_sanity_settings_rerun_only_the_check_and_what_prints_its_verdict(built):
    jobs = dry_run_with(built, lambda c: c.update(sanity={"forget_margin": 0.5}))
    assert jobs == {"sanity[]", "all[]"} | REPORTS


def test_the_alpha_grid_reruns_the_sweeps_but_not_the_reference(built):
    jobs = dry_run_with(built, lambda c: c["mix"].update(alphas=3))
    assert jobs == {"all[]"} | theta_o_points() | {j for j in unlearn_and_mix() if not j.startswith("unlearn")}


def test_es_convention_reruns_only_evaluation(built):
    jobs = dry_run_with(built, lambda c: c["eval"].update(es_convention="open_unlearning"))
    mix = {j for j in unlearn_and_mix() if not j.startswith("unlearn")}
    assert jobs == {"es[ckpt=theta_p]", "es[ckpt=theta_r]", "es[ckpt=theta_o_s7]", "es[ckpt=theta_o_s19]",
                    "sanity[]", "all[]"} | theta_o_points() | mix


@contextlib.contextmanager
def removed(path: Path):
    """``path`` gone for the duration (as after a failed job whose output Snakemake deleted)."""
    data = path.read_bytes()
    path.unlink()
    try:
        yield
    finally:
        path.write_bytes(data)


def test_one_table_is_a_target_of_its_own(built):
    workdir, _ = built
    with removed(workdir / "results/quick/tables/table2.md"):
        assert planned_jobs(workdir, "table2") == {"table[table=table2]", "table2[]"}


def test_a_plain_rerun_rebuilds_a_missing_intermediate_artifact(built):
    """rule all asks for every artifact of the experiment, not only the tables built on them."""
    workdir, _ = built
    with removed(workdir / "results/quick/mix/npo/random/s19/curve.csv"):
        assert "mix_eval[objective=npo, localizer=random, seed=19]" in planned_jobs(workdir)


LABELS = ["scenario", "objective", "localizer", "seed"]


def test_curve_has_its_labels_one_row_per_alpha_and_the_agreed_columns(built):
    workdir, config = built
    lines = (workdir / "results/quick/mix/npo/oracle/s7/curve.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[:4] == LABELS
    assert header[4:12] == ["alpha", "es_forget", "es_retain", "fs", "rs", "fq", "log10_fq", "mu"]
    assert len(header) == 4 + 8 + 9
    rows = [r.split(",") for r in lines[1:]]
    assert {tuple(r[:4]) for r in rows} == {("injected", "npo", "oracle", "7")}
    assert [float(r[4]) for r in rows] == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_theta_o_is_scored_once_per_seed_and_starts_every_sweep_of_that_seed(built):
    workdir, _ = built
    point = (workdir / "results/quick/mix/theta_o/s7/point.csv").read_text().splitlines()[1]
    for localizer in ("oracle", "random"):
        first = (workdir / f"results/quick/mix/npo/{localizer}/s7/curve.csv").read_text().splitlines()[1]
        assert first.split(",")[4:] == point.split(",")


def test_evaluate_scores_theta_u_against_theta_rs_eval_and_reruns_only_on_its_settings(built):
    """`snakemake <eval target>` runs `unloc eval` on θu (α = 1) after θr's own eval, its FQ and
    privleak reference; the evaluate section reruns only those jobs, and no other job reads it."""
    workdir, config = built
    target = "results/quick/eval/theta_u_npo_oracle_s7/TOFU_EVAL.json"
    made = [workdir / "results/quick/eval/theta_u_npo_oracle_s7", workdir / "results/quick/eval/theta_r",
            workdir / "results/data/minitofu-quick/holdout.jsonl"]
    try:
        snakemake(workdir, "--cores", "2", target)
        check_evaluate(built, target)
    finally:  # the build stays what the other tests compare against
        for path in made:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)


def check_evaluate(built, target):
    workdir, config = built
    logs = json.loads((workdir / target).read_text())
    assert 0 < logs["forget_quality"]["agg_value"] <= 1 and "mia_min_k" in logs and "privleak" in logs
    reference = json.loads((workdir / "results/quick/eval/theta_r/TOFU_EVAL.json").read_text())
    assert reference["forget_quality"]["agg_value"] is None  # θr has no reference of its own
    assert (workdir / "results/data/minitofu-quick/holdout.jsonl").is_file()

    def compat(c):
        c["evaluate"] = {"compat": "open_unlearning"}

    assert dry_run_with(built, compat) == set()  # `all` never reads the evaluate section
    changed = copy.deepcopy(config)
    compat(changed)
    path = write_config(workdir, changed, name="changed.yaml")
    assert planned_jobs(workdir, target, "--configfile", str(path)) == {  # targets before --configfile
        "evaluate[ckpt=theta_r]", "evaluate[ckpt=theta_u_npo_oracle_s7]"}
