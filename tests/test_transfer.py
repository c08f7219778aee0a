"""Store transfer and FallbackStore between file stores (the PostgreSQL versions are in
tests/test_store_contract.py and tests/test_postgres_fallback.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sweeps import checked_result, indexed_experiment, metalab_cmd

import metalab
from metalab.errors import StoreUnavailableError, ValidationError
from metalab.store import (
    FallbackStore,
    FileStore,
    create_store,
    export_store,
    import_from_filestore,
    to_locator,
)


@metalab.operation
def rich_run(params, seeds, capture):
    x = params["x"]
    capture.metric("value", x * 2)
    for step in range(3):
        capture.metric("curve", x + step, step=step)
    capture.artifact("array", np.arange(x + 1))
    capture.data("info", {"x": x})
    capture.log(f"ran x={x}")
    if x == 3:
        raise ValueError("x=3 fails")


def experiment(name="transfer"):
    return metalab.Experiment(
        name=name,
        version="1",
        context={},
        operation=rich_run,
        params=metalab.grid(x=[0, 1, 2, 3]),
        seeds=metalab.seeds(base=1, replicates=2),
    )


def double(run):
    return {"double": run.metrics["value"] * 2}


def snapshot(store_path) -> dict:
    """Everything a store holds about its runs, independent of where artifacts live."""
    store = create_store(store_path, create=False)
    runs = {}
    for record in store.iter_records():
        rid = record["run_id"]
        artifacts = record.get("artifacts") or []
        items = artifacts.values() if isinstance(artifacts, dict) else artifacts
        runs[rid] = {
            "record": {k: v for k, v in record.items() if k != "artifacts"},
            "artifacts": [
                ({k: v for k, v in a.items() if k != "ref"}, store.read_artifact(a["ref"]))
                for a in items
            ],
            "log": store.read_log(rid),
            "derived": store.get_derived(rid),
        }
    manifests = sorted(
        json.dumps({k: v for k, v in m.items() if not k.startswith("_")}, sort_keys=True)
        for m in store.manifests()
    )
    blobs = {
        m["experiment_key"]: store.load_experiment(m["experiment_key"]) for m in store.manifests()
    }
    return {"runs": runs, "manifests": manifests, "blobs": blobs}


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "source"
    checked_result(metalab.run(experiment(), path, executor="inline", derived_metrics=[double]))
    checked_result(metalab.run(experiment("other"), path, executor="inline"))
    return path


def test_round_trip_is_lossless_and_idempotent(source, tmp_path):
    middle, back = tmp_path / "middle", tmp_path / "back"
    report = export_store(source, middle)
    assert report.records == 16 and report.unchanged == 0
    assert report.artifacts == 32 and report.derived == 6 and report.manifests == 2  # array + data
    assert report.experiments == ["other:1", "transfer:1"]
    import_from_filestore(middle, back)
    assert snapshot(back) == snapshot(source)
    # again: nothing copied, nothing duplicated
    again = export_store(source, middle)
    assert again.records == 0 and again.unchanged == 16 and again.manifests == 0
    assert snapshot(middle) == snapshot(source)
    assert len(list((middle / "experiments").glob("*.json"))) == 2
    # the copied store is usable: results, artifacts, logs, and resume skips everything
    results = metalab.load_results(back, "transfer")
    assert len(results.successful) == 6 and len(results.failed) == 2
    run = results.filter(x=2)[0]
    assert list(run.artifact("array")) == [0, 1, 2]
    assert "ran x=2" in run.log and run.derived == {"double": 8}
    handle = metalab.run(experiment(), back, executor="inline")
    assert handle.status.skipped == 6  # the failed runs run again


def test_one_experiment_and_a_changed_run(source, tmp_path):
    dest = tmp_path / "dest"
    report = export_store(source, dest, experiment_id="other")
    assert report.experiments == ["other:1"] and report.records == 8
    assert {r.experiment_id for r in metalab.load_results(dest)} == {"other:1"}
    # a run re-run in the source is copied again; the rest is unchanged
    results = metalab.load_results(source, "other")
    create_store(source).put_derived(results[0].run_id, {"values": {}, "errors": {}})
    again = export_store(source, dest, experiment_id="other:1")
    assert again.records == 1 and again.unchanged == 7
    with pytest.raises(ValidationError, match="holds no experiment 'nope'; it holds: "):
        export_store(source, tmp_path / "x", experiment_id="nope")
    assert not (tmp_path / "x").exists()  # no empty store left behind
    with pytest.raises(ValidationError, match="same store"):
        export_store(source, source)


def test_cli_export_and_import(source, tmp_path):
    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "metalab", "store", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    out = cli("export", "--from", str(source), "--to", str(tmp_path / "a"))
    assert out.returncode == 0, out.stderr
    assert "16 record(s) copied" in out.stdout
    out = cli("import", "--from", str(tmp_path / "a"), "--to", (tmp_path / "b").as_uri())
    assert out.returncode == 0, out.stderr
    assert snapshot(tmp_path / "b") == snapshot(source)
    out = cli("import", "--from", str(tmp_path / "missing"), "--to", str(tmp_path / "c"))
    assert out.returncode == 1 and "no metalab store" in out.stderr


class _FlakyLog:
    """A log handle that fails like a database connection once the primary is down."""

    def __init__(self, handle, store):
        self._handle, self._store = handle, store

    def write(self, text):
        self._store._check()
        return self._handle.write(text)

    def flush(self):
        self._store._check()
        self._handle.flush()

    def close(self):
        self._handle.close()


class FlakyStore(FileStore):
    """A file store that can be made unreachable, as a database server going down."""

    down_flag: Path

    def _check(self):
        if self.down_flag.exists():
            raise StoreUnavailableError("primary is down (test)")

    def put_record(self, record):
        self._check()
        super().put_record(record)

    def put_artifact(self, run_id, filename, data):
        self._check()
        return super().put_artifact(run_id, filename, data)

    def claim(self, run_id, owner):
        self._check()
        return super().claim(run_id, owner)

    def open_log(self, run_id):
        self._check()
        return _FlakyLog(super().open_log(run_id), self)

    def scan(self):
        self._check()
        return super().scan()


@metalab.operation
def flip(params, capture):
    if params["i"] == 5:
        Path(os.environ["METALAB_TEST_DOWN"]).touch()  # the primary goes down mid-sweep
    capture.metric("i", params["i"])


def test_fallback_takes_writes_while_primary_is_down_then_sync(tmp_path, monkeypatch):
    down = tmp_path / "down"
    monkeypatch.setenv("METALAB_TEST_DOWN", str(down))
    primary = FlakyStore.open(tmp_path / "primary")
    primary.down_flag = down
    store = FallbackStore(primary, tmp_path / "fallback")
    # runs reopen their store from its locator; make this process's runs use this object
    from metalab import execute

    monkeypatch.setitem(execute._stores, store.locator, store)
    exp = metalab.Experiment(
        name="flaky",
        version="1",
        context={},
        operation=flip,
        params=metalab.grid(i=list(range(12))),
        seeds=metalab.seeds(base=0),
    )
    results = metalab.run(exp, store, executor="inline").result()
    assert len(results) == 12 and all(r.status == "completed" for r in results)
    in_primary = {r["run_id"] for r in FileStore.open(tmp_path / "primary").iter_records()}
    in_fallback = {r["run_id"] for r in FileStore.open(tmp_path / "fallback").iter_records()}
    assert in_primary and in_fallback and not (in_primary & in_fallback)
    assert in_primary | in_fallback == set(exp.run_ids())

    down.unlink()  # the primary is back
    report = store.sync()
    assert report.records == len(in_fallback)
    primary_runs = [r["run_id"] for r in FileStore.open(tmp_path / "primary").iter_records()]
    assert sorted(primary_runs) == sorted(exp.run_ids())  # every run exactly once
    assert store.sync().records == 0  # idempotent
    handle = metalab.run(exp, tmp_path / "primary", executor="inline")
    assert handle.status.skipped == 12


def test_write_to_both_and_locator(tmp_path):
    store = FallbackStore(tmp_path / "p", tmp_path / "f", write_to_both=True)
    exp = metalab.Experiment(
        name="both",
        version="1",
        context={},
        operation=rich_run,
        params=metalab.grid(x=[0, 1]),
        seeds=metalab.seeds(base=0),
    )
    metalab.run(exp, store, executor="processes").result()
    for side in ("p", "f"):
        assert len(list(FileStore.open(tmp_path / side).iter_records())) == 2
    # the locator reopens the same pair in another process (workers do)
    reopened = create_store(to_locator(store))
    assert isinstance(reopened, FallbackStore) and reopened.write_to_both
    assert reopened.primary.locator == store.primary.locator
    with pytest.raises(metalab.StoreError, match="one primary= and one fallback="):
        create_store("fallback:?primary=x")


@metalab.operation
def logs_across_outage(params, capture):
    capture.log(f"before {params['i']}")
    if params["i"] == 2:
        Path(os.environ["METALAB_TEST_DOWN"]).touch()  # the primary goes down mid-run
    capture.log(f"after {params['i']}")
    capture.metric("i", params["i"])


def test_a_primary_lost_while_a_run_logs_loses_nothing(tmp_path, monkeypatch):
    down = tmp_path / "down"
    monkeypatch.setenv("METALAB_TEST_DOWN", str(down))
    primary = FlakyStore.open(tmp_path / "primary")
    primary.down_flag = down
    store = FallbackStore(primary, tmp_path / "fallback")
    from metalab import execute

    monkeypatch.setitem(execute._stores, store.locator, store)
    exp = metalab.Experiment(
        name="logs",
        version="1",
        context={},
        operation=logs_across_outage,
        params=metalab.grid(i=[0, 1, 2, 3]),
        seeds=metalab.seeds(base=0),
    )
    results = metalab.run(exp, store, executor="inline").result()
    assert [r.status for r in results] == ["completed"] * 4
    third = exp.run_id(2)
    log = FileStore.open(tmp_path / "fallback").read_log(third)
    assert "before 2" in log and "after 2" in log  # the whole log of the run cut in two
    down.unlink()
    store.sync()
    assert "after 2" in FileStore.open(tmp_path / "primary").read_log(third)


def test_write_to_both_keeps_logs_in_both_and_sync_is_idempotent(tmp_path):
    store = FallbackStore(tmp_path / "p", tmp_path / "f", write_to_both=True)
    exp = metalab.Experiment(
        name="bothlogs",
        version="1",
        context={},
        operation=rich_run,
        params=metalab.grid(x=[0, 1]),
        seeds=metalab.seeds(base=0),
    )
    metalab.run(exp, store, executor="inline").result()
    for side in ("p", "f"):
        assert "ran x=1" in FileStore.open(tmp_path / side).read_log(exp.run_id(1))
    assert store.sync().records == 0


def test_a_transfer_never_replaces_a_newer_record(tmp_path):
    flag = tmp_path / "fail"
    flag.touch()
    os.environ["METALAB_TEST_FAIL_FLAG"] = str(flag)
    try:
        exp = metalab.Experiment(
            name="newer",
            version="1",
            context={},
            operation=fails_while_flagged,
            params=metalab.grid(x=[0, 1]),
            seeds=metalab.seeds(base=0),
        )
        checked_result(metalab.run(exp, tmp_path / "src", executor="inline"))
        import_from_filestore(tmp_path / "src", tmp_path / "dst")
        flag.unlink()
        # the failed run passes
        checked_result(metalab.run(exp, tmp_path / "dst", executor="inline"))
        report = import_from_filestore(tmp_path / "src", tmp_path / "dst")
        assert report.kept_newer == 1 and report.records == 0
        assert {r.status for r in metalab.load_results(tmp_path / "dst")} == {"completed"}
    finally:
        del os.environ["METALAB_TEST_FAIL_FLAG"]


@metalab.operation
def fails_while_flagged(params, capture):
    if params["x"] == 1 and os.path.exists(os.environ["METALAB_TEST_FAIL_FLAG"]):
        raise RuntimeError("flagged")
    capture.metric("x", params["x"])


def test_sync_of_a_store_with_itself_is_refused(tmp_path):
    """Given the same store as primary and fallback (a path and its store, say), sync copies
    nothing onto itself and says why; the command line exits with one line."""
    store = tmp_path / "store"
    metalab.run(indexed_experiment(_same_op, 2, "same"), store, executor="inline").result()
    with pytest.raises(ValidationError, match="primary and fallback are the same store"):
        FallbackStore(str(store), FileStore.open(store)).sync()
    done = metalab_cmd(
        "store", "sync", "--primary", str(store), "--fallback", str(store)
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"Error: primary and fallback are the same store ({FileStore.open(store).locator}): "
        "sync copies what a fallback took into another store, its primary"
    ]


@metalab.operation
def _same_op(params, capture):
    capture.metric("i", params["i"])
