"""`Driver`: hands a sweep's pending runs to its executor until each has an outcome.

The driver loop: `open` the executor, `execute` the pending indices, wait while live owners
elsewhere hold runs of the sweep and submit again what their owners left without a record,
record the rest cancelled after a cancel, and `close` the executor once. `RunHandle` is the
user's view of a driver.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from . import claims
from .contracts import Executor
from .interrupts import interrupted_while_starting
from .outcome import Outcome
from .recording import record_cancelled, recorded_outcomes
from .sink import Sink
from .sweep import Sweep


class Driver:
    """Run one sweep through one executor, in the caller's thread or a thread of its own."""

    def __init__(self, sweep: Sweep, executor: Executor):
        self.sweep = sweep
        self.executor = executor
        self.sink = Sink(sweep)
        self.done = threading.Event()
        """Set when the sweep is over (every run has an outcome, or the driver stopped) and
        the executor closed."""
        self.runs_over = threading.Event()
        """Set when every run has an outcome, or the driver stopped (the executor may still
        be closing: a local cluster shutting down, say)."""
        self.error: BaseException | None = None
        """What stopped the driver before every run had an outcome, if anything did."""
        self.cancelled = False
        self._thread: threading.Thread | None = None
        self._on_close: list[Callable[[], None]] = []

    def open(self) -> None:
        """Let the executor acquire what the sweep needs; Ctrl-C meanwhile stops the sweep
        before any run started."""
        if not self.sweep.pending:
            return
        try:
            self.executor.open(self.sweep, self.sink)
        except KeyboardInterrupt:
            self._close_unstarted()
            interrupted_while_starting(self.sweep.experiment.experiment_id)

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the sweep is over and the executor closed."""
        self._on_close.append(callback)

    def start(self) -> None:
        """Drive the sweep: here for a synchronous executor (KeyboardInterrupt propagates)
        or a sweep with nothing to run (complete as soon as this returns), else in a daemon
        thread."""
        if self.executor.synchronous or not self.sweep.pending:
            self.drive()
            return
        self._thread = threading.Thread(
            target=self.drive, name=f"metalab-{self.sweep.experiment.name}", daemon=True
        )
        self._thread.start()

    def finish_empty(self) -> None:
        """End a driver that has nothing to run."""
        self.runs_over.set()
        self.done.set()

    def cancel(self) -> None:
        """Stop the sweep: pending runs are recorded cancelled, running ones see the flag."""
        self.cancelled = True
        self.sweep.store.request_cancel(self.sweep.session)
        self.executor.cancel(self.sweep.session)

    # ---------------------------------------------------------------- the loop
    def drive(self) -> None:
        """Run every pending index to an outcome (the driver loop)."""
        try:
            # a range or an array, as the sweep keeps them: no int object per run
            pending: Sequence[int] = self.sweep.pending
            while pending and not self.cancelled:
                try:
                    self.executor.execute(self.sweep, pending, self.sink)
                except Exception:
                    if not self.cancelled:
                        raise
                    # the cancel cut the executor short (a task cancelled while its result
                    # was fetched, say): the runs without an outcome are recorded below
                pending = self._wait_for_busy()
            if self.cancelled:
                self._record_cancelled()
        except BaseException as exc:
            self.error = exc
            if isinstance(exc, KeyboardInterrupt):
                raise
        finally:
            self.runs_over.set()
            try:
                self._clean_up()
            finally:
                if self.error is not None and not isinstance(self.error, KeyboardInterrupt):
                    self._count_what_was_recorded()
                self.done.set()

    def _count_what_was_recorded(self) -> None:
        """After the driver stopped on an error: take the outcomes of the runs its tasks
        recorded without reporting them (a task that finished as the executor failed), so
        that the handle's counts are the store's. Best effort: the store may be what
        failed."""
        sweep = self.sweep
        try:
            left = self.sink.unreported(sweep.pending)
            if left:
                found = recorded_outcomes(sweep.store, sweep.run_ids, left, sweep.session)
                self.sink.outcomes(found)
        except Exception:  # noqa: BLE001 - the error that stopped the sweep is what counts
            pass

    def _close_unstarted(self) -> None:
        """Close what the executor opened for a sweep stopped before it started."""
        self.cancelled = True
        try:
            self.executor.close(self.sweep)
        except Exception:  # noqa: BLE001 - the interrupt is what the user is told about
            pass
        finally:
            self.runs_over.set()
            self.done.set()

    def _clean_up(self) -> None:
        try:
            self.executor.close(self.sweep)
        except Exception as exc:  # noqa: BLE001 - reported by result(), the sweep is over
            self.error = self.error or exc
        finally:
            for callback in self._on_close:
                callback()

    def _wait_for_busy(self) -> list[int]:
        """Wait while live owners (another driver, or runs still stopping after a cancel) hold
        runs of this sweep; return the runs to submit again: those whose owner died without
        writing a record, and those a lost worker never started."""
        store, run_ids, sink = self.sweep.store, self.sweep.run_ids, self.sink
        busy = sink.busy
        while busy:
            time.sleep(0.2)
            claimed = store.claims()
            for index in busy:
                run_id = run_ids[index]
                if run_id in claimed:
                    if self.cancelled and claimed[run_id].get("session") != self.sweep.session:
                        sink.release(index)  # another sweep's run: not ours to wait for
                    continue
                # the owner writes its record before it releases the claim
                record = store.get_record(run_id)
                if record is not None:
                    sink.outcomes([Outcome(index, run_id, record["status"], record)])
                else:
                    sink.retry(index)
            busy = sink.busy
        return sink.take_retries()

    def _record_cancelled(self) -> None:
        """Record every run of the sweep that has no outcome yet as cancelled, once the runs
        that were executing when the sweep was cancelled have stopped."""
        sweep = self.sweep
        owner = claims.owner(sweep.session)
        while True:
            left = self.sink.unreported(sweep.pending)
            self.sink.outcomes(
                [
                    record_cancelled(sweep.experiment, sweep.store, i, owner, sweep.session)
                    for i in left
                ]
            )
            if not self._wait_for_busy():
                return
