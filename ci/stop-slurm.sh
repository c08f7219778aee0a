#!/usr/bin/env bash
# Stop the single-node SLURM cluster started by ci/start-slurm.sh.
#
# Cancels every job, then stops slurmd, slurmctld and slurmdbd by their pid files, and MariaDB
# and munged only when ci/start-slurm.sh started them (a munged or MariaDB that was already
# running is left alone). Idempotent: a no-op when nothing runs. Must run as root.
# METALAB_SLURM_TIMEOUT (seconds, default 60) bounds the wait for each daemon.
set -euo pipefail

TIMEOUT="${METALAB_SLURM_TIMEOUT:-60}"
STATE_DIR=/run/metalab-slurm

log() { printf 'stop-slurm: %s\n' "$*" >&2; }

# The pid in PIDFILE when it names a live (not zombie) process whose command is COMM.
live_pid() {
    local pidfile=$1 comm=$2 pid state
    [[ -r $pidfile ]] || return 1
    pid="$(<"$pidfile")"
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/stat ]] || return 1
    state="$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
    [[ $state != Z && "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm" ]] || return 1
    printf '%s\n' "$pid"
}

# True when PID has exited (killed daemons may linger as zombies: those count as exited).
pid_gone() {
    local state
    state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)"
    [[ -z $state || $state == Z ]]
}

# Send SIGTERM to the daemon of PIDFILE and wait until it has exited; SIGKILL after TIMEOUT.
stop_daemon() {
    local pidfile=$1 comm=$2 pid deadline
    pid="$(live_pid "$pidfile" "$comm")" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + TIMEOUT))
    until pid_gone "$pid"; do
        if ((SECONDS >= deadline)); then
            log "$comm (pid $pid) ignored SIGTERM for ${TIMEOUT}s: killing it"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    log "stopped $comm"
}

# Stop a daemon only if start-slurm.sh started it and it still owns its pid file: killing a
# munged that lost its socket path to another one would delete that other one's socket.
stop_if_ours() {
    local ours=$1 pidfile=$2 comm=$3
    [[ -r $ours && -r $pidfile ]] || return 0
    if [[ "$(<"$ours")" == "$(<"$pidfile")" ]]; then
        stop_daemon "$pidfile" "$comm"
    fi
    rm -f "$ours"
}

cancel_jobs() {
    live_pid /run/slurmctld.pid slurmctld >/dev/null || return 0
    local jobs
    jobs="$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')" || return 0
    if [[ -n ${jobs// /} ]]; then
        # shellcheck disable=SC2086 # one argument per job id
        scancel $jobs 2>/dev/null || true
        log "cancelled jobs: $jobs"
    fi
    # Give the killed job steps KillWait (5 s) and some to end, so none outlives slurmd.
    local deadline=$((SECONDS + 15))
    while [[ -n "$(squeue -h -t running,completing -o %A 2>/dev/null)" ]]; do
        ((SECONDS < deadline)) || break
        sleep 0.2
    done
}

cancel_jobs
stop_daemon /run/slurmd.pid slurmd
stop_daemon /run/slurmctld.pid slurmctld
stop_daemon /run/slurmdbd.pid slurmdbd
stop_if_ours "$STATE_DIR/mariadbd.pid" /run/mysqld/mysqld.pid mariadbd
stop_if_ours "$STATE_DIR/munged.pid" /run/munge/munged.pid munged
