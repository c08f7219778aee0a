#!/usr/bin/env bash
# Start a single-node SLURM cluster with accounting (sacct) on this machine, for the tests.
#
# Installs the Debian packages when they are missing (slurmctld, slurmd, slurm-client, munge,
# slurmdbd, mariadb-server), writes /etc/slurm/slurm.conf, gres.conf and slurmdbd.conf for this
# host, and starts munged, MariaDB, slurmdbd, slurmctld and slurmd by hand (no systemd needed).
# The node has 16 job slots, one GPU as a generic resource (counted only: no real device behind
# it, so `--gres=gpu:1` jobs schedule on machines without GPUs) and three partitions over it:
# `debug` (the default), `gpu` and `cpu`. Idempotent: when the cluster is already up with the
# same configuration it returns at once; when the configuration changed, the SLURM daemons
# restart. A munged or MariaDB that already runs is reused, and ci/stop-slurm.sh stops only
# those this script started. Must run as root. METALAB_SLURM_TIMEOUT (seconds, default 90)
# bounds every wait.
set -euo pipefail

HOST="$(hostname -s)"
TIMEOUT="${METALAB_SLURM_TIMEOUT:-90}"
STATE_DIR=/run/metalab-slurm # pids of the daemons this script started and must stop later
MARKER="# metalab-ci: single-node test cluster written by ci/start-slurm.sh"
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
MYSQL_SOCKET=/run/mysqld/mysqld.sock
PARTITIONS="partitions debug (default), gpu, cpu"
LOGS=(/var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log /var/log/slurm/slurmdbd.log
    /var/log/munge/munged.log /var/log/mysql/error.log /var/log/slurm/mariadbd.log)

elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

log() { printf 'start-slurm: %s\n' "$*" >&2; }

fail() {
    log "FAILED: $*"
    local file
    for file in "${LOGS[@]}"; do
        if [[ -s $file ]]; then
            printf -- '----- last lines of %s -----\n' "$file" >&2
            tail -n 25 "$file" >&2 || true
        fi
    done
    exit 1
}

# True when PIDFILE names a live (not zombie) process whose command is COMM.
pid_alive() {
    local pidfile=$1 comm=$2 pid state
    [[ -r $pidfile ]] || return 1
    pid="$(<"$pidfile")"
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/stat ]] || return 1
    # Killed daemons linger as zombies when init reaps lazily: they count as gone.
    state="$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
    [[ $state != Z && "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm" ]]
}

# True when PID has exited (a zombie counts as exited).
pid_gone() {
    local state
    state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)"
    [[ -z $state || $state == Z ]]
}

