#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine for `pipe`'s SLURM tests and benchmark
# (recipe: /work/shared/SLURM.md): `start` installs slurm-wlm and munge if missing, writes a
# one-node configuration and starts munged, slurmctld and slurmd; `stop` stops exactly the
# daemons it started, by the pids it recorded (never by name). Needs root.
#
#   scripts/slurm-test-cluster.sh start   # idempotent: does nothing if `sinfo` already answers
#   scripts/slurm-test-cluster.sh stop    # only stops what `start` started
set -euo pipefail

STATE=${PIPE_SLURM_STATE:-/run/pipe-slurm-test}
PIDS="$STATE/started-pids"

log() { echo "slurm-test-cluster: $*" >&2; }

start() {
    if command -v sinfo >/dev/null && timeout 5 sinfo -h >/dev/null 2>&1; then
        log "a cluster already answers; leaving it alone"
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        log "need root to install and start SLURM"; exit 1
    fi
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        log "installing slurm-wlm and munge (about 20 s)"
        # A fresh container may have no package lists yet: update once, then retry.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 \
            || { apt-get update -qq >/dev/null \
                 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null; }
    fi
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(( $(free -m | awk '/Mem:/{print $2}') - 1024 ))
    mkdir -p "$STATE" /etc/munge /var/run/munge /var/log/slurm /var/spool/slurmctld \
        /var/spool/slurmd /run/slurm /etc/slurm
    [ -f /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    chown -R munge:munge /etc/munge /var/run/munge
    chmod 400 /etc/munge/munge.key
    cat > /etc/slurm/slurm.conf <<CONF
ClusterName=pipe-test
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=30
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
    : > "$PIDS"
    if ! [ -S /var/run/munge/munge.socket.2 ] || ! munge -n >/dev/null 2>&1; then
        runuser -u munge -- munged
        munged_pid=$(cat /var/run/munge/munged.pid 2>/dev/null || true)
        [ -n "$munged_pid" ] && echo "$munged_pid" >> "$PIDS"
    fi
    slurmctld
    slurmd
    for _ in $(seq 1 30); do
        if [ -f /run/slurm/slurmctld.pid ] && [ -f /run/slurm/slurmd.pid ] \
            && timeout 5 sinfo -h -o '%t' 2>/dev/null | grep -q -E 'idle|mix|alloc'; then
            cat /run/slurm/slurmctld.pid >> "$PIDS"
            cat /run/slurm/slurmd.pid >> "$PIDS"
            log "up: $(sinfo -h -o '%P %D %t' | tr '\n' ' ')"
            return 0
        fi
        sleep 0.5
    done
    log "SLURM did not come up; see /var/log/slurm/slurmctld.log and slurmd.log"
    exit 1
}

stop() {
    [ -f "$PIDS" ] || { log "nothing started by this script"; return 0; }
    # slurmd and slurmctld first (last started), munged last.
    tac "$PIDS" | while read -r pid; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    for _ in $(seq 1 20); do
        alive=0
        while read -r pid; do
            [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && alive=1
        done < "$PIDS"
        [ $alive = 0 ] && break
        sleep 0.25
    done
    rm -f "$PIDS"
    log "stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
