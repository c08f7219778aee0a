"""Parameter axes and the means along them: what the report and the dashboard page share.

Plain Python (no bokeh, no numpy), so both views lay a parameter out the same way and draw
the same trend from the same rule. An `Axis` says whether a parameter's values are numbers
(on a linear or a log10 scale) or categories, and where each value lies. A parameter with
few distinct values gets the mean of the runs at each value; a numeric parameter with many
distinct values (a random search) gets the mean of the runs in each of a few equal-width
bins of the axis, since a line through every value would zigzag from one single run to the
next. Only completed runs enter a mean; the others are counted beside it.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_LEVELS = 15
"""Distinct numeric values up to which each value gets its own mean; beyond, the axis is binned."""
MIN_BINS = 5
MAX_BINS = 20
"""Bins of a binned axis: about the square root of the number of distinct values, within these."""
COMPLETED = "completed"


def is_number(value: Any) -> bool:
    """Whether `value` is an int or a float (a bool is not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def finite(value: Any) -> float | None:
    """`value` as a finite float (bools as 0/1), else None."""
    if isinstance(value, (bool, int, float)):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def canonical(value: Any) -> str:
    """A canonical, hashable text of a parameter value (`1`, `1.0` and `True` stay distinct)."""
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(value)


def label(value: Any) -> str:
    """Show a parameter or metric value as short text."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.6g}"
    if value is None or isinstance(value, (bool, int)):
        return str(value)
    return canonical(value)


def log_axis(numbers: Iterable[float]) -> bool:
    """Whether numbers, all positive, span two decades or more: they then go on a log axis."""
    values = list(numbers)
    return bool(values) and min(values) > 0 and max(values) / min(values) >= 100


def continuous(distinct: int) -> bool:
    """Whether a numeric axis with `distinct` values is binned rather than drawn value by value."""
    return distinct > MAX_LEVELS


class Axis:
    """How the distinct values of a parameter lie along a plot's x axis.

    Numbers (not bools) lie on a linear axis, or on a log10 axis when they are positive and
    span two decades or more; any other mix of values is categorical, one category per
    distinct value (`1`, `1.0` and `True` stay apart), in the order given.
    """

    def __init__(self, values: Mapping[str, Any]):
        self.values = dict(values)
        """Canonical key (`canonical(value)`) -> value, in axis order."""
        self.numeric = bool(self.values) and all(is_number(v) for v in self.values.values())
        """Whether every value is a number: the axis is then continuous."""
        self.log = self.numeric and log_axis(float(v) for v in self.values.values())
        """Whether the numbers are drawn on a log10 scale."""
        self.binned = self.numeric and continuous(len(self.values))
        """Whether the means along the axis are per bin rather than per value."""
        self._rank = {key: i for i, key in enumerate(self.values)}
        labels = [label(v) for v in self.values.values()]
        self.factors = labels if len(set(labels)) == len(labels) else list(self.values)
        """The categories' axis labels, in axis order, all distinct."""

    @classmethod
    def of(cls, values: Iterable[Any], *, by_label: bool = False) -> Axis:
        """The axis of `values`: categories in first-seen order, or by label (`by_label`)
        when the values' order says nothing about their order."""
        distinct: dict[str, Any] = {}
        for value in values:
            distinct.setdefault(canonical(value), value)
        if by_label:
            distinct = dict(sorted(distinct.items(), key=lambda item: (label(item[1]), item[0])))
        return cls(distinct)

    def factor(self, value: Any) -> str:
        """The category label of `value` (one of `factors`)."""
        return self.factors[self._rank[canonical(value)]]

    def position(self, value: Any) -> float:
        """Where `value` lies: the number (its log10 on a log axis), or the category's rank."""
        if not self.numeric:
            return float(self._rank[canonical(value)])
        return math.log10(value) if self.log else float(value)


def evenly(items: Sequence[Any], limit: int) -> list[Any]:
    """At most `limit` items spread evenly over `items`, first and last kept, order kept."""
    if len(items) <= limit:
        return list(items)
    if limit <= 1:
        return list(items[:limit])
    step = (len(items) - 1) / (limit - 1)
    return [items[round(i * step)] for i in range(limit)]


def spread(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample standard deviation; 0 for one value) of `values`."""
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0


def split_by_status(
    records: Iterable[dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """(completed records, count of the other records per status)."""
    completed: list[dict[str, Any]] = []
    others: dict[str, int] = {}
    for record in records:
        status = str(record.get("status", "unknown"))
        if status == COMPLETED:
            completed.append(record)
        else:
            others[status] = others.get(status, 0) + 1
    return completed, others


def others_text(others: dict[str, int]) -> str:
    """`2 failed, 1 interrupted`: the runs left out of means, per status ('' when none)."""
    return ", ".join(f"{n} {status}" for status, n in sorted(others.items()) if n)


@dataclass(frozen=True)
class Trend:
    """The mean of a metric along an axis: one entry per parameter value or per bin."""

    x: list[float]
    """Where each mean is drawn: the value, or the mean position of the bin's runs."""
    mean: list[float]
    std: list[float]
    n: list[int]
    """Runs behind each mean."""
    low: list[float]
    high: list[float]
    """The value, or the bounds of the bin."""
    binned: bool


def trend(
    points: Sequence[tuple[float, float]], *, log: bool = False, binned: bool | None = None
) -> Trend:
    """The mean of y along x, per distinct x or, for many distinct x, per bin.

    `binned` forces the choice (a plot's lines share their axis's); by default it follows
    `continuous()`. Bins are of equal width along the axis (in log10 of x when `log`), about
    the square root of the distinct values in number; empty bins are left out.
    """
    distinct = len({x for x, _ in points})
    if not (continuous(distinct) if binned is None else binned) or distinct < 2:
        return _per_value(points)
    return _per_bin(points, log, max(MIN_BINS, min(MAX_BINS, round(math.sqrt(distinct)))))


def _per_value(points: Sequence[tuple[float, float]]) -> Trend:
    by_x: dict[float, list[float]] = {}
    for x, y in points:
        by_x.setdefault(x, []).append(y)
    xs = sorted(by_x)
    stats = [spread(by_x[x]) for x in xs]
    return Trend(
        x=xs,
        mean=[m for m, _ in stats],
        std=[s for _, s in stats],
        n=[len(by_x[x]) for x in xs],
        low=xs,
        high=xs,
        binned=False,
    )


def _per_bin(points: Sequence[tuple[float, float]], log: bool, bins: int) -> Trend:
    def position(x: float) -> float:
        return math.log10(x) if log else x

    def value(p: float) -> float:
        return 10**p if log else p

    first = min(position(x) for x, _ in points)
    width = (max(position(x) for x, _ in points) - first) / bins
    members: dict[int, list[tuple[float, float]]] = {}
    for x, y in points:
        slot = min(bins - 1, int((position(x) - first) / width)) if width > 0 else 0
        members.setdefault(slot, []).append((position(x), y))
    slots = sorted(members)
    stats = [spread([y for _, y in members[s]]) for s in slots]
    return Trend(
        x=[value(statistics.fmean(p for p, _ in members[s])) for s in slots],
        mean=[m for m, _ in stats],
        std=[s for _, s in stats],
        n=[len(members[s]) for s in slots],
        low=[value(first + s * width) for s in slots],
        high=[value(first + (s + 1) * width) for s in slots],
        binned=True,
    )
