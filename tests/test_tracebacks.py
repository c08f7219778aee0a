"""Tracebacks of failed runs and derived metrics name the user's file, line and source, also
for code whose file the worker cannot read (a notebook cell); derived metrics computed on
workers record the function's real code hash."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from sweeps import checked_result

import metalab
from metalab.source import format_exception

# A notebook as IPython runs it: each cell compiled under a file name that exists nowhere on
# disk, its lines registered with linecache in the kernel's process only.
NOTEBOOK = textwrap.dedent(
    '''
    import linecache
    import sys
    import warnings

    import metalab

    CELL = """\\
    import metalab


    def helper(x):
        raise ValueError(f"bad x {x}")


    @metalab.operation
    def op(params, capture):
        capture.metric("x", params["x"])
        if params["x"] == 2:
            helper(params["x"])


    def doubled(run):
        return {"twice": run.metrics["x"] * 2}


    def broken(run):
        raise KeyError("no such metric")
    """

    FILENAME = sys.argv[1]
    linecache.cache[FILENAME] = (len(CELL), None, CELL.splitlines(True), FILENAME)
    exec(compile(CELL, FILENAME, "exec"), globals())

    if __name__ == "__main__":
        warnings.simplefilter("error", metalab.MetalabWarning)
        exp = metalab.Experiment(
            name="cells", version="1", context={}, operation=op,
            params=metalab.grid(x=[1, 2]), seeds=metalab.seeds(base=0),
        )
        executor = {"processes": metalab.ProcessExecutor(max_workers=1),
                    "threads": metalab.ThreadExecutor(max_workers=1),
                    "inline": "inline"}[sys.argv[2]]
        with warnings.catch_warnings(record=True) as caught:  # run 1 fails: one warning
            warnings.simplefilter("always", metalab.RunsFailedWarning)
            handle = metalab.run(exp, executor=executor, derived_metrics=[doubled, broken])
            results = handle.result()
        assert [w.category for w in caught] == [metalab.RunsFailedWarning], caught
        completed, failed = results[0], results[1]
        print("=== run")
        print(failed.error["traceback"])
        print("=== derived")
        print(completed.derived_info["errors"]["__main__:broken"]["traceback"])
        entry = completed.derived_info["values"]["twice"]
        print("=== hash", entry["code_hash"] == metalab.derived.function_hash(doubled) != "")
        results.compute_derived([doubled])   # the same function: no CodeChangedWarning
        print("=== recomputed without warning")
    '''
)


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["processes", "threads", "inline"])
def test_notebook_code_is_named_by_cell_file_and_line_in_records(tmp_path, executor):
    script = tmp_path / "notebook.py"
    script.write_text(NOTEBOOK)
    cell = str(tmp_path / "ipykernel_4242" / "3517.py")  # never created
    done = subprocess.run(
        [sys.executable, str(script), cell, executor],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert done.returncode == 0, done.stderr
    run_part, rest = done.stdout.split("=== derived")
    assert f'File "{cell}", line 12, in op' in run_part
    assert 'helper(params["x"])' in run_part
    assert f'File "{cell}", line 5, in helper' in run_part
    assert 'raise ValueError(f"bad x {x}")' in run_part
    assert "ValueError: bad x 2" in run_part
    assert f'File "{cell}", line 20, in broken' in rest
    assert 'raise KeyError("no such metric")' in rest
    assert "=== hash True" in rest
    assert "=== recomputed without warning" in rest


def _fails(params):
    raise RuntimeError(f"boom {params['x']}")


SCRIPT = textwrap.dedent(
    """
    import warnings

    import metalab


    def helper(x):
        raise ValueError(f"bad x {x}")


    @metalab.operation
    def op(params):
        helper(params["x"])


    if __name__ == "__main__":
        warnings.simplefilter("ignore", metalab.RunsFailedWarning)
        exp = metalab.Experiment(
            name="script", version="1", context={}, operation=op,
            params=metalab.grid(x=[3]), seeds=metalab.seeds(base=0),
        )
        print(metalab.run(exp, progress=False).result()[0].error["traceback"])
    """
)


def test_a_scripts_code_run_on_worker_processes_is_named_by_its_file_and_lines(tmp_path):
    """The default executor's workers get a script's operation by value: its traceback still
    names the script, its lines and their source text (a pickler may rename shipped code)."""
    script = tmp_path / "sweep_script.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=240
    )
    assert done.returncode == 0, done.stderr
    assert f'File "{script}", line 13, in op' in done.stdout, done.stdout
    assert 'helper(params["x"])' in done.stdout
    assert f'File "{script}", line 8, in helper' in done.stdout
    assert 'raise ValueError(f"bad x {x}")' in done.stdout


def test_a_recorded_traceback_starts_at_the_users_code(tmp_path):
    exp = metalab.Experiment(
        name="fails",
        version="1",
        context={},
        operation=_fails,
        params=metalab.grid(x=[1]),
        seeds=metalab.seeds(base=0),
    )
    text = checked_result(metalab.run(exp, tmp_path, executor="inline"))[0].error["traceback"]
    frames = [line for line in text.splitlines() if line.startswith('  File "')]
    assert frames == [f'  File "{__file__}", line {_fails.__code__.co_firstlineno + 1}, in _fails']
    assert text.startswith("Traceback (most recent call last):\n")
    assert text.endswith("RuntimeError: boom 1\n")


def test_an_error_with_no_frame_of_the_users_keeps_metalabs():
    try:
        metalab.FilePath(3)
    except metalab.ValidationError as exc:
        error = exc
    error.__traceback__ = error.__traceback__.tb_next  # drop this test's own frame
    assert "metalab/context.py" in format_exception(error)
