"""`StoreFollower`: follow a sweep another process submitted, by watching its store.

What `metalab.reconnect()` drives when the sweep's executor has no follower of its own:
nothing is executed, records are picked up as they appear. A sweep whose runs have no record
while nothing holds a claim on any of them for `stall_after` seconds is reported as stalled
(its driver is gone), with how to resume it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from .contracts import ExecutorBase, Sink
from .errors import ExecutorError
from .outcome import Outcome
from .recording import recorded_outcomes
from .sweep import Sweep


class StoreFollower(ExecutorBase):
    """Report a sweep's runs as their records appear in the store; run nothing."""

    def __init__(self, poll_interval: float = 0.5, stall_after: float = 30.0):
        self.poll_interval = poll_interval
        self.stall_after = stall_after
        self._cancelled = False

    def execute(self, sweep: Sweep, indices: Sequence[int], sink: Sink) -> None:
        """Poll the store until every index has a final record of this session."""
        waiting = set(indices)
        quiet_since = time.monotonic()
        while waiting and not self._cancelled:
            found = self._poll(sweep, waiting)
            if found:
                sink.outcomes(found)
                waiting.difference_update(o.index for o in found)
                quiet_since = time.monotonic()
            elif self._anything_running(sweep, waiting):
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > self.stall_after:
                raise ExecutorError(
                    f"{len(waiting)} run(s) of {sweep.experiment.experiment_id} have no record "
                    f"and nothing has been running them for {self.stall_after:.0f} s: the "
                    "process that submitted them is gone. Resume with metalab.run(experiment, "
                    "store), which runs only what is missing."
                )
            if waiting:
                time.sleep(self.poll_interval)

    def _poll(self, sweep: Sweep, waiting: set[int]) -> list[Outcome]:
        return recorded_outcomes(sweep.store, sweep.run_ids, waiting, sweep.session)

    @staticmethod
    def _anything_running(sweep: Sweep, waiting: set[int]) -> bool:
        claimed = sweep.store.claims()
        return any(sweep.run_ids[i] in claimed for i in waiting)

    def cancel(self, session: str) -> None:
        """Stop watching; the handle then cancels the sweep through the store (runs not
        started are recorded cancelled, running ones see the cancellation flag)."""
        self._cancelled = True
