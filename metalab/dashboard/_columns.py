"""A sweep's counts and plot sample from a runs table (`metalab.runs_table`), in bulk.

Stores that give an experiment's runs back as columns (a file store's table, PostgreSQL's
queries) are read this way: one table per refresh, counted with Arrow, and only the sampled
runs' parameters and metrics made into Python values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import runs_table
from .._aggregate import COMPLETED, finite
from ..contracts import QueryStore, Store, TableStore
from ._sample import IdSet, Sample, column_ids, smallest


@dataclass(frozen=True)
class Read:
    """What one read of a sweep's records found."""

    counts: dict[str, int]
    params: tuple[str, ...]
    metrics: tuple[str, ...]
    sampled_ids: bytes
    """The sampled runs' ids, packed: tells whether the sample changed."""
    sample: Callable[[], Sample]
    """Make the sample (only when it changed: it makes a few thousand Python values)."""


def table_reader(store: Store) -> Callable[[str], Any] | None:
    """How to read an experiment's runs as a table from `store`, or None when it cannot."""
    if store.capabilities.table and isinstance(store, TableStore):
        return store.load_table
    if store.capabilities.queries and isinstance(store, QueryStore):
        return lambda experiment_id: store.query_table(experiment_id)
    return None


def read_table(table: Any, members: IdSet | None, limit: int) -> Read:
    """The counts per status of `table`'s runs that are `members` (all when None), and a
    sample of at most `limit` of its completed runs."""
    import pyarrow.compute as pc

    ids = column_ids(table.column("run_id"))
    if members is not None:
        mine = members.contains(ids, _indices(table.column("index")))
        if not mine.all():
            table, ids = table.filter(mine), ids[mine]
    status = table.column("status")
    counts = {
        str(item["values"]): int(item["counts"])
        for item in pc.value_counts(status).to_pylist()
        if item["values"] is not None
    }
    # (a pattern, not a Python string made an Arrow scalar: that conversion imports pandas)
    is_completed = pc.match_substring_regex(status, pattern=f"^{COMPLETED}$")
    completed = pc.fill_null(is_completed, False).to_numpy(zero_copy_only=False)
    done, done_ids = table.filter(completed), ids[completed]
    chosen = smallest(done_ids, limit)
    sampled = done.take(chosen)
    return Read(
        counts=counts,
        params=tuple(runs_table.names(table, "params")),
        metrics=tuple(runs_table.names(table, "metrics")),
        sampled_ids=done_ids[chosen].tobytes(),
        sample=lambda: _sample_of(sampled),
    )


def _indices(column: Any) -> Any:
    """The run index of each row as a numpy array (-1 for none), or None when the column
    holds something else than integers (a table of a store written by hand)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_integer(column.type):
        return None
    return pc.fill_null(column, -1).to_numpy()


def _sample_of(table: Any) -> Sample:
    """The parameters and finite metrics of every run of `table` (a few thousand at most)."""
    params = {
        name: runs_table.values(table, "params", name) for name in runs_table.names(table, "params")
    }
    metrics = {
        name: [finite(v) for v in runs_table.values(table, "metrics", name)]
        for name in runs_table.names(table, "metrics")
    }
    return Sample(params=params, metrics=metrics, size=table.num_rows)
