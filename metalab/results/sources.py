"""Where the runs of a `Results` come from, and what its tables and selections read of them.

Three sources:

- `InMemory`: records held in memory, or entries decoded when the records are first read (a
  sweep's outcomes as the workers sent them, records' JSON bytes);
- `Journaled`: a file store's journal load (`JournalStore.load_records`): records' bytes, each
  with the row a table reads, so tables and selections by params, metrics and status decode
  no record;
- `DatabaseSelection`: the records a database store selects (`QueryStore.query_records`),
  fetched when first needed, so selections made before then run in the database.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..contracts import QueryStore, Record
from ..record import decode_record, paused_gc

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

    def narrowed(
        self,
        *,
        params: Mapping[str, Any] | None = None,
        metric_filters: Sequence[tuple[str, str, float]] = (),
        status: str | None = None,
    ) -> Query:
        """Return this query with more conditions (a new `status` replaces none)."""
        return Query(
            self.experiment_id,
            {**self.params, **(params or {})},
            (*self.metric_filters, *metric_filters),
            self.status if status is None else status,
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
        records = self.records() if kind == "series" else self.rows()
        # runs of a sweep share their key sets: collect each distinct set once
        sets = dict.fromkeys(tuple(r.get(kind) or ()) for r in records)
        return list(dict.fromkeys(name for names in sets for name in names))


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
    """The records a database store selects by a query, fetched when first needed."""

    def __init__(self, store: QueryStore, query: Query):
        self.store = store
        self._query = query
        self._fetched: list[Record] | None = None

    def __len__(self) -> int:
        return len(self.records())

    def records(self) -> list[Record]:
        if self._fetched is None:
            query = self._query
            with paused_gc():
                self._fetched = list(
                    self.store.query_records(
                        experiment_id=query.experiment_id,
                        params=dict(query.params),
                        metric_filters=list(query.metric_filters),
                        status=query.status,
                    )
                )
        return self._fetched

    def query(self) -> Query | None:
        return self._query if self._fetched is None else None

    def by_query(self, query: Query) -> RecordSource:
        return DatabaseSelection(self.store, query)

    def names(self, kind: str) -> list[str]:
        if self._fetched is None:
            return list(self.store.field_names(self._query.experiment_id)[kind])
        return super().names(kind)
