"""The quick config through a real (one-node) SLURM cluster with `--profile slurm`.

A session fixture starts the cluster with scripts/slurm/start-local-cluster.sh (root; installs
munge and slurm with apt-get the first time) and stops it through its pidfiles afterwards. Where
that is impossible the tests fail with the reason, or skip with it when UNLOC_SKIP_SLURM=1.

Checked: every job of a non-local rule goes through sbatch and nothing else does; the outputs
equal those of a local `--cores 2` run; after one changed value exactly the invalidated jobs are
submitted again; and a missing UNLOC_SLURM_* variable stops the run before any submission.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pytest

from helpers import REPO, SNAKEMAKE, env, planned_jobs, write_config

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

START = REPO / "scripts/slurm/start-local-cluster.sh"
STOP = REPO / "scripts/slurm/stop-local-cluster.sh"
JOBCOMP = Path("/var/log/slurm/jobcomp.log")  # one line per job the cluster finished
SLURM_VARS = ("UNLOC_SLURM_ACCOUNT", "UNLOC_SLURM_PARTITION")
# Hang guards, not timing asserts: a quick build through SLURM takes about 6 minutes on an idle
# 2-core machine and starting the cluster (apt-get included) about 2; each limit is 10x that.
RUN_TIMEOUT = 3600
START_TIMEOUT = 1800
STOP_TIMEOUT = 600

# A job's id is a number; a group job's (unlearn + its mixing sweep, `group: "sweep"`) a uuid.
SUBMITTED = re.compile(r"Job (\S+) has been submitted with SLURM jobid (\d+)")
GROUP_HEADER = re.compile(r"Group job \S+ \(jobs in lexicogr\. order\):")
# The jobs of a group job are logged indented under its header.
JOB_HEADER = re.compile(r"^(\s*)(local)?(?:rule|checkpoint) (\w+):\s*$")


def say(pytestconfig, line: str) -> None:
    """Print past pytest's output capture: the counts and times are for reports."""
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(line, flush=True)


# --------------------------------------------------------------------------- the cluster


@dataclass
class Cluster:
    env: dict = field(default_factory=dict)  # UNLOC_SLURM_ACCOUNT / _PARTITION for the profile
    reason: str | None = None  # why there is no cluster

    def require(self) -> None:
        if self.reason is None:
            return
        if os.environ.get("UNLOC_SKIP_SLURM") == "1":
            pytest.skip(f"no local SLURM cluster (UNLOC_SKIP_SLURM=1): {self.reason}")
        pytest.fail(f"no local SLURM cluster: {self.reason}\n(set UNLOC_SKIP_SLURM=1 to skip instead)",
                    pytrace=False)


def why_impossible() -> str | None:
    if os.name != "posix" or os.geteuid() != 0:
        return "the cluster needs root (start-local-cluster.sh writes /etc/slurm and starts daemons)"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed in this environment (pip install -e .)"
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        return "slurm is not installed and there is no apt-get to install it"
    return None


@pytest.fixture(scope="session")
def slurm_cluster(pytestconfig):
    cluster = Cluster(reason=why_impossible())
    started = False
    if cluster.reason is None:
        t0 = time.monotonic()
        proc = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=START_TIMEOUT)
        started = True
        if proc.returncode != 0:
            cluster.reason = f"{START.relative_to(REPO)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        else:
            cluster.env = dict(re.findall(r"^export (\w+)=(\S+)$", proc.stdout, re.M))
            missing = [v for v in SLURM_VARS if v not in cluster.env]
            if missing:
                cluster.reason = f"start-local-cluster.sh printed no {', '.join(missing)}:\n{proc.stdout}"
            else:
                say(pytestconfig, f"[slurm] local cluster up in {time.monotonic() - t0:.0f} s: {cluster.env}")
    try:
        yield cluster
    finally:
        # Also after a failed start: stop whatever part of it did come up.
        if started and os.environ.get("UNLOC_KEEP_SLURM") != "1":
            stop = subprocess.run(["bash", str(STOP)], capture_output=True, text=True, timeout=STOP_TIMEOUT)
            assert stop.returncode == 0, f"stop-local-cluster.sh failed:\n{stop.stderr}"


# --------------------------------------------------------------------------- running Snakemake


