"""The sections of a report as bokeh models."""

from __future__ import annotations

import math
from typing import Any

from .._aggregate import COMPLETED, evenly, is_number, label
from .._aggregate import finite as _number
from . import limits
from ._figures import metric_figure, series_figure
from ._runs import STATUS_COLORS, Runs
from ._stats import spread_of
from ._text import (
    badges,
    code_text,
    error_text,
    escape,
    failure_group,
    generated,
    git_text,
    notes_html,
    plural,
    provenance_row,
    seconds_text,
)

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


class Page:
    """Build the sections of the report as bokeh models, from `Runs`."""

    def __init__(self, runs: Runs):
        from bokeh.models import InlineStyleSheet

        self.runs = runs
        self.style = InlineStyleSheet(css=_CSS)

    def div(self, text: str) -> Any:
        """A Div of trusted HTML (every value in it was escaped by the caller)."""
        from bokeh.models.widgets.markups import Div

        # tracebacks and messages hold `$$` and `\(`: they are text, never typeset as TeX
        return Div(
            text=text, sizing_mode="stretch_width", stylesheets=[self.style], disable_math=True
        )

    def build(self, title: str, *, section: bool = False) -> list[Any]:
        """Every section, top to bottom (`section`: the part of one experiment id of a page)."""
        out = [self.div(self.header(title, section=section))]
        if not self.runs.count:
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
        runs = self.runs
        style = ' style="border-top: 3px solid #888; padding-top: 0.3em"' if section else ""
        lines = [
            f"<h1{style}>{escape(title)}</h1>",
            f"<p><b>Experiments:</b> {escape(', '.join(runs.experiments) or 'none')}</p>",
            f"<p><b>{plural(runs.count, 'run')}</b> {badges(runs)}</p>",
        ]
        span = runs.time_span()
        if span is not None:
            first, last = span
            lines.append(
                f"<p><b>Time span:</b> {escape(first.isoformat(timespec='seconds'))} to "
                f"{escape(last.isoformat(timespec='seconds'))} "
                f"({escape(seconds_text(max(0.0, (last - first).total_seconds())))} wall time; "
                f"{escape(seconds_text(runs.total_duration()))} of run time in total)</p>"
            )
        constant = [p for p in runs.params if not p.swept]
        if constant:
            fixed = ", ".join(
                f"{p.name} = {label(next(iter(p.values.values())))}" for p in constant
            )
            lines.append(f"<p><b>Fixed parameters:</b> {escape(fixed)}</p>")
        if runs.locator and not section:
            lines.append(f"<p><b>Store:</b> <code>{escape(runs.locator)}</code></p>")
        if not section:
            lines.append(generated())
        return "\n".join(lines)

    # ------------------------------------------------------------ runs table
    def runs_table(self) -> list[Any]:
        """The runs as a sortable table (params, metrics, status, duration)."""
        from bokeh.models import ColumnDataSource
        from bokeh.models.widgets.tables import DataTable

        shown = self.runs.head(limits.MAX_TABLE_ROWS)
        columns = self._table_columns(shown)
        data = {f"c{i}": values for i, (_, values, _) in enumerate(columns)}
        data["status_color"] = [STATUS_COLORS.get(str(s), "#222") for s in shown.field("status")]
        table = DataTable(
            source=ColumnDataSource(data),
            columns=[
                self._table_column(f"c{i}", title, values, kind)
                for i, (title, values, kind) in enumerate(columns)
            ],
            index_position=None,
            reorderable=False,
            sizing_mode="stretch_width",
            height=min(600, 26 * (shown.count + 1) + 12),
            autosize_mode="force_fit" if len(columns) <= 10 else "none",
            stylesheets=[self.style],
        )
        head = "<h2>Runs</h2>"
        if self.runs.count > limits.MAX_TABLE_ROWS:
            head += (
                f'<p class="note">The first {limits.MAX_TABLE_ROWS} of '
                f"{self.runs.count} runs are listed; counts, plots and failures use "
                "every run.</p>"
            )
        return [self.div(head), table]

    def _table_columns(self, shown: Runs) -> list[tuple[str, Any, str]]:
        """(title, values, kind) per column of the runs `shown`; kind is `int`, `float`,
        `status` or `text`."""
        columns: list[tuple[str, Any, str]] = [("#", shown.field("index"), "int")]
        if len(self.runs.experiments) > 1:
            columns.append(("experiment", shown.field("experiment_id"), "text"))
        statuses = shown.field("status")
        columns.append(("status", statuses, "status"))
        if self.runs.left_out():  # the record of a run is read only when it did not complete
            errors = [
                "" if status == COMPLETED else error_text(shown.record(row))
                for row, status in enumerate(statuses)
            ]
            columns.append(("error", errors, "text"))
        columns.append(("duration (s)", shown.field("duration"), "float"))
        for param in self.runs.params:
            values = shown.values("params", param.name)
            columns.append((param.name, values, "number" if param.axis.numeric else "text"))
        for name in self.runs.metrics:
            values = shown.values("metrics", name)
            numeric = all(v is None or is_number(v) for v in values)
            columns.append((name, values, "number" if numeric else "text"))
        run_ids = ["" if r is None else str(r)[:12] for r in shown.field("run_id")]
        columns.append(("run id", run_ids, "text"))
        return [column_values(title, values, kind) for title, values, kind in columns]

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
        return TableColumn(field=field_name, title=escape(title), formatter=formatter, width=width)

    # ------------------------------------------------------------ metrics
    def metric_summary(self) -> list[Any]:
        """A table of every metric's count, mean, std, min and max over runs."""
        runs = self.runs
        if not runs.metrics:
            note = "No scalar metrics were captured"
            if runs.series:
                note += " (stepped metrics are plotted below)"
            return [self.div(f'<h2>Metrics</h2><p class="note">{note}.</p>')]
        import numpy as np

        rows = []
        for name in runs.metrics:
            numbers, present = runs.completed_numbers("metrics", name)
            other = present - len(numbers)
            if len(numbers):
                mean, std = spread_of(numbers)
                low, high = float(np.min(numbers)), float(np.max(numbers))
                stats = [f"{mean:.6g}", f"{std:.6g}", f"{low:.6g}", f"{high:.6g}"]
            else:
                stats = ["", "", "", ""]
            cells = "".join(f'<td class="num">{escape(s)}</td>' for s in [len(numbers), *stats])
            rows.append(f"<tr><td>{escape(name)}</td>{cells}<td class='num'>{other}</td></tr>")
        head = "".join(
            f"<th>{h}</th>"
            for h in ("metric", "runs", "mean", "std", "min", "max", "non-numeric values")
        )
        table = f"<table><tr>{head}</tr>{''.join(rows)}</table>"
        return [self.div(f"<h2>Metrics</h2>{self._over_completed()}{table}")]

    def _over_completed(self) -> str:
        """A note saying that statistics use completed runs and which runs they leave out."""
        left_out = self.runs.left_out()
        text = f"Over the {plural(len(self.runs.completed_rows), 'completed run')}"
        if left_out:
            text += (
                f"; {left_out} runs are left out (the runs table shows the metrics they "
                "recorded before they stopped)"
            )
        return f'<p class="note">{escape(text)}.</p>'

    def metric_plots(self) -> list[Any]:
        """For each metric and swept parameter, the metric against the parameter."""
        from bokeh.layouts import gridplot

        runs = self.runs
        if not runs.metrics:
            return []
        swept = runs.swept
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
        binned = [p for p in swept if p.axis.binned]
        head += notes_html(
            f"{p.name}: {len(p.values)} distinct values: the line is the mean of the runs in "
            f"each of a few equal-width bins of the {'log10 ' if p.axis.log else ''}axis"
            for p in binned
        )
        numeric = runs.numeric_metrics()
        plottable = [m for m in runs.metrics if m in numeric]
        skipped = [m for m in runs.metrics if m not in plottable]
        if skipped:
            head += notes_html([f"Not plotted (no numeric values): {', '.join(skipped)}"])
        out = [self.div(head)]
        plotted = 0
        for metric in plottable:
            figures, notes = [], []
            for param in swept[: max(0, limits.MAX_PLOTS - plotted)]:
                made = metric_figure(runs, metric, param)
                if made is not None:
                    figures.append(made[0])
                    notes.extend(made[1])
            plotted += len(figures)
            if figures:
                out.append(self.div(f"<h3>{escape(metric)}</h3>" + notes_html(notes)))
                out.append(gridplot(figures, ncols=3, toolbar_location="right"))
        total = len(plottable) * len(swept)
        if plotted < total:
            out.append(
                self.div(
                    f'<p class="note">{plotted} of {total} metric/parameter plots are shown '
                    f"(at most {limits.MAX_PLOTS} per page).</p>"
                )
            )
        return out

    def series_plots(self) -> list[Any]:
        """One plot per stepped metric: a curve per run (capped) and the mean over runs."""
        from bokeh.layouts import gridplot

        if not self.runs.series:
            return []
        figures, notes = [], []
        for name in self.runs.series:
            made = series_figure(self.runs, name)
            if made is not None:
                figures.append(made[0])
                notes.extend(made[1])
        head = (
            "<h2>Stepped metrics</h2>"
            '<p class="note">One curve per run (dashed, in the colour of its status, for a run '
            "that did not complete); the black line is the mean over the completed runs at "
            "each step.</p>" + self._sample_note("Curves and means are") + notes_html(notes)
        )
        if not figures:
            return [self.div(head + '<p class="note">No stepped metric has numeric values.</p>')]
        return [self.div(head), gridplot(figures, ncols=2, toolbar_location="right")]

    # ------------------------------------------------------------ failures and provenance
    def failures(self) -> str:
        """Runs that did not complete, grouped by error type and message."""
        rows = self.runs.not_completed()
        if not rows:
            return '<h2>Failures</h2><p class="note">Every run completed.</p>'
        read = evenly(rows, limits.MAX_ERRORS_READ)
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for record in (self.runs.record(row) for row in read):
            error = record.get("error") or {}
            group = (str(error.get("type") or record.get("status")), str(error.get("message", "")))
            groups.setdefault(group, []).append(record)
        ordered = sorted(groups.items(), key=lambda item: -len(item[1]))
        parts = [
            f"<h2>Failures</h2><p>{plural(len(rows), 'run')} did not complete, with "
            f"{plural(len(groups), 'distinct error')}"
            + (" among the runs whose errors were read" if len(read) < len(rows) else "")
            + ".</p>"
        ]
        if len(read) < len(rows):
            parts.append(
                f'<p class="note">The errors of {len(read)} of these {len(rows)} runs, '
                "spread evenly over them, were read: the groups below count those runs.</p>"
            )
        for (error_type, message), records in ordered[: limits.MAX_FAILURE_GROUPS]:
            parts.append(failure_group(error_type, message, records))
        if len(ordered) > limits.MAX_FAILURE_GROUPS:
            rest = sum(len(records) for _, records in ordered[limits.MAX_FAILURE_GROUPS :])
            parts.append(
                f'<p class="note">{len(ordered) - limits.MAX_FAILURE_GROUPS} more distinct errors '
                f"({rest} runs) are not listed.</p>"
            )
        return "\n".join(parts)

    def provenance(self) -> str:
        """Code hashes, git commits and dirty flags, hosts, workers, versions."""
        records = self.runs.sample
        prov = [r.get("provenance") or {} for r in records]
        rows: list[tuple[str, list[Any]]] = [
            ("operation / code hash", [code_text(p) for p in prov]),
            ("git commit", [git_text(p.get("git")) for p in prov]),
            ("host", [p.get("host") for p in prov]),
            ("worker", [p.get("worker") for p in prov]),
            ("python", [p.get("python") for p in prov]),
            ("metalab", [p.get("metalab") for p in prov]),
            ("numpy", [p.get("numpy") for p in prov]),
            ("session", [p.get("session") for p in prov]),
            ("attempt", [r.get("attempt") for r in records]),
        ]
        body = "".join(provenance_row(name, values) for name, values in rows)
        return (
            "<h2>Provenance</h2><p class='note'>Each value with the number of runs that "
            f"recorded it.</p>{self._sample_note('Provenance is')}"
            f"<table><tr><th>field</th><th>values (runs)</th></tr>{body}</table>"
        )

    def _sample_note(self, what: str) -> str:
        """A note that `what` is read from a sample of the runs' records, when it is."""
        runs = self.runs
        if not runs.sampled:
            return ""
        return (
            f'<p class="note">{escape(what)} from a sample of {len(runs.sample)} of the '
            f"{runs.count} runs, spread evenly over them (whole records are read only for "
            "these).</p>"
        )


def column_values(title: str, values: list[Any], kind: str) -> tuple[str, Any, str]:
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
