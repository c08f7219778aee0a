"""`metalab.reconnect`: follow a sweep from a process other than the one that submitted it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from sweeps import draw_experiment, sleep_experiment

import metalab
from metalab.following import StoreFollower

TESTS_DIR = os.path.dirname(__file__)
DRIVER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import metalab
    from sweeps import sleep_experiment

    if __name__ == "__main__":
        exp = sleep_experiment(int(sys.argv[2]), float(sys.argv[3]))
        metalab.run(exp, sys.argv[1], executor=metalab.ThreadExecutor(max_workers=2)).result()
    """
)


def _start_driver(tmp_path, store, n, sleep):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(tests=TESTS_DIR))
    return subprocess.Popen(
        [sys.executable, str(script), str(store), str(n), str(sleep)],
        env={**os.environ, "METALAB_TEST_EXEC_LOG": str(tmp_path / "exec.log")},
        stderr=subprocess.PIPE,
    )


def _wait_for_manifest(store, timeout=60):
    deadline = time.monotonic() + timeout
    while not list((store / "experiments").glob("*.json")) if store.exists() else True:
        if time.monotonic() > deadline:
            raise AssertionError("the driver never wrote its manifest")
        time.sleep(0.05)


@pytest.mark.slow
def test_reconnect_follows_a_running_sweep_to_the_end(tmp_path):
    store = tmp_path / "store"
    driver = _start_driver(tmp_path, store, 16, 0.2)
    try:
        _wait_for_manifest(store)
        handle = metalab.reconnect(store)
        assert handle.status.total == 16
        results = handle.result(timeout=120)
        assert [r.status for r in results] == ["completed"] * 16
        assert [r.run_id for r in results] == sleep_experiment(16, 0.2).run_ids()
        assert handle.status.completed == 16 and handle.status.pending == 0
    finally:
        driver.wait(timeout=60)
    assert driver.returncode == 0


@pytest.mark.slow
def test_a_handle_reconnected_mid_sweep_counts_every_run(tmp_path):
    """Runs already recorded when a handle reconnected were counted twice against pending
    (the counts summed to less than the total), and its progress showed them as done at
    once (a rate far above the sweep's)."""
    import io

    store = tmp_path / "store"
    driver = _start_driver(tmp_path, store, 24, 0.1)
    try:
        _wait_for_manifest(store)
        while len(list((store / "runs").rglob("*.json"))) < 6:
            time.sleep(0.05)
        shown = io.StringIO()
        progress = metalab.Progress(stream=shown, use_rich=False, interval=0.2)
        handle = metalab.reconnect(store, progress=progress)
        seen = []
        while not handle.is_complete:
            status = handle.status
            seen.append(status)
            assert status.completed + status.failed + status.running + status.pending == 24
            handle.wait(0.05)
        assert seen[0].completed >= 6
        handle.result(timeout=120)
        final = handle.status
        assert (final.completed, final.pending, final.running) == (24, 0, 0)
        # 2 threads of 0.1 s runs: about 20 runs a second, never the hundreds it showed
        rates = [
            float(line.split(" runs/s")[0].rsplit("| ", 1)[1])
            for line in shown.getvalue().splitlines()
            if " runs/s" in line
        ]
        assert rates and max(rates) < 40, shown.getvalue()
    finally:
        driver.wait(timeout=60)
    assert driver.returncode == 0


@pytest.mark.slow
def test_reconnect_to_a_dead_driver_reports_the_stall_and_resume_finishes(tmp_path, monkeypatch):
    store = tmp_path / "store"
    driver = _start_driver(tmp_path, store, 40, 0.2)
    _wait_for_manifest(store)
    while len(list((store / "runs").glob("*/*.done"))) < 2:
        time.sleep(0.05)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)

    handle = metalab.reconnect(store)
    handle._driver.executor.stall_after = 1.0
    assert isinstance(handle._driver.executor, StoreFollower)
    with pytest.raises(metalab.ExecutorError, match=r"have no record.*metalab\.run"):
        handle.result(timeout=60)
    assert 2 <= handle.status.completed < 40

    monkeypatch.setenv("METALAB_TEST_EXEC_LOG", str(tmp_path / "exec.log"))
    results = metalab.run(sleep_experiment(40, 0.2), store, executor="threads").result()
    assert [r.status for r in results] == ["completed"] * 40
    assert metalab.reconnect(store).result(timeout=30)[39].status == "completed"


def test_reconnect_errors_name_the_problem(tmp_path, monkeypatch):
    monkeypatch.setenv("METALAB_TEST_EXEC_LOG", str(tmp_path / "exec.log"))
    with pytest.raises(metalab.StoreError, match="no metalab store"):
        metalab.reconnect(tmp_path / "missing")
    store = tmp_path / "store"
    metalab.run(sleep_experiment(2, 0, name="a"), store, executor="inline").result()
    metalab.run(sleep_experiment(2, 0, name="b"), store, executor="inline").result()
    with pytest.raises(metalab.ValidationError, match=r"several experiments.*experiment="):
        metalab.reconnect(store)
    with pytest.raises(metalab.ValidationError, match="no submission of experiment 'zzz'"):
        metalab.reconnect(store, experiment="zzz")
    handle = metalab.reconnect(store, experiment="b")
    results = handle.result(timeout=30)
    assert [(r.params["i"], r.status) for r in results] == [(0, "completed"), (1, "completed")]


def test_a_handle_on_a_sweep_that_ended_is_complete_at_once(tmp_path):
    store = tmp_path / "store"
    exp = draw_experiment("ended", replicates=1)
    metalab.run(exp, store, executor="inline").result()
    followed = metalab.reconnect(store)
    assert followed.is_complete
    assert followed.status.completed == 6 and followed.status.pending == 0
    assert "finished: 6/6" in followed._repr_html_()
    again = metalab.run(exp, store)  # nothing left to run: no cluster, done on return
    assert again.is_complete and again.status.skipped == 6
    assert len(again.result()) == 6
