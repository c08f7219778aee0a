"""Where a `FallbackStore`'s calls go: to the primary while it answers, to the fallback for
`retry_after` seconds from the moment it does not."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ...contracts import Store
from ...errors import StoreError, StoreUnavailableError
from ...registry import open_store
from ..locator import to_locator

logger = logging.getLogger("metalab")

T = TypeVar("T")


def unavailable(exc: BaseException) -> bool:
    """Whether `exc` means a store cannot be reached (rather than a bad request)."""
    if isinstance(exc, StoreUnavailableError | ConnectionError | TimeoutError):
        return True
    return any(
        cls.__name__ in ("OperationalError", "InterfaceError", "PoolTimeout")
        for cls in type(exc).__mro__
    )


class Router:
    """The primary and the fallback, and until when the primary counts as down.

    A primary that could not be opened is opened on its next use (after `retry_after`).
    """

    def __init__(
        self,
        primary: Store | str,
        fallback: Store,
        *,
        write_to_both: bool,
        retry_after: float,
    ):
        self._primary = None if isinstance(primary, str) else primary
        self._primary_locator = primary if isinstance(primary, str) else primary.locator
        self.fallback = fallback
        self.write_to_both = write_to_both
        self.retry_after = retry_after
        self._down_until = 0.0
        self._lock = threading.Lock()

    @property
    def primary(self) -> Store:
        """The primary store, opened now if it could not be before; StoreUnavailableError
        while it cannot be reached."""
        if self._primary is None:
            self._primary = open_store(self._primary_locator)
        return self._primary

    def open_primary(self) -> None:
        """Open the primary now if it is not open; while it cannot be reached, calls go to
        the fallback (other errors are raised)."""
        if self._primary is not None:
            return
        try:
            self._primary = open_store(self._primary_locator)
        except StoreError as exc:
            if not unavailable(exc):
                raise
            self.mark_down(exc)

    @property
    def primary_opened(self) -> Store | None:
        """The primary store, or None while it could not be opened."""
        return self._primary

    @property
    def primary_locator(self) -> str:
        """The primary's locator, whether or not it could be opened."""
        return self._primary_locator if self._primary is None else self._primary.locator

    # ---------------------------------------------------------------- the outage
    def up(self) -> bool:
        """Whether calls go to the primary now."""
        return time.monotonic() >= self._down_until

    def mark_down(self, exc: BaseException) -> None:
        """Send calls to the fallback for the next `retry_after` seconds (`exc` said why)."""
        with self._lock:
            first = self.up()
            self._down_until = time.monotonic() + self.retry_after
        if first:
            logger.warning(
                "primary store unavailable (%s); writing to the fallback %s for %.0f s",
                exc,
                to_locator(self.fallback),
                self.retry_after,
            )

    def mark_up(self) -> None:
        """Send calls to the primary again."""
        with self._lock:
            self._down_until = 0.0

    # ---------------------------------------------------------------- routing
    def on_primary(self, call: Callable[[Store], T]) -> tuple[bool, T | None]:
        """Return (True, `call(primary)`), or (False, None) when the primary is down or
        turns out to be; errors other than an unreachable primary are raised."""
        if not self.up():
            return False, None
        try:
            return True, call(self.primary)
        except Exception as exc:
            if not unavailable(exc):
                raise
            self.mark_down(exc)
            return False, None

    def answering(self, call: Callable[[Store], T]) -> tuple[Store, T]:
        """Return the store that took `call` and its result: the primary while it is up,
        else the fallback."""
        done, result = self.on_primary(call)
        if done:
            return self.primary, result  # type: ignore[return-value]
        return self.fallback, call(self.fallback)

    def write(self, call: Callable[[Store], T]) -> T:
        """Return `call` made on the primary, or on the fallback while the primary is down;
        with `write_to_both` made on the fallback always, and on the primary while it is up
        (whose result is returned then)."""
        if not self.write_to_both:
            return self.answering(call)[1]
        result = call(self.fallback)
        done, on_primary = self.on_primary(call)
        return on_primary if done else result  # type: ignore[return-value]

    def both(self, call: Callable[[Store], Any]) -> None:
        """Make `call` on the fallback, and on the primary while it is up."""
        call(self.fallback)
        self.on_primary(call)

    def read(self, call: Callable[[Store], T]) -> list[T]:
        """Return `call`'s results on each store readable now (the primary while it is up,
        then the fallback); iterators are read to the end here, so a primary failing while
        being read counts as down too."""
        out: list[Any] = []
        done, result = self.on_primary(lambda store: _listed(call(store)))
        if done:
            out.append(result)
        out.append(_listed(call(self.fallback)))
        return out

    def first(self, call: Callable[[Store], T], what: str | None) -> T:
        """Return `call`'s result on the first readable store that has what it asks for.
        Failing on the fallback too raises StoreError `<what> is in neither store`, or the
        fallback's error as it is when `what` is None."""
        if self.up():
            try:
                return call(self.primary)
            except Exception as exc:
                if not (isinstance(exc, StoreError) or unavailable(exc)):
                    raise
                if unavailable(exc):
                    self.mark_down(exc)
        if what is None:
            return call(self.fallback)
        try:
            return call(self.fallback)
        except Exception as exc:
            if not (isinstance(exc, StoreError) or unavailable(exc)):
                raise
            raise StoreError(f"{what} is in neither store: {exc}") from exc


def _listed(result: Any) -> Any:
    return list(result) if isinstance(result, Iterator) else result
