#!/usr/bin/env bash
# Start a single-node SLURM cluster with accounting (sacct) on this machine, for the tests.
#
# Installs the Debian packages when they are missing (slurmctld, slurmd, slurm-client, munge,
# slurmdbd, mariadb-server), writes /etc/slurm/slurm.conf, gres.conf and slurmdbd.conf for this
# host, and starts munged, MariaDB, slurmdbd, slurmctld and slurmd by hand (no systemd needed).
# The node has 16 job slots, one GPU as a generic resource (counted only: no real device behind
# it, so `--gres=gpu:1` jobs schedule on machines without GPUs) and three partitions over it:
# `debug` (the default), `gpu` and `cpu`. Jobs are confined to their memory (`--mem`) by SLURM's
# cgroup plugins (TaskPlugin=task/cgroup, ProctrackType=proctrack/cgroup, memory a consumable
# resource, cgroup.conf with ConstrainRAMSpace=yes), so a job over its memory is OOM-killed and
# ends OUT_OF_MEMORY. When those plugins do not work here (slurmd does not start with them, or a
# probe job finds no limit in its memory cgroup), or with METALAB_SLURM_MEMORY=off, the cluster
# falls back to task/none + proctrack/linuxproc, which enforce no memory, and says why in its
# log and in a "# metalab-ci: memory not enforced: <why>" line of slurm.conf; that fallback is
# kept until the cluster is started again (ci/stop-slurm.sh, then this script). Idempotent: when
# the cluster is already up with the same configuration it returns at once; when the
# configuration changed, the SLURM daemons restart. A munged or MariaDB that already runs is
# reused, and ci/stop-slurm.sh stops only those this script started. Must run as root.
# METALAB_SLURM_TIMEOUT (seconds, default 90) bounds every wait.
set -euo pipefail

HOST="$(hostname -s)"
TIMEOUT="${METALAB_SLURM_TIMEOUT:-90}"
STATE_DIR=/run/metalab-slurm # pids of the daemons this script started and must stop later
MARKER="# metalab-ci: single-node test cluster written by ci/start-slurm.sh"
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
MYSQL_SOCKET=/run/mysqld/mysqld.sock
PARTITIONS="partitions debug (default), gpu, cpu"
CPUS=16
FALLBACK_NOTE="# metalab-ci: memory not enforced:" # + why, in slurm.conf of the fallback config
FORCED_OFF="METALAB_SLURM_MEMORY=off"
PROBE_MEM_MB=64
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

# slurm.conf. With WHY empty, jobs are confined to their memory by the cgroup plugins; memory is
# then a consumable resource, each CPU of a job without --mem getting 1/16 of the node's. With
# WHY (one line: why cgroups are not used), the fallback: no plugin confines memory.
render_slurm_conf() {
    local why=${1:-} plugins select
    if [[ -z $why ]]; then
        plugins="ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup"
        select="SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$(($(real_memory_mb) / CPUS))"
    else
        plugins="$FALLBACK_NOTE $why
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none"
        select="SelectTypeParameters=CR_Core"
    fi
    cat <<EOF
$MARKER
ClusterName=local
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
$plugins
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
SchedulerType=sched/backfill
# Array tasks start every scheduler tick instead of every 3 s.
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
$select
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
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$(real_memory_mb) Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=ALL MaxTime=INFINITE State=UP
PartitionName=cpu Nodes=ALL MaxTime=INFINITE State=UP
EOF
}

# slurmd drops a GPU without a device file ("Ignoring file-less GPU") and the node goes INVAL,
# so the one GPU is backed by /dev/null: it exists everywhere, and nothing is bound to it (no
# device cgroup: ConstrainDevices=no in cgroup.conf, and no cgroups at all in the fallback).
# Jobs see CUDA_VISIBLE_DEVICES=0, nothing more.
render_gres_conf() {
    cat <<EOF
$MARKER
NodeName=$HOST Name=gpu Count=1 File=/dev/null
EOF
}

