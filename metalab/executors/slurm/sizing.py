"""`runs_per_task="auto"`: packs sized so that a task takes about `task_minutes`.

The size comes from measured run durations: the records already in the store of runs of the
sweep (earlier attempts, completed runs of an earlier submission), read for an even sample of
its indices. When there are none, the sweep starts with a *pilot*: its first `PILOT_RUNS`
pending runs, one per task; a release job (see `release`) waits for them, measures them, and
submits the rest in packs of the size they call for. A pack never holds more runs than fit
its time limit less the pack margin (see `packs`), and at least one.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from .config import SlurmConfig
from .packs import margin

PILOT_RUNS = 8
"""Runs a sweep without measured durations runs first, one per task, to measure them."""

SAMPLE = 64
"""Records read, at most, to measure the runs of a sweep from the store."""


def durations(records: Iterable[dict[str, Any]]) -> list[float]:
    """The positive durations of `records` (runs that ran, completed or not)."""
    found = []
    for record in records:
        value = record.get("duration")
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            found.append(float(value))
    return found


def sample(total: int, size: int = SAMPLE) -> list[int]:
    """Up to `size` indices spread evenly over `range(total)`."""
    if total <= size:
        return list(range(total))
    return sorted({k * total // size for k in range(size)})


def pack_size(seconds: float, config: SlurmConfig) -> int:
    """Runs per task for runs of `seconds`: about `config.task_minutes` of them, never more
    than fit the time limit less the margin, at least one."""
    if seconds <= 0:
        raise ValueError(f"a run duration must be positive; got {seconds!r}")
    wanted = math.floor(config.task_minutes * 60 / seconds)
    limit = config.time_seconds
    fits = math.floor((limit - margin(limit)) / seconds)
    return max(1, min(wanted, fits))


def typical(measured: Sequence[float]) -> float | None:
    """The duration packs are sized for: the median of `measured`, None when empty."""
    return statistics.median(measured) if measured else None
