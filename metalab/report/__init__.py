"""A sweep as one standalone HTML page: runs, metrics against parameters, curves, failures.

The page embeds BokehJS (inline resources), so it opens offline and can be archived beside the
store. Large sweeps are summarised: the runs table, the scattered points and the curves are
capped (the page says so), while means, spreads and counts always use every completed run
(runs that did not complete are counted beside them). A store holding several experiment ids
gets one section per experiment id.

`write_report(results, path)` is the entry point; `report_from_store(store)` loads a store
first. What the page draws at most is set in `metalab.report.limits`. Bokeh comes from the
`dashboard` extra and is imported only when a report is built.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import limits
from ._page import Page
from ._sweep import STATUS_COLORS, Param, Sweep, key, label
from ._text import overview


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
    from ..runner import load_results

    results = load_results(store_or_path, experiment)
    if experiment is not None and len(results) == 0:
        from ..errors import ValidationError

        held = sorted({r.get("experiment_id", "") for r in load_results(store_or_path).records})
        from ..stores.locator import to_locator

        raise ValidationError(
            f"store {to_locator(results.store)} holds no runs of experiment {experiment!r}; "
            f"it holds runs of: {', '.join(held) or 'none'}"
        )
    return write_report(results, output if output is not None else "report.html")


def report_html(results: Any, *, title: str | None = None) -> str:
    """Return the report of `results` as one standalone HTML document (BokehJS inlined)."""
    from ..errors import require

    require("bokeh", "dashboard", "metalab reports")
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.resources import INLINE

    sweep = Sweep.of(results)
    page_title = title if title is not None else sweep.default_title()
    parts = sweep.by_experiment()
    if len(parts) <= 1:
        children = Page(sweep).build(page_title)
    else:
        children = [Page(sweep).div(overview(page_title, parts))]
        for part in parts:
            children += Page(part).build(f"Experiment {part.experiments[0]}", section=True)
    layout = column(children=children, sizing_mode="stretch_width")
    return file_html(layout, resources=INLINE, title=page_title)


__all__ = [
    "STATUS_COLORS",
    "Param",
    "Sweep",
    "key",
    "label",
    "limits",
    "report_from_store",
    "report_html",
    "write_report",
]
