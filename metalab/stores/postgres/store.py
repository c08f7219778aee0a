"""`PostgresStore`: the `Store` contract (and `QueryStore`) on one schema of a PostgreSQL
database; safe for many processes and hosts."""

from __future__ import annotations

import functools
import json
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any, ClassVar, cast

from psycopg import sql

from ... import claims
from ..._trust import read_for_unpickling
from ...contracts import Owner, Record, StoreCapabilities, StoreDefaults
from ...errors import StoreError, ValidationError
from . import artifacts
from .connection import BATCH, Database, Rows
from .encoding import json_text, parse_records, sql_json, table_columns
from .locator import MAX_ARTIFACT_BYTES_LIMIT, PostgresLocation, parse_locator
from .logs import RunLog
from .query import records_query, where_clause
from .schema import drop_store, prepare_store
from .statements import TABLE_WRITERS, statements
from .table import read_table

_ENDED_BY_RECORD = ""
"""What a held claim's token becomes once the record that ends the run deleted the claim."""


class PostgresStore(StoreDefaults):
    """A store in one schema of a PostgreSQL database; safe for many processes and hosts.

    Open it with `PostgresStore.open(locator)` (or `metalab.store.create_store(locator)`).
    `locator` reopens it anywhere, password included; `public_locator` and `repr()` never show
    the password.
    """

    capabilities: ClassVar[StoreCapabilities] = StoreCapabilities(queries=True)
    cancel_poll_interval = 1.0
    """Seconds between two checks of a sweep's cancellation by a running task."""

    def __init__(self, location: PostgresLocation):
        if not isinstance(location, PostgresLocation):
            raise ValidationError(
                f"PostgresStore takes a parsed location, got {location!r}: open a locator "
                "string with PostgresStore.open(locator) or metalab.store.create_store(locator)"
            )
        self._location = location
        self._db = Database(location)
        self._sql = statements(location.schema)
        self._held: dict[str, str] = {}
        self._owner_cache: tuple[Owner, str] | None = None
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
        at once. Idempotent: opening an existing store changes nothing.
        """
        if not isinstance(create, bool):
            raise ValidationError(f"create must be True or False, got {create!r}")
        store = cls(parse_locator(locator))
        store._db.retrying(functools.partial(store._prepare, create))
        return store

    def _prepare(self, create: bool) -> None:
        with self._db.direct_connection() as conn:
            meta = prepare_store(conn, self._location, create)
        self._store_id = meta.store_id
        if create and self._location.artifact_root is not None:
            artifacts.claim_root(self._location.artifact_root, meta.store_id, self.public_locator)
            self._root_checked = True

    def drop(self) -> None:
        """Delete this store: its tables, views and function, then its schema if it is empty
        (never `public`). Files under `artifact_root` are left alone. Idempotent."""
        self._db.retrying(self._drop)

    def _drop(self) -> None:
        with self._db.direct_connection() as conn:
            drop_store(conn, self._location.schema)

    def close(self) -> None:
        """Close this process's connections to the server; the store reopens them when used."""
        self._db.close()

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

    # ---------------------------------------------------------------- experiments
    def write_manifest(self, experiment_id: str, manifest: Mapping[str, Any]) -> str:
        """Add a manifest row (never overwrites one); return `manifests/<id>`.

        Idempotent: the same manifest written again is the row already there. A new sweep
        also deletes claims left on completed runs (a record written by another writer than
        the claim's owner, say, whose owner then died) once their lease is over.
        """
        text = json_text(manifest)
        rows = self._db.execute(
            self._sql.insert_manifest, (experiment_id, text, experiment_id, text)
        )
        self._db.execute(self._sql.clean_claims, (claims.LEASE_SECONDS,))
        return f"manifests/{rows[0][0]}"

    def manifests(self, experiment_id: str | None = None) -> list[dict[str, Any]]:
        """Return manifests (of one experiment or all), oldest first, each with `_file`."""
        if experiment_id is None:
            rows = self._db.execute(self._sql.all_manifests)
        else:
            rows = self._db.execute(self._sql.manifests_of, (experiment_id,))
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
        self._db.execute(self._sql.save_experiment, (key, blob))

    def load_experiment(self, key: str) -> bytes:
        """Return the serialized experiment `key`; StoreError when the store has none."""
        rows = self._db.execute(self._sql.load_experiment, (key,))
        if not rows:
            raise StoreError(f"store {self.public_locator!r} has no experiment {key!r}")
        return bytes(rows[0][0])

    def read_pickled(self, kind: str, key: str) -> tuple[bytes, str | None]:
        """Return the bytes of experiment `key` (`kind` "experiment") or of the artifact
        reference `key` ("artifact"), and why someone other than the user could have
        written them (None when nobody else could); StoreError when they are missing.

        Bytes kept in the database are the user's own when the role this store connects as
        owns the table holding them and no other role was granted to write it; an artifact
        kept as a file under `artifact_root` follows the rule for files."""
        if kind == "experiment":
            return self.load_experiment(key), self._why_shared("experiments")
        root = self._location.artifact_root
        if root is not None:
            artifacts.parse_ref(key)
            try:
                return read_for_unpickling(os.path.join(root, key))
            except FileNotFoundError:
                pass  # it may be in the database, written before artifact_root was set
        return self.read_artifact(key), self._why_shared("artifacts")

    def _why_shared(self, table: str) -> str | None:
        """Why roles other than this store's could have written `table`, or None."""
        name = sql.Identifier(self.schema, table).as_string(None)
        owner, user, shared = self._db.execute(TABLE_WRITERS, (name,))[0]
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
        rows = self._db.execute(self._sql.scan)
        return {run_id for run_id, _ in rows}, {run_id for run_id, done in rows if done}

    def put_record(self, record: Record) -> None:
        """Persist a final record in one statement, replacing any earlier record of the run.

        The same transaction deletes this process's claim on the run: a claim never outlives
        the record that ends it, even if the process dies before `release`. Idempotent.
        Return None: the database keeps the record's JSON, the worker sends the record.
        """
        run_id, status = _required(record, "run_id"), _required(record, "status")
        token = self._held.get(run_id) or None
        self._db.execute(
            self._sql.put_record,
            (
                run_id,
                token,
                run_id,
                record.get("experiment_id", ""),
                record.get("index"),
                status,
                status == "completed",
                sql_json(record.get("params") or {}),
                sql_json(record.get("metrics") or {}),
                sql_json(record["series"]) if record.get("series") else "{}",
                json_text(record),
                *table_columns(record),
            ),
        )
        if token is not None:
            self._held[run_id] = _ENDED_BY_RECORD  # release() has nothing left to delete

    def get_record(self, run_id: str) -> Record | None:
        """Return the record of `run_id`, or None when it has none; StoreFormatError for a
        record that cannot be read."""
        rows = self._db.execute(self._sql.get_record, (run_id,))
        return self._parse_rows([(run_id, rows[0][0])])[0] if rows else None

    def get_records(self, run_ids: Iterable[str]) -> Iterator[Record]:
        """Yield the records of `run_ids` that exist, in the order given."""
        ids = list(run_ids)
        for start in range(0, len(ids), BATCH):
            batch = ids[start : start + BATCH]
            rows = self._db.execute(self._sql.get_records, (list(set(batch)),))
            found = dict(zip([r[0] for r in rows], self._parse_rows(rows)))
            yield from (found[run_id] for run_id in batch if run_id in found)

    def iter_records(self, experiment_id: str | None = None) -> Iterator[Record]:
        """Yield every record (of one experiment, or all), streamed in batches, ordered by
        experiment id and run index (the order `load_results` shows them in)."""
        if experiment_id is None:
            batches = self._db.stream(self._sql.all_records, ())
        else:
            batches = self._db.stream(self._sql.records_of, (experiment_id,))
        for rows in batches:
            yield from self._parse_rows(rows)

    def field_names(self, experiment_id: str | None = None) -> dict[str, list[str]]:
        """The names of the parameters, scalar metrics and stepped metrics (`params`,
        `metrics`, `series`) of the records (of one experiment, or all), by the first run
        index holding them, then by name. Read-only; raises StoreError when the database
        fails."""
        names: dict[str, list[str]] = {"params": [], "metrics": [], "series": []}
        for kind, name in self._db.execute(self._sql.field_names, [experiment_id] * 6):
            names[kind].append(name)
        return names

    def has_field(self, kind: str, name: str, experiment_id: str | None = None) -> bool:
        """Whether some record (of one experiment, or any) has a `kind` (`params`, `metrics`
        or `series`) called `name`; read-only, StoreError when the database fails."""
        statement = {
            "params": self._sql.has_params,
            "metrics": self._sql.has_metrics,
            "series": self._sql.has_series,
        }.get(kind)
        if statement is None:
            raise ValueError(f"kind must be params, metrics or series, got {kind!r}")
        rows = self._db.execute(statement, [experiment_id, experiment_id, name])
        return bool(rows and rows[0][0])

    def query_records(
        self,
        experiment_id: str | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        metric_filters: Iterable[tuple[str, str, float]] = (),
        status: str | None = None,
        near: Mapping[str, float] | None = None,
    ) -> list[Record]:
        """Return the records that match every filter, selected by the database.

        - `experiment_id`: `"name:version"`, exactly.
        - `params`: `{name: value}`; a run matches when its parameter equals the value (JSON
          equality: `1 == 1.0`, and lists and dicts must be equal as a whole).
        - `metric_filters`: `[(metric, op, threshold)]` with `op` one of `<`, `<=`, `>`,
          `>=`, `==`; booleans count as 0 and 1. A run without that metric, or whose value is
          NaN, never matches (as `nan < x` is false in Python).
        - `status`: `"completed"`, `"failed"`, `"interrupted"` or `"cancelled"`.
        - `near`: `{name: number}`; a run matches when its parameter is a number within a
          relative 1e-9 of it (and a little more: the caller refines).

        Records come ordered by experiment id and run index. Read-only. Raises
        ValidationError for an unknown operator or a threshold that is not a number, and
        FingerprintError for a parameter value that is not JSON (as `Results.filter` does).
        """
        query, args = records_query(
            self._location.schema, experiment_id, params or {}, metric_filters, status, near
        )
        return self._parse_rows(self._db.execute(query, args))

    def query_table(
        self,
        experiment_id: str | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        metric_filters: Iterable[tuple[str, str, float]] = (),
        status: str | None = None,
        near: Mapping[str, float] | None = None,
    ) -> Any:
        """Return what `query_records` selects (the same filters, the same runs in the same
        order) as a runs table (`metalab.runs_table`), read in bulk without a record per
        run. Read-only. Raises what `query_records` raises, and MissingDependencyError
        without pyarrow."""
        schema = self._location.schema
        where, args = where_clause(
            schema, experiment_id, params or {}, metric_filters, status, near
        )
        read = functools.partial(
            read_table,
            schema=schema,
            experiment_id=experiment_id,
            where=where,
            args=args,
            records=self._records_in,
        )
        return self._db.snapshot(read)

    def _records_in(self, conn: Any, run_ids: list[str]) -> dict[str, Record]:
        rows = conn.execute(self._sql.get_records, (run_ids,)).fetchall()
        return dict(zip([r[0] for r in rows], self._parse_rows(rows)))

    def _parse_rows(self, rows: Rows) -> list[Record]:
        return parse_records(rows, f"run record {{}} in store {self.public_locator!r}")

    # ---------------------------------------------------------------- artifacts and logs
    def put_artifact(self, run_id: str, filename: str, data: bytes) -> str:
        """Store artifact bytes atomically; return the reference `artifacts/<run_id>/<name>`.

        With `artifact_root` the bytes go to `<artifact_root>/artifacts/<run_id>/<name>`;
        without, into the database, up to `max_artifact_bytes` (a StoreError past it).
        Idempotent: the same bytes written again replace themselves.
        """
        ref = artifacts.artifact_ref(run_id, filename)
        root = self._location.artifact_root
        if root is None:
            self._check_size(run_id, filename, len(data))
            self._db.execute(self._sql.put_artifact, (run_id, filename, len(data), data, None))
            return ref
        self._check_artifact_root(root)
        artifacts.write_file(root, run_id, filename, data)
        self._db.execute(self._sql.put_artifact, (run_id, filename, len(data), None, root))
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

    def _check_artifact_root(self, root: str) -> None:
        if not self._root_checked:
            artifacts.check_root(root, self._get_store_id(), self.public_locator)
            self._root_checked = True

    def _get_store_id(self) -> str:
        if self._store_id is None:
            self._store_id = str(self._db.execute(self._sql.read_meta)[0][2])
        return self._store_id

    def read_artifact(self, ref: str) -> bytes:
        """Return the bytes behind a reference from `put_artifact`; StoreError when missing."""
        run_id, filename = artifacts.parse_ref(ref)
        root = self._location.artifact_root
        if root is not None:
            data = artifacts.read_file(root, ref)
            if data is not None:
                return data
            # else it may be in the database, written before artifact_root was set
        rows = self._db.execute(self._sql.read_artifact, (run_id, filename))
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

    def open_log(self, run_id: str) -> IO[str]:
        """Open the run's log for appending, in chunks (see `RunLog`); every line is in the
        database once the log is closed, and earlier attempts' lines stay."""
        return cast(IO[str], RunLog(functools.partial(self._append_log, run_id)))

    def _append_log(self, run_id: str, chunk: bytes) -> None:
        # the chunk's id makes a retried append (its acknowledgement lost) add it once
        self._db.execute(self._sql.append_log, (run_id, chunk, str(uuid.uuid4())))

    def put_log(self, run_id: str, text: str) -> None:
        """Replace the run's log with `text` in one statement (what a transfer writes);
        idempotent."""
        self._db.execute(self._sql.put_log, (run_id, run_id, text.encode("utf-8")))

    def read_log(self, run_id: str) -> str:
        """Return the run's log text ("" when it logged nothing)."""
        rows = self._db.execute(self._sql.read_log, (run_id,))
        return b"".join(bytes(chunk) for (chunk,) in rows).decode("utf-8")

    # ---------------------------------------------------------------- claims
    def claim(self, run_id: str, owner: Owner) -> bool:
        """Claim `run_id` for `owner`, taking over a claim whose owner is dead; False while
        another live owner holds it. Atomic: of many claimants, exactly one wins.

        Each claim has a token of its own; a retry (the server went away before it
        acknowledged the claim) finds the claim it took and wins it again.
        """
        owner_json = self._owner_json(owner)
        token = str(uuid.uuid4())
        won = self._db.retrying(functools.partial(self._claim_once, run_id, owner_json, token))
        if won:
            self._held[run_id] = token
            touch = functools.partial(self._touch, run_id, token)
            claims.heartbeat.hold(self._heartbeat_key(run_id), touch)
        return won

    def _claim_once(self, run_id: str, owner: str, token: str) -> bool:
        with self._db.connection() as conn:
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

    def _owner_json(self, owner: Owner) -> str:
        cached = self._owner_cache
        if cached is None or cached[0] is not owner:  # one owner dict serves a whole task
            cached = self._owner_cache = (owner, sql_json(owner))
        return cached[1]

    def _heartbeat_key(self, run_id: str) -> str:
        return f"{self.public_locator}#claim/{run_id}"

    def _touch(self, run_id: str, token: str) -> None:
        try:
            self._db.execute(self._sql.touch_claim, (run_id, token), retry=False)
        except StoreError:
            pass  # the next beat tries again; a lapsed lease only lets other hosts take over

    def claim_owner(self, run_id: str) -> Owner | None:
        """Return the owner of the claim on `run_id` (alive or dead), or None."""
        rows = self._db.execute(self._sql.claim_owner, (run_id,))
        return rows[0][0] if rows else None

    def release(self, run_id: str) -> None:
        """Give up this process's claim on `run_id`; a claim someone else holds (or took over
        after our lease lapsed) stays. Idempotent."""
        claims.heartbeat.release(self._heartbeat_key(run_id))
        token = self._held.pop(run_id, None)
        if token == _ENDED_BY_RECORD:
            return
        if token is not None:
            self._db.execute(self._sql.release_exact, (run_id, token))
        else:
            me = claims.owner()
            process = {"host": me["host"], "pid": me["pid"], "start": me["start"]}
            self._db.execute(self._sql.release_process, (run_id, sql_json(process)))

    def claims(self) -> dict[str, Owner]:
        """Return live claims: run id -> owner."""
        rows = self._db.execute(self._sql.all_claims)
        return {run_id: owner for run_id, owner, age in rows if claims.is_alive(owner, age)}

    # ---------------------------------------------------------------- control
    def request_cancel(self, session: str) -> None:
        """Ask every run of `session` to stop; idempotent."""
        self._db.execute(self._sql.request_cancel, (session,))

    def cancel_requested(self, session: str) -> bool:
        """Return whether `request_cancel(session)` was called."""
        return bool(self._db.execute(self._sql.cancel_requested, (session,))[0][0])

    # ---------------------------------------------------------------- derived metrics
    def put_derived(self, run_id: str, values: Mapping[str, Any]) -> None:
        """Replace the derived metrics document of `run_id` in one statement; idempotent."""
        self._db.execute(self._sql.put_derived, (run_id, json_text(values), sql_json(values)))

    def get_derived(self, run_id: str) -> dict[str, Any]:
        """Return the derived metrics document of `run_id` ({} when none)."""
        rows = self._db.execute(self._sql.get_derived, (run_id,))
        return json.loads(rows[0][0]) if rows else {}


def _required(record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value:
        raise StoreError(f"a run record needs a non-empty string {key!r}, got {value!r}")
    return value
