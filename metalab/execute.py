"""The one function that runs run `i` of an experiment (DESIGN invariant 3).

Every executor calls `run_indices` (or `execute_run`) in the process where the run happens:
build params, seeds, runtime and capture; call the operation; catch everything; write the
record; release the claim. Executors differ only in where this runs.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import _claims, provenance, working_directory
from .capture import Capture
from .context import context_for_run
from .errors import RunCancelled, StoreError, StoreFormatError
from .record import RECORD_FORMAT, Status, copied, decode_record, encode_record, utc_now
from .runtime import Runtime
from .serializers import ensure_registered
from .source import format_exception
from .stores.base import flush_journal


@dataclass(frozen=True)
class JobRef:
    """What a worker needs to run indices of a sweep: where the store and experiment are."""

    store: Any
    """The store locator (a string), or a picklable store object without one."""
    experiment_key: str
    session: str
    options: Mapping[str, Any] = field(default_factory=dict)
    """`git` (computed once by the driver), `resume`, `codecs`, `derived`, `chunk_size`, and
    `attempt` (a resubmission re-runs runs whose record of this sweep has a lower attempt)."""
    origin: working_directory.Origin | None = field(default_factory=working_directory.origin)
    """The driver's working directory, machine and process when the job was made (at
    `metalab.run()`): local worker processes enter that directory for the sweep's tasks."""


class Outcome:
    """What happened to one index: its final record, or why it did not run here.

    `state` is a record status, or `skipped` (already complete) or `busy` (claimed by a live
    owner). An outcome travels from a worker to the driver as its record's JSON encoding (the
    bytes the store wrote, when it says so), which costs a fraction of pickling the record's
    dicts; the driver decodes it when the record is first asked for.
    """

    __slots__ = ("_encoded", "_record", "duration", "index", "run_id", "state")

    def __init__(
        self,
        index: int,
        run_id: str,
        state: str,
        record: dict[str, Any] | None = None,
        *,
        encoded: bytes | None = None,
        duration: float | None = None,
    ):
        self.index = index
        self.run_id = run_id
        self.state = state
        self._record = record
        self._encoded = encoded if record is None or isinstance(encoded, bytes) else None
        if duration is None and record is not None:
            duration = record.get("duration")
        self.duration = duration
        """Seconds the run took, when it ran (read without decoding the record)."""

    @property
    def record(self) -> dict[str, Any] | None:
        """The run's final record, or None when it has none from here."""
        if self._record is None and self._encoded is not None:
            self._record = decode_record(self._encoded)
            self._encoded = None  # keep one copy: a driver holds every outcome of a sweep
        return self._record

    @property
    def encoded(self) -> bytes | None:
        """The record's JSON encoding (made now if the store did not give it)."""
        if self._encoded is None and self._record is not None:
            self._encoded = encode_record(self._record)
        return self._encoded

    @property
    def has_record(self) -> bool:
        return self._record is not None or self._encoded is not None

    def __reduce__(self):
        return (_outcome, (self.index, self.run_id, self.state, self.encoded, self.duration))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Outcome):
            return NotImplemented
        return (self.index, self.run_id, self.state, self.record) == (
            other.index,
            other.run_id,
            other.state,
            other.record,
        )

    def __repr__(self) -> str:
        return f"Outcome(index={self.index}, run_id={self.run_id!r}, state={self.state!r})"


def _outcome(index: int, run_id: str, state: str, encoded: bytes | None, duration) -> Outcome:
    return Outcome(index, run_id, state, encoded=encoded, duration=duration)


class Outcomes(list):
    """The outcomes of one task. A list of its own type, so that Dask sends it to the driver
    as one pickle rather than serializing each outcome separately (which costs ten times
    more for the thousands of outcomes of a task of quick runs); it pickles as columns, and
    is rebuilt in one loop."""

    __slots__ = ()

    def __reduce__(self):
        columns = (
            [o.index for o in self],
            [o.run_id for o in self],
            [o.state for o in self],
            [o.encoded for o in self],
            [o.duration for o in self],
        )
        return (_outcomes, columns)


def _outcomes(indices, run_ids, states, encoded, durations) -> Outcomes:
    new = Outcome.__new__
    out = Outcomes()
    append = out.append
    for index, run_id, state, data, duration in zip(indices, run_ids, states, encoded, durations):
        outcome = new(Outcome)
        outcome.index, outcome.run_id, outcome.state = index, run_id, state
        outcome._record, outcome._encoded, outcome.duration = None, data, duration
        append(outcome)
    return out


