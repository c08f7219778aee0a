"""`SlurmExecutor`: a sweep as index-addressed SLURM job arrays, followed through the store.

Submitting writes, under `<store>/slurm/<session>/`, the sweep's job file (`job.pkl`: store
locator, experiment key, session, options), one sbatch script per array job, and
`submission.json`, which lists every array job with its job id as soon as sbatch returned it.
Array tasks write their logs to `<store>/slurm/logs/<job>_<task>.out|.err`.

Completion is read from the store: a run is done when its record is there. The scheduler is
asked (one batched `squeue`, and `sacct` where accounting exists) only about tasks whose runs
have no record, to tell a task that vanished (time limit, out of memory, node failure,
cancellation, preemption) from one still queued. Runs of such a task are recorded failed with
the scheduler's reason and, within `SlurmConfig.retries`, submitted again with more memory and
time. Silence from the scheduler alone never marks a run failed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ...errors import ExecutorError, ValidationError
from ...locators import split_secrets
from ...outcome import Outcome
from ...recording import record_lost, recorded_outcomes
from . import commands
from .arrays import ArrayJob, compact_ranges, dependency_option, plan_arrays
from .config import SlurmConfig
from .script import entry_command, log_dir, render_script

ACTIVE_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
    }
)
"""States of a task that may still write its runs' records."""

LOST_STATES = {
    "TIMEOUT": "SlurmTimeout",
    "OUT_OF_MEMORY": "SlurmOutOfMemory",
    "NODE_FAIL": "SlurmNodeFail",
    "CANCELLED": "SlurmCancelled",
    "PREEMPTED": "SlurmPreempted",
    "BOOT_FAIL": "SlurmBootFail",
    "DEADLINE": "SlurmDeadline",
    "FAILED": "SlurmTaskFailed",
}
"""Final task states that end its unrecorded runs, and the error type they are recorded with."""

RETRYABLE = frozenset(
    {"SlurmTimeout", "SlurmOutOfMemory", "SlurmNodeFail", "SlurmPreempted", "SlurmBootFail"}
)
"""Scheduler failures worth another attempt (a cancellation or a crashing task is not)."""

_SESSION_DIR = "slurm"


