"""`PostgresStore`: locators, schema creation and migration, every contract method, artifacts in
the database or on disk, claims across processes, fork safety, and unreachable servers."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import pickle
import random
import re
import subprocess
import sys
import time
import uuid

import pytest
from service_checks import fresh_schema, with_options
from service_checks import postgres_sql as sql

import metalab
from metalab import claims
from metalab.store import create_store

try:
    from metalab.stores import postgres
    from metalab.stores.postgres import connection, pool
except ImportError:  # the postgres_server fixture skips (or fails) every test with the reason
    postgres = connection = pool = None  # type: ignore[assignment]

pytestmark = pytest.mark.postgres


@pytest.fixture
def locator(postgres_locator):
    """The locator of a store in a fresh schema, dropped after the test (see conftest)."""
    return postgres_locator


@pytest.fixture
def store(postgres_store):
    return postgres_store


QUOTED = 'it\'s "quoted"; DROP TABLE runs; --'


def record(run_id: str = "r1", status: str = "completed", **fields) -> dict:
    base = {
        "format": "metalab.run/1",
        "run_id": run_id,
        "experiment_id": "exp:1",
        "index": 0,
        "status": status,
        "params": {"lr": 0.1},
        "metrics": {"loss": 0.5},
        "series": {},
        "artifacts": [],
    }
    return base | fields


def dead_pid() -> int:
    code = "import os; print(os.getpid())"
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(done.stdout)


# ---------------------------------------------------------------- locators
def test_locator_holds_the_password_and_public_locator_does_not(postgres_server):
    location = postgres.parse_locator(
        "postgresql://ann:s3cr%40t@db.example:6543/lab?sslmode=prefer"
    )
    assert location.schema == "metalab"
    assert location.locator == (
        "postgresql://ann:s3cr%40t@db.example:6543/lab?sslmode=prefer&schema=metalab"
    )
    assert (
        location.public_locator
        == "postgresql://ann@db.example:6543/lab?sslmode=prefer&schema=metalab"
    )
    assert location.params["password"] == "s3cr@t"
    store = postgres.PostgresStore(location)
    assert "s3cr" not in repr(store) and "s3cr" not in store.public_locator
    hidden = postgres.parse_locator("postgresql://ann@h/db?password=hunter2&schema=x")
    assert "hunter2" in hidden.locator and "hunter2" not in hidden.public_locator


def test_locator_options_are_parsed_and_checked(postgres_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    location = postgres.parse_locator(
        "postgres://u@h/db?schema=my%20schema&artifact_root=arts&max_artifact_bytes=1000"
        "&pool_size=2&synchronous_commit=OFF"
    )
    assert location.schema == "my schema"
    assert location.artifact_root == str(tmp_path / "arts")
    assert (location.max_artifact_bytes, location.pool_size) == (1000, 2)
    assert location.synchronous_commit == "off"
    assert postgres.parse_locator(location.locator) == location  # the locator round-trips

    bad = {
        "schema=" + "s" * 64: "1 to 63 bytes",
        "pool_size=0": "pool_size='0'.*from 1 to 100",
        "max_artifact_bytes=big": "max_artifact_bytes='big'",
        "synchronous_commit=maybe": "maybe.*on, off, local",
        "schema=a&schema=b": "'schema' is given twice",
        "colour=blue": "colour.*schema, artifact_root, max_artifact_bytes",
        "reconnect_timeout=-1": "reconnect_timeout='-1'.*seconds from 0 to 86,400",
        "reconnect_timeout=nan": "reconnect_timeout='nan'",
        "reconnect_timeout=soon": "reconnect_timeout='soon'",
    }
    for query, message in bad.items():
        with pytest.raises(metalab.StoreError, match=message) as caught:
            postgres.parse_locator(f"postgresql://u:pw@h/db?{query}")
        assert isinstance(caught.value, metalab.ValidationError)  # a value metalab refuses
    for value in (None, 5):
        with pytest.raises(metalab.ValidationError, match=f"locator is a string, got {value}"):
            postgres.parse_locator(value)
    with pytest.raises(metalab.ValidationError, match="create must be True or False"):
        postgres.PostgresStore.open(f"{postgres_server}?schema=x", create="no")
    with pytest.raises(metalab.ValidationError, match=r"PostgresStore\.open\(locator\)"):
        postgres.PostgresStore(postgres_server)
    timed = postgres.parse_locator("postgresql://u@h/db?reconnect_timeout=2.5")
    assert timed.reconnect_timeout == 2.5
    assert postgres.parse_locator(timed.locator) == timed
    with pytest.raises(metalab.StoreError, match="not a postgresql") as caught:
        postgres.parse_locator("mysql://u:pw@h/db")
    assert "pw" not in str(caught.value)
    # a port that is no number was retried for 30 s as an unreachable server
    for port in ("notaport", "0", "70000", "5432,b:x"):
        with pytest.raises(metalab.ValidationError, match="is not a port number") as caught:
            postgres.parse_locator(f"postgresql://u:pw@127.0.0.1:{port}/db")
        assert "pw" not in str(caught.value)
    assert postgres.parse_locator("postgresql://u@a:5432,b:5433/db").params["port"] == "5432,5433"


def test_locator_reopens_the_store_in_another_process(store):
    store.put_record(record("r1"))
    code = (
        "import sys; from metalab.store import create_store; "
        "s = create_store(sys.argv[1], create=False); print(sorted(s.scan()[1]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, store.locator], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "['r1']"
    assert pickle.loads(pickle.dumps(store)).get_record("r1") == record("r1")


# ---------------------------------------------------------------- opening
def test_unreachable_server_fails_fast_naming_host_port_and_database(postgres_server):
    started = time.monotonic()
    with pytest.raises(metalab.StoreUnavailableError) as caught:
        create_store("postgresql://ann:pw@127.0.0.1:1/somedb?schema=x&reconnect_timeout=0")
    assert time.monotonic() - started < 5
    assert isinstance(caught.value, metalab.StoreError)
    message = str(caught.value)
    assert "host '127.0.0.1', port 1, database 'somedb'" in message
    assert "pw@" not in message


def test_unroutable_server_fails_within_connect_timeout(postgres_server):
    started = time.monotonic()
    with pytest.raises(metalab.StoreError, match=r"host '10\.255\.255\.1', port 5432"):
        create_store("postgresql://u@10.255.255.1/db?connect_timeout=1&reconnect_timeout=0")
    assert time.monotonic() - started < 5


def test_open_creates_the_schema_with_a_version_row(locator):
    with pytest.raises(metalab.StoreError, match="no metalab store in schema"):
        create_store(locator, create=False)
    store = create_store(locator)
    assert sql(store, "SELECT format, version FROM {schema}.store_meta") == [
        ("metalab.pgstore", postgres.SCHEMA_VERSION)
    ]
    assert create_store(locator, create=False).locator == store.locator  # reopening is quiet


def test_a_newer_store_version_is_refused(store, locator):
    sql(store, "UPDATE {schema}.store_meta SET version = 99")
    with pytest.raises(metalab.StoreFormatError, match="version 99"):
        create_store(locator)


def test_a_schema_holding_other_tables_is_not_taken_over(postgres_server):
    schema = fresh_schema()
    other = create_store(with_options(postgres_server, schema=fresh_schema()))
    try:
        sql(other, f'CREATE SCHEMA "{schema}"; CREATE TABLE "{schema}".mine (x int)')
        with pytest.raises(metalab.StoreError, match="already holds 1 tables"):
            create_store(with_options(postgres_server, schema=schema))
    finally:
        sql(other, f'DROP SCHEMA "{schema}" CASCADE')
        other.drop()


def test_a_schema_name_with_quotes_and_semicolons_works(postgres_server):
    schema = f'we"ird; DROP SCHEMA public; -- {uuid.uuid4().hex[:6]}'
    store = create_store(with_options(postgres_server, schema=schema.replace(" ", "%20")))
    try:
        assert store.schema == schema
        store.put_record(record())
        assert store.get_record("r1") == record()
    finally:
        store.drop()
    with pytest.raises(metalab.StoreError, match="no metalab store"):
        create_store(store.locator, create=False)
    store.drop()  # idempotent


# ---------------------------------------------------------------- experiments
def test_manifests_are_added_never_overwritten_and_listed_oldest_first(store):
    first = store.write_manifest("exp:1", {"n": 1, "note": QUOTED, "z": 0, "a": 1})
    store.write_manifest(QUOTED, {"n": 2})
    third = store.write_manifest("exp:1", {"n": 3, "nan": math.nan})
    assert first != third
    assert [m["n"] for m in store.manifests()] == [1, 2, 3]
    mine = store.manifests("exp:1")
    assert [m["n"] for m in mine] == [1, 3]
    assert list(mine[0]) == ["n", "note", "z", "a", "_file"]  # key order kept
    assert mine[0]["_file"] == first and math.isnan(mine[1]["nan"])
    assert [m["n"] for m in store.manifests(QUOTED)] == [2]


def test_experiment_blobs_are_saved_once(store):
    store.save_experiment("k1", b"\x00first")
    store.save_experiment("k1", b"second")
    assert store.load_experiment("k1") == b"\x00first"
    with pytest.raises(metalab.StoreError, match="no experiment 'k2'"):
        store.load_experiment("k2")


# ---------------------------------------------------------------- records
def test_put_record_replaces_and_scan_follows_the_status(store):
    assert store.scan() == (set(), set())
    assert store.get_record("r1") is None
    store.put_record(record("r1"))
    store.put_record(record("r2", status="failed"))
    assert store.scan() == ({"r1", "r2"}, {"r1"})
    store.put_record(record("r1", status="failed", metrics={}))
    store.put_record(record("r2"))
    assert store.scan() == ({"r1", "r2"}, {"r2"})
    assert store.get_record("r1")["metrics"] == {}
    assert sql(store, "SELECT count(*) FROM {schema}.runs") == [(2,)]


def test_records_come_back_exactly_as_written(store):
    written = record(
        "r1",
        params={"z": 1, "a": [1, {"b": None}], "s": "naïve \x00 " + QUOTED},
        metrics={"nan": math.nan, "inf": -math.inf, "big": 1e20, "zero": -0.0, "flag": True},
        series={"loss": {"steps": [0, 0, 5], "values": [1.5, math.nan, 2**70]}},
        provenance={"host": "h"},
    )
    store.put_record(written)
    back = store.get_record("r1")
    assert list(back) == list(written) and list(back["params"]) == ["z", "a", "s"]
    assert back["params"] == written["params"]
    metrics = back["metrics"]
    assert math.isnan(metrics["nan"]) and metrics["inf"] == -math.inf
    assert type(metrics["big"]) is float and math.copysign(1, metrics["zero"]) == -1
    assert metrics["flag"] is True
    assert back["series"]["loss"]["values"][2] == 2**70


def test_get_records_and_iter_records(store):
    for i in range(5):
        store.put_record(record(f"r{i}", experiment_id="a:1" if i % 2 else "b:1", index=i))
    wanted = ["r4", "missing", "r0", "r3"]
    assert [r["run_id"] for r in store.get_records(wanted)] == ["r4", "r0", "r3"]
    assert [r["run_id"] for r in store.iter_records()] == ["r1", "r3", "r0", "r2", "r4"]
    assert [r["run_id"] for r in store.iter_records("a:1")] == ["r1", "r3"]
    assert list(store.iter_records(QUOTED)) == []
    many = [f"r{i % 5}" for i in range(4500)]  # several batches
    assert len(list(store.get_records(many))) == 4500


def test_an_iteration_given_up_halfway_leaves_the_store_usable(store, monkeypatch):
    monkeypatch.setattr(connection, "BATCH", 2)
    for i in range(7):
        store.put_record(record(f"r{i}", index=i))
    for _ in range(6):  # more than the pool's connections
        records = store.iter_records()
        assert next(records)["run_id"] == "r0"
        records.close()
    assert len(list(store.iter_records())) == 7
    assert len(store.scan()[0]) == 7


def test_a_record_of_an_unknown_format_is_named(store):
    store.put_record(record("r1", format="metalab.run/99"))
    with pytest.raises(metalab.StoreFormatError, match=r"'r1'.*metalab\.run/99"):
        store.get_record("r1")
    with pytest.raises(metalab.StoreError, match="non-empty string 'run_id'"):
        store.put_record(record(run_id=""))


def test_query_records_filters_in_sql(store):
    for i in range(12):
        store.put_record(
            record(
                f"r{i:02}",
                experiment_id="a:1" if i < 10 else "b:1",
                index=i,
                status="completed" if i != 3 else "failed",
                params={"lr": [0.1, 0.01][i % 2], QUOTED: i % 3, "shape": [i % 2, 2]},
                metrics={"loss": i / 10, "ok": i % 4 == 0, QUOTED: math.nan if i == 4 else i},
            )
        )

    def ids(**kwargs):
        return [r["run_id"] for r in store.query_records(**kwargs)]

    assert ids(experiment_id="a:1", params={"lr": 0.01}) == ["r01", "r03", "r05", "r07", "r09"]
    assert ids(params={"lr": 0.1, QUOTED: 0}, metric_filters=[("loss", ">=", 0.4)]) == ["r06"]
    assert ids(params={"shape": [1, 2]}, status="completed") == ["r01", "r05", "r07", "r09", "r11"]
    assert ids(params={"shape": [1]}) == []  # lists match as a whole, not by containment
    assert ids(metric_filters=[("ok", "==", 1), ("loss", "<", 0.5)]) == ["r00", "r04"]
    assert ids(metric_filters=[(QUOTED, ">", 2.5), (QUOTED, "<=", 5)]) == ["r03", "r05"]
    assert ids(metric_filters=[("missing", ">", 0)]) == []
    assert ids(params={"lr": 1}) == []
    assert ids(experiment_id="b:1") == ["r10", "r11"]
    with pytest.raises(metalab.ValidationError, match=r"'~'.*<, <=, >, >=, =="):
        store.query_records(metric_filters=[("loss", "~", 1)])
    with pytest.raises(metalab.ValidationError, match="threshold must be a number"):
        store.query_records(metric_filters=[("loss", "<", "1")])
    with pytest.raises(metalab.FingerprintError, match="filter 'lr'"):
        store.query_records(params={"lr": math.nan})


def test_metric_views_for_sql_users(store):
    store.put_record(
        record(
            metrics={"loss": 0.5, "ok": True, "bad": math.nan},
            series={"acc": {"steps": [0, 10], "values": [0.25, math.inf]}},
        )
    )
    metrics = sql(store, "SELECT name, value FROM {schema}.run_metrics ORDER BY name")
    assert metrics == [("bad", None), ("loss", 0.5), ("ok", 1.0)]
    steps = sql(store, "SELECT name, position, step, value FROM {schema}.metric_steps")
    assert steps == [("acc", 0, 0, 0.25), ("acc", 1, 10, math.inf)]


# ---------------------------------------------------------------- artifacts
def test_artifacts_in_the_database_up_to_the_size_limit(postgres_server):
    store = create_store(
        with_options(postgres_server, schema=fresh_schema(), max_artifact_bytes=10)
    )
    try:
        ref = store.put_artifact("r1", "a.npy", b"\x00" * 10)
        assert ref == "artifacts/r1/a.npy"
        assert store.read_artifact(ref) == b"\x00" * 10
        store.put_artifact("r1", "a.npy", b"new")
        assert store.read_artifact(ref) == b"new"
        with pytest.raises(metalab.StoreError, match=r"'big\.bin' of run r1 is 11 bytes.*10 bytes"):
            store.put_artifact("r1", "big.bin", b"x" * 11)
        with pytest.raises(metalab.StoreError, match="missing"):
            store.read_artifact("artifacts/r1/big.bin")
        for bad in ("../etc/passwd", "artifacts/r1/../x", "artifacts/r1"):
            with pytest.raises(metalab.StoreError, match="not of the form"):
                store.read_artifact(bad)
        with pytest.raises(metalab.StoreError, match="cannot name a file"):
            store.put_artifact("r1", "../x", b"")
    finally:
        store.drop()


def test_artifacts_as_files_under_artifact_root(postgres_server, tmp_path):
    schema = fresh_schema()
    root = tmp_path / "arts"
    store = create_store(with_options(postgres_server, schema=schema, artifact_root=root))
    try:
        ref = store.put_artifact("r1", "big.bin", b"x" * 100)
        assert (root / ref).read_bytes() == b"x" * 100
        assert store.read_artifact(ref) == b"x" * 100
        without_root = create_store(with_options(postgres_server, schema=schema))
        with pytest.raises(metalab.StoreError, match=re.escape(f"artifact_root '{root}'")):
            without_root.read_artifact(ref)
        other = create_store(with_options(postgres_server, schema=fresh_schema()))
        try:
            with pytest.raises(metalab.StoreError, match="artifacts of another store"):
                create_store(with_options(other.locator, artifact_root=root))
        finally:
            other.drop()
        elsewhere = create_store(
            with_options(postgres_server, schema=schema, artifact_root=tmp_path / "unshared"),
            create=False,
        )
        with pytest.raises(metalab.StoreError, match="filesystem every worker sees"):
            elsewhere.put_artifact("r2", "a.bin", b"")
    finally:
        store.drop()


# ---------------------------------------------------------------- logs
def test_put_log_replaces_the_whole_log(store):
    log = store.open_log("r1")
    log.write("old line\n")
    log.close()
    store.put_log("r1", "copied \x00 line\nand another\n")
    assert store.read_log("r1") == "copied \x00 line\nand another\n"
    store.put_log("r1", "")
    assert store.read_log("r1") == ""
    assert sql(store, "SELECT count(*) FROM {schema}.logs") == [(0,)]


def _cut_pooled_connection(store) -> None:
    """Terminate the server session behind the store's one pooled connection."""
    with store._db.connection() as conn:
        pid = conn.info.backend_pid
    with store._db.direct_connection() as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = %s", (pid,)
        )


