"""The contract suite's operation, experiments and executors, importable by every worker.

Worker processes, SLURM array tasks and dask-jobqueue workers import this module (through
`PYTHONPATH`); driver subprocesses run it as a script (`python contract_ops.py <json>`).
Each execution of a run appends one line to the file named by the experiment's metadata
`log`: the side channel that counts executions wherever the run happened. Metadata never
enters run ids, so every experiment built here has the same runs as its `plain` twin.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

import metalab

CONTRACT = Path(__file__).resolve().parent
LINGER = 4.0
"""Seconds an array task of a `flaky` sweep's first attempt lives on after its runs."""


@metalab.operation
def step(params, seeds, runtime, capture):
    """Log, measure and store an artifact; then, by the metadata `mode`, fail in the first
    attempt (`flaky`: odd `x` raise, `x == 2` is interrupted) or sleep (`slow`: `sleep`
    seconds; `staggered`: `sleep * (1 + x)`, so runs end one after another everywhere)."""
    x = params["x"]
    meta = runtime.metadata
    with open(meta["log"], "a") as fh:
        fh.write(f"{runtime.run_id} {x} {runtime.attempt} {os.getpid()}\n")
    capture.log(f"x={x} attempt {runtime.attempt}")
    capture.metric("x2", x * 2)
    capture.metric("draw", float(seeds.numpy().random()))
    capture.metric("stdlib", seeds.rng().random())
    capture.artifact("arr", np.arange(3) + x)
    if meta.get("mode") == "flaky" and runtime.attempt == 1:
        if os.environ.get("SLURM_ARRAY_TASK_ID"):
            # a task takes a moment to exit after its last record: make that moment certain
            atexit.register(time.sleep, LINGER)
        if x % 2:
            raise RuntimeError(f"odd x={x} fails its first attempt")
        if x == 2:
            raise metalab.RunCancelled(f"x={x} is interrupted in its first attempt")
    sleep = float(meta.get("sleep", 0)) * (1 + x if meta.get("mode") == "staggered" else 1)
    deadline = time.monotonic() + sleep
    while time.monotonic() < deadline:
        runtime.check_cancelled()
        time.sleep(0.02)


def experiment(log: str | os.PathLike[str], n: int = 6, mode: str = "plain", sleep: float = 0):
    """`n` runs of `step` (`x = 0..n-1`), executions logged to `log`."""
    return metalab.Experiment(
        name="contract",
        version="1",
        context={},
        operation=step,
        params=metalab.grid(x=list(range(n))),
        seeds=metalab.seeds(base=17),
        metadata={"log": str(log), "mode": mode, "sleep": sleep},
    )


def executions(log: str | os.PathLike[str]) -> Counter[str]:
    """How many times each run id was executed."""
    try:
        with open(log) as fh:
            return Counter(line.split()[0] for line in fh if line.strip())
    except FileNotFoundError:
        return Counter()


def executed_x(log: str | os.PathLike[str]) -> list[int]:
    """The `x` of every execution, sorted."""
    try:
        with open(log) as fh:
            return sorted(int(line.split()[1]) for line in fh if line.strip())
    except FileNotFoundError:
        return []


# ---------------------------------------------------------------------------- executors
def make_executor(kind: str, setting: dict[str, Any]) -> Any:
    """The executor `kind` names, configured by `setting` (JSON: it travels to drivers)."""
    if kind in ("inline", "threads", "processes"):
        return kind
    if kind == "dask":
        return None
    if kind == "client":
        import distributed

        return distributed.Client(setting["scheduler"], set_as_default=False)
    config = metalab.SlurmConfig(
        partition=setting["partition"],
        time="10:00",
        memory="1G",
        setup=[f"export PYTHONPATH={CONTRACT}"],
    )
    if kind == "slurm":
        return metalab.SlurmExecutor(config, work_dir=setting["work_dir"], poll_interval=0.3)
    if kind == "jobqueue":
        return metalab.JobqueueExecutor(
            config,
            jobs=1,
            interface="lo",
            local_directory=os.path.join(setting["work_dir"], "dask"),
            log_directory=os.path.join(setting["work_dir"], "logs"),
        )
    raise ValueError(f"unknown executor kind {kind!r}")


def close_executor(executor: Any) -> None:
    """Close a client made for one driver (others are closed by metalab or kept)."""
    close = getattr(executor, "close", None)
    if close is not None and type(executor).__name__ == "Client":
        close()


def run_to_end(exp, store: str, kind: str, setting: dict[str, Any], timeout: float = 240):
    """`metalab.run(...).result()`, waiting while array jobs of an earlier submission of the
    sweep still run (SLURM refuses a second submission meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        executor = make_executor(kind, setting)
        try:
            return metalab.run(exp, store, executor=executor).result(timeout=timeout)
        except metalab.ExecutorError as exc:
            if "already has SLURM jobs" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(1)
        finally:
            close_executor(executor)


def main(argv: list[str]) -> int:
    """A driver: run the sweep described by the JSON argument; print its statuses."""
    args = json.loads(argv[0])
    exp = experiment(args["log"], args["n"], args["mode"], args["sleep"])
    executor = make_executor(args["kind"], args["setting"])
    try:
        results = metalab.run(exp, args["store"], executor=executor).result(timeout=300)
    except metalab.ExecutorError as exc:
        if "already has SLURM jobs" in str(exc):
            print("REFUSED", flush=True)
            return 0
        raise
    finally:
        close_executor(executor)
    print("STATUSES", sorted({r.status for r in results}), len(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
