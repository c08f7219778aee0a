"""Calls to a store server retried while the server cannot be reached, for a bounded time.

A database restart of a few seconds must cost a sweep nothing but that time. A store whose
calls may meet a server that is gone runs each call through `retry_unavailable`: a call that
raises `StoreUnavailableError` is made again after a pause that doubles each time (with
jitter, so many workers do not come back in step), until `timeout` seconds have passed since
the first failure. Only calls that are safe to repeat may be retried: a write whose
acknowledgement was lost may have been committed, so every retried write must be idempotent.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from ..errors import StoreUnavailableError

logger = logging.getLogger("metalab")

DEFAULT_TIMEOUT = 30.0
"""Seconds a call keeps retrying, from its first failure, before its error is raised."""
MAX_TIMEOUT = 86_400.0
FIRST_PAUSE = 0.05
MAX_PAUSE = 2.0

T = TypeVar("T")


def retry_unavailable(call: Callable[[], T], timeout: float, what: str) -> T:
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
