#!/usr/bin/env bash
# Start a throwaway single-node SLURM cluster on localhost, for the tests and for trying the
# SLURM profile without a real cluster. Debian/Ubuntu, run as root.
#
#   tests/slurm/start-cluster.sh [STATE_DIR]     (default: $RESDEPTH_SLURM_DIR or /tmp/resdepth-slurm)
#   sbatch / squeue / sacct ...                  (/etc/slurm/slurm.conf links to STATE_DIR's)
#   tests/slurm/stop-cluster.sh [STATE_DIR]
#
# What runs: munged, a private MariaDB, slurmdbd, slurmctld and slurmd. Accounting (slurmdbd)
# is not optional: the Snakemake SLURM plugin polls job states with `sacct`, and without a
# database a workflow waits forever. The node offers fake GPUs (GRES `gpu` backed by dummy
# device files), so GPU requests are accepted and jobs get CUDA_VISIBLE_DEVICES.
#
# Everything the cluster writes (config, spool, database, logs, PID files) lives in STATE_DIR;
# outside it there is only the link /etc/slurm/slurm.conf (see install_config_link).
# Idempotent: packages are installed only when missing (no service is started by the
# install), daemons already running from STATE_DIR are kept. Prints "started NAME" on stdout
# for each daemon it started; stop-cluster.sh kills exactly the PIDs recorded in
# STATE_DIR/pids.
set -euo pipefail

STATE=$(realpath -m "${1:-${RESDEPTH_SLURM_DIR:-/tmp/resdepth-slurm}}")
GPUS=${RESDEPTH_SLURM_GPUS:-2} # fake GPUs on the node
PACKAGES=(munge mariadb-server slurmdbd slurmctld slurmd slurm-client)
CONF_HEADER="# Written by tests/slurm/start-cluster.sh: a single-node cluster on localhost."
COMMANDS=(munged mungekey mariadbd mariadb-install-db mariadb-admin slurmdbd slurmctld slurmd
    sbatch sacct sacctmgr)

log() { echo "[start-cluster] $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# Wait up to $1 seconds for the command "${@:2}" to succeed; $what names it in the error.
wait_for() {
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq $((seconds * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    die "$what not ready after ${seconds}s (logs in $STATE/log)"
}

# True when the PID file names a live process with the expected command name, so a stale
# PID file (or a recycled PID) is never mistaken for our daemon.
is_running() {
    local name=$1 pidfile=$STATE/pids/$1.pid pid
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ -r /proc/$pid/comm && $(</proc/"$pid"/comm) == "$name" ]]
}

install_packages() {
    local missing=()
    for cmd in "${COMMANDS[@]}"; do
        command -v "$cmd" >/dev/null || missing+=("$cmd")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}; run as root to install ${PACKAGES[*]}"
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
    log "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    # Debian package scripts start their services unless policy-rc.d forbids it; we start
    # the daemons ourselves, with our own configuration. Keep any site policy-rc.d intact.
    local policy=/usr/sbin/policy-rc.d backup=""
    if [[ -e $policy ]]; then
        backup=$(mktemp /usr/sbin/policy-rc.d.XXXXXX)
        cp -p "$policy" "$backup"
    fi
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    local status=0
    {
        apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
                "${PACKAGES[@]}"
    } >"$STATE/log/apt.log" 2>&1 || status=$?
    if [[ -n $backup ]]; then mv "$backup" "$policy"; else rm -f "$policy"; fi
    [[ $status -eq 0 ]] || die "apt-get failed (exit $status), see $STATE/log/apt.log"
}

write_config() {
    local host node
    host=$(hostname -s)
    # The node's real hardware (CPUs, sockets, memory) as slurmd sees it.
    node=$(slurmd -C | head -n 1)
    [[ $node == NodeName=* ]] || die "unexpected 'slurmd -C' output: $node"

    cat >"$STATE/etc/slurm.conf" <<EOF
$CONF_HEADER
ClusterName=resdepth
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$STATE/munge/munge.socket
CredType=cred/munge
# No systemd or cgroup delegation here: track job processes by parent PID.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Jobs that do not ask for memory get 1 GB per CPU, not the whole node.
DefMemPerCPU=1024
GresTypes=gpu
ReturnToService=2
StateSaveLocation=$STATE/spool/slurmctld
SlurmdSpoolDir=$STATE/spool/slurmd
SlurmctldPidFile=$STATE/pids/slurmctld.pid
SlurmdPidFile=$STATE/pids/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
# For connections to slurmdbd this names the munge socket (AuthInfo is not used for them).
AccountingStoragePass=$STATE/munge/munge.socket
AccountingStorageTRES=gres/gpu
# Keep the job comment, where the Snakemake plugin names the rule and wildcards.
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=10
$node NodeAddr=127.0.0.1 Gres=gpu:$GPUS State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

    cat >"$STATE/etc/gres.conf" <<EOF
Name=gpu File=$STATE/dev/nvidia[0-$((GPUS - 1))]
EOF

    # slurmdbd reads slurmdbd.conf next to SLURM_CONF; it must be private to SlurmUser.
    cat >"$STATE/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$STATE/munge/munge.socket
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/pids/slurmdbd.pid
EOF
    chmod 600 "$STATE/etc/slurmdbd.conf"

    install_config_link
}

