"""The metalab page of the Dask dashboard, served by a real scheduler."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dask
import pytest
from distributed import Client, LocalCluster
from service_checks import missing_service
from sweeps import checked_result, wait_for

import metalab
from metalab import claims, dashboard, registry
from metalab.dashboard._page import plot_data
from metalab.runs_table import MISSING
from metalab.store import create_store
from metalab.sweep import Sweep, SweepRef

pytest.importorskip("bokeh", reason="the dashboard page needs bokeh (uv sync --extra dashboard)")


@metalab.operation
def noisy(params, seeds, capture):
    if params["kind"] == "bad" and params["lr"] > 0.05:
        raise RuntimeError("boom")
    capture.metric("score", params["lr"] * 10 + float(seeds.numpy().random()))


def _experiment() -> metalab.Experiment:
    return metalab.Experiment(
        name="dash-sweep",
        version="1",
        context={},
        operation=noisy,
        params=metalab.grid(lr=[0.001, 0.01, 0.1], kind=["good", "bad"]),
        seeds=metalab.seeds(base=1, replicates=2),
    )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A file store holding a finished sweep: 10 completed runs, 2 failed."""
    store = tmp_path_factory.mktemp("dash") / "store"
    results = checked_result(metalab.run(_experiment(), store, executor="inline"))
    assert results.summary()["by_status"] == {"completed": 10, "failed": 2}
    return results


