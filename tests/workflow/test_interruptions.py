"""A job killed with SIGKILL mid-run, with the scheduler surviving or killed too: a plain rerun
(no --unlock where Snakemake itself died: its stale locks are released, unloc.locks) completes the
experiment, bit-identical to an uninterrupted build.

Each case starts from a copy of the uninterrupted quick build with the outputs of the killed stage
and of everything after it removed, so the interrupted run redoes them, and kills the stage while
it computes: a sweep with the scheduler surviving, an unlearning run with the scheduler killed too.
Every stage writes its outputs atomically (temp file, then rename), so nothing half written
survives, and `rule all` asks for every artifact, so the rerun redoes the killed one. The Section 3
stages get the same test in test_section3.py.
"""

from __future__ import annotations

import pytest

from helpers import assert_bit_identical, rebuild_with_a_killed_job

pytestmark = pytest.mark.slow

REDONE = {"mix_eval": ("mix", "tables", "figures"), "unlearn": ("unlearn", "mix", "tables", "figures")}
# How long after a stage's process appears it is killed: a quick sweep takes about 20 s, an
# unlearning run about 5 s (model loading included).
MID_RUN_S = {"mix_eval": 2.0, "unlearn": 1.0}


@pytest.mark.parametrize("stage,kill_scheduler", [("mix_eval", False), ("unlearn", True)],
                         ids=["sweep-killed", "unlearning-and-scheduler-killed"])
def test_a_plain_rerun_after_kill_9_completes_bit_identical(quick_build, tmp_path, stage, kill_scheduler):
    built, _ = quick_build
    removed = [f"results/quick/{folder}" for folder in REDONE[stage]]
    workdir = rebuild_with_a_killed_job(tmp_path, built, removed, stage, "", MID_RUN_S[stage], kill_scheduler)
    ours = assert_bit_identical(workdir, built)
    assert len(ours) > 40 and any(k.endswith("curve.csv") for k in ours) and any(k.endswith(".png") for k in ours)
