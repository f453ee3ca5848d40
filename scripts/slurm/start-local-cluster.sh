#!/usr/bin/env bash
# Start a one-node SLURM cluster on this Debian machine, so that `snakemake --profile slurm` can be
# run and tested against a real slurmctld without a site cluster: munged, slurmctld and slurmd
# from Debian's packages (installed with apt-get when missing), started directly (no systemd),
# with fake GPUs as gres so that jobs asking for GPUs schedule.
#
#   eval "$(scripts/slurm/start-local-cluster.sh)"   # root; sets UNLOC_SLURM_ACCOUNT/PARTITION
#   snakemake --profile slurm --configfile config/quick.yaml
#   scripts/slurm/stop-local-cluster.sh
#
# stdout carries only the two `export` lines for the profile; progress goes to stderr.
# Idempotent: daemons already running from an earlier call are kept, unless the generated
# configuration changed, in which case slurmctld and slurmd are restarted to read it. Every daemon
# it starts is recorded in a pidfile under $PID_DIR; stop-local-cluster.sh stops exactly those.
#
# Environment:
#   LOCAL_SLURM_GPUS=2         fake GPUs on the node (0: no gres)
#   LOCAL_SLURM_PARTITION=debug  name of the node's one partition
#   LOCAL_SLURM_TIMEOUT=90     seconds to wait for the node to accept jobs
#   LOCAL_SLURM_NO_INSTALL=1   never run apt-get; fail if a binary is missing
set -euo pipefail

PID_DIR=/run/unloc-slurm          # pidfiles of the daemons started here, and the fake GPU devices
CONF_DIR=/etc/slurm               # where Debian's slurm binaries look for slurm.conf
LOG_DIR=/var/log/slurm
CTLD_STATE=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd
MUNGE_KEY=/etc/munge/munge.key
MUNGE_RUN=/run/munge
HEADER="# Written by unloc's scripts/slurm/start-local-cluster.sh; rewritten on every start."
ACCOUNT=local                     # no accounting daemon: slurmctld accepts any account name

GPUS=${LOCAL_SLURM_GPUS:-2}
PARTITION=${LOCAL_SLURM_PARTITION:-debug}
TIMEOUT=${LOCAL_SLURM_TIMEOUT:-90}
started_at=$SECONDS

say() { echo "[start-local-cluster] $*" >&2; }
fail() {
    say "ERROR: $*"
    # The daemons' own logs usually say why; show their ends so a failed test explains itself.
    local f
    for f in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" "$LOG_DIR/slurmctld.out" \
             "$LOG_DIR/slurmd.out" "$LOG_DIR/munged.out" /var/log/munge/munged.log; do
        [ -s "$f" ] && { echo "--- last lines of $f" >&2; tail -n 20 "$f" >&2; }
    done
    exit 1
}

[ "$(id -u)" = 0 ] || fail "needs root (writes /etc/slurm, starts daemons as root)"
[[ $GPUS =~ ^[0-9]+$ ]] || fail "LOCAL_SLURM_GPUS must be a number, not '$GPUS'"

# ------------------------------------------------------------------ packages
missing=()
for bin in munged munge unmunge slurmctld slurmd sbatch squeue sinfo scontrol; do
    command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
