"""Connections to a PostgreSQL server: one small pool per process and server, and calls
retried while the server cannot be reached.

A pool never crosses a fork: the child sets its parent's pools aside, unused and unclosed
(closing them would end the parent's sessions, and their locks may have been held at the
fork), and opens its own.

A database restart of a few seconds must cost a sweep nothing but that time: a call that
raises `StoreUnavailableError` is made again (`retry_unavailable`) after a pause that doubles
each time (with jitter, so many workers do not come back in step), until the store's
`reconnect_timeout` has passed since the first failure. Only calls that are safe to repeat
may be retried: a write whose acknowledgement was lost may have been committed, so every
retried write is idempotent.
"""

from __future__ import annotations

import atexit
import functools
import logging
import math
import os
import random
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from ...errors import StoreUnavailableError
from .locator import DEFAULT_CONNECT_TIMEOUT, PostgresLocation

logger = logging.getLogger("metalab")

FIRST_PAUSE = 0.05
MAX_PAUSE = 2.0
_IDLE_CHECK_SECONDS = 30.0
_RENEW_SECONDS = 5.0
_T = TypeVar("_T")

_pools: dict[tuple[str, int, str | None], ConnectionPool] = {}
_pools_pid = os.getpid()
_pools_lock = threading.Lock()
_inherited: list[ConnectionPool] = []
_renewed_at: dict[tuple[str, int, str | None], float] = {}
_lent_at: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
_probe_until = [0.0]
"""Until when every checkout probes its connection: a while after a connection failed, the
pool may still hold connections to a server that restarted since."""


# ---------------------------------------------------------------- retrying
def retry_unavailable(call: Callable[[], _T], timeout: float, what: str) -> _T:
    """Return `call()`, calling it again while it raises `StoreUnavailableError`.

    Pauses 0.05 s, then twice as long each time (at most 2 s, each pause jittered by up to
    half), and gives up `timeout` seconds after the first failure, raising the last error
    with the time it kept trying. `timeout=0` makes one attempt. `what` names the server in
    the log line written when retrying starts.
    """
    try:
        return call()
    except StoreUnavailableError as exc:
        if timeout <= 0:
            raise
        last = exc
    logger.warning("%s; retrying for up to %g s", last, timeout)
    deadline = time.monotonic() + timeout
    pause = FIRST_PAUSE
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise StoreUnavailableError(
                f"{last} (still unreachable after retrying for {timeout:g} s; "
                f"raise the store's reconnect_timeout to wait longer)"
            ) from last
        time.sleep(min(left, pause * random.uniform(0.5, 1.0)))
        pause = min(pause * 2, MAX_PAUSE)
        try:
            result = call()
        except StoreUnavailableError as exc:
            last = exc
            continue
        logger.info("%s is reachable again", what)
        return result


def connection_failed() -> None:
    """Note that a connection failed: checkouts probe their connection for a while."""
    _probe_until[0] = time.monotonic() + 120.0


def reconnecting() -> bool:
    """Whether a connection failed lately (the pools may still be reconnecting)."""
    return time.monotonic() < _probe_until[0]


# ---------------------------------------------------------------- pools
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


def pool_for(location: PostgresLocation) -> ConnectionPool:
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
        timeout=pool_wait(location),
        num_workers=1,
        configure=configure,
        check=_check_if_idle,
    )


def pool_wait(location: PostgresLocation) -> float:
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


def renew_pool(location: PostgresLocation, stale: ConnectionPool) -> ConnectionPool | None:
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


def close_pool(location: PostgresLocation) -> None:
    """Close this process's pool for `location`; the next use opens another."""
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