class SlurmExecutor:
    """Run a sweep as SLURM job arrays; see the module doc.

    `work_dir` is where scripts, the job file and logs go: by default the file store's own
    directory (on the shared filesystem the tasks see). A store without a directory (a
    PostgreSQL store) needs one. `poll_interval` is how often the store and the scheduler are
    read while following the sweep.
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
        self._cancelled = False
        self._follows: dict[str, dict[str, Any]] = {}  # session -> its submission
        self._passfiles: dict[str, Path] = {}

    def manifest_details(self) -> dict[str, Any]:
        """What the submission's manifest records so `reconnect` finds the sweep's files."""
        return {"work_dir": str(self.work_dir.resolve())} if self.work_dir is not None else {}

    # ---------------------------------------------------------------- layout
    def session_dir(self, plan: Any) -> Path:
        """`<work dir>/slurm/<session>`: the job file, the scripts, `submission.json`."""
        return self._root(plan) / _SESSION_DIR / plan.job.session

    def _root(self, plan: Any) -> Path:
        if self.work_dir is not None:
            return self.work_dir
        root = getattr(plan.store, "root", None)
        if root is None:
            raise ValidationError(
                f"SlurmExecutor needs a directory on the shared filesystem for its scripts "
                f"and logs; {plan.store!r} has none: pass SlurmExecutor(config, work_dir=...)"
            )
        return Path(root)

    # ---------------------------------------------------------------- planning
    def plan(self, plan: Any, indices: Sequence[int] | None = None) -> dict[str, Any]:
        """Write the job file and the scripts for `indices` (default: the pending runs) without
        submitting; return the submission plan (see `SubmissionPlan`)."""
        indices = list(plan.pending if indices is None else indices)
        jobs = plan_arrays(
            indices,
            runs_per_task=self.config.runs_per_task,
            max_array_size=self.config.max_array_size,
            max_concurrent=self.config.max_concurrent,
        )
        directory = self.session_dir(plan)
        directory.mkdir(parents=True, exist_ok=True)
        log_dir(self._root(plan)).mkdir(parents=True, exist_ok=True)
        job_file = self._write_job_file(plan, directory)
        entries = []
        for position, job in enumerate(jobs):
            script = directory / f"array-{position:04d}-attempt-1.sh"
            script.write_text(self._script(plan, job, job_file, self.config, attempt=1))
            entries.append(_entry(position, job, script, attempt=1))
        hours = self.config.time_seconds / 3600
        tasks = sum(len(job.task_ids) for job in jobs)
        return {
            "experiment_id": plan.experiment.experiment_id,
            "session": plan.job.session,
            "total": len(plan.run_ids),
            "done": plan.skipped,
            "to_submit": len(indices),
            "tasks": tasks,
            "runs_per_task": self.config.runs_per_task,
            "jobs": entries,
            "max_concurrent": self.config.max_concurrent,
            "core_hours_max": round(tasks * self.config.cpus * hours, 3),
            "directory": str(directory),
            "config": config_document(self.config),
        }

    def _write_job_file(self, plan: Any, directory: Path) -> Path:
        """Write the sweep's job description; a password in the store locator is left out
        and kept in a file only the user can read, outside the store (see `_secrets`)."""
        import cloudpickle

        path = directory / "job.pkl"
        job = plan.job
        if isinstance(job.store, str):
            public, secrets = split_secrets(job.store)
            if secrets:
                self._passfiles[plan.job.session] = _write_passfile(plan.job.session, secrets)
                job = dataclasses.replace(job, store=public)
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(cloudpickle.dumps(job))
            os.replace(tmp, path)
        return path

    def _script(self, plan, job: ArrayJob, job_file: Path, config: SlurmConfig, attempt: int):
        command = entry_command(
            config.python,
            job_file=str(job_file),
            offset=job.offset,
            runs_per_task=job.runs_per_task,
            total=len(plan.run_ids),
            attempt=attempt,
        )
        passfile = self._passfiles.get(plan.job.session)
        if passfile is not None:
            # tasks find the password through libpq's password file, never in the store
            config = dataclasses.replace(
                config, setup=(f"export PGPASSFILE={shlex.quote(str(passfile))}", *config.setup)
            )
        name = f"metalab-{plan.experiment.name}"
        return render_script(
            config, job, job_name=name, logs=log_dir(self._root(plan)), command=command
        )

    # ---------------------------------------------------------------- submission
    def check_submission(self, experiment: Any, store: Any, pending: Sequence[int]) -> None:
        """Refuse to submit runs of `experiment` while an earlier submission of it to the same
        store still has tasks queued or running for some of them: they would run twice, and
        both submissions together would exceed `max_concurrent`. Tasks still ending whose
        runs all have their records do not count. One `squeue` call, made only when there is
        something to submit and an earlier submission to ask about."""
        root = self.work_dir if self.work_dir is not None else getattr(store, "root", None)
        if not pending or root is None:
            return
        wanted = set(pending)
        covering: dict[str, set[str]] = {}  # job id -> its task ids that run wanted runs
        session_of: dict[str, str] = {}
        for path in (Path(root) / _SESSION_DIR).glob("*/submission.json"):
            try:
                submission = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # being written, or not ours to read: nothing to follow
            if submission.get("experiment_id") != experiment.experiment_id:
                continue
            total = int(submission.get("total", 0))
            for job, task in _tasks_of(submission, wanted, total):
                covering.setdefault(job, set()).add(str(task))
                session_of[job] = submission.get("session", path.parent.name)
        if not covering:
            return
        running: dict[str, str] = {}  # job id -> state, of tasks with runs still wanted
        for key, task in commands.squeue(sorted(covering)).items():
            state = _state(task.state)
            job, _, task_id = key.partition("_")
            if state not in ACTIVE_STATES or state == "COMPLETING" or job not in covering:
                continue
            if task_id.isdigit() and task_id not in covering[job]:
                continue  # its runs are recorded: the task is only ending
            running.setdefault(job, state)
        if running:
            sessions = sorted({session_of[job] for job in running})
            raise ExecutorError(
                f"{experiment.experiment_id} already has SLURM jobs queued or running from an "
                f"earlier submission (session {', '.join(sessions)}; jobs "
                f"{', '.join(sorted(running, key=int))}): submitting again would run its runs "
                "twice and exceed max_concurrent. Follow it with metalab.reconnect(store, "
                "progress=True), or cancel it (handle.cancel() or scancel) and then run again, "
                "which submits only what is missing."
            )

    def open(self, plan: Any, sink: Any) -> None:
        """Submit every array job of the sweep before `metalab.run` returns."""
        if plan.job.session in self._follows:
            return
        self._cancelled = False
        submission = self.plan(plan)
        submission["submitted_at"] = time.time()
        submission["attempts"] = {}
        path = self.session_dir(plan) / "submission.json"
        _write_json(path, submission)  # the plan first, then each job id as it is submitted
        self._submit(plan, submission, submission["jobs"], path)
        sink.scheduler_queue(_job_ids(submission), queued=len(plan.pending), started=0)
        self._follows[plan.job.session] = {
            "plan": plan,
            "submission": submission,
            "path": path,
            "min_attempt": {},
        }

    def _submit(self, plan, submission: dict[str, Any], entries: list[dict], path: Path) -> None:
        """sbatch each entry in order, recording each job id as soon as it exists."""
        submitted: list[dict[str, Any]] = []
        position_to_id = {e["position"]: e.get("job_id") for e in submission["jobs"]}
        try:
            for entry in entries:
                extra = []
                waits = [entry["after"], *entry.get("waits_for", ())]
                ids = [position_to_id[p] for p in waits if p is not None and position_to_id.get(p)]
                if ids:
                    extra.append(dependency_option(*ids))
                entry["job_id"] = commands.sbatch(entry["script"], extra)
                entry["state"] = "submitted"
                position_to_id[entry["position"]] = entry["job_id"]
                submitted.append(entry)
                _write_json(path, submission)
        except commands.SlurmCommandError as exc:
            self._cancel_submitted(submitted, submission, path, exc)
            if exc.returncode is None:  # no answer: sbatch keeps retrying a refused array
                raise commands.SubmissionError(
                    exc.command,
                    None,
                    f"{exc.stderr}; sbatch retries while the cluster is at its job limit "
                    "(MaxJobCount counts every task of an array): lower max_array_size or "
                    "max_concurrent, or ask the administrators; the jobs this submission "
                    "made were cancelled",
                ) from exc
            raise
        except BaseException as exc:
            # never leave jobs running that the sweep does not know how to follow
            self._cancel_submitted(submitted, submission, path, exc)
            raise

    def _cancel_submitted(self, submitted, submission, path, cause: BaseException) -> None:
        """Cancel the jobs a failed submission made; if that fails too, say so on `cause`
        (the error the caller raises), which stays the error the user sees."""
        ids = [e["job_id"] for e in submitted]
        state = "cancelled after a failed submission"
        try:
            commands.scancel(ids)
        except commands.SlurmCommandError as failed:
            state = "submitted; cancelling it after a failed submission failed"
            cause.add_note(
                f"metalab could not cancel the jobs this submission made ({', '.join(ids)}): "
                f"{failed}; cancel them with scancel"
            )
        finally:
            for entry in submitted:
                entry["state"] = state
            _write_json(path, submission)

    # ---------------------------------------------------------------- following
    def execute(self, plan: Any, indices: list[int], sink: Any) -> None:
        """Follow the sweep until every index has a final record of this session."""
        if plan.job.session not in self._follows:
            self.open(plan, sink)
        follow = self._follows[plan.job.session]
        submission, path = follow["submission"], follow["path"]
        waiting = set(indices)
        min_attempt: dict[int, int] = follow["min_attempt"]
        unresolved: dict[int, tuple[str, str]] = {}  # lost but still claimed by its dead task
        quiet_since = time.monotonic()
        owner = None
        while waiting and not self._cancelled and not follow.get("cancelled"):
            found = self._recorded(plan, waiting, min_attempt)
            if found:
                sink.outcomes(found)
                waiting.difference_update(o.index for o in found)
                quiet_since = time.monotonic()
            if waiting:
                lost, active, split = self._classify(plan, submission, waiting)
                sink.scheduler_queue(_job_ids(submission), *split)
                if active:
                    quiet_since = time.monotonic()
                for index, (kind, message) in lost.items():
                    unresolved.setdefault(index, (kind, message))
                if unresolved:
                    from ... import _claims

                    owner = owner or _claims.owner(plan.job.session)
                    retry, outcomes = self._resolve(plan, unresolved, owner, submission)
                    for index in retry:
                        min_attempt[index] = submission["attempts"].get(str(index), 1)
                    if retry:
                        self._resubmit(plan, submission, path, retry)
                        quiet_since = time.monotonic()
                    if outcomes:
                        sink.outcomes(outcomes)
                        waiting.difference_update(o.index for o in outcomes)
                if (
                    waiting
                    and not active
                    and not unresolved
                    and time.monotonic() - quiet_since > self.stall_after
                ):
                    raise ExecutorError(
                        f"{len(waiting)} run(s) of {plan.experiment.experiment_id} have no "
                        f"record, and for {self.stall_after:.0f} s the scheduler has listed "
                        f"none of their tasks as queued or running (jobs "
                        f"{', '.join(_job_ids(submission))}). Resume with metalab.run"
                        "(experiment, store, executor=...), which submits only what is missing."
                    )
            if waiting:
                time.sleep(self.poll_interval)

    def _recorded(self, plan, waiting: set[int], min_attempt: dict[int, int]) -> list[Outcome]:
        found = recorded_outcomes(plan.store, plan.run_ids, waiting, plan.job.session, min_attempt)
        return [
            o
            for o in found
            if o.record is None or not self._retry_on_error(o.record, o.index, plan)
        ]

    def _retry_on_error(self, record: dict[str, Any], index: int, plan) -> bool:
        """Resubmit a run whose operation raised, when `retry_on_error` allows another try."""
        if not self.config.retry_on_error or record["status"] != "failed":
            return False
        if (record.get("error") or {}).get("type", "").startswith("Slurm"):
            return False
        follow = self._follows[plan.job.session]
        submission = follow["submission"]
        attempt = int(record.get("attempt", 1))
        if attempt > self.config.retries:
            return False
        if submission["attempts"].get(str(index), 1) > attempt:
            return True  # already resubmitted; wait for the new attempt
        submission["attempts"][str(index)] = attempt + 1
        self._resubmit(plan, submission, follow["path"], [index])
        return True

    def _classify(self, plan, submission, waiting: set[int]):
        """Ask the scheduler about the tasks of unrecorded runs.

        Returns the lost runs, whether any task is active, and how many unrecorded runs
        belong to tasks still queued and to tasks that started.
        """
        tasks = _tasks_of(submission, waiting, len(plan.run_ids))
        if not tasks:
            return {}, False, (0, 0)
        job_ids = sorted({job for job, _ in tasks})
        states = {k: s.state for k, s in commands.squeue(job_ids).items()}
        unknown = [key for key in tasks if f"{key[0]}_{key[1]}" not in states]
        if unknown:
            accounting = commands.sacct(sorted({job for job, _ in unknown}))
            for job, task in unknown:
                record = accounting.records.get(f"{job}_{task}")
                if record is not None:
                    states[f"{job}_{task}"] = record.state
        lost: dict[int, tuple[str, str]] = {}
        active = False
        queued = started = 0
        for (job, task), runs in tasks.items():
            state = states.get(f"{job}_{task}")
            if state is None:
                continue  # the scheduler does not know it (yet, or any more): wait
            state = _state(state)
            if state in ACTIVE_STATES:
                active = True
                if state == "PENDING":
                    queued += len(runs)
                else:
                    started += len(runs)
            elif state in LOST_STATES:
                kind = LOST_STATES[state]
                message = (
                    f"SLURM array task {job}_{task} ended {state} before this run wrote its "
                    f"record (log: {log_dir(self._root(plan)) / f'{job}_{task}.err'})"
                )
                for index in runs:
                    lost[index] = (kind, message)
        return lost, active, (queued, started)

    def _resolve(self, plan, unresolved, owner, submission):
        """Record lost runs failed (or mark them for retry); returns (retry, outcomes)."""
        retry: list[int] = []
        outcomes: list[Outcome] = []
        for index, (kind, message) in sorted(unresolved.items()):
            attempt = submission["attempts"].get(str(index), 1)
            outcome = record_lost(
                plan.experiment, plan.store, index, owner, message, plan.job.session, kind
            )
            if outcome.state == "busy":
                continue  # its dead task's claim has not expired yet; try again next poll
            del unresolved[index]
            if (
                outcome.record is not None
                and outcome.record.get("error", {}).get("type") == kind
                and kind in RETRYABLE
                and attempt <= self.config.retries
            ):
                submission["attempts"][str(index)] = attempt + 1
                retry.append(index)
            else:
                outcomes.append(outcome)
        return retry, outcomes

    def _resubmit(self, plan, submission: dict[str, Any], path: Path, indices: list[int]):
        """Submit `indices` again, with memory and time grown for their attempt."""
        by_attempt: dict[int, list[int]] = {}
        for index in indices:
            by_attempt.setdefault(submission["attempts"][str(index)], []).append(index)
        directory = Path(path).parent
        job_file = directory / "job.pkl"
        for attempt, group in sorted(by_attempt.items()):
            config = self.config.escalated(attempt - 1)  # its attempts count from 0
            jobs = plan_arrays(
                group,
                runs_per_task=config.runs_per_task,
                max_array_size=config.max_array_size,
                max_concurrent=config.max_concurrent,
            )
            base = len(submission["jobs"])
            # with a limit, the retries wait for the jobs still queued or running, so the
            # sweep never runs more than max_concurrent tasks at once
            tails = self._active_tails(submission) if config.max_concurrent is not None else []
            entries = []
            for k, job in enumerate(jobs):
                position = base + k
                script = directory / f"array-{position:04d}-attempt-{attempt}.sh"
                script.write_text(self._script(plan, job, job_file, config, attempt=attempt))
                entry = _entry(position, job, script, attempt=attempt)
                if job.after is not None:
                    entry["after"] = base + job.after
                elif tails:
                    entry["waits_for"] = tails
                entries.append(entry)
            submission["jobs"].extend(entries)
            self._submit(plan, submission, entries, path)

    @staticmethod
    def _active_tails(submission: dict[str, Any]) -> list[int]:
        """Positions of the submission's last jobs (no job waits for them) that the scheduler
        still lists as queued or running: waiting for them waits for every job before them.
        Jobs that ended are left out (sbatch refuses a dependency on a job it forgot)."""
        jobs = submission["jobs"]
        followed = {e["after"] for e in jobs if e["after"] is not None}
        followed.update(p for e in jobs for p in e.get("waits_for", ()))
        tails = {
            e["job_id"]: e["position"]
            for e in jobs
            if e.get("job_id") and e.get("state") == "submitted" and e["position"] not in followed
        }
        if not tails:
            return []
        active = {
            key.split("_")[0]
            for key, task in commands.squeue(sorted(tails)).items()
            if _state(task.state) in ACTIVE_STATES
        }
        return sorted(position for job_id, position in tails.items() if job_id in active)

    def cancel(self, session: str | None = None) -> None:
        """Cancel the array jobs of one sweep (or of all); the handle records unstarted runs
        cancelled."""
        if session is None:
            self._cancelled = True
        for key, follow in list(self._follows.items()):
            if session is None or key == session:
                follow["cancelled"] = True
                commands.scancel(_job_ids(follow["submission"]))

    def close(self, plan: Any) -> None:
        """Forget the sweep (its jobs belong to the scheduler); the password file of a sweep
        whose every run has a record goes too."""
        follow = self._follows.pop(plan.job.session, None)
        passfile = self._passfiles.pop(plan.job.session, None)
        if passfile is not None and follow is not None and not _job_ids(follow["submission"]):
            passfile.unlink(missing_ok=True)  # nothing was submitted
        elif passfile is not None and follow is not None:
            final, _ = plan.store.scan()
            if all(run_id in final for run_id in plan.run_ids):
                passfile.unlink(missing_ok=True)

    def min_attempts(self, plan: Any) -> dict[int, int]:
        """Runs resubmitted for another attempt: index -> the attempt whose record counts."""
        follow = self._follows.get(plan.job.session)
        return dict(follow["min_attempt"]) if follow is not None else {}

    # ---------------------------------------------------------------- reconnecting
    @classmethod
    def following(cls, plan: Any, directory: Path) -> SlurmExecutor:
        """An executor that follows the submission recorded in `directory` (no submitting)."""
        submission = json.loads((directory / "submission.json").read_text())
        config = SlurmConfig(**submission.get("config", {}))
        executor = cls(config, work_dir=directory.parent.parent)
        submission.setdefault("attempts", {})
        executor._follows[plan.job.session] = {
            "plan": plan,
            "submission": submission,
            "path": directory / "submission.json",
            # resubmitted runs: only a record of their latest attempt is final
            "min_attempt": {int(i): int(a) for i, a in submission["attempts"].items()},
        }
        return executor

    def __repr__(self) -> str:
        return f"SlurmExecutor({self.config!r})"


def _entry(position: int, job: ArrayJob, script: Path, *, attempt: int) -> dict[str, Any]:
    return {
        "position": position,
        "shard": job.shard,
        "offset": job.offset,
        "runs_per_task": job.runs_per_task,
        "array": job.array,
        "task_ranges": [list(r) for r in compact_ranges(job.task_ids)],
        "after": job.after,
        "lane": job.lane,
        "attempt": attempt,
        "script": str(script),
        "job_id": None,
        "state": "planned",
    }


def _task_ids(entry: dict[str, Any]) -> Iterator[int]:
    """The array task ids of a submission entry (kept as compact ranges)."""
    for first, last in entry["task_ranges"]:
        yield from range(first, last + 1)


def _job_ids(submission: dict[str, Any]) -> list[str]:
    return [e["job_id"] for e in submission["jobs"] if e.get("job_id")]


def _state(reported: str) -> str:
    """A task's state as squeue or sacct report it, without details (`CANCELLED by 0`,
    `RUNNING+`)."""
    return reported.split(" ")[0].rstrip("+")


def _tasks_of(submission: dict[str, Any], waiting: set[int], total: int):
    """(job id, task id) -> run indices still waiting, for the latest attempt of each run."""
    tasks: dict[tuple[str, int], list[int]] = {}
    latest: dict[int, tuple[str, int]] = {}
    for entry in submission["jobs"]:
        job_id = entry.get("job_id")
        if not job_id:
            continue
        per = entry["runs_per_task"]
        for task in _task_ids(entry):
            start = entry["offset"] + task * per
            for index in range(start, min(start + per, total)):
                if index in waiting:
                    latest[index] = (job_id, task)  # later entries are later attempts
    for index, key in latest.items():
        tasks.setdefault(key, []).append(index)
    return tasks


def _write_passfile(session: str, secrets: list[tuple[str, str, str, str, str]]) -> Path:
    """A libpq password file (0600, in ~/.metalab/pgpass/, outside every store)."""
    directory = Path.home() / ".metalab" / "pgpass"
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / session

    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace(":", "\\:")

    lines = "".join(":".join(escape(v) for v in secret) + "\n" for secret in secrets)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(lines)
    os.chmod(path, 0o600)
    return path


def _write_json(path: Path, document: dict[str, Any]) -> None:
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(document, separators=(",", ":"), default=str))
    os.replace(tmp, path)


def config_document(config: SlurmConfig) -> dict[str, Any]:
    """The config as JSON-able keyword arguments (kept in `submission.json`)."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = (
            list(value)
            if isinstance(value, tuple)
            else (dict(value) if hasattr(value, "items") else value)
        )
    return out
