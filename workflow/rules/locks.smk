# A plain rerun after Snakemake itself was killed (SIGKILL leaves its locks behind): each run
# records which process holds its locks (onstart, cluster.smk), and reading the Snakefile removes
# a lock whose process is gone from this host (src/unloc/locks.py). Locks held on another host,
# by a live process, or not recorded are Snakemake's to report ("cannot be locked": --unlock).
from snakemake.logging import logger

from unloc import locks

LOCK_OWNERS = os.path.join(".snakemake", "unloc-lock-owners")


def record_lock_owner():
    """Record this Snakemake process as the holder of the locks it took (none with --nolock)."""
    held = getattr(workflow.persistence, "_lockfile", {})  # the file persistence's own locks
    locks.record_owner(list(held.values()), LOCK_OWNERS)


for _stale in locks.release_stale(LOCK_OWNERS):
    logger.warning(f"Removed the lock {_stale}: the Snakemake run that held it is gone (killed); going on.")
