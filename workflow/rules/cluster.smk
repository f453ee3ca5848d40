# Running under the slurm executor (profiles/slurm): refuse to start without an account and a
# partition. The profile takes both from the environment; an unset variable would otherwise reach
# sbatch as the literal text "$UNLOC_SLURM_ACCOUNT", which a cluster with accounting rejects job by
# job, after the local stages have already run.
import os

from snakemake.exceptions import WorkflowError

SLURM_ENV = {
    "UNLOC_SLURM_ACCOUNT": "the SLURM account jobs are charged to (sbatch --account)",
    "UNLOC_SLURM_PARTITION": "the partition jobs are submitted to (sbatch --partition)",
}


def check_slurm_environment():
    """Raise, naming each missing variable, when this run submits through the slurm executor."""
    # The executor is only known once execution starts: while the Snakefile is parsed,
    # workflow.executor_plugin is still None, so this runs from `onstart`, which Snakemake calls
    # after building the DAG and before the scheduler starts (or submits) the first job. Dry runs
    # use the dryrun executor and skip onstart; inside a SLURM job Snakemake runs the
    # "slurm-jobstep" executor, so the check fires on the submitting host only. (--no-hooks,
    # which skips onstart, skips the check too.)
    plugin = workflow.executor_plugin
    if plugin is None or plugin.name != "slurm":
        return
    missing = [name for name in SLURM_ENV if not os.environ.get(name, "").strip()]
    if missing:
        them = "it" if len(missing) == 1 else "them"
        raise WorkflowError(
            f"{' and '.join(missing)} not set: the slurm executor needs {them} (profiles/slurm passes"
            " them to sbatch). Nothing was submitted.\n"
            + "".join(f"  {name}: {SLURM_ENV[name]}\n" for name in missing)
            + "Set them and rerun, e.g. export UNLOC_SLURM_ACCOUNT=myproject UNLOC_SLURM_PARTITION=gpu"
        )


# A workflow has one `onstart` handler (a second `onstart:` would replace this one): further
# start-up steps belong in this block.
onstart:
    record_lock_owner()
    check_slurm_environment()
