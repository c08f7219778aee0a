"""The dashboard of a local cluster metalab starts, set up while its worker processes start.

A scheduler with a dashboard imports bokeh and distributed's dashboard before it is up (about
0.4 s of one core), and only then do the worker processes start: on a fresh machine that is
a fifth of a short sweep. metalab starts the scheduler without the dashboard instead, with
its HTTP server on the same address, imports the dashboard in a thread while the worker
processes start, and connects it to that server before the cluster is handed to a sweep. The
dashboard is the one distributed serves, at the same address, link and prefix.

Where the dashboard cannot be set up this way (an import failed in the thread, say), the
import is made again and the dashboard connected in the calling thread; a dashboard that
cannot be connected at all is logged, and the sweep goes on without it.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from typing import Any

logger = logging.getLogger("metalab")

MODULE = "distributed.dashboard.scheduler"
"""The module that serves a scheduler's dashboard (it imports bokeh)."""


class DashboardStart:
    """The import of the dashboard, started when the cluster starts; `connect` finishes it."""

    def __init__(self) -> None:
        self._failed: BaseException | None = None
        self._thread = threading.Thread(
            target=self._import, name="metalab-dashboard-import", daemon=True
        )
        self._thread.start()

    def _import(self) -> None:
        try:
            importlib.import_module(MODULE)
        except BaseException as exc:  # noqa: BLE001 - imported again by `connect`
            self._failed = exc

    def connect(self, cluster: Any) -> None:
        """Serve the dashboard from `cluster`'s scheduler (in this process). Never raises
        for the dashboard: the cluster works without it."""
        self._thread.join()
        if self._failed is not None:
            logger.debug("importing the dashboard in a thread failed: %r", self._failed)
        try:
            module = importlib.import_module(MODULE)
            cluster.sync(_connect, module, cluster.scheduler)
        except Exception as exc:  # noqa: BLE001 - the sweep goes on without a dashboard
            logger.warning("the local cluster's dashboard could not be started: %s", exc)


async def _connect(module: Any, scheduler: Any) -> None:
    # on the scheduler's event loop: the dashboard's applications start on the current loop;
    # "/" is the scheduler's own HTTP prefix (a `LocalCluster` sets no other)
    module.connect(scheduler.http_application, scheduler.http_server, scheduler, prefix="/")


def start_alongside(options: dict[str, Any]) -> tuple[dict[str, Any], DashboardStart | None]:
    """The `LocalCluster` options that start its scheduler without the dashboard, and the
    dashboard's import, started now; or `options` unchanged and None where the cluster has
    no dashboard or bokeh is missing (the scheduler then serves none either)."""
    if not options.get("dashboard_address") or importlib.util.find_spec("bokeh") is None:
        return options, None
    return {**options, "scheduler_kwargs": {"dashboard": False}}, DashboardStart()
