"""`StoreObserver`: follow a sweep another process submitted, by watching its store.

This is what `metalab.reconnect()` runs: nothing is executed, records are picked up as they
appear. A sweep whose runs have no record while nothing holds a claim on any of them for
`stall_after` seconds is reported as stalled (its driver is gone), with how to resume it.
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import ExecutorError
from ..execute import Outcome, recorded_outcomes


class StoreObserver:
    """An executor that runs nothing and reports runs as their records appear in the store."""

    synchronous = False

    def __init__(self, poll_interval: float = 0.5, stall_after: float = 30.0):
        self.poll_interval = poll_interval
        self.stall_after = stall_after
        self._cancelled = False

    def execute(self, plan: Any, indices: list[int], sink: Any) -> None:
        """Poll the store until every index has a final record of this session."""
        waiting = set(indices)
        quiet_since = time.monotonic()
        while waiting and not self._cancelled:
            found = self._poll(plan, waiting)
            if found:
                sink.outcomes(found)
                waiting.difference_update(o.index for o in found)
                quiet_since = time.monotonic()
            elif self._anything_running(plan, waiting):
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > self.stall_after:
                raise ExecutorError(
                    f"{len(waiting)} run(s) of {plan.experiment.experiment_id} have no record "
                    f"and nothing has been running them for {self.stall_after:.0f} s: the "
                    "process that submitted them is gone. Resume with metalab.run(experiment, "
                    "store), which runs only what is missing."
                )
            if waiting:
                time.sleep(self.poll_interval)

    def _poll(self, plan: Any, waiting: set[int]) -> list[Outcome]:
        return recorded_outcomes(plan.store, plan.run_ids, waiting, plan.job.session)

    @staticmethod
    def _anything_running(plan: Any, waiting: set[int]) -> bool:
        claimed = plan.store.claims()
        return any(plan.run_ids[i] in claimed for i in waiting)

    def cancel(self) -> None:
        """Stop watching; the handle then cancels the sweep through the store (runs not
        started are recorded cancelled, running ones see the cancellation flag)."""
        self._cancelled = True
