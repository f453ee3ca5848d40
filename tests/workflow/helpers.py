"""Run the real workflow in a scratch directory and read which jobs it would run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
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


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Snakemake on the repository's Snakefile in ``workdir``, with ``workdir/config.yaml`` as the
    --configfile unless ``args`` give one (the defaults are always the repository's config.yaml)."""
    config = [] if "--configfile" in args else ["--configfile", str(workdir / "config.yaml")]
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir), *config, *args]
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
