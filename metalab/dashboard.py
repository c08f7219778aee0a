"""The metalab page of the Dask dashboard: the sweeps a cluster runs, live.

A driver calls `register_sweep(client, ...)` when a sweep starts and `unregister_sweep(client,
session)` when it ends. The first call installs `MetalabPlugin` on the scheduler; the plugin
keeps the registry of sweeps and adds a bokeh page at `<dashboard>/metalab` to the scheduler's
dashboard, at `PAGE` below the dashboard's prefix; `page_link(client.dashboard_link)` is its
URL. The page lists every sweep with its runs per status and plots a chosen metric of the
completed runs against a chosen parameter.

Stores are read by locator in one background thread, incrementally (a record is read again
only when its completion changes), at most every `REFRESH_SECONDS` and only while a page (or
`registered_sweeps`) asks, so the scheduler's event loop never waits on a filesystem or a
database.

Bokeh comes from the optional `dashboard` extra: without it registration does nothing (a
debug log says so) and sweeps run as usual.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from distributed.diagnostics.plugin import SchedulerPlugin

from ._aggregate import COMPLETED, continuous, evenly, log_axis, others_text, trend

logger = logging.getLogger(__name__)
T = TypeVar("T")

PLUGIN_NAME = "metalab"
PAGE = "/metalab"
"""The page's path below the dashboard's prefix: beside the dashboard's own `/status`."""
REFRESH_SECONDS = 1.5
"""Least time between two reads of one sweep's store."""
MAX_READS = 5000
"""Records read per refresh of one sweep; a large store fills in over a few refreshes."""
MAX_POINTS = 5000
"""Runs drawn as dots on the page; means use every run."""
INLINE_ROWS = 5000
"""Completed runs up to which the page aggregates on the event loop; beyond, in the thread."""
MAX_RUN_IDS = 100_000
"""Run ids sent with a registration; a larger sweep is counted by experiment id instead."""
MAX_FINISHED = 20
"""Finished sweeps kept on the page, newest first."""
STATUSES = ("completed", "failed", "interrupted", "cancelled")


# ---------------------------------------------------------------- driver side
def dashboard_available() -> bool:
    """Whether bokeh is importable here, so the page can exist at all."""
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None


def page_link(dashboard_link: str) -> str:
    """The metalab page's URL, given the Dask dashboard's link (`client.dashboard_link`).

    The page lives beside the dashboard's `status` page, so `http://host:8787/status` gives
    `http://host:8787/metalab`, and a link with a path prefix (`.../proxy/8787/status`) keeps
    its prefix. A link that does not end in `status` gets `metalab` appended to its path.
    """
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dashboard_link)
    path = parts.path.rstrip("/")
    if path.rsplit("/", 1)[-1] == "status":
        path = path.rsplit("/", 1)[0]
    return urlunsplit((parts.scheme, parts.netloc, path + PAGE, "", ""))


def dashboard_link(client: Any) -> str | None:
    """The Dask dashboard's link of `client`, with a host its dashboard listens on.

    Starts from `client.dashboard_link`, so a configured `distributed.dashboard.link` (a
    proxy, a prefix) is kept. An in-process cluster's link names the machine's network
    address while its dashboard may listen on a loopback address only: the link then names
    that loopback address. Returns None when there is no dashboard; never raises.
    """
    try:
        link = client.dashboard_link
    except Exception:  # noqa: BLE001 - a cluster without a dashboard is fine
        return None
    if not link:
        return None
    try:
        bound = client.run_on_scheduler(_dashboard_address)
    except Exception:  # noqa: BLE001 - the link as distributed formats it
        return str(link)
    return _reachable(str(link), bound)


def _dashboard_address(dask_scheduler: Any = None) -> tuple[str, int] | None:
    server = getattr(dask_scheduler, "http_server", None)
    address, port = getattr(server, "address", None), getattr(server, "port", None)
    return None if address is None or port is None else (str(address), int(port))


