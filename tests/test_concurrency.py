"""Two drivers on one store, and a driver killed mid-sweep: every run recorded exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import pytest
from sweeps import executions, sleep_experiment

import metalab
from metalab.store import create_store

TESTS_DIR = os.path.dirname(__file__)

DRIVER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import metalab
    from sweeps import sleep_experiment

    if __name__ == "__main__":
        executor = {{"threads": metalab.ThreadExecutor(max_workers=2),
                    "processes": metalab.ProcessExecutor(max_workers=2)}}[sys.argv[2]]
        exp = sleep_experiment(int(sys.argv[3]), float(sys.argv[4]))
        results = metalab.run(exp, sys.argv[1], executor=executor).result()
        print("STATUSES", sorted(set(r.status for r in results)), len(results), flush=True)
    """
)


def _driver(tmp_path, store, executor, n, sleep):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(tests=TESTS_DIR))
    return subprocess.Popen(
        [sys.executable, str(script), str(store), executor, str(n), str(sleep)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "METALAB_TEST_EXEC_LOG": str(tmp_path / "exec.log")},
    )


def _wait_for_records(store, at_least, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = store / "runs"
        if runs.exists() and len(list(runs.glob("*/*.done"))) >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} runs completed within {timeout}s")


def _assert_each_run_recorded_once(store, exp, statuses=("completed",)):
    opened = create_store(store)
    final, done = opened.scan()
    run_ids = exp.run_ids()
    assert set(run_ids) <= final
    assert set(run_ids) <= done
    records = list(opened.get_records(run_ids))
    assert len(records) == len(run_ids) == len({r["run_id"] for r in records})
    assert {r["status"] for r in records} <= set(statuses)
    assert opened.claims() == {}
    assert not [p for p in (store / "claims").rglob("*") if p.is_file()]


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_two_drivers_on_one_store_execute_each_run_once(tmp_path, executor):
    store = tmp_path / "store"
    n = 24
    first = _driver(tmp_path, store, executor, n, 0.15)
    time.sleep(0.3)
    second = _driver(tmp_path, store, executor, n, 0.15)
    outs = [p.communicate(timeout=240) for p in (first, second)]
    for proc, (out, err) in zip((first, second), outs):
        assert proc.returncode == 0, err
        assert "STATUSES ['completed'] 24" in out
    counts = Counter(executions(tmp_path / "exec.log"))
    exp = sleep_experiment(n, 0.15)
    assert sorted(counts) == sorted(exp.run_ids())
    assert set(counts.values()) == {1}, counts
    _assert_each_run_recorded_once(store, exp)


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_driver_killed_mid_sweep_then_resumed(tmp_path, monkeypatch, executor):
    store = tmp_path / "store"
    n = 30
    driver = _driver(tmp_path, store, executor, n, 0.2)
    _wait_for_records(store, 4)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    exp = sleep_experiment(n, 0.2)
    before = len(create_store(store).scan()[1])
    assert before < n

    monkeypatch.setenv("METALAB_TEST_EXEC_LOG", str(tmp_path / "exec.log"))
    handle = metalab.run(exp, store, executor=metalab.ThreadExecutor(max_workers=2))
    results = handle.result(timeout=240)
    assert [r.status for r in results] == ["completed"] * n
    assert handle.status.skipped >= before
    _assert_each_run_recorded_once(store, exp)
    # every run executed to completion exactly once; only runs cut off by the kill ran twice
    counts = Counter(executions(tmp_path / "exec.log"))
    assert set(counts) == set(exp.run_ids())
    assert sum(1 for c in counts.values() if c > 1) <= 4
