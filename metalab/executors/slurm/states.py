"""What the scheduler says of a sweep's array tasks: queued, running, or ended how.

Only tasks whose runs have no record yet are asked about, in one batched `squeue` (and one
`sacct`, where accounting exists, for tasks the controller already forgot). A task the
scheduler does not know (yet, or any more) is neither active nor lost: silence alone never
ends a run.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from . import commands
from .causes import STATE_ERROR_TYPES, cause_of_state
from .returns import GIVEN_BACK, read_note
from .submission import SUBMITTED, Submission

ACTIVE_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
    }
)
"""States of a task that may still write its runs' records."""

LOST_STATES = STATE_ERROR_TYPES
"""Final task states that end its unrecorded runs, and the error type they are recorded with."""


class Lost(NamedTuple):
    """Why a run will not write its record: the error type and message to record it with,
    and its cause (one of `causes.CAUSES`)."""

    kind: str
    message: str
    cause: str = "unknown"


@dataclass
class Census:
    """The scheduler's view of the tasks of a sweep's unrecorded runs."""

    lost: dict[int, Lost] = field(default_factory=dict)
    """Runs whose task ended before they wrote their record."""
    active: bool = False
    """Whether any of the tasks is queued or running."""
    queued: int = 0
    """Unrecorded runs of tasks still queued."""
    started: int = 0
    """Unrecorded runs of tasks that started."""
    returned: dict[int, str] = field(default_factory=dict)
    """Runs an ended task gave back without starting them (`returns`), with the reason."""


def base_state(reported: str) -> str:
    """Return a task's state as squeue or sacct report it, without details (`CANCELLED by
    0`, `RUNNING+`)."""
    return reported.split(" ")[0].rstrip("+")


class Listing:
    """What squeue says of every job of a sweep, asked once per poll: one call for all its
    jobs, made when first needed. Jobs submitted after it (`asked` does not hold them) were
    just queued."""

    def __init__(self, submission: Submission) -> None:
        self.submission = submission
        self.asked: set[str] = set()
        self._tasks: dict[str, commands.TaskState] | None = None

    def tasks(self) -> dict[str, commands.TaskState]:
        """Return task key -> state of the sweep's jobs the controller knows."""
        if self._tasks is None:
            ids = self.submission.job_ids()
            self._tasks = commands.squeue(ids)
            self.asked = set(ids)
        return self._tasks


def census(
    submission: Submission,
    waiting: Collection[int],
    logs: Path,
    listing: Listing | None = None,
) -> Census:
    """Ask the scheduler about the tasks of the `waiting` runs of `submission` (one squeue,
    and one sacct for tasks squeue no longer lists), and read the notes of ended tasks that
    gave runs back. `logs` is where their logs are, which the message of a lost run names;
    `listing`, the poll's squeue of the sweep (one is made when not given). Raises
    `SlurmCommandError` when squeue fails."""
    tasks = submission.tasks_of(waiting)
    if not tasks:
        return Census()
    states = _states(tasks, listing)
    found = Census()
    for (job, task), runs in tasks.items():
        state = states.get(f"{job}_{task}")
        if state is not None and base_state(state) in ACTIVE_STATES:
            pass  # a requeued task runs the runs it gave back itself
        elif (note := read_note(submission.path.parent, f"{job}_{task}")) is not None:
            given, reason = note
            back = set(given) & set(runs) if reason in GIVEN_BACK else set()
            found.returned.update((index, reason) for index in sorted(back))
            runs = [index for index in runs if index not in back]
            if state is None or not runs:
                continue
        if state is None:
            continue  # the scheduler does not know it (yet, or any more): wait
        state = base_state(state)
        if state in ACTIVE_STATES:
            found.active = True
            if state == "PENDING":
                found.queued += len(runs)
            else:
                found.started += len(runs)
        elif state in LOST_STATES:
            message = (
                f"SLURM array task {job}_{task} ended {state} before this run wrote its "
                f"record (log: {logs / f'{job}_{task}.err'})"
            )
            for index in runs:
                found.lost[index] = Lost(LOST_STATES[state], message, cause_of_state(state))
    return found


def _states(tasks: Iterable[tuple[str, int]], listing: Listing | None) -> dict[str, str]:
    """Return the reported state of each task the scheduler knows, by task key: from the
    poll's squeue, then sacct for tasks it no longer lists (they ended without their runs'
    records)."""
    keys = list(tasks)
    listed = listing.tasks() if listing else commands.squeue(sorted({j for j, _ in keys}))
    states = {k: s.state for k, s in listed.items()}
    asked = listing.asked if listing else {job for job, _ in keys}
    unknown = [
        (job, task)
        for job, task in keys
        if f"{job}_{task}" not in states and job in asked  # else submitted since: queued
    ]
    if unknown:
        accounting = commands.sacct(sorted({job for job, _ in unknown}))
        for job, task in unknown:
            record = accounting.records.get(f"{job}_{task}")
            if record is not None:
                states[f"{job}_{task}"] = record.state
    return states


def active_tails(submission: Submission, listing: Listing | None = None) -> list[int]:
    """Return the positions of the submission's last jobs (no job waits for them) that the
    scheduler still lists as queued or running: waiting for them waits for every job
    before them. Jobs that ended are left out (sbatch refuses a dependency on a job it
    forgot)."""
    jobs = submission.jobs
    followed = {e["after"] for e in jobs if e["after"] is not None}
    followed.update(p for e in jobs for p in e.get("waits_for", ()))
    tails = {
        job_id: e["position"]
        for e in jobs
        if (job_id := e.get("job_id")) and e.get("state") == SUBMITTED
        if e["position"] not in followed
    }
    if not tails:
        return []
    listed = listing.tasks() if listing else commands.squeue(sorted(tails))
    active = {
        key.split("_")[0] for key, task in listed.items() if base_state(task.state) in ACTIVE_STATES
    }
    if listing is not None:  # jobs submitted since the poll's squeue are queued
        active.update(job_id for job_id in tails if job_id not in listing.asked)
    return sorted(position for job_id, position in tails.items() if job_id in active)


def running(jobs: Mapping[str, Collection[str]]) -> dict[str, str]:
    """Return job id -> state of the `jobs` with a task among theirs queued or running (not
    just ending), in one squeue call. A task squeue reports unexpanded (`700_[1-2]`)
    counts as one of theirs."""
    found: dict[str, str] = {}
    for key, task in commands.squeue(sorted(jobs)).items():
        state = base_state(task.state)
        job, _, task_id = key.partition("_")
        if state not in ACTIVE_STATES or state == "COMPLETING" or job not in jobs:
            continue
        if task_id.isdigit() and task_id not in jobs[job]:
            continue  # its runs are recorded: the task is only ending
        found.setdefault(job, state)
    return found
