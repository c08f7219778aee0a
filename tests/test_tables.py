"""Tables of runs: the replicate column, and grouped summaries that average completed runs
only and count the others separately."""

from __future__ import annotations

import io

import pytest

import metalab


@metalab.operation
def noisy(params, runtime, capture):
    replicate = runtime.index % 3  # run index = case * replicates + replicate
    capture.metric("score", params["level"] * 10 + replicate)
    if params["level"] == 2 and replicate == 0:
        raise RuntimeError("diverged")


@pytest.fixture
def results(tmp_path):
    exp = metalab.Experiment(
        name="tables",
        version="1",
        context={},
        operation=noisy,
        params=metalab.grid(level=[1, 2]),
        seeds=metalab.seeds(base=0, replicates=3),
    )
    with pytest.warns(metalab.RunsFailedWarning, match="1 of 6 runs"):
        return metalab.run(exp, tmp_path, executor="inline").result()


def test_table_has_a_replicate_column(results):
    lines = results.table().splitlines()
    assert lines[0].split()[:3] == ["#", "replicate", "level"]
    assert [line.split()[1] for line in lines[2:]] == ["0", "1", "2", "0", "1", "2"]
    assert list(results.table(as_dataframe=True)["replicate"]) == [0, 1, 2, 0, 1, 2]


def test_grouped_means_use_completed_runs_only(results):
    table = results.grouped("level")
    # level 2: replicate 0 failed after capturing 20; the mean is that of 21 and 22
    assert table.loc[2, ("score", "mean")] == pytest.approx(21.5)
    assert table.loc[1, ("score", "mean")] == pytest.approx(11.0)
    assert table.loc[2, ("runs", "completed")] == 2
    assert table.loc[2, ("runs", "failed")] == 1
    assert table.loc[1, ("runs", "failed")] == 0
    assert list(table.columns)[-2:] == [("runs", "completed"), ("runs", "failed")]


def test_display_counts_the_other_runs_separately(results):
    out = io.StringIO()
    assert results.display(group_by="level", file=out) is None
    text = out.getvalue()
    assert "6 runs by level: means of the 5 completed (1 failed not counted)" in " ".join(
        text.split()
    )
    assert "runs failed" in text and "runs completed" in text


def test_a_group_without_completed_runs_has_no_mean(tmp_path):
    @metalab.operation
    def only_level_one(params, capture):
        capture.metric("score", 1.0)
        if params["level"] == 2:
            raise RuntimeError("no")

    exp = metalab.Experiment(
        name="nomean",
        version="1",
        context={},
        operation=only_level_one,
        params=metalab.grid(level=[1, 2]),
        seeds=metalab.seeds(base=0),
    )
    with pytest.warns(metalab.RunsFailedWarning):
        results = metalab.run(exp, tmp_path, executor="inline").result()
    table = results.grouped("level")
    assert table.loc[1, ("score", "mean")] == 1.0
    assert table.loc[2, ("score", "mean")] != table.loc[2, ("score", "mean")]  # NaN
    assert table.loc[2, ("runs", "completed")] == 0
    out = io.StringIO()
    results.display(group_by="level", file=out)
    assert "nan" not in out.getvalue().lower()


@metalab.operation
def _named_like_columns(params, capture):
    capture.log_metrics({"status": 2, "x": 3, "replicate": 7, "metric_status": 9, "metric_x": 4})


def test_table_names_each_column_once_when_names_collide(tmp_path):
    """A metric named like a parameter or a column of the table, and a parameter named like a
    column, are shown with their kind, so that every header names one column."""
    exp = metalab.Experiment(
        name="collide",
        version="1",
        context={},
        operation=_named_like_columns,
        params=metalab.grid(x=[1, 2], status=["a"]),
        seeds=metalab.seeds(base=0),
    )
    text = metalab.run(exp, tmp_path, executor="inline").result().table()
    header = text.splitlines()[0].split()
    assert len(header) == len(set(header)), header
    assert header == [
        "#",
        "replicate",
        "x",
        "param_status",
        "metric_status",
        "metric_x",
        "metric_replicate",
        "metric_metric_status",
        "metric_metric_x",
        "status",
    ]
