"""The store contract, run for real against every store: resume, failures, artifacts, logs,
derived metrics, cancellation, reconnect, and many writers at once.

`memory` (`metalab.testing.MemoryStore`) joins the stores wherever the sweep stays in this
process; the tests that start driver or worker processes run against the others."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from contract_stores import STORES, make_store, two_worker_cluster
from sweeps import checked_result, executions, sleep_experiment

import metalab
import metalab.store

EXEC_LOG = "METALAB_TEST_EXEC_LOG"
FAIL_FLAG = "METALAB_TEST_FAIL_FLAG"
QUOTED_PARAM = 'it\'s "x"; --'
QUOTED_METRIC = 'score"); DROP TABLE runs; --'


@pytest.fixture(params=[*STORES, pytest.param("memory", id="memory")])
def any_store(request, tmp_path):
    """A locator of a store that does not exist yet, a memory store included."""
    if request.param == "memory":
        locator = f"memory://contract-{uuid.uuid4().hex[:12]}"
        yield locator
        from metalab.testing import MemoryStore

        MemoryStore.open(locator).drop()
        return
    locator, cleanup = make_store(request.param, request, tmp_path)
    yield locator
    if cleanup is not None:
        cleanup()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """The execution log and the flag that makes odd `x` fail, both set for workers too."""
    log, flag = tmp_path / "exec.log", tmp_path / "fail.flag"
    monkeypatch.setenv(EXEC_LOG, str(log))
    monkeypatch.setenv(FAIL_FLAG, str(flag))
    flag.touch()
    return log, flag


@metalab.operation
def flaky(params, runtime, capture):
    x = params["x"]
    capture.log(f"x={x} attempt {runtime.attempt}")
    capture.metric("x2", x * 2)
    capture.artifact("arr", np.arange(3) + x)
    capture.data("cfg", {"x": x, "quote": QUOTED_PARAM})
    with open(os.environ[EXEC_LOG], "a") as fh:
        fh.write(f"{x}\n")
    if x % 2 and os.path.exists(os.environ[FAIL_FLAG]):
        raise RuntimeError(f"odd x={x} fails while the flag exists")


def flaky_experiment(n: int = 6) -> metalab.Experiment:
    return metalab.Experiment(
        name="contract",
        version="1",
        context={},
        operation=flaky,
        params=metalab.grid(x=list(range(n))),
        seeds=metalab.seeds(base=3),
    )


def _executed(log) -> list[int]:
    return sorted(int(line) for line in log.read_text().split()) if log.exists() else []


def test_resume_skips_completed_runs_and_reruns_failed_ones(any_store, env):
    log, flag = env
    first = checked_result(metalab.run(flaky_experiment(), any_store, executor="inline"))
    assert [r.status for r in first] == ["completed", "failed"] * 3
    assert first[1].error["type"] == "RuntimeError"
    assert "odd x=1 fails" in first[1].error["message"]
    assert first[1].metrics == {"x2": 2}  # partial metrics survive the failure
    completed = {r.run_id for r in first if r.status == "completed"}
    assert metalab.store.create_store(any_store).scan()[1] == completed

    flag.unlink()
    log.unlink()
    handle = metalab.run(flaky_experiment(), any_store, executor="inline")
    second = checked_result(handle)
    assert _executed(log) == [1, 3, 5]
    assert [r.status for r in second] == ["completed"] * 6
    assert handle.status.skipped == 3 and handle.status.completed == 3
    assert [r.record["attempt"] for r in second] == [1, 2] * 3

    log.unlink()
    third = metalab.run(flaky_experiment(), any_store, executor="inline")
    assert third.status.skipped == 6
    assert _executed(log) == []
    assert [r.run_id for r in checked_result(third)] == [r.run_id for r in second]


def test_resume_false_reruns_everything_and_replaces_records(any_store, env):
    log, flag = env
    flag.unlink()
    checked_result(metalab.run(flaky_experiment(), any_store, executor="inline"))
    flag.touch()
    again = checked_result(
        metalab.run(flaky_experiment(), any_store, executor="inline", resume=False)
    )
    assert _executed(log) == sorted(list(range(6)) * 2)
    final, done = metalab.store.create_store(any_store).scan()
    assert final == {r.run_id for r in again}
    assert done == {r.run_id for r in again if r.status == "completed"}
    assert len(done) == 3  # a failed re-run is no longer complete
    assert len(list(metalab.store.create_store(any_store).iter_records())) == 6


def test_artifacts_logs_and_derived_metrics_through_load_results(any_store, env):
    _log, flag = env
    checked_result(metalab.run(flaky_experiment(4), any_store, executor="inline"))
    flag.unlink()
    checked_result(metalab.run(flaky_experiment(4), any_store, executor="inline"))

    results = metalab.load_results(any_store)
    assert [r.params["x"] for r in results] == [0, 1, 2, 3]
    for run in results:
        x = run.params["x"]
        assert run.artifact("arr").tolist() == [x, x + 1, x + 2]
        assert run.artifact("cfg") == {"x": x, "quote": QUOTED_PARAM}
    # a run that failed once keeps the lines of both attempts, oldest first
    log = results[1].log
    assert log.index("x=1 attempt 1") < log.index("x=1 attempt 2")
    assert "attempt 2" not in results[0].log
    assert metalab.load_results(any_store, "contract").records == results.records

    results.store.put_derived(results[0].run_id, {"final": {"value": 0.5}, "n": 3})
    results.store.put_derived(results[0].run_id, {"final": {"value": 0.25}})
    reloaded = metalab.load_results(any_store)
    assert reloaded[0].derived == {"final": 0.25}
    assert reloaded[1].derived == {}


@metalab.operation
def quoted_names(params, capture):
    capture.metric(QUOTED_METRIC, params[QUOTED_PARAM] * 10)


def test_parameter_and_metric_names_with_quotes(any_store):
    exp = metalab.Experiment(
        name="quotes",
        version="1",
        context={},
        operation=quoted_names,
        params=metalab.grid(**{QUOTED_PARAM: [1, 2]}),
        seeds=metalab.seeds(base=0),
    )
    metalab.run(exp, any_store, executor="inline").result()
    results = metalab.load_results(any_store)
    assert [r.metrics for r in results] == [{QUOTED_METRIC: 10}, {QUOTED_METRIC: 20}]
    assert [r.params for r in results.filter(**{QUOTED_PARAM: 2})] == [{QUOTED_PARAM: 2}]


def test_reconnect_rebuilds_the_sweep_from_the_store(any_store, env):
    _log, flag = env
    flag.unlink()
    done = metalab.run(flaky_experiment(3), any_store, executor="inline").result()
    handle = metalab.reconnect(any_store)
    assert handle.status.total == 3
    assert [r.record for r in handle.result(timeout=60)] == [r.record for r in done]
    manifests = metalab.store.create_store(any_store).manifests("contract:1")
    assert len(manifests) == 1 and manifests[0]["experiment_id"] == "contract:1"


@pytest.mark.slow
def test_cancel_records_every_run_and_resume_finishes(any_store, tmp_path, monkeypatch):
    log = tmp_path / "sleep.log"
    monkeypatch.setenv(EXEC_LOG, str(log))
    exp = sleep_experiment(12, 0.3)
    handle = metalab.run(exp, any_store, executor=metalab.ThreadExecutor(max_workers=2))
    deadline = time.monotonic() + 60
    while handle.status.completed < 2 and time.monotonic() < deadline:
        handle.wait(0.05)
    handle.cancel()
    statuses = [r.status for r in checked_result(handle, timeout=60)]
    assert len(statuses) == 12
    assert set(statuses) <= {"completed", "cancelled", "interrupted"}
    assert "cancelled" in statuses
    assert metalab.store.create_store(any_store).claims() == {}

    ran_before = len(executions(log))
    again = checked_result(metalab.run(exp, any_store, executor="inline"))
    assert [r.status for r in again] == ["completed"] * 12
    assert len(executions(log)) - ran_before == 12 - statuses.count("completed")


def _assert_each_run_recorded_once(store, exp, log):
    counts = Counter(executions(log))
    assert sorted(counts) == sorted(exp.run_ids())
    assert set(counts.values()) == {1}, counts
    opened = metalab.store.create_store(store)
    final, done = opened.scan()
    assert final == done == set(exp.run_ids())
    records = list(opened.get_records(exp.run_ids()))
    assert [r["run_id"] for r in records] == exp.run_ids()
    assert opened.claims() == {}
    return records


DRIVER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import metalab
    from sweeps import sleep_experiment

    if __name__ == "__main__":
        exp = sleep_experiment(int(sys.argv[2]), float(sys.argv[3]))
        executor = metalab.ThreadExecutor(max_workers=2)
        results = metalab.run(exp, sys.argv[1], executor=executor).result(timeout=120)
        print("STATUSES", sorted(set(r.status for r in results)), len(results), flush=True)
    """
)


