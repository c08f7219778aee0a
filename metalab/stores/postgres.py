"""`PostgresStore`: run records, artifacts, logs and claims in a PostgreSQL schema.

One store is one schema (`metalab` unless the locator says `?schema=`), created and migrated
on open. Its tables:

    store_meta          one row: store format, schema version, store id
    manifests           one row per submission (the manifest's JSON text)
    experiments         serialized experiments workers rebuild runs from
    runs                one row per run: the record's exact JSON text, plus columns to query
                        (experiment_id, run_index, status, completed, and `params`, `metrics`,
                        `series` as jsonb)
    artifacts           artifact bytes (or, with `artifact_root`, where the file is)
    logs                capture.log() text, appended chunk by chunk across attempts
    derived             derived metrics documents
    claims              who is running a run now (UNLOGGED: coordination, not results)
    cancel_requests     sessions asked to stop

and two views for SQL users: `run_metrics` (run_id, experiment_id, name, value) and
`metric_steps` (run_id, experiment_id, name, position, step, value).

Every write is one statement (so one transaction), every statement is parameterized, and the
schema name is always quoted as an identifier.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import math
import os
import threading
import time
import urllib.parse
import uuid
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from typing import IO, Any, TypeVar, cast

from .. import claims
from .._trust import read_for_unpickling
from ..contracts import StoreDefaults
from ..errors import (
    MissingDependencyError,
    StoreError,
    StoreFormatError,
    StoreUnavailableError,
    ValidationError,
)
from ..record import RECORD_FORMAT, check_format, paused_gc
from ..serializers import _json_default
from ._reconnect import DEFAULT_TIMEOUT as DEFAULT_RECONNECT_TIMEOUT
from ._reconnect import MAX_TIMEOUT as MAX_RECONNECT_TIMEOUT
from ._reconnect import retry_unavailable
from .file import atomic_write

try:
    import psycopg
    from psycopg import sql
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as _exc:
    raise MissingDependencyError(
        "PostgreSQL stores need the 'psycopg' and 'psycopg_pool' packages: install them with "
        "`uv add 'metalab[postgres]'` (or `pip install 'metalab[postgres]'`)"
    ) from _exc

STORE_FORMAT = "metalab.pgstore"
SCHEMA_VERSION = 2
DEFAULT_SCHEMA = "metalab"
DEFAULT_MAX_ARTIFACT_BYTES = 64 * 2**20
DEFAULT_POOL_SIZE = 4
DEFAULT_CONNECT_TIMEOUT = 5
MAX_ARTIFACT_BYTES_LIMIT = 2**30 - 1  # PostgreSQL's largest bytea value
SYNCHRONOUS_COMMIT_VALUES = ("on", "off", "local", "remote_write", "remote_apply")
OPTIONS = (
    "schema",
    "artifact_root",
    "max_artifact_bytes",
    "pool_size",
    "synchronous_commit",
    "reconnect_timeout",
)
METRIC_OPERATORS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "="}

ARTIFACT_MARKER = "_metalab_artifacts.json"
_LOG_FLUSH_SECONDS = 1.0
_LOG_FLUSH_BYTES = 64 * 1024
_IDLE_CHECK_SECONDS = 30.0
_RECONNECTING_WAIT = 2.0
_RENEW_SECONDS = 5.0
_BATCH = 2000
# SQLSTATEs that mean the server went away or will not take connections now
_UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03", "53300")
_T = TypeVar("_T")
_ENDED_BY_RECORD = ""
"""What a held claim's token becomes once the record that ends the run deleted the claim."""


# ---------------------------------------------------------------- locators
class LocatorError(StoreError, ValidationError):
    """A `postgresql://` locator, or one of its options, is not valid; the message names it."""


@dataclasses.dataclass(frozen=True)
class PostgresLocation:
    """A parsed `postgresql://` locator: the server to reach and the store's options."""

    uri: str
    """The libpq URI without metalab's options (password included, when one was given)."""
    schema: str = DEFAULT_SCHEMA
    artifact_root: str | None = None
    max_artifact_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES
    pool_size: int = DEFAULT_POOL_SIZE
    synchronous_commit: str | None = None
    reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT
    """Seconds a call keeps retrying while the server cannot be reached (0: fail at once)."""

    @functools.cached_property
    def params(self) -> dict[str, str]:
        """The libpq connection parameters named by the URI."""
        return {k: str(v) for k, v in psycopg.conninfo.conninfo_to_dict(self.uri).items()}

    @functools.cached_property
    def conninfo(self) -> str:
        """The libpq connection string, with metalab's defaults for unset parameters."""
        defaults = {"connect_timeout": str(DEFAULT_CONNECT_TIMEOUT), "application_name": "metalab"}
        return psycopg.conninfo.make_conninfo("", **(defaults | self.params))

    @property
    def locator(self) -> str:
        """The locator that reopens this store anywhere, password included."""
        return self._with_options(self.uri)

    @property
    def public_locator(self) -> str:
        """The locator without its password: safe to print and log."""
        return self._with_options(redact(self.uri))

    def describe(self) -> str:
        """`host 'h', port 5432, database 'db', user 'u'`, with libpq's defaults filled in."""
        p, env = self.params, os.environ
        host = p.get("host") or p.get("hostaddr") or env.get("PGHOST") or "localhost"
        port = p.get("port") or env.get("PGPORT") or "5432"
        user = p.get("user") or env.get("PGUSER") or _login_name()
        database = p.get("dbname") or env.get("PGDATABASE") or user
        return f"host {host!r}, port {port}, database {database!r}, user {user!r}"

    def _with_options(self, uri: str) -> str:
        options: list[tuple[str, str]] = [("schema", self.schema)]
        if self.artifact_root is not None:
            options.append(("artifact_root", self.artifact_root))
        if self.max_artifact_bytes != DEFAULT_MAX_ARTIFACT_BYTES:
            options.append(("max_artifact_bytes", str(self.max_artifact_bytes)))
        if self.pool_size != DEFAULT_POOL_SIZE:
            options.append(("pool_size", str(self.pool_size)))
        if self.synchronous_commit is not None:
            options.append(("synchronous_commit", self.synchronous_commit))
        if self.reconnect_timeout != DEFAULT_RECONNECT_TIMEOUT:
            options.append(("reconnect_timeout", f"{self.reconnect_timeout:g}"))
        query = "&".join(f"{k}={urllib.parse.quote(v, safe='/:')}" for k, v in options)
        return f"{uri}{'&' if '?' in uri else '?'}{query}"


def _one_line(exc: BaseException) -> str:
    """libpq's message on one line (it spans several, with tabs)."""
    return " ".join(str(exc).split())


def _login_name() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - only used to describe libpq's default user
        return "?"


