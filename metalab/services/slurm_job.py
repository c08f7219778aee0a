"""PostgreSQL as a SLURM job: the sbatch script, and `serve`, the code that runs on the node.

The submitting side writes the service record (`pending`, with its options) and the script,
submits it, and records the job id. On the node, `python -m metalab.services.slurm_job
SERVICE_DIR` runs `serve`: it waits until the record names its own job, initialises the data
directory if needed, picks a free port, runs `postgres` in the foreground, and once
`pg_isready` answers writes the record `running` with the node's host name and port. When the
job is cancelled (SIGTERM) or ends, the server gets a fast shutdown and the record says
`stopped`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from ..errors import MetalabError
from ..executors.slurm.config import SlurmConfig, format_memory
from ..executors.slurm.script import setup_lines
from . import server
from .errors import ServiceError
from .record import ServiceRecord, now, read_password, read_record, write_record

ENTRY_MODULE = "metalab.services.slurm_job"
JOB_NAME = "metalab-postgres"
SCRIPT_NAME = "postgres.sbatch"
LOG_PATTERN = "slurm-%j.out"
CLAIM_TIMEOUT = 120.0
READY_TIMEOUT = 120.0
PORT_ATTEMPTS = 3


def log_path(service_dir: Path, job_id: str) -> Path:
    """The file the job's output goes to."""
    return service_dir / LOG_PATTERN.replace("%j", job_id)


def render_script(config: SlurmConfig, service_dir: Path) -> str:
    """Return the sbatch script that runs the PostgreSQL server of `service_dir` on a node.

    Resources, account, QOS, extra directives and environment setup (modules, conda, setup
    lines) come from `config`, and the job runs `config.python`. Values are shell-quoted.
    """
    options = [
        ("--job-name", JOB_NAME),
        ("--partition", config.partition_option),
        ("--time", config.time),
        ("--ntasks", "1"),
        ("--cpus-per-task", str(config.cpus)),
        ("--mem", format_memory(config.memory_mb)),
        ("--account", config.account),
        ("--qos", config.qos),
        ("--output", str(service_dir / LOG_PATTERN)),
    ]
    directives = [f"{name}={shlex.quote(value)}" for name, value in options if value is not None]
    command = [config.python, "-m", ENTRY_MODULE, str(service_dir)]
    lines = [
        "#!/bin/bash",
        *(f"#SBATCH {option}" for option in [*directives, *config.extra_directives]),
        "",
        "set -e",
        "export PYTHONUNBUFFERED=1",
        *setup_lines(config),
        "exec " + shlex.join(command),
        "",
    ]
    return "\n".join(lines)


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
        _update(service_dir, job_id, state=state, error=str(exc), stopped_at=now())
        print(f"metalab: PostgreSQL did not start: {exc}", file=sys.stderr)
        return 1
    code = process.wait()
    _update(service_dir, job_id, state="stopped", pid=None, stopped_at=now())
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
    _update(service_dir, record.job_id, state="starting", node=node, started_at=now())
    binaries = server.find_binaries(record.bin_dir)
    account = server.server_account(record.os_user)
    _prepare(binaries, account, record)
    for _ in range(PORT_ATTEMPTS):
        port = server.free_port("*")
        server.configure(Path(record.data_dir), account, listen="*", port=port, auth=record.auth)
        process = _run_until_ready(binaries, account, record, port, shutdown)
        if process is None:
            continue
        print(f"metalab: PostgreSQL ready on {node}:{port} (pid {process.pid})")
        changes = {"state": "running", "host": node, "port": port, "pid": process.pid}
        if _update(service_dir, record.job_id, **changes) is None:
            server.interrupt(process)
            raise ServiceError(f"the record in {service_dir} names another job now")
        return process
    raise ServiceError(
        f"the server did not answer pg_isready after {PORT_ATTEMPTS} tries (ports taken "
        "meanwhile, or see the server's messages above)"
    )


def _prepare(
    binaries: server.PostgresBinaries, account: server.ServerAccount, record: ServiceRecord
) -> None:
    password = read_password(Path(record.password_file)) if record.password_file else None
    initialised = server.prepare_cluster(
        binaries,
        Path(record.data_dir),
        account,
        listen="*",
        port=server.free_port("*"),
        auth=record.auth,
        role=record.user,
        database=record.database,
        password=password,
    )
    if initialised:
        print(f"metalab: initialised {record.data_dir} with {binaries.bin_dir}/initdb")


def _run_until_ready(
    binaries: server.PostgresBinaries,
    account: server.ServerAccount,
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


def _update(service_dir: Path, job_id: str | None, **changes: object) -> ServiceRecord | None:
    """Apply `changes` to the record on disk if it still names `job_id`; return it, or `None`."""
    current = read_record(service_dir)
    if current is None or current.job_id != job_id:
        return None
    updated = current.replace(**changes)
    write_record(service_dir, updated)
    return updated


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
