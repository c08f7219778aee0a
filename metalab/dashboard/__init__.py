"""The metalab page of the Dask dashboard: the sweeps a cluster runs, live.

A driver calls `register_sweep(client, ...)` when a sweep starts and `unregister_sweep(client,
session)` when it ends. The first call installs `MetalabPlugin` on the scheduler; the plugin
keeps the registry of sweeps and adds a bokeh page to the scheduler's dashboard at `PAGE`
(`/metalab`) below the dashboard's prefix; `page_link(dashboard_link(client))` is its URL.
The page lists every sweep with its runs per status and plots a chosen metric of the
completed runs against a chosen parameter.

Stores are read by locator in one background thread, at most every `limits.REFRESH_SECONDS`
(and less often for a store whose reads take long) and only while a page (or
`registered_sweeps`) asks, so the scheduler's event loop never waits on a filesystem or a
database. A store that gives its runs back as columns (a file store's table, PostgreSQL) is
read as one table per refresh; any other store record by record, incrementally (a record is
read again only when its completion changes). The page keeps per sweep its counts per status,
exact at any size, and the parameters and metrics of at most `limits.MAX_SAMPLE` completed
runs for its plot (a uniform sample of a larger sweep): never an object per run.

Bokeh comes from the optional `dashboard` extra: without it registration does nothing (a
debug log says so) and sweeps run as usual.

The Dask executors reach all this as `DASHBOARD`, a `metalab.contracts.SweepDashboard`,
through `metalab.registry.dashboard()`; they never import this package.
"""

from __future__ import annotations

from . import limits
from ._page import LivePage, PlotData, add_page
from ._plugin import MetalabPlugin
from ._registration import (
    DASHBOARD,
    DaskDashboard,
    dashboard_available,
    register_sweep,
    registered_sweeps,
    unregister_sweep,
)
from ._sample import Sample
from ._view import Snapshot, SweepEntry
from .links import PAGE, PLUGIN_NAME, dashboard_link, page_link

__all__ = [
    "DASHBOARD",
    "PAGE",
    "PLUGIN_NAME",
    "DaskDashboard",
    "LivePage",
    "MetalabPlugin",
    "PlotData",
    "Sample",
    "Snapshot",
    "SweepEntry",
    "add_page",
    "dashboard_available",
    "dashboard_link",
    "limits",
    "page_link",
    "register_sweep",
    "registered_sweeps",
    "unregister_sweep",
]