def parse_locator(text: str) -> PostgresLocation:
    """Parse `postgresql://user[:password]@host[:port]/db?schema=...&artifact_root=...`.

    metalab's own options are `schema`, `artifact_root`, `max_artifact_bytes`, `pool_size`,
    `synchronous_commit` and `reconnect_timeout`; every other query parameter goes to libpq
    (`sslmode`, ...).
    Raises LocatorError (a StoreError and a ValidationError) naming the offending part.
    """
    if not isinstance(text, str):
        raise LocatorError(f"a PostgreSQL locator is a string, got {text!r}")
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in ("postgresql", "postgres"):
        raise LocatorError(f"{redact(text)!r} is not a postgresql:// locator")
    base, _, query = rest.partition("?")
    options: dict[str, str] = {}
    passed: list[str] = []
    for pair in filter(None, query.split("&")):
        name, _, value = pair.partition("=")
        key = urllib.parse.unquote(name)
        if key not in OPTIONS:
            passed.append(pair)
        elif key in options:
            raise LocatorError(f"option {key!r} is given twice in {redact(text)!r}")
        else:
            options[key] = urllib.parse.unquote(value)
    uri = f"postgresql://{base}" + (f"?{'&'.join(passed)}" if passed else "")
    location = PostgresLocation(uri, **_checked_options(options, text))
    try:
        location.params  # noqa: B018 - libpq validates the URI and its parameters here
    except psycopg.Error as exc:
        raise LocatorError(
            f"invalid PostgreSQL locator {redact(text)!r}: {_one_line(exc)}. metalab's own "
            f"options are {', '.join(OPTIONS)}; other query parameters must be libpq connection "
            "parameters"
        ) from exc
    return location


def _checked_options(options: dict[str, str], text: str) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    if "schema" in options:
        checked["schema"] = _check_schema(options["schema"])
    if "artifact_root" in options:
        if not options["artifact_root"]:
            raise LocatorError(f"artifact_root is empty in {redact(text)!r}")
        checked["artifact_root"] = os.path.abspath(os.path.expanduser(options["artifact_root"]))
    if "max_artifact_bytes" in options:
        checked["max_artifact_bytes"] = _int_option(
            "max_artifact_bytes", options["max_artifact_bytes"], 1, MAX_ARTIFACT_BYTES_LIMIT
        )
    if "pool_size" in options:
        checked["pool_size"] = _int_option("pool_size", options["pool_size"], 1, 100)
    if "synchronous_commit" in options:
        value = options["synchronous_commit"].lower()
        if value not in SYNCHRONOUS_COMMIT_VALUES:
            raise LocatorError(
                f"synchronous_commit={options['synchronous_commit']!r} is not valid; use one "
                f"of {', '.join(SYNCHRONOUS_COMMIT_VALUES)}"
            )
        checked["synchronous_commit"] = value
    if "reconnect_timeout" in options:
        checked["reconnect_timeout"] = _seconds_option(
            "reconnect_timeout", options["reconnect_timeout"], MAX_RECONNECT_TIMEOUT
        )
    return checked


def _check_schema(schema: str) -> str:
    if not schema or "\x00" in schema or len(schema.encode("utf-8")) > 63:
        raise LocatorError(
            f"schema name {schema!r} is not valid: it must be 1 to 63 bytes without NUL "
            "(PostgreSQL cuts longer names short, which could make two stores one)"
        )
    return schema


def _seconds_option(name: str, value: str, high: float) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0 <= number <= high:  # NaN fails too
        raise LocatorError(
            f"{name}={value!r} is not valid: use a number of seconds from 0 to {high:,g}"
        )
    return number


