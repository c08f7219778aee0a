"""What the page keeps of a sweep's runs: their ids packed, and a bounded sample for the plot.

Run ids are kept as 16 bytes each in numpy arrays (`numpy.dtype("V16")`), never as one
string per run: the sweep's ids for telling its records from others of the same experiment,
and, for stores without columns, the ids of the records read so far. An id that is not 32
lowercase hexadecimal digits (one made elsewhere than `metalab._identity`) is packed as its
16-byte BLAKE2b digest, so the same id always packs the same way.

The plot's points are a `Sample`: at most `limits.MAX_SAMPLE` completed runs, those whose ids
are the smallest. Run ids are content hashes, so this is a uniform sample of the completed
runs, the same at every refresh while they do not change, and one that a new completed run
joins only by displacing a larger id.
"""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._identity import RUN_ID_LENGTH

ID = "V16"
"""The numpy dtype of a packed run id."""
_HEX = b"0123456789abcdef"


def _np() -> Any:
    import numpy as np

    return np


def pack_one(run_id: str) -> bytes:
    """The 16 bytes of `run_id`: its hexadecimal digits, or the digest of another string."""
    if len(run_id) == RUN_ID_LENGTH and not run_id.encode().translate(None, _HEX):
        return bytes.fromhex(run_id)
    return hashlib.blake2b(run_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def pack(run_ids: Iterable[str]) -> bytes:
    """Run ids packed, 16 bytes each back to back, in the order given."""
    return b"".join(map(pack_one, run_ids))


def as_ids(packed: bytes) -> Any:
    """Packed ids (16 bytes each) as a numpy array of `ID`, without a copy."""
    if len(packed) % 16:
        raise ValueError(f"{len(packed)} bytes are no whole number of packed run ids")
    return _np().frombuffer(packed, dtype=ID)


def column_ids(column: Any) -> Any:
    """A runs table's `run_id` column (Arrow strings) as a numpy array of `ID`.

    Read from the column's buffers when every id is 32 lowercase hexadecimal digits: no
    string is made per run."""
    import pyarrow as pa

    np = _np()
    ids = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    count = len(ids)
    if not count:
        return np.empty(0, dtype=ID)
    if not ids.null_count and str(ids.type) == "string":
        offsets = np.frombuffer(ids.buffers()[1], dtype=np.int32)[
            ids.offset : ids.offset + count + 1
        ]
        start = int(offsets[0])
        if np.array_equal(offsets, np.arange(start, start + RUN_ID_LENGTH * count + 1, 32)):
            text = memoryview(ids.buffers()[2])[start : start + RUN_ID_LENGTH * count]
            if _lowercase_hex(text):
                return np.frombuffer(binascii.unhexlify(text), dtype=ID)
    return as_ids(pack(str(r) for r in ids.to_pylist()))


def _lowercase_hex(text: memoryview) -> bool:
    """Whether `text` is lowercase hexadecimal digits only (checked a slice at a time: no
    copy of the whole text)."""
    step = 1 << 20
    return not any(
        text[at : at + step].tobytes().translate(None, _HEX) for at in range(0, len(text), step)
    )


def first_halves(ids: Any) -> Any:
    """The first 8 bytes of each packed id as unsigned integers, in the ids' byte order
    (a smaller integer is a smaller id string)."""
    return ids.view(">u8")[::2] if len(ids) else _np().empty(0, dtype=">u8")


class IdSet:
    """A sweep's run ids, packed (16 bytes a run), in the order the driver sent them.

    A driver sends every run id of its experiment in index order, so a record is the sweep's
    when the id at its index is its own: one look-up a record, and nothing more is kept. Ids
    found otherwise (some runs only, or in another order) are looked up in a sorted copy,
    made on the first such look-up."""

    def __init__(self, packed: bytes):
        self.by_index = as_ids(packed)
        self._first: Any = None
        self._second: Any = None
        self._unique_firsts = True

    def __len__(self) -> int:
        return len(self.by_index)

    def contains(self, ids: Any, index: Any = None) -> Any:
        """Whether each of `ids` (an array of `ID`) is in the set, as a numpy bool array;
        `index` (an int array, -1 for none) gives each id's run index, when known."""
        np = _np()
        if index is None or not len(self.by_index):
            return self._sorted_contains(ids)
        known = (index >= 0) & (index < len(self.by_index))
        at = np.where(known, index, 0)
        found = known & (_halves(self.by_index[at]) == _halves(ids)).all(axis=1)
        if not found.all():
            rest = ~found
            found[rest] = self._sorted_contains(ids[rest])
        return found

    def _sorted_contains(self, ids: Any) -> Any:
        np = _np()
        if not len(self.by_index) or not len(ids):
            return np.zeros(len(ids), dtype=bool)
        if self._first is None:
            halves = _halves(self.by_index)
            order = np.lexsort((halves[:, 1], halves[:, 0]))
            self._first = np.ascontiguousarray(halves[order, 0])
            self._second = np.ascontiguousarray(halves[order, 1])
            # no two ids sharing their first 8 bytes (all but certain for hashes): an id is
            # found by its first half, and checked by its second
            self._unique_firsts = not np.any(self._first[1:] == self._first[:-1])
        if not self._unique_firsts:
            return contains(np.sort(self.by_index), ids)
        wanted = _halves(ids)
        at = np.minimum(np.searchsorted(self._first, wanted[:, 0]), len(self._first) - 1)
        return (self._first[at] == wanted[:, 0]) & (self._second[at] == wanted[:, 1])


def _halves(ids: Any) -> Any:
    """Packed ids as an (n, 2) array of unsigned 64-bit integers."""
    return ids.view("<u8").reshape(-1, 2)


def contains(sorted_ids: Any, ids: Any) -> Any:
    """Whether each of `ids` is in `sorted_ids` (both arrays of `ID`), as a bool array."""
    np = _np()
    if not len(sorted_ids) or not len(ids):
        return np.zeros(len(ids), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return sorted_ids[at] == ids


def smallest(ids: Any, limit: int) -> Any:
    """The positions of the `limit` smallest of `ids` (an array of `ID`), smallest first."""
    np = _np()
    if len(ids) > limit:
        firsts = first_halves(ids)
        chosen = np.argpartition(firsts, limit - 1)[:limit] if limit else np.empty(0, int)
    else:
        chosen = np.arange(len(ids))
    return chosen[np.argsort(ids[chosen], kind="stable")]


@dataclass(frozen=True)
class Sample:
    """Completed runs the plot draws, as columns: at most `limits.MAX_SAMPLE` of them."""

    params: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    """Parameter name -> each sampled run's value (`MISSING` where a run lacks it)."""
    metrics: Mapping[str, Sequence[float | None]] = field(default_factory=dict)
    """Metric name -> each sampled run's value as a finite float (None where it has none)."""
    size: int = 0
    """Sampled runs."""

    @classmethod
    def of_rows(
        cls, rows: Sequence[tuple[Mapping[str, Any], Mapping[str, float]]], missing: Any
    ) -> Sample:
        """The sample of (params, finite metrics) rows, in their order."""
        params = {name: [missing] * len(rows) for row in rows for name in row[0]}
        metrics: dict[str, list[float | None]] = {
            name: [None] * len(rows) for row in rows for name in row[1]
        }
        for i, (values, numbers) in enumerate(rows):
            for name, value in values.items():
                params[name][i] = value
            for name, number in numbers.items():
                metrics[name][i] = number
        return cls(params=params, metrics=metrics, size=len(rows))

    def points(self, metric: str, param: str, missing: Any) -> list[tuple[Any, float]]:
        """(parameter value, metric value) of each sampled run that has both."""
        xs, ys = self.params.get(param), self.metrics.get(metric)
        if xs is None or ys is None:
            return []
        return [(x, y) for x, y in zip(xs, ys) if y is not None and x is not missing]
