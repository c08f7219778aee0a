"""What the core needs from a store, an executor and a dashboard: the contracts, in one place.

Start here. metalab's core (planning, running one run, the driver, results) talks to the
outside world only through these Protocols:

- `Store`: persistence of experiments, records, artifacts, logs, claims and derived
  metrics. Every store has every method; optional capabilities (SQL pushdown, a journal of
  records for loading) are *declared* in `Store.capabilities` and then reached through the
  narrower Protocols `QueryStore` and `JournalStore`, never probed for.
- `Executor`: where runs happen. The driver calls every hook unconditionally;
  `ExecutorBase` gives the hooks an executor does not need their do-nothing defaults.
- `Sink`: what an executor reports to (outcomes, lost tasks, its batch jobs, its dashboard).
- `SweepDashboard`: what shows a sweep live in the Dask dashboard.

Concrete stores and executors are found by locator scheme or name in `metalab.registry`;
the core never imports them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .experiment import Experiment
    from .outcome import Outcome
    from .sweep import Sweep

Record = dict[str, Any]
"""A run record as stored (see `metalab.record.RunRecord` for its fields)."""
Owner = dict[str, Any]
"""Who holds a claim: `{"host", "pid", "start", "session"}` (see `metalab.claims`)."""


# ---------------------------------------------------------------------------- stores
@dataclass(frozen=True)
class StoreCapabilities:
    """What a store can do beyond the `Store` contract; the core reads these, never probes."""

    queries: bool = False
    """It selects records in its database: it is a `QueryStore`."""
    journal: bool = False
    """It keeps journals of encoded records for fast loading: it is a `JournalStore`."""
    table: bool = False
    """It keeps its runs as a columnar table (`metalab.runs_table`): it is a `TableStore`."""

    @property
    def columnar(self) -> bool:
        """It gives a sweep's runs back as columns (a runs table, or queries): a driver keeps
        no record of a completed run, and `result()` reads the store."""
        return self.table or self.queries


@runtime_checkable
class Store(Protocol):
    """Persistence for experiments, run records, artifacts, logs, claims and derived metrics.

    A store is opened from its locator in every process that touches it (DESIGN invariant
    5): `locator` reopens it anywhere. Every write is atomic (a reader sees the old value or
    the new one, never a part). Methods raise `StoreError` when the store cannot be read or
    written (a full disk, a database that stays unreachable); `StoreUnavailableError` when it
    cannot be reached at all.
    """

    capabilities: ClassVar[StoreCapabilities]
    """The optional parts of the contract this store implements."""
    cancel_poll_interval: float
    """How often (seconds) a worker asks `cancel_requested`; databases want it less often."""

    @property
    def locator(self) -> str:
        """The locator that reopens this store in any process (password included)."""
        ...

    @property
    def public_locator(self) -> str:
        """The locator without secrets: safe to print, log and show in a dashboard."""
        ...

    def work_directory(self) -> Path | None:
        """A directory beside the store where executors may keep files (scripts, logs of
        batch jobs), or None for a store that is no directory (a database)."""
        ...

    def footprint(self, runs: int) -> dict[str, int]:
        """The `files` and `inodes` (files and directories) `runs` new completed runs add
        to the store at least (artifacts and log lines add theirs); empty for a store that
        keeps no files (a database)."""
        ...

    def write_manifest(self, experiment_id: str, manifest: Mapping[str, Any]) -> str:
        """Add a timestamped manifest (never overwrites one); return where it went."""
        ...

    def manifests(self, experiment_id: str | None = None) -> list[dict[str, Any]]:
        """Return manifests (of one experiment or all), oldest first."""
        ...

    def save_experiment(self, key: str, blob: bytes) -> None:
        """Store the serialized experiment under `key`; idempotent."""
        ...

    def load_experiment(self, key: str) -> bytes:
        """Return the serialized experiment stored under `key`; StoreError if absent."""
        ...

    def read_pickled(self, kind: str, key: str) -> tuple[bytes, str | None]:
        """Return the bytes of the experiment `key` (`kind` "experiment") or of the artifact
        reference `key` ("artifact"), about to be unpickled, and why someone other than the
        user could have written them (None when nobody else could; see `metalab._trust`).
        StoreError when they are missing."""
        ...

    def scan(self) -> tuple[set[str], set[str]]:
        """Return (ids with a final record, ids completed) in one pass over the store."""
        ...

    def put_record(self, record: Record) -> bytes | None:
        """Persist a final record atomically, replacing any earlier record of that run;
        idempotent. Return the record's JSON encoding when the store made one (the worker
        then sends those bytes to the driver), else None."""
        ...

    def flush_journal(self) -> None:
        """End a batch of `put_record` calls (a task's runs): a journaling store writes its
        entry now; others do nothing. Idempotent."""
        ...

    def get_record(self, run_id: str) -> Record | None:
        """Return the record of `run_id`, or None when it has none. `StoreFormatError` for
        a record that cannot be read."""
        ...

    def get_records(self, run_ids: Iterable[str]) -> Iterator[Record]:
        """Yield the records of `run_ids` that exist, in the order given."""
        ...

    def iter_records(self, experiment_id: str | None = None) -> Iterator[Record]:
        """Yield every record (of one experiment, or all); damaged ones are skipped with an
        `UnsafeStoreWarning`."""
        ...

    def put_artifact(self, run_id: str, filename: str, data: bytes) -> str:
        """Store artifact bytes atomically; return a store-relative reference."""
        ...

    def read_artifact(self, ref: str) -> bytes:
        """Return the bytes behind a reference from `put_artifact`; StoreError when the
        reference is missing or points outside the store."""
        ...

    def open_log(self, run_id: str) -> IO[str]:
        """Open the run's log for writing (a new attempt starts a new log)."""
        ...

    def put_log(self, run_id: str, text: str) -> None:
        """Replace the run's log with `text` (transfers between stores); idempotent."""
        ...

    def read_log(self, run_id: str) -> str:
        """Return the run's log text ("" when it logged nothing)."""
        ...

    def claim(self, run_id: str, owner: Owner) -> bool:
        """Claim `run_id` for `owner`; False while another live owner holds it. A claim of a
        dead owner is taken over. The holder keeps it fresh (heartbeat) until `release`."""
        ...

    def claim_owner(self, run_id: str) -> Owner | None:
        """Return the owner of the claim on `run_id` (alive or dead), or None."""
        ...

    def release(self, run_id: str) -> None:
        """Give up a claim this process holds; idempotent."""
        ...

    def claims(self) -> dict[str, Owner]:
        """Return live claims: run id -> owner (removing what dead owners left)."""
        ...

    def request_cancel(self, session: str) -> None:
        """Ask every run of `session` to stop; idempotent."""
        ...

    def cancel_requested(self, session: str) -> bool:
        """Return whether `request_cancel(session)` was called."""
        ...

    def put_derived(self, run_id: str, values: Mapping[str, Any]) -> None:
        """Replace the derived metrics document of `run_id` atomically; idempotent."""
        ...

    def get_derived(self, run_id: str) -> dict[str, Any]:
        """Return the derived metrics document of `run_id` ({} when none)."""
        ...


@runtime_checkable
class QueryStore(Store, Protocol):
    """A store that selects records in its database (`capabilities.queries`)."""

    def field_names(self, experiment_id: str | None = None) -> dict[str, list[str]]:
        """Return the names of the `params`, `metrics` and `series` of the records (of one
        experiment, or all), by the first run index holding them, then by name."""
        ...

    def has_field(self, kind: str, name: str, experiment_id: str | None = None) -> bool:
        """Whether some record (of one experiment, or any) has a `kind` (`params`, `metrics`
        or `series`) called `name`: answered at the first record found, where `field_names`
        reads them all."""
        ...

    def query_records(
        self,
        experiment_id: str | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        metric_filters: Iterable[tuple[str, str, float]] = (),
        status: str | None = None,
        near: Mapping[str, float] | None = None,
    ) -> list[Record]:
        """Return the records matching every filter, selected by the database, ordered by
        experiment id and run index; `near` keeps runs whose parameter is a number within a
        relative 1e-9 of the one given (a superset of `Results.filter`'s equality, which the
        caller applies after). ValidationError for a bad operator or threshold."""
        ...

    def query_table(
        self,
        experiment_id: str | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        metric_filters: Iterable[tuple[str, str, float]] = (),
        status: str | None = None,
        near: Mapping[str, float] | None = None,
    ) -> Any:
        """Return what `query_records` selects as a runs table (`metalab.runs_table`: the
        same rows, in the same order), without building a record per run. Read-only."""
        ...


@runtime_checkable
class TableStore(Store, Protocol):
    """A store that keeps its runs as a columnar table (`capabilities.table`)."""

    def load_table(self, experiment: str | None = None) -> Any:
        """Return the runs of `experiment` (an experiment id, or a name: every version of it;
        all when None) as a runs table (`metalab.runs_table`), ordered by experiment id, run
        index and run id: what the records say now, whatever was cached. Read-only for the
        records; may rewrite the store's cache of the table."""
        ...

    def completed_run_ids(self) -> bytes:
        """The run ids `scan()` finds completed, 16 bytes each back to back (`bytes.fromhex`
        of each id), without a string kept per run: a submission decides from them which
        runs are left. From the table when it is current, else from the records."""
        ...

    def table_file(self) -> Path:
        """Bring the store's table file up to date and return its path: a Parquet file of
        every run that pandas, polars or DuckDB read directly (columns named as
        `Results.to_dataframe()` names them, plus the store's own, named `_<name>`)."""
        ...


@runtime_checkable
class JournalStore(Store, Protocol):
    """A store whose writers journal their encoded records (`capabilities.journal`)."""

    def load_records(self) -> list[tuple[bytes | Record, dict[str, Any]]]:
        """Return every record as (its JSON bytes or the record, the fields a table needs:
        `run_id`, `experiment_id`, `index`, `status`), reading journals where they are
        current and record files otherwise. Read-only."""
        ...


class StoreDefaults:
    """The parts of the `Store` contract most stores share; a store may override each."""

    capabilities: ClassVar[StoreCapabilities] = StoreCapabilities()
    cancel_poll_interval: float = 0.1

    @property
    def locator(self) -> str:
        raise NotImplementedError

    @property
    def public_locator(self) -> str:
        """The locator: a store without secrets shows it as it is."""
        return self.locator

    def work_directory(self) -> Path | None:
        """No directory of its own."""
        return None

    def footprint(self, runs: int) -> dict[str, int]:
        """No files."""
        return {}

    def flush_journal(self) -> None:
        """Nothing to flush."""


# ---------------------------------------------------------------------------- executors
@runtime_checkable
class Sink(Protocol):
    """Where an executor reports what happened to the runs it was given; thread-safe."""

    def outcomes(self, outcomes: Sequence[Outcome]) -> None:
        """Take the outcomes of one finished task (or of runs found recorded)."""
        ...

    def lost(self, indices: Sequence[int], error: BaseException, *, worker_died: bool) -> None:
        """Report a task that ended without outcomes: its worker died (`worker_died`), or it
        failed outside any run. The sink records or resubmits its runs."""
        ...

    def scheduler_queue(self, jobs: Sequence[str], queued: int, started: int) -> None:
        """Note the sweep's batch jobs and how many of its runs are queued or started."""
        ...

    def dashboard(self, link: str | None, page: bool) -> None:
        """Note the page showing the sweep live (`page`: metalab's page of the Dask
        dashboard at `link`; else `link` is the dashboard itself)."""
        ...


@runtime_checkable
class Executor(Protocol):
    """Runs indices of a sweep somewhere through `metalab.execute.run_indices`.

    The driver calls, in order: `check_submission` (before the manifest is written),
    `describe` (dry runs only), `open`, then `execute` until every index has an outcome,
    `cancel` at any time from another thread, and `close` once. `follower` and
    `min_attempts` serve `metalab.reconnect()`.
    """

    synchronous: bool
    """True when `execute` must run in the caller's thread (`run()` returns when done)."""

    def manifest_details(self) -> dict[str, Any]:
        """Return what the manifest records about this executor (JSON); no side effects."""
        ...

    def check_submission(
        self, experiment: Experiment, store: Store, pending: Sequence[int]
    ) -> None:
        """Refuse a sweep this executor cannot run, by raising (ValidationError,
        ExecutorError), before anything is written. Read-only."""
        ...

    def describe(self, sweep: Sweep) -> dict[str, Any]:
        """Return what a dry run reports beyond the counts (SLURM: jobs, scripts,
        core-hours). May write inspection files; submits nothing."""
        ...

    def open(self, sweep: Sweep, sink: Sink) -> None:
        """Acquire what the sweep needs (a cluster, batch jobs) before the driver thread
        starts. On failure it raises and holds nothing."""
        ...

    def execute(self, sweep: Sweep, indices: Sequence[int], sink: Sink) -> None:
        """Run `indices` of `sweep`; block until each has reported an outcome to `sink` or
        was reported lost, or until `cancel` was called. May be called again for the same
        sweep with indices to run again."""
        ...

    def cancel(self, session: str) -> None:
        """Stop work of sweep `session` that has not started; idempotent, any thread."""
        ...

    def close(self, sweep: Sweep) -> None:
        """Release what `open` acquired for `sweep`; idempotent."""
        ...

    def min_attempts(self, sweep: Sweep) -> dict[int, int]:
        """Return, by index, the attempt a run's record must have to count for this sweep
        (a run resubmitted for attempt 2 does not count from its attempt-1 record)."""
        ...

    @classmethod
    def follower(cls, sweep: Sweep, manifest: Mapping[str, Any]) -> Executor | None:
        """Return an executor that follows `sweep`, submitted by another process with this
        executor (`manifest`), or None to follow it by watching the store alone."""
        ...


class ExecutorBase:
    """Do-nothing defaults for the `Executor` hooks an executor does not need."""

    synchronous: bool = False

    def manifest_details(self) -> dict[str, Any]:
        """Nothing to record."""
        return {}

    def check_submission(
        self, experiment: Experiment, store: Store, pending: Sequence[int]
    ) -> None:
        """Every sweep is fine."""

    def describe(self, sweep: Sweep) -> dict[str, Any]:
        """Nothing beyond the counts."""
        return {}

    def open(self, sweep: Sweep, sink: Sink) -> None:
        """Nothing to acquire."""

    def close(self, sweep: Sweep) -> None:
        """Nothing to release."""

    def min_attempts(self, sweep: Sweep) -> dict[int, int]:
        """Every record counts."""
        return {}

    @classmethod
    def follower(cls, sweep: Sweep, manifest: Mapping[str, Any]) -> Executor | None:
        """Follow by watching the store."""
        return None


# ---------------------------------------------------------------------------- dashboard
class SweepDashboard(Protocol):
    """Shows sweeps live on a Dask scheduler's dashboard (metalab's `/metalab` page)."""

    def link(self, client: Any) -> str | None:
        """Return the scheduler's dashboard address, or None when it has none."""
        ...

    def page_link(self, link: str) -> str:
        """Return the address of metalab's page on the dashboard at `link`."""
        ...

    def register(self, client: Any, sweep: Sweep) -> bool:
        """List `sweep` on the scheduler's page; return whether the page is there. Never
        raises for a scheduler that cannot take the page."""
        ...

    def unregister(self, client: Any, session: str) -> None:
        """Take sweep `session` off the page; idempotent, never raises."""
        ...
