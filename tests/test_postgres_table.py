"""`PostgresStore.query_table`: the runs `query_records` selects, as a runs table read in bulk,
equal column by column (and dtype by dtype) to the table built from the records themselves."""

from __future__ import annotations

import math

import pytest
from service_checks import postgres_sql

from metalab import runs_table
from metalab.stores import postgres

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

pytestmark = pytest.mark.postgres


def record(i: int, params: dict, metrics: dict, experiment: str = "exp:1", **fields) -> dict:
    base = {
        "format": "metalab.run/1",
        "run_id": f"{experiment}-r{i:04d}",
        "experiment_id": experiment,
        "index": i,
        "case": i // 2,
        "replicate": i % 2,
        "status": "completed",
        "params": params,
        "metrics": metrics,
        "series": {},
        "artifacts": [],
        "error": None,
        "started_at": f"2026-01-01T00:00:{i % 60:02d}.000001+00:00",
        "finished_at": f"2026-01-01T00:01:{i % 60:02d}.500000+00:00",
        "duration": 60.5 + i / 7,
    }
    return base | fields


def canonical(value):
    """`value` with each number's type kept and NaN equal to itself, for comparing."""
    if isinstance(value, dict):
        return {key: canonical(v) for key, v in value.items()}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else repr(value))
    return (type(value).__name__, value)


def assert_same(store, experiment_id=None, **filters):
    """query_table gives what query_records does: the same frame, the same rows."""
    table = store.query_table(experiment_id, **filters)
    records = store.query_records(experiment_id, **filters)
    expected = runs_table.from_rows(records)
    # (a table that `checked` refuses is one runs_table builds from the records too)
    assert (runs_table.checked(table) is table) == (runs_table.checked(expected) is expected)
    pd.testing.assert_frame_equal(runs_table.frame(table), runs_table.frame(expected))
    rows = runs_table.rows(table)
    assert canonical(rows) == canonical(runs_table.rows(expected))
    for row, rec in zip(rows, records):  # the records' own values, field by field
        for name in ("params", "metrics"):
            assert row[name].keys() == rec[name].keys()
            for key, value in rec[name].items():
                assert row[name][key] == value or value != value  # NaN
    assert [row["run_id"] for row in rows] == [rec["run_id"] for rec in records]
    return table


VARIED = [
    record(
        0,
        {"zeta": 1, "alpha": 'quote " back \\ newline \n tab \t', "lr": 0.5, "mixed": 1},
        {"loss": 0.25, "acc": 1, "flag": True, "label": "ok"},
    ),
    record(
        1,
        {"zeta": 2, "alpha": "é 漢字 🙂", "lr": 1e-7, "mixed": 0.25, "none": None},
        {"loss": float("nan"), "acc": 0, "flag": False, "label": ""},
    ),
    record(
        2,
        {"zeta": -3, "alpha": "", "lr": 2.0, "mixed": 3, "list": [1, 2.5, "x", None]},
        {"loss": float("inf"), "acc": 2**40},
        status="failed",
        duration=None,
        error={"type": "RuntimeError", "message": "boom", "traceback": ""},
    ),
    record(
        3,
        {"alpha": "last", "zeta": 4, "dict": {"b": 1, "a": [2, {"c": None}]}, "flag": True},
        {"loss": 1e20, "acc": 7, "huge": -1.5e300, "tiny": 5e-324, "negzero": -0.0},
    ),
    record(4, {"zeta": 5, "alpha": "x", "lr": 0.1, "mixed": 2**53}, {}, status="cancelled"),
    record(5, {"zeta": 6, "alpha": "y", "lr": 0.3, "str_or_int": "7"}, {"str_or_int": 7}),
    record(6, {"zeta": 7, "alpha": "z", "lr": 0.3, "str_or_int": 7}, {"loss": -float("inf")}),
    record(7, {"zeta": 2**70, "alpha": "big", "lr": 0.3}, {"loss": 2.0}),
]


@pytest.fixture
def store(postgres_store):
    return postgres_store


