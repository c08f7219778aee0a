"""`InlineExecutor`: every run in the calling thread, one after another (for debugging)."""

from __future__ import annotations

from collections.abc import Sequence

from ..contracts import ExecutorBase, Sink
from ..execute import iter_run_indices
from ..outcome import Outcome
from ..recording import same_session
from ..sweep import Sweep


class InlineExecutor(ExecutorBase):
    """Run each index in the caller's thread: breakpoints and tracebacks work as usual.

    `metalab.run()` returns only when the sweep is done; Ctrl-C records the current run as
    interrupted and stops the sweep.
    """

    synchronous = True

    def __init__(self) -> None:
        self._cancelled = False

    def execute(self, sweep: Sweep, indices: Sequence[int], sink: Sink) -> None:
        """Run `indices` one by one. On Ctrl-C, the run it stopped is reported as its record
        says (`interrupted`), before the interrupt goes on."""
        reported = 0
        try:
            for outcome in iter_run_indices(sweep.ref, indices):
                sink.outcomes([outcome])
                reported += 1
                if self._cancelled:
                    return
        except KeyboardInterrupt:
            if reported < len(indices):
                _report_stopped(sweep, indices[reported], sink)
            raise

    def cancel(self, session: str | None = None) -> None:
        """Stop before the next run (there is one sweep at a time: `session` is not needed)."""
        self._cancelled = True

    def __repr__(self) -> str:
        return "InlineExecutor()"


def _report_stopped(sweep: Sweep, index: int, sink: Sink) -> None:
    """Report run `index` from the record this sweep wrote of it when Ctrl-C stopped it."""
    run_id = sweep.run_ids[index]
    try:
        record = sweep.store.get_record(run_id)
    except Exception:  # noqa: BLE001 - the interrupt goes on whatever the store says
        return
    if record is not None and same_session(record, sweep.session):
        sink.outcomes([Outcome(index, run_id, record["status"], record)])
