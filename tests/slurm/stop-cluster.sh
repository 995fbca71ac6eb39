#!/usr/bin/env bash
# Stop the cluster that start-cluster.sh started from STATE_DIR: exactly the daemons whose
# PIDs it recorded in STATE_DIR/pids, in reverse start order; only the named ones when
# daemon names follow STATE_DIR. State is kept, so a later start-cluster.sh resumes with the
# same accounting database and job ids. Once slurmctld is down, the /etc/slurm/slurm.conf
# link that start-cluster.sh made goes too: with it, every SLURM client command waits ~9 s
# for the stopped controller, and so does every snakemake call (its SLURM plugin runs
# `scontrol show config` when it is loaded); without it they fail at once.
#
#   tests/slurm/stop-cluster.sh [STATE_DIR [DAEMON...]]
#   (STATE_DIR default: $RESDEPTH_SLURM_DIR or /tmp/resdepth-slurm)
set -euo pipefail

STATE=$(realpath -m "${1:-${RESDEPTH_SLURM_DIR:-/tmp/resdepth-slurm}}")
ALL_DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged) # reverse start order
selected=("${@:2}")
for name in "${selected[@]}"; do
    [[ " ${ALL_DAEMONS[*]} " == *" $name "* ]] || {
        echo "[stop-cluster] ERROR: unknown daemon '$name' (known: ${ALL_DAEMONS[*]})" >&2
        exit 2
    }
done

log() { echo "[stop-cluster] $*" >&2; }

# Print the PID recorded for daemon $1 when it is still that daemon (not a recycled PID).
recorded_pid() {
    local pidfile=$STATE/pids/$1.pid pid
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ -r /proc/$pid/comm && $(</proc/"$pid"/comm) == "$1" ]] || return 1
    echo "$pid"
}

stop() {
    local name=$1 pid
    if ! pid=$(recorded_pid "$name"); then
        rm -f "$STATE/pids/$name.pid"
        return 0
    fi
    kill -TERM "$pid"
    for _ in $(seq 150); do # 30 s, then force
        [[ -d /proc/$pid ]] || break
        sleep 0.2
    done
    if [[ -d /proc/$pid ]]; then
        log "$name (PID $pid) ignored SIGTERM for 30 s, sending SIGKILL"
        kill -KILL "$pid"
    fi
    rm -f "$STATE/pids/$name.pid"
    log "stopped $name (PID $pid)"
}

for daemon in "${ALL_DAEMONS[@]}"; do
    if [[ ${#selected[@]} -eq 0 || " ${selected[*]} " == *" $daemon "* ]]; then
        stop "$daemon"
    fi
done

link=/etc/slurm/slurm.conf
if ! recorded_pid slurmctld >/dev/null && [[ $(readlink "$link") == "$STATE/etc/slurm.conf" ]]; then
    rm -f "$link"
    log "removed $link"
fi
