"""Ctrl-C during a sweep: one line on stderr (what is recorded, how to resume), exit status
130, a consistent store, and a resume that finishes the sweep."""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sweeps import executions

import metalab
from metalab.store import create_store

TESTS = Path(__file__).parent

SCRIPT = textwrap.dedent(
    """
    import sys

    sys.path.insert(0, {tests!r})
    import metalab
    from sweeps import sleep_experiment

    if __name__ == "__main__":
        executor = None if sys.argv[2] == "default" else sys.argv[2]
        exp = sleep_experiment(40, 0.3, name="ctrlc")
        handle = metalab.run(exp, sys.argv[1], executor=executor)
        results = handle.result()
        print(f"finished {{len(results)}} {{results.summary()['by_status']}}")
    """
)


def _start(tmp_path: Path, executor: str) -> subprocess.Popen:
    script = tmp_path / "sweep.py"
    script.write_text(SCRIPT.format(tests=str(TESTS)))
    env = dict(os.environ, METALAB_TEST_EXEC_LOG=str(tmp_path / "exec.log"))
    # its own process group, as a terminal's foreground job: Ctrl-C reaches every process
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "store"), executor],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _ctrl_c_after(process: subprocess.Popen, log: Path, started: int) -> tuple[str, str]:
    deadline = time.monotonic() + 120
    while len(executions(log)) < started:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the sweep did not start"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    return process.communicate(timeout=120)


def _check_interrupted(tmp_path: Path, process: subprocess.Popen, out: str, err: str) -> None:
    assert process.returncode == 130, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("metalab: ctrlc:1 interrupted: ") and "run(s) recorded" in line
    assert "cancelled" in line and "again to resume" in line
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and out == ""
    store = create_store(tmp_path / "store")
    assert store.claims() == {}  # no run left claimed
    results = metalab.load_results(tmp_path / "store")
    assert len({r.run_id for r in results}) == len(results) <= 40
    completed = len(results.successful)
    assert 1 <= completed < 40
    assert f"({completed} completed, 0 failed)" in line
    assert not list((tmp_path / "store").rglob("*.tmp"))


def _resume(tmp_path: Path, executor: str) -> None:
    before = {r.run_id for r in metalab.load_results(tmp_path / "store").successful}
    process = _start(tmp_path, executor)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "finished 40 {'completed': 40}" in out
    runs = executions(tmp_path / "exec.log")
    assert all(runs.count(run_id) == 1 for run_id in before)  # done runs were skipped
    assert len(metalab.load_results(tmp_path / "store").successful) == 40


@pytest.mark.slow
def test_ctrl_c_on_the_default_executor(tmp_path):
    process = _start(tmp_path, "default")
    out, err = _ctrl_c_after(process, tmp_path / "exec.log", started=6)
    _check_interrupted(tmp_path, process, out, err)
    assert " cancelled" in err and "not run" not in err  # the rest was recorded cancelled
    statuses = metalab.load_results(tmp_path / "store").summary()["by_status"]
    assert sum(statuses.values()) == 40 and statuses["cancelled"] >= 1
    _resume(tmp_path, "default")


@pytest.mark.slow
def test_ctrl_c_on_the_inline_executor(tmp_path):
    process = _start(tmp_path, "inline")
    out, err = _ctrl_c_after(process, tmp_path / "exec.log", started=4)
    _check_interrupted(tmp_path, process, out, err)
    # the run Ctrl-C stopped is recorded interrupted, and the line counts it so
    statuses = metalab.load_results(tmp_path / "store").summary()["by_status"]
    assert statuses.get("interrupted") == 1, statuses
    found = re.search(r"(\d+) run\(s\) recorded .*?, (\d+) cancelled, (\d+) not run", err)
    assert found, err
    recorded, cancelled, not_run = map(int, found.groups())
    assert cancelled == statuses["interrupted"] + statuses.get("cancelled", 0)
    assert recorded + cancelled == sum(statuses.values()) and recorded + cancelled + not_run == 40
    _resume(tmp_path, "inline")