# Commands inside jobs find slurm.conf only at the default path: the Snakemake jobstep
# plugin strips SLURM_* variables (SLURM_CONF too) before it calls srun. So link it there,
# as a real cluster has it, unless a configuration that is not ours is in the way.
install_config_link() {
    local link=/etc/slurm/slurm.conf
    # A dangling link is ours, left by a removed state directory: replace it.
    if [[ -e $link ]] && [[ $(head -n 1 "$link") != "$CONF_HEADER" ]]; then
        die "$link exists and was not written by this script; not touching a real cluster"
    fi
    mkdir -p /etc/slurm
    ln -sfn "$STATE/etc/slurm.conf" "$link"
}

# Fake GPU device files: slurmd only needs them to exist to hand out GPU slots.
make_fake_gpus() {
    for i in $(seq 0 $((GPUS - 1))); do
        [[ -e $STATE/dev/nvidia$i ]] || mknod -m 666 "$STATE/dev/nvidia$i" c 1 3
    done
}

start_munge() {
    is_running munged && return 0
    [[ -s $STATE/munge/munge.key ]] || mungekey --create --keyfile="$STATE/munge/munge.key"
    chmod 600 "$STATE/munge/munge.key"
    # --force: munged refuses to run as root otherwise.
    munged --force --socket="$STATE/munge/munge.socket" --key-file="$STATE/munge/munge.key" \
        --pid-file="$STATE/pids/munged.pid" --log-file="$STATE/log/munged.log" \
        --seed-file="$STATE/munge/munged.seed"
    wait_for 10 munged munge -n -S "$STATE/munge/munge.socket"
    echo "started munged"
}

start_mariadb() {
    is_running mariadbd && return 0
    if [[ ! -d $STATE/mysql/data/mysql ]]; then
        mariadb-install-db --no-defaults --user=mysql --datadir="$STATE/mysql/data" \
            --auth-root-authentication-method=socket --skip-test-db \
            >"$STATE/log/mariadb-install-db.log" 2>&1 ||
            die "mariadb-install-db failed, see $STATE/log/mariadb-install-db.log"
    fi
    # No TCP port: only slurmdbd talks to it, through the private socket. MariaDB writes its
    # PID file and log as user mysql, inside STATE/mysql; links put them with the others.
    ln -sfn ../mysql/mariadbd.pid "$STATE/pids/mariadbd.pid"
    ln -sfn ../mysql/mariadbd.log "$STATE/log/mariadbd.log"
    setsid mariadbd --no-defaults --user=mysql --datadir="$STATE/mysql/data" \
        --socket="$STATE/mysql/mysqld.sock" --pid-file="$STATE/mysql/mariadbd.pid" \
        --log-error="$STATE/mysql/mariadbd.log" --skip-networking </dev/null >/dev/null 2>&1 &
    wait_for 30 MariaDB mariadb-admin --no-defaults --socket="$STATE/mysql/mysqld.sock" ping
    wait_for 5 "MariaDB PID file" test -s "$STATE/pids/mariadbd.pid"
    echo "started mariadbd"
}

node_is_up() { [[ $(sinfo -h -o %t) =~ ^(idle|mix|alloc|comp)$ ]]; }

start_slurm() {
    export SLURM_CONF=$STATE/etc/slurm.conf
    if ! is_running slurmdbd; then
        # The MySQL client library in slurmdbd finds the private server's socket here.
        MYSQL_UNIX_PORT=$STATE/mysql/mysqld.sock slurmdbd
        wait_for 30 slurmdbd sacctmgr -n list cluster
        echo "started slurmdbd"
    fi
    # Register the cluster, as a site admin would (this also gives root an account).
    if [[ -z $(sacctmgr -n -P list cluster format=cluster) ]]; then
        sacctmgr -i add cluster resdepth >/dev/null
    fi
    if ! is_running slurmctld; then
        slurmctld
        echo "started slurmctld"
    fi
    wait_for 30 slurmctld scontrol ping
    if ! is_running slurmd; then
        slurmd
        echo "started slurmd"
    fi
    wait_for 60 "node" node_is_up
}

main() {
    mkdir -p "$STATE"/{etc,log,pids,spool,dev,munge,mysql/data}
    install_packages
    # MariaDB drops privileges to mysql before it writes its data, PID file and log.
    chown -R mysql:mysql "$STATE/mysql"
    write_config
    make_fake_gpus
    start_munge
    start_mariadb
    start_slurm
    log "ready (state in $STATE)"
}

main
