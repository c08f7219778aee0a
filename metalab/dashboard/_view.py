"""The registry's entries, and what the page knows of each sweep's store."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .._aggregate import COMPLETED, finite
from ..contracts import Store
from ..locators import redact_password
from . import limits


@dataclass
class SweepEntry:
    """One sweep announced by a driver."""

    experiment_id: str
    store_locator: str
    total: int
    session: str
    run_ids: frozenset[str] | None = None
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
            "run_ids": None if self.run_ids is None else len(self.run_ids),
            "experiment_key": self.experiment_key,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }


@dataclass(frozen=True)
class Snapshot:
    """What a sweep's store held at one refresh."""

    counts: dict[str, int] = field(default_factory=dict)
    """Records of the sweep per status."""
    running: int = 0
    """Live claims of the sweep's session: runs executing now."""
    unread: int = 0
    """Records seen in the store but not read yet (large stores fill in over refreshes)."""
    params: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    rows: tuple[tuple[dict[str, Any], dict[str, float]], ...] = ()
    """(params, numeric metrics) of each completed run."""
    version: int = 0
    """Changes whenever `rows` or `counts` change."""
    error: str | None = None
    updated_at: float = field(default_factory=time.time)


class StoreView:
    """What the page knows of one sweep's records, refreshed incrementally from its store."""

    def __init__(self, entry: SweepEntry):
        self.entry = entry
        self.known: dict[str, tuple[bool, dict[str, Any] | None]] = {}
        """run id -> (completed marker seen, the record's summary or None if not this sweep's)."""
        self.snapshot = Snapshot()
        self.refreshed_at = -math.inf
        self.busy = False

    def refresh(self, open_store: Callable[[str], Store]) -> None:
        """Read what changed in the store and publish a new snapshot (runs in the thread)."""
        try:
            self.snapshot = self._read(open_store(self.entry.store_locator))
        except Exception as exc:  # noqa: BLE001 - shown on the page, retried next refresh
            self.snapshot = replace(self.snapshot, error=f"{type(exc).__name__}: {exc}")
        finally:
            self.refreshed_at = time.monotonic()
            self.busy = False

    def _read(self, store: Store) -> Snapshot:
        final, done = store.scan()
        if self.entry.run_ids is not None:
            final &= self.entry.run_ids
        gone = [run_id for run_id in self.known if run_id not in final]
        for run_id in gone:
            del self.known[run_id]
        stale = sorted(r for r in final if self.known.get(r, (None,))[0] != (r in done))
        for record in store.get_records(stale[: limits.MAX_READS]):
            run_id = record.get("run_id", "")
            self.known[run_id] = (run_id in done, _summary(record, self.entry.experiment_id))
        changed = bool(gone or stale)
        return self._snapshot(
            changed, max(0, len(stale) - limits.MAX_READS), _running(store, self.entry)
        )

    def _snapshot(self, changed: bool, unread: int, running: int) -> Snapshot:
        if not changed:
            return replace(
                self.snapshot, running=running, unread=unread, error=None, updated_at=time.time()
            )
        summaries = [s for _, s in self.known.values() if s is not None]
        params: dict[str, None] = {}
        metrics: dict[str, None] = {}
        for summary in summaries:
            params.update(dict.fromkeys(summary["params"]))
            metrics.update(dict.fromkeys(summary["metrics"]))
        return Snapshot(
            counts=dict(Counter(s["status"] for s in summaries)),
            running=running,
            unread=unread,
            params=tuple(params),
            metrics=tuple(metrics),
            rows=tuple((s["params"], s["metrics"]) for s in summaries if s["status"] == COMPLETED),
            version=self.snapshot.version + 1,
        )


def _summary(record: dict[str, Any], experiment_id: str) -> dict[str, Any] | None:
    """Status, params and numeric metrics of a record of `experiment_id`, else None."""
    if record.get("experiment_id") != experiment_id:
        return None
    metrics = {
        name: number
        for name, value in (record.get("metrics") or {}).items()
        if (number := finite(value)) is not None
    }
    return {
        "status": str(record.get("status")),
        "params": dict(record.get("params") or {}),
        "metrics": metrics,
    }


def _running(store: Store, entry: SweepEntry) -> int:
    try:
        claims = store.claims()
    except Exception:  # noqa: BLE001 - the records read are still worth showing
        return 0
    return sum(1 for owner in claims.values() if owner.get("session") == entry.session)
