"""`Columnar`: runs held as a runs table (`metalab.runs_table`), records read when touched.

Tables, frames and selections read the table's columns; a run's whole record (its error,
artifacts, provenance, stepped metrics) is read from the store only for the runs a user
touches, so loading a million runs costs what their table costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import runs_table
from ..contracts import Record, Store
from ..record import paused_gc
from .sources import Positions, RecordSource

PAGE = 256
"""Records read at once while runs are read in order."""


class Columnar(RecordSource):
    """The runs of a runs table; each run's record is read from `store` when first needed."""

    def __init__(self, table: Any, store: Store | None):
        self.table = table
        self.store = store
        self._rows: list[Record] | None = None
        self._records: list[Record] | None = None
        self._run_ids: list[str] | None = None
        self._read: dict[int, Record | None] = {}  # records read so far, by position
        self._last = -2  # the position last asked for

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def run_ids(self) -> list[str]:
        """The run ids, in order."""
        if self._run_ids is None:
            self._run_ids = self.table.column("run_id").to_pylist()
        return self._run_ids

    def records(self) -> list[Record]:
        if self._records is None:
            ids = self.run_ids()
            with paused_gc():
                got = {} if self.store is None else _by_id(self.store.get_records(ids))
                # a run whose record is gone since the table was read keeps its row
                self._records = [got.get(run_id) or self.row_at(i) for i, run_id in enumerate(ids)]
        return self._records

    def rows(self) -> Sequence[Record]:
        if self._rows is None:
            with paused_gc():
                self._rows = runs_table.rows(self.table)
        return self._rows

    def record_at(self, position: int) -> Record:
        if self._records is not None:
            return self._records[position]
        if position not in self._read:
            # one run touched: its record; runs read in order (iterating): a page at a time,
            # so a database answers a query per page, not per run
            count = PAGE if position == self._last + 1 else 1
            ids = self.run_ids()[position : position + count]
            got = {} if self.store is None else _by_id(self.store.get_records(ids))
            self._read.update((position + k, got.get(run_id)) for k, run_id in enumerate(ids))
        self._last = position
        record = self._read[position]
        return record if record is not None else self.row_at(position)

    def row_at(self, position: int) -> Record:
        if self._rows is not None:
            return self._rows[position]
        return runs_table.rows(self.table.slice(position, 1))[0]

    def take(self, positions: Positions) -> RecordSource:
        if isinstance(positions, slice):
            positions = range(*positions.indices(len(self)))
        import pyarrow as pa

        indices = pa.array(positions, type=pa.int64())
        return Columnar(self.table.take(indices), self.store)

    def field(self, name: str) -> list[Any]:
        return runs_table.record_column(self.table, name)

    def values(self, kind: str, name: str) -> list[Any]:
        return runs_table.values(self.table, kind, name)

    def names(self, kind: str) -> list[str]:
        if kind == "series":
            return super().names(kind)
        return runs_table.names(self.table, kind)

    def frame(self, *, include_record: bool, include_params: bool, include_metrics: bool):
        return runs_table.frame(
            self.table,
            include_record=include_record,
            include_params=include_params,
            include_metrics=include_metrics,
        )

    def series_of(self) -> list[dict[str, Any] | None]:
        kept = runs_table.series_of(self.table)
        return super().series_of() if kept is None else kept

    def to_arrow(self) -> Any:
        return runs_table.without_store_columns(self.table, series=False)


def _by_id(records: Any) -> dict[str, Record]:
    return {record["run_id"]: record for record in records}
