"""The Results API: selection by params, metrics and status, tables, grouped display, stepped
metrics, provenance columns, and stores holding several experiments."""

from __future__ import annotations

import io
import os
import time

import numpy as np
import pytest
from sweeps import checked_result

import metalab
from metalab.contracts import StoreCapabilities, StoreDefaults
from metalab.errors import ValidationError
from metalab.results.sources import InMemory, Journaled
from metalab.store import FileStore

RATES = [0.1 * k for k in (1, 2, 3)]  # the last is 0.30000000000000004, not 0.3


@metalab.operation
def fit(params, seeds, capture):
    rng = seeds.numpy()
    loss = 1.0
    for step in range(4):
        loss *= 1 - params["learning_rate"]
        capture.metric("loss", loss, step=step)
    capture.metric("final", loss + rng.normal(0, 1e-3))
    capture.metric("accuracy", 1 - loss)
    if params["optimizer"] == "bad":
        raise RuntimeError("diverged")


def experiment(name="fit", optimizers=("adam", "sgd")):
    return metalab.Experiment(
        name=name,
        version="1",
        context={},
        operation=fit,
        params=metalab.grid(learning_rate=RATES, optimizer=list(optimizers)),
        seeds=metalab.seeds(base=3, replicates=2),
    )


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    store = tmp_path_factory.mktemp("results") / "store"
    metalab.run(experiment(), store, executor="inline").result()
    with pytest.warns(metalab.RunsFailedWarning, match="6 of 12 runs"):
        metalab.run(experiment("other", ("adam", "bad")), store, executor="inline").result()
    return metalab.load_results(store, "fit")


def test_filter_matches_float_params_as_typed(results):
    assert RATES[2] != 0.3
    chosen = results.filter(learning_rate=0.3)
    assert len(chosen) == 4
    assert {r.params["optimizer"] for r in chosen} == {"adam", "sgd"}
    assert len(results.filter(learning_rate=0.3, optimizer="sgd")) == 2
    assert len(results.filter(learning_rate=0.31)) == 0


def test_filter_lists_and_comparisons(results):
    assert len(results.filter(optimizer=["adam", "sgd"])) == 12
    assert len(results.filter(learning_rate__in=[0.1, 0.3])) == 8
    assert len(results.filter(learning_rate__gt=0.15)) == 8
    assert len(results.filter(learning_rate__le=0.2, optimizer__ne="adam")) == 4
    with pytest.raises(ValidationError, match="no parameter is called 'missing_param'"):
        results.filter(missing_param=1)
    with pytest.raises(ValidationError, match="needs a single value"):
        results.filter(learning_rate__lt=[1, 2])


def test_where_selects_on_metrics_and_status(results):
    good = results.where(accuracy__ge=0.5)
    assert len(good) > 0
    assert all(r.metrics["accuracy"] >= 0.5 for r in good)
    assert len(good) + len(results.where(accuracy__lt=0.5)) == len(results)
    assert len(results.where(status="completed")) == 12
    assert len(results.where(status=["failed", "cancelled"])) == 0
    assert len(results.where(lambda run: run.params["optimizer"] == "adam")) == 6
    with pytest.raises(ValidationError, match="unknown status"):
        results.where(status="done")


def test_loads_one_experiment_or_all(results):
    store = results.store
    everything = metalab.load_results(store.locator)
    assert len(everything) == 24
    assert sorted({r.experiment_id for r in everything}) == ["fit:1", "other:1"]
    other = metalab.load_results(store.locator, experiment="other:1")
    assert len(other) == 12
    assert len(other.failed) == 6 and len(other.successful) == 6
    assert all(r.error["message"] == "diverged" for r in other.failed)
    assert len(everything[:5]) == 5 and isinstance(everything[:5], metalab.Results)


class _Unjournaled(FileStore, StoreDefaults):
    """A file store that declares no journal: loading reads its record files one by one."""

    capabilities = StoreCapabilities()


class _Journaling(FileStore, StoreDefaults):
    capabilities = StoreCapabilities(journal=True)


