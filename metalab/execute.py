"""The one function that runs run `i` of an experiment (DESIGN invariant 3).

Every executor calls `run_indices` (or `execute_run`) in the process where the run happens:
build params, seeds, runtime and capture; call the operation; catch everything; write the
record; release the claim. Executors differ only in where this runs.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from . import claims, provenance, registry, working_directory
from ._trust import experiment_bytes
from .capture import Capture
from .context import context_for_run
from .derived import compute
from .errors import RunCancelled, RunLost, StoreError
from .outcome import Outcome, Outcomes
from .record import Status, copied, utc_now
from .recording import (
    build_record,
    error_of,
    next_attempt,
    previous_record,
    record_cancelled,
    same_session,
)
from .runtime import Runtime
from .serializers import ensure_registered
from .stored_run import Run
from .sweep import SweepRef

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
            cached = _stores[store] = registry.open_store(store, create=False)
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
    cache_key = (store.locator, key)
    with _lock:
        cached = _experiments.get(cache_key)
    if cached is None:
        import cloudpickle

        cached = cloudpickle.loads(experiment_bytes(store, key))
        with _lock:
            _remember(_experiments, cache_key, cached)
    return cached


# ---------------------------------------------------------------- running
_in_operation = [False]


def operation_running() -> bool:
    """Whether an operation is running in this process now (in its main thread): a signal
    handler may then end the run by raising `RunLost` into it, and only then."""
    return _in_operation[0]


def run_indices(ref: SweepRef, indices: Iterable[int]) -> Outcomes:
    """Run each index of `indices` in this process; the entry point of every executor."""
    return Outcomes(iter_run_indices(ref, indices))


def iter_run_indices(ref: SweepRef, indices: Iterable[int]) -> Iterator[Outcome]:
    """Run each index of `indices`, yielding each outcome as soon as its record is written.

    The runs see the driver's working directory (see `metalab.working_directory`)."""
    with working_directory.entered(ref.origin):
        yield from _iter_runs(ref, indices)


def _iter_runs(ref: SweepRef, indices: Iterable[int]) -> Iterator[Outcome]:
    store = open_store(ref.store)
    experiment = load_experiment(store, ref.experiment_key)
    ensure_registered(ref.options.codecs)
    worker = provenance.worker_name()
    owner = claims.owner(ref.session)

    # a database store answers one query per poll per worker: ask it less often
    cancelled = _CancelFlag(store, ref.session, store.cancel_poll_interval)
    keep = ref.options.completed_records  # else a completed run's record stays in the store
    shown = ref.options.outcome_metrics  # ... and these metrics of it travel

    try:
        for index in indices:
            if cancelled():
                yield record_cancelled(experiment, store, index, owner, ref.session)
            else:
                outcome = execute_run(
                    experiment,
                    store,
                    index,
                    ref=ref,
                    owner=owner,
                    worker=worker,
                    cancelled=cancelled,
                )
                if not keep and outcome.state == "completed":
                    outcome = outcome.without_record(shown)
                yield outcome
    finally:
        store.flush_journal()


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
    ref: SweepRef,
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
        previous = previous_record(store, spec.run_id)
        if same_session(previous, ref.session) and not _retrying(previous, ref):
            return Outcome(index, spec.run_id, previous["status"], previous)  # type: ignore[index]  # ran in this sweep
        completed = previous is not None and previous["status"] == Status.COMPLETED
        if completed and ref.options.resume:
            return Outcome(index, spec.run_id, "skipped")
        attempt = next_attempt(previous)
        try:
            record, encoded = _run_claimed(experiment, store, spec, ref, worker, cancelled, attempt)
        except (KeyboardInterrupt, StoreError):
            raise
        except Exception as exc:  # noqa: BLE001 - recorded as the run's failure
            record = build_record(experiment, spec, ref, worker, Status.FAILED, None, error_of(exc))
            record["attempt"] = attempt
            encoded = store.put_record(record)
        return Outcome(index, spec.run_id, record["status"], record, encoded=encoded)
    finally:
        store.release(spec.run_id)


def _retrying(previous: dict[str, Any] | None, ref: SweepRef) -> bool:
    """Whether this task is a retry of a run whose earlier attempt in this sweep failed
    (`options["attempt"]`: the attempt a SLURM resubmission runs)."""
    attempt = ref.options.attempt
    return (
        previous is not None
        and previous["status"] != Status.COMPLETED
        and int(previous.get("attempt", 1)) < attempt
    )


def _run_claimed(
    experiment, store, spec, ref: SweepRef, worker: str, cancelled, attempt: int
) -> tuple[dict[str, Any], Any]:
    """Run a claimed run and store its record; return the record and what `put_record`
    returned (its encoding, from stores that give it)."""
    runtime = Runtime(
        run_id=spec.run_id,
        index=spec.index,
        experiment_id=experiment.experiment_id,
        metadata=experiment.metadata,
        resources=ref.options.resources or experiment.metadata.get("resource_hints", {}),
        worker=worker,
        attempt=attempt,
        cancel_check=cancelled,
    )
    capture = Capture(spec.run_id, store, worker)
    started_at, t0 = utc_now(), time.perf_counter()
    error = None
    interrupt: BaseException | None = None
    unclosed: Exception | None = None
    try:
        # a copy of its own: what the operation does to its params (a list appended to, say)
        # changes neither the record nor the runs after it
        _in_operation[0] = True
        try:
            returned = experiment.operation.run(
                context_for_run(experiment.run_context),
                copied(spec.params),
                spec.seeds,
                runtime,
                capture,
            )
        finally:
            _in_operation[0] = False
        _capture_return(capture, returned)
        status = Status.COMPLETED
    except RunLost as exc:  # its task is being ended: record why, then stop the task
        status, error, interrupt = Status.FAILED, error_of(exc), exc
    except RunCancelled as exc:
        status, error = Status.INTERRUPTED, error_of(exc)
    except KeyboardInterrupt as exc:
        status, error, interrupt = Status.INTERRUPTED, error_of(exc), exc
    except BaseException as exc:  # noqa: BLE001 - every failure of the operation is recorded
        status, error = Status.FAILED, error_of(exc)
    finally:
        try:
            capture.close()
        except Exception as exc:  # noqa: BLE001 - its log cannot be written (a full disk)
            unclosed = exc
        runtime.cleanup()
    if unclosed is not None and status == Status.COMPLETED:  # failed, with what it captured
        status, error = Status.FAILED, error_of(unclosed)
    record = build_record(experiment, spec, ref, worker, status, capture, error)
    record["attempt"] = attempt
    record["started_at"], record["finished_at"] = started_at, utc_now()
    record["duration"] = time.perf_counter() - t0
    derived = ref.options.derived
    if derived and status == Status.COMPLETED:
        _store_derived(derived, record, store)  # before the record: a completed run has them
    encoded = store.put_record(record)
    if interrupt is not None:
        raise interrupt
    return record, encoded


def _store_derived(fns, record: dict[str, Any], store: Any) -> None:
    """Compute the sweep's derived metrics of a completed run and store them; a function
    that fails records its error in the document, never the run's failure."""

    document, _ = compute(fns, Run(record, store))
    store.put_derived(record["run_id"], document)


def _capture_return(capture: Capture, returned: Any) -> None:
    if returned is None:
        return
    if isinstance(returned, Mapping):
        capture.log_metrics(returned)
    else:
        capture.data("return_value", returned)
