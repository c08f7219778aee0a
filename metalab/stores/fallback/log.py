"""A run's log in a `FallbackStore`: its lines follow the writes, to the primary while it
answers and to the fallback (with the lines written so far) from the moment it does not."""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

from .routing import Router, unavailable


class FallbackLog:
    """The log handle `FallbackStore.open_log` returns; with `write_to_both`, lines go to
    both stores while the primary answers."""

    def __init__(self, router: Router, run_id: str):
        self._router, self._run_id = router, run_id
        self._handles: dict[str, IO[str]] = {}
        self._lines: list[str] = []

    def _targets(self) -> list[str]:
        up = self._router.up()
        if self._router.write_to_both:
            return ["fallback", "primary"] if up else ["fallback"]
        return ["primary"] if up else ["fallback"]

    def _handle(self, target: str) -> IO[str]:
        handle = self._handles.get(target)
        if handle is None:
            router = self._router
            store = router.fallback if target == "fallback" else router.primary
            handle = self._handles[target] = store.open_log(self._run_id)
            if target == "fallback" and self._lines and not router.write_to_both:
                handle.write("".join(self._lines))  # what went to the primary until now
        return handle

    def _each(self, action: Callable[[IO[str]], Any]) -> None:
        router = self._router
        for target in self._targets():
            try:
                action(self._handle(target))
            except Exception as exc:
                if target == "fallback" or not unavailable(exc):
                    raise
                router.mark_down(exc)
                self._handles.pop(target, None)
                if not router.write_to_both:
                    action(self._handle("fallback"))

    def write(self, text: str) -> int:
        self._each(lambda handle: handle.write(text))
        self._lines.append(text)
        return len(text)

    def flush(self) -> None:
        self._each(lambda handle: handle.flush())

    def close(self) -> None:
        handles, self._handles = list(self._handles.values()), {}
        errors = []
        for handle in handles:
            try:
                handle.close()
            except Exception as exc:
                if not unavailable(exc):
                    raise
                errors.append(exc)
                self._router.mark_down(exc)
        if errors and not self._router.write_to_both:
            # the primary went away with lines unsent: the fallback gets the whole log
            fallback = self._router.fallback.open_log(self._run_id)
            try:
                fallback.write("".join(self._lines))
            finally:
                fallback.close()
