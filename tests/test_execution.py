"""The same sweep on every local executor gives the same runs; Dask integration points."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import dask
import pytest
from distributed import Client, LocalCluster
from sweeps import checked_result, draw_experiment, executions, sleep_experiment

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
        assert handle.dashboard_link == client.dashboard_link.replace("/status", "/metalab")
        # with no executor given, the active client is used instead of a new cluster
        handle = metalab.run(draw_experiment(), tmp_path / "b")
        assert _summary(handle.result()) == reference
        assert handle.dashboard_link == client.dashboard_link.replace("/status", "/metalab")


@pytest.mark.slow
def test_default_executor_keeps_its_local_cluster_for_the_next_sweep(tmp_path, reference):
    first = metalab.run(draw_experiment(), tmp_path / "a")
    assert _summary(first.result()) == reference
    assert first.dashboard_link and "127.0.0.1" in first.dashboard_link
    # the next sweep in this process reuses the cluster (same dashboard) instead of a new one
    second = metalab.run(draw_experiment(), tmp_path / "b")
    assert _summary(second.result()) == reference
    assert second.dashboard_link == first.dashboard_link


@pytest.mark.slow
def test_idle_timeout_zero_closes_the_local_cluster_after_the_sweep(tmp_path, reference):
    from metalab.executors.local_clusters import _local

    before = set(_local._entries)
    with dask.config.set({"metalab.dask.local-cluster-idle-timeout": 0}):
        handle = metalab.run(
            draw_experiment(), tmp_path, executor=metalab.ProcessExecutor(max_workers=1)
        )
        assert _summary(handle.result()) == reference
    assert set(_local._entries) == before  # nothing kept


@pytest.mark.slow
@pytest.mark.parametrize("configured", [None, "50ms"])
def test_local_cluster_checks_its_event_loops_less_often_unless_configured(tmp_path, configured):
    """metalab's own local cluster ticks every 200 ms (Dask: 20 ms) and samples system use
    every second (Dask: 0.5 s), in its scheduler, nannies and workers, restarted ones too; an
    interval the user configured is kept."""
    from metalab.executors.local_clusters import _local

    _local.close_all()  # a cluster kept by an earlier test would be reused as it is
    settings = {"metalab.dask.local-cluster-idle-timeout": 60}
    if configured:
        settings["distributed.admin.tick.interval"] = configured
    with dask.config.set(settings):
        handle = metalab.run(draw_experiment(), tmp_path, executor=metalab.ProcessExecutor(1))
        checked_result(handle)
    try:
        (entry,) = _local._entries.values()
        cluster, client = entry["cluster"], entry["client"]
        tick = 50 if configured else 200

        def intervals(server):
            callbacks = server.periodic_callbacks
            return callbacks["tick"].callback_time, callbacks["monitor"].callback_time

        assert intervals(cluster.scheduler) == (tick, 1000)
        assert [intervals(nanny) for nanny in cluster.workers.values()] == [(tick, 1000)]
        for _ in range(2):  # a worker process the nanny starts again has them too
            workers = client.run(lambda dask_worker: intervals(dask_worker))
            assert list(workers.values()) == [(tick, 1000)]
            client.restart()
        # the rest of the process keeps Dask's settings
        assert dask.config.get("distributed.admin.tick.interval") == "20ms"
    finally:
        _local.close_all()


@pytest.mark.slow
def test_idle_timeout_set_only_around_run_applies_to_that_sweep(tmp_path, reference):
    """The sweep ends after the `dask.config.set` block around `metalab.run()` has: the
    timeout in force when it started is the one its cluster is kept for."""
    from metalab.executors.local_clusters import _local

    before = set(_local._entries)
    with dask.config.set({"metalab.dask.local-cluster-idle-timeout": "0s"}):
        handle = metalab.run(
            draw_experiment(), tmp_path, executor=metalab.ProcessExecutor(max_workers=1)
        )
    assert _summary(handle.result()) == reference
    assert set(_local._entries) == before  # closed at the sweep's end, nothing kept


@pytest.mark.slow
def test_kept_workers_are_restarted_when_the_operation_module_changes(tmp_path, monkeypatch):
    """Editing the module of an operation between two sweeps in one process (a notebook
    session) runs the new code on the kept cluster, never a stale copy."""
    package = tmp_path / "code"
    package.mkdir()
    module = package / "edited_op.py"
    source = textwrap.dedent(
        """
        import metalab

        @metalab.operation
        def op(params, capture):
            capture.metric("value", params["x"] * FACTOR)

        FACTOR = {factor}
        """
    )
    module.write_text(source.format(factor=1))
    monkeypatch.syspath_prepend(str(package))
    monkeypatch.setenv("PYTHONPATH", str(package))  # worker processes import it too
    import importlib

    def experiment(version):
        mod = importlib.import_module("edited_op")
        return metalab.Experiment(
            name="edited",
            version=version,
            context={},
            operation=mod.op,
            params=metalab.grid(x=[1, 2]),
            seeds=metalab.seeds(base=0),
        )

    executor = metalab.ProcessExecutor(max_workers=2)
    first = metalab.run(experiment("1"), tmp_path / "s", executor=executor).result()
    assert sorted(r.metrics["value"] for r in first) == [1, 2]

    module.write_text(source.format(factor=10) + "\n# edited\n")
    sys.modules.pop("edited_op")  # what importlib.reload does for the driver
    second = metalab.run(experiment("2"), tmp_path / "s", executor=executor).result()
    assert sorted(r.metrics["value"] for r in second) == [10, 20]


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
def test_sweeps_each_in_a_dask_config_block_of_metalab_settings(tmp_path):
    """A script whose first sweep runs inside `dask.config.set({"metalab....": ...})` ran it,
    then failed the next such sweep: the block's end had taken metalab's defaults with it."""
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import dask
            import metalab

            @metalab.operation
            def op(params, capture):
                capture.metric("y", params["x"] * 2)

            exp = metalab.Experiment(
                name="configured", version="1", context={}, operation=op,
                params=metalab.grid(x=[1, 2, 3]), seeds=metalab.seeds(base=0),
            )

            if __name__ == "__main__":
                for store in ("a", "b"):
                    with dask.config.set({"metalab.dask.local-cluster-idle-timeout": 0}):
                        results = metalab.run(exp, store).result()
                    print(sorted(r.metrics["y"] for r in results))
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == ["[2, 4, 6]"] * 2


@pytest.mark.slow
def test_two_kept_clusters_close_quietly_and_leave_the_log_levels_as_found(tmp_path):
    """Two local clusters of different options in one script: the second's close, at exit,
    printed distributed's INFO lines (the first's close had put back the level it found)."""
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import logging

            import metalab
            from metalab.executors.local_clusters import _local

            @metalab.operation
            def op(params, capture):
                capture.metric("y", params["x"])

            exp = metalab.Experiment(
                name="two_clusters", version="1", context={}, operation=op,
                params=metalab.grid(x=[1, 2]), seeds=metalab.seeds(base=0),
            )

            def levels():
                return [h.level for h in logging.getLogger("distributed").handlers]

            if __name__ == "__main__":
                import distributed  # its logging set up, as a script that uses it has

                before = levels()
                metalab.run(exp, "a").result()
                metalab.run(exp, "b", executor=metalab.DaskExecutor(n_workers=1)).result()
                assert len(_local._entries) == 2
                _local.close_all()
                print("levels kept:", levels() == before)
                metalab.run(exp, "c", resume=False).result()  # closed at exit
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "levels kept: True"
    assert " - INFO - " not in done.stderr, done.stderr


@pytest.mark.slow
def test_cancel_records_pending_runs_cancelled_and_resume_finishes(tmp_path, monkeypatch):
    log = tmp_path / "exec.log"
    monkeypatch.setenv("METALAB_TEST_EXEC_LOG", str(log))
    exp = sleep_experiment(12, 0.3)
    handle = metalab.run(exp, tmp_path / "store", executor=metalab.ThreadExecutor(max_workers=2))
    while handle.status.completed < 2:
        handle.wait(0.05)
    handle.cancel()
    results = checked_result(handle, timeout=60)
    statuses = [r.status for r in results]
    assert len(results) == 12
    assert statuses.count("completed") >= 2
    assert set(statuses) <= {"completed", "cancelled", "interrupted"}
    assert "cancelled" in statuses
    assert handle.status.running == 0 and handle.status.pending == 0
    ran_before = len(executions(log))

    again = checked_result(metalab.run(exp, tmp_path / "store", executor="inline"))
    assert [r.status for r in again] == ["completed"] * 12
    assert len(executions(log)) - ran_before == 12 - statuses.count("completed")


@pytest.mark.slow
def test_worker_that_dies_marks_its_runs_failed(tmp_path):
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        results = checked_result(
            metalab.run(
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
            ),
            timeout=120,
        )
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


@metalab.operation
def half_second(params, capture):
    import time

    time.sleep(0.2)
    capture.metric("v", params["x"])


def test_cancelling_one_sweep_leaves_another_on_the_same_executor(tmp_path):
    def exp(name):
        return metalab.Experiment(
            name=name,
            version="1",
            context={},
            operation=half_second,
            params=metalab.grid(x=list(range(12))),
            seeds=metalab.seeds(base=0),
        )

    shared = metalab.ThreadExecutor(max_workers=2, chunk_size=1)
    a = metalab.run(exp("a"), tmp_path / "a", executor=shared)
    b = metalab.run(exp("b"), tmp_path / "b", executor=shared)
    import time

    time.sleep(0.6)
    a.cancel()
    results_a = a.result(timeout=120)
    results_b = b.result(timeout=120)
    assert "cancelled" in {r.status for r in results_a}
    assert [r.status for r in results_b] == ["completed"] * 12


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: metalab.ThreadExecutor(max_workers=True), "max_workers .* got True"),
        (lambda: metalab.ProcessExecutor(max_workers="2"), "max_workers .* got '2'"),
        (lambda: metalab.DaskExecutor(n_workers=0), "n_workers must be a positive integer"),
        (lambda: metalab.DaskExecutor(processes="no"), "processes must be True or False, got 'no'"),
        (lambda: metalab.DaskExecutor(dashboard_address=8787), "dashboard_address .* got 8787"),
        (lambda: metalab.DaskExecutor("tcp://127.0.0.1:8786"), "pass distributed.Client"),
        (lambda: metalab.DaskExecutor(chunk_size=2.5), "chunk_size .* got 2.5"),
    ],
)
def test_executor_arguments_are_checked_when_it_is_made(make, match):
    with pytest.raises(metalab.ValidationError, match=match):
        make()


class _SlowToClose(metalab.ThreadExecutor):
    """Threads whose close takes a while (a cluster shutting down), or fails."""

    def __init__(self, fail: bool = False):
        super().__init__(max_workers=2)
        self.fail = fail
        self.closed_at: float | None = None

    def close(self, sweep):
        import time

        super().close(sweep)
        time.sleep(1.0)
        self.closed_at = time.monotonic()
        if self.fail:
            raise RuntimeError("the cluster would not shut down")


def test_result_reads_the_records_while_the_executor_closes(tmp_path, monkeypatch):
    import time

    from metalab.handle import RunHandle

    collected: list[float] = []
    real = RunHandle._collect

    def collect(self):
        collected.append(time.monotonic())
        return real(self)

    monkeypatch.setattr(RunHandle, "_collect", collect)
    executor = _SlowToClose()
    results = metalab.run(draw_experiment(), tmp_path, executor=executor).result()
    assert len(results) == 12 and {run.status for run in results} == {"completed"}
    assert executor.closed_at is not None and collected[0] < executor.closed_at


def test_an_executor_that_fails_to_close_still_fails_result(tmp_path):
    handle = metalab.run(draw_experiment(), tmp_path, executor=_SlowToClose(fail=True))
    with pytest.raises(metalab.ExecutorError, match="would not shut down"):
        handle.result()


def test_settings_set_through_dask_config_before_metalab_first_reads_them(tmp_path):
    """`dask.config.set({"metalab...": ...})` as a script's first use of metalab's settings:
    once the block ends, the next sweep still finds metalab's defaults."""
    script = textwrap.dedent(
        f"""
        import dask, metalab
        from sweeps import draw_experiment
        with dask.config.set({{"metalab.dask.local-cluster-idle-timeout": 0}}):
            metalab.run(draw_experiment(), {str(tmp_path)!r}, executor="threads").result()
        print(len(metalab.run(draw_experiment("again"), {str(tmp_path)!r},
                              executor="threads").result()))
        """
    )
    here = str(__import__("pathlib").Path(__file__).parent)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=here, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "12"
