"""What one SLURM array task runs: `python -m metalab.executors.slurm.entry --job FILE ...`.

The task finds its run indices from `SLURM_ARRAY_TASK_ID`, the run offset of its shard and the
number of runs per task, then runs them through the one run function (`metalab.execute`), which
claims each run, writes its record and its `.done` marker. The sweep's job description (store
locator, experiment key, session and options) was written once by the submitting process.

The task traps the signals SLURM ends it with (`ending`): a run cut by its time limit, a
preemption or a cancellation is recorded failed with that cause before the task dies. A task
of several runs starts a run only if it should finish before the time limit (`packs`); the
runs it does not start go back to the sweep in a note (`returns`). A task SLURM requeued runs
again as a later attempt: the run it was preempted in runs again, completed runs are kept.

The task's batch shell runs it as a child and waits for it (see `script`). When it dies by a
signal (killed for memory, say) the shell runs the same command with `--post-mortem <status>
--child <pid>`, which records why for the runs it left (`postmortem`).

Exit status: 0 when every run it started has a record (completed or failed: an operation's
exception is the run's outcome, not the task's), 1 when the task could not run (the store or
the experiment could not be opened), so the scheduler shows such tasks as FAILED.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle

from ... import execute
from ...errors import RunLost
from .arrays import runs_from_env
from .ending import TaskEnding, restart_count, task_key
from .packs import Pack, task_start
from .postmortem import post_mortem
from .returns import GIVEN_BACK, REQUEUED, WALLTIME, remove_note, write_ending, write_note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metalab.executors.slurm.entry")
    parser.add_argument("--job", required=True, help="the sweep's job file (job.pkl)")
    parser.add_argument("--offset", type=int, required=True, help="run index of task id 0")
    parser.add_argument("--runs-per-task", type=int, default=1)
    parser.add_argument("--total", type=int, required=True, help="runs in the sweep")
    parser.add_argument("--attempt", type=int, default=1, help="submission attempt")
    parser.add_argument("--time-limit", type=int, default=0, help="seconds; 0: unknown")
    parser.add_argument(
        "--post-mortem", type=int, metavar="STATUS", help="the task died with this status"
    )
    parser.add_argument("--child", type=int, default=0, help="pid of the task that died")
    args = parser.parse_args(argv)
    try:
        return _post_mortem(args) if args.post_mortem is not None else _run_task(args)
    except Exception:  # noqa: BLE001 - reported in the task's log and exit status
        traceback.print_exc()
        return 1


def _task(args: argparse.Namespace) -> tuple[Any, range, str, Path]:
    """The task's job (for its attempt: a requeued task is a later attempt of its runs), its
    run indices, its key and the sweep's session directory."""
    with open(args.job, "rb") as fh:
        job = cloudpickle.load(fh)
    attempt = args.attempt + restart_count()
    if attempt > 1:
        job = dataclasses.replace(job, options=dataclasses.replace(job.options, attempt=attempt))
    indices = runs_from_env(args.offset, args.runs_per_task, args.total)
    return job, indices, task_key() or f"local_{indices.start}", Path(args.job).parent


def _run_task(args: argparse.Namespace) -> int:
    job, indices, key, session_dir = _task(args)
    if not indices:
        print(f"metalab: no runs for this task (offset {args.offset})", flush=True)
        return 0
    remove_note(session_dir, key)  # a requeued task runs its runs itself
    print(
        f"metalab: runs {indices.start}..{indices.stop - 1} of {job.experiment_key} "
        f"(attempt {job.options.attempt})",
        flush=True,
    )
    pack = Pack.of_task(task_start(), args.time_limit)

    def note_ending(cause: str, requeued: bool) -> None:
        try:
            write_ending(session_dir, key, cause, requeued)
        except OSError as exc:  # the run's own record still says why
            print(f"metalab: could not note why the task is ending: {exc}", flush=True)

    ending = TaskEnding(key, pack.deadline, restart_count(), on_cause=note_ending).install()
    runner = _PackRunner(job, pack, ending)
    states: dict[str, int] = {}
    try:
        for outcome in execute.iter_run_indices(job, runner.next_runs(indices)):
            runner.finished(outcome)
            states[outcome.state] = states.get(outcome.state, 0) + 1
    except RunLost as lost:
        states[f"lost ({lost.cause})"] = 1
    unstarted = [i for i in indices if i not in runner.started]
    reason = ending.cause or WALLTIME
    if unstarted and ending.requeued:
        # SLURM runs this task again, and it runs them: noted, but for nobody else to run
        write_note(session_dir, key, unstarted, REQUEUED)
        states[f"left for the requeued task ({reason})"] = len(unstarted)
    elif unstarted and reason in GIVEN_BACK:
        write_note(session_dir, key, unstarted, reason)
        states[f"returned ({reason})"] = len(unstarted)
    print(f"metalab: done: {states}", flush=True)
    return 0


def _post_mortem(args: argparse.Namespace) -> int:
    """Say why the task's Python died with status `args.post_mortem` (see `postmortem`)."""
    job, indices, key, session_dir = _task(args)
    if not indices:
        return 0
    done = post_mortem(job, indices, key, session_dir, args.post_mortem, args.child)
    print(f"metalab: post-mortem of task {key} (status {args.post_mortem}): {done}", flush=True)
    return 0


class _PackRunner:
    """Hands out a task's runs one at a time, each only if it should finish in time."""

    def __init__(self, job: Any, pack: Pack, ending: TaskEnding) -> None:
        self.job = job
        self.pack = pack
        self.ending = ending
        self.started: set[int] = set()
        self._since = 0.0

    def next_runs(self, indices: range) -> Iterator[int]:
        """Yield each run of `indices` to start, until one would not finish in time or
        SLURM is ending the task."""
        for index in indices:
            if self.ending.cause is not None:
                return
            if not self.pack.fits(self._earlier(index)):
                print(f"metalab: run {index} would not finish in time: stopping", flush=True)
                return
            self.started.add(index)
            self._since = time.time()
            yield index

    def finished(self, outcome: Any) -> None:
        if outcome.state in ("completed", "failed"):
            self.pack.finished(time.time() - self._since)

    def _earlier(self, index: int) -> float | None:
        """How long an earlier attempt of run `index` took, from its record in the store."""
        if not self.pack.durations:
            return None
        store = execute.open_store(self.job.store)
        experiment = execute.load_experiment(store, self.job.experiment_key)
        record = store.get_record(experiment.run_spec(index).run_id)
        duration = (record or {}).get("duration")
        return float(duration) if isinstance(duration, int | float) and duration > 0 else None


if __name__ == "__main__":
    sys.exit(main())
