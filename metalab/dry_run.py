"""`DryRun`: what `metalab.run(..., dry_run=True)` would do."""

from __future__ import annotations

from typing import Any


class DryRun(dict):
    """What `metalab.run(..., dry_run=True)` would do: a dict with a readable `str()`.

    Keys: `experiment_id`, `executor`, `total`, `done`, `to_submit`; for SLURM also `jobs`
    (each with its `array` spec, `shard`, `offset`, `script`), `tasks`, `core_hours_max`
    (tasks x cpus x time limit), `directory` (where the scripts were written), `limits` (the
    cluster's `max_array_size`, `max_job_count` and, when known, `max_submit_jobs`) and
    `footprint` (the `files` and `inodes` the sweep creates, in the work directory and in
    the store).
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __str__(self) -> str:
        lines = [
            f"dry run of {self['experiment_id']} on {self['executor']}: {self['total']} runs, "
            f"{self['done']} done, {self['to_submit']} to submit"
        ]
        jobs = self.get("jobs") or []
        if jobs:
            lines.append(
                f"{len(jobs)} array job(s), {self['tasks']} task(s) of "
                f"{self['runs_per_task']} run(s); at most {self['core_hours_max']} core-hours"
            )
            limits = self.get("limits")
            if limits:
                lines.append("cluster limits: " + ", ".join(f"{k} {v}" for k, v in limits.items()))
            footprint = self.get("footprint")
            if footprint:
                lines.append(
                    f"creates about {footprint['files']} files ({footprint['inodes']} inodes)"
                )
            for job in jobs:
                after = "" if job["after"] is None else f" after job {job['after']}"
                lines.append(
                    f"  job {job['position']}: shard {job['shard']} offset {job['offset']} "
                    f"--array={job['array']}{after}  {job['script']}"
                )
        return "\n".join(lines)
