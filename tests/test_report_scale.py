"""The report of a large sweep reads its runs by column: whole records only for the runs it
shows in detail (errors, curves, provenance), and it says when those are a sample."""

from __future__ import annotations

import gzip
import html
import json
import re
from typing import Any

import pytest

import metalab
from metalab.stores.file.store import FileStore

pytest.importorskip("bokeh", reason="the report needs bokeh (uv sync --extra dashboard)")
pytest.importorskip("pyarrow", reason="a columnar load needs pyarrow (uv sync --extra pandas)")

from metalab import report

RUNS = 2000
SAMPLED = 200
ERRORS_READ = 20
TABLE_ROWS = 100


@metalab.operation
def step(params, capture):
    i = params["i"]
    if i % 97 == 5:
        raise ValueError(f"bad input {i % 3}")
    if i % 10 == 0:
        for s in range(5):
            capture.metric("loss", 1.0 / (s + 1 + i % 7), step=s)
    capture.metric("score", float(i % 13))


def _experiment() -> metalab.Experiment:
    return metalab.Experiment(
        name="scale",
        version="1",
        context={},
        operation=step,
        params=metalab.grid(i=list(range(RUNS)), group=["a"]),
        seeds=metalab.seeds(base=0),
    )


FAILED = sum(1 for i in range(RUNS) if i % 97 == 5)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("scale") / "store"
    with pytest.warns(metalab.RunsFailedWarning):
        metalab.run(_experiment(), path, executor="inline").result()
    return path


