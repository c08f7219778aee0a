"""Which of the processes following a sweep leads it: resubmits its runs and settles its lost
ones.

A sweep may be followed by several processes at once: the one that submitted it and any
number of `metalab.reconnect` handles. Each reads the same records and the same scheduler
queue, so each would decide to submit the same retry. Only the lead does: the process that
holds an advisory lock (`flock`) on `lead.lock` in the sweep's directory. The others watch:
they read the lead's `submission.json` at every poll, report what is recorded, and wait
for the runs the lead submits again. The lock goes with its process, however it ends, and
the next follower to poll takes the lead, from the record the last lead left.

Where the filesystem has no locks, each process leads (as before there was a lead).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - no flock here: every process leads
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "lead.lock"
_HELD = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES)


class Lead:
    """This process's claim to lead the sweep whose directory is `directory`."""

    def __init__(self, directory: Path) -> None:
        self._path = Path(directory) / LOCK_NAME
        self._fd: int | None = None

    def held(self) -> bool:
        """Whether this process leads the sweep: it holds the lock, or takes it now (its
        last holder ended), or locks are not to be had here."""
        if self._fd is not None or fcntl is None:
            return True
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            return True  # a directory this user may not write: nobody else leads through it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            return exc.errno not in _HELD  # no locks on this filesystem: lead
        self._fd = fd
        return True

    def release(self) -> None:
        """Let another follower lead; idempotent."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
