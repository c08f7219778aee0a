"""`PostgresStore`: run records, artifacts, logs and claims in a PostgreSQL schema.

One store is one schema (`metalab` unless the locator says `?schema=`), created and migrated
on open. Its tables:

    store_meta          one row: store format, schema version, store id
    manifests           one row per submission (the manifest's JSON text)
    experiments         serialized experiments workers rebuild runs from
    runs                one row per run: the record's exact JSON text, plus columns to query
                        (experiment_id, run_index, status, completed, and `params`, `metrics`,
                        `series` as jsonb) and to read as a table without parsing the record
                        (replicate, duration, started_at, finished_at, the names of its params
                        and metrics, and `tabled`: whether these columns say exactly what the
                        record says)
    artifacts           artifact bytes (or, with `artifact_root`, where the file is)
    logs                capture.log() text, appended chunk by chunk across attempts
    derived             derived metrics documents
    claims              who is running a run now (UNLOGGED: coordination, not results)
    cancel_requests     sessions asked to stop

and two views for SQL users: `run_metrics` (run_id, experiment_id, name, value) and
`metric_steps` (run_id, experiment_id, name, position, step, value).

Every write is one statement (so one transaction), every statement is parameterized, and the
schema name is always quoted as an identifier.

The modules: `locator` (parsing `postgresql://` locators), `schema` (tables, creation and
migration), `statements` (the SQL), `pool` (connection pools, retries while the server is
away), `connection` (`Database`, where statements run), `encoding` (JSON for jsonb, records
read back), `query` (the SQL filters of `query_records` and `query_table`), `table` and
`columns` (`query_table`: runs read with one `COPY` into a runs table), `artifacts` (files
under `artifact_root`), `logs` (a run's log) and `store` (`PostgresStore`). Only this package
imports psycopg.
"""

from ...errors import MissingDependencyError, install_hint

try:
    import psycopg  # noqa: F401 - checked here, once, before any module of the package uses it
    import psycopg_pool  # noqa: F401
except ImportError as _exc:
    raise MissingDependencyError(
        "PostgreSQL stores need the 'psycopg' and 'psycopg_pool' packages: "
        + install_hint("postgres")
    ) from _exc

from .locator import LocatorError, PostgresLocation, parse_locator
from .schema import SCHEMA_VERSION, STORE_FORMAT
from .store import PostgresStore

__all__ = [
    "SCHEMA_VERSION",
    "STORE_FORMAT",
    "LocatorError",
    "PostgresLocation",
    "PostgresStore",
    "parse_locator",
]
