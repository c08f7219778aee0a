"""Where and with what a run was made: versions, host, process, worker, and git state.

All git calls live here. Results are cached per process: a sweep asks once, not once per run.
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
import threading
from collections.abc import Callable

from ._version import __version__


@functools.cache
def environment() -> dict:
    """Return the versions and host of this process (cached)."""

    try:
        import numpy

        numpy_version = numpy.__version__
    except ImportError:  # pragma: no cover - numpy is a core dependency
        numpy_version = None
    return {
        "python": platform.python_version(),
        "metalab": __version__,
        "numpy": numpy_version,
        "platform": platform.platform(),
        "host": socket.gethostname(),
    }


def git_state(path: str) -> dict | None:
    """Return {"commit", "dirty", "root"} of the git work tree holding `path`, or None.

    Asked once per sweep (never cached across sweeps: a notebook commits between them)."""
    directory = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    try:
        root, commit = _git(directory, "rev-parse", "--show-toplevel", "HEAD").splitlines()
        status = _git(directory, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return {"commit": commit, "dirty": bool(status), "root": root}


def git_state_soon(path: str) -> Callable[[], dict | None]:
    """Start `git_state(path)` in a thread; return the function that waits for its answer.

    A sweep asks git while it plans its runs: `git status` in a large work tree takes a
    while, and runs nothing that planning needs."""
    answer: list[dict | None] = []

    def ask() -> None:
        try:
            answer.append(git_state(path))
        finally:
            done.set()

    done = threading.Event()
    threading.Thread(target=ask, name="metalab-git", daemon=True).start()

    def wait() -> dict | None:
        done.wait()
        return answer[0] if answer else None

    return wait


def _git(directory: str, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", directory, *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return done.stdout.strip()


def source_file(func) -> str | None:
    """Return the file an operation's function was defined in, when there is one."""
    code = getattr(func, "__code__", None)
    filename = getattr(code, "co_filename", None)
    if not filename or filename.startswith("<") or not os.path.exists(filename):
        return None
    return filename


def worker_name() -> str:
    """Name the worker this code runs in: a Dask worker, a SLURM task, or the local process."""
    if "distributed" in sys.modules:
        try:
            from distributed import get_worker

            worker = get_worker()
            return str(worker.name if worker.name is not None else worker.address)
        except ValueError:
            pass
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    if job:
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        return f"slurm-{job}" + (f"_{task}" if task else "")
    return f"{environment()['host']}:{os.getpid()}"


def slurm_ids() -> dict | None:
    """Return the SLURM job, array task and node of this process, when under SLURM."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    return {
        "job_id": job,
        "array_job_id": os.environ.get("SLURM_ARRAY_JOB_ID"),
        "array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID"),
        "node": os.environ.get("SLURMD_NODENAME"),
        "restart_count": os.environ.get("SLURM_RESTART_COUNT"),
    }
