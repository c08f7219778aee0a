"""Whether the kernel killed a process of this SLURM job for lack of memory: its cgroup's counters.

Where SLURM confines a job's memory (`TaskPlugin=task/cgroup`), the job has a cgroup of its
own, `.../job_<id>/step_batch/...`, and the kernel counts each OOM kill in it. Read from inside
the job (the batch shell's post-mortem, see `postmortem`), the counters say whether the task's
Python was killed for memory even when the scheduler no longer remembers the job.

- cgroup v2: `/proc/self/cgroup` holds `0::<path>`; `<mount>/<path>/memory.events` counts
  `oom_kill` (and `oom`) for the cgroup and everything below it.
- cgroup v1: the `memory` line of `/proc/self/cgroup` gives the path under `<mount>/memory`;
  `memory.oom_control` counts `oom_kill` (kernel 4.13 and later), `memory.failcnt` how often
  the limit was hit (read only when `oom_kill` is not there).

The counters are read from the process's own cgroup up to the job's (`job_<SLURM_JOB_ID>`),
never above it: a cgroup shared with other jobs (`task/none`) says nothing of this one, so a
path without the job's level, or counters that cannot be read, make no claim of an OOM kill.

`METALAB_JOB_CGROUP`, when set, names the job's cgroup directory to read instead (for
clusters that mount cgroups elsewhere, and for tests).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

CGROUP_MOUNT = Path("/sys/fs/cgroup")
"""Where the cgroup filesystems are mounted (v2 unified here, v1 one directory per controller)."""

PROC_CGROUP = Path("/proc/self/cgroup")
"""This process's cgroups, one line per hierarchy: `<id>:<controllers>:<path>`."""

OVERRIDE = "METALAB_JOB_CGROUP"
"""The environment variable naming the job's cgroup directory, read instead of the lookup."""


def oom_killed(
    environ: Mapping[str, str] | None = None,
    proc_cgroup: Path = PROC_CGROUP,
    mount: Path = CGROUP_MOUNT,
) -> bool:
    """Return whether the cgroups of this job counted an OOM kill; False when they cannot be
    found or read (no claim of an OOM kill without counters that say so)."""
    env = os.environ if environ is None else environ
    if env.get(OVERRIDE):
        directories = [Path(env[OVERRIDE])]
    else:
        try:
            text = proc_cgroup.read_text()
        except OSError:
            return False
        directories = job_cgroups(text, mount, env.get("SLURM_JOB_ID", ""))
    return any((oom_kills(directory) or 0) > 0 for directory in directories)


def job_cgroups(proc_text: str, mount: Path, job_id: str) -> list[Path]:
    """Return the memory cgroup directories of a process of job `job_id`, its own first, up
    to the job's; none when its path has no `job_<job_id>` level (`proc_text`: its
    `/proc/<pid>/cgroup`). A v2 path counts only where it has a `memory.events`."""
    found: list[Path] = []
    for line in proc_text.splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if number == "0" and controllers == "":
            base = mount
        elif "memory" in controllers.split(","):
            base = mount / "memory"
        else:
            continue
        levels = _up_to_job(path, job_id)
        directories = [base / level for level in levels]
        if base == mount:
            directories = [d for d in directories if (d / "memory.events").exists()]
        found.extend(directories)
    return found


def _up_to_job(path: str, job_id: str) -> list[str]:
    """The relative paths from `path` up to its `job_<job_id>` level, deepest first."""
    parts = [part for part in path.split("/") if part]
    if not job_id or f"job_{job_id}" not in parts:
        return []
    top = parts.index(f"job_{job_id}")
    return ["/".join(parts[:end]) for end in range(len(parts), top, -1)]


def oom_kills(directory: Path) -> int | None:
    """Return the OOM kills a memory cgroup directory counts (v2 `memory.events`, else v1
    `memory.oom_control`, else v1 `memory.failcnt`), or None when it has none to read."""
    for name, key in (("memory.events", "oom_kill"), ("memory.oom_control", "oom_kill")):
        counters = _counters(directory / name)
        if counters is not None and key in counters:
            return max(counters[key], counters.get("oom", 0))
    try:
        return int((directory / "memory.failcnt").read_text().strip())
    except (OSError, ValueError):
        return None


def _counters(path: Path) -> dict[str, int] | None:
    """The `name value` lines of a cgroup counters file, or None when it cannot be read."""
    try:
        text = path.read_text()
    except OSError:
        return None
    counters = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if value.strip().isdigit():
            counters[name] = int(value)
    return counters
