"""Runs that ended without success: recorded failed with their cause, or submitted again.

A run whose task the scheduler ended (`states.LOST_STATES`) is recorded failed with the
scheduler's reason and its cause (`causes.CAUSES`), once its dead task's claim can be taken
over; a run its task recorded itself while being ended carries its cause already. Each cause
has its own number of retries (`SlurmConfig.retries_for`): a preemption or a node failure
does not spend a retry meant for the run's own faults. A retry after a timeout gets more time,
one after running out of memory more memory (`SlurmConfig.escalate`); other causes re-run
as they were. A run whose operation raised counts as the cause `error`.
"""

from __future__ import annotations

from typing import Any

from ...outcome import Outcome
from ...recording import record_lost
from ...sweep import Sweep
from .causes import cause_of_record
from .config import SlurmConfig
from .planning import Scripts, array_jobs
from .states import Listing, Lost, active_tails
from .submission import Submission


def may_retry(
    submission: Submission, config: SlurmConfig, index: int, cause: str, attempt: int
) -> bool:
    """Whether run `index`, whose `attempt` was lost to `cause`, runs again; if so, note its
    next attempt and the retry of `cause` in `submission`."""
    if submission.tries(index).get(cause, 0) >= config.retries_for(cause):
        return False
    submission.note_retry(index, cause, attempt + 1)
    return True


def settle_lost(
    sweep: Sweep,
    submission: Submission,
    unresolved: dict[int, Lost],
    owner: dict[str, Any],
    config: SlurmConfig,
) -> tuple[list[int], list[Outcome]]:
    """Record the `unresolved` lost runs failed, taking them out of `unresolved`; return
    (runs to submit again, with their next attempt noted in `submission`; the outcomes of
    the others). A run whose dead task still holds its claim stays unresolved."""
    retry: list[int] = []
    outcomes: list[Outcome] = []
    for index, (kind, message, cause) in sorted(unresolved.items()):
        attempt = submission.attempt(index)
        outcome = record_lost(
            sweep.experiment, sweep.store, index, owner, message, sweep.session, kind, cause
        )
        if outcome.state == "busy":
            continue  # its dead task's claim has not expired yet; try again next poll
        del unresolved[index]
        recorded = _cause(outcome.record) if outcome.state == "failed" else None
        if recorded is not None and may_retry(submission, config, index, recorded, attempt):
            retry.append(index)
        else:
            outcomes.append(outcome)
    return retry, outcomes


def split_errors(
    found: list[Outcome], submission: Submission, config: SlurmConfig, *, decide: bool = True
) -> tuple[list[Outcome], list[int]]:
    """Split outcomes found recorded into final ones and runs to submit again: runs their
    task recorded lost (with a cause) and runs whose operation raised, within their cause's
    retries (noted in `submission`). A run whose next attempt was submitted already is in
    neither: its record will come. Without `decide` (a process that does not lead the sweep,
    see `lead`), a run within its retries is in neither either: the lead submits it again."""
    final: list[Outcome] = []
    again: list[int] = []
    for outcome in found:
        record = outcome.record
        if record is None or record["status"] != "failed":
            final.append(outcome)
            continue
        attempt = int(record.get("attempt", 1))
        if submission.attempt(outcome.index) > attempt:
            continue  # submitted again already
        cause = _cause(record)
        if cause == "preempted" and config.requeue:
            continue  # SLURM requeued its task, which runs it again (else `settle_lost` will)
        if cause is not None and not decide:
            if submission.tries(outcome.index).get(cause, 0) < config.retries_for(cause):
                continue  # the lead submits it again
            final.append(outcome)
        elif cause is not None and may_retry(submission, config, outcome.index, cause, attempt):
            again.append(outcome.index)
        else:
            final.append(outcome)
    return final, again


def _cause(record: dict[str, Any] | None) -> str | None:
    """The retry cause of a failed record: its lost cause, `error` when its operation
    raised, None for an older record lost to SLURM without a cause."""
    cause = cause_of_record(record)
    if cause is not None or record is None:
        return cause
    if (record.get("error") or {}).get("type", "").startswith("Slurm"):
        return None
    return "error"


def resubmit(
    submission: Submission,
    scripts: Scripts,
    config: SlurmConfig,
    indices: list[int],
    listing: Listing | None = None,
) -> None:
    """Submit `indices` again, each for the attempt noted in `submission`, with time grown
    once per timeout and memory once per out-of-memory it had. With `max_concurrent`, the
    new jobs wait for the sweep's jobs still queued or running, so the sweep never runs more
    than `max_concurrent` tasks at once (`listing`: the poll's squeue). Raises
    `SubmissionError` (having cancelled what it submitted) when sbatch refuses."""
    groups: dict[tuple[int, int, int], list[int]] = {}
    for index in indices:
        tries = submission.tries(index)
        key = (submission.attempt(index), tries.get("timeout", 0), tries.get("out_of_memory", 0))
        groups.setdefault(key, []).append(index)
    for (attempt, timeouts, out_of_memory), group in sorted(groups.items()):
        grown = config.grown(timeouts, out_of_memory)
        tails = active_tails(submission, listing) if grown.max_concurrent is not None else []
        entries = scripts.entries(
            array_jobs(group, grown), grown, attempt=attempt, base=len(submission.jobs)
        )
        for entry in entries:
            if entry["after"] is None and tails:
                entry["waits_for"] = tails
        submission.jobs.extend(entries)
        submission.submit(entries)
