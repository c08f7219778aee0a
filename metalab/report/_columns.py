"""The runs of a report by column, and their whole records read only where the page needs them.

A report reads what each run's row holds (record columns, parameters, scalar metrics) as
columns of `Results.to_arrow()`, the runs table `Results.to_dataframe()` is made from: for a
store's columnar load that is the table it read, so no record is read for it. The values come
back exactly as the runs recorded them (an int stays an int, a run without a parameter stays
apart from a run whose value is None), so the page is the same as one made from the records.
Without pyarrow (the `pandas` extra) the columns are taken from the records themselves.

A run's whole record (its error, stepped metrics, provenance) is read from the store only for
the runs the page shows in detail (`Records`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import runs_table
from ..runs_table import MISSING

if TYPE_CHECKING:
    from ..results import Results


class Columns(ABC):
    """Runs by column; `positions` are the runs' positions in the `Results` they came from."""

    def __init__(self, positions: Sequence[int]):
        self.positions = positions
        self._fields: dict[str, list[Any]] = {}
        self._values: dict[tuple[str, str], list[Any]] = {}

    @staticmethod
    def of(results: Results) -> Columns:
        """The columns of `results` (a columnar load's own table where it has one)."""
        positions = range(len(results))
        if runs_table.available():
            return TableColumns(results.to_arrow(), positions)
        return RowColumns(results.records, positions)

    def __len__(self) -> int:
        return len(self.positions)

    def field(self, name: str) -> list[Any]:
        """Each run's value of the record column `name` (None where it has none)."""
        if name not in self._fields:
            self._fields[name] = self._field(name)
        return self._fields[name]

    def values(self, kind: str, name: str) -> list[Any]:
        """Each run's value of parameter or metric (`kind`: `params`, `metrics`) `name`,
        `MISSING` where a run has none."""
        key = (kind, name)
        if key not in self._values:
            self._values[key] = self._values_of(kind, name)
        return self._values[key]

    def forget(self, name: str) -> None:
        """Let go of the values of the record column `name` (read once, not kept)."""
        self._fields.pop(name, None)

    @abstractmethod
    def _field(self, name: str) -> list[Any]: ...

    @abstractmethod
    def _values_of(self, kind: str, name: str) -> list[Any]: ...

    @abstractmethod
    def names(self, kind: str) -> list[str]:
        """Names of `kind` (`params`, `metrics`) some run has, in order of first appearance."""

    @abstractmethod
    def take(self, rows: Sequence[int]) -> Columns:
        """The runs at `rows` (positions in these columns), in that order."""

    @abstractmethod
    def head(self, count: int) -> Columns:
        """The first `count` runs."""


class TableColumns(Columns):
    """Columns of a runs table (`metalab.runs_table`)."""

    def __init__(self, table: Any, positions: Sequence[int]):
        super().__init__(positions)
        self.table = table

    def _field(self, name: str) -> list[Any]:
        return runs_table.record_column(self.table, name)

    def _values_of(self, kind: str, name: str) -> list[Any]:
        return runs_table.values(self.table, kind, name)

    def names(self, kind: str) -> list[str]:
        return runs_table.names(self.table, kind)

    def take(self, rows: Sequence[int]) -> Columns:
        import pyarrow as pa

        taken = self.table.take(pa.array(rows, type=pa.int64()))
        return TableColumns(taken, [self.positions[i] for i in rows])

    def head(self, count: int) -> Columns:
        return TableColumns(self.table.slice(0, count), self.positions[:count])


class RowColumns(Columns):
    """Columns of records (or rows with `params` and `metrics`)."""

    def __init__(self, rows: Sequence[dict[str, Any]], positions: Sequence[int]):
        super().__init__(positions)
        self.rows = rows

    def _field(self, name: str) -> list[Any]:
        return [row.get(name) for row in self.rows]

    def _values_of(self, kind: str, name: str) -> list[Any]:
        return [(row.get(kind) or {}).get(name, MISSING) for row in self.rows]

    def names(self, kind: str) -> list[str]:
        sets = dict.fromkeys(tuple(row.get(kind) or ()) for row in self.rows)
        return list(dict.fromkeys(name for names in sets for name in names))

    def take(self, rows: Sequence[int]) -> Columns:
        return RowColumns([self.rows[i] for i in rows], [self.positions[i] for i in rows])

    def head(self, count: int) -> Columns:
        return RowColumns(self.rows[:count], self.positions[:count])


class Records:
    """Whole records of runs of a `Results`, read by position when first asked for."""

    def __init__(self, results: Results):
        self.results = results
        self._read: dict[int, dict[str, Any]] = {}

    def at(self, position: int) -> dict[str, Any]:
        """The record of the run at `position` of the results (read once)."""
        record = self._read.get(position)
        if record is None:
            record = self._read[position] = self.results[position].record
        return record


def present(values: list[Any]) -> list[Any]:
    """`values` with None where a run has no value."""
    return [None if v is MISSING else v for v in values]
