"""The one way the PostgreSQL store reaches its database: `Database` runs statements on
pooled connections, retries them while the server cannot be reached, and translates
psycopg's errors into metalab's (`StoreError`, `StoreUnavailableError`)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from ...errors import StoreError, StoreUnavailableError
from .locator import PostgresLocation, one_line
from .pool import (
    close_pool,
    connection_failed,
    pool_for,
    pool_wait,
    reconnecting,
    renew_pool,
    retry_unavailable,
)

BATCH = 2000
"""Rows read at a time from a stream, and ids asked for in one statement."""
_RECONNECTING_WAIT = 2.0
# SQLSTATEs that mean the server went away or will not take connections now
_UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03", "53300")
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
_T = TypeVar("_T")
Rows = list[tuple[Any, ...]]


class Database:
    """The database of one store: statements run here, and nowhere else."""

    def __init__(self, location: PostgresLocation):
        self._location = location

    def retrying(self, call: Callable[[], _T]) -> _T:
        """Return `call()`, made again while the server cannot be reached (a restart), for up
        to `reconnect_timeout` seconds. `call` must be safe to repeat: every write is."""
        what = f"the PostgreSQL server of store {self._location.public_locator!r}"
        return retry_unavailable(call, self._location.reconnect_timeout, what)

    def execute(
        self, query: str | sql.Composed, args: Sequence[Any] = (), *, retry: bool = True
    ) -> Rows:
        """Run one statement on a pooled connection; return its rows ([] when it has none).
        Retried while the server cannot be reached (see `retrying`), unless `retry=False`.
        StoreError when it fails; StoreUnavailableError when the server stays unreachable."""
        run = functools.partial(self._execute_once, query, args)
        return self.retrying(run) if retry else run()

    def _execute_once(self, query: str | sql.Composed, args: Sequence[Any]) -> Rows:
        with self.connection() as conn:
            cursor = conn.execute(query, args)
            return cursor.fetchall() if cursor.description is not None else []

    def snapshot(self, call: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        """Return `call(connection)`, run in one read-only transaction that sees the database
        as it was when it began, whatever is written meanwhile (so several statements see the
        same runs). Retried while the server cannot be reached; StoreError when it fails."""
        return self.retrying(functools.partial(self._snapshot_once, call))

    def _snapshot_once(self, call: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        with self.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return call(conn)

    def stream(self, query: str, args: Sequence[Any]) -> Iterator[Rows]:
        """Yield the rows `query` selects in batches of `BATCH`; the first batch is retried
        while the server cannot be reached, a failure after it raises."""
        rows, first = self.retrying(functools.partial(self._start_stream, query, args))
        try:
            yield first
            yield from rows
        finally:
            rows.close()  # lends the connection back when the caller stops early

    def _start_stream(self, query: str, args: Sequence[Any]) -> tuple[Generator[Rows], Rows]:
        rows = self._stream_rows(query, args)
        return rows, next(rows)

    def _stream_rows(self, query: str, args: Sequence[Any]) -> Generator[Rows]:
        with self.connection() as conn:
            batch: Rows = []
            for row in conn.cursor().stream(query, args, size=BATCH):
                batch.append(row)
                if len(batch) == BATCH:
                    yield batch
                    batch = []
            yield batch

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
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

    @contextlib.contextmanager
    def direct_connection(self) -> Iterator[psycopg.Connection[Any]]:
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

    def close(self) -> None:
        """Close this process's connections to the server; they reopen when used."""
        close_pool(self._location)

    def _checkout(self) -> tuple[ConnectionPool, psycopg.Connection[Any]]:
        """A connection from this process's pool, and the pool to give it back to.

        A pool that lost its connections reconnects on a schedule of its own, which after a
        long outage may lag well behind a server that is back. So while connections failed
        lately, a checkout waits briefly; if the server then answers, the lagging pool is
        replaced by a fresh one, which connects at once (at most every few seconds: a pool
        that is merely busy is not replaced over and over).
        """
        location = self._location
        pool = pool_for(location)
        lately = reconnecting()
        wait = min(pool_wait(location), _RECONNECTING_WAIT) if lately else None
        try:
            return pool, pool.getconn(timeout=wait)
        except PoolTimeout as exc:
            with self.direct_connection():  # raises StoreUnavailableError if the server is gone
                pass
            if not lately:
                raise self._busy() from exc
            renewed = renew_pool(location, pool)
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
            f"PostgreSQL store {self._location.public_locator!r}: all "
            f"{self._location.pool_size} pooled connections stayed busy for "
            f"{pool_wait(self._location):g} s; raise ?pool_size="
        )

    def _translated(self, exc: psycopg.Error) -> StoreError:
        """psycopg's error as a StoreError: a StoreUnavailableError when the server went away,
        shuts down, starts up or takes no more connections (a retry may work)."""
        if isinstance(exc, psycopg.OperationalError) and _reconnectable(exc):
            connection_failed()
            return StoreUnavailableError(self._unreachable(exc))
        return StoreError(
            f"PostgreSQL store {self._location.public_locator!r}: "
            f"{type(exc).__name__}: {one_line(exc)}"
        )

    def _refused(self, exc: BaseException) -> str:
        return (
            f"the PostgreSQL server of store {self._location.public_locator!r} "
            f"({self._location.describe()}) refused the connection: {one_line(exc)}"
        )

    def _unreachable(self, exc: BaseException) -> str:
        return (
            f"cannot reach the PostgreSQL server of store {self._location.public_locator!r} "
            f"({self._location.describe()}): {one_line(exc)}"
        )


def _misconfigured(exc: BaseException) -> bool:
    """Whether a failed connection was refused by a running server (a wrong database, role
    or password), rather than a server that cannot be reached or is starting up."""
    text = str(exc).lower()
    return "fatal:" in text and any(refusal in text for refusal in _REFUSALS)


def _reconnectable(exc: psycopg.OperationalError) -> bool:
    """Whether `exc` says the server cannot be reached now, rather than a bad request."""
    if _misconfigured(exc):
        return False
    return exc.sqlstate is None or exc.sqlstate.startswith(_UNAVAILABLE_STATES)
