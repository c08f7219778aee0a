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

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import runs_table
from .._aggregate import canonical
from ..runs_table import MISSING

if TYPE_CHECKING:
    from ..results import Results


class Columns(ABC):
    """Runs by column; `positions` are the runs' positions in the `Results` they came from."""

    def __init__(self, positions: Sequence[int]):
        self.positions = positions
        self._fields: dict[str, list[Any]] = {}
        self._values: dict[tuple[str, str], list[Any]] = {}
        self._codes: dict[tuple[str, str], tuple[Any, list[Any]]] = {}

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

    def numbers(self, kind: str, name: str) -> tuple[Any, Any] | None:
        """(each run's value as a float array, NaN where it is no finite number; whether
        each run has a value) of a column of plain numbers (`kind`: `record`, `params`,
        `metrics`), or None when the column is not one (then read it by value)."""
        return None

    def codes(self, kind: str, name: str) -> tuple[Any, list[Any]]:
        """(each run's code, -1 where it has no value; the value of each code) of
        parameter or metric `name`: runs with equal values share a code."""
        key = (kind, name)
        if key not in self._codes:
            self._codes[key] = self._codes_of(kind, name)
        return self._codes[key]

    def _codes_of(self, kind: str, name: str) -> tuple[Any, list[Any]]:
        import numpy as np

        found: dict[Any, int] = {}
        values: list[Any] = []
        codes = []
        for value in self.values(kind, name):
            if value is MISSING:
                codes.append(-1)
                continue
            try:
                key: Any = (type(value), value)
                code = found.get(key)
            except TypeError:  # unhashable (a list, a dict): by its text
                key = ("text", canonical(value))
                code = found.get(key)
            if code is None:
                code = found[key] = len(values)
                values.append(value)
            codes.append(code)
        return np.asarray(codes, dtype=np.int64), values

    def time_layouts(self, name: str) -> list[tuple[str, str]]:
        """(earliest, latest) text of the ISO 8601 times of record column `name` per
        layout (length, date-time separator, UTC offset): times of one layout sort as text."""
        layouts: dict[tuple[int, str, str], list[str]] = {}
        for value in self.field(name):
            if isinstance(value, str) and value:
                layouts.setdefault(_layout(value), []).append(value)
        return [(min(texts), max(texts)) for texts in layouts.values()]

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

    def numbers(self, kind: str, name: str) -> tuple[Any, Any] | None:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        if kind == "record":
            field = self.table.schema.field(name)
        else:
            field = runs_table.field_named(self.table, kind, name)
            if field is None:
                return None
        plain = (pa.float64(), pa.int64(), pa.bool_(), pa.null())
        if field.type not in plain or (field.metadata or {}).get(runs_table.JSON):
            return None
        column = self.table.column(field.name)
        array = np.array(pc.cast(column, pa.float64(), safe=False).to_numpy(), dtype=float)
        array[~np.isfinite(array)] = np.nan
        return array, np.asarray(column.is_valid().to_numpy(), dtype=bool)

    def _codes_of(self, kind: str, name: str) -> tuple[Any, list[Any]]:
        import numpy as np

        field = runs_table.field_named(self.table, kind, name)
        if field is None:
            return np.full(len(self), -1, dtype=np.int64), []
        encoded = self.table.column(field.name).combine_chunks().dictionary_encode()
        codes = np.asarray(encoded.indices.fill_null(-1).to_numpy(), dtype=np.int64)
        values = encoded.dictionary.to_pylist()
        if (field.metadata or {}).get(runs_table.JSON):
            values = [json.loads(v) for v in values]
        return codes, values

    def time_layouts(self, name: str) -> list[tuple[str, str]]:
        import pyarrow as pa
        import pyarrow.compute as pc

        column = self.table.column(name)
        if column.type != pa.string() or (self.table.schema.field(name).metadata or {}).get(
            runs_table.JSON
        ):
            return super().time_layouts(name)
        column = column.filter(pc.greater(pc.utf8_length(column), 0))
        last6 = pc.utf8_slice_codeunits(column, -6)
        signed = pc.and_(
            pc.greater(pc.utf8_length(column), 6), pc.match_substring_regex(last6, "^[+-]")
        )
        keys = pa.table(
            {
                "text": column,
                "length": pc.utf8_length(column),
                "separator": pc.utf8_slice_codeunits(column, 10, 11),
                "zone": pc.if_else(signed, last6, pc.utf8_slice_codeunits(column, -1)),
            }
        )
        found = keys.group_by(["length", "separator", "zone"]).aggregate(
            [("text", "min"), ("text", "max")]
        )
        return list(zip(found["text_min"].to_pylist(), found["text_max"].to_pylist()))

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


def _layout(text: str) -> tuple[int, str, str]:
    zone = text[-6:] if len(text) > 6 and text[-6] in "+-" else text[-1]
    return len(text), text[10:11], zone


def present(values: list[Any]) -> list[Any]:
    """`values` with None where a run has no value."""
    return [None if v is MISSING else v for v in values]
