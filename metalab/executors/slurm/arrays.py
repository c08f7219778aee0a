"""How pending runs become SLURM job arrays: tasks, shards, `--array` specs and throttles.

Run `i` of a sweep belongs to task `i // runs_per_task`. Tasks are cut into fixed shards of
`max_array_size` consecutive tasks: shard `s` holds tasks `s*M .. s*M+M-1` and is submitted
with array task ids `0 .. M-1` and a run *offset* `s * M * runs_per_task`, so array task `a`
of that shard runs `offset + a*runs_per_task ...` (see `task_runs`). The mapping depends only
on the run index, never on which runs are pending, so a resubmission after a resume or a
retry sends a run to the same (shard, task id) as before, and an array task finds its runs
from `SLURM_ARRAY_TASK_ID` alone.

Only the pending tasks of a shard are submitted, as a compact spec such as `3,7,10-20`.
SLURM rejects an `--array` value longer than 4096 characters, so a sparse shard is split into
several array jobs whose spec each stays under `MAX_SPEC_CHARS`.

`max_concurrent` is enforced across the whole sweep with *lanes*. The array jobs are dealt
into `L` lanes, balancing the number of tasks per lane. In each lane the jobs run one after
another: every job after the first is submitted with `--dependency=afterany:<previous job of
the lane>` (`afterany`, not `afterok`, so a failed task does not block the lane forever).
Each lane gets a `%k` throttle, the `k` of all lanes summing to `max_concurrent`, shared in
proportion to each lane's tasks. At most one job per lane runs at a time and it runs at most
`k` tasks, so the sweep never runs more than `max_concurrent` tasks at once. Every job is
submitted up front: no process has to stay alive to release the next shard.

Why lanes: splitting `max_concurrent` into one `%k` per job wastes slots when a job finishes
early (its share idles until the end) and cannot work with more jobs than `max_concurrent`;
chaining all jobs in one lane leaves slots idle at the end of every job while its last tasks
run. Lanes chain as few jobs as possible, `L = min(jobs, max_concurrent // MIN_LANE_THROTTLE)`
(at least 1), so each lane's `k` stays large enough for the rounding of the shares to cost
little. When the sweep has no more tasks than `max_concurrent`, or `max_concurrent` is
`None`, jobs are neither throttled nor chained. (The throttle of a submitted array can be
changed later with `scontrol update JobId=<id> ArrayTaskThrottle=<k>`.)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ...errors import ExecutorError, ValidationError

MAX_SPEC_CHARS = 4000
"""Longest `--array` value metalab submits, throttle included (SLURM's own limit is 4096)."""

MIN_LANE_THROTTLE = 8
"""Fewest concurrent tasks a lane gets when `max_concurrent` is split across lanes."""

TASK_ID_VARIABLE = "SLURM_ARRAY_TASK_ID"


@dataclass(frozen=True)
class Shard:
    """Pending tasks of one block of `max_array_size` consecutive tasks.

    `offset` is the run index of array task id 0; `task_ids` are the pending array task ids,
    relative to the shard, sorted.
    """

    number: int
    offset: int
    task_ids: tuple[int, ...]


@dataclass(frozen=True)
class ArrayJob:
    """One `sbatch --array` submission: some task ids of one shard, in one lane.

    `after` is the position, in the list `plan_arrays` returned, of the job this one must
    wait for (`--dependency=afterany:<its job id>`), or `None` when it may start at once.
    """

    shard: int
    offset: int
    runs_per_task: int
    task_ids: tuple[int, ...]
    throttle: int | None
    lane: int
    after: int | None

    @property
    def spec(self) -> str:
        """The task ids as a compact spec, without the throttle: `"0-99"`, `"3,7,10-20"`."""
        return format_ranges(compact_ranges(self.task_ids))

    @property
    def array(self) -> str:
        """The value of `--array`: the spec and, when throttled, `%k`."""
        return self.spec + (f"%{self.throttle}" if self.throttle else "")

    def runs(self, task_id: int, total: int) -> range:
        """Return the run indices that array task `task_id` of this job runs."""
        return task_runs(task_id, self.offset, self.runs_per_task, total)


# ------------------------------------------------------------------------------ array specs


def compact_ranges(ids: Iterable[int]) -> list[tuple[int, int]]:
    """Group sorted, distinct, non-negative ids into inclusive `(first, last)` ranges."""
    ranges: list[tuple[int, int]] = []
    previous = -1
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, int) or i <= previous:
            raise ValidationError(
                f"array task ids must be distinct non-negative integers in increasing "
                f"order; got {i!r} after {previous!r}"
            )
        if ranges and i == previous + 1:
            ranges[-1] = (ranges[-1][0], i)
        else:
            ranges.append((i, i))
        previous = i
    return ranges


