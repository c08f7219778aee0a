"""The registry's entries, and what the page knows of each sweep's store."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .._aggregate import COMPLETED
from ..contracts import Store, TableStore
from ..locators import redact_password
from . import limits
from ._columns import read_table, table_reader
from ._records import RecordReader
from ._sample import IdSet, Sample


@dataclass
class SweepEntry:
    """One sweep announced by a driver."""

    experiment_id: str
    store_locator: str
    total: int
    session: str
    run_ids: bytes | None = None
    """The sweep's run ids packed, 16 bytes each (`_sample.pack`, or a driver's `RunIds.raw`):
    the page counts exactly these runs. None: every record of `experiment_id`."""
    experiment_key: str | None = None
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None

    @property
    def running(self) -> bool:
        """Whether the driver has not said the sweep ended."""
        return self.ended_at is None

    def describe(self) -> dict[str, Any]:
        """The entry as plain data (run ids counted, not listed)."""
        return {
            "experiment_id": self.experiment_id,
            "store_locator": redact_password(self.store_locator),
            "total": self.total,
            "session": self.session,
            "run_ids": None if self.run_ids is None else len(self.run_ids) // 16,
            "experiment_key": self.experiment_key,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }


@dataclass(frozen=True)
class Snapshot:
    """What a sweep's store held at one refresh."""

    counts: dict[str, int] = field(default_factory=dict)
    """Records of the sweep per status: exact, at any size."""
    running: int = 0
    """Live claims of the sweep's session: runs executing now."""
    unread: int = 0
    """Records seen in the store but not read yet (a store without columns fills in over
    refreshes)."""
    params: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    sample: Sample = field(default_factory=Sample)
    """Parameters and numeric metrics of at most `limits.MAX_SAMPLE` completed runs: all of
    them in a small sweep, a uniform sample in a large one."""
    version: int = 0
    """Changes whenever `sample` or `counts` change."""
    error: str | None = None
    updated_at: float = field(default_factory=time.time)

    @property
    def completed(self) -> int:
        """Completed runs of the sweep (exact)."""
        return self.counts.get(COMPLETED, 0)

    @property
    def sampled(self) -> bool:
        """Whether the plot's runs are a sample of fewer than the completed runs."""
        return self.sample.size < self.completed


class StoreView:
    """What the page knows of one sweep's records: counts and a bounded sample, refreshed
    from its store in the reading thread.

    A store that gives an experiment's runs back as columns is read as one table per
    refresh; any other store record by record (`_records`). Either way the view keeps no
    per-run Python object: the sweep's run ids packed (16 bytes a run, when the driver sent
    them) and, for a store without columns, 18 bytes per record read.
    """

    def __init__(self, entry: SweepEntry):
        self.entry = entry
        self.snapshot = Snapshot()
        self.refreshed_at = -math.inf
        self.took = 0.0
        """Seconds the last refresh took: a slow store is read less often (`due`)."""
        self.busy = False
        self._members: IdSet | None = None
        self._records = RecordReader()
        self._last: tuple[Any, ...] | None = None
        self._listed = False

    def due(self, now: float) -> bool:
        """Whether a refresh should start now: none is under way, and the last ended at
        least `limits.REFRESH_SECONDS`, and `limits.REFRESH_SPACING` times its own length,
        ago (so refreshes of a large store never keep the reading thread busy)."""
        wait = max(limits.REFRESH_SECONDS, limits.REFRESH_SPACING * self.took)
        return not self.busy and now - self.refreshed_at >= wait

    def refresh(self, open_store: Callable[[str], Store]) -> None:
        """Read the store and publish a new snapshot (runs in the thread)."""
        started = time.monotonic()
        try:
            self.snapshot = self._read(open_store(self.entry.store_locator))
        except Exception as exc:  # noqa: BLE001 - shown on the page, retried next refresh
            self.snapshot = replace(self.snapshot, error=f"{type(exc).__name__}: {exc}")
        finally:
            self.refreshed_at = time.monotonic()
            self.took = self.refreshed_at - started
            self.busy = False

    def _read(self, store: Store) -> Snapshot:
        members = self._sweep_ids()
        reader = table_reader(store)
        if reader is not None and not self._listed:
            self._listed = _holds_records(store)
            if not self._listed:
                reader = None
        if reader is not None:
            table = reader(self.entry.experiment_id)
            read, unread = read_table(table, members, limits.MAX_SAMPLE), 0
            del table
        else:
            read, unread = self._records.read(store, self.entry.experiment_id, members)
        running = _running(store, self.entry)
        key = (read.counts, read.params, read.metrics, read.sampled_ids)
        if key == self._last:
            return replace(
                self.snapshot, running=running, unread=unread, error=None, updated_at=time.time()
            )
        self._last = key
        return Snapshot(
            counts=read.counts,
            running=running,
            unread=unread,
            params=read.params,
            metrics=read.metrics,
            sample=read.sample(),
            version=self.snapshot.version + 1,
        )

    def _sweep_ids(self) -> IdSet | None:
        """The sweep's run ids (the entry's bytes, not copied), or None to count every record
        of the experiment."""
        if self._members is None and self.entry.run_ids is not None:
            self._members = IdSet(self.entry.run_ids)
        return self._members


def _holds_records(store: Store) -> bool:
    """Whether `store` is worth reading as a table: a file store's table is read once the
    store holds a record, since the table of a store without any (a sweep just started) is
    known (empty) and, read then, fails and is cached in a form its later reads fail on."""
    if not (store.capabilities.table and isinstance(store, TableStore)):
        return True
    return bool(store.completed_run_ids()) or bool(store.scan()[0])


def _running(store: Store, entry: SweepEntry) -> int:
    try:
        claims = store.claims()
    except Exception:  # noqa: BLE001 - the records read are still worth showing
        return 0
    return sum(1 for owner in claims.values() if owner.get("session") == entry.session)
