"""The runs a report shows and what is derived from them once, without bokeh.

Counts, names, axes and every statistic come from the runs' columns (`_columns.Columns`);
whole records are read only for the runs the page shows in detail: those that did not
complete (their errors), and a sample spread evenly over the runs for stepped metrics and
provenance (`limits.MAX_SAMPLED_RUNS`, `limits.MAX_ERRORS_READ`).
"""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from .._aggregate import COMPLETED, Axis, canonical, evenly, others_text
from .._aggregate import finite as _number
from . import limits
from ._columns import Columns, Records, present

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


@dataclass(eq=False)
class Runs:
    """The runs of a report by column, and what is derived from them once (names, counts)."""

    columns: Columns
    records: Records
    locator: str | None = None
    params: list[Param] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, results: Results) -> Runs:
        """The runs of `results` and their names; the store is shown without secrets
        (results made without a store show none)."""
        store: Store | None = results.store
        locator = None if store is None else store.public_locator
        return cls.collect(Columns.of(results), Records(results), locator)

    @classmethod
    def collect(cls, columns: Columns, records: Records, locator: str | None) -> Runs:
        """The runs of `columns`, with their parameters and metrics."""
        params = [
            Param(name, Axis(distinct(*columns.codes("params", name))))
            for name in columns.names("params")
        ]
        return cls(columns, records, locator, params, columns.names("metrics"))

    @property
    def count(self) -> int:
        """How many runs there are."""
        return len(self.columns)

    def head(self, count: int) -> Runs:
        """The first `count` runs (their names and axes those of all the runs)."""
        return Runs(self.columns.head(count), self.records, self.locator, self.params, self.metrics)

    def record(self, row: int) -> dict[str, Any]:
        """The whole record of the run at `row` (read from the store the first time)."""
        return self.records.at(self.columns.positions[row])

    def field(self, name: str) -> list[Any]:
        """Each run's value of the record column `name` (None where it has none)."""
        return self.columns.field(name)

    def values(self, kind: str, name: str) -> list[Any]:
        """Each run's value of parameter or metric `name` (None where it has none)."""
        return present(self.columns.values(kind, name))

    @cached_property
    def statuses(self) -> list[str]:
        """Each run's status."""
        return _texts(self.field("status"), "unknown")

    @cached_property
    def completed_rows(self) -> list[int]:
        """Rows of the completed runs: what means, spreads and trends are computed over."""
        return [i for i, status in enumerate(self.statuses) if status == COMPLETED]

    def completed(self, kind: str, name: str) -> list[Any]:
        """The completed runs' values of parameter or metric `name` (None where none)."""
        values = self.columns.values(kind, name)
        return present([values[i] for i in self.completed_rows])

    @property
    def swept(self) -> list[Param]:
        """Parameters that take more than one value."""
        return [p for p in self.params if p.swept]

    def left_out(self) -> str:
        """The runs that did not complete, per status (`2 failed, 1 interrupted`), or ''."""
        return others_text({s: n for s, n in self.status_counts().items() if s != COMPLETED})

    def by_experiment(self) -> list[Runs]:
        """The runs of each experiment id, the one with the latest finished run first."""
        if len(set(self._experiment_ids)) <= 1:
            return [self]
        groups: dict[str, list[int]] = {}
        for row, experiment in enumerate(self._experiment_ids):
            groups.setdefault(experiment, []).append(row)
        parts = [
            Runs.collect(self.columns.take(rows), self.records, self.locator)
            for rows in groups.values()
        ]
        return sorted(parts, key=_recency, reverse=True)

    @cached_property
    def _experiment_ids(self) -> list[str]:
        return _texts(self.field("experiment_id"), "")

    @property
    def experiments(self) -> list[str]:
        """Experiment ids, sorted."""
        return sorted(set(self._experiment_ids))

    def numeric_metrics(self) -> set[str]:
        """Metrics with at least one numeric (or bool) value in a completed run."""
        return {name for name in self.metrics if len(self.completed_numbers("metrics", name)[0])}

    def status_counts(self) -> dict[str, int]:
        """Runs per status, completed first, then the other known statuses, then any other."""
        counts = Counter(self.statuses)
        order = [s for s in STATUS_COLORS if s in counts]
        return {s: counts[s] for s in [*order, *sorted(set(counts) - set(order))]}

    def not_completed(self) -> list[int]:
        """Rows of the runs whose status is not `completed`."""
        return [i for i, status in enumerate(self.field("status")) if status != COMPLETED]

    @cached_property
    def sample(self) -> list[dict[str, Any]]:
        """The whole records of at most `limits.MAX_SAMPLED_RUNS` runs spread evenly over
        them (every run's when there are no more): what curves and provenance show."""
        rows = evenly(range(self.count), limits.MAX_SAMPLED_RUNS)
        return [self.record(row) for row in rows]

    @property
    def sampled(self) -> bool:
        """Whether `sample` holds fewer runs than there are."""
        return len(self.sample) < self.count

    @cached_property
    def series(self) -> list[str]:
        """Stepped metrics of the sampled runs, in order of first appearance."""
        found: dict[str, None] = {}
        for record in self.sample:
            found.update(dict.fromkeys(record.get("series") or {}))
        return list(found)

    def default_title(self) -> str:
        """`metalab report: <experiment ids>`."""
        experiments = self.experiments
        if not experiments:
            return "metalab report"
        shown = ", ".join(experiments[:3]) + (" ..." if len(experiments) > 3 else "")
        return f"metalab report: {shown}"

    def time_span(self) -> tuple[_dt.datetime, _dt.datetime] | None:
        """(first start, last finish) over the runs that have times."""
        first = self._extreme("started_at", min)
        last = self._extreme("finished_at", max)
        if first is None or last is None:
            return None
        return first, last

    def _extreme(self, name: str, pick: Any) -> _dt.datetime | None:
        """The earliest (`pick=min`) or latest (`max`) time of record column `name`: of
        each layout of times only the extreme text is parsed, unless it does not parse."""
        side = 0 if pick is min else 1
        found = []
        for extremes in self.columns.time_layouts(name):
            time = parse_time(extremes[side])
            if time is None:  # that text is no time: parse every one
                times = [t for v in self.field(name) if (t := parse_time(v)) is not None]
                self.columns.forget(name)
                return pick(times) if times else None
            found.append(time)
        return pick(found) if found else None

    def total_duration(self) -> float:
        """Seconds the operations ran, summed over runs."""
        fast = self.columns.numbers("record", "duration")
        if fast is not None:
            values = fast[0]
            return sum(values[values == values].tolist())
        return sum(d for v in self.field("duration") if (d := _number(v)) is not None)

    def completed_numbers(self, kind: str, name: str) -> tuple[Any, int]:
        """The finite numbers (bools as 0/1) among the completed runs' values of `name`,
        in run order, and how many completed runs have a value (a number or not)."""
        fast = self.columns.numbers(kind, name)
        if fast is not None:
            rows = self._completed_array
            values, valid = fast[0][rows], fast[1][rows]
            return values[values == values], int(valid.sum())
        present = [v for v in self.completed(kind, name) if v is not None]
        return [n for v in present if (n := _number(v)) is not None], len(present)

    def completed_floats(self, kind: str, name: str) -> Any:
        """Each completed run's value of `name` as a finite float, NaN where it is none (an
        array)."""
        import numpy as np

        fast = self.columns.numbers(kind, name)
        if fast is not None:
            return fast[0][self._completed_array]
        nan = float("nan")
        values = self.completed(kind, name)
        return np.array([nan if (n := _number(v)) is None else n for v in values], dtype=float)

    def completed_ranks(self, param: Param) -> Any:
        """Each completed run's place on the axis of `param` (an array of ints)."""
        import numpy as np

        codes, values = self.columns.codes("params", param.name)
        places = {key: i for i, key in enumerate(param.values)}
        ranks = [_rank(param.axis, places, v) for v in [*values, None]]
        return np.asarray(ranks, dtype=np.int64)[codes[self._completed_array]]

    @cached_property
    def _completed_array(self) -> Any:
        import numpy as np

        return np.asarray(self.completed_rows, dtype=np.int64)


def distinct(codes: Any, values: list[Any]) -> dict[str, Any]:
    """Canonical key -> value of the distinct values of a parameter (`Columns.codes`: each
    run's code, the value of each code, first seen first), first seen first; a run without
    the parameter counts as None, after the others."""
    found: dict[str, Any] = {}
    for value in values:
        found.setdefault(canonical(value), value)
    if len(codes) and int(codes.min()) < 0:
        found.setdefault(canonical(None), None)
    return found


def _texts(values: list[Any], missing: str) -> list[str]:
    """Values of a record column as text (`missing` for None)."""
    if all(type(v) is str for v in values):
        return values
    return [missing if v is None else str(v) for v in values]


def _rank(axis: Axis, places: dict[str, int], value: Any) -> int:
    """The place of `value` on `axis` (`places`: each canonical key's), -1 for a value
    the axis does not hold."""
    place = places.get(canonical(value))
    if place is not None:
        return place
    # a value the axis holds under another text (0.0 and -0.0 are one value)
    for place, held in enumerate(axis.values.values()):
        if type(held) is type(value) and held == value:
            return place
    return -1


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
