"""A sweep's submission and its record on disk, `submission.json`.

The record is written before the first `sbatch` (the sweep: every array job, none submitted)
and again after each one, with the job id sbatch returned: a process that dies mid-way
leaves a record naming every job it submitted, and `reconnect` follows the sweep from it.
Each write is atomic (temp file, then `os.replace`).

Its keys: what a dry run shows (see `planning.describe`), `submitted_at`, `attempts` (run
index -> the attempt it was last submitted for, when above 1), `tries` (run index -> cause ->
the retries that cause has used) and `jobs`, one `Entry` per array job in submission order
(resubmissions are appended).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any, NotRequired, TypedDict, cast

from . import commands
from .arrays import ArrayJob, compact_ranges, dependency_option
from .config import SlurmConfig
from .layout import submission_files
from .released import read_record, rest_batch

SUBMITTED = "submitted"
"""`Entry.state` of a job sbatch accepted."""
DEFERRED = "deferred"
"""`Entry.state` of a job a release job submits once the batch before its own has ended."""


class Entry(TypedDict):
    """One array job of a submission."""

    position: int
    shard: int
    offset: int
    runs_per_task: int
    array: str
    task_ranges: list[list[int]]
    after: int | None
    """Position of the job this one waits for (its lane's previous job)."""
    lane: int
    attempt: int
    script: str
    job_id: str | None
    state: str
    """`planned`, `submitted`, or how a failed submission left it."""
    waits_for: NotRequired[list[int]]
    """Positions of jobs a resubmission waits for (to stay within `max_concurrent`)."""
    batch: NotRequired[int]
    """The batch a sweep larger than the queue limits submits the job in (see `release`)."""


def new_entry(position: int, job: ArrayJob, script: Path, *, attempt: int) -> Entry:
    """Return the entry of array job `job`, planned at `position` with its `script`."""
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


def task_ids(entry: Entry) -> Iterator[int]:
    """Yield the array task ids of `entry` (kept as compact ranges)."""
    for first, last in entry["task_ranges"]:
        yield from range(first, last + 1)


class Submission:
    """The submission record of one sweep, kept in `path`."""

    def __init__(self, path: Path, document: dict[str, Any]) -> None:
        self.path = path
        self.document = document
        document.setdefault("attempts", {})
        document.setdefault("tries", {})

    @classmethod
    def read(cls, path: Path) -> Submission:
        """Read the record at `path`; OSError or ValueError when it cannot be read."""
        document = json.loads(path.read_text())
        if not isinstance(document, dict):
            raise ValueError(f"{path} holds no submission record")
        return cls(path, document)

    def save(self) -> None:
        """Write the record atomically."""
        tmp = Path(f"{self.path}.tmp")
        tmp.write_text(json.dumps(self.document, separators=(",", ":"), default=str))
        os.replace(tmp, self.path)

    @property
    def jobs(self) -> list[Entry]:
        """Every array job, in submission order."""
        return cast(list[Entry], self.document["jobs"])

    @property
    def total(self) -> int:
        """Runs in the sweep."""
        return int(self.document.get("total", 0))

    @property
    def session(self) -> str:
        """The sweep's session (the name of its directory in records before it was kept)."""
        return str(self.document.get("session", self.path.parent.name))

    def config(self) -> SlurmConfig:
        """Return the config the sweep was submitted with."""
        return SlurmConfig(**self.document.get("config", {}))

    def attempt(self, index: int) -> int:
        """Return the attempt run `index` was last submitted for."""
        return int(self.document["attempts"].get(str(index), 1))

    def set_attempt(self, index: int, attempt: int) -> None:
        """Note that run `index` is submitted again for `attempt`."""
        self.document["attempts"][str(index)] = attempt

    def tries(self, index: int) -> dict[str, int]:
        """Return, by cause, how many retries run `index` was given after losing to it."""
        return dict(self.document["tries"].get(str(index), {}))

    def note_retry(self, index: int, cause: str, attempt: int) -> None:
        """Note that run `index`, lost to `cause`, is submitted again for `attempt`."""
        tries = self.document["tries"].setdefault(str(index), {})
        tries[cause] = tries.get(cause, 0) + 1
        self.set_attempt(index, attempt)

    def min_attempts(self) -> dict[int, int]:
        """Return, by resubmitted run, the attempt whose record counts."""
        return {int(i): int(a) for i, a in self.document["attempts"].items()}

    def job_ids(self) -> list[str]:
        """Return the ids of the jobs sbatch accepted, in submission order."""
        return [job_id for e in self.jobs if (job_id := e.get("job_id"))]

    def release_ids(self) -> list[str]:
        """Return the ids of the release jobs submitted so far (see `release`)."""
        return [str(i) for i in self.document.get("releases", {}).values() if i]

    def refresh(self) -> bool:
        """Read the job ids the release jobs submitted (see `release`) into the deferred
        entries; return whether any was new."""
        new = False
        deferred = {e["position"]: e for e in self.jobs if e.get("state") == DEFERRED}
        batches = {e.get("batch", 0) for e in deferred.values()}
        rest = rest_batch(self.document)
        planned: list[dict[str, Any]] = []
        planned_batches = {e.get("batch", 0) for e in self.jobs}
        if rest is not None:  # the rest of a sweep sized by its pilot, planned by batch `rest`
            planned = read_record(self.path.parent, rest).get("entries", [])
            planned_batches |= {e.get("batch", rest) for e in planned}
            batches |= {e.get("batch", rest) for e in planned} | {rest}
        # a release job notes its batch's jobs before it submits the next release job: a
        # batch read between the two is read again until its release job is noted
        noted = self.document.get("releases", {})
        batches |= {
            b
            for b in planned_batches
            if b >= 1 and b + 1 in planned_batches and not noted.get(str(b + 1))
        }
        if not batches:
            return False
        known = {e["position"] for e in self.jobs}
        for batch in sorted(batches):
            record = read_record(self.path.parent, batch)
            for item in planned:
                job_id = record.get("jobs", {}).get(str(item["position"]))
                if job_id and item["position"] not in known:
                    added = {**item, "job_id": str(job_id), "state": SUBMITTED}
                    self.jobs.append(cast(Entry, added))
                    known.add(item["position"])
                    new = True
            for position, job_id in record.get("jobs", {}).items():
                entry = deferred.get(int(position))
                if entry is not None:
                    entry["job_id"], entry["state"], new = str(job_id), SUBMITTED, True
            if record.get("release") and not noted.get(str(batch + 1)):
                self.document.setdefault("releases", {})[str(batch + 1)] = record["release"]
                noted = self.document["releases"]
                new = True
        return new

    def tasks_of(self, waiting: Collection[int]) -> dict[tuple[str, int], list[int]]:
        """Return (job id, task id) -> the runs of `waiting` it runs, for the latest attempt
        of each run (a resubmitted run belongs to its latest job only)."""
        total = self.total
        latest: dict[int, tuple[str, int]] = {}
        for entry in self.jobs:
            job_id = entry.get("job_id")
            if not job_id:
                continue
            per = entry["runs_per_task"]
            for task in task_ids(entry):
                start = entry["offset"] + task * per
                for index in range(start, min(start + per, total)):
                    if index in waiting:
                        latest[index] = (job_id, task)  # later entries are later attempts
        tasks: dict[tuple[str, int], list[int]] = {}
        for index, key in latest.items():
            tasks.setdefault(key, []).append(index)
        return tasks

    # ------------------------------------------------------------------ submitting
    def submit(self, entries: list[Entry]) -> None:
        """sbatch each of `entries` in order (each waiting for the jobs it names), recording
        each job id as soon as it exists. Not idempotent: each call submits.

        On failure the jobs this call submitted are cancelled (never leave jobs running that
        nobody follows) and the error is raised: `SubmissionError` naming sbatch's stderr.
        """
        submitted: list[Entry] = []
        position_to_id = {e["position"]: e.get("job_id") for e in self.jobs}
        try:
            for entry in entries:
                waits = [entry["after"], *entry.get("waits_for", ())]
                ids = [i for p in waits if p is not None and (i := position_to_id.get(p))]
                extra = [dependency_option(*ids)] if ids else []
                entry["job_id"] = commands.sbatch(entry["script"], extra)
                entry["state"] = SUBMITTED
                position_to_id[entry["position"]] = entry["job_id"]
                submitted.append(entry)
                self.save()
        except commands.SlurmCommandError as exc:
            self._cancel_submitted(submitted, exc)
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
            self._cancel_submitted(submitted, exc)
            raise

    def _cancel_submitted(self, submitted: list[Entry], cause: BaseException) -> None:
        """Cancel the jobs a failed submission made; if that fails too, say so on `cause`
        (the error the caller raises), which stays the error the user sees."""
        ids = [job_id for e in submitted if (job_id := e["job_id"])]
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
            self.save()


def earlier_submissions(root: Path, experiment_id: str) -> Iterator[Submission]:
    """Yield the readable submission records under `root` of sweeps of `experiment_id`."""
    for path in submission_files(root):
        try:
            submission = Submission.read(path)
        except (OSError, ValueError):
            continue  # being written, or not ours to read: nothing to follow
        if submission.document.get("experiment_id") == experiment_id:
            yield submission


def config_document(config: SlurmConfig) -> dict[str, Any]:
    """Return the config as JSON-able keyword arguments (kept in `submission.json`)."""
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _plain(value: object) -> object:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value