def test_loading_reads_a_store_the_way_its_capabilities_declare(tmp_path, journaled):
    # (without pyarrow: `journaled` makes the runs table unavailable)
    store = tmp_path / "store"
    metalab.run(experiment(), store, executor="inline").result()
    journaled_load = metalab.load_results(_Journaling.open(store, create=False), "fit")
    plain_load = metalab.load_results(_Unjournaled.open(store, create=False), "fit")
    assert isinstance(journaled_load._source, Journaled)
    assert all(isinstance(r, bytes) for r in journaled_load._source.entries)
    assert type(plain_load._source) is InMemory and plain_load._source.decoded
    assert journaled_load.table() == plain_load.table()
    assert journaled_load.records == plain_load.records
    assert len(plain_load.filter(optimizer="adam")) == 6


def test_results_of_records_in_memory_slice_and_select_like_loaded_ones(results):
    in_memory = metalab.Results(results.records, results.store)
    assert in_memory.records == results.records
    assert in_memory.table() == results.table()
    assert in_memory[3:7].records == results[3:7].records
    assert in_memory.filter(optimizer="sgd").records == results.filter(optimizer="sgd").records
    assert [r.run_id for r in in_memory.where(accuracy__gt=0.5)] == [
        r.run_id for r in results.where(accuracy__gt=0.5)
    ]


def test_display_groups_mean_and_std(results):
    out = io.StringIO()
    assert results.display(group_by=["learning_rate"], file=out) is None  # shown once
    table = results.grouped(["learning_rate"])
    text = out.getvalue()
    assert "learning_rate" in text and "mean" in text and "std" in text
    assert list(table.index) == RATES
    sub = results.filter(learning_rate=0.3)
    assert table.loc[RATES[2], ("accuracy", "mean")] == pytest.approx(
        np.mean([r.metrics["accuracy"] for r in sub])
    )
    assert table.loc[RATES[2], ("runs", "completed")] == 4
    with pytest.raises(ValidationError, match="not parameters"):
        results.display(group_by=["loss"])


@metalab.operation
def _sized(params, capture):
    capture.metric("score", float(sum(params["layers"])))


def test_groups_of_list_valued_parameters_and_of_no_runs(tmp_path):
    exp = metalab.Experiment(
        name="layers",
        version="1",
        context={},
        operation=_sized,
        params=metalab.grid(layers=[[64, 64], [128], [32, 32, 32]], act=["relu", None]),
        seeds=metalab.seeds(base=0, replicates=2),
    )
    results = metalab.run(exp, tmp_path, executor="inline").result()
    table = results.grouped("layers")
    assert list(table.index) == ["[128]", "[32, 32, 32]", "[64, 64]"]
    assert table.loc["[64, 64]", ("score", "mean")] == 128.0
    assert table.loc["[64, 64]", ("runs", "completed")] == 4
    assert len(results.grouped(["act", "layers"])) == 6
    out = io.StringIO()
    results.display(group_by="layers", file=out)
    assert "[32, 32, 32]" in out.getvalue()
    with pytest.raises(ValidationError, match=r"group_by must be a parameter name.*got \[\]"):
        results.grouped([])
    empty = results.filter(act="tanh").grouped("layers")
    assert len(empty) == 0 and list(empty.index.names) == ["layers"]