# The cgroup version the cgroup plugins use: v2 where /sys/fs/cgroup is the unified hierarchy,
# else v1 (one hierarchy per controller; a hybrid's /sys/fs/cgroup/unified has no controllers).
cgroup_plugin() {
    if [[ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" == cgroup2fs ]]; then
        echo cgroup/v2
    else
        echo cgroup/v1
    fi
}

# cgroup.conf: confine each job's memory to its --mem (no swap beyond it), nothing else. The
# node declares 16 CPUs on fewer real ones, so CPUs are not confined; nor are devices (the GPU
# is /dev/null). The IgnoreSystemd* keys matter for cgroup/v2 only: slurmd runs outside systemd.
render_cgroup_conf() {
    cat <<EOF
$MARKER
CgroupPlugin=$(cgroup_plugin)
CgroupAutomount=yes
IgnoreSystemdOnFailure=yes
ConstrainCores=no
ConstrainDevices=no
ConstrainRAMSpace=yes
AllowedRAMSpace=100
ConstrainSwapSpace=yes
AllowedSwapSpace=0
EOF
}

# True when /etc/slurm/cgroup.conf is the one this script writes.
our_cgroup_conf() { grep -qxF "$MARKER" /etc/slurm/cgroup.conf 2>/dev/null; }

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

# Why the installed slurm.conf does not enforce memory (its fallback note), or nothing.
installed_fallback() {
    local line
    line="$(grep -m1 -F "$FALLBACK_NOTE " /etc/slurm/slurm.conf 2>/dev/null)" || return 0
    printf '%s\n' "${line#"$FALLBACK_NOTE "}"
}

# Why memory must not be enforced before even trying (METALAB_SLURM_MEMORY=off), or nothing.
fallback_wanted() {
    if [[ ${METALAB_SLURM_MEMORY:-} == off ]]; then
        printf '%s\n' "$FORCED_OFF"
    fi
}

# True when the installed files are what this script writes: the cgroup configuration, or a
# fallback it already had to take (kept until the cluster is started again).
configs_current() {
    local conf why
    for conf in slurm.conf gres.conf slurmdbd.conf; do
        [[ -r /etc/slurm/$conf ]] || return 1
    done
    why="$(fallback_wanted)"
    if [[ -z $why ]]; then
        why="$(installed_fallback)"
        [[ $why == "$FORCED_OFF" ]] && why=""
    fi
    cmp -s <(render_slurm_conf "$why") /etc/slurm/slurm.conf || return 1
    if [[ -z $why ]]; then
        cmp -s <(render_cgroup_conf) /etc/slurm/cgroup.conf || return 1
    else
        ! our_cgroup_conf || return 1
    fi
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

failed="" # why the last bring_up or memory_probe failed

# Start slurmdbd, slurmctld and slurmd, wait until the node takes jobs and run the smoke tests;
# false with the reason in $failed when slurmctld or slurmd does not start or the node or a smoke
# test does not work (what the cgroup plugins can break), fatal when slurmdbd does not.
bring_up() {
    failed=""
    if ! pid_alive /run/slurmdbd.pid slurmdbd; then
        slurmdbd || fail "slurmdbd did not start"
    fi
    wait_for sacctmgr -n list cluster || fail "slurmdbd did not answer within ${TIMEOUT}s"
    if ! pid_alive /run/slurmctld.pid slurmctld; then
        slurmctld || { failed="slurmctld did not start" && return 1; }
    fi
    local log=/var/log/slurm/slurmd.log size fatal
    size="$(stat -c %s "$log" 2>/dev/null || echo 0)"
    if ! pid_alive /run/slurmd.pid slurmd; then
        slurmd -N "$HOST" || failed="slurmd did not start"
    fi
    if [[ -z $failed ]] && ! wait_node_ready; then
        failed="node $HOST not idle within ${TIMEOUT}s"
    fi
    if [[ -n $failed ]]; then
        # The first fatal error slurmd logged since it was started, if any.
        fatal="$(tail -c +$((size + 1)) "$log" 2>/dev/null | grep -m1 'fatal:' | cut -c1-160)"
        failed+="${fatal:+ (slurmd: ${fatal#*] })}"
        return 1
    fi
    local smoke
    for smoke in "srun -Q -t 1 true" "srun -Q -t 1 -p gpu --gres=gpu:1 true"; do
        # shellcheck disable=SC2086 # the words of the command
        timeout "$TIMEOUT" $smoke || { failed="smoke test '$smoke' failed" && return 1; }
    done
}

# Wait until the node takes jobs, resuming it when an unclean stop left it down or drained;
# false after TIMEOUT seconds, or when slurmd is still not running after 5 s.
wait_node_ready() {
    local deadline=$((SECONDS + TIMEOUT)) grace=$((SECONDS + 5)) state
    until node_ready; do
        ((SECONDS < deadline)) || return 1
        ((SECONDS < grace)) || pid_alive /run/slurmd.pid slurmd || return 1
        state="$(sinfo -h -n "$HOST" -o %t 2>/dev/null || true)"
        if [[ $state == down || $state == drain* || $state == drng || $state == inval ]]; then
            scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
        fi
        sleep 0.2
    done
}

# A job with --mem=64M must find a 64 MB limit in its memory cgroup, between its own cgroup and
# its job's (job_<id>); false with the reason in $failed otherwise.
memory_probe() {
    local out
    # shellcheck disable=SC2016 # expanded in the job
    out="$(timeout "$TIMEOUT" srun -Q -t 1 --mem="${PROBE_MEM_MB}M" sh -c '
        line=$(grep -E "^[0-9]+:([^:]*,)?memory(,[^:]*)?:" /proc/self/cgroup)
        if [ -n "$line" ]; then
            dir=/sys/fs/cgroup/memory${line#*:*:} file=memory.limit_in_bytes
        else
            dir=/sys/fs/cgroup$(sed -n "s/^0:://p" /proc/self/cgroup) file=memory.max
        fi
        while :; do
            [ -r "$dir/$file" ] && echo "$dir/$file $(cat "$dir/$file")"
            case ${dir##*/} in job_*|"") break ;; esac
            dir=${dir%/*}
        done' 2>&1)" || {
        failed="the probe job failed: $(paste -sd ' ' <<<"$out")"
        return 1
    }
    if ! grep -q " $((PROBE_MEM_MB * 1024 * 1024))\$" <<<"$out"; then
        failed="a job with --mem=${PROBE_MEM_MB}M has no ${PROBE_MEM_MB} MB limit in its cgroups"
        failed+=" ($(paste -sd ' ' <<<"${out:-no memory cgroup}"))"
        return 1
    fi
}

# Install the configuration (WHY empty: memory confined by cgroups; else the fallback, for WHY);
# restart the SLURM daemons when it changed.
configure() {
    local why=$1 password changed=0
    password="$(db_password)"
    render_slurm_conf "$why" >"$tmp/slurm.conf"
    render_gres_conf >"$tmp/gres.conf"
    render_slurmdbd_conf "$password" >"$tmp/slurmdbd.conf"
    install_conf "$tmp/slurm.conf" /etc/slurm/slurm.conf 0644 root && changed=1
    if [[ -z $why ]]; then
        render_cgroup_conf >"$tmp/cgroup.conf"
        install_conf "$tmp/cgroup.conf" /etc/slurm/cgroup.conf 0644 root && changed=1
    elif our_cgroup_conf; then
        # slurmd reads cgroup.conf even with task/none: without it, it uses its defaults.
        rm -f /etc/slurm/cgroup.conf
        changed=1
    fi
    install_conf "$tmp/gres.conf" /etc/slurm/gres.conf 0644 root && changed=1
    install_conf "$tmp/slurmdbd.conf" /etc/slurm/slurmdbd.conf 0600 slurm && changed=1
    if ((changed)); then
        # Some settings (MaxArraySize, node CPUs and GRES, partitions, plugins) apply only on
        # restart.
        stop_daemon /run/slurmd.pid slurmd
        stop_daemon /run/slurmctld.pid slurmctld
        stop_daemon /run/slurmdbd.pid slurmdbd
    fi
    create_database "$password"
}

tmp="" # scratch directory for rendered configuration files, removed on exit

main() {
    local started=$EPOCHREALTIME why
    if cluster_up; then
        why="$(installed_fallback)"
        log "cluster already up in $(elapsed "$started")s ($PARTITIONS on $HOST," \
            "${why:+memory not enforced: }${why:-memory confined by cgroups})"
        return 0
    fi
    [[ $EUID -eq 0 ]] || fail "must run as root"
    install_packages
    install -d -m 0755 "$STATE_DIR"
    prepare_dirs
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    start_munge
    start_mariadb

    why="$(fallback_wanted)"
    configure "$why"
    if [[ -z $why ]] && ! { bring_up && memory_probe; }; then
        why="$failed"
        log "the cgroup plugins do not work here: $why"
        tail -n 15 /var/log/slurm/slurmd.log >&2 2>/dev/null || true
        log "falling back to TaskPlugin=task/none, ProctrackType=proctrack/linuxproc:" \
            "jobs are NOT confined to their memory (no OUT_OF_MEMORY)"
        configure "$why"
        bring_up || fail "$failed"
    elif [[ -n $why ]]; then
        bring_up || fail "$failed"
    fi
    log "cluster up in $(elapsed "$started")s ($PARTITIONS on $HOST, 1 GPU, accounting on," \
        "${why:+memory not enforced: }${why:-memory confined by cgroups})"
}

main "$@"
