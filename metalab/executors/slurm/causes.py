"""Why a run was lost to SLURM, as data: one of `CAUSES`, with the error type it is recorded with.

A cause comes from the best source there is, in this order: the array task itself (it traps
the signals SLURM sends before it ends a task, see `ending`, and records the running run's
cause), the post-mortem its batch shell runs when the task's Python died by a signal (its
exit status and the job's cgroup memory counters, see `postmortem`), the scheduler's final
state of the task (`squeue` while it remembers the task, `sacct` where accounting is on), and
the note the task left of the runs it did not start.
"""

from __future__ import annotations

from ...errors import RunLost

CAUSES = RunLost.CAUSES
"""Every cause a run lost to SLURM can carry."""

ERROR_TYPES = {
    "timeout": "SlurmTimeout",
    "out_of_memory": "SlurmOutOfMemory",
    "preempted": "SlurmPreempted",
    "node_failure": "SlurmNodeFail",
    "cancelled": "SlurmCancelled",
    "unknown": "SlurmTaskFailed",
}
"""The error type a run lost for each cause is recorded with."""

STATE_CAUSES = {
    "TIMEOUT": "timeout",
    "DEADLINE": "timeout",
    "OUT_OF_MEMORY": "out_of_memory",
    "PREEMPTED": "preempted",
    "NODE_FAIL": "node_failure",
    "BOOT_FAIL": "node_failure",
    "CANCELLED": "cancelled",
    "FAILED": "unknown",
}
"""The cause of each final task state that ends its runs without their records."""

STATE_ERROR_TYPES = {
    "TIMEOUT": "SlurmTimeout",
    "DEADLINE": "SlurmDeadline",
    "OUT_OF_MEMORY": "SlurmOutOfMemory",
    "NODE_FAIL": "SlurmNodeFail",
    "BOOT_FAIL": "SlurmBootFail",
    "CANCELLED": "SlurmCancelled",
    "PREEMPTED": "SlurmPreempted",
    "FAILED": "SlurmTaskFailed",
}
"""The error type of each such state (as records carried before causes existed)."""


def cause_of_state(state: str) -> str:
    """Return the cause of a task that ended in `state` (as squeue or sacct report it);
    `unknown` for a task that merely failed (its exit code says no more on a cluster that
    does not confine memory)."""
    return STATE_CAUSES.get(state, "unknown")


def cause_of_record(record: dict | None) -> str | None:
    """Return the cause a run's record carries, or None (it completed, or its operation
    raised)."""
    error = (record or {}).get("error") or {}
    cause = error.get("cause")
    return cause if cause in CAUSES else None
