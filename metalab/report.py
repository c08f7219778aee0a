"""A sweep as one standalone HTML page: runs, metrics against parameters, curves, failures.

The page embeds BokehJS (inline resources), so it opens offline and can be archived beside the
store. Large sweeps are summarised: the runs table, the scattered points and the curves are
capped (the page says so), while means, spreads and counts always use every completed run
(runs that did not complete are counted beside them). A store holding several experiment ids
gets one section per experiment id.

`write_report(results, path)` is the entry point; `report_from_store(store)` loads a store
first. Bokeh comes from the `dashboard` extra and is imported only when a report is built.
"""

from __future__ import annotations

import datetime as _dt
import html
import math
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._aggregate import (
    canonical,
    continuous,
    evenly,
    is_number,
    log_axis,
    others_text,
    split_by_status,
    spread,
    trend,
)
from ._aggregate import finite as _number

MAX_TABLE_ROWS = 5000
"""Rows of the runs table; further runs are counted in a note."""
MAX_POINTS = 2000
"""Individual runs drawn as dots in one metric-against-parameter plot."""
MAX_CURVES = 50
"""Runs drawn as curves in one stepped-metric plot."""
MAX_CURVE_POINTS = 1000
"""Points kept of one curve; longer series are thinned evenly."""
MAX_PLOTS = 60
"""Metric-against-parameter plots on one page."""
MAX_LINES = 6
"""Combinations of the other swept parameters drawn as separate lines in one plot."""
MAX_FAILURE_GROUPS = 50
"""Distinct (error type, message) groups listed under failures."""
MAX_LISTED = 20
"""Values listed in one provenance row or run indices in one failure group."""
TRACEBACK_LINES = 400
"""Lines of a traceback shown for a failure group; of a longer one, its first and last lines."""
MAX_ERROR_CHARS = 300
"""Characters of an error message shown in the runs table."""

STATUS_COLORS = {
    "completed": "#2ca02c",
    "failed": "#d62728",
    "interrupted": "#ff7f0e",
    "cancelled": "#7f7f7f",
}
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
_CSS = """
:host { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; }
h1 { font-size: 1.6em; margin: 0.2em 0; }
h2 { font-size: 1.25em; margin: 0.8em 0 0.2em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.05em; margin: 0.6em 0 0.1em; }
table { border-collapse: collapse; margin: 0.3em 0; }
th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 8px; color: white;
         margin-right: 6px; }
.note { color: #666; font-style: italic; }
pre { background: #f7f7f7; padding: 6px; overflow-x: auto; font-size: 0.85em; }
code { font-size: 0.9em; }
details { margin: 0.4em 0; }
"""