def _reachable(link: str, bound: tuple[str, int] | None) -> str:
    """`link` with the dashboard's loopback address when its host cannot reach that address."""
    import ipaddress
    from urllib.parse import urlsplit, urlunsplit

    if bound is None:
        return link
    address, port = bound
    parts = urlsplit(link)
    try:
        loopback = ipaddress.ip_address(address).is_loopback
        link_loopback = parts.hostname == "localhost" or (
            parts.hostname is not None and ipaddress.ip_address(parts.hostname).is_loopback
        )
    except ValueError:  # a host name in the link: it is the user's to choose
        return link
    if not loopback or link_loopback or parts.port != port:
        return link
    host = f"[{address}]" if ":" in address else address
    return urlunsplit(parts._replace(netloc=f"{host}:{port}"))


def _redacted(locator: str) -> str:
    from .stores.locator import redact_password

    return redact_password(locator)


def register_sweep(
    client: Any,
    *,
    experiment_id: str,
    store_locator: str,
    total: int,
    session: str,
    run_ids: Sequence[str] | None = None,
    experiment_key: str | None = None,
) -> bool:
    """Announce a starting sweep to the scheduler's metalab page; return whether it is listed.

    Installs `MetalabPlugin` on the scheduler when it is absent (idempotent). `run_ids` (the
    sweep's run ids, about 70 bytes each on the wire, sent for sweeps of up to `MAX_RUN_IDS`
    runs) lets the page count exactly this sweep's runs; without them the page counts the
    store's records of `experiment_id`. Never raises: a dashboard problem must not stop a
    sweep, so failures are logged and return False; without bokeh this does nothing.
    """
    if not dashboard_available():
        logger.debug("bokeh is not installed (extra 'dashboard'): no metalab dashboard page")
        return False
    if not isinstance(store_locator, str):
        logger.debug("sweep %s has no store locator: not shown on the dashboard", session)
        return False
    entry = SweepEntry(
        experiment_id=experiment_id,
        store_locator=store_locator,
        total=int(total),
        session=session,
        run_ids=frozenset(run_ids) if run_ids is not None and len(run_ids) <= MAX_RUN_IDS else None,
        experiment_key=experiment_key,
    )
    try:
        client.register_plugin(MetalabPlugin())
        client.run_on_scheduler(_register_on_scheduler, entry)
    except Exception as exc:  # noqa: BLE001 - the sweep goes on without its page
        logger.info("could not list sweep %s on the Dask dashboard: %s", session, exc)
        return False
    return True


def unregister_sweep(client: Any, session: str) -> None:
    """Mark the sweep `session` finished on the metalab page (it stays listed a while).

    Idempotent; never raises (failures are logged)."""
    if not dashboard_available():
        return
    try:
        client.run_on_scheduler(_unregister_on_scheduler, session)
    except Exception as exc:  # noqa: BLE001 - the sweep is over either way
        logger.debug("could not mark sweep %s finished on the dashboard: %s", session, exc)


def registered_sweeps(client: Any) -> list[dict[str, Any]]:
    """The scheduler's registry: one dict per sweep, newest first ([] without the plugin)."""
    return client.run_on_scheduler(_describe_on_scheduler)


def _register_on_scheduler(entry: SweepEntry, dask_scheduler: Any = None) -> None:
    plugin = dask_scheduler.plugins.get(PLUGIN_NAME)
    if plugin is None:
        raise RuntimeError("the metalab scheduler plugin is not installed")
    plugin.register(entry)


def _unregister_on_scheduler(session: str, dask_scheduler: Any = None) -> None:
    plugin = dask_scheduler.plugins.get(PLUGIN_NAME)
    if plugin is not None:
        plugin.unregister(session)


def _describe_on_scheduler(dask_scheduler: Any = None) -> list[dict[str, Any]]:
    plugin = dask_scheduler.plugins.get(PLUGIN_NAME)
    return [] if plugin is None else plugin.describe()