def test_display_without_rich(results, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_rich(name, *args, **kwargs):
        if name.startswith("rich"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_rich)
    out = io.StringIO()
    results.display(group_by="optimizer", file=out)
    assert "adam" in out.getvalue() and "sgd" in out.getvalue()


def test_stepped_metrics_per_run_and_long_form(results):
    steps, values = results[0].metric_series("loss")
    assert steps == [0, 1, 2, 3] and len(values) == 4
    long = results.metric_series("loss")
    assert len(long) == 12 * 4
    assert set(long.columns) >= {"run_id", "param_learning_rate", "step", "value", "metric"}
    first = long[long.run_id == results[0].run_id]
    assert list(first.value) == values


def test_table_and_dataframe_columns(results):
    text = results.table()
    assert "learning_rate" in text and "accuracy" in text and "completed" in text
    df = results.table(as_dataframe=True)
    assert {"param_learning_rate", "param_optimizer", "accuracy", "status"} <= set(df.columns)
    full = results.to_dataframe(include_provenance=True)
    for column in ("run_id", "status", "duration", "started_at", "code_hash", "host", "worker"):
        assert column in full.columns
    assert full["code_hash"].str.len().eq(64).all()
    assert full["host"].notna().all()


def test_to_csv_has_params_and_metrics(results, tmp_path):
    import csv

    path = tmp_path / "out.csv"
    results.to_csv(path)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 12
    assert {"param_learning_rate", "param_optimizer", "accuracy", "final"} <= set(rows[0])


# ---------------------------------------------------------------- loading through journals
@pytest.fixture
def journaled(monkeypatch):
    """Every task writes a journal entry, however few runs it had; loads read journals and
    records, as they do where pyarrow is not installed (no runs table)."""
    from metalab import runs_table
    from metalab.stores.file import journal

    monkeypatch.setattr(journal, "MIN_FIRST_ENTRY", 1)
    monkeypatch.setattr(runs_table, "available", lambda: False)


def journal_files(store):
    directory = store / "cache" / "journal"
    return sorted(directory.glob("*.jnl")) if directory.is_dir() else []


def from_files(store, selection=None):
    """What loading gives when every record is read from its file."""
    import shutil

    moved = store / "cache-set-aside"
    (store / "cache").rename(moved)
    try:
        return metalab.load_results(store, selection)
    finally:
        shutil.rmtree(store / "cache", ignore_errors=True)  # in case the load wrote one
        moved.rename(store / "cache")


def test_a_load_from_journals_is_the_load_from_the_files(tmp_path, journaled):
    import pandas as pd

    store = tmp_path / "store"
    metalab.run(experiment(), store, executor="inline").result()
    checked_result(metalab.run(experiment("other", ("adam", "bad")), store, executor="threads"))
    assert journal_files(store)
    for selection in (None, "fit", "other:1"):
        loaded = metalab.load_results(store, selection)
        # the records came from the journals: not parsed yet, and no file read
        assert not loaded._source.decoded and all(
            isinstance(r, bytes) for r in loaded._source.entries
        )
        frame = loaded.to_dataframe()
        assert not loaded._source.decoded  # the table came from the rows beside them
        plain = from_files(store, selection)
        assert plain._source.decoded
        expected = plain.to_dataframe()
        assert type(frame) is type(expected)
        pd.testing.assert_frame_equal(frame, expected)
        assert frame["optimizer"].tolist() == expected["param_optimizer"].tolist()
        assert loaded.table() == plain.table()
        pd.testing.assert_frame_equal(
            loaded.table(as_dataframe=True), plain.table(as_dataframe=True)
        )
        assert loaded.summary() == plain.summary()
        # selections by params, metrics and status, and slices, work on the rows too
        for pick in (
            lambda r: r.filter(optimizer="adam"),
            lambda r: r.where(accuracy__gt=0.5),
            lambda r: r.where(status="failed"),
            lambda r: r.successful,
            lambda r: r[2:5],
        ):
            chosen, wanted = pick(loaded), pick(plain)
            assert not chosen._source.decoded or len(chosen) == 0
            pd.testing.assert_frame_equal(chosen.to_dataframe(), wanted.to_dataframe())
            assert chosen.records == wanted.records
        assert loaded.records == plain.records
        assert [r.metric_series("loss") for r in loaded] == [r.metric_series("loss") for r in plain]


def test_a_sweep_on_the_local_dask_cluster_leaves_journals_loads_use(tmp_path, monkeypatch):
    import pandas as pd

    from metalab import runs_table

    monkeypatch.setattr(runs_table, "available", lambda: False)  # loads read journals
    store = tmp_path / "store"
    exp = metalab.Experiment(
        name="wide",
        version="1",
        context={},
        operation=fit,
        params=metalab.grid(learning_rate=[0.01 * k for k in range(1, 17)], optimizer=["sgd"]),
        seeds=metalab.seeds(base=3, replicates=4),
    )
    handle = metalab.run(exp, store)  # worker processes of a local cluster
    handle.result()
    assert handle.status.completed == 64
    loaded = metalab.load_results(store)
    # a worker process journals once it has written 16 records, so at least the one that
    # ran half the sweep did
    assert journal_files(store)
    assert sum(isinstance(r, bytes) for r in loaded._source.entries) >= 32
    plain = from_files(store)
    pd.testing.assert_frame_equal(loaded.to_dataframe(), plain.to_dataframe())
    assert loaded.records == plain.records


def test_rewritten_records_are_never_taken_from_an_outdated_journal(tmp_path, journaled):
    store = tmp_path / "store"
    exp = experiment()
    metalab.run(exp, store, executor="inline").result()
    before = {r.run_id: r.record["finished_at"] for r in metalab.load_results(store)}
    time.sleep(0.01)
    # a re-run rewrites every record, and journals them again
    metalab.run(exp, store, executor="inline", resume=False).result()
    after = metalab.load_results(store)
    assert all(isinstance(r, bytes) for r in after._source.entries)
    fresh = {r.run_id: r.record["finished_at"] for r in after}
    assert fresh.keys() == before.keys() and all(fresh[k] != before[k] for k in fresh)
    df = after.to_dataframe()
    assert dict(zip(df["run_id"], df["finished_at"])) == fresh

    # a record changed by another tool, in place or through a rename, without a journal
    run_id = sorted(fresh)[0]
    path = FileStore(store).record_path(run_id)
    text = path.read_text()
    assert '"status": "completed"' in text
    path.write_text(text.replace('"status": "completed"', '"status": "cancelled"'))
    loaded = metalab.load_results(store)
    assert loaded.filter().where(status="cancelled").records[0]["run_id"] == run_id
    assert (loaded.to_dataframe()["status"] == "cancelled").sum() == 1
    other = sorted(fresh)[1]
    path = FileStore(store).record_path(other)
    replacement = path.with_name("replacement")
    replacement.write_text(path.read_text().replace('"status": "completed"', '"status": "failed"'))
    os.replace(replacement, path)
    df = metalab.load_results(store).to_dataframe().set_index("run_id")
    assert df.loc[run_id, "status"] == "cancelled" and df.loc[other, "status"] == "failed"


def test_a_copied_store_is_read_from_its_files_then_from_a_snapshot(
    tmp_path, journaled, monkeypatch
):
    import shutil

    import pandas as pd

    from metalab.stores.file import journal, loading

    original = tmp_path / "store"
    metalab.run(experiment(), original, executor="inline").result()
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)  # new files: the journal names none of them
    (old,) = journal_files(copy)
    expected = metalab.load_results(original).to_dataframe()
    monkeypatch.setattr(loading, "SNAPSHOT_AFTER_READS", 1)
    loaded = metalab.load_results(copy)
    assert loaded._source.decoded  # every record read from its file
    pd.testing.assert_frame_equal(loaded.to_dataframe(), expected)
    # ... and kept in a snapshot: the next load reads that one file
    (snapshot,) = (p for p in journal_files(copy) if p != old)
    assert snapshot.name.startswith("load-")
    again = metalab.load_results(copy)
    assert all(isinstance(r, bytes) for r in again._source.entries)
    pd.testing.assert_frame_equal(again.to_dataframe(), expected)
    # the outdated journal was written to moments ago (by a writer still at work, for all a
    # load knows): it stays until idle; then the next snapshot replaces it and the earlier one
    assert old.exists()
    monkeypatch.setattr(journal, "IDLE_SECONDS", 0.0)
    monkeypatch.setattr(loading, "SNAPSHOT_AFTER_FILES", 0)
    metalab.load_results(copy)
    (newest,) = journal_files(copy)
    assert newest.name.startswith("load-") and newest != snapshot
    pd.testing.assert_frame_equal(metalab.load_results(copy).to_dataframe(), expected)
    # a store without journals (deleted, or written by an earlier metalab): files are read
    # and, from SNAPSHOT_AFTER_READS of them, a snapshot written
    shutil.rmtree(copy / "cache")
    monkeypatch.setattr(loading, "SNAPSHOT_AFTER_READS", 13)
    monkeypatch.setattr(loading, "SNAPSHOT_AFTER_FILES", 64)
    assert len(metalab.load_results(copy)) == 12
    assert not journal_files(copy)
    monkeypatch.setattr(loading, "SNAPSHOT_AFTER_READS", 12)
    metalab.load_results(copy)
    (snapshot,) = journal_files(copy)
    assert snapshot.name.startswith("load-")
    # a snapshot that gives every record it holds stays: loads do not write another
    monkeypatch.setattr(journal, "IDLE_SECONDS", 0.0)
    for _ in range(2):
        assert all(isinstance(r, bytes) for r in metalab.load_results(copy)._source.entries)
    assert journal_files(copy) == [snapshot]


