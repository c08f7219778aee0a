"""The report's plots: a metric against a parameter, a stepped metric by step."""

from __future__ import annotations

from typing import Any

from .._aggregate import COMPLETED, Axis, canonical, evenly, is_number, label, trend
from .._aggregate import finite as _number
from . import limits
from ._runs import STATUS_COLORS, Param, Runs

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def metric_figure(runs: Runs, metric: str, param: Param) -> tuple[Any, list[str]] | None:
    """The metric against `param`: mean line, std band and dots per group of other params."""
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure
    from bokeh.transform import jitter

    others = [p for p in runs.swept if p is not param]
    points: dict[tuple[str, ...], list[tuple[Any, float, Any]]] = {}
    axis = param.axis
    xs = runs.completed("params", param.name)
    keys = [_canonical(runs.completed("params", o.name)) for o in others]
    groups_of = zip(*keys) if keys else [()] * len(xs)
    indices = [runs.field("index")[row] for row in runs.completed_rows]
    for y_value, x_value, group, index in zip(
        runs.completed("metrics", metric), xs, groups_of, indices
    ):
        y = _number(y_value)
        if y is None:
            continue
        x = float(x_value) if axis.numeric else axis.factor(x_value)
        points.setdefault(group, []).append((x, y, index))
    if not points:
        return None
    notes: list[str] = []
    if len(points) > limits.MAX_LINES:
        merged = [p for group in points.values() for p in group]
        points = {(): merged}
        notes.append(
            f"{metric} vs {param.name}: averaged over the other swept parameters "
            f"({', '.join(o.name for o in others)}: more than {limits.MAX_LINES} combinations)"
        )
    ranges: dict[str, Any] = {} if axis.numeric else {"x_range": axis.factors}
    fig = figure(
        title=f"{metric} vs {param.name}",
        height=320,
        width=440,
        x_axis_type="log" if axis.log else "auto",
        tools="pan,box_zoom,wheel_zoom,reset,save",
        toolbar_location="right",
        **ranges,
    )
    fig.xaxis.axis_label = param.name
    fig.yaxis.axis_label = metric
    if not axis.numeric:
        fig.xaxis.major_label_orientation = 0.6 if len(param.values) > 6 else 0.0
    total = sum(len(group) for group in points.values())
    per_group = max(1, limits.MAX_POINTS // len(points))
    if total > limits.MAX_POINTS:
        notes.append(
            f"{metric} vs {param.name}: dots for a sample of about {limits.MAX_POINTS} of {total} "
            "runs; lines and bands use every run"
        )
    hover_means: list[Any] = []
    ranks = [{k: i for i, k in enumerate(o.values)} for o in others]
    groups = sorted(points.items(), key=lambda item: [r[k] for r, k in zip(ranks, item[0])])
    for i, (group, rows) in enumerate(groups):
        color = _PALETTE[i % len(_PALETTE)]
        legend = ", ".join(f"{o.name}={label(o.values[k])}" for o, k in zip(others, group))[:60]
        dots = evenly(sorted(rows, key=lambda row: (str(row[2]), row[1])), per_group)
        x_dots = jitter("x", width=0.3, range=fig.x_range) if not axis.numeric else "x"
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
        stats = _by_x(rows, axis)
        source = ColumnDataSource(stats)
        kwargs: dict[str, Any] = {"legend_label": legend} if group else {}
        fig.varea(x="x", y1="lo", y2="hi", source=source, fill_color=color, fill_alpha=0.15)
        fig.line(x="x", y="mean", source=source, color=color, line_width=2, **kwargs)
        hover_means.append(fig.scatter(x="x", y="mean", source=source, color=color, size=7))
    fig.add_tools(
        HoverTool(
            renderers=hover_means,
            tooltips=[
                ("value", "@x" if not axis.binned else "@low to @high"),
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


def _by_x(rows: list[tuple[Any, float, Any]], axis: Axis) -> dict[str, list[Any]]:
    """Mean, std and band bounds of the y values at each x (or bin of x), in axis order."""
    xs: list[Any]
    low: list[Any]
    high: list[Any]
    if axis.numeric:
        found = trend([(x, y) for x, y, _ in rows], log=axis.log, binned=axis.binned)
        xs, low, high = found.x, found.low, found.high
    else:  # categories: the mean at each category's rank, drawn at its label
        rank = {name: i for i, name in enumerate(axis.factors)}
        found = trend([(float(rank[x]), y) for x, y, _ in rows], binned=False)
        xs = low = high = [axis.factors[int(p)] for p in found.x]
    return {
        "x": xs,
        "mean": found.mean,
        "std": found.std,
        "lo": [m - s for m, s in zip(found.mean, found.std)],
        "hi": [m + s for m, s in zip(found.mean, found.std)],
        "n": found.n,
        "low": low,
        "high": high,
    }


def series_figure(runs: Runs, name: str) -> tuple[Any, list[str]] | None:
    """Curves of the stepped metric `name`: some runs, and the mean over the completed ones."""
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.palettes import viridis
    from bokeh.plotting import figure

    curves = [(r, pairs) for r in runs.sample if (pairs := _steps(r, name))]
    if not curves:
        return None
    notes = []
    shown = evenly(curves, limits.MAX_CURVES)
    if len(curves) > limits.MAX_CURVES:
        among = " sampled" if runs.sampled else ""
        notes.append(
            f"{name}: {limits.MAX_CURVES} of {len(curves)}{among} runs drawn (evenly chosen)"
        )
    colors = iter(viridis(len(shown)) if len(shown) > 1 else ["#1f77b4"])
    data: dict[str, list[Any]] = {"xs": [], "ys": [], "color": [], "dash": [], "run": []}
    data["params"] = []
    for record, pairs in shown:
        thin = evenly(pairs, limits.MAX_CURVE_POINTS)
        status = str(record.get("status"))
        completed = status == COMPLETED
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
    mean = _step_means([pairs for record, pairs in curves if record.get("status") == COMPLETED])
    if len(mean["step"]) > 0 and len(curves) > 1:
        fig.line("step", "mean", source=ColumnDataSource(mean), color="black", line_width=2.5)
    return fig, notes


def _canonical(values: list[Any]) -> list[str]:
    """`canonical(value)` of each value, each distinct value's text made once."""
    memo: dict[tuple[type, Any], str] = {}
    out = []
    for value in values:
        try:
            key = (type(value), value)
            text = memo.get(key)
            if text is None:
                text = memo[key] = canonical(value)
        except TypeError:  # unhashable (a list, a dict)
            text = canonical(value)
        out.append(text)
    return out


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
    """The mean value at each step over `curves` (at most `limits.MAX_CURVE_POINTS` steps)."""
    sums: dict[int, list[float]] = {}
    for pairs in curves:
        for step, y in pairs:
            total = sums.setdefault(step, [0.0, 0.0])
            total[0] += y
            total[1] += 1
    steps = evenly(sorted(sums), limits.MAX_CURVE_POINTS)
    return {"step": steps, "mean": [sums[s][0] / sums[s][1] for s in steps]}