@pytest.mark.slow
def test_two_drivers_on_one_store_execute_each_run_once(store, tmp_path):
    log = tmp_path / "sleep.log"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(tests=str(Path(__file__).resolve().parent.parent)))
    metalab.store.create_store(store)  # both drivers find the store made
    drivers = [
        subprocess.Popen(
            [sys.executable, str(script), store, "16", "0.1"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, EXEC_LOG: str(log)},
        )
        for _ in range(2)
    ]
    for driver in drivers:
        out, err = driver.communicate(timeout=240)
        assert driver.returncode == 0, err
        assert "STATUSES ['completed'] 16" in out
    _assert_each_run_recorded_once(store, sleep_experiment(16, 0.1), log)


@pytest.mark.slow
def test_two_dask_worker_processes_write_every_run_exactly_once(store, tmp_path, monkeypatch):
    log = tmp_path / "sleep.log"
    monkeypatch.setenv(EXEC_LOG, str(log))
    exp = sleep_experiment(40, 0.02)
    with two_worker_cluster() as cluster:  # started now: its workers see EXEC_LOG
        handle = metalab.run(exp, store, executor=metalab.DaskExecutor(cluster, chunk_size=1))
        results = handle.result(timeout=180)
    assert [r.status for r in results] == ["completed"] * 40
    records = _assert_each_run_recorded_once(store, exp, log)
    assert len({r["provenance"]["pid"] for r in records}) == 2  # both workers wrote
