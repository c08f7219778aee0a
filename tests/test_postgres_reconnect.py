"""A PostgreSQL restart of a few seconds costs a sweep, a worker or a notebook nothing but time.

These tests stop and start the real test server (a Debian cluster, through `pg_ctlcluster`);
the server is always started again, whatever happens in the test.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import shutil
import subprocess
import threading
import time
import uuid

import pytest
from service_checks import POSTGRES_URL, missing_service

import metalab
from metalab import claims
from metalab.store import FallbackStore, create_store

try:
    import psycopg

    from metalab.stores import postgres
    from metalab.stores.postgres import pool
except ImportError:  # the postgres_server fixture skips (or fails) every test with the reason
    psycopg = None  # type: ignore[assignment]
    postgres = pool = None  # type: ignore[assignment]

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

DOWN_SECONDS = 2.0


# ---------------------------------------------------------------- the server
@pytest.fixture(scope="module")
def cluster(postgres_server) -> tuple[str, str]:
    """The (version, name) of the local Debian cluster serving the test server."""
    if shutil.which("pg_ctlcluster") is None or shutil.which("pg_lsclusters") is None:
        missing_service("pg_ctlcluster is not installed: the test server cannot be restarted")
    params = psycopg.conninfo.conninfo_to_dict(postgres_server)
    if str(params.get("host", "localhost")) not in ("127.0.0.1", "localhost", "::1"):
        missing_service(f"the test server {postgres_server} is not on this machine")
    port = str(params.get("port", "5432"))
    listed = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True)
    for line in listed.stdout.splitlines():
        version, name, cluster_port, status, *_ = line.split()
        if cluster_port == port and status.startswith("online"):
            return version, name
    missing_service(f"no online cluster on port {port} in pg_lsclusters: {listed.stdout!r}")
    raise AssertionError("unreachable")


def _ctl(cluster: tuple[str, str], action: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, action],
        check=True,
        capture_output=True,
        timeout=120,
    )


def _online(cluster: tuple[str, str]) -> bool:
    listed = subprocess.run(["pg_lsclusters", "-h", *cluster], capture_output=True, text=True)
    return "online" in listed.stdout


@contextlib.contextmanager
def server_stopped(cluster: tuple[str, str]):
    """Stop the server for the `with` block; it is started again however the block ends."""
    _ctl(cluster, "stop")
    try:
        yield
    finally:
        if not _online(cluster):
            _ctl(cluster, "start")


def restart(cluster: tuple[str, str], down: float = DOWN_SECONDS) -> None:
    """Stop the server, keep it down for `down` seconds, start it again."""
    with server_stopped(cluster):
        time.sleep(down)


@pytest.fixture
def locator(postgres_server, cluster):
    schema = f"reconnect_{uuid.uuid4().hex[:12]}"
    yield f"{postgres_server}{'&' if '?' in postgres_server else '?'}schema={schema}"
    if not _online(cluster):  # a failed test must not leave the server down for others
        _ctl(cluster, "start")
    postgres.PostgresStore(postgres.parse_locator(f"{postgres_server}?schema={schema}")).drop()


def count(locator: str, query: str) -> int:
    """Run a `count(*)` query on a connection of its own; `{schema}` is the store's schema."""
    schema = postgres.parse_locator(locator).schema
    with psycopg.connect(POSTGRES_URL, connect_timeout=5) as conn:
        return conn.execute(query.replace("{schema}", f'"{schema}"')).fetchone()[0]


# ---------------------------------------------------------------- a sweep
@metalab.operation
def noted(params, context, capture):
    """Note each execution in the context's file, log one line, record one metric."""
    with open(context["executions"], "a") as fh:
        fh.write(f"{params['i']}\n")
    time.sleep(0.01)
    capture.log(f"run {params['i']}")
    capture.metric("i", params["i"])


def restart_when(locator: str, cluster, recorded: int, done: threading.Event, seen: list) -> None:
    """Restart the server once `recorded` runs have their record (or the sweep ended)."""
    while not done.is_set():
        try:
            seen_now = count(locator, "SELECT count(*) FROM {schema}.runs")
        except psycopg.Error:
            seen_now = 0  # the store is not created yet
        if seen_now >= recorded:
            seen.append(seen_now)
            restart(cluster)
            return
        time.sleep(0.1)


