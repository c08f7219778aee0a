"""`RunHandle`: a running (or finished) sweep; `RunStatus`: its counts at one moment."""

from __future__ import annotations

import html
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, NoReturn

from . import _claims
from .errors import ExecutorError, SweepInterrupted, ValidationError
from .execute import Outcome, record_cancelled, record_lost


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


MAX_RESUBMITS = 3
"""How often a run whose worker died before it started is submitted again."""
STOP_SECONDS = 30.0
"""How long Ctrl-C waits for the sweep to record its cancelled runs (a second Ctrl-C stops
waiting at once)."""


@dataclass(frozen=True)
class SchedulerQueue:
    """The batch jobs of a sweep and its unrecorded runs by the state of their tasks."""

    jobs: tuple[str, ...]
    queued: int
    """Runs whose tasks wait in the scheduler's queue."""
    started: int
    """Runs whose tasks the scheduler started (they may still wait inside a packed task)."""


class Sink:
    """Collects outcomes from an executor; thread-safe."""

    def __init__(self, plan):
        self.plan = plan
        self.lock = threading.Lock()
        self.records: dict[int, Outcome] = {}
        """The outcomes that carry a record, by index (records decode when first read)."""
        self.counts = {"completed": 0, "failed": 0, "cancelled": 0, "skipped": 0}
        self.busy: set[int] = set()
        self.retry: set[int] = set()
        self.resubmits: dict[int, int] = {}
        self.reported: set[int] = set()
        self.dashboard_link: str | None = None
        self.queue: SchedulerQueue | None = None
        """What a batch scheduler holds for the sweep, as its executor last saw it."""
        self.dashboard_page = False
        """Whether the scheduler at `dashboard_link` lists the sweep on metalab's page."""
        self.listeners: list[Any] = []

    def outcomes(self, outcomes: list[Outcome]) -> None:
        """Take the outcomes of one finished task."""
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

    def scheduler_queue(self, jobs: list[str], queued: int, started: int) -> None:
        """Note the sweep's batch jobs and how many of its runs are queued or started."""
        self.queue = SchedulerQueue(tuple(jobs), queued, started)

    def lost(self, indices: list[int], error: BaseException, *, worker_died: bool) -> None:
        """Handle a task that ended without outcomes.

        When its worker died, the run that was executing (its claim is left behind) is
        recorded failed and the runs that never started are submitted again, up to
        `MAX_RESUBMITS` times each. When the task itself failed (the worker could not load the
        experiment, say), resubmitting would fail the same way: its runs are recorded failed
        with the task's error.
        """
        plan, session = self.plan, self.plan.job.session
        owner = _claims.owner(session)
        if worker_died:
            kind, message = "WorkerLost", f"the worker running this run was lost: {error!r}"
        else:
            kind, message = type(error).__name__, f"the task running this run failed: {error!r}"
        failed = []
        for index in indices:
            if index in self.reported:
                continue
            started = plan.store.claim_owner(plan.run_ids[index]) is not None
            self.resubmits[index] = self.resubmits.get(index, 0) + 1
            if worker_died and not started and self.resubmits[index] <= MAX_RESUBMITS:
                with self.lock:
                    self.retry.add(index)
                continue
            failed.append(
                record_lost(plan.experiment, plan.store, index, owner, message, session, kind)
            )
        self.outcomes(failed)