@pytest.fixture
def cluster():
    with (
        LocalCluster(
            processes=False,
            n_workers=1,
            threads_per_worker=1,
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield cluster, client


def _register(client, sweep, session="s1", **kwargs) -> bool:
    defaults = {
        "experiment_id": "dash-sweep:1",
        "store_locator": sweep.store.locator,
        "total": 12,
        "session": session,
        "run_ids": [run.run_id for run in sweep],
    }
    return dashboard.register_sweep(client, **(defaults | kwargs))


def _page_url(cluster) -> str:
    return f"http://127.0.0.1:{cluster.scheduler.http_server.port}/metalab"


def test_registering_installs_the_plugin_and_lists_the_sweep(cluster, sweep):
    _, client = cluster
    assert _register(client, sweep)
    (entry,) = dashboard.registered_sweeps(client)
    assert entry["experiment_id"] == "dash-sweep:1"
    assert entry["store_locator"] == sweep.store.locator
    assert (entry["total"], entry["session"], entry["run_ids"]) == (12, "s1", 12)
    assert entry["ended_at"] is None
    plugin_page = client.run_on_scheduler(
        lambda dask_scheduler: dask_scheduler.plugins["metalab"].page
    )
    assert plugin_page == "/metalab"


def test_the_page_is_served_by_the_dashboard(cluster, sweep):
    cluster_, client = cluster
    _register(client, sweep)
    with urllib.request.urlopen(_page_url(cluster_), timeout=30) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")
        body = response.read().decode("utf-8")
    assert "static/js/bokeh" in body and "Bokeh" in body
    assert re.search(r'href="metalab"', body), "the navigation bar links the page"
    status = urllib.request.urlopen(_page_url(cluster_).replace("/metalab", "/status"), timeout=30)
    assert 'href="metalab"' in status.read().decode("utf-8")


def test_counts_come_from_the_store_and_follow_new_records(cluster, sweep):
    _, client = cluster
    _register(client, sweep, run_ids=None)  # counted by experiment id
    counts = wait_for(
        lambda: dashboard.registered_sweeps(client)[0]["counts"], what="the first store read"
    )
    assert counts == {"completed": 10, "failed": 2}

    store = create_store(sweep.store.locator, create=False)
    extra = dict(sweep[0].record, run_id="f" * 32, status="interrupted")
    assert store.claim("e" * 32, claims.owner("s1"))  # a run of this session executing now
    store.put_record(extra)
    try:
        wait_for(
            lambda: dashboard.registered_sweeps(client)[0]["counts"].get("interrupted") == 1,
            what="the new record to be counted",
        )
        assert dashboard.registered_sweeps(client)[0]["running"] == 1
    finally:
        store.release("e" * 32)
        sweep.store.record_path("f" * 32).unlink()


def test_run_ids_restrict_the_counts_to_the_sweep(cluster, sweep):
    _, client = cluster
    _register(client, sweep, run_ids=[run.run_id for run in sweep.failed])
    counts = wait_for(lambda: dashboard.registered_sweeps(client)[0]["counts"], what="counts")
    assert counts == {"failed": 2}


def test_unregistering_marks_the_sweep_finished_and_registering_is_idempotent(cluster, sweep):
    _, client = cluster

    def plugin_id(dask_scheduler):
        return id(dask_scheduler.plugins["metalab"])

    _register(client, sweep, session="a")
    first = client.run_on_scheduler(plugin_id)
    _register(client, sweep, session="b")
    assert client.run_on_scheduler(plugin_id) == first
    dashboard.unregister_sweep(client, "a")
    dashboard.unregister_sweep(client, "a")
    entries = {e["session"]: e for e in dashboard.registered_sweeps(client)}
    assert entries["a"]["ended_at"] is not None and entries["b"]["ended_at"] is None


def test_the_registry_s_dashboard_lists_a_sweep_and_takes_it_off(cluster, sweep):
    """The executors' way in: `registry.dashboard()`, the `SweepDashboard` contract."""
    _, client = cluster
    shown = registry.dashboard()
    assert shown is dashboard.DASHBOARD
    store = sweep.store
    submitted = Sweep(
        experiment=_experiment(),
        store=store,
        ref=SweepRef(store=store.locator, experiment_key="key-1", session="s9"),
        run_ids=[run.run_id for run in sweep],
        pending=[],
        skipped=0,
    )
    assert shown.register(client, submitted)
    (entry,) = dashboard.registered_sweeps(client)
    assert (entry["experiment_id"], entry["session"]) == ("dash-sweep:1", "s9")
    assert (entry["total"], entry["run_ids"], entry["experiment_key"]) == (12, 12, "key-1")
    link = shown.link(client)
    assert link == dashboard.dashboard_link(client)
    assert shown.page_link(link).endswith(dashboard.PAGE)
    shown.unregister(client, "s9")
    shown.unregister(client, "s9")
    (entry,) = dashboard.registered_sweeps(client)
    assert entry["ended_at"] is not None


def test_an_unreadable_store_is_reported_not_raised(cluster, sweep, tmp_path):
    _, client = cluster
    _register(client, sweep, store_locator=(tmp_path / "missing").as_uri())
    entry = wait_for(
        lambda: dashboard.registered_sweeps(client)[0]["error"], what="the store error"
    )
    assert "StoreError" in entry


def test_without_bokeh_registration_does_nothing(monkeypatch, caplog):
    calls = []

    class Recorder:
        def __getattr__(self, name):
            calls.append(name)
            raise AssertionError(f"the client was used: {name}")

    monkeypatch.setitem(sys.modules, "bokeh", None)
    with caplog.at_level(logging.DEBUG, logger="metalab.dashboard"):
        registered = dashboard.register_sweep(
            Recorder(), experiment_id="e:1", store_locator="file:///x", total=1, session="s"
        )
        dashboard.unregister_sweep(Recorder(), "s")
    assert registered is False and calls == []
    assert "extra 'dashboard'" in caplog.text


def test_a_client_failure_is_logged_not_raised(caplog):
    class Broken:
        def register_plugin(self, plugin):
            raise OSError("scheduler gone")

    with caplog.at_level(logging.INFO, logger="metalab.dashboard"):
        assert not dashboard.register_sweep(
            Broken(), experiment_id="e:1", store_locator="file:///x", total=1, session="s"
        )
    assert "scheduler gone" in caplog.text


def test_a_scheduler_without_dashboard_still_keeps_the_registry(sweep):
    with (
        LocalCluster(
            processes=False,
            n_workers=1,
            threads_per_worker=1,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        assert _register(client, sweep)
        assert [e["session"] for e in dashboard.registered_sweeps(client)] == ["s1"]
        page = client.run_on_scheduler(
            lambda dask_scheduler: dask_scheduler.plugins["metalab"].page
        )
        assert page is None


class _Doc:
    """Stands in for a bokeh document: collects callbacks queued for the event loop."""

    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def add_next_tick_callback(self, callback) -> None:
        self.callbacks.append(callback)


def _live_page(sweep, doc) -> tuple[dashboard.LivePage, dashboard.MetalabPlugin]:
    plugin = dashboard.MetalabPlugin()
    plugin.register(
        dashboard.SweepEntry("dash-sweep:1", sweep.store.locator, 12, "s1", run_ids=None)
    )
    wait_for(lambda: plugin.snapshot("s1").counts, what="the first store read")
    page = dashboard.LivePage(SimpleNamespace(plugins={"metalab": plugin}), doc)
    return page, plugin


@pytest.mark.parametrize("in_thread", [False, True], ids=["on-the-loop", "in-the-thread"])
def test_the_plot_shows_the_metric_against_the_parameter(sweep, monkeypatch, in_thread):
    if in_thread:
        monkeypatch.setattr(dashboard.limits, "INLINE_ROWS", 0)
    doc = _Doc()
    page, plugin = _live_page(sweep, doc)
    try:

        def drawn() -> bool:
            page.update()
            for callback in doc.callbacks:
                callback()
            doc.callbacks.clear()
            return len(page.dots.data["x"]) == 10

        wait_for(drawn, what="the plot")
        assert (page.sweep.value, page.metric.value, page.param.value) == ("s1", "score", "lr")
        assert page.means.data["x"] == [-3.0, -2.0, -1.0]  # lr spans two decades: log10
        assert page.means.data["n"] == [4.0, 4.0, 2.0]
        assert page.figure.xaxis[0].axis_label == "log10(lr)"

        page.param.value = "kind"
        wait_for(lambda: drawn() and page.means.data["x"] == [0.0, 1.0], what="kind")
        assert page.figure.xaxis[0].major_label_overrides == {0.0: "bad", 1.0: "good"}
        assert "dash-sweep:1" in page.table.text and '<td class="num">10</td>' in page.table.text
    finally:
        asyncio.run(plugin.close())


def test_the_plot_counts_the_runs_left_out_of_its_means(sweep):
    doc = _Doc()
    page, plugin = _live_page(sweep, doc)
    try:
        page.update()
        title = page.figure.title.text
        assert "10 completed runs" in title and "2 failed left out" in title
        assert sum(page.means.data["n"]) == 10
    finally:
        asyncio.run(plugin.close())


def test_a_parameter_with_many_distinct_values_gets_a_binned_trend():
    lrs = [10 ** (-4 + 3 * i / 59) for i in range(60)]  # a random search's 60 learning rates
    rows = tuple(({"lr": lr}, {"score": math.log10(lr)}) for lr in lrs)
    snapshot = dashboard.Snapshot(
        counts={"completed": 60},
        params=("lr",),
        metrics=("score",),
        sample=dashboard.Sample.of_rows(rows, MISSING),
    )
    data = plot_data(snapshot, "score", "lr")
    assert len(data.dots["x"]) == 60, "every run is a dot"
    assert 5 <= len(data.means["x"]) <= 10, "a few bins, not a line through every value"
    assert sum(data.means["n"]) == 60 and data.means["x"] == sorted(data.means["x"])
    assert data.means["y"] == sorted(data.means["y"])
    few = plot_data(
        dashboard.Snapshot(
            counts={"completed": 10}, sample=dashboard.Sample.of_rows(rows[:10], MISSING)
        ),
        "score",
        "lr",
    )
    assert len(few.means["x"]) == 10, "few values: a mean at each"


def test_every_div_shows_text_not_typeset_mathematics(sweep):
    plugin = dashboard.MetalabPlugin()
    plugin.register(dashboard.SweepEntry("cost $$a$$:1", sweep.store.locator, 1, "s"))
    page = dashboard.LivePage(SimpleNamespace(plugins={"metalab": plugin}), _Doc())
    page.update()
    divs = [page.heading, page.message, page.table]
    assert all(div.disable_math for div in divs)
    asyncio.run(plugin.close())


@pytest.mark.parametrize(
    ("link", "page"),
    [
        ("http://127.0.0.1:8787/status", "http://127.0.0.1:8787/metalab"),
        ("http://host:8787/dask/status", "http://host:8787/dask/metalab"),
        ("https://hub/user/me/proxy/8787/status", "https://hub/user/me/proxy/8787/metalab"),
        ("http://host:8787/", "http://host:8787/metalab"),
        ("http://host:8787", "http://host:8787/metalab"),
    ],
)
def test_page_link_turns_the_dashboard_link_into_the_page_link(link, page):
    assert dashboard.page_link(link) == page
    assert dashboard.PAGE == "/metalab"


def test_an_in_process_cluster_gets_a_link_its_dashboard_answers(cluster, sweep):
    # an in-process cluster's own link names the machine's network address, while its
    # dashboard listens on 127.0.0.1 only
    _, client = cluster
    _register(client, sweep)
    link = dashboard.dashboard_link(client)
    assert link is not None and link.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(dashboard.page_link(link), timeout=30) as response:
        assert response.status == 200


def test_a_sweep_s_dashboard_link_leads_to_the_page(tmp_path):
    """`handle.dashboard_link` opens the page, for the executors that start their
    own cluster in this process."""
    exp = metalab.Experiment(
        name="thread-linked",
        version="1",
        context={},
        operation=slow_square,
        params=metalab.grid(x=[1, 2]),
        seeds=metalab.seeds(base=0),
    )
    handle = metalab.run(exp, tmp_path / "store", executor=metalab.ThreadExecutor(1))
    handle.result()
    assert handle.dashboard_link.endswith(dashboard.PAGE)
    _assert_dask_s_dashboard_and_the_page(handle.dashboard_link)


def _assert_dask_s_dashboard_and_the_page(link: str) -> None:
    """The page at `link`, and Dask's own pages beside it, answer with bokeh documents."""
    base = link[: -len(dashboard.PAGE)]
    for url in (link, f"{base}/status", f"{base}/individual-task-stream"):
        with urllib.request.urlopen(url, timeout=30) as page:
            assert page.status == 200 and "Bokeh" in page.read().decode("utf-8"), url


@pytest.fixture
def fresh_clusters():
    """No local cluster kept from an earlier test: the sweep starts one of its own."""
    from metalab.executors.local_clusters import _local

    _local.close_all()
    yield
    _local.close_all()


def _square_experiment(name: str) -> metalab.Experiment:
    return metalab.Experiment(
        name=name,
        version="1",
        context={},
        operation=slow_square,
        params=metalab.grid(x=[1, 2]),
        seeds=metalab.seeds(base=0),
    )


def test_a_cluster_of_worker_processes_serves_dask_s_dashboard_and_the_page(
    tmp_path, fresh_clusters
):
    """A local cluster metalab starts imports the dashboard while its workers start, and
    serves it, Dask's pages and metalab's, once the sweep starts."""
    executor = metalab.DaskExecutor(n_workers=1, dashboard_address="127.0.0.1:0")
    handle = metalab.run(_square_experiment("process-linked"), tmp_path / "store", executor)
    assert handle.dashboard_link is not None and handle.dashboard_link.endswith(dashboard.PAGE)
    _assert_dask_s_dashboard_and_the_page(handle.dashboard_link)
    assert checked_result(handle).summary()["by_status"] == {"completed": 2}


def test_a_dashboard_import_that_failed_in_its_thread_is_made_again(
    tmp_path, monkeypatch, fresh_clusters
):
    from metalab.executors import local_dashboard

    calls = []

    def import_module(name):
        calls.append(name)
        if len(calls) == 1:
            raise ImportError(f"{name} half imported by another thread")
        return importlib.import_module(name)

    monkeypatch.setattr(
        local_dashboard,
        "importlib",
        SimpleNamespace(import_module=import_module, util=importlib.util),
    )
    executor = metalab.ThreadExecutor(1, dashboard_address="127.0.0.1:0")
    handle = metalab.run(_square_experiment("imported-again"), tmp_path / "store", executor)
    handle.result()
    assert calls == [local_dashboard.MODULE, local_dashboard.MODULE]
    _assert_dask_s_dashboard_and_the_page(handle.dashboard_link)


def test_a_dashboard_that_cannot_be_served_leaves_the_sweep_running(
    tmp_path, monkeypatch, caplog, fresh_clusters
):
    from metalab.executors import local_dashboard

    async def refuse(module, scheduler):
        raise RuntimeError("no dashboard for this scheduler")

    monkeypatch.setattr(local_dashboard, "_connect", refuse)
    executor = metalab.ThreadExecutor(1, dashboard_address="127.0.0.1:0")
    with caplog.at_level(logging.WARNING, logger="metalab"):
        handle = metalab.run(_square_experiment("no-dashboard"), tmp_path / "store", executor)
        assert checked_result(handle).summary()["by_status"] == {"completed": 2}
    assert "dashboard could not be started: no dashboard for this scheduler" in caplog.text


def test_the_page_follows_the_dashboard_prefix(sweep):
    with (
        dask.config.set({"distributed.dashboard.link": "{scheme}://{host}:{port}/dask/status"}),
        LocalCluster(
            processes=False,
            n_workers=1,
            threads_per_worker=1,
            dashboard_address="127.0.0.1:0",
            scheduler_kwargs={"http_prefix": "/dask"},
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        _register(client, sweep)
        link = dashboard.page_link(dashboard.dashboard_link(client))
        assert link.endswith("/dask/metalab")
        with urllib.request.urlopen(link, timeout=30) as response:
            assert response.status == 200 and "Bokeh" in response.read().decode("utf-8")


def test_the_sweeps_table_escapes_what_it_shows(sweep):
    plugin = dashboard.MetalabPlugin()
    entry = dashboard.SweepEntry("x<b>y:1", sweep.store.locator, 1, "<s>")
    plugin.register(entry)
    page = dashboard.LivePage(SimpleNamespace(plugins={"metalab": plugin}), _Doc())
    page.update()
    assert "x&lt;b&gt;y:1" in page.table.text and "<b>" not in page.table.text
    asyncio.run(plugin.close())


# ---------------------------------------------------------------- in a browser
def _chromium() -> str:
    found = os.environ.get("METALAB_CHROMIUM") or next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )
    if found is None:
        missing_service("headless Chromium is not installed (bash ci/setup-browser.sh)")
    return str(found)


# The text BokehJS rendered (inside shadow roots, which --dump-dom leaves out) and the number
# of canvases.
_RENDERED = """(() => {
  const out = {text: document.body ? document.body.innerText : "", canvases: 0};
  const walk = (root) => {
    out.canvases += root.querySelectorAll("canvas").length;
    for (const el of root.querySelectorAll("*")) {
      if (el.shadowRoot) {
        for (const node of el.shadowRoot.childNodes) {
          if (node.nodeName !== "STYLE") out.text += "\\n" + (node.textContent || "");
        }
        walk(el.shadowRoot);
      }
    }
  };
  walk(document);
  return JSON.stringify(out);
})()"""


async def _rendered(binary: str, url: str, profile: Path, want, timeout: float) -> dict[str, Any]:
    """Open `url` in headless Chromium and poll what it rendered until `want(rendered)`.

    The page is live (bokeh server over a websocket), so it is driven through the DevTools
    protocol rather than a one-shot --dump-dom."""
    from tornado.websocket import websocket_connect

    log = profile.with_suffix(".log")
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--remote-debugging-port=0",
        "--remote-allow-origins=*",
        f"--user-data-dir={profile}",
        "about:blank",
    ]
    with open(log, "w") as err:
        browser = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
    try:
        port = _devtools_port(log, browser)
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list").read())
        target = next(t for t in targets if t["type"] == "page")
        socket = await websocket_connect(target["webSocketDebuggerUrl"])
        calls = iter(range(1, 1_000_000))

        async def call(method: str, **params: Any) -> dict[str, Any]:
            number = next(calls)
            await socket.write_message(
                json.dumps({"id": number, "method": method, "params": params})
            )
            while True:
                message = json.loads(await socket.read_message())
                if message.get("id") == number:
                    return message

        await call("Page.navigate", url=url)
        rendered: dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = await call("Runtime.evaluate", expression=_RENDERED, returnByValue=True)
            rendered = json.loads(answer["result"]["result"].get("value") or "{}")
            if want(rendered):
                break
            await asyncio.sleep(0.3)
        socket.close()
        return rendered
    finally:
        browser.kill()
        browser.wait()


def _devtools_port(log: Path, browser: subprocess.Popen) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", log.read_text())
        if found:
            return found.group(1)
        if browser.poll() is not None:
            raise AssertionError(f"chromium exited: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    raise AssertionError("chromium did not open its DevTools port")


@pytest.mark.slow
def test_the_page_renders_the_sweep_in_headless_chromium(cluster, sweep, tmp_path):
    binary = _chromium()
    cluster_, client = cluster
    _register(client, sweep)

    def shows_the_sweep(rendered: dict[str, Any]) -> bool:
        # the sweeps table's row: experiment, state, total, completed, failed, interrupted,
        # cancelled, running now, not yet recorded, progress
        row = r"dash-sweep:1\s*running\s*12\s*10\s*2\s*0\s*0\s*0\s*0\s*100%"
        counts = re.search(row, rendered.get("text", ""))
        return counts is not None and rendered["canvases"] > 0

    rendered = asyncio.run(
        _rendered(binary, _page_url(cluster_), tmp_path / "profile", shows_the_sweep, 60)
    )
    assert shows_the_sweep(rendered), rendered.get("text", "")[-2000:]
    text = rendered["text"]
    assert "metalab sweeps" in text
    assert re.search(r"metric\s*score", text) and re.search(r"parameter\s*lr\s*kind", text)


@metalab.operation
def slow_square(params, capture):
    time.sleep(0.05)
    capture.metric("square", params["x"] ** 2)


def test_a_running_sweep_registers_itself_and_its_page_is_served(cluster, tmp_path):
    """metalab.run on a Dask client lists the sweep on the page while it runs, and marks it
    finished when it ends; task keys name the experiment for the task stream."""
    cluster_, client = cluster
    exp = metalab.Experiment(
        name="live-page",
        version="1",
        context={},
        operation=slow_square,
        params=metalab.grid(x=list(range(40))),
        seeds=metalab.seeds(base=0),
    )
    handle = metalab.run(exp, tmp_path / "store", executor=client)
    (entry,) = wait_for(lambda: dashboard.registered_sweeps(client), what="registration")
    assert entry["experiment_id"] == "live-page:1" and entry["total"] == 40
    with urllib.request.urlopen(_page_url(cluster_), timeout=30) as response:
        assert response.status == 200

    def task_keys():
        return client.run_on_scheduler(
            lambda dask_scheduler: sorted({str(k) for k in dask_scheduler.tasks})
        )

    wait_for(
        lambda: any("metalab:live_page" in k for k in task_keys()) or handle.is_complete,
        what="the sweep's tasks, keyed by the experiment's name",
    )
    handle.result()
    (entry,) = dashboard.registered_sweeps(client)
    assert entry["ended_at"] is not None


@pytest.mark.slow
def test_the_link_of_a_running_sweep_opens_the_page_in_headless_chromium(cluster, tmp_path):
    """`handle.dashboard_link`: what a sweep's progress line prints."""
    binary = _chromium()
    _, client = cluster
    exp = metalab.Experiment(
        name="linked",
        version="1",
        context={},
        operation=slow_square,
        params=metalab.grid(x=list(range(6))),
        seeds=metalab.seeds(base=0),
    )
    handle = metalab.run(exp, tmp_path / "store", executor=client)
    handle.result()
    link = handle.dashboard_link
    assert link == dashboard.page_link(link)  # already the page

    def shows_the_sweep(rendered: dict[str, Any]) -> bool:
        row = r"linked:1\s*finished\s*6\s*6\s*0\s*0\s*0\s*0\s*0\s*100%"
        text = rendered.get("text", "")
        # the metric choices fill in once the page has read the runs, after the row
        return (
            re.search(row, text) is not None
            and rendered["canvases"] > 0
            and re.search(r"metric\s*square", text) is not None
        )

    rendered = asyncio.run(_rendered(binary, link, tmp_path / "profile", shows_the_sweep, 60))
    assert shows_the_sweep(rendered), rendered.get("text", "")[-2000:]


PANDAS_IMPORTED_WHERE = """
import sys, threading, time
from importlib.abc import MetaPathFinder

seen = []

class Watch(MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "pandas":
            seen.append(threading.current_thread().name)
        return None

sys.meta_path.insert(0, Watch())
from metalab import dashboard

plugin = dashboard.MetalabPlugin()
plugin.register(dashboard.SweepEntry("dash-sweep:1", sys.argv[1], 12, "s1", run_ids=None))
deadline = time.monotonic() + 60
while not (plugin.snapshot("s1") and plugin.snapshot("s1").counts):
    assert time.monotonic() < deadline, "no store read"
    time.sleep(0.05)
print("COUNTS", dict(plugin.snapshot("s1").counts))
print("IMPORTED IN", sorted(set(seen)))
"""


def test_pandas_is_imported_in_the_loop_not_the_reading_thread(sweep):
    # Bokeh pages run in the scheduler's loop read sys.modules["pandas"] as it is: imported
    # by the reading thread, it would be half imported under them for a moment
    pytest.importorskip("pandas")
    out = subprocess.run(
        [sys.executable, "-c", PANDAS_IMPORTED_WHERE, sweep.store.locator],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "COUNTS {'completed': 10, 'failed': 2}" in out.stdout
    assert "IMPORTED IN ['MainThread']" in out.stdout, out.stdout
