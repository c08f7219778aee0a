"""Claims in a PostgreSQL store end with their run: the record that completes a run deletes
its writer's claim in the same transaction, and claims left on completed runs are cleaned;
taking a claim, writing a log chunk or a manifest again (a retry) changes nothing."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from service_checks import postgres_sql as sql

from metalab import claims
from metalab.store import create_store

try:
    from metalab.stores import postgres
    from metalab.stores.postgres.encoding import sql_json
except ImportError:  # the postgres_server fixture skips (or fails) every test with the reason
    postgres = sql_json = None  # type: ignore[assignment]

pytestmark = pytest.mark.postgres


@pytest.fixture
def locator(postgres_locator):
    """The locator of a store in a fresh schema, dropped after the test (see conftest)."""
    return postgres_locator


@pytest.fixture
def store(postgres_store):
    return postgres_store


def record(run_id: str, status: str = "completed") -> dict:
    return {
        "format": "metalab.run/1",
        "run_id": run_id,
        "experiment_id": "exp:1",
        "index": 0,
        "status": status,
        "params": {},
        "metrics": {},
        "series": {},
        "artifacts": [],
    }


def claimed(store) -> list[str]:
    return [run_id for (run_id,) in sql(store, "SELECT run_id FROM {schema}.claims ORDER BY 1")]


def test_the_record_of_a_run_deletes_its_writers_claim(store):
    me = claims.owner("s")
    assert store.claim("r1", me) and store.claim("r2", me)
    store.put_record(record("r1"))
    assert claimed(store) == ["r2"]  # before any release
    store.release("r1")  # still fine afterwards
    assert claimed(store) == ["r2"]


def test_a_record_leaves_a_claim_its_writer_does_not_hold(store):
    other = create_store(store.locator)  # another process's view: it holds no claim
    assert store.claim("r1", claims.owner("s"))
    other.put_record(record("r1"))
    assert claimed(store) == ["r1"]


WRITE_THEN_DIE = """
import os, sys
from metalab import claims
from metalab.store import create_store
store = create_store(sys.argv[1])
assert store.claim("r1", claims.owner("s"))
store.put_record({"format": "metalab.run/1", "run_id": "r1", "experiment_id": "exp:1",
                  "index": 0, "status": "completed", "params": {}, "metrics": {},
                  "series": {}, "artifacts": []})
os._exit(0)  # killed between the record and the release
"""


def test_a_worker_killed_after_its_record_leaves_no_claim(store):
    subprocess.run([sys.executable, "-c", WRITE_THEN_DIE, store.locator], check=True)
    assert store.scan()[1] == {"r1"}
    assert claimed(store) == []


def test_a_new_sweep_cleans_claims_left_on_completed_runs(store):
    dead = {"host": "elsewhere", "pid": 1, "start": 1, "session": "old"}
    for run_id in ("done_stale", "done_fresh", "running_stale"):
        sql(
            store,
            "INSERT INTO {schema}.claims (run_id, owner, heartbeat_at)"
            " VALUES (%s, %s::jsonb, now() - make_interval(secs => %s))",
            (run_id, sql_json(dead), 0 if run_id == "done_fresh" else 10_000),
        )
    store.put_record(record("done_stale"))
    store.put_record(record("done_fresh"))
    store.put_record(record("running_stale", status="failed"))
    store.write_manifest("exp:1", {"experiment_id": "exp:1", "session": "new"})
    # a completed run's claim goes once its lease is over; an unfinished run's claim stays
    # (it is taken over when the run is claimed again)
    assert claimed(store) == ["done_fresh", "running_stale"]


def test_a_claim_taken_again_with_its_token_is_won_again(store):
    owner = store._owner_json(claims.owner("s"))
    token = str(uuid.uuid4())
    assert store._claim_once("r1", owner, token)
    assert store._claim_once("r1", owner, token)  # a retry after a lost acknowledgement
    assert not store._claim_once("r1", owner, str(uuid.uuid4()))  # another claim of ours
    assert claimed(store) == ["r1"]


def test_a_log_chunk_appended_again_is_kept_once(store):
    chunk_id = str(uuid.uuid4())
    for _ in range(2):
        store._db.execute(store._sql.append_log, ("r1", b"one line\n", chunk_id))
    store._db.execute(store._sql.append_log, ("r1", b"one line\n", str(uuid.uuid4())))
    assert store.read_log("r1") == "one line\none line\n"


def test_a_manifest_written_again_is_kept_once(store):
    manifest = {"experiment_id": "exp:1", "session": "s", "submitted_at": "2026-01-01"}
    first = store.write_manifest("exp:1", manifest)
    assert store.write_manifest("exp:1", manifest) == first
    assert len(store.manifests("exp:1")) == 1
    store.write_manifest("exp:1", manifest | {"session": "t"})
    assert len(store.manifests("exp:1")) == 2


def test_a_store_of_schema_version_1_is_migrated(locator):
    store = create_store(locator)
    sql(store, "DROP INDEX {schema}.logs_chunk")
    sql(store, "ALTER TABLE {schema}.logs DROP COLUMN chunk_id")
    sql(store, "ALTER TABLE {schema}.claims DROP COLUMN token")
    sql(store, "UPDATE {schema}.store_meta SET version = 1")
    store.close()
    store = create_store(locator)
    assert sql(store, "SELECT version FROM {schema}.store_meta") == [(postgres.SCHEMA_VERSION,)]
    assert store.claim("r1", claims.owner("s"))
    log = store.open_log("r1")
    log.write("line\n")
    log.close()
    store.put_record(record("r1"))
    assert claimed(store) == [] and store.read_log("r1") == "line\n"