# ---------------------------------------------------------------- entry points
def write_report(results: Any, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
    """Write the HTML report of `results` to `path` (replacing it atomically); return its path.

    `results` is a `metalab.Results` or any iterable of run records. Raises
    `MissingDependencyError` naming the `dashboard` extra when bokeh is not installed.
    """
    html_text = report_html(results, title=title)
    target = Path(os.fspath(path)).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(html_text, encoding="utf-8")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def report_from_store(
    store_or_path: Any,
    output: str | os.PathLike[str] | None = None,
    experiment: str | None = None,
) -> Path:
    """Load a store's runs (of one experiment, by name or `name:version`) and write its report.

    `output` defaults to `report.html` in the working directory. Raises `ValidationError`
    when `experiment` is given and the store holds no run of it.
    """
    from .runner import load_results

    results = load_results(store_or_path, experiment)
    if experiment is not None and len(results) == 0:
        from .errors import ValidationError

        held = sorted({r.get("experiment_id", "") for r in load_results(store_or_path).records})
        from .stores.locator import to_locator

        raise ValidationError(
            f"store {to_locator(results.store)} holds no runs of experiment {experiment!r}; "
            f"it holds runs of: {', '.join(held) or 'none'}"
        )
    return write_report(results, output if output is not None else "report.html")


def report_html(results: Any, *, title: str | None = None) -> str:
    """Return the report of `results` as one standalone HTML document (BokehJS inlined)."""
    from .errors import require

    require("bokeh", "dashboard", "metalab reports")
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.resources import INLINE

    sweep = Sweep.of(results)
    page_title = title if title is not None else sweep.default_title()
    parts = sweep.by_experiment()
    if len(parts) <= 1:
        children = _Page(sweep).build(page_title)
    else:
        children = [_Page(sweep).div(_overview(page_title, parts))]
        for part in parts:
            children += _Page(part).build(f"Experiment {part.experiments[0]}", section=True)
    layout = column(children=children, sizing_mode="stretch_width")
    return file_html(layout, resources=INLINE, title=page_title)


# ---------------------------------------------------------------- the data, without bokeh
@dataclass
class Param:
    """A parameter of the sweep: its distinct values (first seen first) and their kind."""

    name: str
    values: dict[str, Any] = field(default_factory=dict)
    """Canonical key -> value."""

    @property
    def numeric(self) -> bool:
        """Whether every value is a number (not a bool): the axis is then continuous."""
        return all(is_number(v) for v in self.values.values())

    @property
    def binned(self) -> bool:
        """Whether a numeric parameter takes so many values (a random search) that its trend
        is drawn per bin of the axis rather than per value."""
        return self.numeric and continuous(len(self.values))

    @property
    def swept(self) -> bool:
        """Whether the parameter takes more than one value."""
        return len(self.values) > 1

    @property
    def log_scale(self) -> bool:
        """Whether a numeric parameter spans two decades or more of positive values."""
        return self.numeric and log_axis(float(v) for v in self.values.values())

    def factors(self) -> list[str]:
        """Axis labels of a categorical parameter, in first-seen order, all distinct."""
        labels = [label(v) for v in self.values.values()]
        return labels if len(set(labels)) == len(labels) else list(self.values)

    def factor_map(self) -> dict[str, str]:
        """Canonical key of each value -> its axis label among `factors()`."""
        return dict(zip(self.values, self.factors()))


@dataclass
class Sweep:
    """The records of a report and what is derived from them once (names, kinds, counts)."""

    records: list[dict[str, Any]]
    locator: str | None = None
    params: list[Param] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    series: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, results: Any) -> Sweep:
        """Collect the records of a `Results` (or an iterable of records) and their names."""
        if hasattr(results, "records"):
            records = list(results.records)
        else:
            records = [dict(r) for r in results]
        store = getattr(results, "store", None)
        locator = getattr(store, "public_locator", None) or getattr(store, "locator", None)
        if isinstance(locator, str):
            from .stores.locator import redact_password

            locator = redact_password(locator)
        sweep = cls(records, locator if isinstance(locator, str) else None)
        sweep._collect()
        return sweep

    def _collect(self) -> None:
        params: dict[str, Param] = {}
        metrics: dict[str, None] = {}
        series: dict[str, None] = {}
        for record in self.records:
            for name, value in (record.get("params") or {}).items():
                params.setdefault(name, Param(name)).values.setdefault(key(value), value)
            metrics.update(dict.fromkeys(record.get("metrics") or {}))
            series.update(dict.fromkeys(record.get("series") or {}))
        for record in self.records:  # a parameter missing from some records is None there
            for name, param in params.items():
                if name not in (record.get("params") or {}):
                    param.values.setdefault(key(None), None)
        self.params = list(params.values())
        self.metrics = list(metrics)
        self.series = list(series)

    @property
    def swept(self) -> list[Param]:
        """Parameters that take more than one value."""
        return [p for p in self.params if p.swept]

    @property
    def completed(self) -> list[dict[str, Any]]:
        """The completed runs' records: what means, spreads and trends are computed over."""
        return split_by_status(self.records)[0]

    def left_out(self) -> str:
        """The runs that did not complete, per status (`2 failed, 1 interrupted`), or ''."""
        return others_text(split_by_status(self.records)[1])

    def by_experiment(self) -> list[Sweep]:
        """One sweep per experiment id, the one with the latest finished run first."""
        groups: dict[str, list[dict[str, Any]]] = {}
        for record in self.records:
            groups.setdefault(str(record.get("experiment_id", "")), []).append(record)
        parts = []
        for records in groups.values():
            part = Sweep(records, self.locator)
            part._collect()
            parts.append(part)
        return sorted(parts, key=_recency, reverse=True)

    @property
    def experiments(self) -> list[str]:
        """Experiment ids, sorted."""
        return sorted({str(r.get("experiment_id", "")) for r in self.records})

    def numeric_metrics(self) -> set[str]:
        """Metrics with at least one numeric (or bool) value in a completed run."""
        return {
            name
            for record in self.completed
            for name, value in (record.get("metrics") or {}).items()
            if _number(value) is not None
        }

    def status_counts(self) -> dict[str, int]:
        """Runs per status, completed first, then the other known statuses, then any other."""
        counts = Counter(str(r.get("status", "unknown")) for r in self.records)
        order = [s for s in STATUS_COLORS if s in counts]
        return {s: counts[s] for s in [*order, *sorted(set(counts) - set(order))]}

    def not_completed(self) -> list[dict[str, Any]]:
        """Records whose status is not `completed`."""
        return [r for r in self.records if r.get("status") != "completed"]

    def default_title(self) -> str:
        """`metalab report: <experiment ids>`."""
        experiments = self.experiments
        if not experiments:
            return "metalab report"
        shown = ", ".join(experiments[:3]) + (" ..." if len(experiments) > 3 else "")
        return f"metalab report: {shown}"

    def time_span(self) -> tuple[_dt.datetime, _dt.datetime] | None:
        """(first start, last finish) over the runs that have times."""
        starts = [t for r in self.records if (t := _time(r.get("started_at"))) is not None]
        ends = [t for r in self.records if (t := _time(r.get("finished_at"))) is not None]
        if not starts or not ends:
            return None
        return min(starts), max(ends)

    def total_duration(self) -> float:
        """Seconds the operations ran, summed over runs."""
        return sum(d for r in self.records if (d := _number(r.get("duration"))) is not None)