def format_ranges(ranges: Iterable[tuple[int, int]]) -> str:
    """Format `(first, last)` ranges as an array spec: `[(3, 3), (10, 20)]` -> `"3,10-20"`."""
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def split_specs(ids: Sequence[int], max_chars: int = MAX_SPEC_CHARS) -> list[tuple[int, ...]]:
    """Split sorted task ids into groups whose compact spec has at most `max_chars` characters.

    Groups keep the ids' order and are as large as the limit allows. `max_chars` must leave
    room for the throttle suffix; the default does.
    """
    if max_chars < 1:
        raise ValidationError(f"max_chars must be a positive integer; got {max_chars!r}")
    groups: list[tuple[int, ...]] = []
    current: list[int] = []
    length = 0
    for first, last in compact_ranges(ids):
        piece = format_ranges([(first, last)])
        if len(piece) > max_chars:
            raise ValidationError(f"array range {piece!r} is longer than {max_chars} characters")
        added = len(piece) + (1 if current else 0)
        if current and length + added > max_chars:
            groups.append(tuple(current))
            current, length, added = [], 0, len(piece)
        current.extend(range(first, last + 1))
        length += added
    if current:
        groups.append(tuple(current))
    return groups


def array_specs(
    ids: Sequence[int], throttle: int | None = None, max_chars: int = MAX_SPEC_CHARS
) -> list[str]:
    """Return `--array` values covering `ids`, each at most `max_chars` long with its `%k`."""
    suffix = f"%{throttle}" if throttle else ""
    groups = split_specs(ids, max_chars - len(suffix))
    return [format_ranges(compact_ranges(group)) + suffix for group in groups]


# ------------------------------------------------------------------------ tasks and shards


