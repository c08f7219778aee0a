"""PostgreSQL as a SLURM job: its script, submitting and cancelling it, and `serve` on the node.

The submitting side writes the state file (`pending`, with its options) and the script,
submits it, and records the job id. On the node, `python -m metalab.services.slurm_job
SERVICE_DIR` runs `serve`: it waits until the state file names its own job, initialises the
data directory if needed, picks a free port, runs `postgres` in the foreground, and once
`pg_isready` answers writes the state file `running` with the node's host name and port. When
the job is cancelled (SIGTERM) or ends, the server gets a fast shutdown and the state file
says `stopped`. Every SLURM command goes through `metalab.executors.slurm.commands`.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from ..errors import MetalabError, ServiceError, ServiceTimeoutError
from ..executors.slurm import commands
from ..executors.slurm.config import SlurmConfig
from ..executors.slurm.script import render_job
from . import server
from .account import ServerAccount, server_account
from .binaries import PostgresBinaries, find_binaries
from .data_dir import configure, prepare_cluster
from .network import free_port
from .passfile import read_password
from .state import (
    ACTIVE_STATES,
    ServiceRecord,
    mark_stopped,
    now,
    read_record,
    update_job_record,
    write_record,
)

ENTRY_MODULE = "metalab.services.slurm_job"
JOB_NAME = "metalab-postgres"
SCRIPT_NAME = "postgres.sbatch"
LOG_PATTERN = "slurm-%j.out"
CLAIM_TIMEOUT = 120.0
READY_TIMEOUT = 120.0
PORT_ATTEMPTS = 3
JOB_ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED")
"""SLURM states of a job that still holds (or will hold) the server."""
_JOB_GRACE = 15.0
_POLL = 0.5


def log_path(service_dir: Path, job_id: str) -> Path:
    """Return the file the job's output goes to."""
    return service_dir / LOG_PATTERN.replace("%j", job_id)


def render_script(config: SlurmConfig, service_dir: Path) -> str:
    """Return the sbatch script that runs the PostgreSQL server of `service_dir` on a node.

    Resources, account, QOS, extra directives and environment setup (modules, conda, setup
    lines) come from `config`, rendered as the array jobs' scripts are; the job runs
    `config.python`. Raises `ValidationError` if a value spans several lines.
    """
    return render_job(
        config,
        job_name=JOB_NAME,
        command=[config.python, "-m", ENTRY_MODULE, str(service_dir)],
        output=str(service_dir / LOG_PATTERN),
    )


# ------------------------------------------------------------------------ the submitting side


def submit(directory: Path, config: SlurmConfig, record: ServiceRecord) -> str:
    """Write the pending `record` and the script, submit the job, record its id; return it.

    Raises `SubmissionError` if sbatch refuses the job; the record then says `failed`. Not
    idempotent: each call submits a job (callers hold the service lock).
    """
    write_record(directory, record)
    script = directory / SCRIPT_NAME
    script.write_text(render_script(config, directory), encoding="utf-8")
    try:
        job_id = commands.sbatch(str(script))
    except commands.SlurmCommandError as exc:
        write_record(directory, record.replace(state="failed", error=str(exc), stopped_at=now()))
        raise
    log_file = str(log_path(directory, job_id))
    write_record(directory, record.replace(job_id=job_id, log_file=log_file))
    return job_id


def wait_running(directory: Path, job_id: str, timeout: float) -> ServiceRecord:
    """Wait until the record of job `job_id` says `running`; return it.

    Raises `ServiceError` with the end of the job's log if the job ends first, and
    `ServiceTimeoutError` after cancelling the job if it is not up within `timeout` seconds.
    """
    started = time.monotonic()
    while True:
        record = read_record(directory)
        if record is None or record.job_id != job_id:
            raise ServiceError(f"the record in {directory} no longer names job {job_id}")
        if record.state == "running":
            return record
        waited = time.monotonic() - started
        state = job_state(job_id)
        ended = state is not None and state not in JOB_ACTIVE
        if (
            record.state in ("failed", "stopped")
            or ended
            or (state is None and waited > _JOB_GRACE)
        ):
            raise ServiceError(_job_failure(record, state))
        if waited > timeout:
            cancel(directory, record)
            raise ServiceTimeoutError(
                f"PostgreSQL job {job_id} was not up within {timeout:g} s (it was "
                f"{state or 'unknown to squeue'}); the job was cancelled. Log: "
                f"{record.log_file}"
            )
        time.sleep(_POLL)


def _job_failure(record: ServiceRecord, state: str | None) -> str:
    reason = record.error or f"the job is {state or 'gone from squeue'}"
    log = server.log_tail(Path(record.log_file)) if record.log_file else "(no log)"
    return (
        f"PostgreSQL job {record.job_id} ended before the server was up: {reason}. "
        f"End of {record.log_file}:\n{log}"
    )


def job_state(job_id: str | None) -> str | None:
    """Return the job's state from squeue (`RUNNING`, `PENDING`, ...), `None` if it is unknown.

    Raises `SlurmCommandError` if squeue fails.
    """
    if job_id is None:
        return None
    task = commands.squeue([job_id]).get(job_id)
    return None if task is None else task.state


def job_active(record: ServiceRecord) -> bool:
    """Return whether `record` is a SLURM service whose job is pending or running."""
    if record.kind != "slurm" or record.state not in ACTIVE_STATES:
        return False
    return job_state(record.job_id) in JOB_ACTIVE


