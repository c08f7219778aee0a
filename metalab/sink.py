"""`Sink`: where executors report what happened to a sweep's runs (see `contracts.Sink`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import claims
from .outcome import Outcome
from .recording import record_lost
from .sweep import Sweep

MAX_RESUBMITS = 3
"""How often a run whose worker died before it started is submitted again."""


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
        self.records: dict[int, Outcome] = {}
        """The outcomes that carry a record, by index (records decode when first read)."""
        self.counts = {"completed": 0, "failed": 0, "cancelled": 0, "skipped": 0}
        self.busy: set[int] = set()
        """Runs a live owner elsewhere holds (another driver, or a run still stopping)."""
        self.retry: set[int] = set()
        """Runs to submit again: their worker died before they started."""
        self.resubmits: dict[int, int] = {}
        self.reported: set[int] = set()
        self.dashboard_link: str | None = None
        """The page showing the sweep live (metalab's page of the Dask dashboard, or the
        dashboard itself when the page could not be added)."""
        self.dashboard_page = False
        """Whether `dashboard_link` is metalab's page."""
        self.queue: SchedulerQueue | None = None
        """What a batch scheduler holds for the sweep, as its executor last saw it."""
        self.listeners: list[Callable[[Sequence[Outcome]], None]] = []

    def outcomes(self, outcomes: Sequence[Outcome]) -> None:
        """Take the outcomes of one finished task; an index reported twice counts once."""
        with self.lock:
            for outcome in outcomes:
                self._take(outcome)
        for listener in self.listeners:
            listener(outcomes)

    def _take(self, outcome: Outcome) -> None:
        if outcome.state == "busy":
            self.busy.add(outcome.index)
            return
        self.busy.discard(outcome.index)
        if outcome.index in self.reported:
            return
        self.reported.add(outcome.index)
        if outcome.has_record:
            self.records[outcome.index] = outcome
        state = outcome.state
        key = "cancelled" if state in ("cancelled", "interrupted") else state
        self.counts[key] = self.counts.get(key, 0) + 1

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
            if index in self.reported:
                continue
            started = sweep.store.claim_owner(sweep.run_ids[index]) is not None
            self.resubmits[index] = self.resubmits.get(index, 0) + 1
            if worker_died and not started and self.resubmits[index] <= MAX_RESUBMITS:
                with self.lock:
                    self.retry.add(index)
                continue
            failed.append(
                record_lost(sweep.experiment, sweep.store, index, owner, message, session, kind)
            )
        self.outcomes(failed)

    def take_retries(self) -> list[int]:
        """Return the runs to submit again, sorted, and forget them."""
        with self.lock:
            retry, self.retry = sorted(self.retry), set()
        return retry
