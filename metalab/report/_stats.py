"""Means, spreads and trends of many runs at once, with numpy.

Up to `EXACT` values the report uses `metalab._aggregate` (exact sums, the dashboard's
rule); beyond, the same statistics are computed here over arrays, by the same rule (the same
bins, the same per-value grouping), equal up to float rounding. A sweep of a million runs
then costs seconds, not minutes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .._aggregate import MAX_BINS, MIN_BINS, Trend, continuous, spread, trend

EXACT = 10_000
"""Values up to which statistics are exact (`metalab._aggregate`); beyond, numpy's."""


def spread_of(values: Any) -> tuple[float, float]:
    """(mean, sample standard deviation; 0 for one value) of a float array or sequence."""
    if len(values) <= EXACT:
        return spread([float(v) for v in values])
    import numpy as np

    array = np.asarray(values, dtype=float)
    mean = math.fsum(array.tolist()) / len(array)
    deviations = array - mean
    return mean, float(math.sqrt(float(np.dot(deviations, deviations)) / (len(array) - 1)))


def trend_of(
    xs: Sequence[float], ys: Sequence[float], *, log: bool = False, binned: bool | None = None
) -> Trend:
    """`metalab._aggregate.trend` of the points (xs[i], ys[i])."""
    if len(xs) <= EXACT:
        return trend(list(zip(_plain(xs), _plain(ys))), log=log, binned=binned)
    import numpy as np

    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    values, slot = np.unique(x, return_inverse=True)
    distinct = len(values)
    if not (continuous(distinct) if binned is None else binned) or distinct < 2:
        stats = _grouped(np, slot, y, distinct)
        found = values.tolist()
        return Trend(found, *stats, low=found, high=found, binned=False)
    bins = max(MIN_BINS, min(MAX_BINS, round(math.sqrt(distinct))))
    position = np.log10(x) if log else x
    first = float(position.min())
    width = (float(position.max()) - first) / bins
    if width > 0:
        slot = np.minimum(bins - 1, np.floor((position - first) / width).astype(np.int64))
    else:
        slot = np.zeros(len(x), dtype=np.int64)
    mean, std, n = _grouped(np, slot, y, bins)
    centres = _grouped(np, slot, position, bins)[0]
    used = [s for s in range(bins) if n[s] > 0]

    def value(p: float) -> float:
        return 10**p if log else p

    return Trend(
        x=[value(centres[s]) for s in used],
        mean=[mean[s] for s in used],
        std=[std[s] for s in used],
        n=[n[s] for s in used],
        low=[value(first + s * width) for s in used],
        high=[value(first + (s + 1) * width) for s in used],
        binned=True,
    )


def _plain(values: Any) -> list[float]:
    """Values as a list of Python floats."""
    import numpy as np

    return np.asarray(values, dtype=float).tolist()


def _grouped(np: Any, slot: Any, y: Any, count: int) -> tuple[list[float], list[float], list[int]]:
    """Mean, sample std (0 for one value) and count of `y` per slot `0..count-1`."""
    n = np.bincount(slot, minlength=count)
    sums = np.bincount(slot, weights=y, minlength=count)
    mean = np.divide(sums, n, out=np.zeros(count), where=n > 0)
    squares = np.bincount(slot, weights=(y - mean[slot]) ** 2, minlength=count)
    std = np.sqrt(np.divide(squares, n - 1, out=np.zeros(count), where=n > 1))
    return mean.tolist(), std.tolist(), n.tolist()
