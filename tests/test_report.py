"""The HTML report of a sweep: its content, its edge cases, and how it renders in Chromium."""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
from service_checks import missing_service
from sweeps import checked_result

import metalab
from metalab.errors import MissingDependencyError, ValidationError
from metalab.results import Results

pytest.importorskip("bokeh", reason="the report needs bokeh (uv sync --extra dashboard)")

from metalab import report

METRIC = "acc<i id='injected'>&"
PARAM = "opt<b>imizer"


@metalab.operation
def train(params, seeds, capture):
    rng = seeds.numpy()
    lr, optimizer = params["lr"], params[PARAM]
    if optimizer == "adam" and lr > 0.05:
        raise ValueError("diverged: loss <inf> & beyond $$1/0$$")
    loss = 1.0
    for step in range(15):
        loss = loss * (1 - 4 * lr) + float(rng.normal(0, 0.01))
        capture.metric("loss", loss, step=step)
    capture.metric("final_loss", loss)
    capture.metric(METRIC, 1 - loss + float(rng.normal(0, 0.05)))


def _experiment() -> metalab.Experiment:
    return metalab.Experiment(
        name="report-sweep",
        version="1",
        context={},
        operation=train,
        params=metalab.grid(lr=[0.001, 0.01, 0.1], **{PARAM: ["sgd", "adam"]}),
        seeds=metalab.seeds(base=3, replicates=3),
    )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A real sweep: a swept float, a categorical param, replicates, a stepped metric, failures."""
    store = tmp_path_factory.mktemp("report") / "store"
    results = checked_result(metalab.run(_experiment(), store, executor="inline"))
    assert results.summary()["by_status"] == {"completed": 15, "failed": 3}
    return results


@pytest.fixture(scope="module")
def page(sweep) -> str:
    return report.report_html(sweep)


def _document(page: str) -> dict[str, Any]:
    """The bokeh document embedded in a report page."""
    found = re.search(r'<script type="application/json"[^>]*>(.*?)</script>', page, re.S)
    assert found, "the page embeds no bokeh document"
    (document,) = json.loads(html.unescape(found.group(1))).values()
    return document


def _models(node: Any, name: str) -> list[dict[str, Any]]:
    """Every model of type `name` in a document, as its attribute dict."""
    found = []
    if isinstance(node, dict):
        if node.get("type") == "object" and node.get("name") == name:
            found.append(node.get("attributes", {}))
        for value in node.values():
            found += _models(value, name)
    elif isinstance(node, list):
        for value in node:
            found += _models(value, name)
    return found


def _texts(page: str) -> str:
    """The HTML of every Div of the page, joined."""
    return "\n".join(div.get("text", "") for div in _models(_document(page), "Div"))


def _results(records: list[dict[str, Any]]) -> Results:
    """Results of records made by hand, read from no store."""
    return Results(records, None)


def _record(index: int, **fields: Any) -> dict[str, Any]:
    record = {
        "run_id": f"{index:064x}",
        "experiment_id": "synthetic:1",
        "index": index,
        "status": "completed",
        "params": {"x": index % 4},
        "metrics": {"y": float(index)},
        "series": {},
        "error": None,
        "duration": 0.5,
        "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T00:00:01+00:00",
        "provenance": {"host": "h", "code_hash": "c0de", "python": "3.11"},
    }
    record.update(fields)
    return record


# ---------------------------------------------------------------- content
def test_header_names_the_experiment_counts_and_time_span(page):
    assert "<title>metalab report: report-sweep:1</title>" in page
    texts = _texts(page)
    assert "report-sweep:1" in texts
    assert "completed: 15" in texts and "failed: 3" in texts
    assert "Time span:" in texts and "18 runs" in texts


def test_page_is_standalone_and_works_offline(page):
    assert page.lstrip().startswith("<!DOCTYPE html>")
    assert not re.search(r"<script[^>]+src=", page), "scripts must be inlined"
    assert not re.search(r"<link[^>]+href=", page), "stylesheets must be inlined"
    assert "Bokeh" in page


def test_runs_table_has_params_metrics_status_and_duration(page):
    document = _document(page)
    assert len(_models(document, "DataTable")) == 1
    columns = {c["title"]: c["field"] for c in _models(document, "TableColumn")}
    assert {"#", "status", "duration (s)", "lr", "final_loss", "run id"} <= set(columns)
    (data,) = [
        _data(s) for s in _models(document, "ColumnDataSource") if "status_color" in _data(s)
    ]
    statuses = data[columns["status"]]
    assert len(statuses) == 18 and statuses.count("failed") == 3


def _data(source: dict[str, Any]) -> dict[str, Any]:
    """The columns of a serialized ColumnDataSource."""
    return dict(source["data"]["entries"])


def test_names_are_escaped_everywhere(page):
    document = _document(page)
    titles = [column["title"] for column in _models(document, "TableColumn")]
    # column titles are written as HTML by the table widget: they must arrive escaped
    assert html.escape(METRIC) in titles and html.escape(PARAM) in titles
    assert METRIC not in titles and PARAM not in titles
    texts = _texts(page)
    assert html.escape(METRIC) in texts
    assert "<i id='injected'>" not in texts and "<b>imizer" not in texts
    assert "diverged: loss &lt;inf&gt; &amp; beyond $$1/0$$" in texts


def test_a_plot_per_metric_and_swept_parameter_and_per_stepped_metric(page):
    titles = {f.get("title", {}).get("attributes", {}).get("text") for f in _figures(page)}
    for metric in ("final_loss", METRIC):
        assert f"{metric} vs lr" in titles
        assert f"{metric} vs {PARAM}" in titles
    assert "loss by step" in titles


def _figures(page: str) -> list[dict[str, Any]]:
    return _models(_document(page), "Figure")


def test_categorical_parameters_get_a_categorical_axis(page):
    document = _document(page)
    factors = [r["factors"] for r in _models(document, "FactorRange")]
    assert ["sgd", "adam"] in factors
    assert _models(document, "LogScale"), "lr spans two decades: a log axis"


def test_failures_list_error_type_message_and_traceback(page):
    texts = _texts(page)
    assert "3 runs did not complete" in texts
    assert "<b>ValueError</b>" in texts
    assert "Traceback (most recent call last)" in texts
    assert "raise ValueError" in texts


def test_provenance_lists_code_hash_git_hosts_and_versions(sweep, page):
    texts = _texts(page)
    first = sweep[0].provenance
    assert first["code_hash"][:16] in texts
    assert html.escape(first["host"]) in texts
    assert first["python"] in texts and first["metalab"] in texts
    assert "git commit" in texts


def test_write_report_writes_the_file_and_returns_its_path(sweep, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = report.write_report(sweep, "out/r.html", title="<b>Mine</b>")
    assert path == tmp_path / "out" / "r.html"
    text = path.read_text(encoding="utf-8")
    assert "<title>&lt;b&gt;Mine&lt;/b&gt;</title>" in text
    assert [p.name for p in path.parent.iterdir()] == ["r.html"], "no temporary file left"


def test_report_from_store(sweep, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = sweep.store.locator
    assert report.report_from_store(store, load=metalab.load_results) == tmp_path / "report.html"
    out = report.report_from_store(
        store, tmp_path / "x.html", experiment="report-sweep", load=metalab.load_results
    )
    assert "completed: 15" in _texts(out.read_text(encoding="utf-8"))
    with pytest.raises(ValidationError, match=r"no runs of experiment 'nope'.*report-sweep:1"):
        report.report_from_store(
            store, tmp_path / "y.html", experiment="nope", load=metalab.load_results
        )


def test_the_store_is_shown_without_its_password():
    class Secret:
        locator = "postgresql://me:hunter2@db/metalab"
        public_locator = "postgresql://me@db/metalab"

    texts = _texts(report.report_html(Results([_record(0), _record(1)], Secret())))
    assert "<b>Store:</b> <code>postgresql://me@db/metalab</code>" in texts
    assert "hunter2" not in texts
    assert "<b>Store:</b>" not in _texts(report.report_html(_results([_record(0)])))


def test_missing_bokeh_names_the_dashboard_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "bokeh", None)
    with pytest.raises(MissingDependencyError, match=r"metalab\[dashboard\]"):
        report.report_html(_results([]))


def test_failed_runs_show_their_error_in_the_runs_table(page):
    document = _document(page)
    columns = {c["title"]: c["field"] for c in _models(document, "TableColumn")}
    (data,) = [
        _data(s) for s in _models(document, "ColumnDataSource") if "status_color" in _data(s)
    ]
    rows = list(zip(data[columns["status"]], data[columns["error"]]))
    assert {error for status, error in rows if status == "completed"} == {""}
    failed = {error for status, error in rows if status == "failed"}
    assert failed == {"ValueError: diverged: loss <inf> & beyond $$1/0$$"}


def test_tracebacks_are_shown_whole_as_stored_text():
    frames = "".join(f'  File "/work/lib_{i}.py", line {i}, in f{i}\n    g()\n' for i in range(60))
    traceback = (
        "Traceback (most recent call last):\n"
        '  File "/home/me/train.py", line 7, in train\n    fit(r"\\(x\\)")\n'
        f"{frames}ValueError: cost $$a+b$$ <b>x</b>\n"
    )
    error = {"type": "ValueError", "message": "cost $$a+b$$ <b>x</b>", "traceback": traceback}
    records = [_record(0), _record(1, status="failed", error=error)]
    page = report.report_html(_results(records))
    texts = _texts(page)
    assert html.escape(traceback.rstrip()) in texts
    assert "<b>x</b>" not in texts
    divs = _models(_document(page), "Div")
    assert divs and all(div.get("disable_math") is True for div in divs), (
        "dollar signs and \\( in tracebacks must stay text, not become typeset mathematics"
    )


@metalab.operation
def partial(params, capture):
    capture.metric("score", params["x"] * 1.0)
    capture.metric("loss", 100.0 - params["x"], step=0)
    if params["x"] >= 4:
        capture.metric("score", 1000.0)
        capture.metric("loss", 1000.0, step=1)
        raise RuntimeError("late failure")
    capture.metric("loss", 50.0, step=1)


def test_summary_and_plots_use_completed_runs_only_and_count_the_others(tmp_path):
    exp = metalab.Experiment(
        name="partial",
        version="1",
        context={},
        operation=partial,
        params=metalab.grid(x=[0, 1, 2, 3, 4, 5]),
        seeds=metalab.seeds(base=0),
    )
    results = checked_result(metalab.run(exp, tmp_path / "store", executor="inline"))
    assert results.summary()["by_status"] == {"completed": 4, "failed": 2}
    page = report.report_html(results)
    texts = _texts(page)
    summary = re.search(r"<h2>Metrics</h2>.*?</table>", texts, re.S).group(0)
    # score over the 4 completed runs only: 0, 1, 2, 3
    assert re.search(r"<td>score</td><td class=\"num\">4</td><td class=\"num\">1.5</td>", summary)
    assert "2 failed" in summary
    sources = [_data(s) for s in _models(_document(page), "ColumnDataSource")]
    (line,) = [s for s in sources if "mean" in s and "x" in s]
    assert _values(line["x"]) == [0, 1, 2, 3] and max(_values(line["mean"])) == 3
    assert "2 failed runs are left out" in texts
    (stepped,) = [s for s in sources if "step" in s and "mean" in s]
    assert _values(stepped["mean"]) == [98.5, 50.0], "the stepped mean is over completed runs"


def _values(column: Any) -> list[Any]:
    """A serialized column as a list (bokeh sends numeric columns as typed arrays)."""
    if isinstance(column, dict) and column.get("type") == "ndarray":
        import base64

        import numpy as np

        array = column["array"]
        if isinstance(array, dict):
            raw = base64.b64decode(array["data"])
            return np.frombuffer(raw, dtype=column["dtype"]).tolist()
        return list(array)
    return list(column)


@metalab.operation
def tuned(params, seeds, capture):
    capture.metric("score", math.log10(params["lr"]) + 0.1 * float(seeds.numpy().random()))


def test_a_random_search_parameter_is_a_scatter_with_a_binned_trend(tmp_path):
    exp = metalab.Experiment(
        name="random-search",
        version="1",
        context={},
        operation=tuned,
        params=metalab.random({"lr": metalab.loguniform(1e-4, 1e-1)}, n_trials=60, seed=1),
        seeds=metalab.seeds(base=0),
    )
    results = metalab.run(exp, tmp_path / "store", executor="inline").result()
    page = report.report_html(results)
    sources = [_data(s) for s in _models(_document(page), "ColumnDataSource")]
    (dots,) = [s for s in sources if "run" in s and "x" in s and "mean" not in s]
    (line,) = [s for s in sources if "mean" in s]
    assert len(_values(dots["x"])) == 60, "every run is a dot"
    xs = _values(line["x"])
    assert 5 <= len(xs) <= 10, "the trend is a few bins, not a line through every value"
    assert xs == sorted(xs) and sum(_values(line["n"])) == 60
    assert _values(line["mean"]) == sorted(_values(line["mean"])), "score grows with lr"
    assert "lr: 60 distinct values" in _texts(page)


@metalab.operation
def versioned(params, capture):
    capture.metric("score", params["x"] + (100.0 if params["version"] == 2 else 0.0))


def test_several_versions_of_an_experiment_get_one_section_each(tmp_path):
    store = tmp_path / "store"
    for version in (1, 2):
        exp = metalab.Experiment(
            name="versions",
            version=str(version),
            context={},
            operation=versioned,
            params=metalab.grid(x=[0, 1, 2], version=[version]),
            seeds=metalab.seeds(base=0),
        )
        metalab.run(exp, store, executor="inline").result()
    page = report.report_from_store(
        store, tmp_path / "r.html", load=metalab.load_results
    ).read_text(encoding="utf-8")
    texts = _texts(page)
    sections = re.findall(r"<h1[^>]*>Experiment (versions:\d)</h1>", texts)
    assert sections == ["versions:2", "versions:1"], "newest first, one section each"
    means = re.findall(
        r"<td>score</td><td class=\"num\">3</td><td class=\"num\">([\d.]+)</td>", texts
    )
    assert sorted(means) == ["1", "101"], "each version's summary holds its own runs only"
    titles = [f["title"]["attributes"]["text"] for f in _figures(page)]
    assert titles.count("score vs x") == 2


# ---------------------------------------------------------------- edge cases
def test_no_runs():
    assert "no runs" in _texts(report.report_html(_results([])))


def test_no_metrics():
    records = [_record(i, metrics={}) for i in range(4)]
    texts = _texts(report.report_html(_results(records)))
    assert "No scalar metrics were captured" in texts
    assert not _figures(report.report_html(_results(records)))


def test_only_failures():
    error = {"type": "KeyError", "message": "'k'", "traceback": "Traceback\nKeyError: 'k'"}
    records = [_record(i, status="failed", metrics={}, error=error) for i in range(3)]
    texts = _texts(report.report_html(_results(records)))
    assert "failed: 3" in texts and "3 runs did not complete" in texts and "KeyError" in texts


def test_a_single_run():
    texts = _texts(report.report_html(_results([_record(0)])))
    assert "1 run</b>" in texts and "No parameter takes more than one value" in texts
    assert "Fixed parameters:</b> x = 0" in texts


def test_non_numeric_metric_values():
    records = [_record(i, metrics={"y": "n/a" if i % 2 else i, "label": "abc"}) for i in range(8)]
    page = report.report_html(_results(records))
    assert "Not plotted (no numeric values): label" in _texts(page)
    titles = {f["title"]["attributes"]["text"] for f in _figures(page)}
    assert titles == {"y vs x"}


def test_names_needing_escaping_in_params_values_and_title():
    hostile = "<script>alert(1)</script>"
    records = [_record(i, params={hostile: i % 2, "v": hostile}) for i in range(4)]
    page = report.report_html(_results(records), title=hostile)
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt;</title>" in page
    assert hostile not in _texts(page)
    assert hostile not in [c["title"] for c in _models(_document(page), "TableColumn")]


def test_thousands_of_runs_are_summarised(monkeypatch):
    monkeypatch.setattr(report.limits, "MAX_TABLE_ROWS", 500)
    series = {"loss": {"steps": list(range(300)), "values": [1 / (s + 1) for s in range(300)]}}
    records = [
        _record(i, params={"x": i % 4, "w": i % 30}, series=series, replicate=i // 120)
        for i in range(2500)
    ]
    page = report.report_html(_results(records))
    texts = _texts(page)
    assert "The first 500 of 2500 runs are listed" in texts
    assert "loss: 50 of 2500 runs drawn" in texts
    assert "averaged over the other swept parameters" in texts
    assert "dots for a sample of about 2000 of 2500 runs" in texts
    (curves,) = [_data(s) for s in _models(_document(page), "ColumnDataSource") if "xs" in _data(s)]
    assert len(curves["xs"]) == 50
    assert len(page) < 20_000_000


# ---------------------------------------------------------------- in a browser
def _chromium() -> str:
    found = os.environ.get("METALAB_CHROMIUM") or next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )
    if found is None:
        missing_service("headless Chromium is not installed (bash ci/setup-browser.sh)")
    return str(found)


def _run_chromium(binary: str, profile: Path, *args: str) -> str:
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


# Writes what BokehJS rendered (inside shadow roots) into a plain div, once every figure has a
# canvas, so that --dump-dom can show it.
_RENDER_CHECK = """
<script>
(function () {
  function walk(root, out) {
    out.canvases += root.querySelectorAll("canvas").length;
    out.injected += root.querySelectorAll("#injected").length;
    for (const el of root.querySelectorAll("*")) {
      if (el.shadowRoot) {
        for (const node of el.shadowRoot.childNodes) {
          if (node.nodeName !== "STYLE") out.text += (node.textContent || "") + "\\n";
        }
        walk(el.shadowRoot, out);
      }
    }
    return out;
  }
  function check(tries) {
    const out = walk(document, {canvases: 0, injected: 0, text: ""});
    const documents = window.Bokeh && Bokeh.documents ? Bokeh.documents.length : 0;
    if ((documents === 0 || out.canvases < EXPECTED) && tries > 0) {
      setTimeout(function () { check(tries - 1); }, 250);
      return;
    }
    const div = document.createElement("div");
    div.id = "metalab-render-check";
    div.setAttribute("data-documents", documents);
    div.setAttribute("data-canvases", out.canvases);
    div.setAttribute("data-injected", out.injected);
    div.textContent = out.text;
    document.body.appendChild(div);
  }
  window.addEventListener("load", function () { check(80); });
})();
</script>
"""


@pytest.mark.slow
def test_report_renders_in_headless_chromium(sweep, tmp_path):
    binary = _chromium()
    path = report.write_report(sweep, tmp_path / "report.html")
    page = path.read_text(encoding="utf-8")
    figures = len(_figures(page))
    probe = tmp_path / "probe.html"
    check = _RENDER_CHECK.replace("EXPECTED", str(figures))
    before, end, after = page.rpartition("</body>")  # the inlined scripts hold the word too
    probe.write_text(before + check + end + after, encoding="utf-8")

    dom = _run_chromium(binary, tmp_path / "profile", "--dump-dom", probe.as_uri())
    found = re.search(r'<div id="metalab-render-check"([^>]*)>(.*?)</div>', dom, re.S)
    assert found, "the render check never ran: " + dom[-500:]
    attributes = dict(re.findall(r'data-(\w+)="(\d+)"', found.group(1)))
    rendered = html.unescape(found.group(2))
    assert int(attributes["documents"]) == 1
    assert int(attributes["canvases"]) >= figures >= 5
    assert int(attributes["injected"]) == 0, "a metric name became HTML"
    assert METRIC in rendered and "report-sweep:1" in rendered
    assert "ValueError" in rendered and "completed: 15" in rendered
    # the error message and its traceback are text, never typeset as mathematics
    assert 'raise ValueError("diverged: loss <inf> & beyond $$1/0$$")' in rendered

    shot = tmp_path / "shot.png"
    _run_chromium(
        binary,
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=1400,3000",
        path.as_uri(),
    )
    width, height, channels, pixels = decode_png(shot.read_bytes())
    assert (width, height) == (1400, 3000)
    body = pixels[400 * width * channels :]  # below the header
    assert _share(pixels, channels, lambda px: min(px[:3]) < 235) > 0.02, "the page is blank"
    assert _share(body, channels, lambda px: max(px[:3]) - min(px[:3]) > 60) > 0.002, (
        "no coloured plot lines or bands below the header"
    )


def _share(pixels: bytes, channels: int, test) -> float:
    """The fraction of pixels (every 7th, for speed) for which `test(pixel)` holds."""
    step = channels * 7
    sampled = [pixels[i : i + channels] for i in range(0, len(pixels) - channels + 1, step)]
    return sum(1 for px in sampled if test(px)) / max(1, len(sampled))


def decode_png(data: bytes) -> tuple[int, int, int, bytes]:
    """Return (width, height, channels, pixel bytes) of an 8-bit, non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    pos, chunks, header = 8, [], b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and interlace == 0 and color in (0, 2, 4, 6), (depth, color, interlace)
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color]
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    out = bytearray()
    previous = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        line = _unfilter(
            raw[start], bytearray(raw[start + 1 : start + 1 + stride]), previous, channels
        )
        out += line
        previous = line
    return width, height, channels, bytes(out)


def _unfilter(kind: int, line: bytearray, previous: bytes, bpp: int) -> bytearray:
    """Undo one scanline's PNG filter (None, Sub, Up, Average, Paeth)."""
    if kind == 1:
        for i in range(bpp, len(line)):
            line[i] = (line[i] + line[i - bpp]) & 0xFF
    elif kind == 2:
        line = bytearray((a + b) & 0xFF for a, b in zip(line, previous))
    elif kind == 3:
        for i in range(len(line)):
            left = line[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
    elif kind == 4:
        for i in range(len(line)):
            a = line[i - bpp] if i >= bpp else 0
            b = previous[i]
            c = previous[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
    return line
