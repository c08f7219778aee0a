"""Where the runs of a `Results` come from, and what its tables and selections read of them.

Four sources:

- `InMemory`: records held in memory, or entries decoded when the records are first read (a
  sweep's outcomes as the workers sent them, records' JSON bytes);
- `Journaled`: a file store's journal load (`JournalStore.load_records`): records' bytes, each
  with the row a table reads, so tables and selections by params, metrics and status decode
  no record;
- `DatabaseSelection`: the runs a database store selects (`QueryStore.query_table`),
  fetched when first needed, so selections made before then run in the database;
- `Columnar` (`metalab.results.columnar`): a runs table (`metalab.runs_table`), whose records
  are read from the store only for the runs a user touches.

Tables and selections read a source by column (`field`, `values`, `frame`), so a columnar
source never builds a row per run for them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import runs_table
from ..contracts import QueryStore, Record
from ..record import RECORD_COLUMNS, decode_record, paused_gc
from ..runs_table import MISSING

Positions = slice | Sequence[int]
"""Which runs of a source to take: a slice, or positions in the order wanted."""


def decoded(entry: Any) -> Record:
    """Return the record of an entry a source holds: a record, its JSON bytes, or a sweep's
    outcome (whose `record` decodes it)."""
    if isinstance(entry, dict):
        return entry
    if isinstance(entry, bytes):
        return decode_record(entry)
    return entry.record


def _pick(items: list[Any], positions: Positions) -> list[Any]:
    if isinstance(positions, slice):
        return items[positions]
    return [items[i] for i in positions]


@dataclass(frozen=True)
class Query:
    """A selection of records a database answers: the arguments of `query_records`."""

    experiment_id: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    metric_filters: tuple[tuple[str, str, float], ...] = ()
    status: str | None = None
    near: Mapping[str, float] = field(default_factory=dict)
    """Parameters within a relative 1e-9 of a number: a superset of `filter`'s equality,
    which the selection then applies in memory."""

    def narrowed(
        self,
        *,
        params: Mapping[str, Any] | None = None,
        metric_filters: Sequence[tuple[str, str, float]] = (),
        status: str | None = None,
        near: Mapping[str, float] | None = None,
    ) -> Query:
        """Return this query with more conditions (a new `status` replaces none)."""
        return Query(
            self.experiment_id,
            {**self.params, **(params or {})},
            (*self.metric_filters, *metric_filters),
            self.status if status is None else status,
            {**self.near, **(near or {})},
        )


class RecordSource(ABC):
    """The runs of a `Results`: their records, and the rows its tables and selections read."""

    @abstractmethod
    def __len__(self) -> int:
        """Return how many runs there are."""

    @abstractmethod
    def records(self) -> list[Record]:
        """Return every record, decoded or fetched the first time (the same list after)."""

    def rows(self) -> Sequence[Record]:
        """Return, one per run, what tables and selections read (a run's `params`, `metrics`,
        `status` and record columns): the records, unless cheaper rows hold those."""
        return self.records()

    def record_at(self, position: int) -> Record:
        """Return the record at `position`, decoding no other where that can be avoided."""
        return self.records()[position]

    def take(self, positions: Positions) -> RecordSource:
        """Return the runs at `positions`, in that order."""
        return InMemory(_pick(self.records(), positions))

    def query(self) -> Query | None:
        """Return the query a database still answers for these runs, or None when they are
        selected in memory."""
        return None

    def by_query(self, query: Query) -> RecordSource:
        """Return the runs the database selects by `query`; only a source whose `query()`
        is not None selects in a database (TypeError otherwise)."""
        raise TypeError(f"{type(self).__name__} selects runs in memory, not in a database")

    def names(self, kind: str) -> list[str]:
        """Return the names of `kind` (`params`, `metrics` or `series`) the runs have, in
        order of first appearance."""
        if kind == "series":
            values: Sequence[Any] = self.series_of()
        else:
            values = [r.get(kind) for r in self.rows()]
        # runs of a sweep share their key sets: collect each distinct set once
        sets = dict.fromkeys(tuple(v or ()) for v in values)
        return list(dict.fromkeys(name for names in sets for name in names))

    def has_names(self, kind: str, names: Iterable[str]) -> bool:
        """Whether the runs have every one of `names` among their `kind`."""
        return set(names) <= set(self.names(kind))

    def series_of(self) -> list[dict[str, Any] | None]:
        """Return each run's stepped metrics (`{name: {"steps", "values"}}`, or None)."""
        return [r.get("series") or None for r in self.records()]

    def row_at(self, position: int) -> Record:
        """Return the row (see `rows`) at `position`."""
        return self.rows()[position]

    def field(self, name: str) -> list[Any]:
        """Return each run's value of the record column `name` (None where it has none)."""
        return [row.get(name) for row in self.rows()]

    def values(self, kind: str, name: str) -> list[Any]:
        """Return each run's value of parameter or metric (`kind`: `params` or `metrics`)
        `name`, `runs_table.MISSING` where a run has none."""
        return [(row.get(kind) or {}).get(name, MISSING) for row in self.rows()]

    def frame(self, *, include_record: bool, include_params: bool, include_metrics: bool):
        """Return the record columns, `param_<name>` and metric columns of the runs as a
        DataFrame (what `Results.to_dataframe()` starts from)."""
        import pandas as pd

        rows = self.rows()
        params = self.names("params") if include_params else []
        metrics = self.names("metrics") if include_metrics else []
        # pandas pulls the fields out of the dicts itself (much faster than a loop per column)
        parts = []
        taken: set[str] = set()
        if include_record:
            parts.append(pd.DataFrame.from_records(rows, columns=list(RECORD_COLUMNS)))
            taken.update(RECORD_COLUMNS)
        if params:
            frame = pd.DataFrame.from_records([r["params"] for r in rows], columns=params)
            parts.append(frame.add_prefix("param_"))
            taken.update(f"param_{p}" for p in params)
        if metrics:
            frame = pd.DataFrame.from_records(
                [r.get("metrics") or {} for r in rows], columns=metrics
            )
            # never hide a record column: a metric called like one becomes metric_<name>
            frame.columns = [f"metric_{m}" if m in taken else m for m in metrics]
            parts.append(frame)
        if not parts:
            return pd.DataFrame(index=range(len(rows)))
        return parts[0] if len(parts) == 1 else pd.concat(parts, axis=1)

    def to_arrow(self) -> Any:
        """Return the runs as a runs table (`metalab.runs_table`)."""
        return runs_table.from_rows(self.rows())


