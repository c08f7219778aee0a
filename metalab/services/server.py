"""The PostgreSQL server process: start and stop it, find it, wait until it answers.

A local service's server runs in the background under `pg_ctl`; the SLURM job's runs in the
foreground of the job (`spawn`). Either way it is the postmaster of its data directory,
whose `postmaster.pid` names it while it runs.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from ..errors import PortInUseError, ServiceError
from ..processes import alive
from .account import ServerAccount
from .binaries import PostgresBinaries
from .network import ALL_ADDRESSES
from .programs import check, popen, run

LOG_NAME = "metalab-server.log"


def start(
    binaries: PostgresBinaries,
    data_dir: Path,
    account: ServerAccount,
    *,
    listen: str,
    port: int,
    timeout: float,
) -> int:
    """Start the server in the background with `pg_ctl` and wait until it runs; return its pid.

    Raises `PortInUseError` if the port was taken meanwhile, `ServiceError` with the end of
    the server log otherwise.
    """
    log = data_dir / LOG_NAME
    argv = [binaries("pg_ctl"), "-D", str(data_dir), "-l", str(log), "-w"]
    result = run([*argv, "-t", str(max(1, round(timeout))), "start"], account, timeout=timeout + 30)
    if result.returncode != 0:
        tail = log_tail(log)
        if "Address already in use" in tail:
            raise PortInUseError(listen, port)
        raise ServiceError(f"pg_ctl could not start the server in {data_dir}: {tail}")
    pid = postmaster_pid(data_dir)
    if pid is None:
        raise ServiceError(
            f"the server in {data_dir} stopped right after starting: {log_tail(log)}"
        )
    return pid


def stop(
    binaries: PostgresBinaries, data_dir: Path, account: ServerAccount, *, timeout: float
) -> bool:
    """Stop the server of `data_dir` with `pg_ctl stop -m fast`; return whether one ran.

    Idempotent. Raises `ServiceError` if it does not stop within `timeout` seconds.
    """
    if postmaster_pid(data_dir) is None:
        return False
    argv = [binaries("pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w"]
    result = run([*argv, "-t", str(max(1, round(timeout))), "stop"], account, timeout=timeout + 30)
    if result.returncode != 0 and postmaster_pid(data_dir) is not None:
        check(result, f"pg_ctl stop of the server in {data_dir}")
    return True


def spawn(
    binaries: PostgresBinaries, data_dir: Path, account: ServerAccount
) -> subprocess.Popen[bytes]:
    """Run the server in the foreground, as a child process whose output is this process's.

    Raises `ServiceError` if it cannot be started.
    """
    return popen([binaries("postgres"), "-D", str(data_dir)], account)


def postmaster_pid(data_dir: Path) -> int | None:
    """Return the pid of the server running on `data_dir`, or `None` if none runs."""
    try:
        first = (data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        pid = int(first.strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def interrupt(process: subprocess.Popen[bytes]) -> None:
    """Ask a foreground server for a fast shutdown (SIGINT); nothing if it has ended."""
    if process.poll() is None:
        try:
            process.send_signal(signal.SIGINT)
        except ProcessLookupError:
            pass


def log_tail(path: Path, lines: int = 15) -> str:
    """Return the last `lines` lines of a log file, or a note that there is none."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.strip().splitlines()[-lines:]) or f"(empty log {path})"


def ready(binaries: PostgresBinaries, host: str, port: int, *, user: str, database: str) -> bool:
    """Return whether the server at `host:port` accepts connections (`pg_isready`)."""
    target = "127.0.0.1" if host in ALL_ADDRESSES else host
    argv = [binaries("pg_isready"), "-h", target, "-p", str(port), "-t", "3"]
    return run([*argv, "-U", user, "-d", database, "-q"], timeout=30).returncode == 0


def wait_ready(
    binaries: PostgresBinaries,
    host: str,
    port: int,
    *,
    user: str,
    database: str,
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
) -> bool:
    """Wait until `pg_isready` succeeds; `False` if `process` ends or `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready(binaries, host, port, user=user, database=database):
            return True
        if process is not None and process.poll() is not None:
            return False
        time.sleep(0.25)
    return False
