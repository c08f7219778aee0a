"""Every run sees the driver's working directory as of its `metalab.run()` call, and a
`FilePath`/`DirPath` opens exactly the file that was fingerprinted."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import metalab
from metalab import working_directory
from metalab.context import resolved_context

SCRIPT = textwrap.dedent(
    """
    import os
    import sys

    import metalab


    @metalab.operation
    def read_both(context, params, capture):
        with open(context["data"]) as fh:           # a relative FilePath
            capture.metric("via_path", int(fh.read()))
        with open("data.csv") as fh:                 # a plain relative open()
            capture.metric("via_open", int(fh.read()))
        with open(os.path.join(context["folder"], "n.txt")) as fh:   # a relative DirPath
            capture.metric("via_dir", int(fh.read()))


    def executors():
        yield "default", lambda: None
        yield "processes", lambda: metalab.ProcessExecutor(max_workers=2)
        yield "threads", lambda: metalab.ThreadExecutor(max_workers=2)
        yield "inline", lambda: "inline"


    if __name__ == "__main__":
        base = os.getcwd()
        for name, make in executors():
            for directory in ("A", "B"):
                os.chdir(os.path.join(base, directory))
                exp = metalab.Experiment(
                    name=f"wd_{name}", version="1",
                    context={"data": metalab.FilePath("data.csv"),
                             "folder": metalab.DirPath("folder")},
                    operation=read_both,
                    params=metalab.grid(i=list(range(6))),
                    seeds=metalab.seeds(base=0),
                )
                results = metalab.run(exp, executor=make()).result()
                seen = sorted({(r.metrics["via_path"], r.metrics["via_open"],
                                r.metrics["via_dir"]) for r in results})
                manifest = results.store.manifests(exp.experiment_id)[-1]
                print(name, directory, seen, manifest["working_directory"] == os.getcwd())
    """
)


def _project(tmp_path):
    for name, value in (("A", 1), ("B", 2)):
        directory = tmp_path / name
        (directory / "folder").mkdir(parents=True)
        (directory / "data.csv").write_text(str(value))
        (directory / "folder" / "n.txt").write_text(str(value * 10))


@pytest.mark.slow
def test_a_script_that_changes_directory_between_sweeps_reads_each_directory(tmp_path):
    _project(tmp_path)
    script = tmp_path / "sweeps.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=280
    )
    assert done.returncode == 0, done.stderr
    expected = [
        f"{name} {directory} [({value}, {value}, {value * 10})] True"
        for name in ("default", "processes", "threads", "inline")
        for directory, value in (("A", 1), ("B", 2))
    ]
    assert done.stdout.strip().splitlines() == expected


CONCURRENT = textwrap.dedent(
    """
    import os
    import time

    import metalab


    @metalab.operation
    def slow_read(params, capture):
        with open("data.csv") as fh:
            value = int(fh.read())
        time.sleep(0.05)
        with open("data.csv") as fh:            # the same directory all through the run
            capture.metric("value", value * 10 + int(fh.read()))


    if __name__ == "__main__":
        base = os.getcwd()
        # one worker process of two threads: tasks of both sweeps share its one directory
        executor = metalab.DaskExecutor(n_workers=1, threads_per_worker=2)
        handles = []
        for directory in ("A", "B"):
            os.chdir(os.path.join(base, directory))
            exp = metalab.Experiment(
                name="concurrent", version="1", context={}, operation=slow_read,
                params=metalab.grid(i=list(range(16))), seeds=metalab.seeds(base=0),
            )
            handles.append(metalab.run(exp, executor=executor, chunk_size=1))
        for directory, handle in zip(("A", "B"), handles):
            print(directory, sorted({r.metrics["value"] for r in handle.result()}))
    """
)


@pytest.mark.slow
def test_concurrent_sweeps_from_two_directories_share_worker_processes(tmp_path):
    _project(tmp_path)
    script = tmp_path / "two_sweeps.py"
    script.write_text(CONCURRENT)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=200
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == ["A [11]", "B [22]"]


def test_resolved_context_names_the_fingerprinted_files(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "data.csv").write_text("1")
    monkeypatch.chdir(tmp_path / "a")
    context = metalab.FrozenContext({"data": metalab.FilePath("data.csv"), "n": 1})
    resolved = resolved_context(context)
    assert os.fspath(resolved["data"]) == str(tmp_path / "a" / "data.csv")
    assert str(resolved["data"]) == str(tmp_path / "a" / "data.csv")
    assert resolved["data"].path == "data.csv"
    assert os.fspath(context["data"]) == "data.csv"  # the user's context is left as written


@pytest.mark.slow
def test_a_driver_that_moves_mid_sweep_leaves_file_paths_on_the_fingerprinted_file(
    tmp_path, monkeypatch
):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "data.csv").write_text(name)
    monkeypatch.chdir(tmp_path / "a")
    exp = metalab.Experiment(
        name="moving_driver",
        version="1",
        context={"data": metalab.FilePath("data.csv")},
        operation=_read_later,
        params=metalab.grid(i=list(range(4))),
        seeds=metalab.seeds(base=0),
    )
    handle = metalab.run(exp, tmp_path / "store", executor=metalab.ThreadExecutor(max_workers=2))
    os.chdir(tmp_path / "b")  # runs in this process: they share its current directory
    results = handle.result(timeout=60)
    assert [r.status for r in results] == ["completed"] * 4
    assert {r.data("text") for r in results} == {"a"}


@pytest.mark.slow
def test_one_experiment_run_from_two_directories_at_once_keeps_each_sweeps_files(
    tmp_path, monkeypatch
):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "data.csv").write_text(name)
    monkeypatch.chdir(tmp_path / "a")
    exp = metalab.Experiment(
        name="one_object",
        version="1",
        context={"data": metalab.FilePath("data.csv")},
        operation=_read_later,
        params=metalab.grid(i=list(range(4))),
        seeds=metalab.seeds(base=0),
    )
    executor = metalab.ThreadExecutor(max_workers=2)
    first = metalab.run(exp, tmp_path / "store_a", executor=executor)
    ids_a = exp.run_ids()
    os.chdir(tmp_path / "b")
    second = metalab.run(exp, tmp_path / "store_b", executor=executor)  # prepared again, in b
    a, b = first.result(timeout=60), second.result(timeout=60)
    assert [r.run_id for r in a] == ids_a != [r.run_id for r in b]
    assert {r.data("text") for r in a} == {"a"}
    assert {r.data("text") for r in b} == {"b"}


def _read_later(context, capture):
    time.sleep(0.3)
    with open(context["data"]) as fh:
        capture.data("text", fh.read())


# ---------------------------------------------------------------- the process directory
def test_tasks_of_two_directories_take_turns_in_one_process(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    directory = working_directory.ProcessDirectory()
    seen: list[tuple[str, str]] = []
    errors: list[BaseException] = []
    start = os.getcwd()

    def task(path, label):
        try:
            with directory.holding(str(path)):
                for _ in range(5):
                    seen.append((label, os.getcwd()))
                    time.sleep(0.002)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    try:
        threads = [
            threading.Thread(target=task, args=(path, path.name))
            for _ in range(6)
            for path in (first, second)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        os.chdir(start)
    assert not errors
    assert len(seen) == 60
    assert all(cwd == str(tmp_path / label) for label, cwd in seen)


def test_a_missing_directory_is_an_error_naming_it(tmp_path):
    directory = working_directory.ProcessDirectory()
    start = os.getcwd()
    with (
        pytest.raises(metalab.ExecutorError, match="gone"),
        directory.holding(str(tmp_path / "gone")),
    ):
        pass
    assert os.getcwd() == start
    with directory.holding(str(tmp_path)):  # not left held
        assert os.getcwd() == str(tmp_path)
    os.chdir(start)


def test_the_driver_process_and_other_machines_keep_their_directory(tmp_path):
    here = working_directory.origin()
    assert here.path == os.getcwd() and here.pid == os.getpid()
    elsewhere = working_directory.Origin(str(tmp_path), "another-machine", here.pid + 1)
    for origin in (here, elsewhere):
        with working_directory.entered(origin):
            assert os.getcwd() == here.path