# ---------------------------------------------------------------- per-process caches
_lock = threading.Lock()
_stores: dict[str, Any] = {}
_experiments: dict[tuple[str, str], Any] = {}


def open_store(store: Any) -> Any:
    """Return the store for a locator, opened once per process."""
    if not isinstance(store, str):
        return store
    with _lock:
        cached = _stores.get(store)
        if cached is None:
            from .stores.locator import create_store

            cached = _stores[store] = create_store(store, create=False)
        return cached


def remember_experiment(locator: str, key: str, experiment: Any) -> None:
    """Cache the driver's own experiment, so in-process executors use it unpickled.

    A shallow copy is kept: the fingerprint and resolved context it holds stay this sweep's
    when the same object is prepared again for another sweep (from another directory, say)
    while this one runs.
    """
    with _lock:
        _remember(_experiments, (locator, key), copy.copy(experiment))


def _remember(cache: dict, key: Any, value: Any, limit: int = 16) -> None:
    if len(cache) >= limit:
        cache.pop(next(iter(cache)))
    cache[key] = value


def load_experiment(store: Any, key: str) -> Any:
    """Return the experiment `key` from the store, unpickled once per process."""
    cache_key = (getattr(store, "locator", repr(store)), key)
    with _lock:
        cached = _experiments.get(cache_key)
    if cached is None:
        import cloudpickle

        from ._trust import experiment_bytes

        cached = cloudpickle.loads(experiment_bytes(store, key))
        with _lock:
            _remember(_experiments, cache_key, cached)
    return cached


# ---------------------------------------------------------------- running
def run_indices(job: JobRef, indices: Iterable[int]) -> Outcomes:
    """Run each index of `indices` in this process; the entry point of every executor."""
    return Outcomes(iter_run_indices(job, indices))


def iter_run_indices(job: JobRef, indices: Iterable[int]) -> Iterator[Outcome]:
    """Run each index of `indices`, yielding each outcome as soon as its record is written.

    The runs see the driver's working directory (see `metalab.working_directory`)."""
    with working_directory.entered(job.origin):
        yield from _iter_runs(job, indices)


def _iter_runs(job: JobRef, indices: Iterable[int]) -> Iterator[Outcome]:
    store = open_store(job.store)
    experiment = load_experiment(store, job.experiment_key)
    ensure_registered(job.options.get("codecs") or [])
    worker = provenance.worker_name()
    owner = _claims.owner(job.session)

    # a database store answers one query per poll per worker: ask it less often
    cancelled = _CancelFlag(store, job.session, getattr(store, "cancel_poll_interval", 0.1))

    try:
        for index in indices:
            if cancelled():
                yield record_cancelled(experiment, store, index, owner, job.session)
            else:
                yield execute_run(
                    experiment,
                    store,
                    index,
                    job=job,
                    owner=owner,
                    worker=worker,
                    cancelled=cancelled,
                )
    finally:
        flush_journal(store)


class _CancelFlag:
    """Whether the sweep was cancelled, asking the store at most every `interval` seconds."""

    def __init__(self, store: Any, session: str, interval: float = 0.1):
        self._store, self._session, self._interval = store, session, interval
        self._checked = -interval
        self._set = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self._set and now - self._checked >= self._interval:
            self._checked = now
            self._set = self._store.cancel_requested(self._session)
        return self._set


def execute_run(
    experiment: Any,
    store: Any,
    index: int,
    *,
    job: JobRef,
    owner: dict[str, Any],
    worker: str,
    cancelled: Callable[[], bool] | None = None,
) -> Outcome:
    """Claim, run and record run `index`; return its outcome.

    Never raises for what the operation does; anything else that goes wrong while the run is
    claimed (its runtime cannot be built, say) is recorded as the run's failure, so every
    claimed run ends with a record. Only a store that cannot be written raises.
    """
    spec = experiment.run_spec(index)
    if not store.claim(spec.run_id, owner):
        return Outcome(index, spec.run_id, "busy")
    try:
        previous = _previous_record(store, spec.run_id)
        if _same_session(previous, job.session) and not _retrying(previous, job):
            return Outcome(index, spec.run_id, previous["status"], previous)  # type: ignore[index]  # ran in this sweep
        completed = previous is not None and previous["status"] == Status.COMPLETED
        if completed and job.options.get("resume", True):
            return Outcome(index, spec.run_id, "skipped")
        attempt = _next_attempt(previous)
        try:
            record, encoded = _run_claimed(experiment, store, spec, job, worker, cancelled, attempt)
        except (KeyboardInterrupt, StoreError):
            raise
        except Exception as exc:  # noqa: BLE001 - recorded as the run's failure
            record = _build_record(experiment, spec, job, worker, Status.FAILED, None, _error(exc))
            record["attempt"] = attempt
            encoded = store.put_record(record)
        return Outcome(index, spec.run_id, record["status"], record, encoded=encoded)
    finally:
        store.release(spec.run_id)