@pytest.mark.parametrize("reconnect", ["0", "30"])
def test_a_lost_connection_is_retried_or_reported_unavailable(locator, monkeypatch, reconnect):
    # no failure seen lately in this process: connections are lent without a probe
    monkeypatch.setattr(pool, "_probe_until", [0.0])
    store = create_store(with_options(locator, pool_size="1", reconnect_timeout=reconnect))
    store.put_record(record())
    _cut_pooled_connection(store)
    if reconnect == "0":
        with pytest.raises(metalab.StoreUnavailableError, match="cannot reach the PostgreSQL"):
            store.get_record("r1")
    else:
        assert store.get_record("r1") == record()  # retried on a new connection
    assert store.get_record("r1") == record()  # the pool replaces the lost connection


def test_logs_append_across_attempts(store):
    assert store.read_log("r1") == ""
    first = store.open_log("r1")
    first.write("one \x00 naïve\n")
    first.write("two\n")
    first.close()
    with pytest.raises(ValueError):
        first.write("late\n")
    second = store.open_log("r1")
    second.write("three\n")
    second.close()
    assert store.read_log("r1") == "one \x00 naïve\ntwo\nthree\n"


def test_a_log_sends_its_first_line_at_once_and_buffers_the_rest(store):
    log = store.open_log("r1")
    log.write("first\n")
    log.write("second\n")
    assert store.read_log("r1") == "first\n"
    log.flush()
    assert store.read_log("r1") == "first\nsecond\n"
    log.close()


