"""Walltime-aware packs: a task that runs several runs starts one only if it can finish.

A task knows when its time limit ends (its start, noted by its script, plus its time limit).
Before each run it estimates the run's duration: the longest run it finished so far, or the
run's own earlier attempt in the store, whichever is longer. It starts the run only if that
estimate still ends before the limit minus a margin. The first run of a task starts unless
the task is already within the margin of its limit: a run longer than the whole limit is then
cut by it, recorded `timeout`, and retried with more time. The runs a task does not start go
back to the sweep (see `returns`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

START_VARIABLE = "METALAB_TASK_START"
"""Set by the array script to the task's start (`date +%s`), before the environment setup."""

MIN_MARGIN = 10.0
"""Fewest seconds a pack keeps free before its time limit (the task must still write its
records and its note; SLURM's own timing is coarse)."""

MARGIN_FRACTION = 0.05
"""Share of the time limit a pack keeps free, when more than `MIN_MARGIN`."""


def task_start(environ: Mapping[str, str] | None = None, now: float | None = None) -> float:
    """Return when this task started (`METALAB_TASK_START`), else `now`."""
    text = (os.environ if environ is None else environ).get(START_VARIABLE, "")
    try:
        return float(text)
    except ValueError:
        return time.time() if now is None else now


def margin(time_limit: float) -> float:
    """Seconds a pack keeps free before a time limit of `time_limit` seconds."""
    return max(MIN_MARGIN, MARGIN_FRACTION * time_limit)


@dataclass
class Pack:
    """When a task's time ends, and how long its runs take."""

    deadline: float
    """`time.time()` at which the task's time limit ends."""
    margin: float
    durations: list[float] = field(default_factory=list)
    """Seconds each run this task finished took."""

    @classmethod
    def of_task(cls, start: float, time_limit: float) -> Pack:
        """The pack of a task started at `start` with `time_limit` seconds (0: unknown)."""
        if time_limit <= 0:
            return cls(float("inf"), 0.0)
        return cls(start + time_limit, margin(time_limit))

    def estimate(self, earlier: float | None = None) -> float | None:
        """Seconds the next run should take: the longest run finished here or its own
        `earlier` attempt; None when nothing is known."""
        known = [*self.durations, *([earlier] if earlier else [])]
        return max(known) if known else None

    def fits(self, earlier: float | None = None, now: float | None = None) -> bool:
        """Whether the next run should start: it is the task's first and the deadline less
        the margin is still ahead, or its estimate ends before the deadline less the margin."""
        now = time.time() if now is None else now
        if not self.durations:
            return now < self.deadline - self.margin or self.deadline == float("inf")
        estimate = self.estimate(earlier) or 0.0
        return now + estimate <= self.deadline - self.margin

    def finished(self, seconds: float) -> None:
        """Note that a run took `seconds`."""
        self.durations.append(seconds)
