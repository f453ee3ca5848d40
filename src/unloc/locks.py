"""Stale Snakemake locks: what lets a plain rerun go on after Snakemake itself was killed.

Snakemake locks the files a run reads and writes (``.snakemake/locks/<n>.{input,output}.lock``)
and removes the locks when it exits. Killed with SIGKILL it cannot, and the next run stops with
"Directory cannot be locked" until someone runs ``snakemake --unlock``. Snakemake does not record
who holds a lock, so the workflow does: when a run starts (``onstart``) it writes, per lock file
it holds, the host, pid and process start time of the Snakemake process; when the Snakefile is
next read, a lock whose recorded process is gone from this host is removed. A lock held on
another host (a cluster's login node), by a live process, or without a record is left alone, and
Snakemake's own check then applies.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from unloc import io


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks after boot (Linux /proc), which tells a
    reused pid from the process recorded; None where /proc is not there."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name before ")" may hold spaces


def process_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        pass
    return start is None or process_start(pid) in (None, start)


def record_owner(lock_files, owners_dir) -> None:
    """Record this process as the holder of ``lock_files`` (paths), one record per lock file."""
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "start": process_start(os.getpid())}
    for lock_file in lock_files:
        io.write_json(Path(owners_dir) / f"{Path(lock_file).name}.json",
                      {**owner, "lock": str(lock_file), "mtime_ns": os.stat(lock_file).st_mtime_ns})


def release_stale(owners_dir) -> list[str]:
    """Remove each recorded lock whose Snakemake process is gone from this host, and each record
    whose lock is gone; return the lock files removed."""
    host, removed = socket.gethostname(), []
    for record_path in sorted(Path(owners_dir).glob("*.lock.json")):  # none where the folder is not there
        try:
            owner = json.loads(record_path.read_text())
            lock = Path(owner["lock"])
            mine, pid, start = owner["host"] == host, int(owner["pid"]), owner.get("start")
            written = lock.stat().st_mtime_ns if lock.exists() else None
        except (OSError, ValueError, KeyError, TypeError):
            continue  # unreadable: leave it, and its lock, alone
        if written != owner.get("mtime_ns"):  # the lock is gone, or another run has written it since
            record_path.unlink(missing_ok=True)
        elif mine and not process_alive(pid, start):
            lock.unlink(missing_ok=True)
            record_path.unlink(missing_ok=True)
            removed.append(str(lock))
    return removed