def test_sweep_interrupted_is_a_keyboard_interrupt_that_exits_130():
    error = metalab.SweepInterrupted("stopped")
    assert isinstance(error, KeyboardInterrupt) and isinstance(error, SystemExit)
    assert error.code == 130 and str(error) == "stopped"
    process = subprocess.run(
        [sys.executable, "-c", "import metalab; raise metalab.SweepInterrupted('x')"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 130 and process.stderr == ""


STARTING = textwrap.dedent(
    """
    import sys
    import time

    sys.path.insert(0, {tests!r})
    import metalab
    from sweeps import sleep_experiment


    class SlowStart(metalab.InlineExecutor):
        # an executor whose start takes a while, as a cluster's does
        def open(self, plan, sink):
            open(sys.argv[2], "w").close()
            time.sleep(120)


    if __name__ == "__main__":
        exp = sleep_experiment(5, 0.0, name="ctrlc")
        metalab.run(exp, sys.argv[1], executor=SlowStart()).result()
    """
)


def _interrupt_while_starting(tmp_path, source: str, exact: bool = True) -> str:
    """Run `source` as a script, Ctrl-C it once it says it is starting, and check that it
    ends with status 130 and (when `exact`) the one line saying no run was started; return
    what it wrote to stderr."""
    script, started = tmp_path / "sweep.py", tmp_path / "started"
    script.write_text(source.format(tests=str(TESTS)))
    process = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "store"), str(started)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not started.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the sweep did not start"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, (out, err)
    if exact:
        assert err.strip().splitlines() == [
            "metalab: ctrlc:1 interrupted while starting: no run was started. Run the same "
            "metalab.run(...) again to start it."
        ]
    return err


@pytest.mark.slow
def test_ctrl_c_while_the_executor_starts(tmp_path):
    _interrupt_while_starting(tmp_path, STARTING)
    assert len(metalab.load_results(tmp_path / "store")) == 0


def _local_cluster_script(patch: str) -> str:
    """A script that runs a sweep on the default local cluster, `patch` (code that slows the
    cluster's start) applied first; a template for `_interrupt_while_starting`."""
    head = """
        import asyncio
        import sys

        sys.path.insert(0, {tests!r})
        import distributed.nanny
        import metalab
        from sweeps import sleep_experiment
        """
    main = """
        if __name__ == "__main__":
            exp = sleep_experiment(5, 0.0, name="ctrlc")
            metalab.run(exp, sys.argv[1]).result()
        """
    return "".join(textwrap.dedent(part) for part in (head, patch, main))


CLUSTER_STARTING = _local_cluster_script(
    """
    async def slow_start(self):
        # a worker that takes its time to come up, as on a loaded machine
        open(sys.argv[2], "w").close()
        await asyncio.sleep(120)


    distributed.nanny.Nanny.start_unsafe = slow_start
    """
)


@pytest.mark.slow
def test_ctrl_c_while_the_local_cluster_starts_its_workers(tmp_path):
    """Workers still starting when Ctrl-C comes are stopped by metalab: the script ends with
    its one line, not with distributed's clean-up tripping over them at exit."""
    _interrupt_while_starting(tmp_path, CLUSTER_STARTING)


CLUSTER_SLOW_TO_START = _local_cluster_script(
    """
    start = distributed.nanny.WorkerProcess.start


    async def slow_start(self):
        # a worker process that comes up half a second late, as on a loaded machine
        open(sys.argv[2], "w").close()
        await asyncio.sleep(0.5)
        status = await start(self)
        with open(sys.argv[2] + "-came-up", "a") as fh:
            fh.write(f"{{status}}\\n")
        return status


    distributed.nanny.WorkerProcess.start = slow_start
    """
)


@pytest.mark.slow
def test_ctrl_c_while_the_local_cluster_starts_lets_it_start_then_closes_it(tmp_path):
    """A cluster whose start Ctrl-C cuts short cannot be closed while its workers start,
    and what went on starting failed as the script exited ("Task exception was never
    retrieved ... Nanny failed to start" after the script's line). metalab lets the start
    finish, closes the cluster whole, and the script ends with its one line."""
    _interrupt_while_starting(tmp_path, CLUSTER_SLOW_TO_START)
    came_up = (tmp_path / "started-came-up").read_text().split()
    assert came_up == ["Status.running", "Status.running"]
    assert len(metalab.load_results(tmp_path / "store")) == 0


WORKERS_STARTING = textwrap.dedent(
    """
    import os
    import sys

    sys.path.insert(0, {tests!r})
    import metalab
    from sweeps import sleep_experiment

    # run first thing in every worker process: one that takes its time to start, as one
    # importing distributed on a loaded machine
    SLOW_WORKER = (
        "import os, sys, time\\n"
        "if '--multiprocessing-fork' in sys.argv:\\n"
        "    open(os.environ['SLOW_WORKER_STARTED'], 'w').close()\\n"
        "    time.sleep(120)\\n"
    )

    if __name__ == "__main__":
        site = os.path.join(os.path.dirname(sys.argv[2]), "site")
        os.makedirs(site, exist_ok=True)
        with open(os.path.join(site, "sitecustomize.py"), "w") as fh:
            fh.write(SLOW_WORKER)
        os.environ["PYTHONPATH"] = os.pathsep.join([site, os.environ.get("PYTHONPATH", "")])
        os.environ["SLOW_WORKER_STARTED"] = sys.argv[2]
        exp = sleep_experiment(5, 0.0, name="ctrlc")
        metalab.run(exp, sys.argv[1], executor=metalab.ProcessExecutor(2)).result()
    """
)


@pytest.mark.slow
def test_ctrl_c_while_worker_processes_start_prints_no_traceback_of_theirs(tmp_path):
    """A Ctrl-C reaching worker processes that are still starting (importing distributed,
    before any plugin of theirs runs) waits in them until they ignore it: none of them
    prints a KeyboardInterrupt traceback (or, interrupted in its site customization, a
    fatal error) after the script's one line.

    The cluster's start, cut short, goes on in its event loop's thread while the script
    exits: now and then distributed or multiprocessing's resource tracker still has
    something to say about it then (a nanny that failed to start, a queue's semaphore),
    which is not what this test is about."""
    err = _interrupt_while_starting(tmp_path, WORKERS_STARTING, exact=False)
    first = err.strip().splitlines()[0]
    assert first.startswith("metalab: ctrlc:1 interrupted while starting: no run was started")
    assert "KeyboardInterrupt" not in err and "Fatal Python error" not in err, err


def _ignores_interrupt() -> bool:
    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_local_worker_processes_ignore_ctrl_c_from_their_start_and_after_a_restart():
    from metalab.executors import local_clusters

    options = {
        "n_workers": 2,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": "127.0.0.1:0",
    }
    client, leases = local_clusters._local.acquire(options)
    try:
        assert list(client.run(_ignores_interrupt).values()) == [True, True]
        client.restart(timeout=60)
        assert list(client.run(_ignores_interrupt).values()) == [True, True]
    finally:
        for lease in leases:
            lease.close()
        local_clusters._local.close_all()


USER_PRELOAD = """
import os
import click


@click.command()
@click.argument("name")
def dask_setup(nanny, name):
    with open(os.environ["METALAB_TEST_NANNY_PRELOAD"], "a") as fh:
        fh.write(name + "\\n")
"""


def test_a_user_s_nanny_preloads_still_run_beside_metalab_s(tmp_path, monkeypatch):
    """metalab adds its nanny preload to those of the user's Dask settings, with their
    arguments one list per preload, rather than replacing them."""
    import dask

    from metalab.executors import local_clusters

    preload = tmp_path / "user_preload.py"
    preload.write_text(USER_PRELOAD)
    ran = tmp_path / "ran"
    monkeypatch.setenv("METALAB_TEST_NANNY_PRELOAD", str(ran))
    options = {
        "n_workers": 2,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": "127.0.0.1:0",
    }
    local_clusters._local.close_all()  # a cluster kept from an earlier test would be reused
    with dask.config.set(
        {
            "distributed.nanny.preload": [str(preload)],
            "distributed.nanny.preload-argv": [["from-the-settings"]],
        }
    ):
        client, leases = local_clusters._local.acquire(options)
    try:
        assert ran.read_text().splitlines() == ["from-the-settings", "from-the-settings"]
        assert list(client.run(_ignores_interrupt).values()) == [True, True]
    finally:
        for lease in leases:
            lease.close()
        local_clusters._local.close_all()


def test_a_local_cluster_that_fails_to_start_raises_its_error_in_the_caller(monkeypatch):
    """The cluster starts in a thread of its own (so that Ctrl-C can let it finish): what
    fails there is raised where the sweep was started, and nothing is kept."""
    from metalab.executors import local_clusters

    def fail(self, distributed, key, options):
        raise OSError("no port free for the scheduler")

    pool = local_clusters._LocalClusters()
    monkeypatch.setattr(local_clusters._LocalClusters, "_start_cluster", fail)
    with pytest.raises(OSError, match="no port free for the scheduler"):
        pool.acquire({"n_workers": 1, "processes": False})
    assert pool._entries == {}


def test_in_a_notebook_ctrl_c_shows_its_line_without_metalab_s_frames(monkeypatch):
    # IPython (Jupyter's kernel) renders an exception with `_render_traceback_` as the lines
    # it gives: the interrupt's line, not a traceback through the handle's waiting
    InteractiveShell = pytest.importorskip("IPython.core.interactiveshell").InteractiveShell
    from metalab import interrupts

    monkeypatch.setattr(interrupts, "_interactive", lambda: True)
    line = "metalab: nb:1 interrupted: 3 run(s) recorded (3 completed, 0 failed), 5 cancelled."
    with pytest.raises(KeyboardInterrupt) as raised:
        interrupts.stop_after_interrupt(line)
    assert not isinstance(raised.value, SystemExit) and str(raised.value) == line
    shell = InteractiveShell.instance()
    shell.user_ns["stop"] = lambda: interrupts.stop_after_interrupt(line)
    try:
        with contextlib.redirect_stdout(io.StringIO()) as out:
            shell.run_cell("stop()")
    finally:
        InteractiveShell.clear_instance()
    assert out.getvalue().strip() == f"KeyboardInterrupt: {line}"
