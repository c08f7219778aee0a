"""Run ids kept compactly: 16 bytes a run instead of a 32-character string.

A driver holds the run id of every run of its sweep, and deciding which runs are left compares
them with the ids of the completed records. As Python strings and sets a million ids take
hundreds of megabytes and seconds to build; as one `bytes` they take 16 MB, and the
comparisons run in numpy over 64-bit halves of the ids.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

RUN_ID_BYTES = 16
"""Bytes of a run id (32 hex digits, see `metalab._identity`)."""
_HEX_IDS = re.compile(r"[0-9a-f]*")


class RunIds(Sequence[str]):
    """A sweep's run ids in index order, kept as 16 bytes each.

    A driver holds the run ids of its sweep for as long as it runs: as a list of strings a
    million runs take about 100 MB, as one `bytes` 16 MB. An id is made back into its string
    when it is read.
    """

    __slots__ = ("_data",)

    def __init__(self, data: bytes):
        if len(data) % RUN_ID_BYTES:
            raise ValueError(f"{len(data)} bytes are no whole number of run ids")
        self._data = data

    @classmethod
    def of(cls, run_ids: Sequence[str]) -> Sequence[str]:
        """`run_ids` kept compactly, or as they are when they are not all 32 lowercase hex
        digits (ids made elsewhere than `metalab._identity`)."""
        if isinstance(run_ids, RunIds):
            return run_ids
        width = 2 * RUN_ID_BYTES
        if not all(isinstance(r, str) and len(r) == width for r in run_ids):
            return run_ids
        joined = "".join(run_ids)
        if _HEX_IDS.fullmatch(joined) is None:
            return run_ids
        return cls(bytes.fromhex(joined))

    def __len__(self) -> int:
        return len(self._data) // RUN_ID_BYTES

    @property
    def raw(self) -> bytes:
        """Every id, one after the other, 16 bytes each."""
        return self._data

    def hex(self) -> str:
        """Every id, one after the other, as one string (32 hexadecimal digits each)."""
        return self._data.hex()

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1:
                return RunIds(self._data[start * RUN_ID_BYTES : max(start, stop) * RUN_ID_BYTES])
            return [self[i] for i in range(start, stop, step)]
        n = len(self)
        i = index + n if index < 0 else index
        if not 0 <= i < n:
            raise IndexError(f"run index {index} out of range for {n} runs")
        return self._data[i * RUN_ID_BYTES : (i + 1) * RUN_ID_BYTES].hex()

    def __iter__(self) -> Iterator[str]:
        data, size = self._data, RUN_ID_BYTES
        for at in range(0, len(data), size):
            yield data[at : at + size].hex()

    def __contains__(self, run_id: object) -> bool:
        return self._find(run_id) >= 0

    def index(self, run_id: Any, start: int = 0, stop: int | None = None) -> int:
        """The index of `run_id` (the first, when ids repeat); ValueError when absent."""
        found = self._find(run_id, start, len(self) if stop is None else stop)
        if found < 0:
            raise ValueError(f"{run_id!r} is not a run id of this sweep")
        return found

    def _find(self, run_id: object, start: int = 0, stop: int | None = None) -> int:
        width = 2 * RUN_ID_BYTES
        if not isinstance(run_id, str) or len(run_id) != width or not _HEX_IDS.fullmatch(run_id):
            return -1
        raw, size = bytes.fromhex(run_id), RUN_ID_BYTES
        end = (len(self) if stop is None else min(stop, len(self))) * size
        at = self._data.find(raw, max(start, 0) * size, end)
        while at >= 0 and at % size:  # a match across two ids: look on
            at = self._data.find(raw, at + 1, end)
        return -1 if at < 0 else at // size

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RunIds):
            return self._data == other._data
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<RunIds of {len(self)} runs>"


def _halves(data: bytes) -> Any:
    """Ids (16 bytes each, back to back) as an (n, 2) array of their two 64-bit halves."""
    import numpy as np

    return np.frombuffer(data, dtype="<u8").reshape(-1, 2)


def repeated(ids: RunIds) -> int:
    """How many ids equal an earlier one."""
    import numpy as np

    halves = _halves(ids.raw)
    if len(halves) < 2:
        return 0
    first = np.sort(halves[:, 0])
    if not np.any(first[1:] == first[:-1]):  # nearly always: no two share a first half
        return 0
    order = np.lexsort((halves[:, 1], halves[:, 0]))
    ordered = halves[order]
    same = (ordered[1:, 0] == ordered[:-1, 0]) & (ordered[1:, 1] == ordered[:-1, 1])
    return int(np.count_nonzero(same))


def completed_mask(ids: RunIds, completed: bytes | Iterable[str]) -> Any:
    """A numpy bool array: whether each of `ids` is among `completed` (run ids as 16 bytes
    each back to back, or as strings)."""
    import numpy as np

    if not isinstance(completed, bytes):
        done = completed if isinstance(completed, (set, frozenset)) else set(completed)
        return np.fromiter((run_id in done for run_id in ids), dtype=bool, count=len(ids))
    if len(completed) % RUN_ID_BYTES:
        raise ValueError(f"{len(completed)} bytes are no whole number of run ids")
    wanted = _halves(ids.raw)
    done = _halves(completed)
    if not len(done) or not len(wanted):
        return np.zeros(len(wanted), dtype=bool)
    order = np.lexsort((done[:, 1], done[:, 0]))
    first, second = done[order, 0], done[order, 1]
    if np.any(first[1:] == first[:-1]):
        # two completed ids share a first half (a repeated id): compare whole ids
        raw = completed
        whole = {raw[at : at + RUN_ID_BYTES] for at in range(0, len(raw), RUN_ID_BYTES)}
        data = ids.raw
        return np.fromiter(
            (data[at : at + RUN_ID_BYTES] in whole for at in range(0, len(data), RUN_ID_BYTES)),
            dtype=bool,
            count=len(ids),
        )
    at = np.minimum(np.searchsorted(first, wanted[:, 0]), len(first) - 1)
    return (first[at] == wanted[:, 0]) & (second[at] == wanted[:, 1])