def test_damaged_or_untrusted_journals_cost_time_never_records(tmp_path, journaled):
    import pandas as pd

    store = tmp_path / "store"
    metalab.run(experiment(), store, executor="inline").result()
    expected = from_files(store).to_dataframe()
    (journal,) = journal_files(store)
    data = journal.read_bytes()

    journal.write_bytes(data[: len(data) - 100])  # cut short, as by a killed writer
    loaded = metalab.load_results(store)
    assert loaded._source.decoded
    pd.testing.assert_frame_equal(loaded.to_dataframe(), expected)

    journal.write_bytes(b"MLJ1" + os.urandom(4000))
    pd.testing.assert_frame_equal(metalab.load_results(store).to_dataframe(), expected)

    journal.write_bytes(data)
    assert not metalab.load_results(store)._source.decoded
    os.chmod(journal, 0o666)  # others could have written it: it vouches for nothing
    loaded = metalab.load_results(store)
    assert loaded._source.decoded
    pd.testing.assert_frame_equal(loaded.to_dataframe(), expected)


def test_a_journal_file_is_started_for_batches_worth_one(tmp_path, monkeypatch):
    from metalab import runs_table
    from metalab.stores.file import journal

    monkeypatch.setattr(runs_table, "available", lambda: False)  # loads read journals
    store = tmp_path / "store"
    metalab.run(experiment(), store, executor="inline").result()  # 12 runs in one task
    assert journal.MIN_FIRST_ENTRY > 12 and not journal_files(store)
    many = metalab.Experiment(
        name="many",
        version="1",
        context={},
        operation=fit,
        params=metalab.grid(learning_rate=RATES, optimizer=["adam", "sgd", "bad"]),
        seeds=metalab.seeds(base=3, replicates=2),
    )
    checked_result(metalab.run(many, store, executor="inline"))
    assert len(journal_files(store)) == 1
    loaded = metalab.load_results(store, "many")
    assert len(loaded) == 18 and all(isinstance(r, bytes) for r in loaded._source.entries)


