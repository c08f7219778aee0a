"""What one SLURM array task runs: `python -m metalab.executors.slurm.entry --job FILE ...`.

The task finds its run indices from `SLURM_ARRAY_TASK_ID`, the run offset of its shard and the
number of runs per task, then runs them through the one run function (`metalab.execute`), which
claims each run, writes its record and its `.done` marker. The sweep's job description (store
locator, experiment key, session and options) was written once by the submitting process.

Exit status: 0 when every run has a record (completed or failed: an operation's exception is
the run's outcome, not the task's), 1 when the task could not run (the store or the experiment
could not be opened), so the scheduler shows such tasks as FAILED.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import traceback

import cloudpickle

from ... import execute
from .arrays import runs_from_env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metalab.executors.slurm.entry")
    parser.add_argument("--job", required=True, help="the sweep's job file (job.pkl)")
    parser.add_argument("--offset", type=int, required=True, help="run index of task id 0")
    parser.add_argument("--runs-per-task", type=int, default=1)
    parser.add_argument("--total", type=int, required=True, help="runs in the sweep")
    parser.add_argument("--attempt", type=int, default=1, help="submission attempt")
    args = parser.parse_args(argv)
    try:
        with open(args.job, "rb") as fh:
            job = cloudpickle.load(fh)
        if args.attempt > 1:
            options = dataclasses.replace(job.options, attempt=args.attempt)
            job = dataclasses.replace(job, options=options)
        indices = runs_from_env(args.offset, args.runs_per_task, args.total)
        if not indices:
            print(f"metalab: no runs for this task (offset {args.offset})", flush=True)
            return 0
        print(
            f"metalab: runs {indices.start}..{indices.stop - 1} of "
            f"{job.experiment_key} (attempt {args.attempt})",
            flush=True,
        )
        states: dict[str, int] = {}
        for outcome in execute.iter_run_indices(job, indices):
            states[outcome.state] = states.get(outcome.state, 0) + 1
        print(f"metalab: done: {states}", flush=True)
        return 0
    except Exception:  # noqa: BLE001 - reported in the task's log and exit status
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
