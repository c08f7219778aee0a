"""A sweep: one submission of an experiment, and the reference to it that workers receive.

`Sweep` lives in the driver (the experiment, the open store, which indices are left);
`SweepRef` is what travels to every worker and array task (where the store and the
experiment are, the session, and the typed `RunOptions`).
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from . import working_directory

if TYPE_CHECKING:
    from .contracts import Store
    from .experiment import Experiment
    from .serializers import Codec


@dataclass(frozen=True)
class RunOptions:
    """How a sweep's runs are run, the same on every worker."""

    resume: bool = True
    """Skip runs whose completed record is in the store."""
    git: dict[str, Any] | None = None
    """The operation's git state, computed once by the driver."""
    codecs: tuple[Codec, ...] = ()
    """Codecs registered with `register_codec` in the driver (registered on workers too)."""
    derived: tuple[Callable[..., Any], ...] = ()
    """Derived metric functions computed on the worker after each completed run."""
    chunk_size: int | None = None
    """Runs per Dask task, or None for adaptive chunks."""
    attempt: int = 1
    """The attempt a resubmission runs: a record of this sweep with a lower attempt that
    did not complete is run again."""
    resources: dict[str, Any] | None = None
    """What `runtime.resources` shows (the SLURM task's allocation), or None for the
    experiment's resource hints."""


@dataclass(frozen=True)
class SweepRef:
    """What a worker needs to run indices of a sweep: where the store and experiment are."""

    store: Any
    """The store's locator (a string), or a picklable store object without one."""
    experiment_key: str
    session: str
    options: RunOptions = field(default_factory=RunOptions)
    origin: working_directory.Origin | None = field(default_factory=working_directory.origin)
    """The driver's working directory, machine and process when the sweep was made (at
    `metalab.run()`): local worker processes enter that directory for the sweep's tasks."""


@dataclass
class Sweep:
    """One submission of an experiment: which indices run, where, under which session."""

    experiment: Experiment
    store: Store
    ref: SweepRef
    run_ids: Sequence[str]
    """Every run id, in index order (`RunIds` in a driver: 16 bytes a run)."""
    pending: Sequence[int]
    """The indices to run, ascending (a `range` or an `array` in a driver)."""
    skipped: int
    manifest: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a driver holds these for as long as its sweep runs: compactly
        self.run_ids = RunIds.of(self.run_ids)
        self.pending = compact_indices(self.pending, len(self.run_ids))

    @property
    def total(self) -> int:
        """Runs in the experiment."""
        return len(self.run_ids)

    @property
    def session(self) -> str:
        """The sweep's session id (one per submission)."""
        return self.ref.session


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


def compact_indices(indices: Sequence[int], total: int) -> Sequence[int]:
    """Run indices (of a sweep of `total` runs) in little memory: `range(total)` when they
    are all of them in order, else an `array` of 8 bytes an index (a list of ints takes about
    40). A `range` or an `array` is kept as it is."""
    if isinstance(indices, (range, array)):
        return indices
    if len(indices) == total and all(i == k for k, i in enumerate(indices)):
        return range(total)
    return array("q", indices)