class InMemory(RecordSource):
    """Records in memory; entries that are no dict yet are decoded when records are read."""

    def __init__(self, entries: list[Any]):
        self.entries = entries
        self.decoded = all(isinstance(entry, dict) for entry in entries)

    def __len__(self) -> int:
        return len(self.entries)

    def records(self) -> list[Record]:
        if not self.decoded:
            with paused_gc():
                self.entries = [decoded(entry) for entry in self.entries]
            self.decoded = True
        return self.entries

    def take(self, positions: Positions) -> RecordSource:
        return InMemory(_pick(self.entries, positions))


class Journaled(InMemory):
    """A file store's journal load: entries (records' JSON bytes, or records read from their
    files) with, beside each, its row (`metalab.stores._journal.ROW_KEYS`)."""

    def __init__(self, entries: list[bytes | Record], rows: list[Record]):
        super().__init__(entries)
        self.table_rows = rows

    def rows(self) -> Sequence[Record]:
        # once decoded, the records: their user may have changed them
        return self.entries if self.decoded else self.table_rows

    def record_at(self, position: int) -> Record:
        entry = self.entries[position]
        return entry if self.decoded else decoded(entry)

    def take(self, positions: Positions) -> RecordSource:
        if self.decoded:
            return InMemory(_pick(self.entries, positions))
        return Journaled(_pick(self.entries, positions), _pick(self.table_rows, positions))


class DatabaseSelection(RecordSource):
    """The runs a database store selects by a query, fetched when first needed: as a runs
    table where pyarrow is installed (records then come from the database one run at a time,
    as they are touched), else as records."""

    def __init__(self, store: QueryStore, query: Query, columnar: Any = None):
        self.store = store
        self._query = query
        # how a fetched table becomes a source (`metalab.results.columnar.Columnar`), or None
        # to fetch records
        self._columnar = columnar
        self._fetched: RecordSource | None = None

    def fetched(self) -> RecordSource:
        """The selected runs, fetched the first time."""
        if self._fetched is None:
            query = self._query
            arguments: dict[str, Any] = dict(
                experiment_id=query.experiment_id,
                params=dict(query.params),
                metric_filters=list(query.metric_filters),
                status=query.status,
                near=dict(query.near),
            )
            with paused_gc():
                if self._columnar is not None:
                    self._fetched = self._columnar(self.store.query_table(**arguments), self.store)
                else:
                    self._fetched = InMemory(list(self.store.query_records(**arguments)))
        return self._fetched

    def __len__(self) -> int:
        return len(self.fetched())

    def records(self) -> list[Record]:
        return self.fetched().records()

    def rows(self) -> Sequence[Record]:
        return self.fetched().rows()

    def record_at(self, position: int) -> Record:
        return self.fetched().record_at(position)

    def row_at(self, position: int) -> Record:
        return self.fetched().row_at(position)

    def take(self, positions: Positions) -> RecordSource:
        return self.fetched().take(positions)

    def field(self, name: str) -> list[Any]:
        return self.fetched().field(name)

    def values(self, kind: str, name: str) -> list[Any]:
        return self.fetched().values(kind, name)

    def frame(self, *, include_record: bool, include_params: bool, include_metrics: bool):
        return self.fetched().frame(
            include_record=include_record,
            include_params=include_params,
            include_metrics=include_metrics,
        )

    def to_arrow(self) -> Any:
        return self.fetched().to_arrow()

    def series_of(self) -> list[dict[str, Any] | None]:
        return self.fetched().series_of()

    def query(self) -> Query | None:
        return self._query if self._fetched is None else None

    def by_query(self, query: Query) -> RecordSource:
        return DatabaseSelection(self.store, query, self._columnar)

    def names(self, kind: str) -> list[str]:
        if self._fetched is None:
            return list(self.store.field_names(self._query.experiment_id)[kind])
        return self._fetched.names(kind)

    def has_names(self, kind: str, names: Iterable[str]) -> bool:
        if self._fetched is None:  # a question per name, each answered at the first run
            experiment_id = self._query.experiment_id
            return all(self.store.has_field(kind, name, experiment_id) for name in set(names))
        return self._fetched.has_names(kind, names)
