#!/usr/bin/env bash
# Stop the one-node cluster of start-local-cluster.sh: slurmd, slurmctld and, if that script
# started it, munged. Each daemon is found through the pidfile recorded under /run/unloc-slurm
# and signalled only if that pid still runs a process of the expected name; nothing is looked up
# or killed by name, so other users' daemons and jobs are never touched.
# Exit status 0 when none of the recorded daemons is left running.
set -u

PID_DIR=/run/unloc-slurm

say() { echo "[stop-local-cluster] $*" >&2; }

[ "$(id -u)" = 0 ] || { say "needs root"; exit 1; }

status=0
# slurmd first: it would otherwise keep trying to reach the controller.
for name in slurmd slurmctld munged; do
    pidfile="$PID_DIR/$name.pid"
    if [ ! -s "$pidfile" ]; then
        say "$name: no pidfile, not started by start-local-cluster.sh (or already stopped)"
        continue
    fi
    pid=$(tr -cd '0-9' <"$pidfile")
    if [ -z "$pid" ] || [ ! -d "/proc/$pid" ]; then
        say "$name: recorded pid ${pid:-?} is gone; removing its pidfile"
        rm -f "$pidfile"
        continue
    fi
    comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
    if [ "$comm" != "$name" ]; then
        # The pid was reused by an unrelated process after the daemon died.
        say "$name: pid $pid now belongs to '$comm'; leaving it alone and removing the pidfile"
        rm -f "$pidfile"
        continue
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 60); do [ -d "/proc/$pid" ] || break; sleep 0.5; done
    if [ -d "/proc/$pid" ]; then
        say "$name: pid $pid still running 30 s after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 1
    fi
    if [ -d "/proc/$pid" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null; then
        say "$name: pid $pid is still running"
        status=1
    else
        say "$name: stopped (pid $pid)"
        rm -f "$pidfile"
    fi
done
# The fake GPU devices only mean something to the stopped slurmd.
[ "$status" = 0 ] && rm -f "$PID_DIR"/fakegpu[0-9]*
exit "$status"