def _recency(sweep: Sweep) -> tuple[str, str]:
    span = sweep.time_span()
    return ("" if span is None else span[1].isoformat(), sweep.experiments[0])


key = canonical
"""A canonical, hashable key of a parameter value (`1`, `1.0` and `True` stay distinct)."""


def label(value: Any) -> str:
    """Show a parameter or metric value as short text."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.6g}"
    if value is None or isinstance(value, (bool, int)):
        return str(value)
    return key(value)


def _time(value: Any) -> _dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = _dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.UTC)


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:.3g} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


# ---------------------------------------------------------------- the page
class _Page:
    """Build the sections of the report as bokeh models, from a `Sweep`."""

    def __init__(self, sweep: Sweep):
        from bokeh.models import InlineStyleSheet

        self.sweep = sweep
        self.style = InlineStyleSheet(css=_CSS)

    def div(self, text: str) -> Any:
        """A Div of trusted HTML (every value in it was escaped by the caller)."""
        from bokeh.models.widgets.markups import Div

        # tracebacks and messages hold `$$` and `\\(`: they are text, never typeset as TeX
        return Div(
            text=text, sizing_mode="stretch_width", stylesheets=[self.style], disable_math=True
        )

    def build(self, title: str, *, section: bool = False) -> list[Any]:
        """Every section, top to bottom (`section`: the part of one experiment id of a page)."""
        out = [self.div(self.header(title, section=section))]
        if not self.sweep.records:
            out.append(self.div('<p class="note">The store holds no runs to report.</p>'))
            return out
        out += self.runs_table()
        out += self.metric_summary()
        out += self.metric_plots()
        out += self.series_plots()
        out.append(self.div(self.failures()))
        out.append(self.div(self.provenance()))
        return out

    # ------------------------------------------------------------ header
    def header(self, title: str, *, section: bool = False) -> str:
        """Title, experiments, status counts, time span, store."""
        sweep = self.sweep
        style = ' style="border-top: 3px solid #888; padding-top: 0.3em"' if section else ""
        lines = [
            f"<h1{style}>{_esc(title)}</h1>",
            f"<p><b>Experiments:</b> {_esc(', '.join(sweep.experiments) or 'none')}</p>",
            f"<p><b>{_plural(len(sweep.records), 'run')}</b> {_badges(sweep)}</p>",
        ]
        span = sweep.time_span()
        if span is not None:
            first, last = span
            lines.append(
                f"<p><b>Time span:</b> {_esc(first.isoformat(timespec='seconds'))} to "
                f"{_esc(last.isoformat(timespec='seconds'))} "
                f"({_esc(_seconds(max(0.0, (last - first).total_seconds())))} wall time; "
                f"{_esc(_seconds(sweep.total_duration()))} of run time in total)</p>"
            )
        constant = [p for p in sweep.params if not p.swept]
        if constant:
            fixed = ", ".join(
                f"{p.name} = {label(next(iter(p.values.values())))}" for p in constant
            )
            lines.append(f"<p><b>Fixed parameters:</b> {_esc(fixed)}</p>")
        if sweep.locator and not section:
            lines.append(f"<p><b>Store:</b> <code>{_esc(sweep.locator)}</code></p>")
        if section:
            return "\n".join(lines)
        from . import __version__

        now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        lines.append(f'<p class="note">Generated {_esc(now)} by metalab {_esc(__version__)}.</p>')
        return "\n".join(lines)

    # ------------------------------------------------------------ runs table
    def runs_table(self) -> list[Any]:
        """The runs as a sortable table (params, metrics, status, duration)."""
        from bokeh.models import ColumnDataSource
        from bokeh.models.widgets.tables import DataTable

        records = self.sweep.records[:MAX_TABLE_ROWS]
        columns = self._table_columns(records)
        data = {f"c{i}": values for i, (_, values, _) in enumerate(columns)}
        data["status_color"] = [STATUS_COLORS.get(str(r.get("status")), "#222") for r in records]
        table = DataTable(
            source=ColumnDataSource(data),
            columns=[
                self._table_column(f"c{i}", title, values, kind)
                for i, (title, values, kind) in enumerate(columns)
            ],
            index_position=None,
            reorderable=False,
            sizing_mode="stretch_width",
            height=min(600, 26 * (len(records) + 1) + 12),
            autosize_mode="force_fit" if len(columns) <= 10 else "none",
            stylesheets=[self.style],
        )
        head = "<h2>Runs</h2>"
        if len(self.sweep.records) > MAX_TABLE_ROWS:
            head += (
                f'<p class="note">The first {MAX_TABLE_ROWS} of {len(self.sweep.records)} runs '
                "are listed; counts, plots and failures use every run.</p>"
            )
        return [self.div(head), table]

    def _table_columns(self, records: list[dict[str, Any]]) -> list[tuple[str, Any, str]]:
        """(title, values, kind) per column; kind is `int`, `float`, `status` or `text`."""
        columns: list[tuple[str, Any, str]] = [("#", [r.get("index") for r in records], "int")]
        if len(self.sweep.experiments) > 1:
            columns.append(("experiment", [r.get("experiment_id") for r in records], "text"))
        columns.append(("status", [r.get("status") for r in records], "status"))
        if self.sweep.left_out():
            columns.append(("error", [_error_text(r) for r in records], "text"))
        columns.append(("duration (s)", [r.get("duration") for r in records], "float"))
        for param in self.sweep.params:
            values = [(r.get("params") or {}).get(param.name) for r in records]
            columns.append((param.name, values, "number" if param.numeric else "text"))
        for name in self.sweep.metrics:
            values = [(r.get("metrics") or {}).get(name) for r in records]
            numeric = all(v is None or is_number(v) for v in values)
            columns.append((name, values, "number" if numeric else "text"))
        columns.append(("run id", [str(r.get("run_id", ""))[:12] for r in records], "text"))
        return [_column_values(title, values, kind) for title, values, kind in columns]

    def _table_column(self, field_name: str, title: str, values: Any, kind: str) -> Any:
        from bokeh.models.widgets.tables import (
            NumberFormatter,
            ScientificFormatter,
            StringFormatter,
            TableColumn,
        )

        formatter: Any
        if kind == "int":
            formatter = NumberFormatter(format="0,0", nan_format="", null_format="")
        elif kind == "float":
            formatter = ScientificFormatter(precision=4, nan_format="", null_format="")
        elif kind == "status":
            formatter = StringFormatter(text_color="status_color")
        else:
            formatter = StringFormatter(null_format="")
        width = max(60, min(220, 9 * max([len(title), *(len(str(v)) for v in values[:200])])))
        # SlickGrid writes column titles as HTML: escape them
        return TableColumn(field=field_name, title=_esc(title), formatter=formatter, width=width)

    # ------------------------------------------------------------ metrics
    def metric_summary(self) -> list[Any]:
        """A table of every metric's count, mean, std, min and max over runs."""
        sweep = self.sweep
        if not sweep.metrics:
            note = "No scalar metrics were captured"
            if sweep.series:
                note += " (stepped metrics are plotted below)"
            return [self.div(f'<h2>Metrics</h2><p class="note">{note}.</p>')]
        rows = []
        completed = sweep.completed
        for name in sweep.metrics:
            raw = [(r.get("metrics") or {}).get(name) for r in completed]
            present = [v for v in raw if v is not None]
            numbers = [n for v in present if (n := _number(v)) is not None]
            other = len(present) - len(numbers)
            if numbers:
                mean, std = spread(numbers)
                stats = [f"{mean:.6g}", f"{std:.6g}", f"{min(numbers):.6g}", f"{max(numbers):.6g}"]
            else:
                stats = ["", "", "", ""]
            cells = "".join(f'<td class="num">{_esc(s)}</td>' for s in [len(numbers), *stats])
            rows.append(f"<tr><td>{_esc(name)}</td>{cells}<td class='num'>{other}</td></tr>")
        head = "".join(
            f"<th>{h}</th>"
            for h in ("metric", "runs", "mean", "std", "min", "max", "non-numeric values")
        )
        table = f"<table><tr>{head}</tr>{''.join(rows)}</table>"
        return [self.div(f"<h2>Metrics</h2>{self._over_completed()}{table}")]

    def _over_completed(self) -> str:
        """A note saying that statistics use completed runs and which runs they leave out."""
        left_out = self.sweep.left_out()
        text = f"Over the {_plural(len(self.sweep.completed), 'completed run')}"
        if left_out:
            text += (
                f"; {left_out} runs are left out (the runs table shows the metrics they "
                "recorded before they stopped)"
            )
        return f'<p class="note">{_esc(text)}.</p>'

    def metric_plots(self) -> list[Any]:
        """For each metric and swept parameter, the metric against the parameter."""
        from bokeh.layouts import gridplot

        sweep = self.sweep
        if not sweep.metrics:
            return []
        swept = sweep.swept
        head = "<h2>Metrics against parameters</h2>"
        if not swept:
            return [
                self.div(
                    head + '<p class="note">No parameter takes more than one value, so there '
                    "is nothing to plot the metrics against (see the table above).</p>"
                )
            ]
        head += (
            '<p class="note">Line: mean over the runs at each parameter value (or, for a '
            "parameter with many distinct numeric values, in each bin of its axis); band: mean "
            "&plusmn; one standard deviation; dots: individual runs. Bool metrics count as "
            "0/1; non-numeric values are left out.</p>"
        ) + self._over_completed()
        binned = [p for p in swept if p.binned]
        head += _notes(
            f"{p.name}: {len(p.values)} distinct values: the line is the mean of the runs in "
            f"each of a few equal-width bins of the {'log10 ' if p.log_scale else ''}axis"
            for p in binned
        )
        numeric = sweep.numeric_metrics()
        plottable = [m for m in sweep.metrics if m in numeric]
        skipped = [m for m in sweep.metrics if m not in plottable]
        if skipped:
            head += _notes([f"Not plotted (no numeric values): {', '.join(skipped)}"])
        out = [self.div(head)]
        plotted = 0
        for metric in plottable:
            figures, notes = [], []
            for param in swept[: max(0, MAX_PLOTS - plotted)]:
                made = _metric_figure(sweep, metric, param)
                if made is not None:
                    figures.append(made[0])
                    notes.extend(made[1])
            plotted += len(figures)
            if figures:
                out.append(self.div(f"<h3>{_esc(metric)}</h3>" + _notes(notes)))
                out.append(gridplot(figures, ncols=3, toolbar_location="right"))
        total = len(plottable) * len(swept)
        if plotted < total:
            out.append(
                self.div(
                    f'<p class="note">{plotted} of {total} metric/parameter plots are shown '
                    f"(at most {MAX_PLOTS} per page).</p>"
                )
            )
        return out

    def series_plots(self) -> list[Any]:
        """One plot per stepped metric: a curve per run (capped) and the mean over runs."""
        from bokeh.layouts import gridplot

        if not self.sweep.series:
            return []
        figures, notes = [], []
        for name in self.sweep.series:
            made = _series_figure(self.sweep, name)
            if made is not None:
                figures.append(made[0])
                notes.extend(made[1])
        head = (
            "<h2>Stepped metrics</h2>"
            '<p class="note">One curve per run (dashed, in the colour of its status, for a run '
            "that did not complete); the black line is the mean over the completed runs at "
            "each step.</p>" + _notes(notes)
        )
        if not figures:
            return [self.div(head + '<p class="note">No stepped metric has numeric values.</p>')]
        return [self.div(head), gridplot(figures, ncols=2, toolbar_location="right")]

    # ------------------------------------------------------------ failures and provenance
    def failures(self) -> str:
        """Runs that did not complete, grouped by error type and message."""
        failed = self.sweep.not_completed()
        if not failed:
            return '<h2>Failures</h2><p class="note">Every run completed.</p>'
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for record in failed:
            error = record.get("error") or {}
            group = (str(error.get("type") or record.get("status")), str(error.get("message", "")))
            groups.setdefault(group, []).append(record)
        ordered = sorted(groups.items(), key=lambda item: -len(item[1]))
        parts = [
            f"<h2>Failures</h2><p>{_plural(len(failed), 'run')} did not complete, with "
            f"{_plural(len(groups), 'distinct error')}.</p>"
        ]
        for (error_type, message), records in ordered[:MAX_FAILURE_GROUPS]:
            parts.append(_failure_group(error_type, message, records))
        if len(ordered) > MAX_FAILURE_GROUPS:
            rest = sum(len(records) for _, records in ordered[MAX_FAILURE_GROUPS:])
            parts.append(
                f'<p class="note">{len(ordered) - MAX_FAILURE_GROUPS} more distinct errors '
                f"({rest} runs) are not listed.</p>"
            )
        return "\n".join(parts)

    def provenance(self) -> str:
        """Code hashes, git commits and dirty flags, hosts, workers, versions."""
        records = self.sweep.records
        prov = [r.get("provenance") or {} for r in records]
        rows: list[tuple[str, list[Any]]] = [
            ("operation / code hash", [_code(p) for p in prov]),
            ("git commit", [_git(p.get("git")) for p in prov]),
            ("host", [p.get("host") for p in prov]),
            ("worker", [p.get("worker") for p in prov]),
            ("python", [p.get("python") for p in prov]),
            ("metalab", [p.get("metalab") for p in prov]),
            ("numpy", [p.get("numpy") for p in prov]),
            ("session", [p.get("session") for p in prov]),
            ("attempt", [r.get("attempt") for r in records]),
        ]
        body = "".join(_provenance_row(name, values) for name, values in rows)
        return (
            "<h2>Provenance</h2><p class='note'>Each value with the number of runs that "
            f"recorded it.</p><table><tr><th>field</th><th>values (runs)</th></tr>{body}</table>"
        )