class RunHandle:
    """A sweep in progress: poll `status`, block on `result()`, or `cancel()` it."""

    def __init__(self, plan, executor, progress=None):
        self._plan = plan
        self._executor = executor
        self._progress = progress
        self._sink = Sink(plan)
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._cancelled = False
        self._thread: threading.Thread | None = None
        self._results = None

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Hand the pending runs to the executor (synchronously for in-process executors)."""
        opener = getattr(self._executor, "open", None)
        if opener is not None and self._plan.pending:
            try:
                opener(self._plan, self._sink)
            except KeyboardInterrupt:
                self._close_unstarted()
                interrupted_while_starting(self._plan.experiment.experiment_id)
        if self._progress is not None:
            self._progress.start(self)
            self._sink.listeners.append(lambda _: self._progress.update(self))
        if getattr(self._executor, "synchronous", False):
            try:
                self._drive()
            except KeyboardInterrupt:
                self._interrupted()
            return
        self._thread = threading.Thread(
            target=self._drive, name=f"metalab-{self._plan.experiment.name}", daemon=True
        )
        self._thread.start()

    def _close_unstarted(self) -> None:
        """Close what the executor opened for a sweep stopped before it started."""
        self._cancelled = True
        try:
            closer = getattr(self._executor, "close", None)
            if closer is not None:
                closer(self._plan)
        except Exception:  # noqa: BLE001 - the interrupt is what the user is told about
            pass
        finally:
            self._done.set()

    def _drive(self) -> None:
        try:
            pending = list(self._plan.pending)
            while pending and not self._cancelled:
                try:
                    self._executor.execute(self._plan, pending, self._sink)
                except Exception:
                    if not self._cancelled:
                        raise
                    # the cancel cut the executor short (a task cancelled while its result
                    # was fetched, say): the runs without an outcome are recorded below
                pending = self._wait_for_busy()
            if self._cancelled:
                self._record_cancelled()
        except BaseException as exc:
            self._error = exc
            if isinstance(exc, KeyboardInterrupt):
                raise
        finally:
            try:
                self._clean_up()
            finally:
                self._done.set()

    def _clean_up(self) -> None:
        try:
            closer = getattr(self._executor, "close", None)
            if closer is not None:
                closer(self._plan)
        except Exception as exc:  # noqa: BLE001 - reported by result(), the sweep is over
            self._error = self._error or exc
        finally:
            if self._progress is not None:
                self._progress.finish(self)

    def _wait_for_busy(self) -> list[int]:
        """Wait while live owners (another driver, or runs still stopping after a cancel) hold
        runs of this sweep; return the runs to submit again: those whose owner died without
        writing a record, and those a lost worker never started."""
        store, run_ids, sink = self._plan.store, self._plan.run_ids, self._sink
        while sink.busy:
            time.sleep(0.2)
            claimed = store.claims()
            for index in sorted(sink.busy):
                run_id = run_ids[index]
                if run_id in claimed:
                    if self._cancelled and claimed[run_id].get("session") != self._plan.job.session:
                        with sink.lock:
                            sink.busy.discard(index)  # another sweep's run: not ours to wait for
                    continue
                # the owner writes its record before it releases the claim
                record = store.get_record(run_id)
                if record is not None:
                    sink.outcomes([Outcome(index, run_id, record["status"], record)])
                else:
                    with sink.lock:
                        sink.busy.discard(index)
                        sink.retry.add(index)
        with sink.lock:
            retry, sink.retry = sorted(sink.retry), set()
        return retry

    def _record_cancelled(self) -> None:
        """Record every run of the sweep that has no outcome yet as cancelled, once the runs
        that were executing when the sweep was cancelled have stopped."""
        plan = self._plan
        owner = _claims.owner(plan.job.session)
        while True:
            left = [i for i in plan.pending if i not in self._sink.reported]
            self._sink.outcomes(
                [
                    record_cancelled(plan.experiment, plan.store, i, owner, plan.job.session)
                    for i in left
                ]
            )
            if not self._wait_for_busy():
                return

    # ---------------------------------------------------------------- queries
    @property
    def experiment(self):
        """The experiment this handle runs."""
        return self._plan.experiment

    @property
    def store(self):
        """The store the runs are written to."""
        return self._plan.store

    @property
    def run_ids(self) -> list[str]:
        """Run ids of every run, in index order."""
        return list(self._plan.run_ids)

    @property
    def dashboard_link(self) -> str | None:
        """The metalab page of the Dask dashboard of the cluster running the sweep (the
        sweeps it runs, live), or the dashboard itself when the page could not be added."""
        link = self._sink.dashboard_link
        if not self._sink.dashboard_page or not link:
            return link
        from .dashboard.links import page_link  # a dashboard link: distributed is imported

        return page_link(link)

    @property
    def scheduler_queue(self) -> SchedulerQueue | None:
        """The sweep's batch jobs and runs queued in them, for executors that submit jobs."""
        return self._sink.queue

    @property
    def status(self) -> RunStatus:
        """Counts right now (never blocks on the sweep)."""
        plan, sink = self._plan, self._sink
        with sink.lock:
            counts = dict(sink.counts)
            reported = len(sink.reported)
        running = 0
        if not self._done.is_set():
            claimed = plan.store.claims()
            if claimed:
                running = sum(
                    1 for i in plan.pending if plan.run_ids[i] in claimed and i not in sink.reported
                )
        skipped = plan.skipped + counts.get("skipped", 0)
        pending = len(plan.pending) - reported - running
        return RunStatus(
            total=plan.total,
            completed=counts["completed"],
            running=running,
            failed=counts["failed"],
            skipped=skipped,
            pending=max(pending, 0),
            cancelled=counts["cancelled"],
        )

    @property
    def is_complete(self) -> bool:
        """Whether every run has reached a final state."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the sweep ends or `timeout` seconds pass; return whether it ended.

        Ctrl-C while waiting stops the sweep as `result()` does."""
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
        ):
            raise ValidationError(
                f"timeout must be a number of seconds (0 or more) or None, got {timeout!r}"
            )
        try:
            return self._done.wait(timeout)
        except KeyboardInterrupt:
            self._interrupted()

    def result(self, timeout: float | None = None):
        """Block until every run is final; return `Results` in run-index order.

        Warns with `RunsFailedWarning` (once per sweep) when runs failed, naming their first
        errors. Ctrl-C while waiting cancels the runs not yet started, records them
        cancelled, prints one line (what was recorded, how to resume) and raises
        `SweepInterrupted`: a `KeyboardInterrupt` that ends a script with exit status 130
        and no traceback."""
        if not self.wait(timeout):
            raise TimeoutError(f"the sweep did not finish within {timeout} s: {self.status}")
        if self._progress is not None:
            self._progress.redraw(self)
        if self._error is not None:
            if isinstance(self._error, ExecutorError):
                raise self._error
            raise ExecutorError(f"the sweep stopped: {self._error}") from self._error
        if self._results is None:
            self._results = self._collect()
            from .results.failures import warn_failed

            warn_failed(self._failed_records(), self._plan.total, stacklevel=2)
        return self._results

    results = result

    def _failed_records(self) -> list[dict[str, Any]]:
        """The records of this sweep's runs that failed (decoded from the workers' outcomes)."""
        with self._sink.lock:
            outcomes = list(self._sink.records.values())
        return [
            outcome.record
            for outcome in sorted(outcomes, key=lambda o: o.index)
            if outcome.state in ("failed", "interrupted") and outcome.record is not None
        ]

    def failure_summary(self) -> str | None:
        """`"2 of 40 runs did not complete (2 failed): ..."` naming the first distinct errors,
        or None when no run of this submission failed."""
        from .results.failures import failure_summary

        return failure_summary(self._failed_records(), self._plan.total)

    def _interrupted(self) -> NoReturn:
        """Stop the sweep after Ctrl-C: cancel it, let it record its cancelled runs, say what
        is recorded and how to resume, and raise `SweepInterrupted`."""
        self.cancel()
        try:
            self._done.wait(STOP_SECONDS)
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: stop waiting
        status = self.status
        recorded = status.completed + status.failed
        stopped = status.total - status.done
        line = (
            f"metalab: {self._plan.experiment.experiment_id} interrupted: {recorded} run(s) "
            f"recorded ({status.completed} completed, {status.failed} failed), "
            f"{status.cancelled} cancelled"
            + (f", {status.skipped} done before" if status.skipped else "")
            + (f", {stopped} not run" if stopped else "")
            + ". Run the same metalab.run(...) again to resume: completed runs are skipped."
        )
        stop_after_interrupt(line)

    def _collect(self):
        from .results import Results

        plan = self._plan
        records = dict(self._sink.records)
        missing = [i for i in range(plan.total) if i not in records]
        by_id = {}
        if missing:
            by_id = {
                r["run_id"]: r for r in plan.store.get_records(plan.run_ids[i] for i in missing)
            }
        ordered: list[Any] = []  # records, and outcomes whose records decode when first read
        for index, run_id in enumerate(plan.run_ids):
            record = records.get(index) or by_id.get(run_id)
            if record is not None:
                ordered.append(record)
        return Results(ordered, plan.store)

    def cancel(self) -> None:
        """Stop the sweep: pending runs are recorded cancelled, running ones see the flag."""
        self._cancelled = True
        self._plan.store.request_cancel(self._plan.job.session)
        cancel = getattr(self._executor, "cancel", None)
        if cancel is not None:
            import inspect

            if "session" in inspect.signature(cancel).parameters:
                cancel(session=self._plan.job.session)  # an executor serving several sweeps
            else:
                cancel()

    def __repr__(self) -> str:
        return f"<RunHandle {self._plan.experiment.experiment_id} {self.status}>"

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
            f"<div><b>{html.escape(self._plan.experiment.experiment_id)}</b> {state}: "
            f"{status.done}/{status.total} · {html.escape(counts)}{page}</div>"
        )


def stop_after_interrupt(line: str) -> NoReturn:
    """End a Ctrl-C'd call with `line`: in a script, printed, then `SweepInterrupted` (exit
    status 130, no traceback); in a REPL or notebook, a `KeyboardInterrupt` saying it."""
    if _interactive():
        raise KeyboardInterrupt(line) from None
    print(line, file=sys.stderr, flush=True)
    raise SweepInterrupted(line) from None


def interrupted_while_starting(experiment_id: str) -> NoReturn:
    """Stop a sweep Ctrl-C'd before any of its runs was handed to an executor."""
    stop_after_interrupt(
        f"metalab: {experiment_id} interrupted while starting: no run was started. Run the "
        "same metalab.run(...) again to start it."
    )


def _interactive() -> bool:
    """Whether this is an interactive session (a REPL, IPython, Jupyter), which Ctrl-C must
    not end."""
    if hasattr(sys, "ps1") or sys.flags.interactive:
        return True
    ipython = sys.modules.get("IPython")
    return ipython is not None and ipython.get_ipython() is not None
