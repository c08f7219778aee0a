"""Who is running a run: claim owners, their liveness, and the heartbeat that keeps claims fresh.

A claim names its owner by host, pid and the pid's start time. On the owner's host a claim is
dead as soon as that process is gone (even if the pid was reused); from another host it is dead
when its heartbeat is older than the lease. Stores decide how a claim is held; this module
decides whether its owner is alive.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from .processes import alive, process_start

LEASE_SECONDS = 120.0
HEARTBEAT_SECONDS = 20.0
OWNERLESS_SECONDS = 5.0
"""A claim that names no owner (cut short by a kill while it was written) is dead once it
was last written this long ago: a live writer finishes a write in far less."""


_HOST = socket.gethostname()
HOST_TAG = _HOST.split(".")[0].replace("-", "_") or "host"
"""This host's name as file names carry it (no `.` or `-`), with `writer_tag`."""


_started: dict[int, int | None] = {}


def owner(session: str = "") -> dict:
    """Describe this process as a claim owner."""
    pid = os.getpid()
    if pid not in _started:  # a forked child has a new pid, so it looks itself up again
        _started[pid] = process_start(pid)
    return {"host": _HOST, "pid": pid, "start": _started[pid], "session": session}


def is_alive(claim_owner: dict, heartbeat_age: float) -> bool:
    """Return whether the owner of a claim (or of a file being written) may still be running:
    the one rule of liveness, with `heartbeat_age` the seconds since it last gave a sign."""
    if claim_owner.get("host") is None:  # ownerless: the writer was killed mid-write
        return heartbeat_age < OWNERLESS_SECONDS
    if claim_owner.get("host") == _HOST:
        pid = claim_owner.get("pid")
        if not isinstance(pid, int):
            return heartbeat_age < LEASE_SECONDS
        start = claim_owner.get("start")
        living = alive(pid, start)
        if living is False:
            return False
        if start is None or living is None:  # a reused pid must also keep beating
            return heartbeat_age < LEASE_SECONDS
        return True
    return heartbeat_age < LEASE_SECONDS


def writer_tag() -> str:
    """This process as the temporary files it writes name it: `<host>-<pid>`."""
    return f"{HOST_TAG}-{os.getpid()}"


def tag_owner(tag: str) -> dict[str, Any] | None:
    """The owner a `writer_tag` names (its start time unknown), or None if `tag` is none."""
    host, dash, pid = tag.rpartition("-")
    if not dash or not pid.isdigit():
        return None
    return {"host": _HOST if host == HOST_TAG else host, "pid": int(pid), "start": None}


class Heartbeat:
    """Refresh every claim this process holds, from one daemon thread per process."""

    def __init__(self) -> None:
        self._held: dict[str, Callable[[], None]] = {}
        self._files: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def hold(self, key: str, touch: Callable[[], None]) -> None:
        """Keep calling `touch` for `key` until `release(key)`."""
        with self._lock:
            self._held[key] = touch
            self._start()

    def watch_files(self, source: Any) -> None:
        """Keep touching the files `source.held_files()` names, for as long as `source`
        lives: one registration for all of its claims, instead of one per claim."""
        with self._lock:
            self._files.add(source)
            self._start()

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._beat, name="metalab-claim-heartbeat", daemon=True
            )
            self._thread.start()

    def release(self, key: str) -> None:
        """Stop refreshing `key`."""
        with self._lock:
            self._held.pop(key, None)

    def _beat(self) -> None:
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            self.beat_once()

    def beat_once(self) -> None:
        """Touch every held claim now (what the heartbeat thread does every beat)."""
        with self._lock:
            touches = list(self._held.values())
            sources = list(self._files)
        for source in sources:
            touches.extend(functools.partial(os.utime, path) for path in source.held_files())
        for touch in touches:
            try:
                touch()
            except OSError:
                pass  # released (renamed or removed) meanwhile


heartbeat = Heartbeat()