def _previous_record(store: Any, run_id: str) -> dict[str, Any] | None:
    """The run's record, or None when it has none or only an unreadable one (a crash mid-write
    on a filesystem without atomic renames): such a run is simply run again."""
    try:
        return store.get_record(run_id)
    except StoreFormatError:
        return None


def _same_session(record: dict[str, Any] | None, session: str) -> bool:
    return record is not None and record.get("provenance", {}).get("session") == session


def _retrying(previous: dict[str, Any] | None, job: JobRef) -> bool:
    """Whether this task is a retry of a run whose earlier attempt in this sweep failed
    (`options["attempt"]`: the attempt a SLURM resubmission runs)."""
    attempt = job.options.get("attempt", 1)
    return (
        previous is not None
        and previous["status"] != Status.COMPLETED
        and int(previous.get("attempt", 1)) < attempt
    )


def _next_attempt(previous: dict[str, Any] | None) -> int:
    return 1 if previous is None else int(previous.get("attempt", 1)) + 1


def _run_claimed(
    experiment, store, spec, job: JobRef, worker: str, cancelled, attempt: int
) -> tuple[dict[str, Any], Any]:
    """Run a claimed run and store its record; return the record and what `put_record`
    returned (its encoding, from stores that give it)."""
    runtime = Runtime(
        run_id=spec.run_id,
        index=spec.index,
        experiment_id=experiment.experiment_id,
        metadata=experiment.metadata,
        resources=job.options.get("resources") or experiment.metadata.get("resource_hints", {}),
        worker=worker,
        attempt=attempt,
        cancel_check=cancelled,
    )
    capture = Capture(spec.run_id, store, worker)
    started_at, t0 = utc_now(), time.perf_counter()
    error = None
    interrupt: BaseException | None = None
    try:
        # a copy of its own: what the operation does to its params (a list appended to, say)
        # changes neither the record nor the runs after it
        returned = experiment.operation.run(
            context_for_run(experiment.run_context),
            copied(spec.params),
            spec.seeds,
            runtime,
            capture,
        )
        _capture_return(capture, returned)
        status = Status.COMPLETED
    except RunCancelled as exc:
        status, error = Status.INTERRUPTED, _error(exc)
    except KeyboardInterrupt as exc:
        status, error, interrupt = Status.INTERRUPTED, _error(exc), exc
    except BaseException as exc:  # noqa: BLE001 - every failure of the operation is recorded
        status, error = Status.FAILED, _error(exc)
    finally:
        capture.close()
        runtime.cleanup()
    record = _build_record(experiment, spec, job, worker, status, capture, error)
    record["attempt"] = attempt
    record["started_at"], record["finished_at"] = started_at, utc_now()
    record["duration"] = time.perf_counter() - t0
    derived = job.options.get("derived")
    if derived and status == Status.COMPLETED:
        _store_derived(derived, record, store)  # before the record: a completed run has them
    encoded = store.put_record(record)
    if interrupt is not None:
        raise interrupt
    return record, encoded


def _store_derived(fns, record: dict[str, Any], store: Any) -> None:
    """Compute the sweep's derived metrics of a completed run and store them; a function
    that fails records its error in the document, never the run's failure."""
    from .derived import compute
    from .results import Run

    document, _ = compute(fns, Run(record, store))
    store.put_derived(record["run_id"], document)


def _capture_return(capture: Capture, returned: Any) -> None:
    if returned is None:
        return
    if isinstance(returned, Mapping):
        capture.log_metrics(returned)
    else:
        capture.data("return_value", returned)


def _error(exc: BaseException) -> dict[str, str]:
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - an exception whose __str__ fails still gets recorded
        message = f"<{type(exc).__name__} whose message could not be rendered>"
    return {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins."),
        "message": message,
        "traceback": format_exception(exc),
    }


