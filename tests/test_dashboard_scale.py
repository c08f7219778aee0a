"""The dashboard's view of a large sweep: exact counts, a bounded sample, no object per run."""

from __future__ import annotations

import gc
import hashlib
import tracemalloc
from typing import ClassVar

import numpy
import pytest
from sweeps import checked_result

import metalab
from metalab import dashboard
from metalab.contracts import StoreCapabilities
from metalab.dashboard import _sample
from metalab.dashboard._page import plot_data
from metalab.dashboard._registration import packed_ids
from metalab.dashboard._view import StoreView
from metalab.run_ids import RunIds
from metalab.store import create_store
from metalab.stores.file import FileStore

pytest.importorskip("bokeh", reason="the dashboard page needs bokeh (uv sync --extra dashboard)")
pytest.importorskip("pyarrow", reason="stores give their runs as tables with pyarrow")

RUNS = 20_000
STATUSES = {"failed": 700, "interrupted": 300}
"""Runs of the sweep that did not complete; the rest completed."""
OTHERS = 1_000
"""Records of the same experiment id that are not the sweep's (another context, say)."""


@metalab.operation
def scored(params, capture):
    capture.metric("score", params["x"] * 2.0)


def _run_id(i: int) -> str:
    return hashlib.sha256(f"run {i}".encode()).hexdigest()[:32]


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    """A file store of `RUNS` records of one sweep plus `OTHERS` records of its experiment
    that are not the sweep's; returns (store locator, the sweep's run ids, statuses)."""
    path = tmp_path_factory.mktemp("large") / "store"
    exp = metalab.Experiment(
        name="template",
        version="1",
        context={},
        operation=scored,
        params=metalab.grid(x=[1]),
        seeds=metalab.seeds(base=0),
    )
    template = checked_result(metalab.run(exp, path, executor="inline"))[0].record
    store = create_store(path, create=False)
    statuses = ["failed"] * STATUSES["failed"] + ["interrupted"] * STATUSES["interrupted"]
    statuses += ["completed"] * (RUNS + OTHERS - len(statuses))
    for i, status in enumerate(statuses):
        record = dict(
            template,
            experiment_id="large:1",
            run_id=_run_id(i),
            index=i,
            status=status,
            params={"x": i % 7, "kind": "odd" if i % 2 else "even"},
            metrics={"score": float(i % 7), "loss": 1.0 / (1 + i)},
        )
        store.put_record(record)
    # the sweep: every failed and interrupted run, and all but the last OTHERS completed ones
    return store.locator, [_run_id(i) for i in range(RUNS)], statuses


class RecordsOnlyStore(FileStore):
    """A file store that declares no table: the view reads its records one by one."""

    capabilities: ClassVar[StoreCapabilities] = StoreCapabilities()


def _path(locator: str) -> str:
    return locator.removeprefix("file://")


def _view(locator: str, run_ids: list[str] | None, opener=None) -> tuple[StoreView, object]:
    store = (opener or (lambda loc: create_store(loc, create=False)))(locator)
    entry = dashboard.SweepEntry("large:1", locator, RUNS, "s1", run_ids=packed_ids(run_ids))
    return StoreView(entry), store


def _expected(statuses: list[str], members: int | None) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in statuses[:members]:
        counts[status] = counts.get(status, 0) + 1
    return counts


def test_a_table_store_gives_exact_counts_and_a_bounded_uniform_sample(large):
    locator, run_ids, statuses = large
    view, store = _view(locator, run_ids)
    view.refresh(lambda loc: store)
    snapshot = view.snapshot
    assert snapshot.error is None
    assert (
        snapshot.counts
        == _expected(statuses, RUNS)
        == {
            "completed": RUNS - 1000,
            "failed": 700,
            "interrupted": 300,
        }
    )
    assert snapshot.sample.size == dashboard.limits.MAX_SAMPLE < snapshot.completed
    assert snapshot.sampled and snapshot.unread == 0
    assert set(snapshot.params) == {"x", "kind"} and set(snapshot.metrics) == {"score", "loss"}
    completed = sorted(run_ids[i] for i, s in enumerate(statuses[:RUNS]) if s == "completed")
    smallest = completed[: dashboard.limits.MAX_SAMPLE]
    index_of = {_run_id(i): i for i in range(RUNS)}
    assert sorted(snapshot.sample.params["x"]) == sorted(index_of[r] % 7 for r in smallest)
    assert len(snapshot.sample.metrics["loss"]) == dashboard.limits.MAX_SAMPLE