def task_runs(task_id: int, offset: int, runs_per_task: int, total: int) -> range:
    """Return the run indices of array task `task_id` in a shard starting at run `offset`.

    The task runs `runs_per_task` consecutive runs from `offset + task_id * runs_per_task`,
    cut at `total` (the number of runs of the sweep); an empty range means a task id past
    the end of the sweep.
    """
    for name, value, minimum in (
        ("task_id", task_id, 0),
        ("offset", offset, 0),
        ("runs_per_task", runs_per_task, 1),
        ("total", total, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValidationError(f"{name} must be an integer >= {minimum}; got {value!r}")
    start = offset + task_id * runs_per_task
    return range(min(start, total), min(start + runs_per_task, total))


def task_id_from_env(environ: Mapping[str, str] | None = None) -> int:
    """Return this array task's id from `SLURM_ARRAY_TASK_ID`.

    Raises `ExecutorError` when the variable is missing (not running inside an array job)
    or is not a non-negative integer.
    """
    env = os.environ if environ is None else environ
    text = env.get(TASK_ID_VARIABLE)
    if text is None:
        raise ExecutorError(f"{TASK_ID_VARIABLE} is not set: this is not a SLURM array task")
    if not text.strip().isdigit():
        raise ExecutorError(f"{TASK_ID_VARIABLE}={text!r} is not a non-negative integer")
    return int(text)


def runs_from_env(
    offset: int, runs_per_task: int, total: int, environ: Mapping[str, str] | None = None
) -> range:
    """Return the run indices of the array task this process runs in (see `task_runs`)."""
    return task_runs(task_id_from_env(environ), offset, runs_per_task, total)


def shard_tasks(pending: Iterable[int], runs_per_task: int, max_array_size: int) -> list[Shard]:
    """Group pending run indices into shards of pending array task ids (see the module doc)."""
    block = max_array_size * runs_per_task
    shards: dict[int, set[int]] = {}
    for run in pending:
        if isinstance(run, bool) or not isinstance(run, int) or run < 0:
            raise ValidationError(f"run indices must be non-negative integers; got {run!r}")
        number, within = divmod(run, block)
        shards.setdefault(number, set()).add(within // runs_per_task)
    return [
        Shard(number, number * block, tuple(sorted(shards[number]))) for number in sorted(shards)
    ]


# ------------------------------------------------------------------------- lanes and plans


def apportion(total: int, weights: Sequence[int]) -> list[int]:
    """Split `total` into integer shares, at least 1 each, summing to `total`.

    Shares beyond the first are proportional to `weights` (largest remainder first, ties to
    the earlier weight). Needs `1 <= len(weights) <= total`.
    """
    if not 1 <= len(weights) <= total:
        raise ValidationError(f"cannot give {len(weights)} shares of at least 1 out of {total}")
    spare = total - len(weights)
    weight_sum = sum(weights) or 1
    exact = [spare * w / weight_sum for w in weights]
    shares = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda k: (shares[k] - exact[k], k))
    for k in by_remainder[: spare - sum(shares)]:
        shares[k] += 1
    return [share + 1 for share in shares]


def assign_lanes(sizes: Sequence[int], lanes: int) -> list[int]:
    """Deal jobs of `sizes` tasks, in order, into `lanes` lanes: each to the least loaded."""
    loads = [0] * lanes
    assigned = []
    for size in sizes:
        lane = min(range(lanes), key=lambda k: (loads[k], k))
        loads[lane] += size
        assigned.append(lane)
    return assigned


def plan_arrays(
    pending: Iterable[int],
    *,
    runs_per_task: int = 1,
    max_array_size: int = 10000,
    max_concurrent: int | None = None,
    max_chars: int = MAX_SPEC_CHARS,
) -> list[ArrayJob]:
    """Plan the array jobs that run `pending` run indices, in submission order.

    Submit them in the order returned: a job's `after` always points to an earlier one.
    See the module doc for the sharding and throttling scheme.
    """
    for name, value in (("runs_per_task", runs_per_task), ("max_array_size", max_array_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValidationError(f"{name} must be a positive integer; got {value!r}")
    bad_limit = isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int | None)
    if bad_limit or (max_concurrent is not None and max_concurrent < 1):
        raise ValidationError(f"max_concurrent must be None or >= 1; got {max_concurrent!r}")
    room = max_chars - (len(f"%{max_concurrent}") if max_concurrent else 0)
    groups = [
        (shard, ids)
        for shard in shard_tasks(pending, runs_per_task, max_array_size)
        for ids in split_specs(shard.task_ids, room)
    ]
    if max_concurrent is None or sum(len(ids) for _, ids in groups) <= max_concurrent:
        return [
            ArrayJob(shard.number, shard.offset, runs_per_task, ids, None, k, None)
            for k, (shard, ids) in enumerate(groups)
        ]
    lane_count = max(1, min(len(groups), max_concurrent // MIN_LANE_THROTTLE))
    lanes = assign_lanes([len(ids) for _, ids in groups], lane_count)
    loads = [0] * lane_count
    for (_, ids), lane in zip(groups, lanes):
        loads[lane] += len(ids)
    throttles = apportion(max_concurrent, loads)
    last_in_lane: dict[int, int] = {}
    jobs = []
    for position, ((shard, ids), lane) in enumerate(zip(groups, lanes)):
        throttle = throttles[lane]
        jobs.append(
            ArrayJob(
                shard.number,
                shard.offset,
                runs_per_task,
                ids,
                throttle if throttle < len(ids) else None,
                lane,
                last_in_lane.get(lane),
            )
        )
        last_in_lane[lane] = position
    return jobs


def dependency_option(*job_ids: str) -> str:
    """Return the sbatch option that makes a job wait for every one of `job_ids` to end,
    however each ends."""
    if not job_ids:
        raise ValueError("dependency_option needs at least one job id")
    return f"--dependency=afterany:{':'.join(job_ids)}"
