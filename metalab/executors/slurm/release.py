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
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ... import execute
from . import commands, passfiles
from .arrays import dependency_option
from .config import SlurmConfig
from .layout import job_file
from .limits import ClusterLimits, batches, queue_room
from .planning import Scripts, array_jobs
from .released import read_record, rest_batch, write_record
from .script import log_dir, render_job
from .sizing import durations, pack_size, typical
from .submission import DEFERRED

RELEASE_MODULE = "metalab.executors.slurm.release"

RELEASED_BASE = 1_000_000
"""First position of the array jobs a release job plans itself (the positions below are the
submitting process's, which appends resubmissions)."""


def needs_release(document: dict[str, Any]) -> bool:
    """Whether a sweep planned as `document` has jobs a release job submits: later batches,
    or the rest of a sweep sized by its pilot."""
    if any(e.get("state") == DEFERRED for e in document["jobs"]):
        return True
    sizing = document.get("sizing") or {}
    return sizing.get("from") == "pilot" and bool(sizing.get("rest"))


def release_script(session_dir: Path, root: Path, config: SlurmConfig, batch: int) -> Path:
    """Write the script of the release job of `batch`; return its path."""
    small = dataclasses.replace(config, time="10", memory="500M", cpus=1, gpus=0)
    small = passfiles.exported(small, passfiles.existing(session_dir.name))
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
    """Submit the array jobs of `batch` of the sweep recorded at `submission_path` (or, after
    a pilot, plan and submit the rest of the sweep, see `sizing`), then the release job of
    the next batch, recording each job id as sbatch returns it; nothing once the sweep was
    cancelled. Idempotent for jobs already recorded. Raises `SubmissionError` when sbatch
    refuses."""
    document = json.loads(submission_path.read_text())
    session_dir = submission_path.parent
    root = Path(document["root"])
    config = SlurmConfig(**document["config"])
    record = read_record(session_dir, batch) or {"jobs": {}, "release": None}
    store, key = _opened(session_dir)
    if store.cancel_requested(document["session"]):  # handle.cancel() came first
        record["cancelled"] = True
        write_record(session_dir, batch, record)
        return record
    rest = rest_batch(document)
    if rest is not None and batch == rest and "entries" not in record:
        experiment = execute.load_experiment(store, key)
        record.update(_after_pilot(document, store, experiment, root, config, rest))
        write_record(session_dir, batch, record)
    planned = document["jobs"]
    if rest is not None and batch >= rest:  # the rest of a sweep sized by its pilot
        planned = (record if batch == rest else read_record(session_dir, rest)).get("entries", [])
    entries = [e for e in planned if e.get("batch") == batch]
    ids: dict[int, str] = {int(p): i for p, i in record["jobs"].items()}
    for entry in entries:
        position = entry["position"]
        if position in ids:
            continue
        after = entry["after"]
        waits = [ids[after]] if after is not None and after in ids else []
        extra = [dependency_option(*waits)] if waits else []
        ids[position] = commands.sbatch(entry["script"], extra)
        record["jobs"] = {str(p): i for p, i in ids.items()}
        write_record(session_dir, batch, record)
    later = {e.get("batch") for e in planned} - {None}
    if rest is not None:
        later.add(rest)  # after the pilot's last batch, the batch that plans the rest
    if batch + 1 in later and record.get("release") is None:
        mine = [ids[e["position"]] for e in entries]
        record["release"] = submit_release(session_dir, root, config, batch + 1, mine)
        write_record(session_dir, batch, record)
    return record


def _opened(session_dir: Path) -> tuple[Any, str]:
    """The sweep's store and the key of its experiment, from its job file."""
    import cloudpickle

    with open(job_file(session_dir), "rb") as fh:
        job = cloudpickle.load(fh)
    return execute.open_store(job.store), job.experiment_key


def _after_pilot(
    document: dict[str, Any],
    store: Any,
    experiment: Any,
    root: Path,
    config: SlurmConfig,
    first: int,
) -> dict[str, Any]:
    """Measure the pilot's runs in the store and plan the rest of the sweep in packs of the
    size they call for, in batches from `first` on when they hold more tasks than the queue
    limits leave room for: the release record's `entries` (scripts written, each with its
    `batch`), `seconds` and `size`."""
    pilot = document["sizing"]["pilot"]
    measured = durations(store.get_records([experiment.run_spec(i).run_id for i in pilot]))
    seconds = typical(measured)
    size = pack_size(seconds, config) if seconds is not None else 1
    rest = [i for first, last in document["sizing"]["rest"] for i in range(first, last + 1)]
    sized = dataclasses.replace(config, runs_per_task=size)
    jobs = array_jobs(rest, sized)
    room = queue_room(ClusterLimits(**document.get("limits", {})))
    if room is not None and sum(len(job.task_ids) for job in jobs) > room:
        sized = dataclasses.replace(sized, max_array_size=min(sized.max_array_size, room))
        jobs = array_jobs(rest, sized)
        numbers = batches(jobs, room)
    else:
        numbers = [0] * len(jobs)
    scripts = Scripts(
        document["session"],
        document["name"],
        int(document["total"]),
        root,
        passfiles.existing(document["session"]),
    )
    entries = scripts.entries(jobs, sized, attempt=1, base=RELEASED_BASE)
    for entry, number in zip(entries, numbers):
        entry["batch"] = first + number
    return {"entries": entries, "seconds": seconds, "size": size}


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
