"""`RunHandle`: a running (or finished) sweep; `RunStatus`: its counts at one moment."""

from __future__ import annotations

import html
import threading
import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, cast

from .contracts import Store
from .driver import Driver
from .errors import ExecutorError, ValidationError
from .experiment import Experiment
from .interrupts import stop_after_interrupt
from .progress import Progress
from .registry import sweep_results_loader
from .results import Results
from .results.failures import failure_summary, warn_failed
from .sink import SchedulerQueue


@dataclass(frozen=True)
class RunStatus:
    """Counts of a sweep's runs by state; `pending` is what has not started yet."""

    total: int
    completed: int
    running: int
    failed: int
    skipped: int
    pending: int
    cancelled: int = 0

    @property
    def done(self) -> int:
        """Runs in a final state, skipped ones included."""
        return self.completed + self.failed + self.skipped + self.cancelled


STOP_SECONDS = 30.0
"""How long Ctrl-C waits for the sweep to record its cancelled runs (a second Ctrl-C stops
waiting at once)."""


class RunHandle:
    """A sweep in progress: poll `status`, block on `result()`, or `cancel()` it."""

    def __init__(self, driver: Driver, progress: Progress | None = None):
        self._driver = driver
        self._sweep = driver.sweep
        self._sink = driver.sink
        self._progress = progress
        self._results: Results | None = None

    def start(self) -> None:
        """Hand the pending runs to the executor (synchronously for in-process executors)."""
        self._driver.open()
        progress = self._progress
        if progress is not None:
            progress.start(self)
            self._sink.listeners.append(lambda _: progress.update(self))
            self._driver.on_close(lambda: progress.finish(self))
        try:
            self._driver.start()
        except KeyboardInterrupt:
            self._interrupted()

    # ---------------------------------------------------------------- queries
    @property
    def experiment(self) -> Experiment:
        """The experiment this handle runs."""
        return self._sweep.experiment

    @property
    def store(self) -> Store:
        """The store the runs are written to."""
        return self._sweep.store

    @property
    def run_ids(self) -> list[str]:
        """Run ids of every run, in index order."""
        return list(self._sweep.run_ids)

    @property
    def dashboard_link(self) -> str | None:
        """The metalab page of the Dask dashboard of the cluster running the sweep (the
        sweeps it runs, live), or the dashboard itself when the page could not be added."""
        return self._sink.dashboard_link

    @property
    def scheduler_queue(self) -> SchedulerQueue | None:
        """The sweep's batch jobs and runs queued in them, for executors that submit jobs."""
        return self._sink.queue

    @property
    def status(self) -> RunStatus:
        """Counts right now (never blocks on the sweep)."""
        sweep, sink = self._sweep, self._sink
        with sink.lock:
            counts = dict(sink.counts)
            reported = sink.reported
        running = 0
        if not self._driver.done.is_set():
            claimed = sweep.store.claims()
            if claimed:
                running = self._running(claimed)
        skipped = sweep.skipped + counts.get("skipped", 0)
        # (not `len(sweep.pending)`: a reconnected handle's pending runs are only those not
        # recorded when it began watching, and the recorded ones are among `reported`)
        pending = sweep.total - sweep.skipped - reported - running
        return RunStatus(
            total=sweep.total,
            completed=counts["completed"],
            running=running,
            failed=counts["failed"],
            skipped=skipped,
            pending=max(pending, 0),
            cancelled=counts["cancelled"],
        )

    def _running(self, claimed: dict[str, dict[str, Any]]) -> int:
        """How many of the sweep's pending runs without an outcome are `claimed`: those its
        own workers claimed (the claim names the sweep's session), and the others' claims on
        its runs, found by run id."""
        sweep, sink = self._sweep, self._sink
        running = 0
        for run_id, owner in claimed.items():
            if owner.get("session") == sweep.session:
                running += 1
                continue
            index = _index_of(sweep.run_ids, run_id)
            if index is not None and _holds(sweep.pending, index) and not sink.is_reported(index):
                running += 1
        return running

    @property
    def is_complete(self) -> bool:
        """Whether every run has reached a final state."""
        return self._driver.done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the sweep ends or `timeout` seconds pass; return whether it ended.

        Ctrl-C while waiting stops the sweep as `result()` does."""
        return self._wait_for(self._driver.done, _checked_timeout(timeout))

    def _wait_for(self, event: threading.Event, timeout: float | None) -> bool:
        """Wait for one of the driver's events; Ctrl-C meanwhile stops the sweep."""
        try:
            return event.wait(timeout)
        except KeyboardInterrupt:
            self._interrupted()

    def result(self, timeout: float | None = None) -> Results:
        """Block until every run is final; return `Results` in run-index order.

        Warns with `RunsFailedWarning` (once per sweep) when runs failed, naming their first
        errors. Ctrl-C while waiting cancels the runs not yet started, records them
        cancelled, prints one line (what was recorded, how to resume) and raises
        `SweepInterrupted`: a `KeyboardInterrupt` that ends a script with exit status 130
        and no traceback."""
        started = time.monotonic()
        if not self._wait_for(self._driver.runs_over, _checked_timeout(timeout)):
            raise TimeoutError(f"the sweep did not finish within {timeout} s: {self.status}")
        early = None
        if self._results is None and self._driver.error is None and not self.is_complete:
            # every run has its record: read them while the executor closes (a local
            # cluster shutting down, say); the close's own error still counts below
            early = self._collect()
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        if not self.wait(left):
            raise TimeoutError(f"the sweep did not finish within {timeout} s: {self.status}")
        if self._progress is not None:
            self._progress.redraw(self)
        if self._driver.error is not None:
            if isinstance(self._driver.error, ExecutorError):
                raise self._driver.error
            raise ExecutorError(f"the sweep stopped: {self._driver.error}") from self._driver.error
        if self._results is None:
            self._results = early if early is not None else self._collect()
            warn_failed(self._failed_records(), self._sweep.total, stacklevel=2)
        return self._results

    results = result

    def _failed_records(self) -> Iterator[dict[str, Any]]:
        """The records of this sweep's runs that failed, in index order (see
        `Sink.failed_records`)."""
        return self._sink.failed_records()

    def failure_summary(self) -> str | None:
        """`"2 of 40 runs did not complete (2 failed): ..."` naming the first distinct errors,
        or None when no run of this submission failed."""
        return failure_summary(self._failed_records(), self._sweep.total)

    def _interrupted(self) -> NoReturn:
        """Stop the sweep after Ctrl-C: cancel it, let it record its cancelled runs, say what
        is recorded and how to resume, and raise `SweepInterrupted`."""
        self.cancel()
        try:
            self._driver.done.wait(STOP_SECONDS)
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: stop waiting
        status = self.status
        recorded = status.completed + status.failed
        stopped = status.total - status.done
        line = (
            f"metalab: {self._sweep.experiment.experiment_id} interrupted: {recorded} run(s) "
            f"recorded ({status.completed} completed, {status.failed} failed), "
            f"{status.cancelled} cancelled"
            + (f", {status.skipped} done before" if status.skipped else "")
            + (f", {stopped} not run" if stopped else "")
            + ". Run the same metalab.run(...) again to resume: completed runs are skipped."
        )
        stop_after_interrupt(line)

    def _collect(self) -> Results:
        """The sweep's runs in index order: as the store holds them, or, for a store that
        cannot give them back as columns, the records the sink kept (and the store's for
        the runs it holds from before)."""
        sweep = self._sweep
        kept = self._sink.kept_outcomes()
        if kept is None:
            load = sweep_results_loader()
            return cast(Results, load(sweep.store, sweep.experiment.experiment_id, sweep.run_ids))
        missing = [sweep.run_ids[i] for i in range(sweep.total) if i not in kept]
        by_id = {r["run_id"]: r for r in sweep.store.get_records(missing)} if missing else {}
        ordered: list[Any] = []  # records, and outcomes whose records decode when first read
        for index in range(sweep.total):
            found = kept.get(index) or by_id.get(sweep.run_ids[index])
            if found is not None:
                ordered.append(found)
        return Results(ordered, sweep.store)

    def cancel(self) -> None:
        """Stop the sweep: pending runs are recorded cancelled, running ones see the flag."""
        self._driver.cancel()

    def __repr__(self) -> str:
        return f"<RunHandle {self._sweep.experiment.experiment_id} {self.status}>"

    def _repr_html_(self) -> str:
        status = self.status
        state = "finished" if self.is_complete else "running"
        counts = ", ".join(
            f"{name} {getattr(status, name)}"
            for name in ("completed", "failed", "running", "pending", "skipped", "cancelled")
            if getattr(status, name) or name in ("completed", "failed")
        )
        link = self.dashboard_link
        page = f" · <a href='{html.escape(link)}' target='_blank'>dashboard</a>" if link else ""
        return (
            f"<div><b>{html.escape(self._sweep.experiment.experiment_id)}</b> {state}: "
            f"{status.done}/{status.total} · {html.escape(counts)}{page}</div>"
        )


def _checked_timeout(timeout: Any) -> float | None:
    """`timeout` if it is None or a number of seconds (0 or more); else `ValidationError`."""
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
    ):
        raise ValidationError(
            f"timeout must be a number of seconds (0 or more) or None, got {timeout!r}"
        )
    return timeout


def _index_of(run_ids: Sequence[str], run_id: str) -> int | None:
    """The index of `run_id` among a sweep's `run_ids`, or None."""
    try:
        return run_ids.index(run_id)
    except ValueError:
        return None


def _holds(indices: Sequence[int], index: int) -> bool:
    """Whether ascending `indices` hold `index`."""
    at = bisect_left(indices, index)
    return at < len(indices) and indices[at] == index