def cancel(directory: Path, record: ServiceRecord, timeout: float = 60.0) -> bool:
    """Cancel the record's job, wait until SLURM lets go of it, mark the record stopped.

    Returns whether the job was active. Idempotent. Raises `ServiceTimeoutError` if SLURM
    still holds the job after `timeout` seconds.
    """
    was_active = job_state(record.job_id) in JOB_ACTIVE
    if record.job_id is not None:
        commands.scancel([record.job_id])
    deadline = time.monotonic() + timeout
    while job_state(record.job_id) in JOB_ACTIVE:
        if time.monotonic() > deadline:
            raise ServiceTimeoutError(
                f"SLURM job {record.job_id} was cancelled but is still "
                f"{job_state(record.job_id)} after {timeout:g} s"
            )
        time.sleep(_POLL)
    mark_stopped(directory, record)
    return was_active


# ----------------------------------------------------------------------------- on the node


class _Shutdown:
    """Turns SIGTERM/SIGINT (scancel, the time limit) into a fast shutdown of the server."""

    def __init__(self) -> None:
        self.requested = False
        self.process: subprocess.Popen[bytes] | None = None

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if self.process is not None:
            server.interrupt(self.process)


def serve(service_dir: Path, job_id: str, *, claim_timeout: float = CLAIM_TIMEOUT) -> int:
    """Run the PostgreSQL server of `service_dir` as SLURM job `job_id`; return an exit code.

    Returns 1 without starting anything if the record does not name this job within
    `claim_timeout` seconds (another start replaced it). A failure to start is written to
    the record (`failed`, with the error) and printed.
    """
    shutdown = _Shutdown()
    shutdown.install()
    record = _claim(service_dir, job_id, claim_timeout)
    if record is None:
        print(f"metalab: the record in {service_dir} does not name job {job_id}; exiting")
        return 1
    try:
        process = _start(service_dir, record, shutdown)
    except MetalabError as exc:
        state = "stopped" if shutdown.requested else "failed"
        update_job_record(service_dir, job_id, state=state, error=str(exc), stopped_at=now())
        print(f"metalab: PostgreSQL did not start: {exc}", file=sys.stderr)
        return 1
    code = process.wait()
    update_job_record(service_dir, job_id, state="stopped", pid=None, stopped_at=now())
    print(f"metalab: PostgreSQL stopped (exit code {code})")
    return 0 if shutdown.requested else code


def _claim(service_dir: Path, job_id: str, timeout: float) -> ServiceRecord | None:
    """Wait until the submitter has recorded this job's id; `None` if another job is named."""
    deadline = time.monotonic() + timeout
    while True:
        record = read_record(service_dir)
        if record is not None and record.job_id == job_id:
            return record
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)


def _start(
    service_dir: Path, record: ServiceRecord, shutdown: _Shutdown
) -> subprocess.Popen[bytes]:
    """Prepare the data directory and run the server until it is ready; return its process."""
    node = socket.gethostname()
    update_job_record(service_dir, record.job_id, state="starting", node=node, started_at=now())
    binaries = find_binaries(record.bin_dir)
    account = server_account(record.os_user)
    _prepare(binaries, account, record)
    for _ in range(PORT_ATTEMPTS):
        port = free_port("*")
        configure(Path(record.data_dir), account, listen="*", port=port, auth=record.auth)
        process = _run_until_ready(binaries, account, record, port, shutdown)
        if process is None:
            continue
        print(f"metalab: PostgreSQL ready on {node}:{port} (pid {process.pid})")
        changes = {"state": "running", "host": node, "port": port, "pid": process.pid}
        if update_job_record(service_dir, record.job_id, **changes) is None:
            server.interrupt(process)
            raise ServiceError(f"the record in {service_dir} names another job now")
        return process
    raise ServiceError(
        f"the server did not answer pg_isready after {PORT_ATTEMPTS} tries (ports taken "
        "meanwhile, or see the server's messages above)"
    )


def _prepare(binaries: PostgresBinaries, account: ServerAccount, record: ServiceRecord) -> None:
    password = read_password(Path(record.password_file)) if record.password_file else None
    initialised = prepare_cluster(
        binaries,
        Path(record.data_dir),
        account,
        listen="*",
        port=free_port("*"),
        auth=record.auth,
        role=record.user,
        database=record.database,
        password=password,
    )
    if initialised:
        print(f"metalab: initialised {record.data_dir} with {binaries.bin_dir}/initdb")


def _run_until_ready(
    binaries: PostgresBinaries,
    account: ServerAccount,
    record: ServiceRecord,
    port: int,
    shutdown: _Shutdown,
) -> subprocess.Popen[bytes] | None:
    """Run the server on `port`; return it once ready, or `None` if it ended first."""
    if shutdown.requested:
        raise ServiceError("cancelled before the server started")
    process = shutdown.process = server.spawn(binaries, Path(record.data_dir), account)
    login = {"user": record.user, "database": record.database}
    if server.wait_ready(
        binaries, "127.0.0.1", port, process=process, timeout=READY_TIMEOUT, **login
    ):
        return process
    server.interrupt(process)
    process.wait()
    if shutdown.requested:
        raise ServiceError("cancelled before the server was ready")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m metalab.services.slurm_job SERVICE_DIR`, inside a SLURM job."""
    parser = argparse.ArgumentParser(prog=f"python -m {ENTRY_MODULE}")
    parser.add_argument("service_dir", type=Path)
    args = parser.parse_args(argv)
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id:
        parser.error("SLURM_JOB_ID is not set: this runs inside the SLURM job metalab submits")
    return serve(args.service_dir, job_id)


if __name__ == "__main__":
    sys.exit(main())