def test_stores_that_cannot_keep_journals_run_and_load_the_same(tmp_path, journaled):
    store = tmp_path / "store"
    metalab.run(experiment(), store, executor="inline").result()
    expected = from_files(store).to_dataframe()
    # `cache/journal` is a file here, as a directory a store's writers cannot write would
    # refuse files: sweeps and loads work the same, without journals
    import shutil

    shutil.rmtree(store / "cache" / "journal")
    (store / "cache" / "journal").write_text("not a directory")
    handle = metalab.run(experiment("other", ("adam", "bad")), store, executor="inline")
    assert handle.status.completed == 6 and handle.status.failed == 6
    loaded = metalab.load_results(store, "fit")
    assert loaded._source.decoded
    import pandas as pd

    pd.testing.assert_frame_equal(loaded.to_dataframe(), expected)
    assert len(metalab.load_results(store)) == 24


@pytest.mark.parametrize("table", [True, False], ids=["runs-table", "journals"])
def test_records_changed_by_their_user_after_a_sweep_keep_their_rows_as_written(
    tmp_path, table, monkeypatch
):
    from metalab import runs_table
    from metalab.record import decode_record

    if not table:
        monkeypatch.setattr(runs_table, "available", lambda: False)
    store = tmp_path / "store"
    # 12 runs: fewer than a process starts a journal file for, so they wait for the next
    # sweep's; meanwhile their user has the very record dicts and may change them
    for name in ("first", "second"):
        results = metalab.run(experiment(name), store, executor="inline").result()
        for run in results:
            run.metrics["accuracy"] = 999.0
            run.params["optimizer"] = "changed"
            run.record["status"] = "cancelled"
    assert journal_files(store)
    loaded = metalab.load_results(store)
    assert len(loaded) == 24
    if not table:
        assert all(isinstance(r, bytes) for r in loaded._source.entries)
        decoded = [decode_record(b) for b in loaded._source.entries]
        assert [r["metrics"] for r in loaded._source.table_rows] == [r["metrics"] for r in decoded]
        assert [r["params"] for r in loaded._source.table_rows] == [r["params"] for r in decoded]
    assert loaded.records == from_files(store).records
    assert 999.0 not in loaded.to_dataframe()["accuracy"].tolist()
    assert "cancelled" not in loaded.summary()["by_status"]


