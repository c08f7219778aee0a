"""The sweep contract, for every store x every executor: resume, partial state of failed and
interrupted runs, two drivers at once, a killed driver resumed, identical results everywhere.

Only the public API is used. Executions are counted through a side channel (a line per
execution in a file named by the experiment's metadata), so each count holds wherever the
run happened: in this process, a worker process, a SLURM array task or a jobqueue worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from contract_ops import (
    CONTRACT,
    close_executor,
    executed_x,
    executions,
    experiment,
    make_executor,
    run_to_end,
)

import metalab
from metalab.store import create_store

TIMEOUT = 240
pytestmark = pytest.mark.timeout(420)


@contextlib.contextmanager
def executor_for(kind: str, setting: dict[str, Any]) -> Iterator[Any]:
    executor = make_executor(kind, setting)
    try:
        yield executor
    finally:
        close_executor(executor)


def finish(handle) -> Any:
    """The handle's results; failed runs are expected here, so their warning is not."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", metalab.RunsFailedWarning)
        return handle.result(timeout=TIMEOUT)


def sweep(exp, store: str, executor_kind, **options) -> tuple[Any, Any]:
    kind, setting = executor_kind
    with executor_for(kind, setting) as executor:
        handle = metalab.run(exp, store, executor=executor, **options)
        return handle, finish(handle)


FIRST_ATTEMPT = ["completed", "failed", "interrupted", "failed", "completed", "failed"]


def test_resume_skips_completed_and_reruns_failed(store, executor_kind, tmp_path):
    log = tmp_path / "exec.log"
    exp = experiment(log, 6, "flaky")
    _, first = sweep(exp, store, executor_kind)
    assert [r.status for r in first] == FIRST_ATTEMPT
    assert executed_x(log) == [0, 1, 2, 3, 4, 5]
    assert create_store(store).scan()[1] == {first[0].run_id, first[4].run_id}

    log.unlink()
    handle, second = sweep(exp, store, executor_kind)
    assert executed_x(log) == [1, 2, 3, 5]  # the failed and interrupted runs, once each
    assert [r.status for r in second] == ["completed"] * 6
    assert handle.status.skipped == 2 and handle.status.completed == 4
    assert [r.record["attempt"] for r in second] == [1, 2, 2, 2, 1, 2]
    assert [r.run_id for r in second] == exp.run_ids()

    log.unlink()
    handle, third = sweep(exp, store, executor_kind)
    assert handle.status.skipped == 6 and executed_x(log) == []
    assert [r.record for r in third] == [r.record for r in second]


@pytest.mark.parametrize(
    "executor_kind",
    [pytest.param("slurm", id="slurm", marks=[pytest.mark.slurm, pytest.mark.slow])],
    indirect=True,
)
def test_resume_at_once_after_a_sweep_with_failures(store, executor_kind, tmp_path):
    log = tmp_path / "exec.log"
    exp = experiment(log, 4, "flaky")  # its array tasks live on LINGER s after their runs
    sweep(exp, store, executor_kind)
    # the failed runs are recorded while their tasks still exit: they are resubmitted at once
    handle, second = sweep(exp, store, executor_kind)
    assert [r.status for r in second] == ["completed"] * 4
    assert handle.status.skipped == 1


def test_failed_and_interrupted_runs_keep_partial_state(store, executor_kind, tmp_path):
    log = tmp_path / "exec.log"
    exp = experiment(log, 4, "flaky")
    _, results = sweep(exp, store, executor_kind)
    assert [r.status for r in results] == FIRST_ATTEMPT[:4]
    loaded = metalab.load_results(store)
    assert [r.status for r in loaded] == FIRST_ATTEMPT[:4]
    for x, error in ((1, "RuntimeError"), (2, "RunCancelled")):
        run = loaded[x]
        assert run.error["type"].rsplit(".", 1)[-1] == error
        assert f"x={x}" in run.error["message"]
        # what the run measured, stored and logged before it stopped is kept
        assert run.metrics["x2"] == 2 * x and set(run.metrics) == {"x2", "draw", "stdlib"}
        assert run.metrics == results[x].metrics
        assert run.artifact("arr").tolist() == [x, x + 1, x + 2]
        assert f"x={x} attempt 1" in run.log
    assert create_store(store).claims() == {}


