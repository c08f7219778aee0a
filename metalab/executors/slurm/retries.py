"""Runs that ended without success: recorded failed, or submitted again with more resources.

A run whose task the scheduler ended (`states.LOST_STATES`) is recorded failed with the
scheduler's reason, once its dead task's claim can be taken over. Within
`SlurmConfig.retries`, a run lost to a failure another attempt may fix (`RETRYABLE`) is
submitted again with memory and time grown by `SlurmConfig.escalate` for its attempt; with
`retry_on_error`, so is a run whose operation raised.
"""

from __future__ import annotations

from typing import Any

from ...outcome import Outcome
from ...recording import record_lost
from ...sweep import Sweep
from .config import SlurmConfig
from .planning import Scripts, array_jobs
from .states import Lost, active_tails
from .submission import Submission

RETRYABLE = frozenset(
    {"SlurmTimeout", "SlurmOutOfMemory", "SlurmNodeFail", "SlurmPreempted", "SlurmBootFail"}
)
"""Scheduler failures worth another attempt (a cancellation or a crashing task is not)."""


def settle_lost(
    sweep: Sweep,
    submission: Submission,
    unresolved: dict[int, Lost],
    owner: dict[str, Any],
    retries: int,
) -> tuple[list[int], list[Outcome]]:
    """Record the `unresolved` lost runs failed, taking them out of `unresolved`; return
    (runs to submit again, with their next attempt noted in `submission`; the outcomes of
    the others). A run whose dead task still holds its claim stays unresolved."""
    retry: list[int] = []
    outcomes: list[Outcome] = []
    for index, (kind, message) in sorted(unresolved.items()):
        attempt = submission.attempt(index)
        outcome = record_lost(
            sweep.experiment, sweep.store, index, owner, message, sweep.session, kind
        )
        if outcome.state == "busy":
            continue  # its dead task's claim has not expired yet; try again next poll
        del unresolved[index]
        recorded = outcome.record is not None and outcome.record.get("error", {}).get("type")
        if recorded == kind and kind in RETRYABLE and attempt <= retries:
            submission.set_attempt(index, attempt + 1)
            retry.append(index)
        else:
            outcomes.append(outcome)
    return retry, outcomes


def split_errors(
    found: list[Outcome], submission: Submission, config: SlurmConfig
) -> tuple[list[Outcome], list[int]]:
    """Split outcomes found recorded into final ones and runs to submit again because their
    operation raised and `retry_on_error` allows another attempt (noted in `submission`).
    A run whose next attempt was submitted already is in neither: its record will come."""
    final: list[Outcome] = []
    again: list[int] = []
    for outcome in found:
        wanted = None if outcome.record is None else _attempt_after_error(outcome.record, config)
        if wanted is None:
            final.append(outcome)
        elif submission.attempt(outcome.index) < wanted:
            submission.set_attempt(outcome.index, wanted)
            again.append(outcome.index)
    return final, again


def _attempt_after_error(record: dict[str, Any], config: SlurmConfig) -> int | None:
    """Return the attempt that runs again a run whose operation raised, or None when its
    record is final."""
    if not config.retry_on_error or record["status"] != "failed":
        return None
    if (record.get("error") or {}).get("type", "").startswith("Slurm"):
        return None
    attempt = int(record.get("attempt", 1))
    return attempt + 1 if attempt <= config.retries else None


def resubmit(
    submission: Submission, scripts: Scripts, config: SlurmConfig, indices: list[int]
) -> None:
    """Submit `indices` again, each with memory and time grown for the attempt noted in
    `submission`. With `max_concurrent`, the new jobs wait for the sweep's jobs still queued
    or running, so the sweep never runs more than `max_concurrent` tasks at once. Raises
    `SubmissionError` (having cancelled what it submitted) when sbatch refuses."""
    by_attempt: dict[int, list[int]] = {}
    for index in indices:
        by_attempt.setdefault(submission.attempt(index), []).append(index)
    for attempt, group in sorted(by_attempt.items()):
        grown = config.escalated(attempt - 1)  # its attempts count from 0
        tails = active_tails(submission) if grown.max_concurrent is not None else []
        entries = scripts.entries(
            array_jobs(group, grown), grown, attempt=attempt, base=len(submission.jobs)
        )
        for entry in entries:
            if entry["after"] is None and tails:
                entry["waits_for"] = tails
        submission.jobs.extend(entries)
        submission.submit(entries)