# Run COMMAND... until it succeeds or TIMEOUT seconds pass; false on timeout.
wait_for() {
    local deadline=$((SECONDS + TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# ---------------------------------------------------------------------------- configuration

real_memory_mb() {
    awk '/^MemTotal:/ { printf "%d\n", $2 / 1024 * 0.9 }' /proc/meminfo
}

render_slurm_conf() {
    cat <<EOF
$MARKER
ClusterName=local
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
SchedulerType=sched/backfill
# Array tasks start every scheduler tick instead of every 3 s.
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# 16 job slots on a small machine; without config_overrides the node would be drained.
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
# Finished jobs stay visible to squeue -t all for 5 minutes; sacct keeps them for good.
MinJobAge=300
MaxArraySize=100001
# Every task of an array counts, until MinJobAge after it ended: room for the SLURM benchmark's
# three 300,000-run sweeps (held, then cancelled) and the tests' jobs beside them.
MaxJobCount=2000000
MailProg=/bin/true
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# One GPU, counted by the scheduler only (no real device: see render_gres_conf), and accounted
# (sacct's AllocTRES shows gres/gpu).
GresTypes=gpu
AccountingStorageTRES=gres/gpu
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=16 RealMemory=$(real_memory_mb) Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=ALL MaxTime=INFINITE State=UP
PartitionName=cpu Nodes=ALL MaxTime=INFINITE State=UP
EOF
}

# slurmd drops a GPU without a device file ("Ignoring file-less GPU") and the node goes INVAL,
# so the one GPU is backed by /dev/null: it exists everywhere, and without cgroups (TaskPlugin=
# task/none) nothing is bound to it. Jobs see CUDA_VISIBLE_DEVICES=0, nothing more.
render_gres_conf() {
    cat <<EOF
$MARKER
NodeName=$HOST Name=gpu Count=1 File=/dev/null
EOF
}

render_slurmdbd_conf() {
    local password=$1
    cat <<EOF
$MARKER
AuthType=auth/munge
DbdAddr=127.0.0.1
DbdHost=$HOST
SlurmUser=slurm
DebugLevel=info
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$password
StorageLoc=slurm_acct_db
EOF
}

# The database password: the one already in our slurmdbd.conf, else a new random one.
db_password() {
    local conf=/etc/slurm/slurmdbd.conf password=""
    if [[ -r $conf ]] && grep -qxF "$MARKER" "$conf"; then
        password="$(sed -n 's/^StoragePass=//p' "$conf")"
    fi
    if [[ -z $password ]]; then
        password="$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24)"
    fi
    printf '%s\n' "$password"
}

# Install FILE from RENDERED (mode, owner); a foreign file is kept as FILE.orig. True if changed.
install_conf() {
    local rendered=$1 target=$2 mode=$3 owner=$4
    if [[ -f $target ]] && cmp -s "$rendered" "$target"; then
        return 1
    fi
    if [[ -f $target ]] && ! grep -qxF "$MARKER" "$target"; then
        cp -p "$target" "$target.orig.$(date +%s)"
        log "kept the previous $target as $target.orig.*"
    fi
    install -m "$mode" -o "$owner" -g "$owner" "$rendered" "$target.tmp"
    mv -f "$target.tmp" "$target"
    return 0
}

configs_current() {
    [[ -r /etc/slurm/slurm.conf && -r /etc/slurm/gres.conf && -r /etc/slurm/slurmdbd.conf ]] ||
        return 1
    cmp -s <(render_slurm_conf) /etc/slurm/slurm.conf || return 1
    cmp -s <(render_gres_conf) /etc/slurm/gres.conf || return 1
    cmp -s <(render_slurmdbd_conf "$(db_password)") /etc/slurm/slurmdbd.conf
}

# ---------------------------------------------------------------------------------- checks

node_ready() {
    local state
    state="$(sinfo -h -n "$HOST" -o %t 2>/dev/null)" || return 1
    [[ $state == idle || $state == mix || $state == alloc || $state == comp ]]
}

cluster_up() {
    command -v sinfo >/dev/null 2>&1 || return 1
    configs_current || return 1
    pid_alive /run/slurmdbd.pid slurmdbd || return 1
    pid_alive /run/slurmctld.pid slurmctld || return 1
    pid_alive /run/slurmd.pid slurmd || return 1
    node_ready
}

# ------------------------------------------------------------------------------- the steps

install_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]]; then
            missing+=("$pkg")
        fi
    done
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >/dev/null
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    if munge_works; then
        return 0
    fi
    install -d -m 0700 -o munge -g munge /etc/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
    fi
    install -d -m 0755 -o munge -g munge /run/munge
    install -d -m 0700 -o munge -g munge /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged
    wait_for munge_works || fail "munged did not answer within ${TIMEOUT}s"
    cp /run/munge/munged.pid "$STATE_DIR/munged.pid"
    log "started munged"
}

mysql_alive() { mariadb-admin --socket="$MYSQL_SOCKET" --connect-timeout=2 ping; }

start_mariadb() {
    if mysql_alive >/dev/null 2>&1; then
        return 0
    fi
    install -d -m 0755 -o mysql -g mysql /run/mysqld
    if [[ ! -d /var/lib/mysql/mysql ]]; then
        mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db >/dev/null
    fi
    setsid /usr/sbin/mariadbd --user=mysql --pid-file=/run/mysqld/mysqld.pid \
        --socket="$MYSQL_SOCKET" --bind-address=127.0.0.1 --skip-log-bin \
        </dev/null >/dev/null 2>>/var/log/slurm/mariadbd.log &
    wait_for mysql_alive || fail "MariaDB did not answer within ${TIMEOUT}s"
    wait_for test -s /run/mysqld/mysqld.pid || fail "MariaDB wrote no pid file"
    cp /run/mysqld/mysqld.pid "$STATE_DIR/mariadbd.pid"
    log "started MariaDB"
}