def test_a_record_replaced_while_loading_is_never_paired_with_the_old_identity(
    tmp_path, journaled, monkeypatch
):
    from metalab.stores.file import loading

    store = tmp_path / "store"
    metalab.run(experiment(), store, executor="inline").result()
    shutil_rmtree(store / "cache")  # every record is read from its file
    run_id = metalab.load_results(store)[0].run_id
    path = FileStore(store).record_path(run_id)
    real = loading.read_with_stat

    def replaced_meanwhile(name):
        if name == str(path):  # another writer renames a new version into place
            replacement = path.with_name("replacement")
            replacement.write_text(path.read_text().replace('"completed"', '"cancelled"'))
            os.replace(replacement, path)
        return real(name)

    monkeypatch.setattr(loading, "read_with_stat", replaced_meanwhile)
    monkeypatch.setattr(loading, "SNAPSHOT_AFTER_READS", 1)
    loaded = metalab.load_results(store)
    assert loaded.filter().where(status="cancelled").records[0]["run_id"] == run_id
    assert len(journal_files(store)) == 1  # a snapshot of the other records
    monkeypatch.setattr(loading, "read_with_stat", real)
    # the snapshot left that record out (it knew the listed identity, not the one read)
    again = metalab.load_results(store)
    decoded = [r for r in again._source.entries if not isinstance(r, bytes)]
    assert [r["run_id"] for r in decoded] == [run_id]
    assert again.where(status="cancelled").records[0]["run_id"] == run_id


def test_journals_a_load_cannot_use_never_make_it_write_snapshots(tmp_path, journaled, monkeypatch):
    from metalab.stores.file import loading

    store = tmp_path / "store"
    metalab.run(experiment(), store, executor="inline").result()
    # a writer's journal still fresh, and a snapshot of the same records: the snapshot is
    # read first and gives everything; the fresh journal (not to be removed) changes nothing
    (writer,) = journal_files(store)
    monkeypatch.setattr(loading, "SNAPSHOT_AFTER_FILES", -1)
    metalab.load_results(store)
    monkeypatch.setattr(loading, "SNAPSHOT_AFTER_FILES", 64)
    snapshot = next(p for p in journal_files(store) if p.name.startswith("load-"))
    early = writer.with_name("0-listed-first.jnl")
    writer.rename(early)
    for _ in range(3):
        metalab.load_results(store)
    assert sorted(journal_files(store)) == sorted([early, snapshot])
    # records of another user: read from their files (no journal of ours vouches for them),
    # and never put in a snapshot of ours, which could not vouch for them either
    shutil_rmtree(store / "cache")
    for path in (store / "runs").rglob("*.json"):
        os.chown(path, 12345, 12345)
    monkeypatch.setattr(loading, "SNAPSHOT_AFTER_READS", 1)
    assert len(metalab.load_results(store)) == 12
    assert journal_files(store) == []


def test_journal_files_that_are_no_files_are_passed_over(tmp_path, journaled):
    store = tmp_path / "store"
    metalab.run(experiment(), store, executor="inline").result()
    directory = store / "cache" / "journal"
    os.mkfifo(directory / "a-fifo.jnl")  # opened for reading, it would block forever
    os.symlink("/dev/zero", directory / "b-endless.jnl")
    (directory / "c-directory.jnl").mkdir()
    loaded = metalab.load_results(store)
    assert len(loaded) == 12 and all(isinstance(r, bytes) for r in loaded._source.entries)


def shutil_rmtree(path):
    import shutil

    shutil.rmtree(path)


_kept_captures: list = []


@metalab.operation
def grows(params, capture):
    params["layers"].append(params["i"])  # changes the operation's own copy only
    params["cfg"]["seen"] = params["i"]
    capture.metric("width", len(params["layers"]))
    if _kept_captures:  # a capture kept from an earlier run, used after that run ended
        _kept_captures[0].metric("late", float(params["i"]))
    else:
        capture.metric("late", 0.0)
        _kept_captures.append(capture)