@dataclass
class Run:
    workdir: Path
    output: str
    seconds: float
    submissions: dict  # SLURM jobid -> Snakemake jobid (a number; a uuid for a group job)
    jobs: dict  # Snakemake jobid -> (job as "rule[wildcards]", ran locally?)
    groups: list  # the Snakemake jobids of each group job logged
    finished: list  # (SLURM jobid, state, line) of each job the cluster finished during the run
    returncode: int

    @property
    def submitted_jobs(self) -> list[str]:
        """Every job that went through sbatch, once per time it did."""
        alone = [self.jobs[j][0] for j in self.submissions.values() if j.isdigit()]
        return alone + [self.jobs[j][0] for ids in self.groups for j in ids]

    @property
    def group_submissions(self) -> int:
        return sum(1 for j in self.submissions.values() if not j.isdigit())

    @property
    def local_jobs(self) -> set[str]:
        return {name for name, local in self.jobs.values() if local}


def jobcomp_lines() -> list[str]:
    return JOBCOMP.read_text().splitlines() if JOBCOMP.exists() else []


def finished_jobs(lines: list[str]) -> list[tuple[str, str, str]]:
    """(jobid, state, line) of each jobcomp.log line ("JobId=12 UserId=... JobState=COMPLETED ...")."""
    out = []
    for line in lines:
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        out.append((fields.get("JobId", "?"), fields.get("JobState", "?"), line))
    return out


def parse_log(output: str) -> tuple[dict, dict, list]:
    """The jobs Snakemake logged, its sbatch submissions, and the members of each group job.

    Returns ``(jobs, submissions, groups)``: Snakemake jobid -> ("rule[wildcards]", local?);
    SLURM jobid -> Snakemake jobid (a group job's is a uuid, which the log does not tie to its
    members); and the Snakemake jobids logged under each "Group job" header.
    """
    jobs, submissions, groups = {}, {}, []
    block = None  # the job being read: [rule, local?, grouped?, jobid, wildcards]

    def close():
        nonlocal block
        if block and block[3] is not None:
            jobs[block[3]] = (f"{block[0]}[{block[4]}]", block[1])
            if block[2]:
                groups[-1].append(block[3])
        block = None

    for line in output.splitlines():
        if GROUP_HEADER.search(line):
            close()
            groups.append([])
        elif m := JOB_HEADER.match(line):
            close()
            block = [m[3], bool(m[2]), bool(m[1]) and bool(groups), None, ""]
        elif m := SUBMITTED.search(line):
            close()
            submissions[m[2]] = m[1]
        elif block and line.startswith(" ") and ": " in line:
            key, _, value = line.strip().partition(": ")
            if key == "jobid":
                block[3] = value
            elif key == "wildcards":
                block[4] = value
        elif block and not line.startswith(" "):
            close()
    close()
    return jobs, submissions, groups


class Pending:
    """A Snakemake run started from the repository root (so `--profile slurm` is found there)."""

    def __init__(self, workdir: Path, *args: str, extra_env: dict | None = None):
        e = env()
        e.pop("SNAKEMAKE_PROFILE", None)
        for name in SLURM_VARS:
            e.pop(name, None)
        e.update(extra_env or {})
        self.workdir = workdir
        config = [] if "--configfile" in args else ["--configfile", str(workdir / "config.yaml")]
        self.cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir), *config, *args]
        # Output goes to a file beside the workdir: a pipe could fill up while we wait elsewhere.
        self.log = workdir.parent / f"{workdir.name}.{int(time.time() * 1000)}.log"
        self.jobcomp_before, self.t0 = len(jobcomp_lines()), time.monotonic()
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(self.cmd, cwd=REPO, env=e, stdout=out, stderr=subprocess.STDOUT, text=True)

    def wait(self, check: bool = True) -> Run:
        try:
            returncode = self.proc.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.terminate()  # Snakemake cancels its SLURM jobs on SIGTERM
            self.proc.wait(timeout=STOP_TIMEOUT)
            raise AssertionError(f"{' '.join(self.cmd)} still running after {RUN_TIMEOUT} s:\n"
                                 f"{self.log.read_text()[-6000:]}") from None
        seconds = time.monotonic() - self.t0
        output = self.log.read_text()
        if check and returncode != 0:
            raise AssertionError(f"{' '.join(self.cmd)} failed ({returncode}):\n{output[-6000:]}")
        jobs, submissions, groups = parse_log(output)
        return Run(self.workdir, output, seconds, submissions, jobs, groups,
                   finished_jobs(jobcomp_lines()[self.jobcomp_before:]), returncode)