def _driver(
    store: str, executor_kind, log, n: int, sleep: float, mode: str = "slow"
) -> subprocess.Popen[str]:
    kind, setting = executor_kind
    args = {
        "store": store,
        "kind": kind,
        "setting": setting,
        "log": str(log),
        "n": n,
        "mode": mode,
        "sleep": sleep,
    }
    code = "import sys, contract_ops; sys.exit(contract_ops.main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(CONTRACT), str(CONTRACT.parent)])}
    return subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(args)],
        cwd=log.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own group: what it started is ended with it
    )


@contextlib.contextmanager
def drivers(*processes: subprocess.Popen[str]) -> Iterator[None]:
    """End every driver's process group (its local workers too) when the test ends."""
    try:
        yield
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _each_run_recorded_once_and_completed(store: str, exp) -> list[dict]:
    opened = create_store(store)
    records = list(opened.iter_records())
    assert Counter(r["run_id"] for r in records) == Counter(exp.run_ids())
    assert {r["status"] for r in records} == {"completed"}
    final, done = opened.scan()
    assert final == done == set(exp.run_ids())
    assert opened.claims() == {}
    return records


def test_two_drivers_at_once_execute_each_run_once(store, executor_kind, tmp_path):
    kind, _ = executor_kind
    log = tmp_path / "exec.log"
    exp = experiment(log, 8, "slow", 0.2)
    create_store(store)  # both drivers find the store made
    both = [_driver(store, executor_kind, log, 8, 0.2) for _ in range(2)]
    with drivers(*both):
        outputs = [process.communicate(timeout=TIMEOUT) for process in both]
    for process, (out, err) in zip(both, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
        # a second SLURM submission of the same runs is refused while the first runs
        finished = "STATUSES ['completed'] 8" in out or (kind == "slurm" and "REFUSED" in out)
        assert finished, (out, err[-3000:])
    assert any("STATUSES" in out for out, _ in outputs)
    assert set(executions(log).values()) == {1} and len(executions(log)) == 8
    _each_run_recorded_once_and_completed(store, exp)


def test_a_killed_driver_resumed_records_every_run_once(store, executor_kind, tmp_path):
    kind, setting = executor_kind
    log = tmp_path / "exec.log"
    exp = experiment(log, 8, "staggered", 0.25)
    driver = _driver(store, executor_kind, log, 8, 0.25, "staggered")
    with drivers(driver):
        deadline = time.monotonic() + TIMEOUT
        done: set[str] = set()
        while len(done) < 2:
            assert driver.poll() is None, driver.communicate()
            assert time.monotonic() < deadline, "no runs completed in time"
            time.sleep(0.1)
            with contextlib.suppress(metalab.StoreError):
                done = create_store(store, create=False).scan()[1]
        driver.send_signal(signal.SIGKILL)  # the driver alone: its workers are orphaned
        driver.wait()
        assert done < set(exp.run_ids()), "the sweep ended before its driver was killed"
        results = run_to_end(exp, store, kind, setting, TIMEOUT)
    assert [r.status for r in results] == ["completed"] * 8
    records = _each_run_recorded_once_and_completed(store, exp)
    counts = executions(log)
    assert set(counts) == set(exp.run_ids())
    assert all(counts[run_id] == 1 for run_id in done), counts  # completed: never again
    assert [r["run_id"] for r in sorted(records, key=lambda r: r["index"])] == exp.run_ids()


def test_every_executor_gives_the_inline_executors_runs_bit_for_bit(store, executor_kind, tmp_path):
    exp = experiment(tmp_path / "exec.log", 8)
    reference = metalab.run(exp, tmp_path / "inline", executor="inline").result()
    _, results = sweep(exp, store, executor_kind)
    assert [r.run_id for r in results] == [r.run_id for r in reference] == exp.run_ids()
    assert [r.status for r in results] == ["completed"] * 8
    loaded = metalab.load_results(store)
    for ours, theirs, stored in zip(results, reference, loaded, strict=True):
        assert ours.metrics == theirs.metrics == stored.metrics
        # bit for bit: the same floats, not merely close ones
        assert json.dumps(ours.metrics) == json.dumps(theirs.metrics)
        assert ours.params == theirs.params
        assert ours.record["fingerprints"] == theirs.record["fingerprints"]
        assert stored.artifact("arr").tolist() == theirs.artifact("arr").tolist()
