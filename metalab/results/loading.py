"""`load_results`: a store's runs as `Results`, read the way the store declares it can."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar, cast

from ..contracts import JournalStore, QueryStore, Record, Store, StoreCapabilities
from ..record import paused_gc
from ..registry import open_store
from ..validation import check_experiment_id, check_store
from .collection import Results
from .sources import DatabaseSelection, InMemory, Journaled, Query, RecordSource

T = TypeVar("T")


def load_results(store: Any, experiment: str | None = None) -> Results:
    """Load the records of a store (all experiments, or one by name or `name:version`).

    From a database store (PostgreSQL) the records are fetched when first needed, so
    `load_results(locator).filter(...)` and `.where(...)` select in the database.
    """
    check_store(store)
    check_experiment_id(experiment)
    opened = open_store(store, create=False)
    return Results(source_of(opened, experiment), opened)


def source_of(store: Store, experiment: str | None) -> RecordSource:
    """Return where the runs of `experiment` (all when None) in `store` are read from: a
    database selection, a journal load, or every record read into memory."""
    declared = capabilities(store)
    # a database selects by experiment id only: a bare name matches every version of it
    if declared.queries and (experiment is None or ":" in experiment):
        return DatabaseSelection(cast(QueryStore, store), Query(experiment_id=experiment))
    if declared.journal:
        # the records writers' journals hold come as bytes, parsed only when first read,
        # with the fields a table needs beside them
        with paused_gc():
            pairs = _selected(cast(JournalStore, store).load_records(), experiment)
        return Journaled([entry for entry, _ in pairs], [row for _, row in pairs])
    with paused_gc():
        pairs = _selected(((r, r) for r in store.iter_records()), experiment)
    return InMemory([record for record, _ in pairs])


def capabilities(store: Store) -> StoreCapabilities:
    """Return what `store` declares it can do beyond the `Store` contract."""
    return store.capabilities


def _selected(pairs: Iterable[tuple[T, Record]], experiment: str | None) -> list[tuple[T, Record]]:
    """The (anything, record) pairs of one experiment (all when None), by experiment id, run
    index and run id (two versions of a grid under one experiment id share indices)."""
    selected = [
        pair
        for pair in pairs
        if experiment is None
        or pair[1].get("experiment_id") == experiment
        or pair[1].get("experiment_id", "").split(":", 1)[0] == experiment
    ]
    selected.sort(
        key=lambda p: (p[1].get("experiment_id", ""), p[1].get("index", 0), p[1].get("run_id", ""))
    )
    return selected