def snakemake(workdir: Path, *args: str, extra_env: dict | None = None, check: bool = True) -> Run:
    return Pending(workdir, *args, extra_env=extra_env).wait(check=check)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def deterministic_outputs(workdir: Path, config: dict) -> dict[str, str]:
    """What must not depend on where the jobs ran, byte for byte: data, masks, deltas, Table 2,
    checkpoint hashes."""
    results = workdir / "results"
    name, data = config["name"], config["data"]["name"]
    files = [*sorted((results / "data" / data).glob("*.jsonl")),
             *sorted((results / name / "masks").glob("*/s*/mask.safetensors")),
             *sorted((results / name).glob("theta_o/s*/delta.safetensors")),
             *sorted((results / name).glob("unlearn/*/*/s*/delta.safetensors")),
             results / name / "tables/table2.csv"]
    out = {str(p.relative_to(workdir)): digest(p) for p in files}
    for meta in sorted((results / name).glob("theta_*/unloc.json")):
        out[str(meta.relative_to(workdir))] = json.loads(meta.read_text())["content_hash"]
    return out


def with_npo_lr_doubled(config: dict) -> dict:
    changed = copy.deepcopy(config)
    changed["unlearn"]["npo"]["lr"] *= 2
    return changed


class Builds:
    """The quick config built through SLURM once per module, on first use, beside the session's
    local build of it (tests/conftest.py)."""

    def __init__(self, cluster: Cluster, tmp_path_factory, local_build):
        self.cluster, self.tmp = cluster, tmp_path_factory
        self.local_workdir, self.config = local_build

    def workdir(self, name: str) -> Path:
        workdir = self.tmp.mktemp(name)
        write_config(workdir, self.config)
        return workdir

    @cached_property
    def slurm(self) -> Run:
        workdir = self.workdir("slurm")
        self.planned = planned_jobs(workdir)  # what a fresh build has to run, from a dry run
        return snakemake(workdir, "--profile", "slurm", extra_env=self.cluster.env)


@pytest.fixture(scope="module")
def builds(slurm_cluster, tmp_path_factory, request):
    # the local reference is built only where a cluster is there to compare it with
    local = request.getfixturevalue("quick_build") if slurm_cluster.reason is None else (None, None)
    return Builds(slurm_cluster, tmp_path_factory, local)


# --------------------------------------------------------------------------- tests


def expected_submissions(jobs: set[str]) -> int:
    """sbatch calls for these non-local jobs: one per job, except that an unlearning run and its
    mixing sweep (same wildcards) share one group job."""
    sweeps = {j.removeprefix("unlearn") for j in jobs if j.startswith("unlearn[")}
    return len(jobs) - len({j.removeprefix("mix_eval") for j in jobs if j.startswith("mix_eval[")} & sweeps)


def assert_submissions(run: Run, expected_jobs: set[str]) -> list[str]:
    """Exactly ``expected_jobs`` went through sbatch, each once, every sweep with its unlearning run.

    Returns the jobcomp.log lines of jobs the cluster finished meanwhile that were not submitted by
    this run, for the report."""
    submitted = run.submitted_jobs
    assert len(submitted) == len(set(submitted)), "a job was submitted twice"
    assert set(submitted) == expected_jobs
    for ids in run.groups:  # a group job: one unlearning run and the sweep of its θu
        members = sorted(run.jobs[j][0] for j in ids)
        assert [m.split("[")[0] for m in members] == ["mix_eval", "unlearn"], members
        assert members[0].removeprefix("mix_eval") == members[1].removeprefix("unlearn"), members
    assert run.group_submissions == len(run.groups)
    assert len(run.submissions) == expected_submissions(expected_jobs)
    assert len(set(run.submissions.values())) == len(run.submissions)
    # The cluster's own record: every job Snakemake submitted finished, once, and completed. Lines
    # of other jobs (another user of the cluster, a job the executor plugin resubmitted after an
    # sbatch it thought had failed) are not ours to judge; they are reported, not counted.
    ours = [(jobid, state) for jobid, state, _ in run.finished if jobid in run.submissions]
    assert sorted(ours) == sorted((jobid, "COMPLETED") for jobid in run.submissions), \
        f"jobcomp.log disagrees with the submissions {sorted(run.submissions)}:\n" + \
        "\n".join(line for _, _, line in run.finished)
    return [line for jobid, _, line in run.finished if jobid not in run.submissions]


