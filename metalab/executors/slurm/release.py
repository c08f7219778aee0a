"""Sweeps larger than the cluster lets a user queue: shards released in batches, on the cluster.

When a sweep has more array tasks than the queue limit (`limits.ClusterLimits.queue`, the
smaller of `MaxJobCount` and the user's `MaxSubmitJobs`) leaves room for, its array jobs are
cut into *batches* of consecutive jobs, each holding at most that many tasks. The submitting
process submits batch 0 and a small *release job* that waits for it
(`--dependency=afterany:<its jobs>`); when batch 0 has ended, the release job runs
`python -m metalab.executors.slurm.release`, which submits batch 1 and the release job of
batch 2, and so on: later shards follow as earlier ones end, and no process has to stay up on
the login node.

A release job never writes `submission.json` (the submitting process may be writing it); it
writes `<session>/released/batch-<k>.json` with the job id of each array job of its batch and
of the next release job, after each sbatch, atomically. `Submission.refresh` reads them.
Dependencies on jobs of earlier batches are dropped: those jobs have ended.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import commands
from .arrays import ArrayJob, dependency_option
from .config import SlurmConfig
from .script import log_dir, render_job

RELEASED = "released"
"""The directory, in the sweep's session directory, of the release jobs' records."""

RELEASE_MODULE = "metalab.executors.slurm.release"


def batches(jobs: Sequence[ArrayJob], room: int) -> list[int]:
    """Return the batch of each of `jobs` (in order): consecutive jobs, each batch holding at
    most `room` tasks (a job larger than `room` is a batch of its own)."""
    numbers: list[int] = []
    batch, held = 0, 0
    for job in jobs:
        if held and held + len(job.task_ids) > room:
            batch, held = batch + 1, 0
        held += len(job.task_ids)
        numbers.append(batch)
    return numbers


def record_path(session_dir: Path, batch: int) -> Path:
    """Return the record of the release job of `batch`."""
    return session_dir / RELEASED / f"batch-{batch}.json"


def read_record(session_dir: Path, batch: int) -> dict[str, Any]:
    """Return what the release job of `batch` submitted (`jobs`: position -> job id, and
    `release`: the next release job's id); empty when it has not run."""
    try:
        document = json.loads(record_path(session_dir, batch).read_text())
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def _write_record(session_dir: Path, batch: int, document: dict[str, Any]) -> None:
    path = record_path(session_dir, batch)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document))
    os.replace(tmp, path)


def release_script(session_dir: Path, root: Path, config: SlurmConfig, batch: int) -> Path:
    """Write the script of the release job of `batch`; return its path."""
    small = dataclasses.replace(config, time="10", memory="500M", cpus=1, gpus=0)
    command = [
        config.python,
        "-m",
        RELEASE_MODULE,
        "--submission",
        str(session_dir / "submission.json"),
        "--batch",
        str(batch),
    ]
    text = render_job(
        small,
        job_name=f"metalab-release-{batch}",
        command=command,
        output=str(log_dir(root) / f"release-{session_dir.name}-{batch}.out"),
    )
    path = session_dir / f"release-{batch}.sh"
    path.write_text(text)
    return path


def submit_release(
    session_dir: Path, root: Path, config: SlurmConfig, batch: int, after: Sequence[str]
) -> str:
    """Submit the release job of `batch`, waiting for the jobs `after`; return its id."""
    script = release_script(session_dir, root, config, batch)
    extra = [f"--dependency=afterany:{':'.join(after)}"] if after else []
    return commands.sbatch(str(script), extra)


def release(submission_path: Path, batch: int) -> dict[str, Any]:
    """Submit the array jobs of `batch` of the sweep recorded at `submission_path`, then the
    release job of the next batch, recording each job id as sbatch returns it. Idempotent
    for jobs already recorded. Raises `SubmissionError` when sbatch refuses."""
    document = json.loads(submission_path.read_text())
    session_dir = submission_path.parent
    root = Path(document["root"])
    config = SlurmConfig(**document["config"])
    record = read_record(session_dir, batch) or {"jobs": {}, "release": None}
    ids: dict[int, str] = {int(p): i for p, i in record["jobs"].items()}
    entries = [e for e in document["jobs"] if e.get("batch") == batch]
    for entry in entries:
        position = entry["position"]
        if position in ids:
            continue
        after = entry["after"]
        waits = [ids[after]] if after is not None and after in ids else []
        extra = [dependency_option(*waits)] if waits else []
        ids[position] = commands.sbatch(entry["script"], extra)
        record["jobs"] = {str(p): i for p, i in ids.items()}
        _write_record(session_dir, batch, record)
    later = {e.get("batch") for e in document["jobs"]} - {None}
    if batch + 1 in later and record.get("release") is None:
        mine = [ids[e["position"]] for e in entries]
        record["release"] = submit_release(session_dir, root, config, batch + 1, mine)
        _write_record(session_dir, batch, record)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {RELEASE_MODULE}")
    parser.add_argument("--submission", required=True, help="the sweep's submission.json")
    parser.add_argument("--batch", type=int, required=True, help="the batch to submit")
    args = parser.parse_args(argv)
    try:
        record = release(Path(args.submission), args.batch)
    except Exception:  # noqa: BLE001 - reported in the release job's log and exit status
        traceback.print_exc()
        return 1
    print(f"metalab: released batch {args.batch}: {record}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
