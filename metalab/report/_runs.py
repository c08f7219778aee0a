"""The runs a report shows and what is derived from them once, without bokeh."""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._aggregate import COMPLETED, Axis, canonical, others_text, split_by_status
from .._aggregate import finite as _number

if TYPE_CHECKING:
    from ..contracts import Store
    from ..results import Results

STATUS_COLORS = {
    "completed": "#2ca02c",
    "failed": "#d62728",
    "interrupted": "#ff7f0e",
    "cancelled": "#7f7f7f",
}


@dataclass(frozen=True)
class Param:
    """A parameter of the runs: its name and the axis of its distinct values."""

    name: str
    axis: Axis

    @property
    def values(self) -> dict[str, Any]:
        """Canonical key -> value, first seen first."""
        return self.axis.values

    @property
    def swept(self) -> bool:
        """Whether the parameter takes more than one value."""
        return len(self.values) > 1


@dataclass
class Runs:
    """The records of a report and what is derived from them once (names, kinds, counts)."""

    records: list[dict[str, Any]]
    locator: str | None = None
    params: list[Param] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    series: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, results: Results) -> Runs:
        """Collect the records of `results` and their names; the store is shown without
        secrets (results made without a store show none)."""
        store: Store | None = results.store
        return cls.collect(results.records, None if store is None else store.public_locator)

    @classmethod
    def collect(cls, records: list[dict[str, Any]], locator: str | None) -> Runs:
        """The runs of `records`, with their parameters, metrics and stepped metrics."""
        values: dict[str, dict[str, Any]] = {}
        metrics: dict[str, None] = {}
        series: dict[str, None] = {}
        for record in records:
            for name, value in (record.get("params") or {}).items():
                values.setdefault(name, {}).setdefault(canonical(value), value)
            metrics.update(dict.fromkeys(record.get("metrics") or {}))
            series.update(dict.fromkeys(record.get("series") or {}))
        for record in records:  # a parameter missing from some records is None there
            for name, found in values.items():
                if name not in (record.get("params") or {}):
                    found.setdefault(canonical(None), None)
        params = [Param(name, Axis(found)) for name, found in values.items()]
        return cls(records, locator, params, list(metrics), list(series))

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

    def by_experiment(self) -> list[Runs]:
        """The runs of each experiment id, the one with the latest finished run first."""
        groups: dict[str, list[dict[str, Any]]] = {}
        for record in self.records:
            groups.setdefault(str(record.get("experiment_id", "")), []).append(record)
        parts = [Runs.collect(records, self.locator) for records in groups.values()]
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
        return [r for r in self.records if r.get("status") != COMPLETED]

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


def _recency(runs: Runs) -> tuple[str, str]:
    span = runs.time_span()
    return ("" if span is None else span[1].isoformat(), runs.experiments[0])


def parse_time(value: Any) -> _dt.datetime | None:
    """An ISO 8601 time of a record as an aware datetime (UTC when it names no zone)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = _dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.UTC)
