"""Runs an array task gives back to its sweep without running them, and why.

A task that stops before its last run (its pack would not finish within its time limit, or
SLURM is ending it) writes a note, `<session>/returned/<array job id>_<task id>.json`, naming
the runs it did not start and the reason: `walltime` (it stopped on its own), the cause
SLURM ended it for, `out_of_memory` or `killed` when the task's Python was killed and its
batch shell's post-mortem wrote the note (see `postmortem`), or `requeued` when SLURM is
running it again. The sweep submits such runs again without counting an attempt (they never
ran), except after a cancellation and when the task is requeued (its next life runs them).
The note is written atomically; a requeued task removes its own note when it starts again (it
runs those runs itself).

A task that SLURM is ending also leaves the cause it found, `<session>/ended/<key>.json`, so
the post-mortem of a task killed after that keeps the cause (see `write_ending`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RETURNED = "returned"
"""The directory of the notes, in the sweep's session directory."""

WALLTIME = "walltime"
"""The reason of runs a pack did not start because they would not finish in time."""

REQUEUED = "requeued"
"""The reason of runs a task left when SLURM requeued it: its next life runs them, so they are
not submitted again (and, as any runs a note names, not taken for lost meanwhile)."""

KILLED = "killed"
"""The reason of runs a task did not start because its Python was killed by a signal for a
reason nothing tells (no memory counters, no SIGTERM handled before)."""

GIVEN_BACK = frozenset(
    {WALLTIME, "timeout", "preempted", "node_failure", "out_of_memory", KILLED, REQUEUED}
)
"""Reasons whose unstarted runs are not lost; all but `REQUEUED` are submitted again, without
counting an attempt (a task killed for memory had not started them: they used none)."""

ENDED = "ended"
"""The directory, in the sweep's session directory, of the causes tasks being ended found."""


def note_path(session_dir: Path, key: str) -> Path:
    """Return the note of task `key` (`"123_7"`) of the sweep in `session_dir`."""
    return session_dir / RETURNED / f"{key}.json"


def write_note(session_dir: Path, key: str, runs: Sequence[int], reason: str) -> Path:
    """Write the note that task `key` did not start `runs`, for `reason`; atomic."""
    path = note_path(session_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"runs": list(runs), "reason": reason}))
    os.replace(tmp, path)
    return path


def write_ending(session_dir: Path, key: str, cause: str, requeued: bool) -> Path:
    """Write that SLURM is ending task `key` for `cause` (and whether it requeues it);
    atomic."""
    path = session_dir / ENDED / f"{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"cause": cause, "requeued": requeued}))
    os.replace(tmp, path)
    return path


def read_ending(session_dir: Path, key: str) -> tuple[str, bool] | None:
    """Return (cause, requeued) task `key` found when SLURM was ending it, or None."""
    try:
        document: Any = json.loads((session_dir / ENDED / f"{key}.json").read_text())
        return str(document["cause"]), bool(document["requeued"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_note(session_dir: Path, key: str) -> tuple[list[int], str] | None:
    """Return (runs, reason) of task `key`'s note, or None when it left none (or an
    unreadable one)."""
    try:
        document: Any = json.loads(note_path(session_dir, key).read_text())
        runs = [int(i) for i in document["runs"]]
        return runs, str(document["reason"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_note(session_dir: Path, key: str) -> None:
    """Remove task `key`'s note and the cause it found when ended (a requeued task runs its
    runs itself)."""
    note_path(session_dir, key).unlink(missing_ok=True)
    (session_dir / ENDED / f"{key}.json").unlink(missing_ok=True)