done
if [ ${#missing[@]} -gt 0 ]; then
    [ "${LOCAL_SLURM_NO_INSTALL:-0}" = 1 ] && fail "missing ${missing[*]} and LOCAL_SLURM_NO_INSTALL=1"
    command -v apt-get >/dev/null 2>&1 || fail "missing ${missing[*]} and there is no apt-get to install them"
    say "installing munge, slurmctld, slurmd, slurm-client with apt-get (about a minute) ..."
    export DEBIAN_FRONTEND=noninteractive
    apt_log=$(mktemp /tmp/start-local-cluster.apt.XXXXXX)
    # Refresh the package lists only when they do not know slurmd yet (a fresh image has none).
    if ! apt-cache policy slurmd 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        apt-get update -q >"$apt_log" 2>&1 || { tail -n 20 "$apt_log" >&2; fail "apt-get update failed"; }
    fi
    if ! apt-get install -y -q --no-install-recommends munge slurmctld slurmd slurm-client >>"$apt_log" 2>&1; then
        # Stale lists give 404s for superseded package versions: refresh once and retry.
        apt-get update -q >>"$apt_log" 2>&1 || true
        apt-get install -y -q --no-install-recommends munge slurmctld slurmd slurm-client >>"$apt_log" 2>&1 \
            || { tail -n 30 "$apt_log" >&2; fail "apt-get install failed (log: $apt_log)"; }
    fi
    rm -f "$apt_log"
fi

# ------------------------------------------------------------------ pidfile helpers
# running PIDFILE NAME: print the pid and succeed if PIDFILE names a live process called NAME.
# Checking the name guards against a recycled pid belonging to something else.
running() {
    local pid
    [ -s "$1" ] || return 1
    pid=$(tr -cd '0-9' <"$1")
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || return 1
    grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null && return 1
    echo "$pid"
}

# halt PIDFILE NAME: SIGTERM the recorded process, SIGKILL after 20 s, forget the pidfile.
halt() {
    local pid
    if pid=$(running "$1" "$2"); then
        say "stopping $2 (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 40); do [ -d "/proc/$pid" ] || break; sleep 0.5; done
        [ -d "/proc/$pid" ] && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$1"
}

# await PIDFILE NAME SECONDS: wait until the daemon has written its pidfile and is alive.
await() {
    for _ in $(seq $(($3 * 5))); do
        running "$1" "$2" >/dev/null && return 0
        sleep 0.2
    done
    return 1
}

mkdir -p "$PID_DIR" "$CONF_DIR" "$LOG_DIR" "$CTLD_STATE" "$SLURMD_SPOOL"
chmod 0755 "$PID_DIR" "$LOG_DIR"

# ------------------------------------------------------------------ munge (authentication)
if [ ! -s "$MUNGE_KEY" ]; then
    say "creating $MUNGE_KEY"
    install -d -o munge -g munge -m 0700 /etc/munge
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --keyfile="$MUNGE_KEY"
    else
        head -c 1024 /dev/urandom >"$MUNGE_KEY"
    fi
fi
chown munge:munge "$MUNGE_KEY"
chmod 0600 "$MUNGE_KEY"
install -d -o munge -g munge -m 0755 "$MUNGE_RUN"
install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

if munge_works; then
    if pid=$(running "$PID_DIR/munged.pid" munged); then
        say "munged already running (pid $pid)"
    else
        # Someone else's munged (e.g. the distribution's service): use it, and since there is
        # no pidfile of ours, the stop script leaves it alone.
        say "using the munged that is already running"
    fi
else
    rm -f "$PID_DIR/munged.pid"
    args=()
    # A socket left by a munged that died would make a new one refuse to start.
    [ -S "$MUNGE_RUN/munge.socket.2" ] && args+=(--force)
    say "starting munged"
    runuser -u munge -- /usr/sbin/munged "${args[@]}" --pid-file="$MUNGE_RUN/munged.pid" \
        >"$LOG_DIR/munged.out" 2>&1 || fail "munged did not start"
    for _ in $(seq 50); do munge_works && break; sleep 0.2; done
    munge_works || fail "munged started, but a munge/unmunge round trip fails"
    # munged writes its pidfile where the munge user may write; our copy marks it as ours.
    cp "$MUNGE_RUN/munged.pid" "$PID_DIR/munged.pid"
fi

# ------------------------------------------------------------------ configuration
HOST=$(hostname -s)
# Describe the node with what slurmd itself detects: a node configured with more CPUs or memory
# than slurmd reports at registration is drained ("Low RealMemory") and never runs a job.
detected=$(slurmd -C 2>/dev/null | head -n 1 || true)
CPUS=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$detected")
MEM=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$detected")
[ -n "$CPUS" ] || CPUS=$(nproc)
[ -n "$MEM" ] || MEM=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024))
# Keep a tenth of the memory (at least 1 GB) for the daemons, the submitting Snakemake and
# the local rules, which run beside the jobs on this same machine.
reserve=$((MEM / 10 < 1024 ? 1024 : MEM / 10))
MEM=$((MEM - reserve < 256 ? 256 : MEM - reserve))

gres_node=""
gres_types=""
gres_line=""
rm -f "$PID_DIR"/fakegpu[0-9]*
if [ "$GPUS" -gt 0 ]; then
    # gres/gpu needs one character device per GPU (a count alone registers 0 GPUs and the node
    # is marked INVAL), so each fake GPU is a link to /dev/null. Jobs then get
    # CUDA_VISIBLE_DEVICES set, as on a GPU node, while torch still sees no CUDA device.
    for i in $(seq 0 $((GPUS - 1))); do ln -sfn /dev/null "$PID_DIR/fakegpu$i"; done
    files="$PID_DIR/fakegpu0"
    [ "$GPUS" -gt 1 ] && files="$PID_DIR/fakegpu[0-$((GPUS - 1))]"
    gres_node=" Gres=gpu:fake:$GPUS"
    gres_types="GresTypes=gpu"
    gres_line="NodeName=$HOST Name=gpu Type=fake File=$files"
fi

