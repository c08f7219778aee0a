"""The same sweep on every local executor gives the same runs; Dask integration points."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import dask
import pytest
from distributed import Client, LocalCluster
from sweeps import draw_experiment, executions, sleep_experiment

import metalab
from metalab.store import create_store


def _summary(results):
    return [(r.run_id, r.status, r.metrics) for r in results]


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0"
    ) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    exp = draw_experiment()
    results = metalab.run(exp, tmp_path_factory.mktemp("ref"), executor="inline").result()
    assert len(results) == 12 and all(r.status == "completed" for r in results)
    return _summary(results)


@pytest.mark.slow
@pytest.mark.parametrize(
    "make_executor",
    [
        lambda cluster: metalab.ThreadExecutor(max_workers=2),
        lambda cluster: metalab.ProcessExecutor(max_workers=2),
        lambda cluster: metalab.DaskExecutor(cluster),
        lambda cluster: metalab.DaskExecutor(cluster, chunk_size=5),
    ],
    ids=["threads", "processes", "local-cluster", "local-cluster-chunked"],
)
def test_every_executor_gives_identical_runs(tmp_path, cluster, reference, make_executor):
    results = metalab.run(draw_experiment(), tmp_path, executor=make_executor(cluster)).result()
    assert _summary(results) == reference


@pytest.mark.slow
def test_client_as_executor_and_active_client(tmp_path, cluster, reference):
    with Client(cluster) as client:
        handle = metalab.run(draw_experiment(), tmp_path / "a", executor=client)
        assert _summary(handle.result()) == reference
        assert handle.dashboard_link == client.dashboard_link
        # with no executor given, the active client is used instead of a new cluster
        handle = metalab.run(draw_experiment(), tmp_path / "b")
        assert _summary(handle.result()) == reference
        assert handle.dashboard_link == client.dashboard_link


@pytest.mark.slow
def test_default_executor_starts_and_closes_a_local_cluster(tmp_path, reference):
    handle = metalab.run(draw_experiment(), tmp_path)
    assert _summary(handle.result()) == reference
    assert handle.dashboard_link and "127.0.0.1" in handle.dashboard_link


def test_to_delayed_with_users_scheduler(tmp_path, reference):
    tasks = metalab.to_delayed(draw_experiment(), store=tmp_path)
    assert len(tasks) == 12
    assert all(str(t.key[0]) == "metalab:draws" for t in tasks)
    (outcomes,) = (dask.compute(*tasks, scheduler="threads"),)
    assert sorted(o.state for group in outcomes for o in group) == ["completed"] * 12
    loaded = metalab.load_results(tmp_path)
    assert _summary(loaded) == reference
    assert metalab.to_delayed(draw_experiment(), store=tmp_path) == []


def test_large_sweeps_are_chunked(tmp_path):
    exp = metalab.Experiment(
        name="many",
        version="1",
        context={},
        operation=sleep_experiment(1, 0).operation,
        params=metalab.grid(i=list(range(4500)), sleep=[0]),
        seeds=metalab.seeds(base=1),
    )
    tasks = metalab.to_delayed(exp, store=tmp_path)
    assert 1000 < len(tasks) <= 2000
    firsts = sorted(t.key[2] for t in tasks)
    assert firsts[0] == 0 and firsts[1] > 1


@pytest.mark.slow
def test_operation_defined_in_main_runs_on_process_workers(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import metalab

            OFFSET = 0.25

            def helper(x):
                return x + OFFSET

            @metalab.operation
            def op(params, seeds, capture):
                capture.metric("y", helper(params["x"]))

            exp = metalab.Experiment(
                name="main_op", version="1", context={}, operation=op,
                params=metalab.grid(x=[1, 2, 3]), seeds=metalab.seeds(base=0),
            )

            if __name__ == "__main__":
                for executor in (metalab.ProcessExecutor(max_workers=2), None):
                    results = metalab.run(exp, executor=executor, resume=False).result()
                    print(sorted(r.metrics["y"] for r in results), [r.status for r in results])
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines == ["[1.25, 2.25, 3.25] ['completed', 'completed', 'completed']"] * 2


@pytest.mark.slow
def test_cancel_records_pending_runs_cancelled_and_resume_finishes(tmp_path, monkeypatch):
    log = tmp_path / "exec.log"
    monkeypatch.setenv("METALAB_TEST_EXEC_LOG", str(log))
    exp = sleep_experiment(12, 0.3)
    handle = metalab.run(exp, tmp_path / "store", executor=metalab.ThreadExecutor(max_workers=2))
    while handle.status.completed < 2:
        handle.wait(0.05)
    handle.cancel()
    results = handle.result(timeout=60)
    statuses = [r.status for r in results]
    assert len(results) == 12
    assert statuses.count("completed") >= 2
    assert set(statuses) <= {"completed", "cancelled", "interrupted"}
    assert "cancelled" in statuses
    assert handle.status.running == 0 and handle.status.pending == 0
    ran_before = len(executions(log))

    again = metalab.run(exp, tmp_path / "store", executor="inline").result()
    assert [r.status for r in again] == ["completed"] * 12
    assert len(executions(log)) - ran_before == 12 - statuses.count("completed")


@pytest.mark.slow
def test_worker_that_dies_marks_its_runs_failed(tmp_path):
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        results = metalab.run(
            metalab.Experiment(
                name="crash",
                version="1",
                context={},
                operation=_crash_op,
                params=metalab.grid(crash=[False, True]),
                seeds=metalab.seeds(base=0),
            ),
            tmp_path,
            executor=metalab.ProcessExecutor(max_workers=1),
        ).result(timeout=120)
    by_param = {r.params["crash"]: r for r in results}
    assert by_param[False].status == "completed"
    assert by_param[True].status == "failed"
    assert by_param[True].error["type"] == "WorkerLost"
    assert create_store(tmp_path).claims() == {}


@metalab.operation
def _crash_op(params, capture):
    import os

    if params["crash"]:
        os._exit(3)
    capture.metric("ok", 1)


def test_chunking_follows_dask_config(tmp_path):
    with dask.config.set({"metalab.dask.single-task-limit": 3, "metalab.dask.target-tasks": 2}):
        tasks = metalab.to_delayed(draw_experiment(), store=tmp_path)
    assert [t.key[2] for t in tasks] == [0, 6]
    outcomes = [o for group in dask.compute(*tasks, scheduler="sync") for o in group]
    assert [o.index for o in outcomes] == list(range(12))