# ---------------------------------------------------------------- claims
def test_claims_of_live_owners_hold_and_dead_ones_are_taken_over(store):
    me = claims.owner("s1")
    assert store.claim("r1", me)
    assert not store.claim("r1", claims.owner("s2"))  # this process is alive
    assert store.claims() == {"r1": me}
    assert store.claim_owner("r1") == me

    dead = {"host": me["host"], "pid": dead_pid(), "start": 1, "session": "gone"}
    sql(store, "INSERT INTO {schema}.claims (run_id, owner) VALUES ('r2', %s)", (json.dumps(dead),))
    assert store.claims() == {"r1": me}
    assert store.claim_owner("r2") == dead
    assert store.claim("r2", me)
    assert store.claim_owner("r2") == me

    remote = {"host": "elsewhere", "pid": 1, "start": 1, "session": "far"}
    assert store.claim("r3", remote)
    assert not store.claim("r3", me)  # its heartbeat is fresh
    sql(store, "UPDATE {schema}.claims SET heartbeat_at = now() - interval '1 hour'")
    assert store.claim("r3", me)

    for run_id in ("r1", "r2", "r3"):
        store.release(run_id)
        store.release(run_id)  # idempotent
    assert store.claims() == {}


def test_release_leaves_a_claim_someone_else_holds(store, locator):
    other = create_store(locator)
    remote = {"host": "elsewhere", "pid": 1, "start": 1, "session": "theirs"}
    assert other.claim("r1", remote)
    store.release("r1")  # never ours
    assert store.claim_owner("r1") == remote

    mine = claims.owner("mine")
    assert store.claim("r2", mine)
    # our lease lapsed and another host took the run over
    sql(
        store,
        "UPDATE {schema}.claims SET owner = %s, token = gen_random_uuid() WHERE run_id = 'r2'",
        (json.dumps(remote),),
    )
    store.release("r2")
    assert store.claim_owner("r2") == remote
    assert store.claim("r3", mine)
    create_store(locator).release("r3")  # another handle in this process releases ours
    assert store.claim_owner("r3") is None
    other.release("r1")


