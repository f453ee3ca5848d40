"""A job killed with SIGKILL mid-run, with the scheduler surviving or killed too: a plain rerun
(after `--unlock` where Snakemake itself died) completes the experiment, bit-identical to an
uninterrupted build.

Each case starts from a copy of the uninterrupted quick build with the outputs of the killed stage
and of everything after it removed, so the interrupted run redoes them, and kills the stage while
it computes: a sweep with the scheduler surviving, an unlearning run with the scheduler killed too.
Every stage writes its outputs atomically (temp file, then rename), so nothing half written
survives, and `rule all` asks for every artifact, so the rerun redoes the killed one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from helpers import REPO, RUN_TIMEOUT_S, SNAKEMAKE, env, planned_jobs, snakemake

pytestmark = pytest.mark.slow

# Timing-independent parts of the outputs: figures' PDFs carry a creation date, logs and
# training logs their seconds, ES results how long they took.
SKIPPED = ("logs/", "train_logs/", "train_log.csv", ".pdf", ".log")


def outputs(workdir: Path) -> dict[str, bytes]:
    out = {}
    for path in sorted((workdir / "results").rglob("*")):
        rel = str(path.relative_to(workdir))
        if not path.is_file() or any(part in rel or rel.endswith(part) for part in SKIPPED):
            continue
        data = path.read_bytes()
        if "/es/" in rel:  # drop the timing of an ES result
            data = json.dumps({k: v for k, v in json.loads(data).items() if k != "seconds"}).encode()
        out[rel] = data
    return out


def stage_processes(workdir: Path, stage: str) -> list[int]:
    """pids of the `unloc <stage>` processes running in ``workdir``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if b"unloc.cli" in cmdline and stage.encode() in cmdline and Path(cwd) == workdir:
            pids.append(int(proc.name))
    return pids


REDONE = {"mix_eval": ("mix", "tables", "figures"), "unlearn": ("unlearn", "mix", "tables", "figures")}


def rebuild_with_a_killed_stage(tmp_path: Path, built: Path, stage: str, kill_scheduler: bool) -> Path:
    workdir = tmp_path / "run"
    shutil.copytree(built, workdir, symlinks=True)
    for folder in REDONE[stage]:
        shutil.rmtree(workdir / "results/quick" / folder)
    with open(tmp_path / "interrupted.log", "w") as log:
        scheduler = subprocess.Popen([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--configfile",
                                      str(workdir / "config.yaml"), "--cores", "2"], cwd=workdir, env=env(),
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not (victims := stage_processes(workdir, stage)):
            assert scheduler.poll() is None, (tmp_path / "interrupted.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"no {stage} job started"
            time.sleep(0.05)
        time.sleep(MID_RUN_S[stage])  # the stage has loaded its model and is computing
        if kill_scheduler:
            os.killpg(scheduler.pid, signal.SIGKILL)  # Snakemake and every job it started
        else:
            os.kill(victims[0], signal.SIGKILL)  # one job; the scheduler sees it fail
        scheduler.wait(timeout=RUN_TIMEOUT_S)
    assert scheduler.returncode != 0
    assert len(list((workdir / "results/quick/mix").rglob("curve.csv"))) < 4, "not every sweep finished"
    assert not list((workdir / "results").rglob("*.tmp-*")), "a half-written file was left"
    if kill_scheduler:
        locked = snakemake(workdir, "--cores", "2", check=False)
        assert locked.returncode != 0 and "cannot be locked" in locked.stdout + locked.stderr
        snakemake(workdir, "--unlock")
    snakemake(workdir, "--cores", "2")  # the plain rerun
    return workdir


# How long after a stage's process appears it is killed: a quick sweep takes about 20 s, an
# unlearning run about 5 s (model loading included).
MID_RUN_S = {"mix_eval": 2.0, "unlearn": 1.0}


@pytest.mark.parametrize("stage,kill_scheduler", [("mix_eval", False), ("unlearn", True)],
                         ids=["sweep-killed", "unlearning-and-scheduler-killed"])
def test_a_plain_rerun_after_kill_9_completes_bit_identical(quick_build, tmp_path, stage, kill_scheduler):
    built, _ = quick_build
    workdir = rebuild_with_a_killed_stage(tmp_path, built, stage, kill_scheduler)
    assert planned_jobs(workdir) == set(), "the rerun left work undone"
    ours, uninterrupted = outputs(workdir), outputs(built)
    assert ours.keys() == uninterrupted.keys()
    assert len(ours) > 40 and any(k.endswith("curve.csv") for k in ours) and any(k.endswith(".png") for k in ours)
    differ = sorted(k for k in ours if ours[k] != uninterrupted[k])
    assert not differ, f"not bit-identical to the uninterrupted build: {differ}"