def test_a_table_holds_what_the_records_hold_for_every_kind_of_value(store):
    for rec in VARIED:
        store.put_record(rec)
    table = assert_same(store)
    assert table.num_rows == len(VARIED)
    frame = runs_table.frame(table)
    # the record's order of names, not jsonb's
    assert list(frame.columns[8:12]) == ["param_zeta", "param_alpha", "param_lr", "param_mixed"]
    assert str(frame["param_lr"].dtype) == "float64"
    assert frame["param_alpha"][0] == 'quote " back \\ newline \n tab \t'
    assert frame["param_dict"][3] == {"b": 1, "a": [2, {"c": None}]}


def test_a_table_read_in_many_blocks_is_the_same(store, monkeypatch):
    for i in range(30):
        params = {"s": f'"{i}" \\ {i}' if i % 7 == 0 else str(i), "x": i if i % 3 else i / 2}
        metrics = {"ok": i % 2 == 0, "loss": float("nan") if i in (5, 27) else i / 3}
        store.put_record(record(i, params, metrics, experiment=f"plain:{i % 2}"))
    monkeypatch.setattr(postgres.table, "_BLOCK", 256)
    assert_same(store)  # runs read from their records (a NaN) among the others
    assert_same(store, "plain:0")  # every run tabled


def test_plain_columns_take_their_types(store):
    for i in range(4):
        store.put_record(
            record(
                i,
                {"gene": i, "lr": i / 4, "opt": ["adam", "sgd"][i % 2], "on": i % 2 == 0}
                | {"wide": [0.5, 2**60, 1, 2][i], "huge": [1, 2**64, 3, 4][i]},
                {"loss": 1 / (i + 1), "steps": 10 * i} if i != 2 else {"steps": 5},
            )
        )
    frame = runs_table.frame(assert_same(store))
    dtypes = {name: str(dtype) for name, dtype in frame.dtypes.items()}
    assert dtypes["param_gene"] == "int64" and dtypes["param_lr"] == "float64"
    assert dtypes["param_on"] == "bool" and dtypes["steps"] == "int64"
    # ints a float64 or int64 column cannot hold exactly: JSON keeps them
    assert frame["param_wide"].tolist() == [0.5, 2**60, 1, 2]
    assert frame["param_huge"].tolist() == [1, 2**64, 3, 4]
    assert math.isnan(frame["loss"][2])


def test_filters_select_in_the_database_as_query_records_does(store):
    for rec in VARIED:
        store.put_record(rec)
    for i in range(6):
        store.put_record(
            record(i, {"gene": i % 3, "opt": "adam"}, {"loss": i / 10}, experiment="other:2")
        )
    assert_same(store, "exp:1")
    assert assert_same(store, "other:2").num_rows == 6
    assert assert_same(store, params={"gene": 1}).num_rows == 2
    assert assert_same(store, params={"gene": 1}, metric_filters=[("loss", ">", 0.2)]).num_rows == 1
    assert assert_same(store, metric_filters=[("loss", "<", 0.3)]).num_rows == 5
    assert assert_same(store, status="failed").num_rows == 1
    assert assert_same(store, params={"dict": {"b": 1, "a": [2, {"c": None}]}}).num_rows == 1
    assert assert_same(store, "exp:1", params={"zeta": 7}, status="completed").num_rows == 1
    assert assert_same(store, params={"zeta": 2**70}).num_rows == 1


def test_no_runs_make_an_empty_table(store):
    assert assert_same(store).num_rows == 0
    store.put_record(record(0, {"a": 1}, {"m": 1.0}))
    assert assert_same(store, params={"a": 2}).num_rows == 0
    assert assert_same(store, "missing:1").num_rows == 0
    assert assert_same(store, metric_filters=[("m", ">", 5)]).num_rows == 0


def test_names_the_first_runs_lack_are_read_too(store):
    # the runs the store samples for names have only `a`: `b` and `late` come later
    for i in range(postgres.table.SAMPLE + 20):
        params = {"a": i} if i < postgres.table.SAMPLE + 10 else {"b": i, "a": i}
        # `m` is a number in the sample, a string later: its column holds JSON text
        metrics = {"m": 0.5} if i != postgres.table.SAMPLE + 15 else {"late": "yes", "m": "1.5"}
        store.put_record(record(i, params, metrics))
    frame = runs_table.frame(assert_same(store))
    assert list(frame.columns[8:]) == ["param_a", "param_b", "m", "late"]
    assert frame["m"].tolist()[-6:-4] == [0.5, "1.5"]


