"""Failed runs are reported: `result()` warns with their count and first errors, the progress
summary says it too, and tables show each failed run's error."""

from __future__ import annotations

import io
import warnings

import pytest
from sweeps import indexed_experiment

import metalab


@metalab.operation
def picky(params, capture):
    capture.metric("twice", 2 * params["i"])
    if params["i"] % 4 == 1:
        raise ValueError(f"odd value {params['i'] % 3}")
    if params["i"] == 6:
        raise KeyError("missing")


def _sweep(n=8, name="picky"):
    return indexed_experiment(picky, n, name)


def test_result_warns_naming_the_failures_and_how_to_list_them(tmp_path):
    handle = metalab.run(_sweep(), tmp_path, executor="inline")
    with pytest.warns(metalab.RunsFailedWarning) as caught:
        results = handle.result()
    assert len(caught) == 1
    message = str(caught[0].message)
    assert isinstance(caught[0].message, metalab.MetalabWarning)
    assert message.startswith("3 of 8 runs did not complete (3 failed)")
    # the distinct errors, in run order, with their counts
    assert "ValueError: odd value 1; ValueError: odd value 2; KeyError: 'missing'" in message
    assert "results.failed" in message
    assert caught[0].filename == __file__  # points at the caller's line
    assert len(results.failed) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert handle.result() is results  # said once per sweep


def test_repeated_errors_are_counted_and_only_the_first_ones_named(tmp_path):
    @metalab.operation
    def fails(params):
        raise RuntimeError(f"case {params['i'] % 5}")

    handle = metalab.run(indexed_experiment(fails, 10, "fails"), tmp_path, executor="inline")
    with pytest.warns(metalab.RunsFailedWarning) as caught:
        handle.result()
    message = str(caught[0].message)
    assert message.startswith("10 of 10 runs did not complete (10 failed)")
    assert "RuntimeError: case 0 (2 runs); RuntimeError: case 1 (2 runs)" in message
    assert "case 3" not in message and "and 2 other distinct error(s)" in message


def test_a_sweep_without_failures_does_not_warn(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = metalab.run(_sweep(1), tmp_path, executor="inline").result()
    assert [r.status for r in results] == ["completed"]


def test_the_warning_also_comes_from_a_dask_sweep(tmp_path):
    handle = metalab.run(_sweep(), tmp_path, executor="threads")
    with pytest.warns(metalab.RunsFailedWarning, match="3 of 8 runs"):
        handle.result(timeout=120)


def test_the_progress_summary_names_the_failures(tmp_path):
    stream = io.StringIO()
    progress = metalab.Progress(title="Sweep", stream=stream, use_rich=False)
    handle = metalab.run(_sweep(), tmp_path, executor="inline", progress=progress)
    with pytest.warns(metalab.RunsFailedWarning):
        handle.result()
    lines = stream.getvalue().splitlines()
    assert lines[-2].startswith("Sweep: 8/8 | ok 5 | failed 3")
    assert lines[-1].startswith("Sweep: 3 of 8 runs did not complete (3 failed): ValueError")
    assert "results.failed" in lines[-1]


def test_the_rich_progress_summary_names_the_failures(tmp_path, monkeypatch):
    pytest.importorskip("rich")
    monkeypatch.setenv("COLUMNS", "300")
    stream = io.StringIO()
    progress = metalab.Progress(title="Sweep", stream=stream, use_rich=True)
    handle = metalab.run(_sweep(), tmp_path, executor="inline", progress=progress)
    with pytest.warns(metalab.RunsFailedWarning):
        handle.result()
    assert "Sweep: 3 of 8 runs did not complete" in stream.getvalue()


def test_table_shows_each_failed_runs_error(tmp_path):
    handle = metalab.run(_sweep(), tmp_path, executor="inline")
    with pytest.warns(metalab.RunsFailedWarning):
        swept = handle.result()
    for results in (swept, metalab.load_results(tmp_path)):
        lines = results.table().splitlines()
        assert lines[0].split() == ["#", "replicate", "i", "twice", "status", "error"]
        assert lines[2].split() == ["0", "0", "0", "0", "completed"]
        assert lines[3].split() == [
            "1",
            "0",
            "1",
            "2",
            "failed",
            "ValueError:",
            "odd",
            "value",
            "1",
        ]
        assert lines[8].split()[-2:] == ["KeyError:", "'missing'"]
        frame = results.table(as_dataframe=True)
        assert list(frame["error"])[:3] == ["", "ValueError: odd value 1", ""]
        assert list(frame["replicate"]) == [0] * 8


def test_a_long_error_is_cut_in_the_text_table_not_in_the_dataframe(tmp_path):
    @metalab.operation
    def long_error(params):
        raise RuntimeError("x" * 500 + "\nsecond line")

    exp = indexed_experiment(long_error, 1, "long")
    with pytest.warns(metalab.RunsFailedWarning):
        results = metalab.run(exp, tmp_path, executor="inline").result()
    assert max(len(line) for line in results.table().splitlines()) < 120
    assert results.table(as_dataframe=True)["error"][0] == "RuntimeError: " + "x" * 500


def test_cancelled_runs_are_not_failures_and_interrupted_ones_are():
    from metalab.results.failures import failure_summary

    cancelled = {"status": "cancelled", "error": {"type": "Cancelled", "message": "x"}}
    assert failure_summary([cancelled], 1) is None
    stopped = {"status": "interrupted", "error": {"type": "metalab.errors.RunCancelled"}}
    assert failure_summary([stopped], 1) is None  # running when its sweep was cancelled
    interrupted = {"status": "interrupted", "error": {"type": "Interrupted", "message": "TERM"}}
    failed = {"status": "failed", "error": {"type": "OSError", "message": "disk"}}
    summary = failure_summary([cancelled, interrupted, failed], 3)
    assert summary.startswith("2 of 3 runs did not complete (1 failed and 1 was interrupted)")
    assert "Interrupted: TERM; OSError: disk" in summary


def test_a_metric_called_error_keeps_its_column(tmp_path):
    @metalab.operation
    def measured(params, capture):
        capture.metric("error", 0.5)
        if params["i"] == 1:
            raise RuntimeError("broke")

    with pytest.warns(metalab.RunsFailedWarning):
        results = metalab.run(
            indexed_experiment(measured, 2, "err"), tmp_path, executor="inline"
        ).result()
    lines = results.table().splitlines()
    assert lines[0].split() == ["#", "replicate", "i", "error", "status", "run_error"]
    assert lines[3].split()[-3:] == ["failed", "RuntimeError:", "broke"]
    frame = results.table(as_dataframe=True)
    assert list(frame["error"]) == [0.5, 0.5]
    assert list(frame["run_error"]) == ["", "RuntimeError: broke"]