def test_what_operations_do_after_or_to_their_inputs_changes_no_record(tmp_path, journaled):
    import pandas as pd

    store = tmp_path / "store"
    _kept_captures.clear()
    exp = metalab.Experiment(
        name="grows",
        version="1",
        context={},
        operation=grows,
        params=metalab.grid(i=range(20), layers=[[64, 64]], cfg=[{"a": 1}]),
        seeds=metalab.seeds(base=0),
    )
    results = metalab.run(exp, store, executor="inline").result()
    # every run received the parameters its run id stands for, and its record holds them
    assert [r.params["layers"] for r in results] == [[64, 64]] * 20
    assert [r.params["cfg"] for r in results] == [{"a": 1}] * 20
    assert [r.metrics["width"] for r in results] == [3] * 20
    assert exp.params_at(5) == {"i": 5, "layers": [64, 64], "cfg": {"a": 1}}
    assert results[0].metrics["late"] == 0.0
    loaded = metalab.load_results(store)
    assert all(isinstance(r, bytes) for r in loaded._source.entries)
    plain = from_files(store)
    pd.testing.assert_frame_equal(loaded.to_dataframe(), plain.to_dataframe())
    assert loaded.records == plain.records
    assert loaded.where(late__gt=5).records == []


def test_a_loaded_results_shows_its_users_changes_however_it_was_loaded(tmp_path, journaled):
    store = tmp_path / "store"
    metalab.run(experiment(), store, executor="inline").result()
    for loaded in (metalab.load_results(store), from_files(store)):
        loaded.records[0]["metrics"]["accuracy"] = 12345.0
        loaded[1].params["optimizer"] = "changed"
        assert loaded.to_dataframe()["accuracy"][0] == 12345.0
        assert len(loaded.filter(optimizer="changed")) == 1
        assert "12345" in loaded.table()


def test_runs_sharing_an_index_load_in_one_order(tmp_path, journaled):
    store = tmp_path / "store"
    for values in (range(20), range(100, 120)):  # a grid changed without a new version
        exp = metalab.Experiment(
            name="tie",
            version="1",
            context={},
            operation=fit,
            params=metalab.grid(learning_rate=[0.1 * v for v in values], optimizer=["sgd"]),
            seeds=metalab.seeds(base=0),
        )
        metalab.run(exp, store, executor="inline").result()
    loaded, plain = metalab.load_results(store), from_files(store)
    assert all(isinstance(r, bytes) for r in loaded._source.entries)
    assert [r.run_id for r in loaded] == [r.run_id for r in plain]
    keys = [(r.index, r.run_id) for r in loaded]
    assert keys == sorted(keys) and len(set(r.index for r in loaded)) == 20


def test_a_journal_damaged_inside_a_record_gives_the_file_instead(tmp_path, journaled):
    import pandas as pd

    store = tmp_path / "store"
    metalab.run(experiment(), store, executor="inline").result()
    (journal,) = journal_files(store)
    data = bytearray(journal.read_bytes())
    at = data.rindex(b'"duration": ') + len(b'"duration": ')
    data[at] = ord("9") if data[at] != ord("9") else ord("8")  # one digit of a record
    journal.write_bytes(bytes(data))
    loaded = metalab.load_results(store)
    assert not any(isinstance(r, bytes) for r in loaded._source.entries)
    pd.testing.assert_frame_equal(loaded.to_dataframe(), from_files(store).to_dataframe())
    data[at - 5] = 0xFF  # not even UTF-8
    journal.write_bytes(bytes(data))
    assert len(metalab.load_results(store).records) == 12


def test_negative_positions_count_from_the_end_after_other_reads(tmp_path):
    store = tmp_path / "store"
    metalab.run(experiment(), store, executor="inline").result()
    for results in (metalab.load_results(store, "fit"), metalab.load_results(store)):
        n = len(results)
        first = results[0]  # read before: the runs after it are read a page at a time
        assert results[-1].run_id == results[n - 1].run_id
        assert results[-1].index == n - 1
        assert results[-n].run_id == first.run_id
        assert [r.run_id for r in (results[-2], results[-1])] == [
            r.run_id for r in results[n - 2 :]
        ]
        with pytest.raises(IndexError, match=f"run position {-n - 1} is out of range"):
            results[-n - 1]
    adam = metalab.load_results(store, "fit").filter(optimizer="adam")
    assert adam[0].params["optimizer"] == "adam"
    assert adam[-1].run_id == list(adam)[-1].run_id


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_selecting_a_metric_equal_to_nan_or_infinity_says_why_it_cannot(results, value):
    with pytest.raises(ValidationError, match=r"equals no metric value, so it selects nothing"):
        results.where(accuracy=value)
    with pytest.raises(ValidationError, match=r"equals no parameter value"):
        results.filter(learning_rate=value)