def test_metric_names_that_clash_with_columns_are_prefixed(store):
    store.put_record(record(0, {"status": "p", "x": 1}, {"status": 1.0, "_x": 2, "param_x": 3}))
    frame = runs_table.frame(assert_same(store))
    assert {"param_status", "metric_status", "metric__x", "metric_param_x"} <= set(frame.columns)


def test_records_the_columns_cannot_hold_exactly_are_read_from_the_record(store):
    store.put_record(record(0, {"a": 1}, {"loss": 0.5, "when": "NaN"}))
    store.put_record(record(1, {"a": 2.5}, {"loss": float("nan"), "when": "Infinity"}))
    store.put_record(record(2, {"a": 3}, {"loss": 1e16}, duration=3, replicate=None))
    store.put_record(record(3, {"a": "\x00"}, {"loss": 0.25}, experiment_id="exp:1"))
    table = assert_same(store)
    frame = runs_table.frame(table)
    assert str(frame["duration"].dtype) == "float64"  # 3 (an int) among floats
    assert frame["when"][:2].tolist() == ["NaN", "Infinity"] and frame["when"][2:].isna().all()
    assert math.isnan(frame["loss"][1]) and frame["loss"][2] == 1e16


def test_runs_written_before_the_table_columns_are_read_from_their_records(store):
    for rec in VARIED:
        store.put_record(rec)
    store.put_record(record(9, {"zeta": 8}, {"acc": 3}, index=None, duration=1))
    postgres_sql(
        store,
        "UPDATE {schema}.runs SET tabled = false, replicate = NULL, duration = NULL,"
        " started_at = NULL, finished_at = NULL, param_shape = NULL, metric_shape = NULL"
        " WHERE run_index % 2 = 0 OR run_index IS NULL",
    )
    assert_same(store)
    assert_same(store, params={"zeta": 8})
    postgres_sql(store, "UPDATE {schema}.runs SET tabled = false")
    assert_same(store)


def test_a_record_rewritten_replaces_its_row_in_the_table(store):
    store.put_record(record(0, {"a": 1}, {"loss": float("nan")}))
    store.put_record(record(0, {"a": 1}, {"loss": 0.5}))
    frame = runs_table.frame(assert_same(store))
    assert frame["loss"].tolist() == [0.5]


def test_a_store_of_schema_version_2_is_migrated_and_its_runs_read_from_their_records(
    postgres_locator,
):
    store = postgres.PostgresStore.open(postgres_locator)
    for rec in VARIED:
        store.put_record(rec)
    postgres_sql(
        store,
        "ALTER TABLE {schema}.runs DROP COLUMN replicate, DROP COLUMN duration,"
        " DROP COLUMN started_at, DROP COLUMN finished_at, DROP COLUMN param_shape,"
        " DROP COLUMN metric_shape, DROP COLUMN tabled",
    )
    postgres_sql(store, "UPDATE {schema}.store_meta SET version = 2")
    store.close()
    store = postgres.PostgresStore.open(postgres_locator)
    assert postgres_sql(store, "SELECT version FROM {schema}.store_meta") == [
        (postgres.SCHEMA_VERSION,)
    ]
    assert_same(store)
    store.put_record(record(20, {"zeta": 9, "alpha": "new"}, {"loss": 0.125}))
    assert_same(store)
    assert_same(store, params={"alpha": "new"})


def test_line_breaks_and_values_of_megabytes_are_read_whole(store):
    store.put_record(record(0, {"text": "x" * 5_000_000}, {"m": 1}, started_at="a\nb\r\nc"))
    store.put_record(record(1, {"text": "y"}, {"m": 2}, status="failed", finished_at="\n"))
    frame = runs_table.frame(assert_same(store))
    assert len(frame["param_text"][0]) == 5_000_000 and frame["started_at"][0] == "a\nb\r\nc"