def _int_option(name: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise LocatorError(f"{name}={value!r} is not valid: use an integer from {low} to {high:,}")
    return number


_REFUSALS = (
    "does not exist",
    "password authentication failed",
    "authentication failed",
    "no password supplied",
    "no pg_hba.conf entry",
    "permission denied",
    "role ",
)
"""What a server that answered says when the locator, not the server, is wrong."""


def _misconfigured(exc: BaseException) -> bool:
    """Whether a failed connection was refused by a running server (a wrong database, role
    or password), rather than a server that cannot be reached or is starting up."""
    text = str(exc).lower()
    return "fatal:" in text and any(refusal in text for refusal in _REFUSALS)


def redact(uri: str) -> str:
    """Return `uri` without the password in its user part or its `password=` parameter."""
    from ..locators import redact_password

    return redact_password(uri)


# ---------------------------------------------------------------- SQL
@dataclasses.dataclass(frozen=True)
class _Statements:
    """Every statement the store runs; `{schema}` stands for the quoted schema name."""

    meta_table: str = (
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables"
        " WHERE schemaname = %s AND tablename = 'store_meta')"
    )
    read_meta: str = "SELECT format, version, store_id FROM {schema}.store_meta"
    foreign_objects: str = (
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s"
    )
    lock: str = "SELECT pg_advisory_xact_lock(%s)"
    create_schema: str = "CREATE SCHEMA IF NOT EXISTS {schema}"
    create_meta: str = (
        "CREATE TABLE {schema}.store_meta ("
        " singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),"
        " format text NOT NULL, version integer NOT NULL, store_id text NOT NULL,"
        " created_at timestamptz NOT NULL DEFAULT now(),"
        " migrated_at timestamptz NOT NULL DEFAULT now())"
    )
    insert_meta: str = (
        "INSERT INTO {schema}.store_meta (format, version, store_id) VALUES (%s, 0, %s)"
    )
    set_version: str = "UPDATE {schema}.store_meta SET version = %s, migrated_at = now()"
    drop_objects: str = (
        "DROP VIEW IF EXISTS {schema}.metric_steps, {schema}.run_metrics;"
        " DROP FUNCTION IF EXISTS {schema}.metric_value(jsonb);"
        " DROP TABLE IF EXISTS {schema}.manifests, {schema}.experiments, {schema}.runs,"
        " {schema}.artifacts, {schema}.logs, {schema}.derived, {schema}.claims,"
        " {schema}.cancel_requests, {schema}.store_meta CASCADE"
    )
    drop_schema: str = "DROP SCHEMA IF EXISTS {schema}"

    # idempotent: a manifest written again (a retry whose acknowledgement was lost) is found
    insert_manifest: str = (
        "WITH found AS (SELECT id FROM {schema}.manifests WHERE experiment_id = %s"
        " AND manifest = %s), added AS (INSERT INTO {schema}.manifests (experiment_id, manifest)"
        " SELECT %s, %s WHERE NOT EXISTS (SELECT 1 FROM found) RETURNING id)"
        " SELECT id FROM added UNION ALL SELECT id FROM found ORDER BY id LIMIT 1"
    )
    clean_claims: str = (
        "DELETE FROM {schema}.claims AS c USING {schema}.runs AS r WHERE r.run_id = c.run_id"
        " AND r.completed AND c.heartbeat_at < now() - make_interval(secs => %s)"
    )
    all_manifests: str = "SELECT id, manifest FROM {schema}.manifests ORDER BY id"
    manifests_of: str = (
        "SELECT id, manifest FROM {schema}.manifests WHERE experiment_id = %s ORDER BY id"
    )
    save_experiment: str = (
        "INSERT INTO {schema}.experiments (key, blob) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING"
    )
    load_experiment: str = "SELECT blob FROM {schema}.experiments WHERE key = %s"

    scan: str = "SELECT run_id, completed FROM {schema}.runs"
    # the record ends the claim its writer holds, in the same transaction
    put_record: str = (
        "WITH released AS (DELETE FROM {schema}.claims WHERE run_id = %s AND token = %s::uuid)"
        " INSERT INTO {schema}.runs (run_id, experiment_id, run_index, status, completed,"
        " params, metrics, series, record)"
        " VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s::jsonb, %s)"
        " ON CONFLICT (run_id) DO UPDATE SET experiment_id = EXCLUDED.experiment_id,"
        " run_index = EXCLUDED.run_index, status = EXCLUDED.status,"
        " completed = EXCLUDED.completed, params = EXCLUDED.params, metrics = EXCLUDED.metrics,"
        " series = EXCLUDED.series, record = EXCLUDED.record, written_at = now()"
    )
    get_record: str = "SELECT record FROM {schema}.runs WHERE run_id = %s"
    get_records: str = "SELECT run_id, record FROM {schema}.runs WHERE run_id = ANY(%s)"
    all_records: str = (
        "SELECT run_id, record FROM {schema}.runs ORDER BY experiment_id, run_index, run_id"
    )
    records_of: str = (
        "SELECT run_id, record FROM {schema}.runs WHERE experiment_id = %s"
        " ORDER BY run_index, run_id"
    )

    field_names: str = (
        "SELECT kind, name FROM ("
        + " UNION ALL ".join(
            f"SELECT '{column}' AS kind, jsonb_object_keys({column}) AS name, run_index"
            " FROM {schema}.runs WHERE %s::text IS NULL OR experiment_id = %s"
            for column in ("params", "metrics", "series")
        )
        + ") AS names GROUP BY kind, name ORDER BY kind, min(run_index), name"
    )

    put_artifact: str = (
        "INSERT INTO {schema}.artifacts (run_id, filename, size, data, artifact_root)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (run_id, filename) DO UPDATE SET"
        " size = EXCLUDED.size, data = EXCLUDED.data, artifact_root = EXCLUDED.artifact_root,"
        " written_at = now()"
    )
    read_artifact: str = (
        "SELECT data, artifact_root FROM {schema}.artifacts WHERE run_id = %s AND filename = %s"
    )
    append_log: str = (
        "INSERT INTO {schema}.logs (run_id, chunk, chunk_id) VALUES (%s, %s, %s::uuid)"
        " ON CONFLICT (chunk_id) DO NOTHING"
    )
    read_log: str = "SELECT chunk FROM {schema}.logs WHERE run_id = %s ORDER BY id"
    put_log: str = (
        "WITH cleared AS (DELETE FROM {schema}.logs WHERE run_id = %s)"
        " INSERT INTO {schema}.logs (run_id, chunk)"
        " SELECT %s, chunk FROM (SELECT %s::bytea AS chunk) AS new WHERE octet_length(chunk) > 0"
    )

    # taking a claim again with its token succeeds: a retry whose acknowledgement was lost
    claim: str = (
        "INSERT INTO {schema}.claims AS c (run_id, owner, token) VALUES (%s, %s::jsonb, %s::uuid)"
        " ON CONFLICT (run_id) DO UPDATE SET heartbeat_at = now()"
        " WHERE c.token = EXCLUDED.token RETURNING run_id"
    )
    read_claim: str = (
        "SELECT owner, extract(epoch FROM now() - heartbeat_at)::float8, heartbeat_at"
        " FROM {schema}.claims WHERE run_id = %s"
    )
    take_over: str = (
        "UPDATE {schema}.claims SET owner = %s::jsonb, token = %s::uuid, claimed_at = now(),"
        " heartbeat_at = now()"
        " WHERE run_id = %s AND owner = %s::jsonb AND heartbeat_at = %s RETURNING run_id"
    )
    touch_claim: str = (
        "UPDATE {schema}.claims SET heartbeat_at = now() WHERE run_id = %s AND token = %s::uuid"
    )
    release_exact: str = "DELETE FROM {schema}.claims WHERE run_id = %s AND token = %s::uuid"
    release_process: str = "DELETE FROM {schema}.claims WHERE run_id = %s AND owner @> %s::jsonb"
    all_claims: str = (
        "SELECT run_id, owner, extract(epoch FROM now() - heartbeat_at)::float8"
        " FROM {schema}.claims"
    )
    claim_owner: str = "SELECT owner FROM {schema}.claims WHERE run_id = %s"

    request_cancel: str = (
        "INSERT INTO {schema}.cancel_requests (session) VALUES (%s) ON CONFLICT DO NOTHING"
    )
    cancel_requested: str = (
        "SELECT EXISTS (SELECT 1 FROM {schema}.cancel_requests WHERE session = %s)"
    )
    put_derived: str = (
        "INSERT INTO {schema}.derived (run_id, document, metrics) VALUES (%s, %s, %s::jsonb)"
        " ON CONFLICT (run_id) DO UPDATE SET document = EXCLUDED.document,"
        " metrics = EXCLUDED.metrics, written_at = now()"
    )
    get_derived: str = "SELECT document FROM {schema}.derived WHERE run_id = %s"

    def for_schema(self, schema: str) -> _Statements:
        """Return these statements with `{schema}` replaced by the quoted `schema`."""
        ident = sql.Identifier(schema)
        return _Statements(
            **{
                f.name: sql.SQL(getattr(self, f.name)).format(schema=ident).as_string(None)
                for f in dataclasses.fields(self)
            }
        )


@functools.lru_cache(maxsize=64)
def _statements(schema: str) -> _Statements:
    return _Statements().for_schema(schema)


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
_MIGRATIONS: tuple[tuple[str, ...], ...] = (_SCHEMA_V1, _SCHEMA_V2)
assert len(_MIGRATIONS) == SCHEMA_VERSION


_TABLE_WRITERS = (
    "SELECT pg_get_userbyid(c.relowner), current_user, EXISTS (SELECT 1 FROM"
    " aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) AS a"
    " WHERE a.grantee <> c.relowner AND a.privilege_type IN ('INSERT', 'UPDATE'))"
    " FROM pg_class AS c WHERE c.oid = %s::regclass"
)
"""The owner of a table, the role connected, and whether other roles may write the table."""


def _render(template: str, schema: str) -> str:
    return sql.SQL(template).format(schema=sql.Identifier(schema)).as_string(None)


def _lock_key(schema: str) -> int:
    digest = hashlib.sha256(f"{STORE_FORMAT}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# ---------------------------------------------------------------- JSON
def _json_text(value: Any) -> str:
    """The JSON text the file store would write for `value`."""
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def _sql_json(value: Any) -> str:
    """JSON text that PostgreSQL's jsonb accepts: non-finite floats become the strings
    "NaN", "Infinity" and "-Infinity", NUL characters become U+FFFD."""
    return json.dumps(_sql_safe(value), default=_json_default, ensure_ascii=False)


def _sql_safe(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _non_finite(value)
    if isinstance(value, int):
        # numbers beyond float8's range would make metric_value() fail for the whole query
        return value if value.bit_length() < 1024 else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, Mapping):
        return {_sql_safe(str(k)): _sql_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_sql_safe(v) for v in value]
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return _sql_safe(value.tolist())
    return value


def _non_finite(value: float) -> str:
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _parse_all(texts: Sequence[str]) -> list[Any]:
    """Parse JSON texts as one array, with the cyclic garbage collector paused.

    Parsing builds thousands of dicts that all stay alive; collecting while they are built
    scans them again and again and doubles the time it takes to load a large store. One
    array shares each key string among all the records of a batch.
    """
    with paused_gc():
        return cast(list[Any], json.loads(f"[{','.join(texts)}]"))


# ---------------------------------------------------------------- connection pools
# One small pool per process and server. A pool never crosses a fork: the child sets its
# parent's pools aside, unused and unclosed (closing them would end the parent's sessions,
# and their locks may have been held at the fork), and opens its own.
_pools: dict[tuple[str, int, str | None], ConnectionPool] = {}
_pools_pid = os.getpid()
_pools_lock = threading.Lock()
_inherited: list[ConnectionPool] = []
_renewed_at: dict[tuple[str, int, str | None], float] = {}
_lent_at: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def _forget_inherited_pools() -> None:
    global _pools_pid, _pools_lock
    _inherited.extend(_pools.values())
    _pools.clear()
    _renewed_at.clear()
    _pools_lock = threading.Lock()
    _pools_pid = os.getpid()


os.register_at_fork(after_in_child=_forget_inherited_pools)


def _pool_key(location: PostgresLocation) -> tuple[str, int, str | None]:
    return (location.conninfo, location.pool_size, location.synchronous_commit)


def _pool(location: PostgresLocation) -> ConnectionPool:
    """Return this process's pool for `location`, opening it on first use."""
    if _pools_pid != os.getpid():
        _forget_inherited_pools()
    key = _pool_key(location)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = _open_pool(location)
        return pool


def _open_pool(location: PostgresLocation) -> ConnectionPool:
    configure = None
    if location.synchronous_commit is not None:
        configure = functools.partial(_set_synchronous_commit, location.synchronous_commit)
    return ConnectionPool(
        location.conninfo,
        kwargs={"autocommit": True},
        min_size=1,
        max_size=location.pool_size,
        open=True,
        name=f"metalab {location.public_locator}",
        timeout=_pool_wait(location),
        num_workers=1,
        configure=configure,
        check=_check_if_idle,
    )


def _pool_wait(location: PostgresLocation) -> float:
    """Seconds to wait for a pooled connection: twice libpq's connect_timeout, at least 10."""
    try:
        timeout = float(location.params.get("connect_timeout") or DEFAULT_CONNECT_TIMEOUT)
    except ValueError:  # libpq rejects it, with its own message, when it connects
        timeout = DEFAULT_CONNECT_TIMEOUT
    return max(10.0, 2.0 * timeout)


def _set_synchronous_commit(value: str, conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT set_config('synchronous_commit', %s, false)", (value,))


def _check_if_idle(conn: psycopg.Connection[Any]) -> None:
    """Probe a connection unused long enough for a firewall or the server to have dropped it.

    Called by the pool at every checkout, so it stays cheap: a probe (one round trip) only
    after `_IDLE_CHECK_SECONDS` since the connection was last lent.
    """
    now = time.monotonic()
    last = _lent_at.get(conn, now)
    _lent_at[conn] = now
    if now - last > _IDLE_CHECK_SECONDS or now < _probe_until[0]:
        conn.execute("SELECT 1")


_probe_until = [0.0]
"""Until when every checkout probes its connection: a while after a connection failed, the
pool may still hold connections to a server that restarted since."""


def _connection_failed() -> None:
    _probe_until[0] = time.monotonic() + 120.0


def _reconnecting() -> bool:
    """Whether a connection failed lately (the pools may still be reconnecting)."""
    return time.monotonic() < _probe_until[0]


def _reconnectable(exc: psycopg.OperationalError) -> bool:
    """Whether `exc` says the server cannot be reached now, rather than a bad request."""
    if _misconfigured(exc):
        return False
    return exc.sqlstate is None or exc.sqlstate.startswith(_UNAVAILABLE_STATES)


def _renew_pool(location: PostgresLocation, stale: ConnectionPool) -> ConnectionPool | None:
    """Replace `stale`, this process's pool for `location`, by a new one (once, whichever
    thread asks first); return the pool to use, or None when the pool was renewed less than
    `_RENEW_SECONDS` ago. Connections lent by the old pool are closed when they come back;
    its waiting callers get `PoolClosed` and retry."""
    key = _pool_key(location)
    now = time.monotonic()
    with _pools_lock:
        current = _pools.get(key)
        if current is not None and current is not stale:
            return current
        if now - _renewed_at.get(key, -math.inf) < _RENEW_SECONDS:
            return None
        _renewed_at[key] = now
        fresh = _pools[key] = _open_pool(location)
    stale.close(timeout=1.0)
    return fresh


def _close_pool(location: PostgresLocation) -> None:
    if _pools_pid != os.getpid():
        _forget_inherited_pools()
    with _pools_lock:
        pool = _pools.pop(_pool_key(location), None)
    if pool is not None:
        pool.close(timeout=5.0)


@atexit.register
def _close_pools_at_exit() -> None:
    if _pools_pid == os.getpid():
        for pool in list(_pools.values()):
            pool.close(timeout=1.0)


# ---------------------------------------------------------------- the store
@dataclasses.dataclass(frozen=True)
class _Meta:
    format: str
    version: int
    store_id: str


class PostgresStore(StoreDefaults):
    """A store in one schema of a PostgreSQL database; safe for many processes and hosts.

    Open it with `PostgresStore.open(locator)` (or `metalab.store.create_store(locator)`).
    `locator` reopens it anywhere, password included; `public_locator` and `repr()` never show
    the password.
    """

    cancel_poll_interval = 1.0
    """Seconds between two checks of a sweep's cancellation by a running task."""

    scheme = "postgresql"

    def __init__(self, location: PostgresLocation):
        if not isinstance(location, PostgresLocation):
            raise ValidationError(
                f"PostgresStore takes a parsed location, got {location!r}: open a locator "
                "string with PostgresStore.open(locator) or metalab.store.create_store(locator)"
            )
        self._location = location
        self._sql = _statements(location.schema)
        self._held: dict[str, str] = {}
        self._owner_cache: tuple[dict[str, Any], str] | None = None
        self._store_id: str | None = None
        self._root_checked = False

    # ---------------------------------------------------------------- opening
    @classmethod
    def open(cls, locator: str, *, create: bool = True) -> PostgresStore:
        """Open the store named by `locator`, creating or migrating its schema as needed.

        With `create=False` a schema without a store is a StoreError. A server that cannot
        be reached is a StoreUnavailableError naming host, port and database once
        `reconnect_timeout` seconds (30 unless the locator sets it) of retries have passed;
        a server that refuses the login (a wrong database, role or password) is a StoreError
        at once.
        """
        if not isinstance(create, bool):
            raise ValidationError(f"create must be True or False, got {create!r}")
        store = cls(parse_locator(locator))
        store._retrying(functools.partial(store._prepare, create))
        return store

    def _prepare(self, create: bool) -> None:
        with self._direct_connection() as conn:
            meta = self._read_meta(conn)
            if meta is None or meta.version < SCHEMA_VERSION:
                meta = self._create_or_migrate(conn, create)
            self._check_meta(meta)
        self._store_id = meta.store_id
        if create and self._location.artifact_root is not None:
            self._claim_artifact_root()

    @contextlib.contextmanager
    def _direct_connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection of its own (not pooled), for opening, migrating and dropping."""
        try:
            conn = psycopg.connect(self._location.conninfo, autocommit=True)
        except psycopg.OperationalError as exc:
            if _misconfigured(exc):  # the server answered: a wrong database, user or password
                raise StoreError(self._refused(exc)) from exc
            raise StoreUnavailableError(self._unreachable(exc)) from exc
        try:
            with conn:
                yield conn
        except psycopg.Error as exc:
            raise self._translated(exc) from exc

    def _read_meta(self, conn: psycopg.Connection[Any]) -> _Meta | None:
        if conn.execute(self._sql.meta_table, (self._location.schema,)).fetchone() == (False,):
            return None
        row = conn.execute(self._sql.read_meta).fetchone()
        return None if row is None else _Meta(*row)

    def _create_or_migrate(self, conn: psycopg.Connection[Any], create: bool) -> _Meta:
        schema = self._location.schema
        with conn.transaction():
            conn.execute(self._sql.lock, (_lock_key(schema),))
            meta = self._read_meta(conn)
            if meta is None:
                meta = self._create(conn, create)
            self._check_meta(meta)
            for version in range(meta.version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version - 1]:
                    conn.execute(_render(statement, schema))
            conn.execute(self._sql.set_version, (SCHEMA_VERSION,))
        return dataclasses.replace(meta, version=SCHEMA_VERSION)

    def _create(self, conn: psycopg.Connection[Any], create: bool) -> _Meta:
        schema = self._location.schema
        if not create:
            raise StoreError(
                f"no metalab store in schema {schema!r} ({self._location.describe()}); "
                "metalab.run() creates it, or create_store(locator)"
            )
        row = conn.execute(self._sql.foreign_objects, (schema,)).fetchone()
        if row is not None and row[0]:
            raise StoreError(
                f"schema {schema!r} ({self._location.describe()}) already holds {row[0]} "
                "tables or other objects and no metalab store; choose another schema with "
                "?schema=<name>"
            )
        conn.execute(self._sql.create_schema)
        conn.execute(self._sql.create_meta)
        store_id = uuid.uuid4().hex
        conn.execute(self._sql.insert_meta, (STORE_FORMAT, store_id))
        return _Meta(STORE_FORMAT, 0, store_id)

    def _check_meta(self, meta: _Meta) -> None:
        if meta.format != STORE_FORMAT or meta.version > SCHEMA_VERSION:
            raise StoreFormatError(
                f"schema {self._location.schema!r} ({self._location.describe()}) holds store "
                f"format {meta.format!r} version {meta.version}; this metalab reads "
                f"{STORE_FORMAT!r} up to version {SCHEMA_VERSION}"
            )

    def drop(self) -> None:
        """Delete this store: its tables, views and function, then its schema if it is empty
        (never `public`). Files under `artifact_root` are left alone. Idempotent."""
        self._retrying(self._drop)

    def _drop(self) -> None:
        schema = self._location.schema
        with self._direct_connection() as conn, conn.transaction():
            conn.execute(self._sql.lock, (_lock_key(schema),))
            conn.execute(self._sql.drop_objects)
            if schema != "public":
                try:
                    with conn.transaction():
                        conn.execute(self._sql.drop_schema)
                except psycopg.errors.DependentObjectsStillExist:
                    pass  # the schema holds objects of someone else's: keep it

    def close(self) -> None:
        """Close this process's connections to the server; the store reopens them when used."""
        _close_pool(self._location)

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- identity
    @property
    def locator(self) -> str:
        """The `postgresql://` locator that reopens this store anywhere (password included)."""
        return self._location.locator

    @property
    def public_locator(self) -> str:
        """The locator without its password, for logs and messages."""
        return self._location.public_locator

    @property
    def schema(self) -> str:
        """The schema holding the store's tables."""
        return self._location.schema

    @property
    def artifact_root(self) -> str | None:
        """The directory artifacts are written to, or None when they go to the database."""
        return self._location.artifact_root

    def __repr__(self) -> str:
        return f"PostgresStore({self.public_locator!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (PostgresStore, (self._location,))

    # ---------------------------------------------------------------- connections
    def _retrying(self, call: Callable[[], _T]) -> _T:
        """Return `call()`, made again while the server cannot be reached (a restart), for up
        to `reconnect_timeout` seconds. `call` must be safe to repeat: every write is."""
        what = f"the PostgreSQL server of store {self.public_locator!r}"
        return retry_unavailable(call, self._location.reconnect_timeout, what)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """Lend a pooled connection; psycopg's errors leave as StoreError, and as its
        subclass StoreUnavailableError when the server cannot be reached."""
        try:
            pool, conn = self._checkout()
            try:
                yield conn
            finally:
                pool.putconn(conn)
        except psycopg.Error as exc:
            raise self._translated(exc) from exc

    def _checkout(self) -> tuple[ConnectionPool, psycopg.Connection[Any]]:
        """A connection from this process's pool, and the pool to give it back to.

        A pool that lost its connections reconnects on a schedule of its own, which after a
        long outage may lag well behind a server that is back. So while connections failed
        lately, a checkout waits briefly; if the server then answers, the lagging pool is
        replaced by a fresh one, which connects at once (at most every few seconds: a pool
        that is merely busy is not replaced over and over).
        """
        pool = _pool(self._location)
        reconnecting = _reconnecting()
        wait = min(_pool_wait(self._location), _RECONNECTING_WAIT) if reconnecting else None
        try:
            return pool, pool.getconn(timeout=wait)
        except PoolTimeout as exc:
            with self._direct_connection():  # raises StoreUnavailableError if the server is gone
                pass
            if not reconnecting:
                raise self._busy() from exc
            renewed = _renew_pool(self._location, pool)
            if renewed is None:
                raise StoreUnavailableError(
                    f"{self._unreachable(exc)}: the server answers again, the connection pool "
                    "is reconnecting"
                ) from exc
            pool = renewed
        try:
            return pool, pool.getconn()
        except PoolTimeout as exc:
            raise self._busy() from exc

    def _busy(self) -> StoreError:
        return StoreError(
            f"PostgreSQL store {self.public_locator!r}: all {self._location.pool_size} "
            f"pooled connections stayed busy for {_pool_wait(self._location):g} s; raise "
            "?pool_size="
        )

    def _translated(self, exc: psycopg.Error) -> StoreError:
        """psycopg's error as a StoreError: a StoreUnavailableError when the server went away,
        shuts down, starts up or takes no more connections (a retry may work)."""
        if isinstance(exc, psycopg.OperationalError) and _reconnectable(exc):
            _connection_failed()
            return StoreUnavailableError(self._unreachable(exc))
        return StoreError(self._failed(exc))

    def _execute(
        self, query: str | sql.Composed, args: Sequence[Any] = (), *, retry: bool = True
    ) -> list[tuple[Any, ...]]:
        """Run one statement on a pooled connection; return its rows ([] when it has none).
        Retried while the server cannot be reached (see `_retrying`), unless `retry=False`."""
        run = functools.partial(self._execute_once, query, args)
        return self._retrying(run) if retry else run()

    def _execute_once(
        self, query: str | sql.Composed, args: Sequence[Any]
    ) -> list[tuple[Any, ...]]:
        with self._connection() as conn:
            cursor = conn.execute(query, args)
            return cursor.fetchall() if cursor.description is not None else []

    def _refused(self, exc: BaseException) -> str:
        return (
            f"the PostgreSQL server of store {self.public_locator!r} "
            f"({self._location.describe()}) refused the connection: {_one_line(exc)}"
        )

    def _unreachable(self, exc: BaseException) -> str:
        return (
            f"cannot reach the PostgreSQL server of store {self.public_locator!r} "
            f"({self._location.describe()}): {_one_line(exc)}"
        )

    def _failed(self, exc: BaseException) -> str:
        return f"PostgreSQL store {self.public_locator!r}: {type(exc).__name__}: {_one_line(exc)}"

    # ---------------------------------------------------------------- experiments
    def write_manifest(self, experiment_id: str, manifest: dict[str, Any]) -> str:
        """Add a manifest row (never overwrites one); return `manifests/<id>`.

        Idempotent: the same manifest written again is the row already there. A new sweep
        also deletes claims left on completed runs (a record written by another writer than
        the claim's owner, say, whose owner then died) once their lease is over.
        """
        text = _json_text(manifest)
        rows = self._execute(self._sql.insert_manifest, (experiment_id, text, experiment_id, text))
        self._execute(self._sql.clean_claims, (claims.LEASE_SECONDS,))
        return f"manifests/{rows[0][0]}"

    def manifests(self, experiment_id: str | None = None) -> list[dict[str, Any]]:
        """Return manifests (of one experiment or all), oldest first, each with `_file`."""
        if experiment_id is None:
            rows = self._execute(self._sql.all_manifests)
        else:
            rows = self._execute(self._sql.manifests_of, (experiment_id,))
        out = []
        for manifest_id, text in rows:
            try:
                manifest = json.loads(text)
            except ValueError:
                continue
            manifest["_file"] = f"manifests/{manifest_id}"
            out.append(manifest)
        return out

    def save_experiment(self, key: str, blob: bytes) -> None:
        """Store the serialized experiment once; later calls with the same key do nothing."""
        self._execute(self._sql.save_experiment, (key, blob))

    def load_experiment(self, key: str) -> bytes:
        """Return the serialized experiment `key`; StoreError when the store has none."""
        rows = self._execute(self._sql.load_experiment, (key,))
        if not rows:
            raise StoreError(f"store {self.public_locator!r} has no experiment {key!r}")
        return bytes(rows[0][0])

    def read_pickled(self, kind: str, key: str) -> tuple[bytes, str | None]:
        """Return the bytes of experiment `key` (`kind` "experiment") or of the artifact
        reference `key` ("artifact"), and why someone other than the user could have
        written them (None when nobody else could).

        Bytes kept in the database are the user's own when the role this store connects as
        owns the table holding them and no other role was granted to write it; an artifact
        kept as a file under `artifact_root` follows the rule for files."""
        if kind == "experiment":
            return self.load_experiment(key), self._why_shared("experiments")
        root = self._location.artifact_root
        if root is not None:
            _parse_ref(key)
            try:
                return read_for_unpickling(os.path.join(root, key))
            except FileNotFoundError:
                pass  # it may be in the database, written before artifact_root was set
        return self.read_artifact(key), self._why_shared("artifacts")

    def _why_shared(self, table: str) -> str | None:
        """Why roles other than this store's could have written `table`, or None."""
        name = sql.Identifier(self.schema, table).as_string(None)
        owner, user, shared = self._execute(_TABLE_WRITERS, (name,))[0]
        if owner != user:
            return (
                f"table {name} is owned by role {owner!r}, not by {user!r}, the role this "
                "store connects as"
            )
        if shared:
            return f"roles other than {user!r} may write table {name}"
        return None

    # ---------------------------------------------------------------- records
    def scan(self) -> tuple[set[str], set[str]]:
        """One query: (run ids with a final record, run ids completed)."""
        rows = self._execute(self._sql.scan)
        return {run_id for run_id, _ in rows}, {run_id for run_id, done in rows if done}

    def put_record(self, record: dict[str, Any]) -> None:
        """Persist a final record in one statement, replacing any earlier record of the run.

        The same transaction deletes this process's claim on the run: a claim never outlives
        the record that ends it, even if the process dies before `release`. Idempotent.
        """
        run_id, status = _required(record, "run_id"), _required(record, "status")
        token = self._held.get(run_id) or None
        self._execute(
            self._sql.put_record,
            (
                run_id,
                token,
                run_id,
                record.get("experiment_id", ""),
                record.get("index"),
                status,
                status == "completed",
                _sql_json(record.get("params") or {}),
                _sql_json(record.get("metrics") or {}),
                _sql_json(record["series"]) if record.get("series") else "{}",
                _json_text(record),
            ),
        )
        if token is not None:
            self._held[run_id] = _ENDED_BY_RECORD  # release() has nothing left to delete

    def get_record(self, run_id: str) -> dict[str, Any] | None:
        """Return the record of `run_id`, or None when it has none."""
        rows = self._execute(self._sql.get_record, (run_id,))
        return self._parse(run_id, rows[0][0]) if rows else None

    def get_records(self, run_ids: Iterable[str]) -> Iterator[dict[str, Any]]:
        """Yield the records of `run_ids` that exist, in the order given."""
        ids = list(run_ids)
        for start in range(0, len(ids), _BATCH):
            batch = ids[start : start + _BATCH]
            rows = self._execute(self._sql.get_records, (list(set(batch)),))
            found = dict(zip([r[0] for r in rows], self._parse_rows(rows)))
            yield from (found[run_id] for run_id in batch if run_id in found)

    def iter_records(self, experiment_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Yield every record (of one experiment, or all), streamed in batches, ordered by
        experiment id and run index (the order `load_results` shows them in)."""
        if experiment_id is None:
            yield from self._stream(self._sql.all_records, ())
        else:
            yield from self._stream(self._sql.records_of, (experiment_id,))

    def field_names(self, experiment_id: str | None = None) -> dict[str, list[str]]:
        """The names of the parameters, scalar metrics and stepped metrics (`params`,
        `metrics`, `series`) of the records (of one experiment, or all), by the first run
        index holding them, then by name. Read-only; raises StoreError when the database
        fails."""
        names: dict[str, list[str]] = {"params": [], "metrics": [], "series": []}
        for kind, name in self._execute(self._sql.field_names, [experiment_id] * 6):
            names[kind].append(name)
        return names

    def query_records(
        self,
        experiment_id: str | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        metric_filters: Iterable[tuple[str, str, float]] = (),
        status: str | None = None,
    ) -> list[dict[str, Any]]:
        """Return the records that match every filter, selected by the database.

        - `experiment_id`: `"name:version"`, exactly.
        - `params`: `{name: value}`; a run matches when its parameter equals the value (JSON
          equality: `1 == 1.0`, and lists and dicts must be equal as a whole).
        - `metric_filters`: `[(metric, op, threshold)]` with `op` one of `<`, `<=`, `>`,
          `>=`, `==`; booleans count as 0 and 1. A run without that metric, or whose value is
          NaN, never matches (as `nan < x` is false in Python).
        - `status`: `"completed"`, `"failed"`, `"interrupted"` or `"cancelled"`.

        Records come ordered by experiment id and run index. Raises ValidationError for an
        unknown operator or a threshold that is not a number, and FingerprintError for a
        parameter value that is not JSON (as `Results.filter` does).
        """
        query, args = self._query_sql(experiment_id, params or {}, metric_filters, status)
        rows = self._execute(query, args)
        return self._parse_rows(rows)

    def _query_sql(
        self,
        experiment_id: str | None,
        params: Mapping[str, Any],
        metric_filters: Iterable[tuple[str, str, float]],
        status: str | None,
    ) -> tuple[sql.Composed, list[Any]]:
        from .._identity import normalize

        schema = sql.Identifier(self._location.schema)
        conditions: list[sql.Composable] = [sql.SQL("TRUE")]
        args: list[Any] = []
        if experiment_id is not None:
            conditions.append(sql.SQL("experiment_id = %s"))
            args.append(experiment_id)
        if status is not None:
            conditions.append(sql.SQL("status = %s"))
            args.append(status)
        for name, value in params.items():
            wanted = normalize(value, f"filter {name!r}")
            # containment uses the GIN index; equality makes lists and dicts match exactly
            conditions.append(sql.SQL("params @> %s::jsonb AND params -> %s = %s::jsonb"))
            args += [_sql_json({name: wanted}), name, _sql_json(wanted)]
        for name, op, threshold in (_metric_filter(f) for f in metric_filters):
            conditions.append(
                sql.SQL("{schema}.metric_value(metrics -> %s) {op} %s").format(
                    schema=schema, op=sql.SQL(op)
                )
            )
            args += [name, threshold]
        query = sql.SQL(
            "SELECT run_id, record FROM {schema}.runs WHERE {where}"
            " ORDER BY experiment_id, run_index, run_id"
        ).format(schema=schema, where=sql.SQL(" AND ").join(conditions))
        return query, args

    def _stream(self, query: str, args: Sequence[Any]) -> Iterator[dict[str, Any]]:
        """Yield the records `query` selects, read in batches; the first batch is retried
        while the server cannot be reached, a failure after it raises."""
        rows, first = self._retrying(functools.partial(self._start_stream, query, args))
        try:
            yield from self._parse_rows(first)
            for batch in rows:
                yield from self._parse_rows(batch)
        finally:
            rows.close()  # lends the connection back when the caller stops early

    def _start_stream(
        self, query: str, args: Sequence[Any]
    ) -> tuple[Generator[list[tuple[Any, ...]]], list[tuple[Any, ...]]]:
        rows = self._stream_rows(query, args)
        return rows, next(rows)

    def _stream_rows(self, query: str, args: Sequence[Any]) -> Generator[list[tuple[Any, ...]]]:
        with self._connection() as conn:
            batch: list[tuple[Any, ...]] = []
            for row in conn.cursor().stream(query, args, size=_BATCH):
                batch.append(row)
                if len(batch) == _BATCH:
                    yield batch
                    batch = []
            yield batch

    def _parse(self, run_id: str, text: str) -> dict[str, Any]:
        return self._parse_rows([(run_id, text)])[0]

    def _parse_rows(self, rows: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
        where = f"run record {{}} in store {self.public_locator!r}"
        try:
            records = _parse_all([text for _, text in rows])
        except ValueError:
            records = []
        if len(records) != len(rows):
            for run_id, text in rows:  # name the record that does not parse
                try:
                    json.loads(text)
                except ValueError as exc:
                    raise StoreFormatError(
                        f"{where.format(repr(run_id))} is not valid JSON ({exc})"
                    ) from exc
        for (run_id, _), record in zip(rows, records):
            if record.get("format") != RECORD_FORMAT:  # the message costs more than the check
                check_format(record, where.format(repr(run_id)))
        return records

    # ---------------------------------------------------------------- artifacts and logs
    def put_artifact(self, run_id: str, filename: str, data: bytes) -> str:
        """Store artifact bytes atomically; return the reference `artifacts/<run_id>/<name>`.

        With `artifact_root` the bytes go to `<artifact_root>/artifacts/<run_id>/<name>`;
        without, into the database, up to `max_artifact_bytes` (a StoreError past it).
        """
        ref = f"artifacts/{_component(run_id, 'run id')}/{_component(filename, 'artifact')}"
        root = self._location.artifact_root
        if root is None:
            self._check_size(run_id, filename, len(data))
            self._execute(self._sql.put_artifact, (run_id, filename, len(data), data, None))
            return ref
        self._check_artifact_root()
        directory = os.path.join(root, "artifacts", run_id)
        os.makedirs(directory, exist_ok=True)
        atomic_write(os.path.join(directory, filename), data)
        self._execute(self._sql.put_artifact, (run_id, filename, len(data), None, root))
        return ref

    def _check_size(self, run_id: str, filename: str, size: int) -> None:
        limit = self._location.max_artifact_bytes
        if size > limit:
            raise StoreError(
                f"artifact {filename!r} of run {run_id} is {size:,} bytes, over the limit of "
                f"{limit:,} bytes for artifacts kept in the database of store "
                f"{self.public_locator!r}; raise it with ?max_artifact_bytes=<bytes> (up to "
                f"{MAX_ARTIFACT_BYTES_LIMIT:,}), or keep artifacts as files with "
                "?artifact_root=<directory every worker sees>"
            )

    def read_artifact(self, ref: str) -> bytes:
        """Return the bytes behind a reference from `put_artifact`; StoreError when missing."""
        run_id, filename = _parse_ref(ref)
        root = self._location.artifact_root
        if root is not None:
            try:
                with open(os.path.join(root, ref), "rb") as fh:
                    return fh.read()
            except FileNotFoundError:
                pass  # it may be in the database, written before artifact_root was set
        rows = self._execute(self._sql.read_artifact, (run_id, filename))
        if not rows:
            raise StoreError(f"artifact {ref!r} is missing from store {self.public_locator!r}")
        data, written_to = rows[0]
        if data is None:
            raise StoreError(
                f"artifact {ref!r} of store {self.public_locator!r} is a file under "
                f"artifact_root {written_to!r}, which "
                + ("this store was opened without" if root is None else f"is not {root!r}")
                + f" (or which lost the file): open the store with ?artifact_root={written_to}"
            )
        return bytes(data)

    def _claim_artifact_root(self) -> None:
        """Mark `artifact_root` as this store's, or fail if it is another store's."""
        root = cast(str, self._location.artifact_root)
        os.makedirs(root, exist_ok=True)
        marker = os.path.join(root, ARTIFACT_MARKER)
        content = {"store_id": self._get_store_id(), "store": self.public_locator}
        try:
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(content, fh)
        self._check_artifact_root()

    def _check_artifact_root(self) -> None:
        if self._root_checked:
            return
        root = cast(str, self._location.artifact_root)
        marker = os.path.join(root, ARTIFACT_MARKER)
        try:
            with open(marker, encoding="utf-8") as fh:
                owner = json.load(fh)
        except FileNotFoundError:
            raise StoreError(
                f"artifact_root {root!r} of store {self.public_locator!r} has no "
                f"{ARTIFACT_MARKER} on this host: it is not the directory the store was opened "
                "with; put artifact_root on a filesystem every worker sees"
            ) from None
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read {marker!r}: {exc}") from exc
        if owner.get("store_id") != self._get_store_id():
            raise StoreError(
                f"artifact_root {root!r} holds the artifacts of another store "
                f"({owner.get('store')!r}); give each store its own artifact_root"
            )
        self._root_checked = True

    def _get_store_id(self) -> str:
        if self._store_id is None:
            self._store_id = str(self._execute(self._sql.read_meta)[0][2])
        return self._store_id

    def open_log(self, run_id: str) -> IO[str]:
        """Open the run's log for appending, in chunks (see `_RunLog`); every line is in the
        database once the log is closed, and earlier attempts' lines stay."""
        return cast(IO[str], _RunLog(functools.partial(self._append_log, run_id)))

    def _append_log(self, run_id: str, chunk: bytes) -> None:
        # the chunk's id makes a retried append (its acknowledgement lost) add it once
        self._execute(self._sql.append_log, (run_id, chunk, str(uuid.uuid4())))

    def put_log(self, run_id: str, text: str) -> None:
        """Replace the run's log with `text` in one statement (what a transfer writes)."""
        self._execute(self._sql.put_log, (run_id, run_id, text.encode("utf-8")))

    def read_log(self, run_id: str) -> str:
        """Return the run's log text ("" when it logged nothing)."""
        rows = self._execute(self._sql.read_log, (run_id,))
        return b"".join(bytes(chunk) for (chunk,) in rows).decode("utf-8")

    # ---------------------------------------------------------------- claims
    def claim(self, run_id: str, owner: dict[str, Any]) -> bool:
        """Claim `run_id` for `owner`, taking over a claim whose owner is dead; False while
        another live owner holds it. Atomic: of many claimants, exactly one wins.

        Each claim has a token of its own; a retry (the server went away before it
        acknowledged the claim) finds the claim it took and wins it again.
        """
        owner_json = self._owner_json(owner)
        token = str(uuid.uuid4())
        won = self._retrying(functools.partial(self._claim_once, run_id, owner_json, token))
        if won:
            self._held[run_id] = token
            touch = functools.partial(self._touch, run_id, token)
            claims.heartbeat.hold(self._heartbeat_key(run_id), touch)
        return won

    def _claim_once(self, run_id: str, owner: str, token: str) -> bool:
        with self._connection() as conn:
            if conn.execute(self._sql.claim, (run_id, owner, token)).fetchone() is not None:
                return True
            current = conn.execute(self._sql.read_claim, (run_id,)).fetchone()
            if current is None:  # released since our attempt
                return conn.execute(self._sql.claim, (run_id, owner, token)).fetchone() is not None
            holder, age, heartbeat_at = current
            if claims.is_alive(holder, age):
                return False
            # compare-and-set: fails if the holder beat or someone else took over meanwhile
            args = (owner, token, run_id, json.dumps(holder), heartbeat_at)
            return conn.execute(self._sql.take_over, args).fetchone() is not None

    def _owner_json(self, owner: dict[str, Any]) -> str:
        cached = self._owner_cache
        if cached is None or cached[0] is not owner:  # one owner dict serves a whole task
            cached = self._owner_cache = (owner, _sql_json(owner))
        return cached[1]

    def _heartbeat_key(self, run_id: str) -> str:
        return f"{self.public_locator}#claim/{run_id}"

    def _touch(self, run_id: str, token: str) -> None:
        try:
            self._execute(self._sql.touch_claim, (run_id, token), retry=False)
        except StoreError:
            pass  # the next beat tries again; a lapsed lease only lets other hosts take over

    def claim_owner(self, run_id: str) -> dict[str, Any] | None:
        """Return the owner of the claim on `run_id` (alive or dead), or None."""
        rows = self._execute(self._sql.claim_owner, (run_id,))
        return rows[0][0] if rows else None

    def release(self, run_id: str) -> None:
        """Give up this process's claim on `run_id`; a claim someone else holds (or took over
        after our lease lapsed) stays. Idempotent."""
        claims.heartbeat.release(self._heartbeat_key(run_id))
        token = self._held.pop(run_id, None)
        if token == _ENDED_BY_RECORD:
            return
        if token is not None:
            self._execute(self._sql.release_exact, (run_id, token))
        else:
            me = claims.owner()
            process = {"host": me["host"], "pid": me["pid"], "start": me["start"]}
            self._execute(self._sql.release_process, (run_id, _sql_json(process)))

    def claims(self) -> dict[str, dict[str, Any]]:
        """Return live claims: run id -> owner."""
        rows = self._execute(self._sql.all_claims)
        return {run_id: owner for run_id, owner, age in rows if claims.is_alive(owner, age)}

    # ---------------------------------------------------------------- control
    def request_cancel(self, session: str) -> None:
        """Ask every run of `session` to stop; idempotent."""
        self._execute(self._sql.request_cancel, (session,))

    def cancel_requested(self, session: str) -> bool:
        """Whether `request_cancel(session)` was called."""
        return bool(self._execute(self._sql.cancel_requested, (session,))[0][0])

    # ---------------------------------------------------------------- derived metrics
    def put_derived(self, run_id: str, values: dict[str, Any]) -> None:
        """Replace the derived metrics document of `run_id` in one statement."""
        self._execute(self._sql.put_derived, (run_id, _json_text(values), _sql_json(values)))

    def get_derived(self, run_id: str) -> dict[str, Any]:
        """Return the derived metrics document of `run_id` ({} when none)."""
        rows = self._execute(self._sql.get_derived, (run_id,))
        return json.loads(rows[0][0]) if rows else {}


class _RunLog(io.TextIOBase):
    """A run's log as a text file: lines are buffered and appended to the database in chunks.

    A line written a second or more after the last send goes at once, with any lines waiting
    before it; lines written sooner wait for that next send, or for `flush()`/`close()`. A
    chatty operation thus costs about one insert per second, not one per line.
    """

    def __init__(self, append: Callable[[bytes], None]):
        self._append = append
        self._buffer: list[bytes] = []
        self._size = 0
        self._flushed = -math.inf  # the first line goes at once

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.closed:
            raise ValueError("write to a closed run log")
        data = text.encode("utf-8")
        self._buffer.append(data)
        self._size += len(data)
        due = time.monotonic() - self._flushed >= _LOG_FLUSH_SECONDS
        if due or self._size >= _LOG_FLUSH_BYTES:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if self._buffer:
            chunk, self._buffer, self._size = b"".join(self._buffer), [], 0
            self._append(chunk)
        self._flushed = time.monotonic()


def _required(record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value:
        raise StoreError(f"a run record needs a non-empty string {key!r}, got {value!r}")
    return value


def _component(name: str, what: str) -> str:
    if not name or name in (".", "..") or any(c in name for c in "/\\\x00"):
        raise StoreError(f"{what} name {name!r} cannot name a file")
    return name


def _parse_ref(ref: str) -> tuple[str, str]:
    parts = ref.split("/") if isinstance(ref, str) else []
    if len(parts) != 3 or parts[0] != "artifacts" or any(p in ("", ".", "..") for p in parts):
        raise StoreError(
            f"artifact reference {ref!r} is not of the form 'artifacts/<run_id>/<name>'"
        )
    return parts[1], parts[2]


def _metric_filter(item: Any) -> tuple[str, str, float]:
    try:
        name, op, threshold = item
    except (TypeError, ValueError):
        raise ValidationError(
            f"a metric filter is a (metric, operator, threshold) tuple, got {item!r}"
        ) from None
    if not isinstance(name, str):
        raise ValidationError(f"metric filter {item!r}: the metric name must be a string")
    if op not in METRIC_OPERATORS:
        raise ValidationError(
            f"metric filter {item!r}: operator {op!r} is not one of {', '.join(METRIC_OPERATORS)}"
        )
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ValidationError(f"metric filter {item!r}: the threshold must be a number")
    return name, METRIC_OPERATORS[op], float(threshold)