# ---------------------------------------------------------------- the registry
@dataclass
class SweepEntry:
    """One sweep announced by a driver."""

    experiment_id: str
    store_locator: str
    total: int
    session: str
    run_ids: frozenset[str] | None = None
    experiment_key: str | None = None
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None

    @property
    def running(self) -> bool:
        """Whether the driver has not said the sweep ended."""
        return self.ended_at is None

    def describe(self) -> dict[str, Any]:
        """The entry as plain data (run ids counted, not listed)."""
        return {
            "experiment_id": self.experiment_id,
            "store_locator": _redacted(self.store_locator),
            "total": self.total,
            "session": self.session,
            "run_ids": None if self.run_ids is None else len(self.run_ids),
            "experiment_key": self.experiment_key,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }


@dataclass(frozen=True)
class Snapshot:
    """What a sweep's store held at one refresh."""

    counts: dict[str, int] = field(default_factory=dict)
    """Records of the sweep per status."""
    running: int = 0
    """Live claims of the sweep's session: runs executing now."""
    unread: int = 0
    """Records seen in the store but not read yet (large stores fill in over refreshes)."""
    params: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    rows: tuple[tuple[dict[str, Any], dict[str, float]], ...] = ()
    """(params, numeric metrics) of each completed run."""
    version: int = 0
    """Changes whenever `rows` or `counts` change."""
    error: str | None = None
    updated_at: float = field(default_factory=time.time)


class _StoreView:
    """What the page knows of one sweep's records, refreshed incrementally from its store."""

    def __init__(self, entry: SweepEntry):
        self.entry = entry
        self.known: dict[str, tuple[bool, dict[str, Any] | None]] = {}
        """run id -> (completed marker seen, the record's summary or None if not this sweep's)."""
        self.snapshot = Snapshot()
        self.refreshed_at = -math.inf
        self.busy = False

    def refresh(self, open_store: Callable[[str], Any]) -> None:
        """Read what changed in the store and publish a new snapshot (runs in the thread)."""
        try:
            self.snapshot = self._read(open_store(self.entry.store_locator))
        except Exception as exc:  # noqa: BLE001 - shown on the page, retried next refresh
            self.snapshot = replace(self.snapshot, error=f"{type(exc).__name__}: {exc}")
        finally:
            self.refreshed_at = time.monotonic()
            self.busy = False

    def _read(self, store: Any) -> Snapshot:
        final, done = store.scan()
        if self.entry.run_ids is not None:
            final &= self.entry.run_ids
        gone = [run_id for run_id in self.known if run_id not in final]
        for run_id in gone:
            del self.known[run_id]
        stale = sorted(r for r in final if self.known.get(r, (None,))[0] != (r in done))
        for record in store.get_records(stale[:MAX_READS]):
            run_id = record.get("run_id", "")
            self.known[run_id] = (run_id in done, _summary(record, self.entry.experiment_id))
        changed = bool(gone or stale)
        return self._snapshot(changed, max(0, len(stale) - MAX_READS), _running(store, self.entry))

    def _snapshot(self, changed: bool, unread: int, running: int) -> Snapshot:
        if not changed:
            return replace(
                self.snapshot, running=running, unread=unread, error=None, updated_at=time.time()
            )
        summaries = [s for _, s in self.known.values() if s is not None]
        params: dict[str, None] = {}
        metrics: dict[str, None] = {}
        for summary in summaries:
            params.update(dict.fromkeys(summary["params"]))
            metrics.update(dict.fromkeys(summary["metrics"]))
        return Snapshot(
            counts=dict(Counter(s["status"] for s in summaries)),
            running=running,
            unread=unread,
            params=tuple(params),
            metrics=tuple(metrics),
            rows=tuple((s["params"], s["metrics"]) for s in summaries if s["status"] == COMPLETED),
            version=self.snapshot.version + 1,
        )


def _summary(record: dict[str, Any], experiment_id: str) -> dict[str, Any] | None:
    """Status, params and numeric metrics of a record of `experiment_id`, else None."""
    if record.get("experiment_id") != experiment_id:
        return None
    metrics = {
        name: float(value)
        for name, value in (record.get("metrics") or {}).items()
        if isinstance(value, (bool, int, float)) and math.isfinite(value)
    }
    return {
        "status": str(record.get("status")),
        "params": dict(record.get("params") or {}),
        "metrics": metrics,
    }


