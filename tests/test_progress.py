"""Progress output in plain text (no terminal): counts, metrics, and a bounded line count."""

from __future__ import annotations

import io

import pytest

import metalab


@metalab.operation
def loss(params, capture):
    capture.metric("loss", params["i"] / 10)


def _exp(n):
    return metalab.Experiment(
        name="prog",
        version="1",
        context={},
        operation=loss,
        params=metalab.grid(i=list(range(n))),
        seeds=metalab.seeds(base=0),
    )


def test_plain_progress_reports_final_counts_and_metrics(tmp_path):
    stream = io.StringIO()
    progress = metalab.Progress(
        title="Training", display_metrics=["loss:.3f"], stream=stream, use_rich=False
    )
    metalab.run(_exp(20), tmp_path, executor="inline", progress=progress).result()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("Training: 20 runs")
    assert lines[-1].startswith("Training: 20/20 | ok 20 | failed 0")
    assert "loss 1.900 (mean 0.950)" in lines[-1]


def test_plain_progress_stays_short_on_big_sweeps(tmp_path):
    stream = io.StringIO()
    progress = metalab.Progress(stream=stream, use_rich=False, interval=60)
    metalab.run(_exp(2000), tmp_path, executor="inline", progress=progress).result()
    assert len(stream.getvalue().splitlines()) <= 4


def test_bad_progress_arguments_are_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(metalab.ValidationError, match="loss:xyz"):
        metalab.Progress(display_metrics=["loss:xyz"])
    with pytest.raises(metalab.ValidationError, match="progress must be"):
        metalab.run(_exp(1), progress="yes")
    assert not (tmp_path / "runs").exists()  # rejected before any store is created
