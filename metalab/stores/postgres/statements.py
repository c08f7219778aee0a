"""Every SQL statement the PostgreSQL store runs, rendered once per schema.

Statements are parameterized (`%s`), and the schema name is always quoted as an identifier:
`{schema}` in a template stands for it.
"""

from __future__ import annotations

import dataclasses
import functools

from psycopg import sql


@dataclasses.dataclass(frozen=True)
class Statements:
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
        " params, metrics, series, record, replicate, duration, started_at, finished_at,"
        " param_shape, metric_shape, tabled)"
        " VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s::jsonb, %s, %s, %s, %s, %s, %s,"
        " %s, %s)"
        " ON CONFLICT (run_id) DO UPDATE SET experiment_id = EXCLUDED.experiment_id,"
        " run_index = EXCLUDED.run_index, status = EXCLUDED.status,"
        " completed = EXCLUDED.completed, params = EXCLUDED.params, metrics = EXCLUDED.metrics,"
        " series = EXCLUDED.series, record = EXCLUDED.record, replicate = EXCLUDED.replicate,"
        " duration = EXCLUDED.duration, started_at = EXCLUDED.started_at,"
        " finished_at = EXCLUDED.finished_at, param_shape = EXCLUDED.param_shape,"
        " metric_shape = EXCLUDED.metric_shape, tabled = EXCLUDED.tabled, written_at = now()"
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
    # whether some run has a name: the scan stops at the first run that has it
    has_params: str = (
        "SELECT EXISTS (SELECT 1 FROM {schema}.runs"
        " WHERE (%s::text IS NULL OR experiment_id = %s) AND params ? %s)"
    )
    has_metrics: str = (
        "SELECT EXISTS (SELECT 1 FROM {schema}.runs"
        " WHERE (%s::text IS NULL OR experiment_id = %s) AND metrics ? %s)"
    )
    has_series: str = (
        "SELECT EXISTS (SELECT 1 FROM {schema}.runs"
        " WHERE (%s::text IS NULL OR experiment_id = %s) AND series ? %s)"
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

    def for_schema(self, schema: str) -> Statements:
        """Return these statements with `{schema}` replaced by the quoted `schema`."""
        ident = sql.Identifier(schema)
        return Statements(
            **{
                f.name: sql.SQL(getattr(self, f.name)).format(schema=ident).as_string(None)
                for f in dataclasses.fields(self)
            }
        )


@functools.lru_cache(maxsize=64)
def statements(schema: str) -> Statements:
    """Return the statements for the store in `schema` (rendered once per schema)."""
    return Statements().for_schema(schema)


TABLE_WRITERS = (
    "SELECT pg_get_userbyid(c.relowner), current_user, EXISTS (SELECT 1 FROM"
    " aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) AS a"
    " WHERE a.grantee <> c.relowner AND a.privilege_type IN ('INSERT', 'UPDATE'))"
    " FROM pg_class AS c WHERE c.oid = %s::regclass"
)
"""The owner of a table, the role connected, and whether other roles may write the table."""