def _notes(notes: Iterable[str]) -> str:
    unique = list(dict.fromkeys(notes))
    return "".join(f'<p class="note">{_esc(n)}</p>' for n in unique)


def _column_values(title: str, values: list[Any], kind: str) -> tuple[str, Any, str]:
    """Numeric columns as float arrays (NaN for missing), the others as text."""
    import numpy as np

    if kind in ("int", "float", "number"):
        numbers = [_number(v) for v in values]
        if kind == "number":
            whole = all(v is None or isinstance(v, int) for v in values)
            kind = "int" if whole else "float"
        return title, np.array([math.nan if n is None else n for n in numbers], dtype=float), kind
    if kind == "status":
        return title, [str(v) for v in values], kind
    return title, ["" if v is None else label(v) for v in values], kind


def _code(prov: dict[str, Any]) -> str | None:
    code_hash = prov.get("code_hash")
    if code_hash is None:
        return None
    return f"{prov.get('operation', '?')} @ {str(code_hash)[:16]}"


def _git(git: Any) -> str:
    if not isinstance(git, dict):
        return "not in a git work tree"
    dirty = " (dirty: uncommitted changes)" if git.get("dirty") else " (clean)"
    return f"{str(git.get('commit', '?'))[:12]}{dirty}"


def _provenance_row(name: str, values: list[Any]) -> str:
    counts = Counter("" if v is None else str(v) for v in values)
    counts.pop("", None)
    if not counts:
        return f"<tr><td>{_esc(name)}</td><td class='note'>not recorded</td></tr>"
    shown = counts.most_common(MAX_LISTED)
    cells = "<br>".join(f"<code>{_esc(v)}</code> ({n})" for v, n in shown)
    if len(counts) > MAX_LISTED:
        cells += f"<br><span class='note'>and {len(counts) - MAX_LISTED} more values</span>"
    distinct = f" <span class='note'>({len(counts)} distinct)</span>" if len(counts) > 1 else ""
    return f"<tr><td>{_esc(name)}{distinct}</td><td>{cells}</td></tr>"


