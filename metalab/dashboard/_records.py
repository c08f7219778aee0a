"""A sweep's counts and plot sample from a store without columns: records read one by one.

Each refresh lists the store (`Store.scan`) and reads the records that are new or whose
completion changed since they were read, at most `limits.MAX_READS` of them (a large store
fills in over a few refreshes). What is kept of each record read is its packed id, a status
code and whether it was complete when read: 18 bytes a run, in numpy arrays. Parameters and
metrics are kept only for the sampled runs (`_sample`).
"""

from __future__ import annotations

import functools
from typing import Any

from .._aggregate import COMPLETED, finite
from ..contracts import Store
from ..runs_table import MISSING
from . import limits
from ._columns import Read
from ._sample import ID, IdSet, Sample, as_ids, contains, pack, pack_one

Row = tuple[dict[str, Any], dict[str, float]]
"""A sampled run: its parameters and finite metrics."""


class RecordReader:
    """What has been read of a store's records, kept compactly between refreshes."""

    def __init__(self) -> None:
        import numpy as np

        self.ids = np.empty(0, dtype=ID)
        """Ids of the records read, sorted."""
        self.codes = np.empty(0, dtype=np.uint8)
        """Per id: 0 for a record of another experiment, else 1 + its status's position in
        `statuses`."""
        self.marked = np.empty(0, dtype=bool)
        """Per id: whether the store listed it as completed when it was read."""
        self.statuses: list[str] = []
        self.params: dict[str, None] = {}
        self.metrics: dict[str, None] = {}
        self.rows: dict[bytes, Row] = {}
        """The sampled runs by packed id: the completed runs read with the smallest ids."""

    def read(self, store: Store, experiment_id: str, members: IdSet | None) -> tuple[Read, int]:
        """Read what changed; return what is known now and how many records are left unread."""
        import numpy as np

        final, done = store.scan()
        listed = sorted(final)
        ids = as_ids(pack(listed))
        if members is not None:
            mine = members.contains(ids)
            listed, ids = [r for r, m in zip(listed, mine) if m], ids[mine]
        complete = contains(np.sort(as_ids(pack(done))), ids)
        self._forget(np.sort(ids))
        stale = ~self._fresh(ids, complete)
        positions = np.flatnonzero(stale)
        wanted = [listed[i] for i in positions[: limits.MAX_READS]]
        self._take(store, wanted, complete[positions[: limits.MAX_READS]], experiment_id)
        return self._state(), max(0, len(positions) - limits.MAX_READS)

    def _forget(self, listed: Any) -> None:
        """Drop what was read of records no longer listed."""
        keep = contains(listed, self.ids)
        if not keep.all():
            self.ids, self.codes, self.marked = self.ids[keep], self.codes[keep], self.marked[keep]

    def _fresh(self, ids: Any, complete: Any) -> Any:
        """Whether each listed id was read with the completion it has now."""
        import numpy as np

        if not len(self.ids):
            return np.zeros(len(ids), dtype=bool)
        at = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        return (self.ids[at] == ids) & (self.marked[at] == complete)

    def _take(self, store: Store, run_ids: list[str], complete: Any, experiment_id: str) -> None:
        """Read `run_ids`' records and note them (`complete`: whether each was listed so)."""
        import numpy as np

        if not run_ids:
            return
        was = dict(zip(run_ids, complete.tolist()))
        packed, codes, marked = [], [], []
        rows: dict[bytes, Row] = {}
        for record in store.get_records(run_ids):
            run_id = str(record.get("run_id", ""))
            if run_id not in was:
                continue
            key = pack_one(run_id)
            code = self._code(record, experiment_id)
            packed.append(key)
            codes.append(code)
            marked.append(was[run_id])
            if code and self.statuses[code - 1] == COMPLETED:
                rows[key] = _row(record)
        new = as_ids(b"".join(packed))
        keep = ~contains(np.sort(new), self.ids)
        ids = np.concatenate([self.ids[keep], new])
        order = np.argsort(ids, kind="stable")
        self.ids = ids[order]
        self.codes = np.concatenate([self.codes[keep], np.array(codes, np.uint8)])[order]
        self.marked = np.concatenate([self.marked[keep], np.array(marked, bool)])[order]
        self._sample(rows)

    def _code(self, record: dict[str, Any], experiment_id: str) -> int:
        if record.get("experiment_id") != experiment_id:
            return 0
        status = str(record.get("status"))
        if status not in self.statuses:
            if len(self.statuses) == 255:
                status = "other"  # (255 statuses: a store of no metalab sweep)
            if status not in self.statuses:
                self.statuses.append(status)
        self.params.update(dict.fromkeys(record.get("params") or {}))
        self.metrics.update(dict.fromkeys(record.get("metrics") or {}))
        return self.statuses.index(status) + 1

    def _sample(self, new: dict[bytes, Row]) -> None:
        """Keep the `limits.MAX_SAMPLE` completed runs with the smallest ids."""
        import numpy as np

        rows = {**self.rows, **new}
        if rows and len(self.ids):
            keys = np.array(list(rows), dtype=ID)
            at = np.minimum(np.searchsorted(self.ids, keys), len(self.ids) - 1)
            still = (self.ids[at] == keys) & (self.codes[at] == self._completed_code())
            rows = {k: rows[k] for k, s in zip(rows, still.tolist()) if s}
        elif not len(self.ids):
            rows = {}
        self.rows = dict(sorted(rows.items())[: limits.MAX_SAMPLE])

    def _completed_code(self) -> int:
        return self.statuses.index(COMPLETED) + 1 if COMPLETED in self.statuses else -1

    def _state(self) -> Read:
        """The counts, names and sample of what has been read."""
        import numpy as np

        tally = np.bincount(self.codes, minlength=len(self.statuses) + 1)
        counts = {s: int(n) for s, n in zip(self.statuses, tally[1:].tolist()) if n}
        return Read(
            counts=counts,
            params=tuple(self.params),
            metrics=tuple(self.metrics),
            sampled_ids=b"".join(self.rows),
            sample=functools.partial(Sample.of_rows, list(self.rows.values()), MISSING),
        )


def _row(record: dict[str, Any]) -> Row:
    """A completed record's parameters and finite metrics."""
    metrics = {
        name: number
        for name, value in (record.get("metrics") or {}).items()
        if (number := finite(value)) is not None
    }
    return dict(record.get("params") or {}), metrics
