"""The PostgreSQL store's schema: its tables, how a store is created, migrated and dropped.

One store is one schema. Its `store_meta` row names the store format and schema version;
opening a store creates the schema or migrates it to `SCHEMA_VERSION`, under an advisory
lock so that many workers opening it at once create it once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from typing import Any

import psycopg
from psycopg import sql

from ...errors import StoreError, StoreFormatError
from .locator import PostgresLocation
from .statements import statements

STORE_FORMAT = "metalab.pgstore"
SCHEMA_VERSION = 3

# Migrations: _MIGRATIONS[v - 1] takes a store from schema version v - 1 to v.
_SCHEMA_V1 = (
    "CREATE TABLE {schema}.manifests ("
    " id bigserial PRIMARY KEY, experiment_id text NOT NULL,"
    " written_at timestamptz NOT NULL DEFAULT clock_timestamp(), manifest text NOT NULL)",
    "CREATE INDEX manifests_experiment ON {schema}.manifests (experiment_id, id)",
    "CREATE TABLE {schema}.experiments ("
    " key text PRIMARY KEY, blob bytea NOT NULL, saved_at timestamptz NOT NULL DEFAULT now())",
    'CREATE TABLE {schema}.runs (run_id text COLLATE "C" PRIMARY KEY,'
    ' experiment_id text COLLATE "C" NOT NULL, run_index bigint, status text NOT NULL,'
    " completed boolean NOT NULL, params jsonb NOT NULL, metrics jsonb NOT NULL,"
    " series jsonb NOT NULL, record text NOT NULL,"
    " written_at timestamptz NOT NULL DEFAULT now())",
    "CREATE INDEX runs_experiment ON {schema}.runs (experiment_id, run_index)",
    # runs worth finding by status are the few that did not complete; completed records,
    # nearly all writes, skip this index
    "CREATE INDEX runs_unfinished ON {schema}.runs (experiment_id, status) WHERE NOT completed",
    "CREATE INDEX runs_params ON {schema}.runs USING gin (params jsonb_path_ops)",
    'CREATE TABLE {schema}.artifacts (run_id text COLLATE "C" NOT NULL, filename text NOT NULL,'
    " size bigint NOT NULL, data bytea, artifact_root text,"
    " written_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (run_id, filename))",
    'CREATE TABLE {schema}.logs (id bigserial PRIMARY KEY, run_id text COLLATE "C" NOT NULL,'
    " written_at timestamptz NOT NULL DEFAULT clock_timestamp(), chunk bytea NOT NULL)",
    "CREATE INDEX logs_run ON {schema}.logs (run_id, id)",
    'CREATE TABLE {schema}.derived (run_id text COLLATE "C" PRIMARY KEY, document text NOT NULL,'
    " metrics jsonb NOT NULL, written_at timestamptz NOT NULL DEFAULT now())",
    # claims are coordination, not results: unlogged, so taking and releasing one never waits
    # for a WAL flush (after a server crash the table is empty, and runs are claimed afresh)
    'CREATE UNLOGGED TABLE {schema}.claims (run_id text COLLATE "C" PRIMARY KEY,'
    " owner jsonb NOT NULL, claimed_at timestamptz NOT NULL DEFAULT now(),"
    " heartbeat_at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE {schema}.cancel_requests ("
    " session text PRIMARY KEY, requested_at timestamptz NOT NULL DEFAULT now())",
    # a metric as a float8 for SQL comparisons: booleans are 0/1, NaN is NULL (so that, as in
    # Python, it satisfies no comparison), infinities are stored as the strings below
    "CREATE FUNCTION {schema}.metric_value(value jsonb) RETURNS double precision"
    " LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT CASE jsonb_typeof(value)"
    " WHEN 'number' THEN value::double precision"
    " WHEN 'boolean' THEN CASE WHEN value::boolean THEN 1.0 ELSE 0.0 END"
    " WHEN 'string' THEN CASE value #>> '{{}}'"
    " WHEN 'Infinity' THEN 'Infinity'::double precision"
    " WHEN '-Infinity' THEN '-Infinity'::double precision END END $$",
    "CREATE VIEW {schema}.run_metrics AS"
    " SELECT r.run_id, r.experiment_id, m.key AS name, {schema}.metric_value(m.value) AS value"
    " FROM {schema}.runs AS r CROSS JOIN LATERAL jsonb_each(r.metrics) AS m",
    "CREATE VIEW {schema}.metric_steps AS"
    " SELECT r.run_id, r.experiment_id, s.name, (p.position - 1)::integer AS position,"
    " p.step::bigint AS step, {schema}.metric_value(p.value) AS value"
    " FROM {schema}.runs AS r CROSS JOIN LATERAL jsonb_each(r.series) AS s(name, curve)"
    " CROSS JOIN LATERAL ROWS FROM (jsonb_array_elements(s.curve -> 'steps'),"
    " jsonb_array_elements(s.curve -> 'values')) WITH ORDINALITY AS p(step, value, position)",
)
# version 2: writes that can be retried safely (a log chunk and a claim carry their own id)
_SCHEMA_V2 = (
    "ALTER TABLE {schema}.logs ADD COLUMN chunk_id uuid",
    "CREATE UNIQUE INDEX logs_chunk ON {schema}.logs (chunk_id)",
    "ALTER TABLE {schema}.claims ADD COLUMN token uuid",
)
# version 3: the record's other table columns, so that a table of runs is read without parsing
# a record per run (`tabled`: these columns, `params` and `metrics` say exactly what the record
# does; the runs table reads the record of a run that is not tabled)
_SCHEMA_V3 = (
    "ALTER TABLE {schema}.runs ADD COLUMN IF NOT EXISTS replicate bigint,"
    " ADD COLUMN IF NOT EXISTS duration double precision,"
    " ADD COLUMN IF NOT EXISTS started_at text, ADD COLUMN IF NOT EXISTS finished_at text,"
    " ADD COLUMN IF NOT EXISTS param_shape text, ADD COLUMN IF NOT EXISTS metric_shape text,"
    " ADD COLUMN IF NOT EXISTS tabled boolean NOT NULL DEFAULT false",
)
_MIGRATIONS: tuple[tuple[str, ...], ...] = (_SCHEMA_V1, _SCHEMA_V2, _SCHEMA_V3)
assert len(_MIGRATIONS) == SCHEMA_VERSION


@dataclasses.dataclass(frozen=True)
class Meta:
    """The `store_meta` row: what a schema holds."""

    format: str
    version: int
    store_id: str


def prepare_store(conn: psycopg.Connection[Any], location: PostgresLocation, create: bool) -> Meta:
    """Return the meta of the store in `location`'s schema, creating the store (when
    `create`) or migrating it to `SCHEMA_VERSION` first. StoreError when the schema holds
    no store and `create` is False, or holds other objects; StoreFormatError when it holds
    another format or a newer version."""
    meta = _read_meta(conn, location.schema)
    if meta is None or meta.version < SCHEMA_VERSION:
        meta = _create_or_migrate(conn, location, create)
    _check_meta(meta, location)
    return meta


def drop_store(conn: psycopg.Connection[Any], schema: str) -> None:
    """Delete the store in `schema`: its tables, views and function, then the schema if it
    is empty (never `public`). Idempotent."""
    statement = statements(schema)
    with conn.transaction():
        conn.execute(statement.lock, (_lock_key(schema),))
        conn.execute(statement.drop_objects)
        if schema != "public":
            try:
                with conn.transaction():
                    conn.execute(statement.drop_schema)
            except psycopg.errors.DependentObjectsStillExist:
                pass  # the schema holds objects of someone else's: keep it


def _read_meta(conn: psycopg.Connection[Any], schema: str) -> Meta | None:
    statement = statements(schema)
    if conn.execute(statement.meta_table, (schema,)).fetchone() == (False,):
        return None
    row = conn.execute(statement.read_meta).fetchone()
    return None if row is None else Meta(*row)


def _create_or_migrate(
    conn: psycopg.Connection[Any], location: PostgresLocation, create: bool
) -> Meta:
    schema = location.schema
    statement = statements(schema)
    with conn.transaction():
        conn.execute(statement.lock, (_lock_key(schema),))
        meta = _read_meta(conn, schema)
        if meta is None:
            meta = _create(conn, location, create)
        _check_meta(meta, location)
        for version in range(meta.version + 1, SCHEMA_VERSION + 1):
            for template in _MIGRATIONS[version - 1]:
                conn.execute(_render(template, schema))
        conn.execute(statement.set_version, (SCHEMA_VERSION,))
    return dataclasses.replace(meta, version=SCHEMA_VERSION)


def _create(conn: psycopg.Connection[Any], location: PostgresLocation, create: bool) -> Meta:
    schema = location.schema
    if not create:
        raise StoreError(
            f"no metalab store in schema {schema!r} ({location.describe()}); "
            "metalab.run() creates it, or create_store(locator)"
        )
    statement = statements(schema)
    row = conn.execute(statement.foreign_objects, (schema,)).fetchone()
    if row is not None and row[0]:
        raise StoreError(
            f"schema {schema!r} ({location.describe()}) already holds {row[0]} "
            "tables or other objects and no metalab store; choose another schema with "
            "?schema=<name>"
        )
    conn.execute(statement.create_schema)
    conn.execute(statement.create_meta)
    store_id = uuid.uuid4().hex
    conn.execute(statement.insert_meta, (STORE_FORMAT, store_id))
    return Meta(STORE_FORMAT, 0, store_id)


def _check_meta(meta: Meta, location: PostgresLocation) -> None:
    if meta.format != STORE_FORMAT or meta.version > SCHEMA_VERSION:
        raise StoreFormatError(
            f"schema {location.schema!r} ({location.describe()}) holds store "
            f"format {meta.format!r} version {meta.version}; this metalab reads "
            f"{STORE_FORMAT!r} up to version {SCHEMA_VERSION}"
        )


def _render(template: str, schema: str) -> str:
    return sql.SQL(template).format(schema=sql.Identifier(schema)).as_string(None)


def _lock_key(schema: str) -> int:
    digest = hashlib.sha256(f"{STORE_FORMAT}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
