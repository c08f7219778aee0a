"""Start, stop and inspect a PostgreSQL server for metalab stores, locally or as a SLURM job.

```python
from metalab.services import postgres

started = postgres.start_local(store="/scratch/runs/exp")     # or start_slurm(...)
handle = metalab.run(exp, started.locator)                     # password via ?passfile=
postgres.status(store="/scratch/runs/exp").up                  # True
postgres.discover("/scratch/runs/exp")                         # the locator, on any worker
postgres.stop(store="/scratch/runs/exp")
```

A service is described by its record, `service.json` (mode 0600), in the service directory:
`{store}/services/postgres/` with a store, `~/.local/state/metalab/postgres/` without. The
password (with `scram-sha-256`, the default) is generated once and kept in `pgpass` next to it
(mode 0600, libpq's passfile format); it is never printed and never written elsewhere.
Everything is idempotent: starting a running service returns it, stopping a stopped one is
fine. Errors are `ServiceError`s (`metalab.MetalabError`) saying what to do.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from ..errors import (
    PortInUseError,
    PostgresNotFoundError,
    ServiceError,
    ServiceTimeoutError,
    ValidationError,
)
from ..executors.slurm.config import SlurmConfig
from . import server, slurm_job
from .account import ServerAccount, server_account
from .binaries import find_binaries
from .data_dir import prepare_cluster
from .directory import ensure_dir, service_dir, service_lock, state_home
from .listener import Listener, listener
from .network import ALL_ADDRESSES, answers, check_port_free, free_port, is_loopback
from .passfile import ensure_password_file, read_password
from .roles import check_identifier
from .state import ServiceRecord, mark_stopped, now, read_record, seconds_since, write_record

__all__ = [
    "AUTH_METHODS",
    "PortInUseError",
    "PostgresNotFoundError",
    "ServiceError",
    "ServiceRecord",
    "ServiceStatus",
    "ServiceTimeoutError",
    "StartResult",
    "StopResult",
    "default_slurm_config",
    "discover",
    "service_dir",
    "start_local",
    "start_slurm",
    "status",
    "stop",
]

AUTH_METHODS = ("scram-sha-256", "trust")
DEFAULT_USER = "metalab"
DEFAULT_DATABASE = "metalab"
DEFAULT_HOST = "127.0.0.1"
LOCAL_TIMEOUT = 60.0
SLURM_TIMEOUT = 300.0

StorePath = str | os.PathLike[str]


@dataclass(frozen=True)
class StartResult:
    """What `start_local` / `start_slurm` did: the service's record, and if it already ran."""

    record: ServiceRecord
    service_dir: Path
    already_running: bool

    @property
    def locator(self) -> str:
        """The store locator; the password is referenced as `?passfile=`, not included."""
        return self.record.locator()


@dataclass(frozen=True)
class StopResult:
    """What `stop` did: the record as it is now (`None` if there was none), and if it ran."""

    record: ServiceRecord | None
    service_dir: Path
    was_running: bool


@dataclass(frozen=True)
class ServiceStatus:
    """The state of a service: its record, whether it is up, its SLURM job and uptime.

    `up` means the server process (or SLURM job) runs and answers at its address;
    `reachable` only that something answers PostgreSQL's protocol there. `other` is a server
    that answers although it is not this service's: at the service's address while the
    service is not up, or, with no service recorded, at PostgreSQL's default port here.
    """

    service_dir: Path
    record: ServiceRecord | None
    up: bool
    reachable: bool
    job_state: str | None = None
    uptime: float | None = None
    other: Listener | None = None

    @property
    def state(self) -> str:
        """`up`, `down`, `pending`/`starting` (a SLURM job on its way) or `absent` (no record)."""
        if self.record is None:
            return "absent"
        if self.up:
            return "up"
        if self.record.state in ("pending", "starting") and self.job_state in slurm_job.JOB_ACTIVE:
            return self.record.state
        return "down"


# ------------------------------------------------------------------------------------ local


