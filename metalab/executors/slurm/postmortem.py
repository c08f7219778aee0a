"""What an array task's batch shell does when the task's Python died by a signal: say why.

The batch script runs the task's Python as its child (see `script`). When that child dies by a
signal (a SIGKILL from the kernel's OOM killer, most often), nothing of it is left to record
why, and a scheduler that forgot the job (no accounting, past `MinJobAge`) cannot tell either.
The shell then runs `python -m metalab.executors.slurm.entry <the task's arguments>
--post-mortem <status> --child <pid>`, which:

1. finds the cause (`cause_of_death`): `out_of_memory` when the child was SIGKILLed and the
   job's cgroup counted an OOM kill (`memory`); else the cause the task found itself when SLURM
   sent it SIGTERM before (`returns.read_ending`); else `unknown`;
2. records the run the child was running (the one its claim names) failed with that cause and
   its error type (`causes.ERROR_TYPES`), as the task would have: the sweep then retries it
   within that cause's retries, with more memory after `out_of_memory`;
3. gives back the runs it had not started, in the task's note (`returns`), with the cause as
   the reason (`killed` for an unknown one, `requeued` when SLURM requeues the task): the sweep
   submits them again without counting an attempt.

Runs with their record of this sweep are left alone; so is a run another live process holds.
A child SLURM's SIGTERM killed before it trapped it (status 143, no cause found) ran no run:
the scheduler, ending the job right then, tells the cause of its runs as before.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ... import claims, execute, provenance
from ...record import Status
from ...recording import build_record, next_attempt, previous_record, same_session
from . import memory
from .causes import ERROR_TYPES
from .returns import GIVEN_BACK, KILLED, REQUEUED, read_ending, write_note

KILLED_STATUS = 128 + signal.SIGKILL
"""The exit status the shell sees of a child killed by SIGKILL (137)."""

TERMINATED_STATUS = 128 + signal.SIGTERM
"""The status of a child SLURM's SIGTERM killed before it trapped it: no run was running, and
the scheduler, ending the job right then, tells the cause of the rest."""


def cause_of_death(
    status: int, ending: tuple[str, bool] | None, oom_killed: Callable[[], bool]
) -> str:
    """Return the cause of a task whose Python ended with shell status `status` (128 + the
    signal that killed it); `ending` is the cause it found itself, if SLURM was ending it;
    `oom_killed` reads the job's memory counters (asked only after a SIGKILL)."""
    if status == KILLED_STATUS and oom_killed():
        return "out_of_memory"
    if ending is not None:
        return ending[0]
    return "unknown"


def note_reason(cause: str, ending: tuple[str, bool] | None) -> str | None:
    """Return the reason the unstarted runs of a killed task go back with, or None when they
    are not given back (the task was cancelled)."""
    if ending is not None and ending[1]:
        return REQUEUED  # SLURM runs the task again: its next life runs them
    if cause == "unknown":
        return KILLED
    return cause if cause in GIVEN_BACK else None


def post_mortem(
    job: Any,
    indices: range,
    key: str,
    session_dir: Path,
    status: int,
    child: int,
    oom_killed: Callable[[], bool] = memory.oom_killed,
) -> dict[str, Any]:
    """Record the run the dead child `child` of task `key` was running and give back the runs
    it had not started (see the module doc); return what was done: `cause`, `recorded` (run
    indices), `returned` and `reason`. Idempotent: runs already recorded are left alone."""
    ending = read_ending(session_dir, key)
    if status == TERMINATED_STATUS and ending is None:
        return {"cause": None, "recorded": [], "returned": [], "reason": None}
    cause = cause_of_death(status, ending, oom_killed)
    store = execute.open_store(job.store)
    experiment = execute.load_experiment(store, job.experiment_key)
    owner = claims.owner(job.session)
    running, unstarted = [], []
    for index in indices:
        run_id = experiment.run_spec(index).run_id
        if _ended(previous_record(store, run_id), job):
            continue
        holder = store.claim_owner(run_id)
        if holder is None:
            unstarted.append(index)
        elif holder.get("host") == owner["host"] and holder.get("pid") == child:
            running.append(index)
    message = _message(key, cause, status)
    recorded = [
        index
        for index in running
        if _record_killed(experiment, store, index, job, owner, cause, message)
    ]
    reason = note_reason(cause, ending)
    if unstarted and reason is not None:
        write_note(session_dir, key, unstarted, reason)
    return {"cause": cause, "recorded": recorded, "returned": unstarted, "reason": reason}


def _ended(previous: dict[str, Any] | None, job: Any) -> bool:
    """Whether a run's record means this task has nothing to say of it: completed, or
    written in this sweep for this attempt (or a later one)."""
    if previous is None:
        return False
    if previous["status"] == Status.COMPLETED:
        return True
    attempt = int(previous.get("attempt", 1))
    return same_session(previous, job.session) and attempt >= job.options.attempt


def _record_killed(
    experiment: Any,
    store: Any,
    index: int,
    job: Any,
    owner: dict[str, Any],
    cause: str,
    message: str,
) -> bool:
    """Record run `index` failed with `cause`, under its claim (taken over from the dead
    child); return whether this wrote its record."""
    spec = experiment.run_spec(index)
    if not store.claim(spec.run_id, owner):
        return False  # a live process holds it: its record is theirs to write
    try:
        previous = previous_record(store, spec.run_id)
        if _ended(previous, job):
            return False
        error = {"type": ERROR_TYPES[cause], "message": message, "traceback": "", "cause": cause}
        worker = provenance.worker_name()
        record = build_record(experiment, spec, job, worker, Status.FAILED, None, error)
        record["attempt"] = next_attempt(previous)
        store.put_record(record)
        store.flush_journal()
        return True
    finally:
        store.release(spec.run_id)


def _message(key: str, cause: str, status: int) -> str:
    """The message of the record of the run a killed task was running."""
    try:
        name = signal.Signals(status - 128).name
    except ValueError:
        name = f"exit status {status}"
    what = {
        "out_of_memory": "ran out of memory (its cgroup counted an OOM kill)",
        "timeout": "reached its time limit",
        "preempted": "was preempted (requeued)",
        "cancelled": "was cancelled",
        "node_failure": "lost its node",
    }.get(cause, "was killed")
    return f"SLURM array task {key} {what} while this run was running: its Python died of {name}"
