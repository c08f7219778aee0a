"""SLURM: submitting a 300,000-run sweep, per-run overhead in packed array tasks, and native
job arrays against Dask workers started by dask-jobqueue, on a real cluster.

Needs a SLURM cluster with a `cpu` partition and a default one, whose `MaxJobCount` leaves room
for 300,000 held tasks (`bash ci/start-slurm.sh` starts such a single-node cluster). Every job
it submits has finished or is cancelled when it returns.

- **Submission**: `metalab.run` of the spec's `large_sweep` (grid `gene=range(2000)` x
  `expr_val=range(50)`, 3 replicates: 300,000 runs) with the spec's
  `SlurmConfig(partition="cpu", time="1:00:00", max_array_size=10000, max_concurrent=500)`,
  timed until it returns the handle, every array job submitted. The jobs are submitted for
  real but held: `metalab.executors.slurm.commands.run_command` is wrapped so that every
  `sbatch` gets `--hold` (and is counted and timed); the jobs are cancelled afterwards.
  Baseline: 30 bare `sbatch --hold --wrap true` calls in a loop. Targets: <= 31 sbatch calls
  and < 5 s. Parts: the sbatch calls, the writes of `submission.json` (timed by wrapping
  `Submission.save`), and the rest (run ids, store, planning, scripts). For information: one
  `squeue` of the held sweep, the executor's first status poll. Then the handle follows the
  held sweep for `FOLLOW` seconds, polling every `FOLLOW_POLL` s as by default: the
  scheduler calls per minute it makes (target: one `squeue` per poll, no `sacct`, since no
  task ended without its records).
- **Packed tasks**: 1,000 trivial runs (`_ops.draw`), `runs_per_task=100` (10 array tasks),
  at most as many tasks at once as the machine has cores (`max_concurrent`), so the tasks do
  not share a core. Per run inside the tasks, from the records: for each task, from its first
  run's `started_at` to its last run's `finished_at`, summed over the tasks, divided by
  1,000. Target: <= 10 ms. The same from the task logs, which includes each task's start-up
  (the script echoes a timestamp before Python starts, and the log's last write is the task's
  last line). Baseline: the same 1,000 runs inline, in this process, per run.
- **Native arrays vs dask-jobqueue**: the same 1,000 runs, wall time from `metalab.run` to
  `result()`: native arrays packed as above, with `runs_per_task=10` unthrottled (100 tasks),
  with `runs_per_task=1` (1,000 tasks, only with `--single`: minutes on 2 cores), and on
  `JobqueueExecutor(config, jobs=2, interface="lo")`, worker jobs started and stopped for the
  sweep. Ratio: against the inline baseline.

Best of 3 rounds (`--repeat`), the variants interleaved in each round.

    uv run --all-extras python benchmarks/bench_slurm.py [--repeat N] [--single]

The executors poll the store and the scheduler every 0.5 s here (the default is 5 s), so the
wall times measure the work rather than the polling interval.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

import _ops
from _common import best, format_table, row

import metalab
from metalab.executors.slurm import commands
from metalab.executors.slurm.submission import Submission

HERE = Path(__file__).resolve().parent
SETUP = [f"export PYTHONPATH={HERE}"]  # array tasks and workers import `_ops` from here
LARGE_AXES = {"gene": range(2000), "expr_val": range(50)}
LARGE_CONFIG = dict(partition="cpu", time="1:00:00", max_array_size=10_000, max_concurrent=500)
SMALL_RUNS = 1_000
PER_TASK = 100
POLL = 0.5
CORES = os.cpu_count() or 1
REPEAT = 3
TARGETS = {"sbatch_calls": 31, "submit_s": 5.0, "per_run_s": 0.010}
TASK_START = "metalab-bench: task start"
JOBS = 30  # array jobs of 10,000 tasks the large sweep needs: the baseline's sbatch calls
SETTLE = 5.0
FOLLOW = 60.0
FOLLOW_POLL = 5.0


# ------------------------------------------------------------------------- held submission


class HeldSbatch:
    """Stands in for `commands.run_command`: adds `--hold` to every `sbatch`, counts and times
    the calls, keeps the job ids, and times every `squeue`. Once `closed`, every command fails,
    so a follower thread left sleeping cannot act on the cancelled jobs later."""

    def __init__(self, run_command):
        self.run_command = run_command
        self.calls: list[tuple[float, str]] = []  # (time.monotonic(), command)
        self.job_ids: list[str] = []
        self.seconds: dict[str, list[float]] = {"sbatch": [], "squeue": []}
        self.squeue_lines = 0
        self.polled = threading.Event()
        self.closed = False

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        if self.closed:
            raise commands.SlurmCommandError(argv, 1, "the benchmark is over")
        self.calls.append((time.monotonic(), argv[0]))
        if argv[0] == "sbatch":
            argv.insert(1, "--hold")
        t0 = time.perf_counter()
        result = self.run_command(argv)
        self.seconds.setdefault(argv[0], []).append(time.perf_counter() - t0)
        if argv[0] == "sbatch" and result.returncode == 0:
            self.job_ids.append(commands.parse_sbatch_output(argv, result.stdout))
        if argv[0] == "squeue":
            self.squeue_lines = len(result.stdout.splitlines())
            self.polled.set()
        return result


@contextlib.contextmanager
def held_sbatch() -> Iterator[HeldSbatch]:
    """Hold every job metalab submits meanwhile; cancel them all on the way out."""
    held = HeldSbatch(commands.run_command)
    commands.run_command = held
    try:
        yield held
    finally:
        commands.run_command = held.run_command
        held.closed = True
        commands.scancel(held.job_ids)


@contextlib.contextmanager
def timed_submission_writes() -> Iterator[list[float]]:
    """Time every write of `submission.json` (instrumentation only: the writes still run)."""
    save = Submission.save
    seconds: list[float] = []

    def timed(self):
        t0 = time.perf_counter()
        save(self)
        seconds.append(time.perf_counter() - t0)

    Submission.save = timed  # type: ignore[method-assign]
    try:
        yield seconds
    finally:
        Submission.save = save  # type: ignore[method-assign]


def submit_large(root: str, genes: int = 2000) -> dict[str, float]:
    """Time `metalab.run` of the 300,000-run sweep (`genes` x 50 x 3 runs), its jobs held,
    then follow it for `FOLLOW` seconds; return the figures."""
    axes = {**LARGE_AXES, "gene": range(genes)}
    exp = _ops.experiment("large_sweep", replicates=3, **axes)
    config = metalab.SlurmConfig(setup=SETUP, **LARGE_CONFIG)
    executor = metalab.SlurmExecutor(config, poll_interval=FOLLOW_POLL)
    with held_sbatch() as held, timed_submission_writes() as writes:
        t0 = time.perf_counter()
        handle = metalab.run(exp, f"{root}/store", executor=executor)
        seconds = time.perf_counter() - t0
        # cancel only once the first poll saw every task pending: cancelled before it, the
        # tasks would be recorded failed, 300,000 records
        if not held.polled.wait(300):
            raise RuntimeError("the executor did not poll the scheduler within 300 s")
        if held.squeue_lines != len(exp):
            raise RuntimeError(f"squeue listed {held.squeue_lines} tasks, not {len(exp)}")
        start = time.monotonic()
        time.sleep(FOLLOW)
        followed = [name for t, name in held.calls if t >= start]
        minutes = (time.monotonic() - start) / 60
        pending = handle.status.pending
        # the follower's next poll fails (while the jobs are held still): it cannot act on
        # the cancelled jobs afterwards
        held.closed = True
        executor.poll_interval = 10**6
        time.sleep(FOLLOW_POLL + 2)
    if pending != len(exp):
        raise RuntimeError(f"expected {len(exp)} pending runs, got {handle.status}")
    return {
        "metalab": seconds,
        "calls": len(held.seconds["sbatch"]),
        "sbatch": sum(held.seconds["sbatch"]),
        "writes": len(writes),
        "write": sum(writes),
        "squeue": held.seconds["squeue"][0],
        "squeue_per_min": followed.count("squeue") / minutes,
        "sacct_per_min": followed.count("sacct") / minutes,
        "runs": len(exp),
    }


def sbatch_loop(root: str, jobs: int) -> float:
    """The baseline: `jobs` bare held submissions (`sbatch --hold --wrap true`)."""
    argv = ["sbatch", "--parsable", "--hold", "--partition=cpu", "--time=1:00:00"]
    argv += ["--output=/dev/null", "--wrap", "true"]
    ids = []
    t0 = time.perf_counter()
    try:
        for _ in range(jobs):
            out = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=root)
            ids.append(out.stdout.strip().split(";")[0])
        return time.perf_counter() - t0
    finally:
        commands.scancel(ids)


def wait_for_room(tasks: int, timeout: float = 600) -> None:
    """Wait until the controller can take `tasks` more: every task of a job array counts
    against `MaxJobCount` until `MinJobAge` after it ended (cancelled ones included)."""
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True)
    found = re.search(r"^MaxJobCount\s*=\s*(\d+)", config.stdout, re.M)
    limit = int(found.group(1)) if found else 10_000
    deadline = time.monotonic() + timeout
    while True:
        listed = subprocess.run(
            ["squeue", "-h", "-r", "-t", "all", "-o", "%i"], capture_output=True
        )
        held = listed.stdout.count(b"\n")
        if held + tasks < limit:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"MaxJobCount={limit} leaves no room for {tasks} tasks")
        print(f"waiting for {held} finished tasks to be purged", file=sys.stderr, flush=True)
        time.sleep(15)


def submission_rows(tmp: str, repeat: int = REPEAT, genes: int = 2000) -> list[dict]:
    rounds, baseline = [], []
    for r in range(repeat):
        root = os.path.join(tmp, f"submit-{r}")
        os.mkdir(root)
        wait_for_room(genes * 150 + 1_000)
        baseline.append(sbatch_loop(root, JOBS))
        rounds.append(submit_large(root, genes))
        time.sleep(SETTLE)  # the controller is busy cancelling 300,000 tasks for a moment
    base = best(baseline)
    fastest = min(rounds, key=lambda figures: figures["metalab"])
    took, calls, n = fastest["metalab"], int(max(f["calls"] for f in rounds)), fastest["runs"]
    rest = took - fastest["sbatch"] - fastest["write"]

    def part(label: str, seconds: float) -> dict:
        return row(f"  part: {label}", seconds, ratio=seconds / base, ratio_is="time / baseline")

    return [
        row(f"baseline: {JOBS} x sbatch --hold --wrap true", base, samples=baseline),
        row(
            f"submit {n:,} runs: metalab.run, {calls} sbatch",
            took,
            runs=n,
            ratio=took / base,
            ratio_is="time / baseline",
            target=f"< {TARGETS['submit_s']:g} s, <= {TARGETS['sbatch_calls']} sbatch",
            met=took < TARGETS["submit_s"] and calls <= TARGETS["sbatch_calls"],
            samples=[f["metalab"] for f in rounds],
        ),
        part(f"{int(fastest['calls'])} sbatch calls", fastest["sbatch"]),
        part(f"{int(fastest['writes'])} writes of submission.json", fastest["write"]),
        part("other: run ids, store, plan, scripts", rest),
        row("info: one squeue -r of the held sweep", fastest["squeue"], runs=n),
        calls_row("squeue", rounds),
        calls_row("sacct", rounds),
    ]


def calls_row(command: str, rounds: list[dict]) -> dict:
    """Calls per minute of `command` while following the held sweep (the most of any round)."""
    per_minute = max(f[f"{command}_per_min"] for f in rounds)
    target = 60 / FOLLOW_POLL if command == "squeue" else 0
    return row(
        f"follow, poll {FOLLOW_POLL:g} s: {per_minute:.1f} {command} calls per minute",
        None,
        target=f"<= {target:g} per minute",
        met=per_minute <= target + 1e-9,
    )


# --------------------------------------------------------------------------- sweeps that run


def small_sweep(name: str) -> metalab.Experiment:
    return _ops.experiment(name, i=range(SMALL_RUNS))


def timed_sweep(root: str, executor) -> tuple[float, list]:
    """Seconds from `metalab.run` to `result()` of the 1,000-run sweep, and its results."""
    t0 = time.perf_counter()
    results = metalab.run(small_sweep("small"), f"{root}/store", executor=executor).result()
    seconds = time.perf_counter() - t0
    if len(results) != SMALL_RUNS or any(r.status != "completed" for r in results):
        raise RuntimeError(f"{root}: not every run completed")
    return seconds, results


def native(runs_per_task: int, max_concurrent: int | None = None) -> metalab.SlurmExecutor:
    setup = [*SETUP, f'echo "{TASK_START} $(date +%s.%N)"']
    config = metalab.SlurmConfig(
        time="10:00",
        memory="500M",
        runs_per_task=runs_per_task,
        max_concurrent=max_concurrent,
        setup=setup,
    )
    return metalab.SlurmExecutor(config, poll_interval=POLL)


def jobqueue(root: str) -> metalab.JobqueueExecutor:
    config = metalab.SlurmConfig(time="10:00", memory="1G", setup=SETUP)
    return metalab.JobqueueExecutor(
        config,
        jobs=2,
        interface="lo",
        local_directory=f"{root}/dask",
        log_directory=f"{root}/logs",
    )


def in_task_seconds(results: list) -> float:
    """Sum over tasks of first `started_at` to last `finished_at` of the task's runs."""
    spans: dict[tuple[str, str], list[float]] = {}
    for r in results:
        slurm = r.provenance["slurm"]
        key = (slurm["array_job_id"], slurm["array_task_id"])
        start, end = (
            datetime.fromisoformat(r.record[k]).timestamp() for k in ("started_at", "finished_at")
        )
        span = spans.setdefault(key, [start, end])
        span[0], span[1] = min(span[0], start), max(span[1], end)
    return sum(end - start for start, end in spans.values())