class Reads:
    """Run ids whose records a file store was asked for."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.ids: list[str] = []
        get_record, get_records = FileStore.get_record, FileStore.get_records

        def one(store: FileStore, run_id: str) -> Any:
            self.ids.append(run_id)
            return get_record(store, run_id)

        def many(store: FileStore, run_ids: Any) -> Any:
            run_ids = list(run_ids)
            self.ids.extend(run_ids)
            return get_records(store, run_ids)

        monkeypatch.setattr(FileStore, "get_record", one)
        monkeypatch.setattr(FileStore, "get_records", many)


@pytest.fixture
def limited(monkeypatch):
    monkeypatch.setattr(report.limits, "MAX_SAMPLED_RUNS", SAMPLED)
    monkeypatch.setattr(report.limits, "MAX_ERRORS_READ", ERRORS_READ)
    monkeypatch.setattr(report.limits, "MAX_TABLE_ROWS", TABLE_ROWS)


def _divs(node: Any) -> list[str]:
    """The text of every Div of a bokeh document."""
    found = []
    if isinstance(node, dict):
        if node.get("name") == "Div":
            found.append(node.get("attributes", {}).get("text", ""))
        for value in node.values():
            found += _divs(value)
    elif isinstance(node, list):
        for value in node:
            found += _divs(value)
    return found


def _text(page: str) -> str:
    """The HTML of every Div of a report page, joined."""
    found = re.search(r'<script type="application/json"[^>]*>(.*?)</script>', page, re.S)
    assert found, "the page embeds no bokeh document"
    return "\n".join(_divs(json.loads(html.unescape(found.group(1)))))


def test_a_report_reads_the_records_of_the_runs_it_shows_only(store, limited, monkeypatch):
    results = metalab.load_results(store)
    reads = Reads(monkeypatch)
    page = report.report_html(results)
    failed_in_table = sum(1 for i in range(TABLE_ROWS) if i % 97 == 5)
    bound = SAMPLED + ERRORS_READ + failed_in_table
    assert len(set(reads.ids)) <= bound, f"{len(set(reads.ids))} records read for the page"
    assert len(reads.ids) == len(set(reads.ids)), "a record is read once"
    # the counter sees a read of every record
    assert len(results.records) == RUNS and len(set(reads.ids)) >= RUNS
    texts = _text(page)
    assert f"{RUNS} runs</b>" in texts
    assert f"completed: {RUNS - FAILED}" in texts and f"failed: {FAILED}" in texts
    assert f"The first {TABLE_ROWS} of {RUNS} runs are listed" in texts


def test_counts_and_means_use_every_run(store, limited):
    texts = _text(report.report_html(metalab.load_results(store)))
    completed = [i for i in range(RUNS) if i % 97 != 5]
    mean = sum(i % 13 for i in completed) / len(completed)
    summary = re.search(
        r"<td>score</td><td class=\"num\">(\d+)</td><td class=\"num\">([\d.]+)<", texts
    )
    assert summary and int(summary.group(1)) == len(completed)
    assert float(summary.group(2)) == pytest.approx(mean, rel=1e-5)
    assert f"Over the {len(completed)} completed runs; {FAILED} failed runs are left out" in texts


def test_failures_are_shown_from_a_bounded_read_and_counted_in_full(store, limited):
    texts = _text(report.report_html(metalab.load_results(store)))
    assert f"{FAILED} runs did not complete" in texts
    assert f"The errors of {ERRORS_READ} of these {FAILED} runs" in texts
    assert "ValueError" in texts and "bad input" in texts and "Traceback" in texts


def test_curves_and_provenance_come_from_a_sample_the_page_names(store, limited):
    page = report.report_html(metalab.load_results(store))
    texts = _text(page)
    assert "loss by step" in page, "the stepped metric is drawn"
    assert f"Curves and means are from a sample of {SAMPLED} of the {RUNS} runs" in texts
    assert f"Provenance is from a sample of {SAMPLED} of the {RUNS} runs" in texts
    assert "test_report_scale:step" in texts, "provenance names the operation"


def test_a_small_store_is_reported_from_every_record(tmp_path):
    exp = metalab.Experiment(
        name="small",
        version="1",
        context={},
        operation=step,
        params=metalab.grid(i=list(range(20))),
        seeds=metalab.seeds(base=0),
    )
    with pytest.warns(metalab.RunsFailedWarning):
        metalab.run(exp, tmp_path / "store", executor="inline").result()
    texts = _text(report.report_html(metalab.load_results(tmp_path / "store")))
    assert "sample" not in texts
    assert "<code>test_report_scale:step @" in texts and "(20)" in texts, "every run counted"


def _lines(page: str) -> list[dict[str, Any]]:
    """The data of each mean line of a page (numeric columns as lists)."""
    found = re.search(r'<script type="application/json"[^>]*>(.*?)</script>', page, re.S)
    assert found
    out = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("name") == "ColumnDataSource":
                entries = node.get("attributes", {}).get("data", {}).get("entries", [])
                data = {key: _plain(value) for key, value in entries}
                if "mean" in data and "x" in data:
                    out.append(data)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(html.unescape(found.group(1))))
    return out


def _plain(column: Any) -> Any:
    if isinstance(column, dict) and column.get("type") == "ndarray":
        import base64

        import numpy as np

        array = column["array"]
        if isinstance(array, dict):
            raw = base64.b64decode(array["data"])
            raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
            return np.frombuffer(raw, dtype=column["dtype"]).tolist()
        return list(array)
    return column


def test_many_runs_get_the_means_and_bins_of_the_exact_rule(monkeypatch):
    import random

    rng = random.Random(3)
    records = []
    for i in range(3000):
        lr = 10 ** rng.uniform(-4, -1)
        records.append(
            {
                "run_id": f"{i:032x}",
                "experiment_id": "many:1",
                "index": i,
                "status": "completed",
                "params": {"lr": lr, "opt": ["a", "b", "c"][i % 3]},
                "metrics": {"loss": rng.gauss(0, 1) - lr * 10, "ok": i % 2 == 0},
            }
        )
    exact = report.report_html(metalab.Results(records))
    monkeypatch.setattr("metalab.report._stats.EXACT", 10)
    fast = report.report_html(metalab.Results(records))

    def same(page: str) -> str:
        return re.sub(r"Generated \S+", "", _text(page))

    assert same(fast) == same(exact), "summaries and notes are the same"
    exact_lines, fast_lines = _lines(exact), _lines(fast)
    assert len(fast_lines) == len(exact_lines) > 0
    for a, b in zip(exact_lines, fast_lines):
        assert a["n"] == b["n"]
        for key in ("x", "mean", "std", "low", "high"):
            for p, q in zip(a[key], b[key], strict=True):
                assert p == (q if isinstance(q, str) else pytest.approx(q, rel=1e-9, abs=1e-12))


def test_without_pyarrow_the_page_is_made_from_the_records_alike(monkeypatch):
    records = []
    for i in range(40):
        records.append(
            {
                "run_id": f"{i:032x}",
                "experiment_id": "a:1" if i < 20 else "b:1",
                "index": i,
                "status": "failed" if i % 9 == 4 else "completed",
                "error": {"type": "E", "message": f"m{i % 2}"} if i % 9 == 4 else None,
                "params": {"x": i % 4, "tag": [i % 2]} if i % 5 else {"x": 0.5},
                "metrics": {"y": i / 3, "flag": i % 2 == 0, "note": "n/a" if i % 7 else None},
                "started_at": f"2026-01-01T00:00:{i:02d}+00:00",
                "finished_at": f"2026-01-01T00:01:{i:02d}+01:00",
                "duration": 0.25,
            }
        )

    def page() -> str:
        return re.sub(r"Generated \S+", "", _text(report.report_html(metalab.Results(records))))

    with_table = page()
    monkeypatch.setattr("metalab.runs_table.available", lambda: False)
    assert page() == with_table
