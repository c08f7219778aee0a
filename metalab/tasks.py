"""A sweep's Dask tasks: pending run indices cut into chunks (fixed or adaptive), each a
`dask.delayed` call of the run loop."""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Any

from . import config
from .errors import ValidationError
from .execute import run_indices
from .outcome import Outcome
from .sweep import SweepRef


def check_chunk_size(chunk_size: Any) -> int | None:
    """Return `chunk_size` if it is None or a positive integer; else raise `ValidationError`."""
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValidationError(
            f"chunk_size must be a positive integer (runs per task) or None, got {chunk_size!r}"
        )
    return chunk_size


def chunk_size_for(n_pending: int, chunk_size: int | None = None) -> int:
    """Return how many runs one task holds for a sweep of `n_pending` runs.

    Small sweeps get one task per run; larger ones about `metalab.dask.target-tasks` tasks
    (both limits are in `metalab.yaml`).
    """
    if check_chunk_size(chunk_size) is not None:
        return chunk_size  # type: ignore[return-value]
    if n_pending <= config.get("dask.single-task-limit"):
        return 1
    return -(-n_pending // config.get("dask.target-tasks"))


def chunks(indices: Sequence[int], size: int) -> list[list[int]]:
    """Split sorted `indices` into lists of at most `size` (neighbours stay together)."""
    return [list(indices[i : i + size]) for i in range(0, len(indices), size)]


class AdaptiveChunks:
    """Cut pending indices into contiguous tasks that each take about `target_seconds`.

    The first tasks hold one run; once runs have reported their durations, tasks grow so
    that quick runs do not pay the scheduler's per-task cost one by one, while slow runs
    stay one per task (for balance, progress and cancellation). Near the end, tasks shrink
    so the last of them spread over every worker.
    """

    def __init__(
        self,
        indices: Sequence[int],
        *,
        fixed: int | None = None,
        target_seconds: float = 0.5,
        max_chunk: int = 1000,
        overhead: float = 2e-4,
    ):
        # a range or an array is kept as it is (slicing one copies no int object per run)
        self._indices = indices if isinstance(indices, (range, array)) else list(indices)
        self._next = 0
        self._fixed = fixed
        self._target = target_seconds
        self._max = max_chunk
        self._overhead = overhead
        self._seconds = 0.0
        self._runs = 0

    def __bool__(self) -> bool:
        return self._next < len(self._indices)

    @property
    def per_run(self) -> float | None:
        """Estimated seconds one run takes, or None before any run reported."""
        return self._seconds / self._runs + self._overhead if self._runs else None

    def size(self, workers: int) -> int:
        """How many runs the next task gets when `workers` threads share the sweep."""
        if self._fixed is not None:
            return self._fixed
        per_run = self.per_run
        if per_run is None:
            return 1
        remaining = len(self._indices) - self._next
        fair_share = -(-remaining // max(workers, 1))
        return max(1, min(int(self._target / per_run), self._max, fair_share))

    def take(self, workers: int) -> list[int]:
        """Return the indices of the next task."""
        start = self._next
        self._next = min(start + self.size(workers), len(self._indices))
        return list(self._indices[start : self._next])

    def observe(self, outcomes: Sequence[Outcome]) -> None:
        """Learn run durations from a finished task."""
        for outcome in outcomes:
            if outcome.duration is not None:
                self._seconds += outcome.duration or 0.0
                self._runs += 1


def task_prefix(experiment_name: str) -> str:
    """The Dask key prefix of an experiment's tasks (what the dashboard groups by)."""
    # the dashboard groups tasks by key_split(), which stops at '-' before non-alphabetic words
    return "metalab:" + experiment_name.replace("-", "_")


def run_chunk(ref: SweepRef, indices: list[int]) -> list[Outcome]:
    """Run `indices` (the body of every task); returns their outcomes."""
    return run_indices(ref, indices)


def build_tasks(ref: SweepRef, experiment_name: str, groups: list[list[int]]) -> list[Any]:
    """Return one `dask.delayed` task per group of indices, keyed by experiment and first index."""
    import dask

    prefix = task_prefix(experiment_name)
    ref_node = dask.delayed(ref, pure=True)
    return [
        dask.delayed(run_chunk, pure=False)(
            ref_node, group, dask_key_name=(prefix, ref.session, group[0])
        )
        for group in groups
    ]
