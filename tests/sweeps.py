"""Operations and experiments shared by the execution tests (importable by worker processes)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import metalab


@metalab.operation
def draw(params, seeds, capture):
    rng = seeds.numpy()
    capture.metric("value", float(rng.random()) * params["scale"])
    capture.metric("draw_int", rng.integers(0, 1_000_000))
    capture.metric("stdlib", seeds.rng().random())


def draw_experiment(name: str = "draws", replicates: int = 2) -> metalab.Experiment:
    return metalab.Experiment(
        name=name,
        version="1",
        context={"label": "x"},
        operation=draw,
        params=metalab.grid(scale=[1, 10, 100], shift=[0.5, 1.5]),
        seeds=metalab.seeds(base=7, replicates=replicates),
    )


@metalab.operation
def logged_sleep(params, runtime, capture):
    """Sleep `params['sleep']` seconds, polling cancellation; append one line per execution."""
    with open(os.environ["METALAB_TEST_EXEC_LOG"], "a") as fh:
        fh.write(f"{runtime.run_id} {os.getpid()}\n")
    deadline = time.monotonic() + params["sleep"]
    while time.monotonic() < deadline:
        runtime.check_cancelled()
        time.sleep(0.01)
    capture.metric("i", params["i"])


def sleep_experiment(n: int, sleep: float, name: str = "sleepy") -> metalab.Experiment:
    return metalab.Experiment(
        name=name,
        version="1",
        context={},
        operation=logged_sleep,
        params=metalab.grid(i=list(range(n)), sleep=[sleep]),
        seeds=metalab.seeds(base=1),
    )


def indexed_experiment(op, n: int, name: str, **kwargs) -> metalab.Experiment:
    """`op` over `i = 0..n-1`, one replicate."""
    return metalab.Experiment(
        name=name,
        version="1",
        context={},
        operation=op,
        params=metalab.grid(i=list(range(n))),
        seeds=metalab.seeds(base=0),
        **kwargs,
    )


def metalab_cmd(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """Run the `metalab` command line with `args` in a fresh Python."""
    return subprocess.run(
        [sys.executable, "-m", "metalab", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
    )


def executions(log_path) -> list[str]:
    """Run ids in the execution log, one per execution."""
    try:
        with open(log_path) as fh:
            return [line.split()[0] for line in fh if line.strip()]
    except FileNotFoundError:
        return []


def checked_result(handle, **kwargs):
    """`handle.result(**kwargs)`, checking that it warns `RunsFailedWarning` exactly when runs
    failed (or were interrupted), with their count: for sweeps some of whose runs fail."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", metalab.RunsFailedWarning)
        results = handle.result(**kwargs)
    warned = [w for w in caught if issubclass(w.category, metalab.RunsFailedWarning)]
    failed = [r for r in results if r.status == "failed" or _interrupted_itself(r)]
    assert len(warned) == (1 if failed else 0), [str(w.message) for w in warned]
    if failed:
        message = str(warned[0].message)
        assert f"{len(failed)} of {handle.status.total} run" in message, message
        assert failed[0].error["type"].rsplit(".", 1)[-1] in message, message
    return results


def _interrupted_itself(run) -> bool:
    """An interrupted run that its sweep's cancellation did not stop."""
    return run.status == "interrupted" and not run.error["type"].endswith("RunCancelled")


def wait_for(check, timeout: float = 30.0, what: str = "a condition"):
    """Call `check` until it returns something true (which is returned), for at most
    `timeout` seconds; AssertionError naming `what` when it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