def report_strangers(pytestconfig, lines: list[str]) -> None:
    for line in lines:
        say(pytestconfig, f"[slurm] the cluster also finished a job this run did not submit: {line}")


@pytest.mark.parametrize("missing", SLURM_VARS)
def test_missing_variable_stops_the_run_before_any_submission(slurm_cluster, builds, missing):
    slurm_cluster.require()
    workdir = builds.workdir(f"no_{missing.lower()}")
    present = {k: v for k, v in slurm_cluster.env.items() if k != missing}
    run = snakemake(workdir, "--profile", "slurm", extra_env=present, check=False)
    assert run.returncode != 0, run.output[-3000:]
    assert f"{missing} not set" in run.output, run.output[-3000:]
    assert not run.submissions and not run.finished, run.finished
    # Not even the local rules ran: the check comes before the scheduler starts any job.
    assert not (workdir / "results").exists(), sorted(p.name for p in (workdir / "results").iterdir())


def test_quick_config_through_slurm_equals_a_local_run(slurm_cluster, builds, pytestconfig):
    slurm_cluster.require()
    slurm = builds.slurm
    say(pytestconfig, f"[slurm] quick config: {len(slurm.submissions)} sbatch submissions for"
        f" {len(slurm.submitted_jobs)} cluster jobs, {len(slurm.local_jobs)} local jobs;"
        f" {slurm.seconds:.0f} s through SLURM")

    # Every job ran once, and exactly the jobs of non-local rules went through sbatch.
    assert {j for j, _ in slurm.jobs.values()} == builds.planned
    report_strangers(pytestconfig, assert_submissions(slurm, {j for j, local in slurm.jobs.values() if not local}))
    # The stages that train or evaluate a model run on the cluster; `all` never does.
    assert {"pretrain[]", "finetune[which=r]", "unlearn[objective=npo, localizer=oracle, seed=7]",
            "mix_eval[objective=npo, localizer=oracle, seed=7]", "score_point[seed=7]"} <= set(slurm.submitted_jobs)
    assert "all[]" in slurm.local_jobs

    ours = deterministic_outputs(slurm.workdir, builds.config)
    theirs = deterministic_outputs(builds.local_workdir, builds.config)
    assert len(ours) >= 10 and any(k.endswith("unloc.json") for k in ours), sorted(ours)
    assert ours == theirs, {k: (ours.get(k), theirs.get(k)) for k in ours.keys() | theirs.keys()
                            if ours.get(k) != theirs.get(k)}


def test_changed_value_resubmits_exactly_the_invalidated_jobs(slurm_cluster, builds, pytestconfig):
    slurm_cluster.require()
    first = builds.slurm
    workdir = first.workdir
    changed = write_config(workdir, with_npo_lr_doubled(builds.config), name="changed.yaml")
    invalidated = planned_jobs(workdir, "--configfile", str(changed))
    local_rules = {job.split("[")[0] for job in first.local_jobs}
    expected = {j for j in invalidated if j.split("[")[0] not in local_rules}
    assert expected and all(j.startswith(("unlearn[objective=npo", "mix_eval[objective=npo")) for j in expected), \
        f"changing unlearn.npo.lr should invalidate the NPO runs and sweeps only: {sorted(invalidated)}"

    rerun = snakemake(workdir, "--profile", "slurm", "--configfile", str(changed), extra_env=builds.cluster.env)
    say(pytestconfig, f"[slurm] after unlearn.npo.lr x2: {len(rerun.submissions)} sbatch submissions for"
        f" {len(expected)} cluster jobs (dry run: {len(invalidated)} jobs to run), {rerun.seconds:.0f} s")

    report_strangers(pytestconfig, assert_submissions(rerun, expected))
    assert {j for j, _ in rerun.jobs.values()} == invalidated
    assert planned_jobs(workdir, "--configfile", str(changed)) == set(), "a third run would have work left"