def _build_record(experiment, spec, job: JobRef, worker, status, capture, error) -> dict[str, Any]:
    record = {
        "format": RECORD_FORMAT,
        "run_id": spec.run_id,
        "experiment_id": experiment.experiment_id,
        "index": spec.index,
        "case": spec.case,
        "replicate": spec.replicate,
        "status": status.value,
        "params": spec.params,
        "fingerprints": {
            "context": experiment.context_fingerprint,
            "params": spec.params_fingerprint,
            "seeds": spec.seed_fingerprint,
        },
        "seed": {"base": spec.seeds.base, "replicate": spec.replicate},
        "error": error,
        "started_at": None,
        "finished_at": None,
        "duration": 0.0,
        "attempt": job.options.get("attempt", 1),
        "provenance": _provenance(experiment, job, worker),
    }
    record.update(capture.summary() if capture else {"metrics": {}, "series": {}, "artifacts": []})
    return record


_provenance_cache: dict[tuple[int, str, str], dict[str, Any]] = {}


def _provenance(experiment, job: JobRef, worker: str) -> dict[str, Any]:
    key = (id(experiment), job.session, worker)
    cached = _provenance_cache.get(key)
    if cached is None:
        if len(_provenance_cache) > 64:
            _provenance_cache.clear()
        cached = _provenance_cache[key] = _build_provenance(experiment, job, worker)
    return cached  # shared by the runs of a task, never mutated


def _build_provenance(experiment, job: JobRef, worker: str) -> dict[str, Any]:
    env = provenance.environment()
    out = {
        "code_hash": experiment.operation.code_hash,
        "operation": experiment.operation.ref,
        "git": job.options.get("git"),
        "python": env["python"],
        "metalab": env["metalab"],
        "numpy": env["numpy"],
        "host": env["host"],
        "pid": os.getpid(),
        "worker": worker,
        "session": job.session,
    }
    slurm = provenance.slurm_ids()
    if slurm:
        out["slurm"] = slurm
    return out


def recorded_outcomes(
    store: Any,
    run_ids: Sequence[str],
    indices: Iterable[int],
    session: str,
    floors: Mapping[int, int] | None = None,
) -> list[Outcome]:
    """Outcomes of `indices` the store already holds: completed runs, and final records of
    this sweep (`session`); a run resubmitted for attempt `floors[i]` counts only from a
    record of that attempt. One scan, then one read per final record not completed."""
    final, done = store.scan()
    floors = floors or {}
    found = []
    for index in sorted(indices):
        run_id = run_ids[index]
        if run_id in done:
            found.append(Outcome(index, run_id, "completed"))
        elif run_id in final:
            record = store.get_record(run_id)
            if (
                record is not None
                and record.get("provenance", {}).get("session") == session
                and int(record.get("attempt", 1)) >= floors.get(index, 0)
            ):
                found.append(Outcome(index, run_id, record["status"], record))
    return found


def record_cancelled(experiment, store, index: int, owner: dict[str, Any], session: str) -> Outcome:
    """Record run `index` as cancelled without running it.

    A run someone holds is left to them (`busy`); a run that already has a record of this
    session (it ran before the cancel reached it) or a completed one keeps that record.
    """
    message = "the sweep was cancelled before this run started"
    return _record_unrun(
        experiment, store, index, owner, session, Status.CANCELLED, "Cancelled", message
    )


def record_lost(
    experiment,
    store,
    index: int,
    owner: dict[str, Any],
    message: str,
    session: str,
    error_type: str = "WorkerLost",
) -> Outcome:
    """Record run `index` as failed with `error_type`/`message` when it has no record of this
    sweep: its worker died mid-run, or its task failed outside any run."""
    return _record_unrun(
        experiment, store, index, owner, session, Status.FAILED, error_type, message
    )


def _record_unrun(
    experiment,
    store,
    index: int,
    owner,
    session: str,
    status: Status,
    error_type: str,
    message: str,
) -> Outcome:
    """Write a record for a run that did not run to its end here, under its claim.

    A record of this session, or a completed record when cancelling, is kept as the outcome.
    """
    spec = experiment.run_spec(index)
    if not store.claim(spec.run_id, owner):
        return Outcome(index, spec.run_id, "busy")
    try:
        existing = _previous_record(store, spec.run_id)
        keep_completed = status == Status.CANCELLED
        if existing is not None and (
            _same_session(existing, session)
            or (keep_completed and existing["status"] == Status.COMPLETED)
        ):
            return Outcome(index, spec.run_id, existing["status"], existing)
        job = JobRef(store=None, experiment_key="", session=session)
        record = _build_record(experiment, spec, job, provenance.worker_name(), status, None, None)
        record["attempt"] = _next_attempt(existing)
        record["error"] = {"type": error_type, "message": message, "traceback": ""}
        store.put_record(record)
        flush_journal(store)  # before the record goes to the caller
        return Outcome(index, spec.run_id, status.value, record)
    finally:
        store.release(spec.run_id)
