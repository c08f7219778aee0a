"""Edge cases of the run lifecycle: attempts, logs across attempts, waiting on other drivers,
codecs on worker processes, unpicklable experiments, column collisions."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from sweeps import checked_result, indexed_experiment

import metalab
from metalab import claims
from metalab.store import create_store


@metalab.operation
def fail_first(params, runtime, capture):
    capture.log(f"attempt {runtime.attempt}")
    capture.metric("attempt", runtime.attempt)
    if runtime.attempt == 1:
        raise ValueError("first attempt fails")


def _exp(op, n=2, name="rob"):
    return indexed_experiment(op, n, name)


def test_attempts_count_up_and_logs_keep_every_attempt(tmp_path):
    first = checked_result(metalab.run(_exp(fail_first), tmp_path, executor="inline"))
    assert [(r.status, r.record["attempt"]) for r in first] == [("failed", 1)] * 2
    second = checked_result(metalab.run(_exp(fail_first), tmp_path, executor="inline"))
    assert [(r.status, r.record["attempt"], r.metrics["attempt"]) for r in second] == [
        ("completed", 2, 2)
    ] * 2
    log = second[0].log
    assert "attempt 1" in log and "attempt 2" in log
    assert log.index("attempt 1") < log.index("attempt 2")


@metalab.operation
def quick(params, capture):
    capture.metric("value", params["i"] * 10)


@metalab.operation(name="quick")
def broken(params, capture):
    raise RuntimeError("old failure")


def test_waiting_driver_takes_the_new_record_not_an_old_failure(tmp_path):
    checked_result(metalab.run(_exp(broken, n=3, name="wait"), tmp_path, executor="inline"))
    store = create_store(tmp_path)
    exp = _exp(quick, n=3, name="wait")
    held = exp.run_id(0)
    assert store.claim(held, claims.owner("another-driver"))

    handle = metalab.run(exp, tmp_path, executor=metalab.ThreadExecutor(max_workers=2))
    deadline = time.monotonic() + 60
    while handle.status.completed < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert not handle.is_complete  # run 0 is held by the other driver: wait for it

    finished = dict(store.get_record(held), status="completed", error=None)
    finished["metrics"] = {"value": -1}
    store.put_record(finished)
    store.release(held)
    results = checked_result(handle, timeout=60)
    assert [r.status for r in results] == ["completed"] * 3
    assert results[0].metrics == {"value": -1}


def test_waiting_driver_reruns_a_run_whose_owner_died_without_record(tmp_path):
    exp = _exp(quick, n=2, name="orphan")
    store = create_store(tmp_path)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    owner = {"host": claims.owner()["host"], "pid": int(dead.stdout), "start": 1, "session": "x"}
    path = store._layout.claim_path(exp.run_id(1))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        import json

        json.dump(owner, fh)
    results = metalab.run(exp, tmp_path, executor="inline").result()
    assert [r.status for r in results] == ["completed", "completed"]
    assert store.claims() == {}


@metalab.operation
def interrupted_by_cancel(params, runtime, capture):
    capture.metric("started", 1)
    while not runtime.cancelled:
        time.sleep(0.01)
    capture.metric("saw_cancel", 1)
    runtime.check_cancelled()


def test_cancel_keeps_interrupted_records_with_their_partial_metrics(tmp_path):
    exp = _exp(interrupted_by_cancel, n=6, name="cancelme")
    handle = metalab.run(exp, tmp_path, executor=metalab.ThreadExecutor(max_workers=2))
    deadline = time.monotonic() + 60
    while handle.status.running < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    handle.cancel()
    results = checked_result(handle, timeout=60)
    by_status = {}
    for r in results:
        by_status.setdefault(r.status, []).append(r)
    assert len(by_status["interrupted"]) == 2
    for r in by_status["interrupted"]:
        assert r.metrics == {"started": 1, "saw_cancel": 1}
        assert r.error["type"].endswith("RunCancelled")
    assert len(by_status["cancelled"]) == 4
    assert handle.status.running == 0 and handle.status.pending == 0
    assert handle.status.cancelled == 6


@pytest.mark.slow
def test_codec_registered_in_the_script_reaches_process_workers(tmp_path):
    script = tmp_path / "codec_script.py"
    script.write_text(
        textwrap.dedent(
            """
            import metalab

            class Point:
                def __init__(self, x, y):
                    self.x, self.y = x, y

            metalab.register_codec(metalab.Codec(
                kind="point", media_type="text/x-point", extension=".pt",
                encode=lambda p: f"{p.x},{p.y}".encode(),
                decode=lambda b: tuple(int(v) for v in b.decode().split(",")),
                accepts=lambda v: isinstance(v, Point),
            ))

            @metalab.operation
            def op(params, capture):
                capture.artifact("explicit", Point(params["x"], 1), kind="point")
                capture.artifact("inferred", Point(params["x"], 2))

            exp = metalab.Experiment(
                name="codecs", version="1", context={}, operation=op,
                params=metalab.grid(x=[1, 2]), seeds=metalab.seeds(base=0),
            )
            results = metalab.run(exp, executor=metalab.ProcessExecutor(max_workers=2)).result()
            for run in results:
                print(run.status, run.artifact("explicit"), run.artifact("inferred"))
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["completed (1, 1) (1, 2)", "completed (2, 1) (2, 2)"]


LOCK = threading.Lock()


@metalab.operation
def uses_a_lock(params, capture):
    with LOCK:
        capture.metric("x", 1)


def test_unpicklable_experiment_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(uses_a_lock, "__module__", "__main__")
    monkeypatch.setattr(uses_a_lock.func, "__module__", "__main__")
    monkeypatch.setitem(sys.modules["__main__"].__dict__, "LOCK", LOCK)
    with pytest.raises(metalab.ValidationError, match=r"cannot be serialized.*lock"):
        metalab.run(_exp(uses_a_lock, name="locky"), tmp_path, executor="inline")
    assert not list((tmp_path / "runs").glob("*")) if (tmp_path / "runs").exists() else True


@metalab.operation
def clashing_metric(params, capture):
    capture.metric("status", 0.5)
    capture.metric("duration", 3)


def test_metric_named_like_a_record_column_does_not_hide_it(tmp_path):
    df = metalab.run(_exp(clashing_metric), tmp_path, executor="inline").result().to_dataframe()
    assert list(df["status"]) == ["completed", "completed"]
    assert list(df["metric_status"]) == [0.5, 0.5]
    assert list(df["metric_duration"]) == [3, 3]


def test_counts_after_the_executor_failed_are_the_store_s(tmp_path):
    """A sweep whose executor failed after its tasks had recorded runs it never reported
    (a cluster lost as tasks finished) counted none of them: the handle said 0 completed
    where the store held 4."""
    from metalab.errors import ExecutorError
    from metalab.execute import run_indices
    from metalab.executors.inline import InlineExecutor

    class RecordsThenFails(InlineExecutor):
        def execute(self, sweep, indices, sink):
            run_indices(sweep.ref, list(indices)[:4])  # recorded, never reported
            raise ExecutorError("the scheduler went away")

    exp = indexed_experiment(_count_op, 6, "lost_reports")
    handle = metalab.run(exp, tmp_path / "store", executor=RecordsThenFails())
    with pytest.raises(ExecutorError, match="the scheduler went away"):
        handle.result()
    status = handle.status
    assert (status.completed, status.pending, status.total) == (4, 2, 6)
    assert len(metalab.load_results(tmp_path / "store")) == 4


@metalab.operation
def _count_op(params, capture):
    capture.metric("i", params["i"])
