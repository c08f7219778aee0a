"""`Sink`: where executors report what happened to a sweep's runs (see `contracts.Sink`).

The sink keeps one byte per run index (whether it has an outcome, is held by a live owner
elsewhere, or waits to be submitted again) and counts by state, never the outcomes
themselves: the records are in the store, where `RunHandle.result()` reads them. Only the
records of the first failed runs are kept, so that the failure summary needs no store read
while few runs failed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from . import claims
from .outcome import Outcome
from .recording import record_lost
from .sweep import Sweep

MAX_RESUBMITS = 3
"""How often a run whose worker died before it started is submitted again."""
KEPT_FAILURES = 1000
"""Failed runs whose records the sink keeps; past this many the failure summary reads the
failed runs' records from the store."""

# the state of one run index, one byte each
_WAITING = 0
"""No outcome yet (not started, or running)."""
_BUSY = 1
"""A live owner elsewhere holds the run (another driver, or a run still stopping)."""
_RETRY = 2
"""To submit again: its worker died before it started, or its owner left no record."""
_FINAL = {"completed": 3, "failed": 4, "cancelled": 5, "interrupted": 6, "skipped": 7}
"""An outcome was reported, by its state."""
_OTHER = 8
"""An outcome of a state not listed above."""
_FAILED = (_FINAL["failed"], _FINAL["interrupted"])
"""The states whose records the failure summary reads."""


@dataclass(frozen=True)
class SchedulerQueue:
    """The batch jobs of a sweep and its unrecorded runs by the state of their tasks."""

    jobs: tuple[str, ...]
    queued: int
    """Runs whose tasks wait in the scheduler's queue."""
    started: int
    """Runs whose tasks the scheduler started (they may still wait inside a packed task)."""


