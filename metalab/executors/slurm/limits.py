"""The cluster's limits a submission must stay under, read when a sweep is submitted.

`MaxArraySize` (`scontrol show config`): array task ids must be below it, so no shard holds
more tasks. `MaxJobCount`: the most jobs the controller holds, every array task counting as
one; `MaxSubmitJobs` of the user's associations and `MaxSubmitJobsPerUser` of the QOS the
jobs run under (`sacctmgr`, where accounting is on): the most jobs the user may have queued.
Shards are cut at most `MaxArraySize` tasks long, and a sweep of more tasks than the queue
limits leave room for is submitted in batches (see `release`); a `ClusterLimitWarning` says
what was lowered, naming the limit and both values.
"""

from __future__ import annotations

import dataclasses
import getpass
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from ...errors import MetalabWarning
from . import commands
from .arrays import ArrayJob
from .config import SlurmConfig


class ClusterLimitWarning(MetalabWarning):
    """A `SlurmConfig` value was lowered to a limit of the cluster; the message names both."""


@dataclass(frozen=True)
class ClusterLimits:
    """The limits a submission must respect; None where the cluster sets none (or it is
    unknown)."""

    max_array_size: int | None = None
    max_job_count: int | None = None
    max_submit_jobs: int | None = None

    def as_dict(self) -> dict[str, int]:
        """The known limits, by name (what a dry run shows under `limits`)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @property
    def queue(self) -> int | None:
        """The most tasks of this user the scheduler will hold at once."""
        known = [v for v in (self.max_job_count, self.max_submit_jobs) if v is not None]
        return min(known) if known else None


def read_limits(qos: str | None = None) -> ClusterLimits:
    """Read the cluster's limits (one scontrol call, and sacctmgr calls where accounting is
    on: the user's associations and the QOS the jobs run under, `qos` or the default); all
    unknown when scontrol fails (the limits only guide the plan: sbatch still enforces
    them)."""
    try:
        config = commands.show_config()
    except commands.SlurmCommandError:
        return ClusterLimits()
    accounting = config.get("AccountingStorageType", "accounting_storage/none")
    submit = None
    if accounting != "accounting_storage/none":
        submit = commands.max_submit_jobs(getpass.getuser(), qos)
    return ClusterLimits(
        max_array_size=_count(config.get("MaxArraySize")),
        max_job_count=_count(config.get("MaxJobCount")),
        max_submit_jobs=submit,
    )


def _count(text: str | None) -> int | None:
    return int(text) if text is not None and text.strip().isdigit() else None


def within_limits(config: SlurmConfig, limits: ClusterLimits, tasks: int) -> SlurmConfig:
    """Return `config` with `max_array_size` at most `MaxArraySize` and, when the sweep's
    `tasks` are more than the queue limits leave room for (`room`), at most that room, so
    each array job fits in one batch (see `release`); warn for each value lowered."""
    room = queue_room(limits)
    if room is not None and tasks > room:
        name = "MaxSubmitJobs" if limits.queue == limits.max_submit_jobs else "MaxJobCount"
        warnings.warn(
            f"the sweep has {tasks} array tasks but the cluster's {name} is {limits.queue}: "
            f"it is submitted in batches of at most {room} tasks, each released by a small "
            "job once the batch before it has ended",
            ClusterLimitWarning,
            stacklevel=4,
        )
    if limits.max_array_size is not None and config.max_array_size > limits.max_array_size:
        used = limits.max_array_size
        _warn(config.max_array_size, used, f"the cluster's MaxArraySize is {used}")
        config = dataclasses.replace(config, max_array_size=limits.max_array_size)
    if room is not None and tasks > room and config.max_array_size > room:
        reason = f"the cluster's {name} is {limits.queue}, less one for the release job"
        _warn(config.max_array_size, room, reason)
        config = dataclasses.replace(config, max_array_size=room)
    return config


def queue_room(limits: ClusterLimits) -> int | None:
    """The most tasks of a sweep queued at once: the queue limit less one, for the job that
    releases the next batch; None without a known limit."""
    return None if limits.queue is None else max(1, limits.queue - 1)


def _warn(value: int, used: int, reason: str) -> None:
    warnings.warn(
        f"SlurmConfig.max_array_size={value!r} lowered to {used}: {reason}",
        ClusterLimitWarning,
        stacklevel=4,
    )


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
