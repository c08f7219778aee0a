"""The executor contract: run some indices of a plan somewhere, report outcomes to a sink."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Executor(Protocol):
    """Runs indices of a plan through `metalab.execute.run_indices` and reports outcomes.

    `execute` blocks until every index it was given has reported an outcome (through
    `sink.outcomes`) or was lost (`sink.lost`), or until `cancel()` was called. It may be
    called again with a new list of indices for the same plan.
    """

    def execute(self, plan: Any, indices: list[int], sink: Any) -> None:
        """Run `indices` of `plan`; report to `sink`."""
        ...

    def cancel(self) -> None:
        """Stop work that has not started; idempotent."""
        ...