@pytest.mark.parametrize(("executor", "runs"), [(None, 1000), ("threads", 600)])
def test_a_sweep_survives_a_server_restart_and_records_every_run_once(
    locator, cluster, tmp_path, executor, runs
):
    executions = tmp_path / "executions"
    exp = metalab.Experiment(
        name="restarted",
        version="1",
        context={"executions": str(executions)},
        operation=noted,
        params=metalab.grid(i=list(range(runs))),
        seeds=metalab.seeds(base=0),
    )
    done, seen = threading.Event(), []
    restarter = threading.Thread(
        target=restart_when, args=(locator, cluster, runs * 3 // 10, done, seen)
    )
    restarter.start()
    try:
        results = metalab.run(exp, locator, executor=executor).result()
    finally:
        done.set()
        restarter.join()
    assert seen and seen[0] < runs, "the server was restarted while the sweep was writing"
    assert len(results) == runs
    assert collections.Counter(r.status for r in results) == {"completed": runs}
    executed = collections.Counter(executions.read_text().split())
    assert len(executed) == runs and set(executed.values()) == {1}, "each run ran once"
    store = create_store(locator)
    assert store.scan()[1] == set(exp.run_ids())
    assert {r["attempt"] for r in store.iter_records()} == {1}
    assert count(locator, "SELECT count(*) FROM {schema}.runs") == runs
    assert count(locator, "SELECT count(*) FROM {schema}.logs") == runs, "one log line per run"
    assert count(locator, "SELECT count(*) FROM {schema}.manifests") == 1
    assert count(locator, "SELECT count(*) FROM {schema}.claims") == 0


# ---------------------------------------------------------------- a long-lived store
def a_record(run_id: str) -> dict:
    return {
        "format": "metalab.run/1",
        "run_id": run_id,
        "experiment_id": "exp:1",
        "index": 0,
        "status": "completed",
        "params": {"lr": 0.1},
        "metrics": {"loss": 0.5},
        "series": {},
        "artifacts": [],
    }


def test_a_long_lived_store_keeps_working_after_a_restart(locator, cluster, monkeypatch):
    # no failure seen lately in this process: pooled connections are lent without a probe
    monkeypatch.setattr(pool, "_probe_until", [0.0])
    store = create_store(locator)
    store.put_record(a_record("r1"))
    log = store.open_log("r1")
    log.write("before\n")
    log.flush()
    restart(cluster)
    # a notebook's store object, idle during the restart: every call works on the first try
    assert store.get_record("r1") == a_record("r1")
    assert store.scan() == ({"r1"}, {"r1"})
    me = claims.owner("notebook")
    assert store.claim("r2", me)
    store.put_record(a_record("r2"))
    store.release("r2")
    log.write("after\n")
    log.close()
    assert store.read_log("r1") == "before\nafter\n"
    assert [r["run_id"] for r in store.iter_records()] == ["r1", "r2"]
    assert len(store.query_records("exp:1", status="completed")) == 2
    assert store.claims() == {}


def test_calls_made_while_the_server_is_down_wait_for_it(locator, cluster):
    store = create_store(locator)
    store.put_record(a_record("r1"))
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        with server_stopped(cluster):
            read = pool.submit(store.get_record, "r1")
            written = pool.submit(store.put_record, a_record("r2"))
            opened = pool.submit(create_store, locator)  # a worker opening the store now
            started = time.monotonic()
            with pytest.raises(metalab.StoreUnavailableError, match="after retrying for 1 s"):
                create_store(locator + "&reconnect_timeout=1")
            assert 1 <= time.monotonic() - started < 10
            time.sleep(DOWN_SECONDS)
            assert not (read.done() or written.done() or opened.done())
        assert read.result(timeout=60) == a_record("r1")
        assert written.result(timeout=60) is None
        assert opened.result(timeout=60).get_record("r2") == a_record("r2")


def test_a_server_down_longer_than_reconnect_timeout_is_an_error(locator, cluster):
    store = create_store(locator + "&reconnect_timeout=1")
    with server_stopped(cluster):
        started = time.monotonic()
        with pytest.raises(metalab.StoreUnavailableError) as caught:
            store.put_record(a_record("r1"))
        assert 1 <= time.monotonic() - started < 15
    message = str(caught.value)
    assert "cannot reach the PostgreSQL server" in message and "port" in message
    assert "still unreachable after retrying for 1 s" in message
    assert "reconnect_timeout" in message


def test_writes_resume_as_soon_as_a_server_down_for_long_is_back(locator, cluster):
    """After a long outage the pool's own reconnection schedule lags behind the server:
    writes must not wait for it."""
    store = create_store(locator)
    written: list[float] = []
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            store.put_record(a_record(f"r{i}"))
            written.append(time.monotonic())
            i += 1
            time.sleep(0.05)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        time.sleep(0.5)
        with server_stopped(cluster):
            time.sleep(20)
        back = time.monotonic()
        time.sleep(6)
    finally:
        stop.set()
        writer.join(timeout=60)
    assert not writer.is_alive()
    after = [t for t in written if t > back]
    assert after and after[0] - back < 3, "the first write after the restart waited"
    assert len(store.scan()[1]) == len(written)


def test_sync_after_a_restart_reaches_the_primary(locator, cluster, tmp_path, monkeypatch):
    monkeypatch.setattr(pool, "_probe_until", [0.0])  # no failure seen lately
    store = FallbackStore(locator, tmp_path / "fallback")
    taken = a_record(uuid.uuid4().hex)  # what the fallback took while the primary was down
    store.fallback.put_record(taken)
    assert store.primary.get_record(taken["run_id"]) is None  # the pool holds a connection
    restart(cluster)
    report = store.sync()
    assert report.records == 1
    assert create_store(locator).get_record(taken["run_id"]) == taken
