"""The working directory runs see: the driver's, as of its `metalab.run()` call.

Worker processes on the driver's machine (a local Dask cluster kept between sweeps, a user's
own `LocalCluster`, array tasks on a one-node SLURM cluster) were started wherever the driver
was then. Each task therefore enters its sweep's directory before its first run. A process has
one current directory, so tasks of sweeps from different directories take turns in it (in the
order they arrived); tasks of one directory run side by side. Runs in the driver's own process
(inline, threads) see the driver's current directory as it is: changing it belongs to the
driver. Workers on other machines keep their own (give them absolute paths).
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

from .errors import ExecutorError


@dataclass(frozen=True)
class Origin:
    """Where a sweep was submitted from: the driver's directory, machine and process."""

    path: str | None
    """The driver's working directory (None when it had none: it was removed)."""
    machine: str
    pid: int


def origin() -> Origin:
    """Return this process's current directory, machine and process id."""
    try:
        path: str | None = os.getcwd()
    except FileNotFoundError:
        path = None
    return Origin(path, machine_id(), os.getpid())


@functools.cache
def machine_id() -> str:
    """Name this machine (host name and boot id): workers with the same one are local."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


class ProcessDirectory:
    """The current directory of this process, shared by the tasks that run in its threads.

    `holding(path)` enters `path` and keeps it until the block ends. A task asking for another
    directory waits until the tasks holding the current one are done; requests are served in
    the order they came, and consecutive requests for one directory are served together.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._current: str | None = None
        self._holders = 0
        self._queue: deque[tuple[object, str]] = deque()

    @contextlib.contextmanager
    def holding(self, path: str) -> Iterator[None]:
        """Enter `path` for the duration of the block; raise `ExecutorError` if it cannot be."""
        self._acquire(path)
        try:
            yield
        finally:
            self._release()

    def _acquire(self, path: str) -> None:
        ticket = object()
        with self._changed:
            self._queue.append((ticket, path))
            try:
                while not self._my_turn(ticket, path):
                    self._changed.wait()
                if self._holders == 0:
                    _enter(path)  # also when unchanged: an operation may have moved it
                    self._current = path
                self._holders += 1
            finally:
                self._queue.remove((ticket, path))
                self._changed.notify_all()

    def _my_turn(self, ticket: object, path: str) -> bool:
        first, _ = self._queue[0]
        return first is ticket and (self._holders == 0 or self._current == path)

    def _release(self) -> None:
        with self._changed:
            self._holders -= 1
            self._changed.notify_all()


def _enter(path: str) -> None:
    try:
        os.chdir(path)
    except OSError as exc:
        raise ExecutorError(
            f"cannot enter the sweep's working directory {path!r} on this worker "
            f"({type(exc).__name__}: {exc.strerror or exc}); runs would read files relative "
            "to another directory"
        ) from exc


_process = ProcessDirectory()


def entered(where: Origin | None) -> AbstractContextManager[None]:
    """Enter the sweep's directory for a task in a local worker process; elsewhere, a no-op.

    Nothing changes in the driver's own process (its directory is the driver's to change),
    on another machine (the path may not exist there), or when the driver had no directory.
    """
    if (
        where is None
        or where.path is None
        or where.pid == os.getpid()
        or where.machine != machine_id()
    ):
        return contextlib.nullcontext()
    return _process.holding(where.path)