new_conf=$(mktemp)
new_gres=$(mktemp)
trap 'rm -f "$new_conf" "$new_gres"' EXIT
cat >"$new_conf" <<EOF
$HEADER
ClusterName=unloc-local
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
MailProg=/bin/true
# Plain process tracking, no cgroups (containers and VMs often lack a writable cgroup tree).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# No accounting daemon (slurmdbd): sacct and sacctmgr do not work, squeue does.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# One line per finished job: a record of what ran, sacct being unavailable.
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG_DIR/jobcomp.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
$gres_types
# A job without a memory request gets this much per CPU instead of the whole node.
DefMemPerCPU=1024
# Refuse at submission a job that can never run here (more CPUs, memory or GPUs than the node
# has) instead of leaving it pending forever.
EnforcePartLimits=ALL
# A node that was down (e.g. slurmd restarted) comes back by itself when it registers.
ReturnToService=2
# Finished jobs stay visible to squeue for 10 minutes: Snakemake's slurm plugin reads job
# states with squeue here, and must see a job as COMPLETED or FAILED before it disappears.
MinJobAge=600
InactiveLimit=0
KillWait=10
Waittime=0
SlurmctldTimeout=120
SlurmdTimeout=300
StateSaveLocation=$CTLD_STATE
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPidFile=$PID_DIR/slurmctld.pid
SlurmdPidFile=$PID_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM$gres_node State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
{
    echo "$HEADER"
    echo "AutoDetect=off"
    if [ -n "$gres_line" ]; then echo "$gres_line"; fi
} >"$new_gres"

changed=0
# put NEW DEST: install NEW as DEST if it differs; keep a copy of a DEST this script did not write.
put() {
    cmp -s "$1" "$2" && return 0
    if [ -e "$2" ] && ! grep -qF "$HEADER" "$2"; then
        cp -p "$2" "$2.before-unloc.$(date +%Y%m%d%H%M%S)"
        say "kept a copy of the existing $2"
    fi
    install -m 0644 "$1" "$2"
    changed=1
}
put "$new_conf" "$CONF_DIR/slurm.conf"
put "$new_gres" "$CONF_DIR/gres.conf"

if [ "$changed" = 1 ] && { running "$PID_DIR/slurmctld.pid" slurmctld >/dev/null ||
                            running "$PID_DIR/slurmd.pid" slurmd >/dev/null; }; then
    say "configuration changed: restarting slurmctld and slurmd"
    halt "$PID_DIR/slurmd.pid" slurmd
    halt "$PID_DIR/slurmctld.pid" slurmctld
fi

# ------------------------------------------------------------------ slurmctld
if pid=$(running "$PID_DIR/slurmctld.pid" slurmctld); then
    say "slurmctld already running (pid $pid)"
else
    say "starting slurmctld"
    # Without -D it forks into the background and writes SlurmctldPidFile.
    slurmctld >"$LOG_DIR/slurmctld.out" 2>&1 || fail "slurmctld did not start"
    await "$PID_DIR/slurmctld.pid" slurmctld 15 || fail "slurmctld did not come up"
fi
for _ in $(seq $((TIMEOUT * 2))); do
    scontrol ping 2>/dev/null | grep -q 'is UP' && break
    running "$PID_DIR/slurmctld.pid" slurmctld >/dev/null || fail "slurmctld exited"
    sleep 0.5
done
scontrol ping 2>/dev/null | grep -q 'is UP' || fail "slurmctld does not answer 'scontrol ping'"

# ------------------------------------------------------------------ slurmd
if pid=$(running "$PID_DIR/slurmd.pid" slurmd); then
    say "slurmd already running (pid $pid)"
else
    say "starting slurmd"
    slurmd >"$LOG_DIR/slurmd.out" 2>&1 || fail "slurmd did not start"
    await "$PID_DIR/slurmd.pid" slurmd 15 || fail "slurmd did not come up"
fi

# ------------------------------------------------------------------ wait for the node
deadline=$((SECONDS + TIMEOUT))
resumed=0
while :; do
    state=$(sinfo -h -N -n "$HOST" -o '%T' 2>/dev/null | head -n 1 || true)
    case "$state" in
        idle | mixed | allocated | completing) break ;;
        inval*)
            fail "node $HOST is INVAL, slurm.conf does not match the hardware: $(sinfo -h -N -n "$HOST" -o '%E')" ;;
        *drain* | down* | fail*)
            # Left drained or down by an earlier run (e.g. slurmd killed): put it back once.
            if [ "$resumed" = 0 ]; then
                say "node is '$state'; resuming it"
                scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true
                resumed=1
            fi ;;
    esac
    [ "$SECONDS" -lt "$deadline" ] ||
        fail "node $HOST not ready after ${TIMEOUT}s (state '${state:-unknown}', reason: $(sinfo -h -N -n "$HOST" -o '%E' 2>/dev/null))"
    sleep 0.5
done

say "up in $((SECONDS - started_at)) s: node $HOST ($state, $CPUS CPUs, $MEM MB, $GPUS fake GPUs)," \
    "partition $PARTITION; slurmctld pid $(cat "$PID_DIR/slurmctld.pid"), slurmd pid $(cat "$PID_DIR/slurmd.pid");" \
    "logs in $LOG_DIR, finished jobs in $LOG_DIR/jobcomp.log"
echo "export UNLOC_SLURM_ACCOUNT=$ACCOUNT"
echo "export UNLOC_SLURM_PARTITION=$PARTITION"