def _running(store: Any, entry: SweepEntry) -> int:
    try:
        claims = store.claims()
    except Exception:  # noqa: BLE001 - a store without claims shows no running runs
        return 0
    return sum(1 for owner in claims.values() if owner.get("session") == entry.session)


class MetalabPlugin(SchedulerPlugin):
    """The scheduler's registry of metalab sweeps, and the dashboard page that shows them."""

    name = PLUGIN_NAME
    idempotent = True

    def __init__(self) -> None:
        self.sweeps: dict[str, SweepEntry] = {}
        self.page: str | None = None
        """The page's URL path once the scheduler serves it."""
        self._views: dict[str, _StoreView] = {}
        self._stores: dict[str, Any] = {}
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
        self._views[entry.session] = _StoreView(entry)

    def unregister(self, session: str) -> None:
        """Mark the sweep `session` finished; forget the oldest finished ones. Idempotent."""
        entry = self.sweeps.get(session)
        if entry is not None and entry.ended_at is None:
            entry.ended_at = time.time()
        finished = [e for e in self.entries() if not e.running]
        for old in finished[MAX_FINISHED:]:
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
        if not view.busy and time.monotonic() - view.refreshed_at >= REFRESH_SECONDS:
            view.busy = True
            self.in_thread(view.refresh, self._open_store)
        return view.snapshot

    def in_thread(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run `fn(*args)` in the plugin's one background thread (store reads, aggregation)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="metalab-dashboard")
        return self._pool.submit(fn, *args)

    def _open_store(self, locator: str) -> Any:
        """Open a store once per locator (called in the reading thread only)."""
        store = self._stores.get(locator)
        if store is None:
            from .stores.locator import create_store

            store = self._stores[locator] = create_store(locator, create=False)
        return store


# ---------------------------------------------------------------- the page
def add_page(scheduler: Any) -> str | None:
    """Serve the metalab page from `scheduler`'s dashboard; return its path. Idempotent.

    Returns None, with a debug log, when the scheduler has no bokeh dashboard."""
    http = getattr(scheduler, "http_application", None)
    try:
        from bokeh.server.server import BokehTornado
        from distributed.dashboard.core import BokehApplication
        from distributed.dashboard.scheduler import template_variables
        from tornado.ioloop import IOLoop
    except ImportError as exc:
        logger.debug("no metalab dashboard page: %s", exc)
        return None
    dashboards = [a for a in getattr(http, "applications", []) if isinstance(a, BokehTornado)]
    if http is None or not dashboards:
        logger.debug("the scheduler serves no bokeh dashboard: no metalab page")
        return None
    path = dashboards[0].prefix + PAGE
    if any(getattr(a, "metalab_page", False) for a in dashboards):
        return path
    variables = template_variables(scheduler)
    app = BokehApplication(
        {PAGE: _page_document},
        scheduler,
        prefix=dashboards[0].prefix,
        template_variables=variables,
    )
    setattr(app, "metalab_page", True)  # noqa: B010 - marks the page's application as ours
    http.add_application(app)
    app.initialize(IOLoop.current())
    app.start()
    if PAGE.strip("/") not in variables["pages"]:
        variables["pages"].append(PAGE.strip("/"))  # a link in the dashboard's navigation bar
    return path


def _page_document(scheduler: Any, extra: dict[str, Any], doc: Any) -> None:
    """Fill one browser session's bokeh document with a `LivePage`."""
    page = LivePage(scheduler, doc)
    doc.title = "Dask: metalab"
    doc.add_root(page.root)
    try:
        from distributed.dashboard.components.scheduler import BOKEH_THEME, env

        doc.template = env.get_template("simple.html")
        doc.template_variables.update(extra)
        doc.theme = BOKEH_THEME
    except ImportError:  # an older distributed: the page without the dashboard's frame
        pass
    page.update()
    doc.add_periodic_callback(page.update, int(REFRESH_SECONDS * 1000))


_TABLE_COLUMNS = (
    ("experiment", "experiment"),
    ("state", "state"),
    ("total", "total"),
    ("completed", "completed"),
    ("failed", "failed"),
    ("interrupted", "interrupted"),
    ("cancelled", "cancelled"),
    ("running", "running now"),
    ("pending", "not yet recorded"),
    ("progress", "progress"),
    ("store", "store"),
    ("session", "session"),
)


class LivePage:
    """The models of one browser session: the sweeps table, the pickers and the plot."""

    def __init__(self, scheduler: Any, doc: Any):
        from bokeh.layouts import column, row
        from bokeh.models import ColumnDataSource, HoverTool, InlineStyleSheet
        from bokeh.models.widgets.inputs import Select
        from bokeh.models.widgets.markups import Div
        from bokeh.plotting import figure

        self.scheduler = scheduler
        self.doc = doc
        # names, locators and store errors are text: `$$` or `\(` in them is not TeX
        self.heading = Div(
            text="<h2>metalab sweeps</h2>", sizing_mode="stretch_width", disable_math=True
        )
        self.message = Div(text="", sizing_mode="stretch_width", disable_math=True)
        self.table = Div(
            text="",
            sizing_mode="stretch_width",
            stylesheets=[InlineStyleSheet(css=_TABLE_CSS)],
            disable_math=True,
        )
        self.sweep = Select(title="sweep", options=[], width=320)
        self.metric = Select(title="metric", options=[], width=220)
        self.param = Select(title="parameter", options=[], width=220)
        for select in (self.sweep, self.metric, self.param):
            select.on_change("value", self._picked)
        self.dots = ColumnDataSource({"x": [], "y": []})
        self.means = ColumnDataSource({"x": [], "y": [], "n": []})
        self.figure = figure(
            height=420,
            sizing_mode="stretch_width",
            tools="pan,box_zoom,wheel_zoom,reset,save",
            title="",
        )
        self.figure.scatter("x", "y", source=self.dots, size=5, alpha=0.4)
        self.figure.line("x", "y", source=self.means, line_width=2, color="black")
        marks = self.figure.scatter("x", "y", source=self.means, size=8, color="black")
        self.figure.add_tools(
            HoverTool(renderers=[marks], tooltips=[("mean", "@y"), ("runs", "@n")])
        )
        self.shown: tuple[Any, ...] = ()
        self.updating = False
        self.root = column(
            self.heading,
            self.message,
            self.table,
            row(self.sweep, self.metric, self.param),
            self.figure,
            sizing_mode="stretch_width",
        )

    def plugin(self) -> MetalabPlugin | None:
        """The scheduler's metalab plugin (looked up each time: it may be replaced)."""
        return self.scheduler.plugins.get(PLUGIN_NAME)

    def update(self) -> None:
        """Refresh the table, the pickers and the plot from the latest snapshots."""
        plugin = self.plugin()
        if plugin is None:
            self.message.text = "<p>The metalab scheduler plugin is not installed.</p>"
            return
        entries = plugin.entries()
        snapshots = {e.session: plugin.snapshot(e.session) or Snapshot() for e in entries}
        self.updating = True
        try:
            self._update_table(entries, snapshots)
            self._update_message(entries, snapshots)
            self._update_pickers(entries, snapshots)
            self._update_plot(snapshots.get(self.sweep.value))
        finally:
            self.updating = False

    def _update_table(self, entries: list[SweepEntry], snapshots: dict[str, Snapshot]) -> None:
        # an HTML table, not a DataTable: a DataTable keeps showing old cells when new data
        # has as many rows as the old
        text = _html_table([_table_row(e, snapshots[e.session]) for e in entries])
        if text != self.table.text:
            self.table.text = text

    def _update_message(self, entries: list[SweepEntry], snapshots: dict[str, Snapshot]) -> None:
        import html

        notes = [] if entries else ["No metalab sweep has been registered on this scheduler."]
        for entry in entries:
            snapshot = snapshots[entry.session]
            if snapshot.error:
                notes.append(f"{entry.experiment_id}: cannot read the store: {snapshot.error}")
            elif snapshot.unread:
                notes.append(f"{entry.experiment_id}: {snapshot.unread} records still to read")
        text = "".join(f"<p>{html.escape(n)}</p>" for n in notes)
        if text != self.message.text:
            self.message.text = text

    def _update_pickers(self, entries: list[SweepEntry], snapshots: dict[str, Snapshot]) -> None:
        options = [(e.session, f"{e.experiment_id} ({e.session[:8]})") for e in entries]
        _set_options(self.sweep, options)
        snapshot = snapshots.get(self.sweep.value)
        if snapshot is not None:
            _set_options(self.metric, [(m, m) for m in snapshot.metrics])
            _set_options(self.param, [(p, p) for p in snapshot.params])

    def _picked(self, attr: str, old: Any, new: Any) -> None:
        if not self.updating:  # a value set by `update` itself
            self.update()

    def _update_plot(self, snapshot: Snapshot | None) -> None:
        metric, param = self.metric.value, self.param.value
        key = (self.sweep.value, None if snapshot is None else snapshot.version, metric, param)
        if key == self.shown:
            return
        self.shown = key
        plugin = self.plugin()
        if snapshot is None or len(snapshot.rows) <= INLINE_ROWS or plugin is None:
            self._show(key, _plot_data(snapshot, metric, param))
            return
        # many runs: aggregate in the reading thread, then draw on the event loop
        future = plugin.in_thread(_plot_data, snapshot, metric, param)
        future.add_done_callback(lambda done: self._show_later(key, done))

    def _show_later(self, key: tuple[Any, ...], done: Future[PlotData]) -> None:
        try:
            self.doc.add_next_tick_callback(functools.partial(self._show, key, done.result()))
        except Exception as exc:  # noqa: BLE001 - a closed page, or a failed aggregation
            logger.debug("metalab page: plot not updated: %s", exc)

    def _show(self, key: tuple[Any, ...], data: PlotData) -> None:
        if key != self.shown:
            return  # a newer snapshot or pick took over meanwhile
        self.dots.data = data.dots
        self.means.data = data.means
        data.axis.apply(self.figure)
        metric, param = key[2], key[3]
        title: Any = self.figure.title
        title.text = data.title(metric, param)
        self.figure.xaxis.axis_label = data.axis.label(param)
        self.figure.yaxis.axis_label = metric


@dataclass(frozen=True)
class PlotData:
    """What the plot draws for one (snapshot, metric, parameter)."""

    dots: dict[str, list[float]]
    means: dict[str, list[float]]
    axis: _Axis
    binned: bool = False
    """Whether the means are per bin of the axis (many distinct values) rather than per value."""
    left_out: str = ""
    """The sweep's runs that did not complete, per status: never in dots or means."""

    def title(self, metric: str, param: str) -> str:
        """`score vs lr: mean of 10 completed runs per value (2 failed left out)`."""
        runs = int(sum(self.means["n"]))
        if runs == 0:
            text = "no completed runs yet"
        else:
            unit = "bin" if self.binned else "value"
            text = f"{metric} vs {param}: mean of {runs} completed run{'s' * (runs != 1)}"
            text += f" per {unit}"
        return text + (f" ({self.left_out} left out)" if self.left_out else "")


def _plot_data(snapshot: Snapshot | None, metric: str, param: str) -> PlotData:
    """Dots (a sample of at most `MAX_POINTS` runs) and means (over every completed run)."""
    points = [] if snapshot is None else _points(snapshot, metric, param)
    axis = _Axis.of([x for x, _ in points])
    dots = evenly(points, MAX_POINTS)
    binned = axis.kind != "categorical" and continuous(len({axis.position(x) for x, _ in points}))
    counts = {} if snapshot is None else snapshot.counts
    return PlotData(
        dots={"x": [axis.position(x) for x, _ in dots], "y": [y for _, y in dots]},
        means=_means(points, axis, binned),
        axis=axis,
        binned=binned,
        left_out=others_text({s: n for s, n in counts.items() if s != COMPLETED}),
    )


_TABLE_CSS = """
table { border-collapse: collapse; font-size: 13px; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
"""
_NUMERIC = frozenset(("total", *STATUSES, "running", "pending", "progress"))


def _html_table(rows: list[dict[str, Any]]) -> str:
    """The sweeps as an HTML table, every value escaped."""
    import html

    head = "".join(f"<th>{html.escape(title)}</th>" for _, title in _TABLE_COLUMNS)
    body = "".join(
        "<tr>" + "".join(_cell(name, row[name]) for name, _ in _TABLE_COLUMNS) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(name: str, value: Any) -> str:
    import html

    kind = "num" if name in _NUMERIC else "text"
    return f'<td class="{kind}">{html.escape(str(value))}</td>'


def _table_row(entry: SweepEntry, snapshot: Snapshot) -> dict[str, Any]:
    counts = snapshot.counts
    recorded = sum(counts.values())
    return {
        "experiment": entry.experiment_id,
        "state": "running" if entry.running else "finished",
        "total": entry.total,
        **{status: counts.get(status, 0) for status in STATUSES},
        "running": snapshot.running,
        "pending": max(0, entry.total - recorded),
        "progress": f"{100 * min(recorded, entry.total) / entry.total:.0f}%" if entry.total else "",
        "store": _redacted(entry.store_locator),
        "session": entry.session,
    }


def _set_options(select: Any, options: list[tuple[str, str]]) -> None:
    """Give `select` these options, keeping its value when it is still offered."""
    if options != [tuple(o) for o in select.options]:
        select.options = options
    values = [value for value, _ in options]
    if select.value not in values:
        select.value = values[0] if values else ""


def _points(snapshot: Snapshot, metric: str, param: str) -> list[tuple[Any, float]]:
    """(parameter value, metric value) of each completed run that has both."""
    return [
        (params[param], metrics[metric])
        for params, metrics in snapshot.rows
        if metric in metrics and param in params
    ]


@dataclass
class _Axis:
    """How parameter values map to x positions: numbers (maybe as log10), or categories."""

    kind: str
    """`linear`, `log` or `categorical`."""
    factors: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, values: list[Any]) -> _Axis:
        """The axis that suits `values`."""
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if values and len(numbers) == len(values):
            return cls("log" if log_axis(numbers) else "linear")
        # sorted: the records' order says nothing about the values' order
        labels = sorted({_text(value) for value in values})
        return cls("categorical", {label: i for i, label in enumerate(labels)})

    def position(self, value: Any) -> float:
        """The x position of `value`."""
        if self.kind == "log":
            return math.log10(value)
        if self.kind == "linear":
            return float(value)
        return float(self.factors[_text(value)])

    def label(self, param: str) -> str:
        """The x axis label."""
        return f"log10({param})" if self.kind == "log" else param

    def apply(self, fig: Any) -> None:
        """Set the figure's x ticks: one per category, or the default ones."""
        from bokeh.models import BasicTicker, FixedTicker

        axis = fig.xaxis[0]
        if self.kind == "categorical":
            axis.ticker = FixedTicker(ticks=list(self.factors.values()))
            axis.major_label_overrides = {float(i): name for name, i in self.factors.items()}
        elif not isinstance(axis.ticker, BasicTicker):
            axis.ticker = BasicTicker()
            axis.major_label_overrides = {}


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    import json

    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def _means(points: list[tuple[Any, float]], axis: _Axis, binned: bool) -> dict[str, list[float]]:
    """Mean metric value at each x position (or bin of positions), in x order, with the
    number of runs."""
    found = trend([(axis.position(x), y) for x, y in points], binned=binned)
    return {"x": found.x, "y": found.mean, "n": [float(n) for n in found.n]}
