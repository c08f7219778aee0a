"""Progress output in plain text (no terminal): counts, metrics, and a bounded line count."""

from __future__ import annotations

import io
import sys

import pytest

import metalab


@metalab.operation
def loss(params, capture):
    capture.metric("loss", params["i"] / 10)


def _exp(n, name="prog"):
    return metalab.Experiment(
        name=name,
        version="1",
        context={},
        operation=loss,
        params=metalab.grid(i=list(range(n))),
        seeds=metalab.seeds(base=0),
    )


@pytest.mark.parametrize("executor", ["inline", "processes"])
def test_plain_progress_reports_final_counts_and_metrics(tmp_path, executor):
    # the displayed metrics travel back with each outcome, though its record stays in the store
    stream = io.StringIO()
    progress = metalab.Progress(
        title="Training", display_metrics=["loss:.3f"], stream=stream, use_rich=False
    )
    chosen = metalab.ProcessExecutor(max_workers=2) if executor == "processes" else executor
    metalab.run(_exp(20), tmp_path, executor=chosen, progress=progress).result()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("Training: 20 runs")
    assert lines[-1].startswith("Training: 20/20 | ok 20 | failed 0")
    # the latest value is the last run's inline; over processes runs finish in any order
    shown = "loss 1.900 (mean 0.950)" if executor == "inline" else " (mean 0.950)"
    assert shown in lines[-1]


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


class TerminalLike(io.StringIO):
    """A stream that says it is a terminal, as a user's shell would."""

    def isatty(self) -> bool:
        return True


def test_rich_progress_in_a_terminal_on_10000_runs(tmp_path, monkeypatch):
    pytest.importorskip("rich")
    monkeypatch.setenv("COLUMNS", "160")
    stream = TerminalLike()
    progress = metalab.Progress(title="Sweep", display_metrics=["loss:.2f"], stream=stream)
    handle = metalab.run(_exp(10_000), tmp_path, executor="inline", progress=progress)
    results = handle.result()
    assert len(results) == 10_000
    text = stream.getvalue()
    # a live display redraws in place: the final frame names the counts, never one line per run
    assert "10000/10000" in text and "ok 10000" in text and "loss" in text
    assert text.count("\n") < 200


def test_rich_progress_keeps_bar_and_totals_in_80_columns(tmp_path, monkeypatch):
    pytest.importorskip("rich")
    monkeypatch.setenv("COLUMNS", "80")
    stream = TerminalLike()
    progress = metalab.Progress(title="Sweep", display_metrics=["loss:.2f"], stream=stream)
    metalab.run(_exp(50), tmp_path, executor="inline", progress=progress).result()
    last = stream.getvalue().rstrip().split("\r")[-1]
    assert "50/50" in last and "ok 50" in last


def _page_path(dask_scheduler=None):
    return dask_scheduler.plugins["metalab"].page


def test_progress_prints_the_link_of_the_metalab_page(tmp_path):
    import urllib.request
    from urllib.parse import urlsplit

    from distributed import Client, LocalCluster

    from metalab import dashboard

    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address="127.0.0.1:0") as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        stream = io.StringIO()
        progress = metalab.Progress(stream=stream, use_rich=False)
        handle = metalab.run(_exp(5), tmp_path, executor=client, progress=progress)
        handle.result()
        first = stream.getvalue().splitlines()[0]
        link = first.rsplit("dashboard ", 1)[1]
        assert link == handle.dashboard_link
        # the page the dashboard registered, on the dashboard's host and port
        page = client.run_on_scheduler(_page_path)
        assert urlsplit(link).path == page == "/metalab"
        # a host the dashboard answers on: an in-process cluster's own link names the
        # machine's network address, while its dashboard listens on 127.0.0.1
        assert urlsplit(link).netloc == urlsplit(dashboard.dashboard_link(client)).netloc
        port = cluster.scheduler.http_server.port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{urlsplit(link).path}") as response:
            assert response.status == 200
            assert "Bokeh" in response.read().decode("utf-8")


def test_the_metalab_page_of_a_dashboard_link():
    from metalab.dashboard import page_link as metalab_page

    assert metalab_page("http://h:8787/status") == "http://h:8787/metalab"
    assert metalab_page("http://h:8787/prefix/status") == "http://h:8787/prefix/metalab"
    assert metalab_page("https://hub/user/a/proxy/8787/status?x=1") == (
        "https://hub/user/a/proxy/8787/metalab?x=1"
    )
    assert metalab_page("http://h:8787/") == "http://h:8787/metalab"


def test_without_the_metalab_page_the_link_is_the_dashboard(tmp_path, monkeypatch):
    import sys

    from distributed import Client, LocalCluster

    from metalab import dashboard

    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address="127.0.0.1:0") as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        monkeypatch.setitem(sys.modules, "bokeh", None)  # the page cannot be added
        handle = metalab.run(_exp(2), tmp_path, executor=client)
        handle.result()
        assert handle.dashboard_link == dashboard.dashboard_link(client)
        assert handle.dashboard_link.endswith("/status")


def test_an_imported_ipykernel_is_not_a_notebook(tmp_path, monkeypatch):
    import sys
    import types

    # a process that imported ipykernel (a test runner, a tool) without running a kernel
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    stream = io.StringIO()
    metalab.run(_exp(3), tmp_path, executor="inline", progress=metalab.Progress(stream=stream))
    assert stream.getvalue().splitlines()[-1].startswith("prog:1: 3/3 | ok 3")


@pytest.mark.parametrize("interval", ["x", -1, 0, float("nan"), True])
def test_a_progress_interval_that_is_no_positive_number_is_named(interval):
    """`interval="x"` failed the sweep from the display's thread; `-1` printed the line
    without pause."""
    with pytest.raises(metalab.ValidationError, match="interval must be a number of seconds"):
        metalab.Progress(interval=interval)


def test_display_metrics_as_one_string_is_named():
    with pytest.raises(metalab.ValidationError, match=r"got the string 'loss'.*\['loss'\]"):
        metalab.Progress(display_metrics="loss")


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"stream": 5}, "stream must be a text stream"),
        ({"use_rich": "yes"}, "use_rich must be True, False or None"),
        ({"title": 5}, "title must be a string or None"),
    ],
)
def test_progress_options_of_the_wrong_type_are_named_before_anything_runs(
    tmp_path, monkeypatch, arguments, named
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(metalab.ValidationError, match=named):
        metalab.run(_exp(1), progress=metalab.Progress(**arguments))
    assert not (tmp_path / "runs").exists()


def test_use_rich_without_rich_is_named_when_the_display_is_made(monkeypatch):
    monkeypatch.setitem(sys.modules, "rich", None)  # as if it were not installed
    with pytest.raises(metalab.ValidationError, match=r"needs rich: install metalab\[rich\]"):
        metalab.Progress(use_rich=True)


def test_a_display_used_for_two_sweeps_names_each_its_experiment(tmp_path):
    stream = io.StringIO()
    progress = metalab.Progress(stream=stream, use_rich=False)
    first, second = _exp(2), _exp(3, name="other")
    metalab.run(first, tmp_path / "a", executor="inline", progress=progress).result()
    metalab.run(second, tmp_path / "b", executor="inline", progress=progress).result()
    lines = stream.getvalue().splitlines()
    assert lines[-1].startswith("other:1: 3/3"), lines
    assert progress.title is None