def test_heartbeat_keeps_a_held_claim_fresh(store):
    assert store.claim("r1", claims.owner("s"))
    sql(store, "UPDATE {schema}.claims SET heartbeat_at = now() - interval '1 hour'")
    store._touch("r1", store._held["r1"])
    age = sql(store, "SELECT extract(epoch FROM now() - heartbeat_at) FROM {schema}.claims")
    assert float(age[0][0]) < 60
    store.release("r1")


def _claim_all(locator: str, run_ids: list[str], barrier, results) -> None:
    store = create_store(locator, create=False)
    owner = claims.owner(f"claimant-{os.getpid()}")
    random.shuffle(run_ids)
    won = [run_id for run_id in run_ids if store.claim(run_id, owner)]
    barrier.wait(timeout=120)  # everyone has tried while the winners still hold their claims
    results.put(won)
    for run_id in won:
        store.release(run_id)


@pytest.mark.slow
def test_concurrent_claims_from_several_processes_have_one_winner_each(store):
    run_ids = [f"run-{i}" for i in range(300)]
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(4), context.Queue()
    workers = [
        context.Process(target=_claim_all, args=(store.locator, run_ids, barrier, results))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    won = [results.get(timeout=180) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert sorted(run_id for batch in won for run_id in batch) == sorted(run_ids)
    assert store.claims() == {}


def _use_after_fork(store, queue) -> None:
    store.put_record(record("child"))
    queue.put(sorted(store.scan()[0]))


def test_a_forked_child_opens_its_own_connections(store):
    store.put_record(record("parent"))
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_use_after_fork, args=(store, queue))
    child.start()
    assert queue.get(timeout=60) == ["child", "parent"]
    child.join(timeout=60)
    assert child.exitcode == 0
    # the parent's pooled connections survived the child's exit
    assert store.scan()[0] == {"child", "parent"}


# ---------------------------------------------------------------- control and derived metrics
def test_cancel_requests(store):
    assert not store.cancel_requested(QUOTED)
    store.request_cancel(QUOTED)
    store.request_cancel(QUOTED)
    assert store.cancel_requested(QUOTED)
    assert not store.cancel_requested("other")


def test_derived_metrics_are_replaced_whole(store):
    assert store.get_derived("r1") == {}
    store.put_derived("r1", {"a": {"value": 1.5}, "b": 2})
    store.put_derived("r1", {"b": math.inf, QUOTED: {"value": math.nan}})
    derived = store.get_derived("r1")
    assert list(derived) == ["b", QUOTED] and derived["b"] == math.inf
    assert math.isnan(derived[QUOTED]["value"])


# ---------------------------------------------------------------- parity with the file store
@metalab.operation
def parity_op(params, capture):
    capture.metric("loss", 1 / params["n"] if params["n"] else math.nan)
    capture.metric("curve", params["n"], step=0)
    capture.artifact("arr", list(range(params["n"])))
    capture.log(f"n={params['n']}")


def test_a_sweep_leaves_the_same_records_as_in_a_file_store(locator, tmp_path):
    exp = metalab.Experiment(
        name="parity",
        version="1",
        context={},
        operation=parity_op,
        params=metalab.grid(n=[0, 2], label=[QUOTED]),
        seeds=metalab.seeds(base=1, replicates=2),
    )
    in_files = metalab.run(exp, tmp_path / "files", executor="inline").result()
    in_postgres = metalab.run(exp, locator, executor="inline").result()
    volatile = ("started_at", "finished_at", "duration", "provenance")
    for a, b in zip(in_files, metalab.load_results(locator)):
        assert list(a.record) == list(b.record)
        assert json.dumps({k: a.record[k] for k in a.record if k not in volatile}) == json.dumps(
            {k: b.record[k] for k in b.record if k not in volatile}
        )
        assert a.artifact("arr") == b.artifact("arr")
        assert a.log.split(" ", 1)[1] == b.log.split(" ", 1)[1]
    assert len(in_postgres) == 4
