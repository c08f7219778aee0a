"""The scheduler plugin: the registry of sweeps, and the thread that reads their stores."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from importlib.util import find_spec
from typing import Any, TypeVar

from distributed.diagnostics.plugin import SchedulerPlugin

from .. import registry
from ..contracts import Store
from . import limits
from ._page import add_page
from ._view import Snapshot, StoreView, SweepEntry
from .links import PLUGIN_NAME

T = TypeVar("T")


class MetalabPlugin(SchedulerPlugin):
    """The scheduler's registry of metalab sweeps, and the dashboard page that shows them."""

    name = PLUGIN_NAME
    idempotent = True

    def __init__(self) -> None:
        self.sweeps: dict[str, SweepEntry] = {}
        self.page: str | None = None
        """The page's URL path once the scheduler serves it."""
        self._views: dict[str, StoreView] = {}
        self._stores: dict[str, Store] = {}
        self._pool: ThreadPoolExecutor | None = None

    async def start(self, scheduler: Any) -> None:
        """Add the page to the scheduler's dashboard, when it has one and bokeh is installed."""
        self.page = add_page(scheduler)

    async def close(self) -> None:
        """Stop the store-reading thread."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def register(self, entry: SweepEntry) -> None:
        """List `entry` (replacing an entry of the same session)."""
        self.sweeps[entry.session] = entry
        self._views[entry.session] = StoreView(entry)

    def unregister(self, session: str) -> None:
        """Mark the sweep `session` finished; forget the oldest finished ones. Idempotent."""
        entry = self.sweeps.get(session)
        if entry is not None and entry.ended_at is None:
            entry.ended_at = time.time()
        finished = [e for e in self.entries() if not e.running]
        for old in finished[limits.MAX_FINISHED :]:
            self.sweeps.pop(old.session, None)
            self._views.pop(old.session, None)

    def entries(self) -> list[SweepEntry]:
        """Registered sweeps, newest first."""
        return sorted(self.sweeps.values(), key=lambda e: -e.started_at)

    def describe(self) -> list[dict[str, Any]]:
        """Registered sweeps as plain data, newest first, with their latest counts.

        Like the page, asking schedules a store read when the counts are stale."""
        out = []
        for entry in self.entries():
            snapshot = self.snapshot(entry.session) or Snapshot()
            out.append(
                entry.describe()
                | {"counts": dict(snapshot.counts), "running": snapshot.running}
                | {"error": snapshot.error}
            )
        return out

    def snapshot(self, session: str) -> Snapshot | None:
        """The latest snapshot of a sweep, at once; schedules a refresh when it is stale."""
        view = self._views.get(session)
        if view is None:
            return None
        if view.due(time.monotonic()):
            view.busy = True
            try:
                self.in_thread(view.refresh, self._open_store)
            except RuntimeError:  # the interpreter is exiting: the page keeps what it shows
                view.busy = False
        return view.snapshot

    def in_thread(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run `fn(*args)` in the plugin's one background thread (store reads, aggregation).

        Called in the scheduler's event loop, which the first call blocks while it imports
        pandas (see `_import_pandas_here`)."""
        if self._pool is None:
            _import_pandas_here()
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="metalab-dashboard")
        return self._pool.submit(fn, *args)

    def _open_store(self, locator: str) -> Store:
        """Open a store once per locator (called in the reading thread only)."""
        store = self._stores.get(locator)
        if store is None:
            store = self._stores[locator] = registry.open_store(locator, create=False)
        return store


def _import_pandas_here() -> None:
    """Import pandas, where it is installed, in this thread: the scheduler's event loop.

    Arrow imports pandas the first time some of its functions run (a Python number made an
    Arrow scalar, a chunked column made a NumPy array), and the reading thread calls them.
    Imported there, pandas would sit half imported in `sys.modules` for a moment, where the
    Bokeh pages of the dashboard, run by this loop, take it (`sys.modules.get("pandas")`) and
    fail on every update until it is whole. Imported in the loop, no page runs meanwhile."""
    if "pandas" in sys.modules or find_spec("pandas") is None:
        return
    import pandas  # noqa: F401
