"""A file store's runs table (`cache/table/runs.parquet`): what a load returns is always what
the records say, whatever the table holds; a damaged, foreign or untrusted table is ignored;
and results from the table equal results from the records, field by field."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from sweeps import indexed_experiment

import metalab
from metalab import runs_table
from metalab.record import encode_record
from metalab.results.columnar import Columnar
from metalab.store import FileStore
from metalab.stores.file import table as table_module
from metalab.stores.file import table_rows
from metalab.stores.file.records import RecordFiles

TABLE = Path("cache") / "table" / "runs.parquet"


@metalab.operation
def varied(params, seeds, capture):
    """Params and metrics of every kind a record may hold."""
    x = params["x"]
    capture.metric("score", x * 0.5)
    if x % 2:
        capture.metric("odd", x)  # a metric only some runs have
    capture.metric("loss", 1.0 / (x + 1), step=0)
    if x == 3:
        raise ValueError("three is unlucky")


def calm(params, capture):
    capture.metric("score", params["i"] * 0.5)


def varied_experiment(name="mix", version="1"):
    return metalab.Experiment(
        name=name,
        version=version,
        context={},
        operation=varied,
        params=metalab.grid(
            x=[0, 1, 2, 3, 4],
            label=["a", "b"],
            rate=[1, 2.5],  # ints and floats in one column
            flag=[True],
            shape=[[1, 2], None],  # a list, and None: JSON text in the table
        ),
        seeds=metalab.seeds(base=1, replicates=1),
    )


def from_records(store: Path, experiment=None):
    """What a load gives when every record is read from its file (no table, no journal)."""
    moved = store / "cache-set-aside"
    (store / "cache").rename(moved)
    try:
        return metalab.load_results(store, experiment)
    finally:
        if (store / "cache").exists():
            shutil.rmtree(store / "cache")
        moved.rename(store / "cache")


def assert_same_results(loaded, expected):
    """Two loads of the same runs agree on every field a user reads."""
    assert isinstance(loaded._source, Columnar)
    assert len(loaded) == len(expected)
    pd.testing.assert_frame_equal(loaded.to_dataframe(), expected.to_dataframe())
    assert loaded.table() == expected.table()
    assert loaded.summary() == expected.summary()
    assert [run.record for run in loaded] == [run.record for run in expected]
    assert [r for r in runs_table.rows(loaded.to_arrow())] == [
        {k: r[k] for k in (*runs_table.RECORD_COLUMNS, "params", "metrics")}
        for r in runs_table.rows(expected.to_arrow())
    ]


def settle(store: Path) -> None:
    """Date every directory of records back a minute, as if the sweep had ended then (a
    table notes only directories that changed well before it was made)."""
    past = time.time() - 60
    for directory in (store / "runs").iterdir():
        os.utime(directory, (past, past))


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "store"
    with pytest.warns(metalab.RunsFailedWarning):
        metalab.run(varied_experiment(), path, executor="inline").result()
    with pytest.warns(metalab.RunsFailedWarning):
        metalab.run(varied_experiment("other", "2"), path, executor="threads").result()
    return path


def test_results_from_the_table_equal_results_from_the_records(store):
    first = metalab.load_results(store)  # from the journals and the records
    settle(store)
    metalab.load_results(store)  # notes the settled directories
    again = metalab.load_results(store)  # from the table alone
    expected = from_records(store)
    for loaded in (first, again):
        assert_same_results(loaded, expected)
    # selections agree too
    for selection in (None, "mix", "other:2", "nothing"):
        assert_same_results(metalab.load_results(store, selection), from_records(store, selection))
    assert_same_results(again.filter(label="a", rate=2.5), expected.filter(label="a", rate=2.5))
    assert_same_results(again.where(odd__ge=1), expected.where(odd__ge=1))
    assert_same_results(again.failed, expected.failed)
    assert_same_results(again.filter(shape=[1, 2]), expected.filter(shape=[1, 2]))
    assert again.failed[0].error["message"] == "three is unlucky"
    series = again.metric_series("loss")
    pd.testing.assert_frame_equal(series, expected.metric_series("loss"))
    pd.testing.assert_frame_equal(again.metric_series(), expected.metric_series())
    assert len(series) == len(again)  # one step per run
    # the stepped metrics came from the table, not from the records
    assert again._source._records is None


@pytest.mark.parametrize("settled", [False, True], ids=["just-written", "settled"])
def test_a_record_changed_added_or_removed_after_the_table_is_what_a_load_returns(store, settled):
    if settled:
        settle(store)
    else:  # a table that notes no directory
        FileStore.open(store).table_file()
    metalab.load_results(store)
    assert (store / TABLE).is_file()
    fs = FileStore.open(store, create=False)
    records = {r["run_id"]: r for r in fs.iter_records()}
    changed, removed, *_ = sorted(records)
    # rewritten through the store
    record = dict(records[changed], metrics={"score": 123.0})
    fs.put_record(record)
    # removed by hand
    os.remove(fs.record_path(removed))
    # added: a new run's record
    added = dict(records[changed], run_id="f" * 32, index=99, metrics={"score": -1.0})
    fs.put_record(added)
    loaded = metalab.load_results(store)
    by_id = {run.run_id: run for run in loaded}
    assert by_id[changed].metrics == {"score": 123.0}
    assert removed not in by_id
    assert by_id["f" * 32].metrics == {"score": -1.0}
    frame = loaded.to_dataframe().set_index("run_id")
    assert frame.loc[changed, "score"] == 123.0 and frame.loc["f" * 32, "score"] == -1.0
    assert removed not in frame.index
    assert_same_results(loaded, from_records(store))


def test_a_record_replaced_by_hand_is_seen(store):
    settle(store)
    metalab.load_results(store)
    metalab.load_results(store)
    fs = FileStore.open(store, create=False)
    record = next(fs.iter_records())
    path = fs.record_path(record["run_id"])
    edited = dict(record, status="failed", error={"type": "Edited", "message": "by hand"})
    tmp = path.with_suffix(".edit")
    tmp.write_bytes(encode_record(edited))
    os.replace(tmp, path)  # what editors and rsync do: a new file renamed over the old
    loaded = metalab.load_results(store)
    run = next(r for r in loaded if r.run_id == record["run_id"])
    assert run.status == "failed" and run.error["type"] == "Edited"
    assert loaded.summary() == from_records(store).summary()


def test_a_directory_changed_in_the_tick_the_table_was_made_is_listed_again(store):
    import pyarrow.parquet as pq

    def noted():
        return json.loads(pq.read_schema(store / TABLE).metadata[b"metalab.shards"])

    settle(store)
    fs = FileStore.open(store, create=False)
    record = next(fs.iter_records())
    fs.put_record(dict(record, metrics={"score": 7.0}))  # its directory changes now
    metalab.load_results(store)
    shard = record["run_id"][:2]
    # the others changed a minute ago; this one just now: the table does not vouch for it
    assert shard not in noted() and len(noted()) == len(list((store / "runs").iterdir())) - 1
    fs.put_record(dict(record, metrics={"score": 8.0}))  # possibly in the same clock tick
    loaded = metalab.load_results(store)
    assert next(r for r in loaded if r.run_id == record["run_id"]).metrics == {"score": 8.0}
    settle(store)
    metalab.load_results(store)
    assert sorted(noted()) == sorted(p.name for p in (store / "runs").iterdir())


@pytest.mark.parametrize(
    "damage",
    [
        "garbage",
        "truncated",
        "foreign-parquet",
        "other-store",
        "others-may-write",
        "bad-run-ids",
        "uppercase-run-ids",
    ],
)
def test_a_damaged_or_foreign_table_is_never_trusted(store, tmp_path, damage):
    import pyarrow as pa
    import pyarrow.parquet as pq

    settle(store)
    metalab.load_results(store)
    metalab.load_results(store)
    path = store / TABLE
    expected = from_records(store)
    if damage == "garbage":
        path.write_bytes(b"PAR1 not a table at all")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "foreign-parquet":
        pq.write_table(pa.table({"run_id": ["0" * 32], "status": ["completed"]}), path)
    elif damage == "other-store":
        # the table of another store, whose directories have the same names (and a run of
        # its own): its rows name files that are not these
        other = tmp_path / "other"
        metalab.run(varied_experiment("third"), other, executor="inline")
        FileStore.open(other).table_file()
        shutil.copy(other / TABLE, path)
    elif damage == "others-may-write":
        table = pq.read_table(path)
        status = pa.array(["completed"] * table.num_rows)
        index = table.schema.get_field_index("status")
        table = table.set_column(index, table.schema.field("status"), status)
        pq.write_table(table, path)
        os.chmod(path, 0o666)
    elif damage == "bad-run-ids":
        table = pq.read_table(path)
        ids = pa.array(["../../../../escape"] * table.num_rows)
        table = table.set_column(0, table.schema.field("run_id"), ids)
        pq.write_table(table, path)
    elif damage == "uppercase-run-ids":
        table = pq.read_table(path)
        ids = pa.array([run_id.upper() for run_id in table.column("run_id").to_pylist()])
        table = table.set_column(0, table.schema.field("run_id"), ids)
        pq.write_table(table, path)
    # deciding which runs are left agrees with the records
    opened = FileStore.open(store)
    done = opened.completed_run_ids()
    assert {done[at : at + 16].hex() for at in range(0, len(done), 16)} == {
        run.run_id for run in expected if run.status == "completed"
    }
    loaded = metalab.load_results(store)
    assert_same_results(loaded, expected)


def test_a_store_this_user_cannot_write_loads_without_a_table(store):
    if os.geteuid() == 0:
        pytest.skip("root writes any directory")
    os.chmod(store, 0o555)
    try:
        assert_same_results(metalab.load_results(store), from_records(store))
    finally:
        os.chmod(store, 0o755)


def test_to_arrow_and_the_table_file_read_by_pandas(store):
    import pyarrow.parquet as pq

    loaded = metalab.load_results(store)
    arrow = loaded.to_arrow()
    assert arrow.num_rows == len(loaded)
    assert set(arrow.column_names) >= {"run_id", "status", "param_x", "score"}
    path = metalab.table_path(store)
    assert Path(path) == store / TABLE
    frame = pd.read_parquet(path)
    assert sorted(frame["run_id"]) == sorted(run.run_id for run in loaded)
    # the store's own bookkeeping columns start with "_"
    assert {c for c in frame.columns if c.startswith("_")} == {
        "_inode",
        "_mtime_ns",
        "_size",
        "_series",
    }
    # each run's stepped metrics, as JSON text
    assert json.loads(frame["_series"][0]) == loaded[0].record["series"]
    assert pq.read_schema(path).field("param_shape").metadata[b"json"] == b"1"


def test_runs_without_times_load_from_journals(tmp_path, monkeypatch):
    # cancelled runs have no start or finish: columns of nulls only, taken from a journal
    from metalab.stores.file import journal

    monkeypatch.setattr(journal, "MIN_FIRST_ENTRY", 1)
    path = tmp_path / "store"
    fs = FileStore.open(path)
    exp = varied_experiment()
    for index, run_id in enumerate(exp.run_ids()):
        fs.put_record(
            {
                "format": "metalab.run/1",
                "run_id": run_id,
                "experiment_id": exp.experiment_id,
                "index": index,
                "replicate": 0,
                "status": "cancelled",
                "params": exp.params_at(index),
                "metrics": {},
                "series": {},
                "duration": None,
                "started_at": None,
                "finished_at": None,
            }
        )
    fs.flush_journal()
    assert list((path / "cache" / "journal").iterdir())
    loaded = metalab.load_results(path)
    assert loaded.summary()["by_status"] == {"cancelled": exp.total_runs}
    assert_same_results(loaded, from_records(path))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_loaded_results_hold_no_file_of_the_store_open(store):
    def held():
        found = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith(str(store)):
                found.append(target)
        return sorted(found)

    settle(store)
    # (the sweep that made the store keeps the store's directory open, to write its runs)
    before = held()
    metalab.load_results(store)
    kept = [metalab.load_results(store) for _ in range(3)]  # from the table file
    assert all(len(results) == 80 for results in kept)
    assert held() == before


def test_a_resume_decides_from_a_current_table_what_a_listing_would(store, monkeypatch):
    settle(store)
    metalab.load_results(store)  # the table notes the settled directories
    opened = FileStore.open(store)
    done = opened.completed_run_ids()
    listed = {run_id for run_id in opened.scan()[1]}
    assert {done[at : at + 16].hex() for at in range(0, len(done), 16)} == listed

    def no_listing(self):
        raise AssertionError("the records were listed although the table is current")

    monkeypatch.setattr(FileStore, "scan", no_listing)
    monkeypatch.setattr(RecordFiles, "completed_ids", no_listing)
    # x == 3 fails in every case: exactly those runs are left, the others are skipped
    handle = metalab.run(varied_experiment(), store, executor="inline")
    with pytest.warns(metalab.RunsFailedWarning):
        results = handle.result()
    exp = varied_experiment()
    failed = [i for i in range(exp.total_runs) if exp.params_at(i)["x"] == 3]
    assert handle.status.skipped == exp.total_runs - len(failed)
    assert [r.status for r in results].count("failed") == len(failed)


def test_a_record_written_after_the_table_makes_it_stale_for_deciding(store):
    settle(store)
    metalab.load_results(store)
    opened = FileStore.open(store)
    assert table_module.completed_ids(opened._layout) is not None  # the table is current
    # a run completes after the table was made: its directory changes, the table is not used
    exp = varied_experiment()
    failed = next(i for i in range(exp.total_runs) if exp.params_at(i)["x"] == 3)
    record = opened.get_record(exp.run_id(failed))
    record.update(status="completed", error=None)
    opened.put_record(record)
    assert table_module.completed_ids(opened._layout) is None
    done = opened.completed_run_ids()  # from the records
    assert {done[at : at + 16].hex() for at in range(0, len(done), 16)} == opened.scan()[1]
    assert exp.run_id(failed) in opened.scan()[1]


def test_a_record_two_journals_hold_is_loaded_once_from_them(tmp_path, monkeypatch):
    path = tmp_path / "store"
    with pytest.warns(metalab.RunsFailedWarning):
        metalab.run(varied_experiment(), path, executor="inline").result()
    journals = sorted((path / "cache" / "journal").glob("*.jnl"))
    assert journals
    for kept in journals:  # each record now in two journals alike
        shutil.copy(kept, kept.with_name(f"again-{kept.name}"))
    shutil.rmtree(path / "cache" / "table")
    read_from_files = []
    real = table_rows.from_files

    def counting(layout, wanted):
        read_from_files.append(wanted.num_rows)
        return real(layout, wanted)

    monkeypatch.setattr(table_module, "from_files", counting)
    loaded = metalab.load_results(path)
    assert read_from_files == [0]  # every row came from the journals, each once
    monkeypatch.undo()
    assert_same_results(loaded, from_records(path))


def test_a_store_loaded_before_its_first_sweep_loads_and_runs(tmp_path):
    path = tmp_path / "store"
    FileStore.open(path)
    # an empty store loads as an empty table of typed columns, which it caches
    empty = metalab.load_results(path)
    assert len(empty) == 0 and len(metalab.load_results(path, "mix:1")) == 0
    FileStore.open(path).table_file()
    cached = table_module._read(
        runs_table._pa().py_buffer((path / table_module.TABLE).read_bytes())
    )
    assert cached.schema.field("run_id").type == runs_table._pa().string()
    # a sweep after it, and its results
    with pytest.warns(metalab.RunsFailedWarning):
        results = metalab.run(varied_experiment(), path, executor="inline").result()
    assert len(results) == 40
    assert_same_results(metalab.load_results(path), from_records(path))


def test_an_empty_table_of_untyped_run_ids_is_ignored(tmp_path):
    # what an earlier metalab cached for a store loaded before its first sweep
    pa = runs_table._pa()
    path = tmp_path / "store"
    FileStore.open(path).table_file()
    file = path / table_module.TABLE
    cached = table_module._read(pa.py_buffer(file.read_bytes()))
    index = cached.schema.get_field_index("run_id")
    field = cached.schema.field(index).with_type(pa.null())
    untyped = cached.set_column(index, field, pa.nulls(0))
    import pyarrow.parquet as pq

    pq.write_table(untyped.replace_schema_metadata(cached.schema.metadata), file)
    with pytest.warns(metalab.RunsFailedWarning):
        results = metalab.run(varied_experiment(), path, executor="inline").result()
    assert len(results) == 40
    assert_same_results(metalab.load_results(path), from_records(path))


def test_a_load_right_after_a_sweep_writes_no_table_until_its_directories_settle(
    tmp_path, monkeypatch
):
    # every run comes from the journals and every directory changed a moment ago: a table
    # would note no directory, so it would save no later load anything
    from metalab.stores.file import journal

    monkeypatch.setattr(journal, "MIN_FIRST_ENTRY", 1)
    path = tmp_path / "store"
    experiment = indexed_experiment(calm, 40, "calm")
    results = metalab.run(experiment, path, executor="inline").result()
    assert len(results) == 40 and not results.failed
    assert not (path / TABLE).exists()
    assert list((path / "cache" / "journal").glob("*.jnl"))
    settle(path)
    loaded = metalab.load_results(path)
    assert (path / TABLE).is_file()
    assert_same_results(loaded, from_records(path))


@metalab.operation
def _one_metric_per_case(params, capture):
    capture.metric(f"m_{params['opt']}", float(params["i"]))


@pytest.mark.parametrize("executor", ["inline", None])
def test_columns_are_in_the_order_the_runs_first_have_them(tmp_path, executor):
    """Records are spread over shards and journals by run id: the table's parameter and
    metric columns still come in the order the runs, by index, first have them, load after
    load (as a table made from the records in order, a PostgreSQL store's, names them)."""
    exp = metalab.Experiment(
        name="order",
        version="1",
        context={},
        operation=_one_metric_per_case,
        params=metalab.manual([{"opt": o, "i": i} for i, o in enumerate("abcdefgh")]
                              + [{"opt": "a", "i": 8, "extra": 1}]),
        seeds=metalab.seeds(base=0),
    )  # fmt: skip
    expected = [f"m_{o}" for o in "abcdefgh"]
    frame = metalab.run(exp, tmp_path, executor=executor).result().to_dataframe()
    assert [c for c in frame.columns if c.startswith("m_")] == expected
    assert [c for c in frame.columns if c.startswith("param_")] == [
        "param_opt", "param_i", "param_extra"
    ]  # fmt: skip
    for _ in range(2):  # from the journals, then from the table file
        loaded = metalab.load_results(tmp_path)
        assert [c for c in loaded.to_dataframe().columns if c.startswith("m_")] == expected
        assert loaded.table().splitlines()[0].split()[5:13] == expected
