#!/usr/bin/env bash
# A single-node Slurm on this machine, for the sweep tests and for trying `--slurm --submit`:
#   .ci/slurm-local.sh start    install slurmctld, slurmd and munge when missing (apt-get, as root),
#                               write slurm.conf for this host, start munged, slurmctld and slurmd,
#                               and wait until `sinfo` shows the node idle
#   .ci/slurm-local.sh stop     end the daemons this script started (by the pids in their pid files)
#   .ci/slurm-local.sh status   say whether they run and what sinfo shows
# Without systemd or cgroups: processes are tracked by parent (proctrack/linuxproc), tasks are
# not bound to cores (task/none), and there is no accounting database (squeue/scontrol, no sacct).
set -euo pipefail

STATE="${ADAPT_SLURM_STATE:-/var/lib/adapt-slurm}"
CONF=/etc/slurm/slurm.conf
MARKER="# Written by adapt's .ci/slurm-local.sh"
MUNGE_PID=/run/munge/munged.pid

die() {
    echo "error: $*" >&2
    exit 1
}

need_root() {
    [ "$(id -u)" -eq 0 ] || die "$1 needs root (apt-get, daemons, /etc/slurm); run it as root or with sudo"
}

install_missing() {
    local missing=()
    command -v slurmctld >/dev/null 2>&1 || missing+=(slurmctld)
    command -v slurmd >/dev/null 2>&1 || missing+=(slurmd)
    command -v sbatch >/dev/null 2>&1 || missing+=(slurm-client)
    command -v munged >/dev/null 2>&1 || missing+=(munge)
    [ ${#missing[@]} -eq 0 ] && return 0
    need_root "installing ${missing[*]}"
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install ${missing[*]} (Slurm and munge) by hand"
    echo "installing ${missing[*]}"
    # The packages' own service start fails without systemd; this script starts the daemons itself.
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

write_conf() {
    local host cpus mem
    host="$(hostname -s)"
    cpus="$(nproc)"
    # A tenth kept back: slurmd drains a node whose memory is below what slurm.conf claims.
    mem="$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)"
    if [ -e "$CONF" ] && ! head -n 1 "$CONF" | grep -qF "$MARKER"; then
        die "$CONF exists and was not written by this script; not replacing a real cluster's configuration"
    fi
    mkdir -p /etc/slurm "$STATE/slurmctld" "$STATE/slurmd"
    cat >"$CONF.tmp" <<CONF
$MARKER for host $host: one node, partition debug.
ClusterName=adapt-local
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# Finished jobs stay visible to scontrol for ten minutes (there is no accounting database).
MinJobAge=600
KillWait=10
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    mv "$CONF.tmp" "$CONF"
}

alive() {
    [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

start_munge() {
    alive "$MUNGE_PID" && return 0
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    local user=root
    id munge >/dev/null 2>&1 && user=munge
    chown "$user" /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown "$user" /run/munge /var/lib/munge /var/log/munge /etc/munge
    if [ "$user" = munge ]; then
        runuser -u munge -- munged
    else
        munged --force
    fi
}

wait_idle() {
    local host state
    host="$(hostname -s)"
    for _ in $(seq 1 60); do
        state="$(sinfo -h -N -n "$host" -o '%T' 2>/dev/null || true)"
        case "$state" in
            idle | mixed | allocated) return 0 ;;
            down* | drain* | unknown*) scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true ;;
        esac
        sleep 1
    done
    die "the node $host did not become idle within 60 s (sinfo: '${state:-nothing}'); see $STATE/slurmctld.log and $STATE/slurmd.log"
}

start() {
    need_root "starting Slurm"
    install_missing
    write_conf
    start_munge
    alive "$STATE/slurmctld.pid" || slurmctld
    alive "$STATE/slurmd.pid" || slurmd
    wait_idle
    echo "slurm: node $(hostname -s) idle in partition debug ($(nproc) CPUs); state in $STATE"
}

stop_one() {
    local name="$1" pidfile="$2" pid
    alive "$pidfile" || return 0
    pid="$(cat "$pidfile")"
    kill "$pid"
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    echo "warning: $name (pid $pid) still running after 10 s" >&2
}

stop() {
    need_root "stopping Slurm"
    stop_one slurmd "$STATE/slurmd.pid"
    stop_one slurmctld "$STATE/slurmctld.pid"
    stop_one munged "$MUNGE_PID"
    echo "slurm: stopped"
}

status() {
    local name pidfile
    for name in munged slurmctld slurmd; do
        case "$name" in
            munged) pidfile="$MUNGE_PID" ;;
            *) pidfile="$STATE/$name.pid" ;;
        esac
        if alive "$pidfile"; then echo "$name: running (pid $(cat "$pidfile"))"; else echo "$name: not running"; fi
    done
    if command -v sinfo >/dev/null 2>&1; then sinfo || true; fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) die "usage: $0 start|stop|status" ;;
esac