def _traceback_text(traceback: str) -> str:
    """A stored traceback as shown: whole, or its first and last lines when very long."""
    lines = traceback.rstrip().splitlines()
    if len(lines) <= TRACEBACK_LINES:
        return "\n".join(lines)
    head = TRACEBACK_LINES // 10
    skipped = len(lines) - TRACEBACK_LINES
    return "\n".join(
        [*lines[:head], f"... ({skipped} lines left out) ...", *lines[head - TRACEBACK_LINES :]]
    )


def _error_text(record: dict[str, Any]) -> str:
    """`Type: message` of a run that did not complete ('' for a completed one)."""
    if record.get("status") == "completed":
        return ""
    error = record.get("error") or {}
    text = f"{error.get('type') or record.get('status')}: {error.get('message') or ''}"
    text = " ".join(text.split()) if "\n" in text else text
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + " ..."


def _badges(sweep: Sweep) -> str:
    return "".join(
        f'<span class="badge" style="background:{STATUS_COLORS.get(s, "#555")}">'
        f"{_esc(s)}: {n}</span>"
        for s, n in sweep.status_counts().items()
    )


def _overview(title: str, parts: list[Sweep]) -> str:
    """The head of a page of several experiment ids: what they are, then a section each."""
    from . import __version__

    items = "".join(
        f"<li><b>{_esc(part.experiments[0])}</b>: {_plural(len(part.records), 'run')} "
        f"{_badges(part)}</li>"
        for part in parts
    )
    locator = parts[0].locator
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    return (
        f"<h1>{_esc(title)}</h1><p>These runs belong to {len(parts)} experiment ids (versions "
        "of an experiment are told apart by their id). Each has its own section below, the "
        f"one with the latest finished run first:</p><ul>{items}</ul>"
        + (f"<p><b>Store:</b> <code>{_esc(locator)}</code></p>" if locator else "")
        + f'<p class="note">Generated {_esc(now)} by metalab {_esc(__version__)}.</p>'
    )