class Sink:
    """Collect the outcomes of a sweep's runs from its executor; thread-safe."""

    def __init__(self, sweep: Sweep):
        self.sweep = sweep
        self.lock = threading.Lock()
        self.counts = {"completed": 0, "failed": 0, "cancelled": 0, "skipped": 0}
        self._states = bytearray(sweep.total)
        """One of `_WAITING`, `_BUSY`, `_RETRY` or a final state per run index."""
        self._reported = 0
        self._resubmits = bytearray(sweep.total)
        self._failures: dict[int, Outcome] | None = {}
        """The failed and interrupted outcomes that carry a record, by index, while there are
        at most `KEPT_FAILURES`; None once there were more."""
        store = sweep.store
        self._kept: dict[int, Outcome] | None = (
            None if store is not None and store.capabilities.columnar else {}
        )
        """The outcomes that carry a record, by index, when the store cannot give the sweep's
        runs back as columns (a fallback store whose primary may be down when the sweep
        ends, a user's store; none at all, for the finished handle of a script re-run while
        a worker process starts): `result()` is made of them. None for the other stores."""
        self.dashboard_link: str | None = None
        """The page showing the sweep live (metalab's page of the Dask dashboard, or the
        dashboard itself when the page could not be added)."""
        self.dashboard_page = False
        """Whether `dashboard_link` is metalab's page."""
        self.queue: SchedulerQueue | None = None
        """What a batch scheduler holds for the sweep, as its executor last saw it."""
        self.listeners: list[Callable[[Sequence[Outcome]], None]] = []

    # ---------------------------------------------------------------- what executors call
    def outcomes(self, outcomes: Sequence[Outcome]) -> None:
        """Take the outcomes of one finished task; an index reported twice counts once."""
        with self.lock:
            for outcome in outcomes:
                self._take(outcome)
        for listener in self.listeners:
            listener(outcomes)

    def _take(self, outcome: Outcome) -> None:
        index, state, states = outcome.index, outcome.state, self._states
        if states[index] > _RETRY:
            return  # reported already: the first outcome counts
        if state == "busy":
            states[index] = _BUSY
            return
        code = _FINAL.get(state, _OTHER)
        states[index] = code
        self._reported += 1
        key = "cancelled" if state in ("cancelled", "interrupted") else state
        self.counts[key] = self.counts.get(key, 0) + 1
        if self._kept is not None and outcome.has_record:
            self._kept[index] = outcome
        if code in _FAILED and outcome.has_record and self._failures is not None:
            if len(self._failures) < KEPT_FAILURES:
                self._failures[index] = outcome
            else:
                self._failures = None  # the summary reads them from the store

    def kept_outcomes(self) -> dict[int, Outcome] | None:
        """The outcomes with records this sink kept (see `_kept`), or None when it keeps
        none: the sweep's runs are then read back from its store."""
        with self.lock:
            return None if self._kept is None else dict(self._kept)

    def scheduler_queue(self, jobs: Sequence[str], queued: int, started: int) -> None:
        """Note the sweep's batch jobs and how many of its runs are queued or started."""
        self.queue = SchedulerQueue(tuple(jobs), queued, started)

    def dashboard(self, link: str | None, page: bool) -> None:
        """Note the page showing the sweep, and whether it is metalab's page."""
        self.dashboard_link, self.dashboard_page = link, page

    def lost(self, indices: Sequence[int], error: BaseException, *, worker_died: bool) -> None:
        """Handle a task that ended without outcomes.

        When its worker died, the run that was executing (its claim is left behind) is
        recorded failed and the runs that never started are submitted again, up to
        `MAX_RESUBMITS` times each. When the task itself failed (the worker could not load the
        experiment, say), resubmitting would fail the same way: its runs are recorded failed
        with the task's error.
        """
        sweep, session = self.sweep, self.sweep.session
        owner = claims.owner(session)
        if worker_died:
            kind, message = "WorkerLost", f"the worker running this run was lost: {error!r}"
        else:
            kind, message = type(error).__name__, f"the task running this run failed: {error!r}"
        failed = []
        for index in indices:
            if self.is_reported(index):
                continue
            started = sweep.store.claim_owner(sweep.run_ids[index]) is not None
            resubmits = self._resubmits[index] = min(self._resubmits[index] + 1, 255)
            if worker_died and not started and resubmits <= MAX_RESUBMITS:
                self.retry(index)
                continue
            failed.append(
                record_lost(sweep.experiment, sweep.store, index, owner, message, session, kind)
            )
        self.outcomes(failed)

    # ---------------------------------------------------------------- what the driver asks
    @property
    def reported(self) -> int:
        """How many runs have an outcome."""
        return self._reported

    def is_reported(self, index: int) -> bool:
        """Whether run `index` has an outcome."""
        return self._states[index] > _RETRY

    def unreported(self, indices: Sequence[int]) -> list[int]:
        """Those of `indices` that have no outcome yet."""
        states = self._states
        return [i for i in indices if states[i] <= _RETRY]

    def resubmits(self, index: int) -> int:
        """How often run `index` was submitted again after its worker was lost."""
        return self._resubmits[index]

    @property
    def busy(self) -> list[int]:
        """The runs a live owner elsewhere holds, ascending."""
        return self._with_state(_BUSY)

    def release(self, index: int) -> None:
        """Stop waiting for run `index` (a run of another sweep: not ours to wait for)."""
        with self.lock:
            if self._states[index] == _BUSY:
                self._states[index] = _WAITING

    def retry(self, index: int) -> None:
        """Submit run `index` again (unless it has an outcome by now)."""
        with self.lock:
            if self._states[index] <= _RETRY:
                self._states[index] = _RETRY

    def take_retries(self) -> list[int]:
        """Return the runs to submit again, sorted, and forget them."""
        with self.lock:
            retry = self._with_state(_RETRY)
            for index in retry:
                self._states[index] = _WAITING
        return retry

    def _with_state(self, state: int) -> list[int]:
        states, found = self._states, []
        at = states.find(state)
        while at >= 0:
            found.append(at)
            at = states.find(state, at + 1)
        return found

    def failed_records(self) -> Iterator[dict[str, Any]]:
        """The records of the runs that failed or were interrupted, in index order: those
        the sink kept, or, when more failed, read from the store as they are consumed."""
        with self.lock:
            kept = None if self._failures is None else sorted(self._failures.items())
        if kept is not None:
            for _, outcome in kept:
                record = outcome.record
                if record is not None:
                    yield record
            return
        run_ids, states = self.sweep.run_ids, self._states
        failed = (run_ids[i] for i, state in enumerate(states) if state in _FAILED)
        for record in self.sweep.store.get_records(failed):
            if record.get("status") in ("failed", "interrupted"):
                yield record