create_database() {
    local password=$1 host
    {
        echo "CREATE DATABASE IF NOT EXISTS slurm_acct_db;"
        for host in localhost 127.0.0.1; do
            echo "CREATE USER IF NOT EXISTS 'slurm'@'$host';"
            echo "ALTER USER 'slurm'@'$host' IDENTIFIED BY '$password';"
            echo "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'$host';"
        done
    } | mariadb --socket="$MYSQL_SOCKET" || fail "could not create the accounting database"
}

# Stop the daemon of PIDFILE (command COMM) and wait until it is gone.
stop_daemon() {
    local pidfile=$1 comm=$2 pid
    pid_alive "$pidfile" "$comm" || return 0
    pid="$(<"$pidfile")"
    kill -TERM "$pid" 2>/dev/null || true
    wait_for pid_gone "$pid" || fail "$comm (pid $pid) did not stop within ${TIMEOUT}s"
}

prepare_dirs() {
    install -d -m 0755 -o slurm -g slurm /var/spool/slurmctld /var/log/slurm
    install -d -m 0755 /var/spool/slurmd /etc/slurm
}

start_slurm_daemons() {
    if ! pid_alive /run/slurmdbd.pid slurmdbd; then
        slurmdbd || fail "slurmdbd did not start"
    fi
    wait_for sacctmgr -n list cluster || fail "slurmdbd did not answer within ${TIMEOUT}s"
    if ! pid_alive /run/slurmctld.pid slurmctld; then
        slurmctld || fail "slurmctld did not start"
    fi
    if ! pid_alive /run/slurmd.pid slurmd; then
        slurmd -N "$HOST" || fail "slurmd did not start"
    fi
}

# Wait until the node takes jobs, resuming it when an unclean stop left it down or drained.
wait_node_ready() {
    local deadline=$((SECONDS + TIMEOUT)) state
    until node_ready; do
        ((SECONDS < deadline)) || fail "node $HOST not idle within ${TIMEOUT}s"
        state="$(sinfo -h -n "$HOST" -o %t 2>/dev/null || true)"
        if [[ $state == down || $state == drain* || $state == drng || $state == inval ]]; then
            scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
        fi
        sleep 0.2
    done
}

tmp="" # scratch directory for rendered configuration files, removed on exit

main() {
    local started=$EPOCHREALTIME
    if cluster_up; then
        log "cluster already up in $(elapsed "$started")s ($PARTITIONS on $HOST)"
        return 0
    fi
    [[ $EUID -eq 0 ]] || fail "must run as root"
    install_packages
    install -d -m 0755 "$STATE_DIR"
    prepare_dirs

    local password changed=0
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    password="$(db_password)"
    render_slurm_conf >"$tmp/slurm.conf"
    render_gres_conf >"$tmp/gres.conf"
    render_slurmdbd_conf "$password" >"$tmp/slurmdbd.conf"
    install_conf "$tmp/slurm.conf" /etc/slurm/slurm.conf 0644 root && changed=1
    install_conf "$tmp/gres.conf" /etc/slurm/gres.conf 0644 root && changed=1
    install_conf "$tmp/slurmdbd.conf" /etc/slurm/slurmdbd.conf 0600 slurm && changed=1
    if ((changed)); then
        # Some settings (MaxArraySize, node CPUs and GRES, partitions) apply only on restart.
        stop_daemon /run/slurmd.pid slurmd
        stop_daemon /run/slurmctld.pid slurmctld
        stop_daemon /run/slurmdbd.pid slurmdbd
    fi

    start_munge
    start_mariadb
    create_database "$password"
    start_slurm_daemons
    wait_node_ready
    timeout "$TIMEOUT" srun -Q -t 1 true || fail "smoke test 'srun -Q -t 1 true' failed"
    timeout "$TIMEOUT" srun -Q -t 1 -p gpu --gres=gpu:1 true ||
        fail "smoke test 'srun -Q -t 1 -p gpu --gres=gpu:1 true' failed"
    log "cluster up in $(elapsed "$started")s ($PARTITIONS on $HOST, 1 GPU, accounting on)"
}

main "$@"