def test_without_run_ids_every_record_of_the_experiment_counts(large):
    locator, _, statuses = large
    view, store = _view(locator, None)
    view.refresh(lambda loc: store)
    assert view.snapshot.counts == _expected(statuses, None)
    assert view.snapshot.counts["completed"] == RUNS + OTHERS - 1000


def test_a_store_without_columns_fills_in_over_bounded_reads(large):
    locator, run_ids, statuses = large
    view, store = _view(locator, run_ids, opener=lambda loc: RecordsOnlyStore(_path(loc)))
    refreshes = 0
    while True:
        view.refresh(lambda loc: store)
        refreshes += 1
        assert view.snapshot.error is None
        assert view.snapshot.sample.size <= dashboard.limits.MAX_SAMPLE
        if not view.snapshot.unread:
            break
        assert sum(view.snapshot.counts.values()) == refreshes * dashboard.limits.MAX_READS
    assert refreshes == -(-RUNS // dashboard.limits.MAX_READS)
    assert view.snapshot.counts == _expected(statuses, RUNS)
    assert view.snapshot.sample.size == dashboard.limits.MAX_SAMPLE
    assert len(view._records.ids) == RUNS and len(view._records.rows) <= 5000


def test_the_view_holds_no_object_per_run(large):
    """Held after a refresh: the packed run ids (16 bytes a run) and the sample, not a dict
    (hundreds of bytes) per run."""
    locator, run_ids, _ = large
    entry_ids = packed_ids(run_ids)
    store = create_store(locator, create=False)
    # imports and the store's own cache of its table, made before counting
    warm = StoreView(dashboard.SweepEntry("large:1", locator, RUNS, "s0", run_ids=entry_ids))
    warm.refresh(lambda loc: store)
    assert warm.snapshot.error is None
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        entry = dashboard.SweepEntry("large:1", locator, RUNS, "s1", run_ids=entry_ids)
        view = StoreView(entry)
        view.refresh(lambda loc: store)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert view.snapshot.counts["completed"] == RUNS - 1000
    per_run = held / RUNS
    # 16 bytes of sorted ids, and the sample of 5,000 runs spread over 20,000: about 55
    assert per_run < 100, f"{held:,} bytes held for {RUNS:,} runs"


def test_the_plot_says_it_draws_a_sample_of_the_completed_runs(large):
    locator, run_ids, _ = large
    view, store = _view(locator, run_ids)
    view.refresh(lambda loc: store)
    data = plot_data(view.snapshot, "score", "x")
    assert sum(data.means["n"]) == dashboard.limits.MAX_SAMPLE
    assert len(data.dots["x"]) <= dashboard.limits.MAX_POINTS
    title = data.title("score", "x")
    assert "mean of 5,000 sampled runs per value, of 19,000 completed" in title
    assert "700 failed, 300 interrupted left out" in title


def test_a_sweep_s_run_ids_travel_packed():
    ids = [_run_id(i) for i in range(100)]
    packed = packed_ids(RunIds.of(ids))
    assert packed == bytes.fromhex("".join(ids)) == packed_ids(ids)
    odd = ["not-a-hex-id", "x" * 32]
    assert packed_ids(odd) == _sample.pack(odd) and len(packed_ids(odd) or b"") == 32
    assert packed_ids(None) is None
    entry = dashboard.SweepEntry("e:1", "file:///x", 100, "s", run_ids=packed)
    assert entry.describe()["run_ids"] == 100


def test_run_ids_that_are_no_hex_ids_still_tell_the_sweep_s_records(tmp_path):
    store = create_store(tmp_path / "store", create=True)
    members = _sample.IdSet(_sample.pack(["a-run", "b-run"]))
    assert members.contains(_sample.as_ids(_sample.pack(["b-run", "c-run"]))).tolist() == [
        True,
        False,
    ]
    twins = ["0123456789abcdef" + "0" * 16, "0123456789abcdef" + "1" * 16]
    alike = _sample.IdSet(_sample.pack([*twins, _run_id(3)]))  # two ids share 8 bytes
    asked = _sample.as_ids(_sample.pack([twins[1], "0123456789abcdef" + "2" * 16, twins[0]]))
    assert alike.contains(asked, numpy.array([5, -1, 0])).tolist() == [True, False, True]
    pa = pytest.importorskip("pyarrow")
    column = pa.chunked_array([["a-run", _run_id(1)], [_run_id(2)]])
    assert _sample.column_ids(column).tobytes() == _sample.pack(["a-run", _run_id(1), _run_id(2)])
    assert store.locator.startswith("file://")


def test_a_slow_store_is_read_less_often(monkeypatch):
    view = StoreView(dashboard.SweepEntry("e:1", "file:///x", 1, "s"))
    monkeypatch.setattr(dashboard.limits, "REFRESH_SECONDS", 1.5)
    view.refreshed_at, view.took = 100.0, 0.1
    assert not view.due(101.0) and view.due(101.5)
    view.took = 2.0  # a refresh of a large store took 2 s: the next one waits 3 x 2 s
    assert not view.due(105.9) and view.due(106.0)
    view.busy = True
    assert not view.due(1000.0)


def test_a_record_that_changes_is_counted_again(tmp_path):
    path = tmp_path / "store"
    exp = metalab.Experiment(
        name="large",
        version="1",
        context={},
        operation=scored,
        params=metalab.grid(x=[1, 2, 3]),
        seeds=metalab.seeds(base=0),
    )
    results = checked_result(metalab.run(exp, path, executor="inline"))
    for opener in (lambda loc: create_store(loc, create=False), RecordsOnlyStore):
        store = opener(str(path) if opener is RecordsOnlyStore else path.as_uri())
        entry = dashboard.SweepEntry(
            "large:1", store.locator, 3, "s", run_ids=packed_ids([r.run_id for r in results])
        )
        view = StoreView(entry)
        view.refresh(lambda loc, store=store: store)
        assert view.snapshot.counts == {"completed": 3} and view.snapshot.sample.size == 3
        first = view.snapshot.version
        view.refresh(lambda loc, store=store: store)
        assert view.snapshot.version == first, "nothing changed: the same snapshot"
        record = dict(results[0].record, status="failed")
        store.put_record(record)
        try:
            _touch_listing(path)
            view.refresh(lambda loc, store=store: store)
            assert view.snapshot.counts == {"completed": 2, "failed": 1}
            assert view.snapshot.sample.size == 2 and view.snapshot.version == first + 1
        finally:
            store.put_record(results[0].record)
            _touch_listing(path)


def _touch_listing(path) -> None:
    """Mark every directory of records changed (a rewrite within the table's settling time)."""
    for directory in (path / "runs").iterdir():
        if directory.is_dir():
            directory.touch()


@pytest.mark.postgres
def test_a_postgres_store_is_read_as_a_table(postgres_locator):
    exp = metalab.Experiment(
        name="pg-dash",
        version="1",
        context={},
        operation=scored,
        params=metalab.grid(x=[1, 2, 3, 4]),
        seeds=metalab.seeds(base=0, replicates=2),
    )
    results = checked_result(metalab.run(exp, postgres_locator, executor="inline"))
    store = create_store(postgres_locator, create=False)
    failed = dict(results[0].record, run_id="f" * 32, index=99, status="failed")
    store.put_record(failed)  # a record of the experiment that is not one of the sweep's runs
    run_ids = [run.run_id for run in results]
    for ids, counts in ((run_ids, {"completed": 8}), (None, {"completed": 8, "failed": 1})):
        entry = dashboard.SweepEntry("pg-dash:1", postgres_locator, 8, "s", run_ids=packed_ids(ids))
        view = StoreView(entry)
        view.refresh(lambda loc: store)
        assert view.snapshot.error is None
        assert view.snapshot.counts == counts
        assert view.snapshot.sample.size == 8 and not view.snapshot.sampled
        assert sorted(view.snapshot.sample.params["x"]) == [1, 1, 2, 2, 3, 3, 4, 4]
        assert view.snapshot.metrics == ("score",)
