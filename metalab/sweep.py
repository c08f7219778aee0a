"""A sweep: one submission of an experiment, and the reference to it that workers receive.

`Sweep` lives in the driver (the experiment, the open store, which indices are left);
`SweepRef` is what travels to every worker and array task (where the store and the
experiment are, the session, and the typed `RunOptions`).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import working_directory
from .run_ids import RunIds

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
    completed_records: bool = False
    """Whether completed runs' records travel back to the driver with their outcomes: only
    for a store that cannot give a sweep's runs back as columns (the driver then makes the
    sweep's results of them). Otherwise a completed run's outcome is its index, state and
    duration; failed runs' records always travel (for the failure summary)."""
    outcome_metrics: tuple[str, ...] = ()
    """Metrics a completed run's outcome carries back when its record does not travel: those
    the sweep's progress display shows."""


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


def compact_indices(indices: Sequence[int], total: int) -> Sequence[int]:
    """Run indices (of a sweep of `total` runs) in little memory: `range(total)` when they
    are all of them in order, else an `array` of 8 bytes an index (a list of ints takes about
    40). A `range` or an `array` is kept as it is."""
    if isinstance(indices, (range, array)):
        return indices
    if len(indices) == total and all(i == k for k, i in enumerate(indices)):
        return range(total)
    return array("q", indices)
