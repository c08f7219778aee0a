"""`SlurmExecutor`: a sweep as index-addressed SLURM job arrays, followed through the store.

Submitting writes, under the work directory, the sweep's job file, one sbatch script per
array job, and `submission.json`, which lists every array job with its job id as soon as
sbatch returned it (see `layout`, `planning`, `submission`).

Completion is read from the store: a run is done when its record is there. The scheduler is
asked only about tasks whose runs have no record, to tell a task that vanished (time limit,
out of memory, node failure, cancellation, preemption) from one still queued (see
`states`). Runs of such a task are recorded failed with the scheduler's reason and, within
`SlurmConfig.retries`, submitted again with more memory and time (see `retries`). Silence
from the scheduler alone never marks a run failed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ... import claims
from ...contracts import ExecutorBase, Sink, Store
from ...errors import ExecutorError, ValidationError
from ...experiment import Experiment
from ...outcome import Outcome
from ...recording import recorded_outcomes
from ...sweep import Sweep
from . import commands, passfiles
from .config import SlurmConfig
from .layout import session_directory, submission_file
from .lead import Lead
from .planning import Scripts, prepare
from .release import needs_release, submit_release
from .retries import resubmit, settle_lost, split_errors
from .returns import REQUEUED
from .script import log_dir
from .states import Listing, Lost, census, running
from .submission import DEFERRED, Submission, earlier_submissions


@dataclass
class _Followed:
    """A sweep this executor submitted or follows."""

    sweep: Sweep
    submission: Submission
    scripts: Scripts
    cancelled: bool = False

    def __post_init__(self) -> None:
        self.lead = Lead(self.scripts.directory)

    @property
    def config(self) -> SlurmConfig:
        """The config the sweep was submitted with (planned within the cluster's limits)."""
        return self.submission.config()

    def leads(self) -> bool:
        """Whether this process leads the sweep (see `lead`); when it does not, its record
        of the submission is read again: the lead's, as it is now."""
        if self.lead.held():
            return True
        try:
            self.submission = Submission.read(self.submission.path)
        except (OSError, ValueError):
            pass  # being replaced: the record read last stays until the next poll
        return False


class SlurmExecutor(ExecutorBase):
    """Run a sweep as SLURM job arrays; see the module doc.

    `work_dir` is where scripts, the job file and logs go: by default the store's work
    directory (a file store's own directory, on the shared filesystem the tasks see). A
    store without one (a PostgreSQL store) needs it. `poll_interval` is how often the store
    and the scheduler are read while following the sweep; `stall_after` how long runs may
    lack records while the scheduler lists none of their tasks before the sweep fails.
    """

    synchronous = False

    def __init__(
        self,
        config: SlurmConfig | None = None,
        *,
        work_dir: str | os.PathLike[str] | None = None,
        poll_interval: float = 5.0,
        stall_after: float = 600.0,
    ):
        if config is None:
            config = SlurmConfig()
        if not isinstance(config, SlurmConfig):
            raise ValidationError(f"SlurmExecutor needs a metalab.SlurmConfig, got {config!r}")
        for name, value in (("poll_interval", poll_interval), ("stall_after", stall_after)):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 < value < float("inf")
            ):
                raise ValidationError(f"{name} must be a positive number of seconds, got {value!r}")
        self.config = config
        self.work_dir = None if work_dir is None else Path(work_dir)
        self.poll_interval = float(poll_interval)
        self.stall_after = float(stall_after)
        self._follows: dict[str, _Followed] = {}  # by session: one executor, several sweeps

    def manifest_details(self) -> dict[str, Any]:
        """Return the work directory, when given, so `reconnect` finds the sweep's files."""
        return {"work_dir": str(self.work_dir.resolve())} if self.work_dir is not None else {}

    def _work_root(self, store: Store) -> Path | None:
        """Return the work directory of sweeps into `store`, if there is one."""
        return self.work_dir if self.work_dir is not None else store.work_directory()

    def _root(self, store: Store) -> Path:
        """Return the work directory of a sweep into `store`; ValidationError without one."""
        root = self._work_root(store)
        if root is None:
            raise ValidationError(
                f"SlurmExecutor needs a directory on the shared filesystem for its scripts "
                f"and logs; {store!r} has none: pass SlurmExecutor(config, work_dir=...)"
            )
        return root

    # ---------------------------------------------------------------- before submitting
    def check_submission(
        self, experiment: Experiment, store: Store, pending: Sequence[int]
    ) -> None:
        """Refuse, with ExecutorError, to submit runs of `experiment` while an earlier
        submission of it from the same work directory still has tasks queued or running for
        some of them: they would run twice, and both submissions together would exceed
        `max_concurrent`. Tasks still ending whose runs all have their records do not count.
        Read-only: one `squeue` call, made only when there is something to submit and an
        earlier submission to ask about."""
        root = self._work_root(store)
        if not pending or root is None:
            return
        wanted = set(pending)
        covering: dict[str, set[str]] = {}  # job id -> its task ids that run wanted runs
        session_of: dict[str, str] = {}
        for submission in earlier_submissions(root, experiment.experiment_id):
            submission.refresh()  # jobs its release jobs submitted
            for release_id in submission.release_ids():  # it submits more runs later
                covering.setdefault(release_id, set())
                session_of[release_id] = submission.session
            floors = submission.min_attempts()
            for (job, task), indices in submission.tasks_of(wanted).items():
                if _all_recorded(experiment, store, indices, submission.session, floors):
                    continue  # its runs failed and were recorded: the task is only ending
                covering.setdefault(job, set()).add(str(task))
                session_of[job] = submission.session
        active = running(covering) if covering else {}
        if active:
            sessions = sorted({session_of[job] for job in active})
            raise ExecutorError(
                f"{experiment.experiment_id} already has SLURM jobs queued or running from an "
                f"earlier submission (session {', '.join(sessions)}; jobs "
                f"{', '.join(sorted(active, key=int))}): submitting again would run its runs "
                "twice and exceed max_concurrent. Follow it with metalab.reconnect(store, "
                "progress=True), or cancel it (handle.cancel() or scancel) and then run again, "
                "which submits only what is missing."
            )

    def describe(self, sweep: Sweep) -> dict[str, Any]:
        """Write the job file and the scripts of the pending runs without submitting; return
        the submission sweep: `jobs` (each with its `array` spec, `shard`, `offset`,
        `script`), `tasks`, `core_hours_max`, `directory`, `config`. ValidationError when
        there is no work directory; rewriting is harmless."""
        document, _ = prepare(sweep, self.config, self._root(sweep.store))
        return document

    # ---------------------------------------------------------------- submitting
    def open(self, sweep: Sweep, sink: Sink) -> None:
        """Submit every array job of the sweep before `metalab.run` returns; idempotent for
        a sweep already submitted. On a refused sbatch, the jobs submitted are cancelled and
        `SubmissionError` is raised."""
        if sweep.session in self._follows:
            return
        document, scripts = prepare(sweep, self.config, self._root(sweep.store))
        document["submitted_at"] = time.time()
        submission = Submission(submission_file(scripts.directory), document)
        submission.save()  # the plan first, then each job id as it is submitted
        followed = _Followed(sweep, submission, scripts)
        followed.lead.held()  # the submitting process leads the sweep it submits
        try:
            submission.submit([e for e in submission.jobs if e["state"] != DEFERRED])
            if needs_release(submission.document):  # the rest in batches, or after a pilot
                self._release_rest(followed)
        except BaseException:
            self._forget(followed)
            raise
        sink.scheduler_queue(submission.job_ids(), queued=len(sweep.pending), started=0)
        self._follows[sweep.session] = followed

    @staticmethod
    def _release_rest(followed: _Followed) -> None:
        """Submit the release job that submits the rest of the sweep once its first jobs
        have ended (see `release`); on failure, cancel the jobs submitted and raise."""
        submission, scripts = followed.submission, followed.scripts
        first = submission.job_ids()
        try:
            release_id = submit_release(scripts.directory, scripts.root, followed.config, 1, first)
        except BaseException as exc:
            try:
                commands.scancel(first)
            except commands.SlurmCommandError as failed:
                exc.add_note(f"cancelling jobs {', '.join(first)} failed too: {failed}")
            raise
        submission.document["releases"] = {"1": release_id}
        submission.save()

    def execute(self, sweep: Sweep, indices: Sequence[int], sink: Sink) -> None:
        """Follow the sweep until each of `indices` has a final record of this sweep (runs
        of tasks the scheduler ended are recorded failed, or submitted again), or until
        `cancel`. ExecutorError when for `stall_after` seconds no run got its record while
        the scheduler listed none of their tasks; SlurmCommandError when a command fails."""
        if sweep.session not in self._follows:
            self.open(sweep, sink)
        followed = self._follows[sweep.session]
        waiting = set(indices)
        unresolved: dict[int, Lost] = {}  # lost, but still claimed by its dead task
        quiet_since = time.monotonic()
        while waiting and not followed.cancelled:
            if self._poll(followed, waiting, unresolved, sink):
                quiet_since = time.monotonic()
            elif waiting and not unresolved and time.monotonic() - quiet_since > self.stall_after:
                raise ExecutorError(
                    f"{len(waiting)} run(s) of {sweep.experiment.experiment_id} have no "
                    f"record, and for {self.stall_after:.0f} s the scheduler has listed "
                    f"none of their tasks as queued or running (jobs "
                    f"{', '.join(followed.submission.job_ids())}). Resume with metalab.run"
                    "(experiment, store, executor=...), which submits only what is missing."
                )
            if waiting:
                time.sleep(self.poll_interval)

    def _poll(
        self, followed: _Followed, waiting: set[int], unresolved: dict[int, Lost], sink: Sink
    ) -> bool:
        """Report the runs of `waiting` recorded since the last poll and settle those whose
        task ended without their record; return whether the sweep moved (a record, a task
        queued or running, a resubmission)."""
        leads = followed.leads()  # only the lead submits runs again and settles lost ones
        sweep, submission = followed.sweep, followed.submission
        if submission.refresh() and leads:  # a release job submitted the next batch
            submission.save()
        found = recorded_outcomes(
            sweep.store, sweep.run_ids, waiting, sweep.session, submission.min_attempts()
        )
        config = followed.config
        listing = Listing(submission)  # one squeue of all the sweep's jobs per poll
        final, again = split_errors(found, submission, config, decide=leads)
        self._report(final, waiting, sink)
        if again:
            resubmit(submission, followed.scripts, config, again, listing)
        if not waiting:
            return True
        seen = census(submission, waiting, log_dir(followed.scripts.root), listing)
        sink.scheduler_queue(submission.job_ids(), seen.queued, seen.started)
        if not leads:  # the lead settles what the scheduler ended; this process waits
            return bool(final or seen.active)
        for index, lost in seen.lost.items():
            unresolved.setdefault(index, lost)
        retried = False
        # never started: submitted again as the same attempt (but for a requeued task's)
        returned = sorted(i for i, reason in seen.returned.items() if reason != REQUEUED)
        if returned:
            resubmit(submission, followed.scripts, config, returned, listing)
            retried = True
        if unresolved:
            owner = claims.owner(sweep.session)
            retry, outcomes = settle_lost(sweep, submission, unresolved, owner, config)
            if retry:
                resubmit(submission, followed.scripts, config, retry, listing)
                retried = True
            self._report(outcomes, waiting, sink)
        return bool(final or again or seen.active or retried)

    @staticmethod
    def _report(outcomes: list[Outcome], waiting: set[int], sink: Sink) -> None:
        if outcomes:
            sink.outcomes(outcomes)
            waiting.difference_update(o.index for o in outcomes)

    # ---------------------------------------------------------------- ending
    def cancel(self, session: str) -> None:
        """Cancel the array jobs of sweep `session` (the sweep then records its unstarted
        runs cancelled) and stop following it. Idempotent; SlurmCommandError when scancel
        fails."""
        followed = self._follows.get(session)
        if followed is not None:
            followed.cancelled = True
            followed.leads()  # a follower cancels the jobs the lead submitted too
            submission = followed.submission
            submission.refresh()
            commands.scancel([*submission.release_ids(), *submission.job_ids()])

    def close(self, sweep: Sweep) -> None:
        """Forget the sweep (its jobs belong to the scheduler); idempotent. Its password
        file goes too when nothing was submitted or every run has its record."""
        followed = self._follows.pop(sweep.session, None)
        if followed is not None:
            followed.lead.release()
            self._forget(followed)

    @staticmethod
    def _forget(followed: _Followed) -> None:
        passfile = followed.scripts.passfile
        if passfile is None:
            return
        sweep = followed.sweep
        if followed.submission.job_ids():
            final, _ = sweep.store.scan()
            if not all(run_id in final for run_id in sweep.run_ids):
                return  # its tasks still read it
        passfile.unlink(missing_ok=True)

    def min_attempts(self, sweep: Sweep) -> dict[int, int]:
        """Return the runs submitted again: index -> the attempt whose record counts."""
        followed = self._follows.get(sweep.session)
        return followed.submission.min_attempts() if followed is not None else {}

    # ---------------------------------------------------------------- following
    @classmethod
    def follower(cls, sweep: Sweep, manifest: Mapping[str, Any]) -> SlurmExecutor | None:
        """Return an executor that follows the array jobs of `sweep`, submitted by another
        process (`manifest`), from their `submission.json`; None when that record is not
        found (the store alone is then watched). Submits nothing; ValueError or OSError
        when the record cannot be read."""
        given = (manifest.get("executor_details") or {}).get("work_dir")
        root = Path(given) if given else sweep.store.work_directory()
        if root is None:
            return None
        path = submission_file(session_directory(root, sweep.session))
        if not path.exists():
            return None
        return cls._following(sweep, Submission.read(path), root)

    @classmethod
    def _following(cls, sweep: Sweep, submission: Submission, root: Path) -> SlurmExecutor:
        executor = cls(submission.config(), work_dir=root)
        scripts = Scripts.of(sweep, root, passfiles.existing(sweep.session))
        executor._follows[sweep.session] = _Followed(sweep, submission, scripts)
        return executor

    def __repr__(self) -> str:
        return f"SlurmExecutor({self.config!r})"


def _all_recorded(
    experiment: Experiment,
    store: Store,
    indices: Sequence[int],
    session: str,
    floors: Mapping[int, int],
) -> bool:
    """Whether every run of `indices` has a final record of `session`, of the attempt its
    task runs (`floors`): what a task still running for them could only be ending."""
    run_ids = {experiment.run_spec(i).run_id: i for i in indices}
    recorded = 0
    for record in store.get_records(run_ids):
        index = run_ids[record["run_id"]]
        if record.get("provenance", {}).get("session") != session:
            return False
        if int(record.get("attempt", 1)) < floors.get(index, 0):
            return False
        recorded += 1
    return recorded == len(run_ids)