def task_log_seconds(root: str) -> float:
    """Sum over tasks of the log's start stamp (before Python starts) to its last write."""
    total = 0.0
    for log in Path(root, "store", "slurm", "logs").glob("*.out"):
        match = re.search(rf"^{TASK_START} ([0-9.]+)$", log.read_text(), re.M)
        if match is None:
            raise RuntimeError(f"{log}: no start stamp")
        total += log.stat().st_mtime - float(match.group(1))
    return total


def sweep_rows(tmp: str, repeat: int = REPEAT, single: bool = False) -> list[dict]:
    executors = {
        "inline": lambda root: "inline",
        "packed": lambda root: native(PER_TASK, max_concurrent=CORES),
        "packed10": lambda root: native(10),
        "jobqueue": jobqueue,
    }
    if single:
        executors["single"] = lambda root: native(1)
    samples: dict[str, list[float]] = {k: [] for k in (*executors, "in_task", "task_log")}
    timed_sweep(os.path.join(tmp, "warm-up"), "inline")  # imports, git provenance, caches
    for r in range(repeat):
        for name, make in executors.items():
            if name == "single" and r > 0:
                continue  # 1,000 one-run tasks take minutes: measured once
            root = os.path.join(tmp, f"{name}-{r}")
            os.mkdir(root)
            seconds, results = timed_sweep(root, make(root))
            samples[name].append(seconds)
            if name == "packed":
                samples["in_task"].append(in_task_seconds(results) / SMALL_RUNS)
                samples["task_log"].append(task_log_seconds(root) / SMALL_RUNS)
    base = best(samples["inline"])
    per_run_base = base / SMALL_RUNS

    def per_run(label: str, name: str, target: bool) -> dict:
        value = best(samples[name])
        return row(
            label,
            value,
            ratio=value / per_run_base,
            ratio_is="time / baseline per run",
            target=f"<= {TARGETS['per_run_s'] * 1e3:g} ms" if target else "",
            met=value <= TARGETS["per_run_s"] if target else None,
            samples=samples[name],
        )

    def wall(label: str, name: str) -> dict:
        value = best(samples[name])
        return row(
            label,
            value,
            runs=SMALL_RUNS,
            ratio=value / base,
            ratio_is="time / baseline",
            samples=samples[name],
        )

    rows = [
        row(
            "baseline: 1,000 runs inline, one process",
            base,
            runs=SMALL_RUNS,
            samples=samples["inline"],
        ),
        per_run(f"packed x{PER_TASK}, {CORES} at once: per run in tasks", "in_task", True),
        per_run(f"packed x{PER_TASK}, {CORES} at once: incl. task start", "task_log", False),
        wall(f"native, runs_per_task={PER_TASK}, {CORES} at once", "packed"),
        wall("native, runs_per_task=10, unthrottled", "packed10"),
    ]
    if single:
        rows.append(wall("native, runs_per_task=1, unthrottled (once)", "single"))
    rows.append(wall("JobqueueExecutor(jobs=2, interface='lo')", "jobqueue"))
    return rows


def run(
    repeat: int = REPEAT, single: bool = False, submission_only: bool = False, genes: int = 2000
) -> list[dict]:
    """Measure submission, packed overhead and the executors side by side; return the rows."""
    with tempfile.TemporaryDirectory(prefix="metalab-bench-") as tmp:
        rows = submission_rows(tmp, repeat, genes)
        return rows if submission_only else rows + sweep_rows(tmp, repeat, single)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=REPEAT, help="rounds (best kept)")
    parser.add_argument(
        "--single", action="store_true", help="also run 1,000 one-run tasks (minutes)"
    )
    parser.add_argument(
        "--submission-only", action="store_true", help="only submit and follow the large sweep"
    )
    parser.add_argument("--genes", type=int, default=2000, help="genes of the large sweep")
    args = parser.parse_args()
    rows = run(args.repeat, args.single, args.submission_only, args.genes)
    print(format_table({"slurm": rows}))


if __name__ == "__main__":
    main()
