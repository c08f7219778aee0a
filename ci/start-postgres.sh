#!/usr/bin/env bash
# Make sure the PostgreSQL server the tests use answers on 127.0.0.1:5432 (database `test`).
# Starts the machine's Debian cluster when it is down; creates the database when missing.
set -euo pipefail

HOST=${METALAB_PG_HOST:-127.0.0.1}
PORT=${METALAB_PG_PORT:-5432}
DB=${METALAB_PG_DB:-test}

log() { printf 'start-postgres: %s\n' "$*" >&2; }

ready() { pg_isready -q -h "$HOST" -p "$PORT" -t 2; }

if ! command -v pg_isready >/dev/null 2>&1; then
    log "installing the PostgreSQL client and server (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends postgresql
fi

if ! ready; then
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$version" ]; then
        log "no PostgreSQL cluster configured under /etc/postgresql"
        exit 1
    fi
    log "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 60); do
        ready && break
        sleep 0.5
    done
fi

if ! ready; then
    log "PostgreSQL does not answer on $HOST:$PORT"
    exit 1
fi

if ! psql -h "$HOST" -p "$PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" postgres | grep -q 1; then
    log "creating database $DB"
    psql -h "$HOST" -p "$PORT" -U postgres -c "CREATE DATABASE \"$DB\"" postgres
fi
log "PostgreSQL answers on $HOST:$PORT (database $DB)"
