"""Stale Snakemake locks (unloc.locks): a lock whose recorded Snakemake process is gone from this
host is removed; one held by a live process, on another host, rewritten by another run since, or
never recorded stays."""

import json
import os
import subprocess
import sys

import pytest

from unloc import locks


@pytest.fixture
def dirs(tmp_path):
    lock_dir, owners = tmp_path / "locks", tmp_path / "owners"
    lock_dir.mkdir()
    return lock_dir, owners


def lock_file(lock_dir, name):
    path = lock_dir / name
    path.write_text("results/x\n")
    return path


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def rewrite_owner(owners, name, **changes):
    path = owners / f"{name}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_a_lock_of_a_process_that_is_gone_is_removed_with_its_record(dirs):
    lock_dir, owners = dirs
    held = [lock_file(lock_dir, "0.input.lock"), lock_file(lock_dir, "0.output.lock")]
    locks.record_owner(held, owners)
    assert locks.release_stale(owners) == []  # this process holds them: alive
    for path in held:
        rewrite_owner(owners, path.name, pid=dead_pid())
    assert sorted(locks.release_stale(owners)) == sorted(map(str, held))
    assert not any(p.exists() for p in held) and list(owners.iterdir()) == []


def test_a_reused_pid_does_not_keep_a_stale_lock(dirs):
    lock_dir, owners = dirs
    held = lock_file(lock_dir, "0.output.lock")
    locks.record_owner([held], owners)
    if locks.process_start(os.getpid()) is None:
        pytest.skip("no /proc: a pid's start time is unknown here")
    rewrite_owner(owners, held.name, start="1")  # this pid, but a process started at another time
    assert locks.release_stale(owners) == [str(held)]


def test_locks_of_another_host_or_rewritten_since_or_unrecorded_stay(dirs):
    lock_dir, owners = dirs
    other_host, rewritten, unrecorded = (lock_file(lock_dir, f"{n}.output.lock") for n in range(3))
    locks.record_owner([other_host, rewritten], owners)
    rewrite_owner(owners, other_host.name, host="login-node-1", pid=dead_pid())
    rewrite_owner(owners, rewritten.name, pid=dead_pid(), mtime_ns=1)  # another run's lock 1 now
    assert locks.release_stale(owners) == []
    assert other_host.exists() and rewritten.exists() and unrecorded.exists()
    assert [p.name for p in owners.iterdir()] == ["0.output.lock.json"]  # the rewritten lock's record went


def test_records_of_locks_released_normally_are_cleaned_up(dirs):
    lock_dir, owners = dirs
    held = lock_file(lock_dir, "0.output.lock")
    locks.record_owner([held], owners)
    held.unlink()  # Snakemake removed its lock on exit
    assert locks.release_stale(owners) == [] and list(owners.iterdir()) == []
    assert locks.release_stale(lock_dir / "absent") == []
