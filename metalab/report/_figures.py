"""The report's plots: a metric against a parameter, a stepped metric by step."""

from __future__ import annotations

import math
from typing import Any

from .._aggregate import COMPLETED, Axis, evenly, is_number, label
from .._aggregate import finite as _number
from . import limits
from ._runs import STATUS_COLORS, Param, Runs
from ._stats import trend_of

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def metric_figure(runs: Runs, metric: str, param: Param) -> tuple[Any, list[str]] | None:
    """The metric against `param`: mean line, std band and dots per group of other params."""
    import numpy as np
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure
    from bokeh.transform import jitter

    others = [p for p in runs.swept if p is not param]
    axis = param.axis
    y = runs.completed_floats("metrics", metric)
    keep = np.flatnonzero(y == y)  # the completed runs with a number (not NaN)
    if not len(keep):
        return None
    y = y[keep]
    place = runs.completed_ranks(param)[keep]
    if axis.numeric:
        x = np.asarray([float(v) for v in param.values.values()], dtype=float)[place]
    else:  # categories at their rank
        x = place.astype(float)
    rows = np.asarray(runs.completed_rows, dtype=np.int64)[keep]
    # the groups of runs by the other swept parameters, in the order of their values
    groups: list[tuple[tuple[int, ...], Any]] = [((), np.arange(len(y)))]
    found, member = _combinations(np, [runs.completed_ranks(o)[keep] for o in others])
    if others and len(found) <= limits.MAX_LINES:
        groups = [(found[g], np.flatnonzero(member == g)) for g in range(len(found))]
    notes: list[str] = []
    if len(found) > limits.MAX_LINES:
        groups = [((), np.arange(len(y)))]
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
    total = len(y)
    per_group = max(1, limits.MAX_POINTS // len(groups))
    if total > limits.MAX_POINTS:
        notes.append(
            f"{metric} vs {param.name}: dots for a sample of about {limits.MAX_POINTS} of {total} "
            "runs; lines and bands use every run"
        )
    hover_means: list[Any] = []
    index_of = runs.field("index")
    keys = [list(o.values) for o in others]
    for i, (group, members) in enumerate(groups):
        color = _PALETTE[i % len(_PALETTE)]
        legend = ", ".join(
            f"{o.name}={label(o.values[k[r]])}" for o, k, r in zip(others, keys, group)
        )[:60]
        indices = [index_of[row] for row in rows[members].tolist()]
        dots = _dots(y[members].tolist(), indices, per_group)
        x_dots = jitter("x", width=0.3, range=fig.x_range) if not axis.numeric else "x"
        shown_x = x[members]
        fig.scatter(
            x=x_dots,
            y="y",
            source=ColumnDataSource(
                {
                    "x": [_x_label(axis, float(shown_x[d])) for d in dots],
                    "y": [float(y[members[d]]) for d in dots],
                    "run": [indices[d] for d in dots],
                }
            ),
            size=4,
            alpha=0.35,
            color=color,
        )
        stats = _by_x(shown_x, y[members], axis)
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
    if len(groups) > 1:
        fig.legend.location = "top_left"
        fig.legend.click_policy = "hide"
        fig.legend.label_text_font_size = "8pt"
        fig.legend.background_fill_alpha = 0.6
    return fig, notes


def _combinations(np: Any, places: list[Any]) -> tuple[list[tuple[int, ...]], Any]:
    """The distinct combinations of places on the axes of other parameters (one array per
    parameter), in the order of those places, and which combination each point has."""
    if not places:
        return [()], None
    places = [np.maximum(p, 0) for p in places]  # every value is on its axis
    sizes = [int(p.max()) + 1 for p in places]
    if math.prod(sizes) < 2**62:  # one number per combination
        code = np.zeros(len(places[0]), dtype=np.int64)
        for place, size in zip(places, sizes):
            code = code * size + place
        found, member = np.unique(code, return_inverse=True)
        combos = []
        for value in found.tolist():
            combo = []
            for size in reversed(sizes):
                value, place = divmod(value, size)
                combo.append(place)
            combos.append(tuple(reversed(combo)))
        return combos, member.reshape(-1)
    rows, member = np.unique(np.stack(places, axis=1), axis=0, return_inverse=True)
    return [tuple(row) for row in rows.tolist()], member.reshape(-1)


def _x_label(axis: Axis, x: float) -> Any:
    """A dot's x: the number, or its category's label."""
    return x if axis.numeric else axis.factors[int(x)]


def _by_x(x: Any, y: Any, axis: Axis) -> dict[str, list[Any]]:
    """Mean, std and band bounds of the y values at each x (or bin of x), in axis order."""
    xs: list[Any]
    low: list[Any]
    high: list[Any]
    if axis.numeric:
        found = trend_of(x, y, log=axis.log, binned=axis.binned)
        xs, low, high = found.x, found.low, found.high
    else:  # categories: the mean at each category's rank, drawn at its label
        found = trend_of(x, y, binned=False)
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


def _dots(ys: list[float], indices: list[Any], limit: int) -> list[int]:
    """Which points to draw as dots: at most `limit`, evenly spread over the points ordered
    by run index (as text) and value."""
    if len(ys) <= limit:
        return sorted(range(len(ys)), key=lambda i: (str(indices[i]), ys[i]))
    import numpy as np

    texts = np.array(indices, dtype=object).astype(str)
    order = np.lexsort((np.asarray(ys), texts))
    return evenly(order.tolist(), limit)


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
