"""What a submission will be, written down before anything is submitted.

`prepare` writes the sweep's job file (`job.pkl`: store locator without passwords,
experiment key, session, options) and one sbatch script per array job, and returns the plan
document: what a dry run shows and what `submission.json` starts as. `Scripts` writes the
scripts of a sweep, for its first submission and for resubmissions with a grown config.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...sweep import Sweep
from . import passfiles
from .arrays import ArrayJob, compact_ranges, plan_arrays
from .config import AUTO, SlurmConfig
from .layout import job_file, script_file, session_directory
from .limits import batches, queue_room, read_limits, within_limits
from .script import entry_command, log_dir, render_script
from .sizing import PILOT_RUNS, durations, pack_size, sample, typical
from .submission import DEFERRED, Entry, config_document, new_entry


def array_jobs(indices: Sequence[int], config: SlurmConfig) -> list[ArrayJob]:
    """Plan the array jobs that run `indices` with `config` (see `arrays.plan_arrays`)."""
    return plan_arrays(
        indices,
        runs_per_task=int(config.runs_per_task),  # resolved from "auto" by `sized`
        max_array_size=config.max_array_size,
        max_concurrent=config.max_concurrent,
    )


@dataclass(frozen=True)
class Scripts:
    """Writes the sbatch scripts of one sweep into its directory."""

    session: str
    name: str
    """The experiment's name (the jobs are called `metalab-<name>`)."""
    total: int
    """Runs in the sweep."""
    root: Path
    """The work directory (see `layout`)."""
    passfile: Path | None
    """The password file the tasks read, if the store locator had a password."""

    @classmethod
    def of(cls, sweep: Sweep, root: Path, passfile: Path | None) -> Scripts:
        """The scripts of `sweep`, written under `root`."""
        return cls(sweep.session, sweep.experiment.name, len(sweep.run_ids), root, passfile)

    @property
    def directory(self) -> Path:
        """The sweep's directory under the work directory."""
        return session_directory(self.root, self.session)

    def entries(
        self, jobs: Sequence[ArrayJob], config: SlurmConfig, *, attempt: int, base: int = 0
    ) -> list[Entry]:
        """Write the scripts of `jobs` with `config` for `attempt`, the first at position
        `base`; return their entries (a job's `after` counts from `base` too)."""
        entries = []
        for k, job in enumerate(jobs):
            script = script_file(self.directory, base + k, attempt)
            script.write_text(self._text(job, config, attempt))
            entry = new_entry(base + k, job, script, attempt=attempt)
            if job.after is not None:
                entry["after"] = base + job.after
            entries.append(entry)
        return entries

    def _text(self, job: ArrayJob, config: SlurmConfig, attempt: int) -> str:
        command = entry_command(
            config.python,
            job_file=str(job_file(self.directory)),
            offset=job.offset,
            runs_per_task=job.runs_per_task,
            total=self.total,
            attempt=attempt,
            time_limit=config.time_seconds,
        )
        return render_script(
            passfiles.exported(config, self.passfile),
            job,
            job_name=f"metalab-{self.name}",
            logs=log_dir(self.root),
            command=command,
        )


def prepare(sweep: Sweep, config: SlurmConfig, root: Path) -> tuple[dict[str, Any], Scripts]:
    """Write the job file and the scripts of the pending runs of `sweep` under `root`;
    return the plan document and the sweep's `Scripts`. The cluster's limits are read
    (`limits`) and `config` planned within them: the document's `config` is what is
    submitted. Submits nothing; writing again rewrites the scripts and keeps the job file."""
    limits = read_limits(config.qos)
    config, planned, sizing = sized(sweep, config)
    tasks = len({index // int(config.runs_per_task) for index in planned})
    config = within_limits(config, limits, tasks)
    scripts = Scripts.of(sweep, root, _write_job_file(sweep, root))
    jobs = array_jobs(planned, config)
    log_dir(root).mkdir(parents=True, exist_ok=True)
    entries = scripts.entries(jobs, config, attempt=1)
    room = queue_room(limits)
    if room is not None and tasks > room:  # released in batches (see `release`)
        for entry, batch in zip(entries, batches(jobs, room)):
            entry["batch"] = batch
            if batch:
                entry["state"] = DEFERRED
    tasks = sum(len(job.task_ids) for job in jobs)
    document = {
        "experiment_id": sweep.experiment.experiment_id,
        "session": sweep.session,
        "total": len(sweep.run_ids),
        "done": sweep.skipped,
        "to_submit": len(sweep.pending),
        "tasks": tasks,
        "runs_per_task": config.runs_per_task,
        "jobs": entries,
        "max_concurrent": config.max_concurrent,
        "core_hours_max": round(tasks * config.cpus * config.time_seconds / 3600, 3),
        "directory": str(scripts.directory),
        "root": str(root),
        "config": config_document(config),
        "limits": limits.as_dict(),
        "footprint": footprint(sweep, jobs, tasks),
        "name": sweep.experiment.name,
    }
    if sizing is not None:
        if sizing.get("from") == "pilot":  # the rest is planned after the pilot's batches
            sizing["rest_batch"] = max((e.get("batch") or 0 for e in entries), default=0) + 1
        document["sizing"] = sizing
    return document, scripts


def sized(sweep: Sweep, config: SlurmConfig) -> tuple[SlurmConfig, Sequence[int], Any]:
    """Resolve `runs_per_task="auto"` (see `sizing`): return the config to plan with, the
    runs to plan now (all pending ones, or the pilot's) and what the sizing was based on
    (None for a fixed `runs_per_task`)."""
    if config.runs_per_task != AUTO:
        return config, sweep.pending, None
    indices = sample(len(sweep.run_ids))
    measured = durations(sweep.store.get_records([sweep.run_ids[i] for i in indices]))
    seconds = typical(measured)
    if seconds is not None:
        size = pack_size(seconds, config)
        basis = {"from": "store", "seconds": seconds, "runs": len(measured), "size": size}
        return dataclasses.replace(config, runs_per_task=size), sweep.pending, basis
    pending = list(sweep.pending)
    pilot, rest = pending[:PILOT_RUNS], pending[PILOT_RUNS:]
    basis = {"from": "pilot", "pilot": pilot, "rest": [list(r) for r in compact_ranges(rest)]}
    return dataclasses.replace(config, runs_per_task=1), pilot, basis


def footprint(sweep: Sweep, jobs: Sequence[ArrayJob], tasks: int) -> dict[str, Any]:
    """The files and inodes a submission creates: in the work directory, a script per array
    job, two log files per task, the job file and the submission record (in the sweep's
    directory); in the store, what its runs add (`Store.footprint`)."""
    slurm_files = len(jobs) + 2 * tasks + 2
    work = {"files": slurm_files, "inodes": slurm_files + 1}
    store = sweep.store.footprint(len(sweep.pending))
    return {
        "work_directory": work,
        "store": store,
        "files": work["files"] + store.get("files", 0),
        "inodes": work["inodes"] + store.get("inodes", 0),
    }


def _write_job_file(sweep: Sweep, root: Path) -> Path | None:
    """Write the sweep's job description (once); return the password file that took the
    password of its store locator, if it had one."""
    import cloudpickle

    directory = session_directory(root, sweep.session)
    directory.mkdir(parents=True, exist_ok=True)
    job, secrets = passfiles.without_secrets(sweep.ref)
    passfile = passfiles.write(sweep.session, secrets) if secrets else None
    path = job_file(directory)
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(cloudpickle.dumps(job))
        os.replace(tmp, path)
    return passfile
