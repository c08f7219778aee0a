"""`load_results`: a store's runs as `Results`, read the way the store declares it can."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

from .. import runs_table
from ..contracts import JournalStore, QueryStore, Record, Store, StoreCapabilities, TableStore
from ..errors import ValidationError, require
from ..record import paused_gc
from ..registry import open_store
from ..run_ids import RUN_ID_BYTES, RunIds
from ..validation import check_experiment_id, check_store
from .collection import Results
from .columnar import Columnar
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


def table_path(store: Any) -> Path:
    """The path of a file store's runs table, brought up to date: a Parquet file with one
    row per run (`run_id`, `experiment_id`, `index`, `replicate`, `status`, `duration`,
    `started_at`, `finished_at`, `param_<name>`, metrics by name), for pandas, polars or
    DuckDB to read directly. Columns named `_<name>` are the store's own bookkeeping."""
    check_store(store)
    opened = open_store(store, create=False)
    if not capabilities(opened).table:
        raise ValidationError(
            f"store {opened.public_locator!r} keeps no table file; "
            "`metalab.load_results(store).to_arrow()` gives its runs as an Arrow table "
            "(and `metalab export` writes one to a Parquet file)"
        )
    require("pyarrow", "pandas", "metalab.table_path()")
    return cast(TableStore, opened).table_file()


def sweep_results(store: Store, experiment_id: str, run_ids: Sequence[str]) -> Results:
    """The stored runs of `run_ids` (of experiment `experiment_id`), in that order; a run
    without a record is left out. What `RunHandle.result()` returns."""
    declared = capabilities(store)
    columnar = runs_table.available()
    if columnar and declared.table:
        table = cast(TableStore, store).load_table(experiment_id)
    elif columnar and declared.queries:
        table = cast(QueryStore, store).query_table(experiment_id)
    else:
        by_id = {r["run_id"]: r for r in store.get_records(run_ids)}
        return Results([by_id[r] for r in run_ids if r in by_id], store)
    return Results(Columnar(_in_order(table, run_ids), store), store)


def _in_order(table: Any, run_ids: Sequence[str]) -> Any:
    """The rows of `table` of `run_ids`, in that order (those it does not hold left out)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    wanted = _as_arrow(pa, run_ids)
    positions = pc.index_in(wanted, value_set=table.column("run_id"))
    return table.take(pc.drop_null(positions))


def _as_arrow(pa: Any, run_ids: Sequence[str]) -> Any:
    """`run_ids` as an Arrow string array; a sweep's packed ids without a string per id."""
    if not isinstance(run_ids, RunIds):
        return pa.array(list(run_ids), pa.string())
    import numpy as np

    width = RUN_ID_BYTES * 2
    text = run_ids.hex().encode("ascii")
    offsets = np.arange(0, len(text) + 1, width, dtype=np.int32)
    return pa.StringArray.from_buffers(len(run_ids), pa.py_buffer(offsets), pa.py_buffer(text))


def source_of(store: Store, experiment: str | None) -> RecordSource:
    """Return where the runs of `experiment` (all when None) in `store` are read from: a
    database selection, the store's runs table, a journal load, or every record read into
    memory."""
    declared = capabilities(store)
    columnar = runs_table.available()
    # a database selects by experiment id only: a bare name matches every version of it
    if declared.queries and (experiment is None or ":" in experiment):
        return DatabaseSelection(
            cast(QueryStore, store),
            Query(experiment_id=experiment),
            Columnar if columnar else None,
        )
    if declared.table and columnar:
        return Columnar(cast(TableStore, store).load_table(experiment), store)
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
