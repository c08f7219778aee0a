"""A run's record: built from its spec, its sweep and what happened, and the records of runs
that did not run to their end here (cancelled, lost), and outcomes read back from a store.

The worker's code (`metalab.execute`) and the driver (`metalab.driver`) both write records
through this module, so a record has one shape whoever writes it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import provenance
from .errors import RunLost, StoreFormatError
from .outcome import Outcome
from .record import RECORD_FORMAT, SharedPart, Status
from .source import format_exception
from .sweep import SweepRef


def previous_record(store: Any, run_id: str) -> dict[str, Any] | None:
    """The run's record, or None when it has none or only an unreadable one (a crash mid-write
    on a filesystem without atomic renames): such a run is simply run again."""
    try:
        return store.get_record(run_id)
    except StoreFormatError:
        return None


def same_session(record: dict[str, Any] | None, session: str) -> bool:
    return record is not None and record.get("provenance", {}).get("session") == session


def next_attempt(previous: dict[str, Any] | None) -> int:
    return 1 if previous is None else int(previous.get("attempt", 1)) + 1


def error_of(exc: BaseException) -> dict[str, str]:
    """The record's `error` of `exc`: type, message, traceback; and, for a run whose task was
    ended from outside (`RunLost`), its scheduler's error type and the `cause`."""
    if isinstance(exc, RunLost):
        return {
            "type": exc.error_type,
            "message": str(exc),
            "traceback": format_exception(exc),
            "cause": exc.cause,
        }
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - an exception whose __str__ fails still gets recorded
        message = f"<{type(exc).__name__} whose message could not be rendered>"
    return {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins."),
        "message": message,
        "traceback": format_exception(exc),
    }


def build_record(experiment, spec, ref: SweepRef, worker, status, capture, error) -> dict[str, Any]:
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
        "attempt": ref.options.attempt,
    }
    record.update(capture.summary() if capture else {"metrics": {}, "series": {}, "artifacts": []})
    record["provenance"] = _provenance(experiment, ref, worker)  # last: encoded once
    return record


_provenance_cache: dict[tuple[int, str, str], SharedPart] = {}


def _provenance(experiment, ref: SweepRef, worker: str) -> SharedPart:
    key = (id(experiment), ref.session, worker)
    cached = _provenance_cache.get(key)
    if cached is None:
        if len(_provenance_cache) > 64:
            _provenance_cache.clear()
        cached = _provenance_cache[key] = SharedPart(_build_provenance(experiment, ref, worker))
    return cached  # shared by the runs of a task, never mutated


def _build_provenance(experiment, ref: SweepRef, worker: str) -> dict[str, Any]:
    env = provenance.environment()
    out = {
        "code_hash": experiment.operation.code_hash,
        "operation": experiment.operation.ref,
        "git": ref.options.git,
        "python": env["python"],
        "metalab": env["metalab"],
        "numpy": env["numpy"],
        "host": env["host"],
        "pid": os.getpid(),
        "worker": worker,
        "session": ref.session,
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
    cause: str | None = None,
) -> Outcome:
    """Record run `index` as failed with `error_type`/`message` (and the `cause` its
    scheduler gave, one of `RunLost.CAUSES`) when it has no record of this sweep: its worker
    died mid-run, or its task failed outside any run."""
    return _record_unrun(
        experiment, store, index, owner, session, Status.FAILED, error_type, message, cause
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
    cause: str | None = None,
) -> Outcome:
    """Write a record for a run that did not run to its end here, under its claim.

    A record of this session, or a completed record when cancelling, is kept as the outcome.
    """
    spec = experiment.run_spec(index)
    if not store.claim(spec.run_id, owner):
        return Outcome(index, spec.run_id, "busy")
    try:
        existing = previous_record(store, spec.run_id)
        keep_completed = status == Status.CANCELLED
        if existing is not None and (
            same_session(existing, session)
            or (keep_completed and existing["status"] == Status.COMPLETED)
        ):
            return Outcome(index, spec.run_id, existing["status"], existing)
        ref = SweepRef(store=None, experiment_key="", session=session)
        record = build_record(experiment, spec, ref, provenance.worker_name(), status, None, None)
        record["attempt"] = next_attempt(existing)
        record["error"] = {"type": error_type, "message": message, "traceback": ""}
        if cause is not None:
            record["error"]["cause"] = cause
        store.put_record(record)
        store.flush_journal()  # before the record goes to the caller
        return Outcome(index, spec.run_id, status.value, record)
    finally:
        store.release(spec.run_id)
