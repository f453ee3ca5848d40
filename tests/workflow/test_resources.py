"""What each job asks a scheduler for follows the config's model.size_class (dry runs only)."""

import re
from collections import Counter

import pytest

from helpers import REPO, load_config, planned_jobs, snakemake, write_config


def dry_run_jobs(workdir, config_name):
    """{rule: (resources line, shell command)} of a dry run's first job per rule."""
    config = load_config(config_name)
    path = write_config(workdir, config)
    out = snakemake(workdir, "-n", "-p", "--configfile", str(path), "--", "all").stdout
    jobs = {}
    for block in re.split(r"\n(?=\s*(?:local)?rule \w+:)", out):
        m = re.match(r"\s*(?:local)?rule (\w+):", block)
        if not m or m[1] in jobs:
            continue
        resources = re.search(r"^\s+resources: (.*)$", block, re.M)
        shell = re.search(r"^(?:Shell command: )?((?:torchrun|python -m unloc.cli) .*)$", block, re.M)
        jobs[m[1]] = (resources[1] if resources else "", shell[1] if shell else "")
    return jobs


def test_tiny_jobs_are_cpu_jobs_and_cheap_rules_are_local(tmp_path):
    """(A dry run does not mark local rules, so those are read from the rule files.)"""
    jobs = dry_run_jobs(tmp_path, "config/quick.yaml")
    rules_text = "\n".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    local = {name for block in re.findall(r"^localrules:\n((?:    \w+,\n)+)", rules_text, re.M)
             for name in re.findall(r"\w+", block)}
    assert local == {"prepare_data", "localize", "localize_original", "localize_figure1", "sanity", "table", "figure"}
    for rule in ("pretrain", "finetune", "inject_forget", "unlearn", "es", "reference_stats", "score_point",
                 "mix_eval"):
        assert "gpu=0" in jobs[rule][0], rule
        assert not jobs[rule][1].startswith("torchrun"), rule


@pytest.mark.parametrize("config_name", ["config/llama8b.yaml", "config/olmo7b.yaml"])
def test_8b_fine_tuning_runs_fsdp_on_four_gpus_and_masked_stages_on_one(tmp_path, config_name):
    jobs = dry_run_jobs(tmp_path, config_name)
    assert "gpu=4" in jobs["finetune"][0]
    assert jobs["finetune"][1].startswith("torchrun --standalone --nproc-per-node 4 -m -- unloc.cli ")
    for rule in ("inject_forget", "unlearn", "score_point", "mix_eval"):
        assert "gpu=1" in jobs[rule][0], rule
        assert jobs[rule][1].startswith("python -m unloc.cli "), rule
    assert re.search(r"runtime=(\d+)", jobs["finetune"][0])[1] != re.search(r"runtime=(\d+)", jobs["es"][0])[1]


def test_unlearning_run_and_its_sweep_are_one_cluster_job():
    """Every rule of the unlearn and mix stages (Section 4's, Section 3's, Figure 1's, seeds/001's
    UWC runs) is in the group `sweep`, so a run and its sweep are one submission. seeds/001's
    unlearn_all and seeds/004's baselines (unlearn_all_wme) have no sweep: their tables report the
    raw end of training."""
    text = "\n".join(p.read_text() for p in sorted((REPO / "workflow" / "rules").glob("*.smk")))
    blocks = dict(re.findall(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", text, re.M | re.S))
    without_sweep = ("unlearn_all", "unlearn_all_wme")
    runs = {name for name in blocks if (name.split("_")[0] == "unlearn" and name not in without_sweep)
            or name.startswith(("mix_eval", "mix_all"))}
    assert {"unlearn", "mix_eval", "unlearn_original", "mix_eval_original", "unlearn_figure1",
            "mix_eval_figure1", "unlearn_all_uwc", "mix_all"} <= runs
    assert all('group:\n        "sweep"' in blocks[name] for name in runs)


def test_conda_environment_and_pip_lock_pin_the_same_packages():
    """envs/unloc.yaml (clusters deploying with conda) and envs/requirements.lock (pip) list
    the same packages at the same versions."""
    import yaml

    def pins(lines):
        return {tuple(re.split(r"==", line.strip(), maxsplit=1)) for line in lines
                if line.strip() and not line.strip().startswith("#")}

    env = yaml.safe_load((REPO / "envs/unloc.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    lock = pins((REPO / "envs/requirements.lock").read_text().splitlines())
    assert all(len(p) == 2 for p in lock), "every lock line pins a version"
    assert pins(pip) == lock
    assert {name.lower() for name, _ in lock} >= {"torch", "snakemake", "snakemake-executor-plugin-slurm"}


def test_every_stage_rule_declares_the_conda_environment():
    """Every rule that runs a command; targets.smk's rules only ask for files."""
    for path in (REPO / "workflow/rules").glob("*.smk"):
        text = path.read_text()
        rules = re.findall(r"^rule (\w+):", text, re.M)
        commands = text.count("    shell:\n")
        assert text.count("conda:\n        CONDA_ENV") == commands, path.name
        assert commands == len(rules) or path.name == "targets.smk", path.name


def test_smollm2_jobs_each_fit_one_gpu_and_the_conversion_needs_none(tmp_path):
    """The real small tier: every training and evaluation job on one GPU, no torchrun."""
    jobs = dry_run_jobs(tmp_path, "config/smollm2-tofu.yaml")
    assert "gpu=0" in jobs["pretrain"][0]
    for rule in ("finetune", "inject_forget", "unlearn", "es", "reference_stats", "score_point", "mix_eval"):
        assert "gpu=1" in jobs[rule][0], rule
        assert jobs[rule][1].startswith("python -m unloc.cli "), rule
    assert '"source": "gguf"' in jobs["pretrain"][1] and '"precision": "bf16"' in jobs["pretrain"][1]
    assert '"train": null' in jobs["pretrain"][1], "converting a GGUF file trains nothing: no training settings"


def test_smollm2_cpu_config_asks_for_no_gpu_and_cuts_only_what_it_says(tmp_path):
    """device: cpu overrides the size class's GPUs; one objective, two seeds: 4 runs, 4 sweeps."""
    jobs = dry_run_jobs(tmp_path, "config/smollm2-tofu-cpu.yaml")
    for rule in ("pretrain", "finetune", "inject_forget", "unlearn", "es", "reference_stats", "score_point",
                 "mix_eval"):
        assert "gpu=0" in jobs[rule][0], rule
        assert jobs[rule][1].startswith("python -m unloc.cli --device cpu "), rule
    assert '"retain_items": 100' in jobs["prepare_data"][1] and '"utility_items": 20' in jobs["prepare_data"][1]
    planned = planned_jobs(tmp_path, "--configfile", str(tmp_path / "config.yaml"), "--", "all")
    counts = Counter(job.split("[")[0] for job in planned)
    assert {rule: counts[rule] for rule in ("inject_forget", "unlearn", "score_point", "mix_eval")} == {
        "inject_forget": 2, "unlearn": 4, "score_point": 2, "mix_eval": 4}