def _failure_group(error_type: str, message: str, records: list[dict[str, Any]]) -> str:
    statuses = Counter(str(r.get("status")) for r in records)
    indices = [str(r.get("index")) for r in records[:MAX_LISTED]]
    more = f" and {len(records) - MAX_LISTED} more" if len(records) > MAX_LISTED else ""
    short = message if len(message) <= 500 else message[:500] + " ..."
    excerpt = _traceback_text(str((records[0].get("error") or {}).get("traceback") or ""))
    body = f"<pre>{_esc(excerpt)}</pre>" if excerpt else "<p class='note'>no traceback</p>"
    status_text = ", ".join(f"{s} {n}" for s, n in statuses.items())
    return (
        f"<details open><summary><b>{_esc(error_type)}</b>: {_esc(short)} "
        f"&mdash; {_plural(len(records), 'run')} ({_esc(status_text)})</summary>"
        f"<p>Runs (index): {_esc(', '.join(indices))}{more}; first run id "
        f"<code>{_esc(records[0].get('run_id', ''))}</code></p>{body}</details>"
    )


# ---------------------------------------------------------------- figures
def _metric_figure(sweep: Sweep, metric: str, param: Param) -> tuple[Any, list[str]] | None:
    """The metric against `param`: mean line, std band and dots per group of other params."""
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure
    from bokeh.transform import jitter

    others = [p for p in sweep.swept if p is not param]
    points: dict[tuple[str, ...], list[tuple[Any, float, Any]]] = {}
    factor_of = param.factor_map()
    for record in sweep.completed:
        y = _number((record.get("metrics") or {}).get(metric))
        if y is None:
            continue
        params = record.get("params") or {}
        value = params.get(param.name)
        x = float(params[param.name]) if param.numeric else factor_of.get(key(value), "")
        group = tuple(key(params.get(o.name)) for o in others)
        points.setdefault(group, []).append((x, y, record.get("index")))
    if not points:
        return None
    notes: list[str] = []
    if len(points) > MAX_LINES:
        merged = [p for group in points.values() for p in group]
        points = {(): merged}
        notes.append(
            f"{metric} vs {param.name}: averaged over the other swept parameters "
            f"({', '.join(o.name for o in others)}: more than {MAX_LINES} combinations)"
        )
    ranges: dict[str, Any] = {} if param.numeric else {"x_range": param.factors()}
    fig = figure(
        title=f"{metric} vs {param.name}",
        height=320,
        width=440,
        x_axis_type="log" if param.log_scale else "auto",
        tools="pan,box_zoom,wheel_zoom,reset,save",
        toolbar_location="right",
        **ranges,
    )
    fig.xaxis.axis_label = param.name
    fig.yaxis.axis_label = metric
    if not param.numeric:
        fig.xaxis.major_label_orientation = 0.6 if len(param.values) > 6 else 0.0
    total = sum(len(group) for group in points.values())
    per_group = max(1, MAX_POINTS // len(points))
    if total > MAX_POINTS:
        notes.append(
            f"{metric} vs {param.name}: dots for a sample of about {MAX_POINTS} of {total} "
            "runs; lines and bands use every run"
        )
    hover_means: list[Any] = []
    ranks = [{k: i for i, k in enumerate(o.values)} for o in others]
    groups = sorted(points.items(), key=lambda item: [r[k] for r, k in zip(ranks, item[0])])
    for i, (group, rows) in enumerate(groups):
        color = _PALETTE[i % len(_PALETTE)]
        legend = ", ".join(f"{o.name}={label(o.values[k])}" for o, k in zip(others, group))[:60]
        dots = evenly(sorted(rows, key=lambda row: (str(row[2]), row[1])), per_group)
        x_dots = jitter("x", width=0.3, range=fig.x_range) if not param.numeric else "x"
        fig.scatter(
            x=x_dots,
            y="y",
            source=ColumnDataSource(
                {"x": [d[0] for d in dots], "y": [d[1] for d in dots], "run": [d[2] for d in dots]}
            ),
            size=4,
            alpha=0.35,
            color=color,
        )
        stats = _by_x(rows, param)
        source = ColumnDataSource(stats)
        kwargs: dict[str, Any] = {"legend_label": legend} if group else {}
        fig.varea(x="x", y1="lo", y2="hi", source=source, fill_color=color, fill_alpha=0.15)
        fig.line(x="x", y="mean", source=source, color=color, line_width=2, **kwargs)
        hover_means.append(fig.scatter(x="x", y="mean", source=source, color=color, size=7))
    fig.add_tools(
        HoverTool(
            renderers=hover_means,
            tooltips=[
                ("value", "@x" if not param.binned else "@low to @high"),
                ("mean", "@mean{0.0000}"),
                ("std", "@std"),
                ("runs", "@n"),
            ],
        )
    )
    if len(points) > 1:
        fig.legend.location = "top_left"
        fig.legend.click_policy = "hide"
        fig.legend.label_text_font_size = "8pt"
        fig.legend.background_fill_alpha = 0.6
    return fig, notes


def _by_x(rows: list[tuple[Any, float, Any]], param: Param) -> dict[str, list[Any]]:
    """Mean, std and band bounds of the y values at each x (or bin of x), in axis order."""
    if param.numeric:
        found = trend([(x, y) for x, y, _ in rows], log=param.log_scale, binned=param.binned)
        xs, means, stds, counts = found.x, found.mean, found.std, found.n
        low, high = found.low, found.high
    else:
        by_x: dict[Any, list[float]] = {}
        for x, y, _ in rows:
            by_x.setdefault(x, []).append(y)
        rank = {name: i for i, name in enumerate(param.factors())}
        xs = sorted(by_x, key=lambda x: rank.get(x, len(rank)))
        stats = [spread(by_x[x]) for x in xs]
        means, stds = [m for m, _ in stats], [s for _, s in stats]
        counts, low, high = [len(by_x[x]) for x in xs], xs, xs
    return {
        "x": xs,
        "mean": means,
        "std": stds,
        "lo": [m - s for m, s in zip(means, stds)],
        "hi": [m + s for m, s in zip(means, stds)],
        "n": counts,
        "low": low,
        "high": high,
    }


def _series_figure(sweep: Sweep, name: str) -> tuple[Any, list[str]] | None:
    """Curves of the stepped metric `name`: some runs, and the mean over the completed ones."""
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.palettes import viridis
    from bokeh.plotting import figure

    curves = [(r, pairs) for r in sweep.records if (pairs := _steps(r, name))]
    if not curves:
        return None
    notes = []
    shown = evenly(curves, MAX_CURVES)
    if len(curves) > MAX_CURVES:
        notes.append(f"{name}: {MAX_CURVES} of {len(curves)} runs drawn (evenly chosen)")
    colors = iter(viridis(len(shown)) if len(shown) > 1 else ["#1f77b4"])
    data: dict[str, list[Any]] = {"xs": [], "ys": [], "color": [], "dash": [], "run": []}
    data["params"] = []
    for record, pairs in shown:
        thin = evenly(pairs, MAX_CURVE_POINTS)
        status = str(record.get("status"))
        completed = status == "completed"
        data["xs"].append([p[0] for p in thin])
        data["ys"].append([p[1] for p in thin])
        data["color"].append(next(colors) if completed else STATUS_COLORS.get(status, "#555"))
        data["dash"].append("solid" if completed else "dashed")
        data["run"].append(f"{record.get('index')} ({status})")
        data["params"].append(
            ", ".join(f"{k}={label(v)}" for k, v in (record.get("params") or {}).items())[:120]
        )
    fig = figure(
        title=f"{name} by step",
        height=340,
        width=620,
        tools="pan,box_zoom,wheel_zoom,reset,save",
        toolbar_location="right",
    )
    fig.xaxis.axis_label = "step"
    fig.yaxis.axis_label = name
    lines = fig.multi_line(
        xs="xs",
        ys="ys",
        source=ColumnDataSource(data),
        color="color",
        line_dash="dash",
        alpha=0.6,
        line_width=1,
    )
    fig.add_tools(HoverTool(renderers=[lines], tooltips=[("run", "@run"), ("params", "@params")]))
    mean = _step_means([pairs for record, pairs in curves if record.get("status") == "completed"])
    if len(mean["step"]) > 0 and len(curves) > 1:
        fig.line("step", "mean", source=ColumnDataSource(mean), color="black", line_width=2.5)
    return fig, notes


def _steps(record: dict[str, Any], name: str) -> list[tuple[int, float]]:
    """(step, value) of the stepped metric `name` of a run, numeric values only."""
    series = (record.get("series") or {}).get(name)
    if not isinstance(series, dict):
        return []
    return [
        (int(s), y)
        for s, v in zip(series.get("steps") or [], series.get("values") or [])
        if is_number(s) and (y := _number(v)) is not None
    ]


def _step_means(curves: list[list[tuple[int, float]]]) -> dict[str, list[float]]:
    """The mean value at each step over `curves` (at most `MAX_CURVE_POINTS` steps)."""
    sums: dict[int, list[float]] = {}
    for pairs in curves:
        for step, y in pairs:
            total = sums.setdefault(step, [0.0, 0.0])
            total[0] += y
            total[1] += 1
    steps = evenly(sorted(sums), MAX_CURVE_POINTS)
    return {"step": steps, "mean": [sums[s][0] / sums[s][1] for s in steps]}
