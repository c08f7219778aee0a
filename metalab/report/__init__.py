"""A sweep as one standalone HTML page: runs, metrics against parameters, curves, failures.

The page embeds BokehJS (inline resources), so it opens offline and can be archived beside the
store. Large sweeps are summarised: the runs table, the scattered points and the curves are
capped (the page says so), while means, spreads and counts always use every completed run
(runs that did not complete are counted beside them). A store holding several experiment ids
gets one section per experiment id.

The page reads the runs by column (`Results.to_arrow()`: for a store's columnar load, the
runs table it read), so a million runs cost what their table costs. Whole records are read
only for the runs shown in detail: those that did not complete (their errors, at most
`limits.MAX_ERRORS_READ`) and a sample spread evenly over the runs for stepped-metric curves
and provenance (at most `limits.MAX_SAMPLED_RUNS`); the page says when either is a sample.

`write_report(results, path)` is the entry point, for a `metalab.Results`;
`report_from_store(store, load=metalab.load_results)` loads a store's runs first with the
function it is given (the report reads no store itself). What the page draws at most is set
in `metalab.report.limits`. Bokeh comes from the `dashboard` extra and is imported only when
a report is built.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import registry
from ..errors import ValidationError, require
from ..locators import redact_password
from . import limits
from ._page import Page
from ._runs import Runs
from ._text import overview

if TYPE_CHECKING:
    from ..results import Results

Load = Callable[[Any, "str | None"], "Results"]
"""How runs are loaded from a store: `metalab.load_results(store, experiment)`."""


def write_report(
    results: Results, path: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """Write the HTML report of `results` to `path` (replacing it atomically); return its path.

    Raises `MissingDependencyError` naming the `dashboard` extra when bokeh is not
    installed; on any failure the file at `path` is left as it was.
    """
    target = Path(os.fspath(path)).absolute()
    if target.is_dir():
        raise ValidationError(
            f"report path {str(target)!r} is a directory; give the HTML file to write, such "
            f"as {str(target / 'report.html')!r}"
        )
    html_text = report_html(results, title=title)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValidationError(
            f"report path {str(target)!r} is inside a file, not a directory; give an HTML "
            "file in a directory"
        ) from None
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(html_text, encoding="utf-8")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def report_from_store(
    store: Any,
    output: str | os.PathLike[str] | None = None,
    experiment: str | None = None,
    *,
    load: Load | None = None,
) -> Path:
    """Write the report of a store's runs (of one experiment, by name or `name:version`).

    `load` reads the runs (default `metalab.load_results`); `output` defaults to `report.html`
    in the working directory. Raises `ValidationError` when `experiment` is given and the
    store holds no run of it, naming the experiments it holds.
    """
    load = load if load is not None else registry.results_loader()
    results = load(store, experiment)
    if experiment is not None and len(results) == 0:
        everything = load(store, None)
        held = [str(e) for e in everything.summary()["experiments"]]
        raise ValidationError(
            f"store {_shown(everything, store)} holds no runs of experiment {experiment!r}; "
            f"it holds runs of: {', '.join(held) or 'none'}"
        )
    return write_report(results, output if output is not None else "report.html")


def _shown(results: Results, store: Any) -> str:
    """The store of `results` as it may be shown (no password); results loaded without a
    store are shown by what named it."""
    opened = results.store
    return redact_password(str(store)) if opened is None else opened.public_locator


def report_html(results: Results, *, title: str | None = None) -> str:
    """Return the report of `results` as one standalone HTML document (BokehJS inlined).

    Raises `MissingDependencyError` naming the `dashboard` extra when bokeh is not installed.
    """
    require("bokeh", "dashboard", "metalab reports")
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.resources import INLINE

    runs = Runs.of(results)
    page_title = title if title is not None else runs.default_title()
    parts = runs.by_experiment()
    if len(parts) <= 1:
        children = Page(runs).build(page_title)
    else:
        children = [Page(runs).div(overview(page_title, parts))]
        for part in parts:
            children += Page(part).build(f"Experiment {part.experiments[0]}", section=True)
    layout = column(children=children, sizing_mode="stretch_width")
    return file_html(layout, resources=INLINE, title=page_title)


__all__ = ["limits", "report_from_store", "report_html", "write_report"]
