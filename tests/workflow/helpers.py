"""Run the real workflow in a scratch directory, read which jobs it would run, and interrupt it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

import unloc.config

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
# A dry run or a quick build takes seconds to a few minutes on an idle 2-core machine: the
# timeout only guards against a hang, with room for a busy machine.
RUN_TIMEOUT_S = 3600


def env() -> dict:
    """The venv's bin first on PATH, so the rules find the `unloc` CLI."""
    e = dict(os.environ)
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    return e


def load_config(name: str = "config/quick.yaml") -> dict:
    """The effective config of a shipped config file: merged over config.yaml, as the workflow runs it."""
    return unloc.config.load_config(None if name == "config.yaml" else REPO / name)


def write_config(workdir: Path, config: dict, name: str = "config.yaml") -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    """Snakemake on the repository's Snakefile in ``workdir``, with ``workdir/config.yaml`` as the
    --configfile unless ``args`` give one."""
    config = [] if "--configfile" in args else ["--configfile", str(workdir / "config.yaml")]
    return [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir), *config, *args]


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``snakemake_command`` run to completion (the defaults are always the repository's config.yaml)."""
    cmd = snakemake_command(workdir, *args)
    proc = subprocess.run(cmd, cwd=workdir, env=env(), capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


# Jobs of a `group:` are listed indented under their group job.
JOB = re.compile(r"^\s*(?:local)?rule (\w+):\s*$")
WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")


def planned_jobs(workdir: Path, *args: str) -> set[str]:
    """The jobs a dry run would execute, as ``rule[wildcards]`` strings."""
    out = snakemake(workdir, "-n", *args).stdout.splitlines()
    jobs, current = set(), None
    for line in out + [""]:
        m = JOB.match(line)
        if m or not line.strip():
            if current:
                jobs.add(current)
            current = f"{m[1]}[]" if m else None
            continue
        w = WILDCARDS.match(line)
        if current and w:
            current = current[:-2] + f"[{w[1]}]"
    return jobs


def fresh_workdir(tmp: Path, config: dict) -> Path:
    if tmp.exists():
        shutil.rmtree(tmp)
    write_config(tmp, config)
    return tmp


def build_targets(tmp: Path, config: dict, *targets: str) -> tuple[Path, dict, set[str]]:
    """A fresh workdir of ``config`` with ``targets`` built: (workdir, config, the jobs planned)."""
    workdir = fresh_workdir(tmp, config)
    planned = planned_jobs(workdir, *targets)
    snakemake(workdir, "--cores", "2", *targets)
    return workdir, config, planned


def rules_of(jobs: set[str]) -> set[str]:
    """The rules of ``planned_jobs``' jobs."""
    return {job.partition("[")[0] for job in jobs}


# --------------------------------------------------------------------------- interrupted builds

# Timing-independent parts of the outputs: figures' PDFs carry a creation date, logs and
# training logs their seconds, ES results how long they took.
TIMED = ("logs/", "train_logs/", "train_log.csv", ".pdf", ".log")


def timing_free_outputs(workdir: Path) -> dict[str, bytes]:
    """Every result file of ``workdir`` whose bytes do not depend on timing, by relative path."""
    out = {}
    for path in sorted((workdir / "results").rglob("*")):
        rel = str(path.relative_to(workdir))
        if not path.is_file() or any(part in rel or rel.endswith(part) for part in TIMED):
            continue
        data = path.read_bytes()
        if "/es/" in rel:  # drop the timing of an ES result
            data = json.dumps({k: v for k, v in json.loads(data).items() if k != "seconds"}).encode()
        out[rel] = data
    return out


def stage_processes(workdir: Path, stage: str, fragment: str = "") -> list[int]:
    """pids of the `unloc <stage>` processes running in ``workdir`` with ``fragment`` in an argument."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if (b"unloc.cli" in args and stage.encode() in args and any(fragment.encode() in a for a in args)
                and Path(cwd) == workdir):
            pids.append(int(proc.name))
    return pids


def rebuild_with_a_killed_job(tmp_path: Path, built: Path, removed: list[str], stage: str, fragment: str,
                              mid_run_s: float, kill_scheduler: bool) -> Path:
    """A copy of ``built`` without the ``removed`` results (a stage's outputs and everything after
    them), rebuilt by `rule all` with the first `unloc <stage>` job matching ``fragment`` killed
    (SIGKILL) ``mid_run_s`` after it starts, alone or with Snakemake and every job it started;
    then a plain rerun, with no --unlock where Snakemake died. Returns the rebuilt workdir."""
    workdir = tmp_path / "run"
    shutil.copytree(built, workdir, symlinks=True)
    for rel in removed:
        if (workdir / rel).is_dir():
            shutil.rmtree(workdir / rel)
        else:
            (workdir / rel).unlink()
    with open(tmp_path / "interrupted.log", "w") as log:
        scheduler = subprocess.Popen(snakemake_command(workdir, "--cores", "2"), cwd=workdir, env=env(), stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not (victims := stage_processes(workdir, stage, fragment)):
            assert scheduler.poll() is None, (tmp_path / "interrupted.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"no {stage} job ({fragment}) started"
            time.sleep(0.05)
        time.sleep(mid_run_s)  # the job has loaded its model and is computing
        if kill_scheduler:
            os.killpg(scheduler.pid, signal.SIGKILL)  # Snakemake and every job it started
        else:
            os.kill(victims[0], signal.SIGKILL)  # one job; the scheduler sees it fail
        scheduler.wait(timeout=RUN_TIMEOUT_S)
    assert scheduler.returncode != 0
    assert not list((workdir / "results").rglob("*.tmp-*")), "a half-written file was left"
    if kill_scheduler:  # Snakemake died holding its locks; the next run finds them stale (unloc.locks)
        assert list((workdir / ".snakemake" / "locks").glob("*.lock")), "Snakemake left no lock to release"
    assert planned_jobs(workdir), "the interrupted run finished everything: nothing was interrupted"
    snakemake(workdir, "--cores", "2")  # the plain rerun, no --unlock
    assert planned_jobs(workdir) == set(), "the rerun left work undone"
    return workdir


def assert_bit_identical(workdir: Path, built: Path) -> dict[str, bytes]:
    """Every timing-free result of ``workdir`` is byte for byte that of ``built``; returns them."""
    ours, uninterrupted = timing_free_outputs(workdir), timing_free_outputs(built)
    assert ours.keys() == uninterrupted.keys()
    differ = sorted(k for k in ours if ours[k] != uninterrupted[k])
    assert not differ, f"not bit-identical to the uninterrupted build: {differ}"
    return ours
