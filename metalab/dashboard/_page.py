"""The page: a bokeh document per browser session, served by the scheduler's dashboard."""

from __future__ import annotations

import functools
import html
import logging
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from .._aggregate import COMPLETED, Axis, evenly, others_text, trend
from ..locators import redact_password
from ..runs_table import MISSING
from . import limits
from ._view import Snapshot, SweepEntry
from .links import PAGE, PLUGIN_NAME

logger = logging.getLogger("metalab.dashboard")
STATUSES = ("completed", "failed", "interrupted", "cancelled")


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
    doc.add_periodic_callback(page.update, int(limits.REFRESH_SECONDS * 1000))


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

    def plugin(self) -> Any:
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
        if snapshot is None or snapshot.sample.size <= limits.INLINE_ROWS or plugin is None:
            self._show(key, plot_data(snapshot, metric, param))
            return
        # many runs: aggregate in the reading thread, then draw on the event loop
        future = plugin.in_thread(plot_data, snapshot, metric, param)
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
        _set_ticks(self.figure, data.axis)
        metric, param = key[2], key[3]
        title: Any = self.figure.title
        title.text = data.title(metric, param)
        self.figure.xaxis.axis_label = f"log10({param})" if data.axis.log else param
        self.figure.yaxis.axis_label = metric


@dataclass(frozen=True)
class PlotData:
    """What the plot draws for one (snapshot, metric, parameter)."""

    dots: dict[str, list[float]]
    means: dict[str, list[float]]
    axis: Axis
    """The parameter's axis; dots and means are at `axis.position`s."""
    left_out: str = ""
    """The sweep's runs that did not complete, per status: never in dots or means."""
    completed: int | None = None
    """The sweep's completed runs when the plot shows a sample of them, else None."""

    def title(self, metric: str, param: str) -> str:
        """`score vs lr: mean of 10 completed runs per value (2 failed left out)`; for a
        sample, `score vs lr: mean of 5,000 sampled runs per value, of 1,000,000 completed`."""
        runs = int(sum(self.means["n"]))
        if runs == 0:
            text = "no completed runs yet"
        else:
            unit = "bin" if self.axis.binned else "value"
            kind = "completed" if self.completed is None else "sampled"
            text = f"{metric} vs {param}: mean of {runs:,} {kind} run{'s' * (runs != 1)}"
            text += f" per {unit}"
            if self.completed is not None:
                text += f", of {self.completed:,} completed"
        return text + (f" ({self.left_out} left out)" if self.left_out else "")


def plot_data(snapshot: Snapshot | None, metric: str, param: str) -> PlotData:
    """Dots (at most `limits.MAX_POINTS` runs) and means over the snapshot's sample: every
    completed run of a sweep of up to `limits.MAX_SAMPLE`, a uniform sample of a larger one."""
    points = [] if snapshot is None else _points(snapshot, metric, param)
    # sorted categories: the records' order says nothing about the values' order
    axis = Axis.of([x for x, _ in points], by_label=True)
    placed = [(axis.position(x), y) for x, y in points]
    dots = evenly(placed, limits.MAX_POINTS)
    means = trend(placed, binned=axis.binned)
    counts = {} if snapshot is None else snapshot.counts
    return PlotData(
        dots={"x": [x for x, _ in dots], "y": [y for _, y in dots]},
        means={"x": means.x, "y": means.mean, "n": [float(n) for n in means.n]},
        axis=axis,
        left_out=others_text({s: n for s, n in counts.items() if s != COMPLETED}),
        completed=snapshot.completed if snapshot is not None and snapshot.sampled else None,
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
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title in _TABLE_COLUMNS)
    body = "".join(
        "<tr>" + "".join(_cell(name, row[name]) for name, _ in _TABLE_COLUMNS) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(name: str, value: Any) -> str:
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
        "store": redact_password(entry.store_locator),
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
    """(parameter value, metric value) of each sampled completed run that has both."""
    return snapshot.sample.points(metric, param, MISSING)


def _set_ticks(fig: Any, axis: Axis) -> None:
    """Set the figure's x ticks: one per category, or the default ones."""
    from bokeh.models import BasicTicker, FixedTicker

    xaxis = fig.xaxis[0]
    if not axis.numeric:
        xaxis.ticker = FixedTicker(ticks=list(range(len(axis.factors))))
        xaxis.major_label_overrides = {float(i): name for i, name in enumerate(axis.factors)}
    elif not isinstance(xaxis.ticker, BasicTicker):
        xaxis.ticker = BasicTicker()
        xaxis.major_label_overrides = {}