def start_local(
    *,
    store: StorePath | None = None,
    data_dir: StorePath | None = None,
    port: int | None = None,
    host: str = DEFAULT_HOST,
    auth: str = "scram-sha-256",
    user: str = DEFAULT_USER,
    database: str = DEFAULT_DATABASE,
    os_user: str | None = None,
    bin_dir: StorePath | None = None,
    timeout: float = LOCAL_TIMEOUT,
) -> StartResult:
    """Start a PostgreSQL server on this machine, or return the one already running.

    The data directory (default `{store}/services/postgres/data`, or the server account's
    `~/.local/state/metalab/postgres/data`) is initialised on first use; the server runs as
    `os_user` (default: yourself; as root, `postgres`). Without `port`, a free one is picked.
    Role `user` and `database` are created; with `scram-sha-256` a password is generated
    once. Raises `PortInUseError` naming a taken port, `PostgresNotFoundError` naming where
    the binaries were looked for, `ServiceError` otherwise.
    """
    _check_options(auth=auth, user=user, database=database, host=host, port=port)
    directory = service_dir(store)
    account = server_account(os_user)
    data = Path(data_dir or _default_data_dir(directory, store, account)).absolute()
    ensure_dir(directory, traversable=_inside(data, directory) and not account.is_self)
    with service_lock(directory):
        current = read_record(directory)
        if current is not None and _local_running(current):
            return StartResult(current, directory, already_running=True)
        _refuse_active_job(current)
        port = port or _previous_port(current, data, host)
        options = _LocalOptions(data, port, host, auth, user, database, account, bin_dir)
        record = _start_local(directory, options, timeout)
    return StartResult(record, directory, already_running=False)


@dataclass(frozen=True)
class _LocalOptions:
    data_dir: Path
    port: int | None
    host: str
    auth: str
    user: str
    database: str
    account: ServerAccount
    bin_dir: StorePath | None


def _start_local(directory: Path, options: _LocalOptions, timeout: float) -> ServiceRecord:
    binaries = find_binaries(options.bin_dir)
    data, account = options.data_dir, options.account
    running = server.postmaster_pid(data)
    if running is not None:
        raise ServiceError(
            f"a PostgreSQL server (pid {running}) already runs on {data}, but {directory} "
            f"does not record it: stop it with pg_ctl -D {data} stop"
        )
    port = options.port or free_port(options.host)
    check_port_free(options.host, port)
    password_file = _password_file(directory, options.auth, options.user)
    prepare_cluster(
        binaries,
        data,
        account,
        listen=options.host,
        port=port,
        auth=options.auth,
        role=options.user,
        database=options.database,
        password=read_password(password_file) if password_file else None,
    )
    pid = server.start(binaries, data, account, listen=options.host, port=port, timeout=timeout)
    record = ServiceRecord(
        kind="local",
        state="running",
        user=options.user,
        database=options.database,
        auth=options.auth,
        data_dir=str(data),
        host=_client_host(options.host),
        port=port,
        password_file=None if password_file is None else str(password_file),
        os_user=account.name,
        bin_dir=binaries.bin_dir,
        pid=pid,
        node=socket.gethostname(),
        log_file=str(data / server.LOG_NAME),
        started_at=now(),
    )
    write_record(directory, record)
    return record


def _previous_port(record: ServiceRecord | None, data: Path, host: str) -> int | None:
    """The port the stopped service had, if it is free: a restart keeps its locator."""
    if record is None or record.port is None or record.data_dir != str(data):
        return None
    try:
        check_port_free(host, record.port)
    except PortInUseError:
        return None
    return record.port


def _default_data_dir(directory: Path, store: StorePath | None, account: ServerAccount) -> Path:
    if store is not None or account.is_self:
        return directory / "data"
    return state_home(account.home) / "metalab" / "postgres" / "data"


