"""Compile pending run indices into Dask delayed tasks, one per index or per contiguous chunk."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import config
from .execute import JobRef, Outcome, run_indices


def chunk_size_for(n_pending: int, chunk_size: int | None = None) -> int:
    """Return how many runs one task holds for a sweep of `n_pending` runs.

    Small sweeps get one task per run; larger ones about `metalab.dask.target-tasks` tasks
    (both limits are in `metalab.yaml`).
    """
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        return chunk_size
    if n_pending <= config.get("dask.single-task-limit"):
        return 1
    return -(-n_pending // config.get("dask.target-tasks"))


def chunks(indices: Sequence[int], size: int) -> list[list[int]]:
    """Split sorted `indices` into lists of at most `size` (neighbours stay together)."""
    return [list(indices[i : i + size]) for i in range(0, len(indices), size)]


def task_prefix(experiment_name: str) -> str:
    """The Dask key prefix of an experiment's tasks (what the dashboard groups by)."""
    # the dashboard groups tasks by key_split(), which stops at '-' before non-alphabetic words
    return "metalab:" + experiment_name.replace("-", "_")


def run_chunk(job: JobRef, indices: list[int]) -> list[Outcome]:
    """Run `indices` (the body of every task); returns their outcomes."""
    return run_indices(job, indices)


def build_tasks(job: JobRef, experiment_name: str, groups: list[list[int]]) -> list[Any]:
    """Return one `dask.delayed` task per group of indices, keyed by experiment and first index."""
    import dask

    prefix = task_prefix(experiment_name)
    job_node = dask.delayed(job, pure=True)
    return [
        dask.delayed(run_chunk, pure=False)(
            job_node, group, dask_key_name=(prefix, job.session, group[0])
        )
        for group in groups
    ]
