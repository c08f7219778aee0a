"""`InlineExecutor`: every run in the calling thread, one after another (for debugging)."""

from __future__ import annotations

from collections.abc import Sequence

from ..contracts import ExecutorBase, Sink
from ..execute import iter_run_indices
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
        """Run `indices` one by one."""
        for outcome in iter_run_indices(sweep.ref, indices):
            sink.outcomes([outcome])
            if self._cancelled:
                return

    def cancel(self, session: str | None = None) -> None:
        """Stop before the next run (there is one sweep at a time: `session` is not needed)."""
        self._cancelled = True

    def __repr__(self) -> str:
        return "InlineExecutor()"