def _inside(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def _local_running(record: ServiceRecord) -> bool:
    """Whether a local record's server still runs (its data directory's postmaster)."""
    if record.kind != "local" or record.state != "running":
        return False
    pid = server.postmaster_pid(Path(record.data_dir))
    return pid is not None and pid == record.pid


def _password_file(directory: Path, auth: str, user: str) -> Path | None:
    return ensure_password_file(directory, user) if auth == "scram-sha-256" else None


def _client_host(host: str) -> str:
    """Where clients connect to a server listening on `host`: this host's name for all."""
    return socket.gethostname() if host in ALL_ADDRESSES else host


# ------------------------------------------------------------------------------------ SLURM


def default_slurm_config() -> SlurmConfig:
    """Return the `SlurmConfig` of a PostgreSQL job unless one is given: 1 day, 2 CPUs, 4 GB."""
    return SlurmConfig(time="1-00:00:00", cpus=2, memory="4G")


def start_slurm(
    store: StorePath,
    *,
    config: SlurmConfig | None = None,
    data_dir: StorePath | None = None,
    auth: str = "scram-sha-256",
    user: str = DEFAULT_USER,
    database: str = DEFAULT_DATABASE,
    os_user: str | None = None,
    bin_dir: StorePath | None = None,
    timeout: float = SLURM_TIMEOUT,
) -> StartResult:
    """Run a PostgreSQL server as a SLURM job and wait until it answers; return its record.

    `config` is a `metalab.SlurmConfig` (partition, time, memory, CPUs, account, modules...;
    default `default_slurm_config()`). The job initialises `data_dir` (default
    `{store}/services/postgres/data`, on a filesystem the node sees) if needed, picks a free
    port on its node and writes `{store}/services/postgres/service.json`, which `discover`
    and `status` read. A job already pending or running is waited for and returned. If the
    server is not up within `timeout` seconds, the job is cancelled and
    `ServiceTimeoutError` raised; a job that ends first raises `ServiceError` with its log.
    """
    if auth == "trust":
        raise ValidationError(
            "auth='trust' is not valid with SLURM: the server listens on the cluster network, "
            "so anyone there could log in; use scram-sha-256"
        )
    _check_options(auth=auth, user=user, database=database, host="*", port=None)
    config = config if config is not None else default_slurm_config()
    directory = service_dir(store)
    data = Path(data_dir or directory / "data").absolute()
    ensure_dir(directory, traversable=os.geteuid() == 0 and _inside(data, directory))
    with service_lock(directory):
        current = read_record(directory)
        already = current is not None and slurm_job.job_active(current)
        if current is not None and already:
            job_id = current.job_id
        else:
            _refuse_local_running(current, directory)
            pending = _pending_record(directory, data, auth, user, database, os_user, bin_dir)
            job_id = slurm_job.submit(directory, config, pending)
    record = slurm_job.wait_running(directory, str(job_id), timeout)
    return StartResult(record, directory, already_running=already)


def _refuse_local_running(record: ServiceRecord | None, directory: Path) -> None:
    if record is not None and _local_running(record):
        raise ServiceError(
            f"a local PostgreSQL server is recorded in {directory} and runs: stop it first "
            "(metalab postgres stop --store ...)"
        )


def _pending_record(
    directory: Path,
    data: Path,
    auth: str,
    user: str,
    database: str,
    os_user: str | None,
    bin_dir: StorePath | None,
) -> ServiceRecord:
    """The record of a SLURM service before its job is submitted."""
    password_file = _password_file(directory, auth, user)
    return ServiceRecord(
        kind="slurm",
        state="pending",
        user=user,
        database=database,
        auth=auth,
        data_dir=str(data),
        password_file=None if password_file is None else str(password_file),
        os_user=os_user,
        bin_dir=None if bin_dir is None else os.fspath(bin_dir),
    )


def _refuse_active_job(record: ServiceRecord | None) -> None:
    if record is not None and slurm_job.job_active(record):
        raise ServiceError(
            f"SLURM job {record.job_id} runs this service ({record.state}): stop it first "
            "(metalab postgres stop --store ...)"
        )


# ----------------------------------------------------------------------- stop, status, find


def stop(*, store: StorePath | None = None, timeout: float = LOCAL_TIMEOUT) -> StopResult:
    """Stop the service of `store` (or the local one): `pg_ctl stop -m fast`, or `scancel`.

    Idempotent: without a record, or with a stopped service, nothing happens. The record is
    marked `stopped`. Raises `ServiceError` if the server does not stop within `timeout`.
    """
    directory = service_dir(store)
    record = read_record(directory)
    if record is None:
        return StopResult(None, directory, was_running=False)
    with service_lock(directory):
        record = read_record(directory) or record
        if record.kind == "slurm":
            was_running = slurm_job.cancel(directory, record, timeout)
            return StopResult(read_record(directory), directory, was_running)
        was_running = _stop_local(record, timeout)
        stopped = mark_stopped(directory, record)
    return StopResult(stopped, directory, was_running)


def _stop_local(record: ServiceRecord, timeout: float) -> bool:
    data = Path(record.data_dir)
    if server.postmaster_pid(data) is None:
        return False
    binaries = find_binaries(record.bin_dir if _is_dir(record.bin_dir) else None)
    account = server_account(record.os_user)
    return server.stop(binaries, data, account, timeout=timeout)


def _is_dir(path: str | None) -> bool:
    return path is not None and os.path.isdir(path)


def status(*, store: StorePath | None = None) -> ServiceStatus:
    """Return the state of the service of `store` (or the local one); never starts anything.

    A local service is up when its postmaster runs and answers at its address; a SLURM one
    when its job runs (squeue) and the server answers. No record means state `absent`.
    A server that answers but is not the service's is reported as `other`.
    """
    directory = service_dir(store)
    record = read_record(directory)
    if record is None:
        port = _default_port()
        found = answers(DEFAULT_HOST, port) if port is not None else False
        other = listener(DEFAULT_HOST, port) if found and port is not None else None
        return ServiceStatus(directory, None, up=False, reachable=False, other=other)
    reachable = _answers(record)
    if record.kind == "slurm":
        job_state = slurm_job.job_state(record.job_id)
        up = reachable and record.state == "running" and job_state == "RUNNING"
    else:
        job_state = None
        up = reachable and _local_running(record)
    uptime = seconds_since(record.started_at) if up else None
    other = None
    own_job = (
        record.kind == "slurm" and job_state in slurm_job.JOB_ACTIVE
    )  # its server may still run
    if reachable and not up and not own_job and record.host is not None and record.port:
        other = listener(record.host, record.port)
    return ServiceStatus(directory, record, up, reachable, job_state, uptime, other)


def _default_port() -> int | None:
    """PostgreSQL's port when none is named: `$PGPORT`, else 5432 (None if `$PGPORT` is bad)."""
    text = os.environ.get("PGPORT") or "5432"
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def _answers(record: ServiceRecord) -> bool:
    return record.host is not None and record.port is not None and answers(record.host, record.port)


def discover(store: StorePath, *, inline_password: bool = False) -> str | None:
    """Return the locator of the service recorded in `store`, or `None` if none is running.

    Reads `{store}/services/postgres/service.json` only (cheap enough to call in every
    worker). The password is referenced as `?passfile=<password file>`; with
    `inline_password=True` it is read from that file and put into the locator itself: keep
    such a locator in memory, never in a file or a log.
    """
    record = read_record(service_dir(store))
    if record is None or record.state != "running":
        return None
    return record.locator(inline_password=inline_password)


# ------------------------------------------------------------------------------- validation


def _check_options(*, auth: str, user: str, database: str, host: str, port: int | None) -> None:
    if auth not in AUTH_METHODS:
        raise ValidationError(
            f"auth={auth!r} is not valid: expected one of {', '.join(map(repr, AUTH_METHODS))}"
        )
    check_identifier("user", user)
    check_identifier("database", database)
    if port is not None and (isinstance(port, bool) or not 0 < port < 65536):
        raise ValidationError(f"port={port!r} is not valid: expected a TCP port, 1 to 65535")
    if auth == "trust" and not is_loopback(host):
        raise ValidationError(
            f"auth='trust' with host={host!r} would let anyone who reaches the server in "
            "without a password: use scram-sha-256, or a loopback host such as 127.0.0.1"
        )
