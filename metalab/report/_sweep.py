"""The records of a report and what is derived from them once, without bokeh."""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .._aggregate import canonical, continuous, is_number, log_axis, others_text, split_by_status
from .._aggregate import finite as _number

STATUS_COLORS = {
    "completed": "#2ca02c",
    "failed": "#d62728",
    "interrupted": "#ff7f0e",
    "cancelled": "#7f7f7f",
}


@dataclass
class Param:
    """A parameter of the sweep: its distinct values (first seen first) and their kind."""

    name: str
    values: dict[str, Any] = field(default_factory=dict)
    """Canonical key -> value."""

    @property
    def numeric(self) -> bool:
        """Whether every value is a number (not a bool): the axis is then continuous."""
        return all(is_number(v) for v in self.values.values())

    @property
    def binned(self) -> bool:
        """Whether a numeric parameter takes so many values (a random search) that its trend
        is drawn per bin of the axis rather than per value."""
        return self.numeric and continuous(len(self.values))

    @property
    def swept(self) -> bool:
        """Whether the parameter takes more than one value."""
        return len(self.values) > 1

    @property
    def log_scale(self) -> bool:
        """Whether a numeric parameter spans two decades or more of positive values."""
        return self.numeric and log_axis(float(v) for v in self.values.values())

    def factors(self) -> list[str]:
        """Axis labels of a categorical parameter, in first-seen order, all distinct."""
        labels = [label(v) for v in self.values.values()]
        return labels if len(set(labels)) == len(labels) else list(self.values)

    def factor_map(self) -> dict[str, str]:
        """Canonical key of each value -> its axis label among `factors()`."""
        return dict(zip(self.values, self.factors()))


@dataclass
class Sweep:
    """The records of a report and what is derived from them once (names, kinds, counts)."""

    records: list[dict[str, Any]]
    locator: str | None = None
    params: list[Param] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    series: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, results: Any) -> Sweep:
        """Collect the records of a `Results` (or an iterable of records) and their names."""
        if hasattr(results, "records"):
            records = list(results.records)
        else:
            records = [dict(r) for r in results]
        store = getattr(results, "store", None)
        locator = getattr(store, "public_locator", None) or getattr(store, "locator", None)
        if isinstance(locator, str):
            from ..locators import redact_password

            locator = redact_password(locator)
        sweep = cls(records, locator if isinstance(locator, str) else None)
        sweep._collect()
        return sweep

    def _collect(self) -> None:
        params: dict[str, Param] = {}
        metrics: dict[str, None] = {}
        series: dict[str, None] = {}
        for record in self.records:
            for name, value in (record.get("params") or {}).items():
                params.setdefault(name, Param(name)).values.setdefault(key(value), value)
            metrics.update(dict.fromkeys(record.get("metrics") or {}))
            series.update(dict.fromkeys(record.get("series") or {}))
        for record in self.records:  # a parameter missing from some records is None there
            for name, param in params.items():
                if name not in (record.get("params") or {}):
                    param.values.setdefault(key(None), None)
        self.params = list(params.values())
        self.metrics = list(metrics)
        self.series = list(series)

    @property
    def swept(self) -> list[Param]:
        """Parameters that take more than one value."""
        return [p for p in self.params if p.swept]

    @property
    def completed(self) -> list[dict[str, Any]]:
        """The completed runs' records: what means, spreads and trends are computed over."""
        return split_by_status(self.records)[0]

    def left_out(self) -> str:
        """The runs that did not complete, per status (`2 failed, 1 interrupted`), or ''."""
        return others_text(split_by_status(self.records)[1])

    def by_experiment(self) -> list[Sweep]:
        """One sweep per experiment id, the one with the latest finished run first."""
        groups: dict[str, list[dict[str, Any]]] = {}
        for record in self.records:
            groups.setdefault(str(record.get("experiment_id", "")), []).append(record)
        parts = []
        for records in groups.values():
            part = Sweep(records, self.locator)
            part._collect()
            parts.append(part)
        return sorted(parts, key=_recency, reverse=True)

    @property
    def experiments(self) -> list[str]:
        """Experiment ids, sorted."""
        return sorted({str(r.get("experiment_id", "")) for r in self.records})

    def numeric_metrics(self) -> set[str]:
        """Metrics with at least one numeric (or bool) value in a completed run."""
        return {
            name
            for record in self.completed
            for name, value in (record.get("metrics") or {}).items()
            if _number(value) is not None
        }

    def status_counts(self) -> dict[str, int]:
        """Runs per status, completed first, then the other known statuses, then any other."""
        counts = Counter(str(r.get("status", "unknown")) for r in self.records)
        order = [s for s in STATUS_COLORS if s in counts]
        return {s: counts[s] for s in [*order, *sorted(set(counts) - set(order))]}

    def not_completed(self) -> list[dict[str, Any]]:
        """Records whose status is not `completed`."""
        return [r for r in self.records if r.get("status") != "completed"]

    def default_title(self) -> str:
        """`metalab report: <experiment ids>`."""
        experiments = self.experiments
        if not experiments:
            return "metalab report"
        shown = ", ".join(experiments[:3]) + (" ..." if len(experiments) > 3 else "")
        return f"metalab report: {shown}"

    def time_span(self) -> tuple[_dt.datetime, _dt.datetime] | None:
        """(first start, last finish) over the runs that have times."""
        starts = [t for r in self.records if (t := parse_time(r.get("started_at"))) is not None]
        ends = [t for r in self.records if (t := parse_time(r.get("finished_at"))) is not None]
        if not starts or not ends:
            return None
        return min(starts), max(ends)

    def total_duration(self) -> float:
        """Seconds the operations ran, summed over runs."""
        return sum(d for r in self.records if (d := _number(r.get("duration"))) is not None)


def _recency(sweep: Sweep) -> tuple[str, str]:
    span = sweep.time_span()
    return ("" if span is None else span[1].isoformat(), sweep.experiments[0])


key = canonical
"""A canonical, hashable key of a parameter value (`1`, `1.0` and `True` stay distinct)."""


def label(value: Any) -> str:
    """Show a parameter or metric value as short text."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.6g}"
    if value is None or isinstance(value, (bool, int)):
        return str(value)
    return key(value)


def parse_time(value: Any) -> _dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = _dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.UTC)
