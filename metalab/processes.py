"""Whether a process is alive: the one rule, for claim owners, writers and servers alike.

A process is named by its pid and, where `/proc` tells it, its start time: a pid that was
reused by a newer process is not the process that was named. A zombie (exited, not yet
reaped by its parent) is not alive.
"""

from __future__ import annotations

import os

EXITED = -1
"""`process_start` of a process that has exited but was not reaped yet (a zombie)."""


def process_start(pid: int) -> int | None:
    """Return the start time of process `pid` in clock ticks since boot, `EXITED` for a
    zombie, or None where `/proc` cannot tell."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: fields start after the last ')'
    fields = data[data.rfind(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):  # exited; its parent has not reaped it (yet)
        return EXITED
    return int(fields[19])


def alive(pid: int, start: int | None = None) -> bool | None:
    """Return whether process `pid` (started at `start`, when known) runs on this host.

    True or False when that is certain; None when the pid exists but, without `/proc`,
    nothing tells whether it is still the process that was named (`start` given)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    now = process_start(pid)
    if now == EXITED:
        return False
    if start is None:
        return True
    if now is None:
        return None
    return now == start
