import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "workflow"))

from helpers import fresh_workdir, load_config, planned_jobs, snakemake  # noqa: E402


@pytest.fixture(scope="session")
def quick_build(tmp_path_factory):
    """The quick config built once, locally and uninterrupted: (workdir, config). The workflow tests
    and the SLURM test compare against it; a test that changes it restores it."""
    config = load_config()
    workdir = fresh_workdir(tmp_path_factory.mktemp("quick"), config)
    snakemake(workdir, "--cores", "2")
    assert planned_jobs(workdir) == set(), "a finished build should have nothing left to do"
    return workdir, config
