"""How an array task learns that SLURM is ending it, and why: the task's own signal handling.

SLURM warns a task before its time limit with the signal its script asks for
(`#SBATCH --signal=B:USR1@<seconds>`; SLURM may send it up to a minute earlier than asked),
then ends it with SIGTERM, and SIGKILL `KillWait` seconds later. A cancellation, a requeue
(preemption with `--requeue`, or `scontrol requeue`) and a preemption send SIGTERM too.

`TaskEnding` traps both signals. On the warning it only notes that the time limit is near (a
pack then starts no more runs). On SIGTERM it works out the cause: the time limit when the
warning came or the limit is reached, else what the controller says of the task (its
`Reason=TimeLimit`, its `Restarts` count grown by a requeue, its `JobState`); then, when a run's
operation is running, it raises `RunLost` into it, so the run is recorded failed with that
cause (and its partial metrics) before the task dies; between runs it only notes the cause,
and the task starts no more runs. The cause found is handed to `on_cause` (the task writes
it down, so a post-mortem after a SIGKILL keeps it). The batch shell forwards SIGTERM to the
task, which SLURM may also have signalled itself: a SIGTERM while one is handled is ignored.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Mapping
from types import FrameType

from ... import execute
from ...errors import RunLost
from . import commands
from .causes import ERROR_TYPES

WARNING_SIGNAL = signal.SIGUSR1
"""The signal SLURM sends before the time limit (`--signal=B:USR1@...` in the script)."""

SETTLE_SECONDS = 3.0
"""How long a SIGTERM's cause is asked again while the controller's answer is ambiguous."""
ASK_AGAIN_SECONDS = 0.5
LIMIT_SLACK = 5.0
"""Seconds before the planned end at which a SIGTERM is taken for the time limit itself."""


class TaskEnding:
    """Traps SLURM's warning and SIGTERM in this task; see the module doc.

    `key` is the task (`"<array job id>_<task id>"`), `deadline` the `time.time()` its time
    limit ends at, `restarts` the times SLURM had requeued it when it started. `on_warning`
    is called (from the handler) when the time-limit warning arrives; `on_cause` with the
    cause and whether SLURM requeues the task, once a SIGTERM's cause is found.
    """

    def __init__(
        self,
        key: str,
        deadline: float,
        restarts: int = 0,
        on_warning: Callable[[], None] | None = None,
        on_cause: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.key = key
        self.deadline = deadline
        self.restarts = restarts
        self.on_warning = on_warning
        self.on_cause = on_cause
        self._ending = False
        self.warned = False
        """Whether SLURM warned that the time limit is near."""
        self.cause: str | None = None
        """Why SLURM is ending the task, once it is (one of `causes.CAUSES`)."""
        self.requeued = False
        """Whether SLURM is requeuing the task (it will run again, and run what it left)."""

    def install(self) -> TaskEnding:
        """Trap the warning signal and SIGTERM in this process (main thread only)."""
        signal.signal(WARNING_SIGNAL, self._warning)
        signal.signal(signal.SIGTERM, self._terminate)
        return self

    def _warning(self, signum: int, frame: FrameType | None) -> None:
        self.warned = True
        if self.on_warning is not None:
            self.on_warning()

    def _terminate(self, signum: int, frame: FrameType | None) -> None:
        if self._ending:
            return  # already ending: let the run that is being recorded finish its record
        self._ending = True
        self.cause = self.find_cause()
        print(f"metalab: task {self.key} is being ended by SLURM: {self.cause}", flush=True)
        if self.on_cause is not None:
            self.on_cause(self.cause, self.requeued)
        if execute.operation_running():
            raise RunLost(ERROR_TYPES[self.cause], self.message(), self.cause)

    def message(self) -> str:
        """The message of the record of a run this task's end cut."""
        what = {
            "timeout": "reached its time limit",
            "preempted": "was preempted (requeued)",
            "cancelled": "was cancelled",
            "out_of_memory": "ran out of memory",
            "node_failure": "lost its node",
            "unknown": "was ended",
        }[self.cause or "unknown"]
        return f"SLURM array task {self.key} {what} while this run was running"

    def find_cause(self) -> str:
        """Return why SLURM is ending this task (see the module doc). While the controller's
        answer is ambiguous (the task still completing, its requeue not yet counted) it is
        asked again, for up to `SETTLE_SECONDS`: well within the `KillWait` before SIGKILL."""
        if time.time() >= self.deadline - LIMIT_SLACK:
            return "timeout"
        settle = time.monotonic() + SETTLE_SECONDS
        while True:
            try:
                info = commands.job_info(self.key)
            except commands.SlurmCommandError:
                info = {}
            cause = cause_of_ending(info, self.restarts, self.warned)
            if not _ambiguous(info, cause) or time.monotonic() >= settle:
                self.requeued = requeuing(info, self.restarts)
                return cause
            time.sleep(ASK_AGAIN_SECONDS)


def cause_of_ending(info: Mapping[str, str], restarts: int, warned: bool) -> str:
    """Return the cause of a SIGTERM from what scontrol says of the task at that moment."""
    if info.get("Reason") == "TimeLimit":
        return "timeout"
    if info.get("Restarts", "").isdigit() and int(info["Restarts"]) > restarts:
        return "preempted"
    state = info.get("JobState", "")
    if info.get("Reason") == "Preempted" or state == "PREEMPTED" or state.startswith("REQUEUE"):
        return "preempted"
    if info.get("JobState") in ("CANCELLED", "COMPLETING"):
        return "cancelled"
    return "timeout" if warned else "unknown"


def requeuing(info: Mapping[str, str], restarts: int) -> bool:
    """Whether what scontrol says of a task being ended shows SLURM requeuing it: its
    `Restarts` grown since it started, or a `REQUEUE` state."""
    grown = info.get("Restarts", "").isdigit() and int(info["Restarts"]) > restarts
    return grown or info.get("JobState", "").startswith("REQUEUE")


def _ambiguous(info: Mapping[str, str], cause: str) -> bool:
    """Whether a cause read from the controller may still change: nothing known yet, or a
    task completing whose requeue may not be counted yet (a cancellation says CANCELLED)."""
    return cause == "unknown" or (cause == "cancelled" and info.get("JobState") == "COMPLETING")


def restart_count(environ: Mapping[str, str] | None = None) -> int:
    """Return how many times SLURM requeued this task (`SLURM_RESTART_COUNT`, 0 when unset)."""
    text = (os.environ if environ is None else environ).get("SLURM_RESTART_COUNT", "0")
    return int(text) if text.strip().isdigit() else 0


def task_key(environ: Mapping[str, str] | None = None) -> str | None:
    """Return this array task's key, `"<array job id>_<task id>"`, or None outside an array."""
    env = os.environ if environ is None else environ
    job, task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    return f"{job}_{task}" if job and task else None
