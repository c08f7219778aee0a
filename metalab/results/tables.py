"""How `Results` shows runs: the text and HTML runs tables, grouped summaries, and cells."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from ..errors import ValidationError
from ..names import closest

ERROR_WIDTH = 60
"""Characters of a failed run's error shown in a text table (the DataFrame has all of it)."""
HTML_ROWS = 20
"""Runs a notebook shows of a `Results`: the first and last halves, beyond that many."""


def error_text(error: dict[str, Any] | None) -> str:
    """`"Type: message"` of a run's error (its message's first line), or `""`."""
    if not error:
        return ""
    message = str(error.get("message") or "").strip().splitlines()
    return f"{error.get('type', 'Error')}: {message[0] if message else ''}".rstrip(": ")


def cause_of(record: dict[str, Any]) -> str | None:
    """Why a run was lost to its scheduler (`timeout`, `out_of_memory`, `preempted`,
    `node_failure`, `cancelled`, `unknown`), as its record's error says; None otherwise."""
    cause = (record.get("error") or {}).get("cause")
    return cause if isinstance(cause, str) else None


def error_column(params: list[str], metrics: list[str]) -> str:
    """`error`, or `run_error` when a parameter or metric is called `error`."""
    return "run_error" if "error" in params or "error" in metrics else "error"


def rows_of(
    records: Sequence[dict[str, Any]],
    errors: Sequence[str],
    params: list[str],
    metrics: list[str],
) -> tuple[list[str], list[list[str]]]:
    """The header and cells of the runs table: index, replicate, params, metrics, status and,
    when a run did not complete, its error."""
    # every column named once: a param or metric named like another column gets its kind
    # (and a number after it, where even that is taken)
    taken = {"#", "replicate", "status", error_column(params, metrics)}
    shown_params = [_unique(p, "param_", taken) for p in params]
    shown_metrics = [_unique(m, "metric_", taken) for m in metrics]
    header = ["#", "replicate", *shown_params, *shown_metrics, "status"]
    with_errors = any(errors)
    if with_errors:
        header.append(error_column(params, metrics))
    rows = []
    for record, error in zip(records, errors):
        row = [
            str(record.get("index", "")),
            cell(record.get("replicate")),
            *(cell(record["params"].get(p)) for p in params),
            *(cell((record.get("metrics") or {}).get(m)) for m in metrics),
            record["status"],
        ]
        if with_errors:
            row.append(error)
        rows.append(row)
    return header, rows


def _unique(name: str, kind: str, taken: set[str]) -> str:
    """`name` as a header, or `<kind><name>` when it is taken, numbered where that is taken
    too; noted in `taken`."""
    shown = name if name not in taken else f"{kind}{name}"
    number = 2
    while shown in taken:
        shown, number = f"{kind}{name}_{number}", number + 1
    taken.add(shown)
    return shown


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Right-aligned columns, the error column (last, when present) left-aligned and cut."""
    left = header[-1] in ("error", "run_error")
    if left:
        rows = [[*row[:-1], _cut(row[-1], ERROR_WIDTH)] for row in rows]
    widths = [
        max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
        for i, h in enumerate(header)
    ]

    def line(cells: list[str]) -> str:
        out = [c.rjust(w) for c, w in zip(cells, widths)]
        if left:
            out[-1] = cells[-1].ljust(widths[-1])
        return "  ".join(out).rstrip()

    lines = [line(header), "  ".join("-" * w for w in widths)]
    lines.extend(line(row) for row in rows)
    return "\n".join(lines)


def html_table(header: list[str], rows: list[list[str]], caption: str) -> str:
    """An HTML table with a caption."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return (
        f"<table><caption style='text-align:left'>{html.escape(caption)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def grouped(
    frame: Any, statuses: list[str], keys: list[str], params: list[str], metrics: list[str]
) -> Any:
    """Mean and std of each numeric metric of the completed runs per group of parameter
    values, with the runs per group: `("runs", "completed")`, and one count per other status
    present (`("runs", "failed")`, ...)."""
    if not keys or not all(isinstance(k, str) for k in keys):
        raise ValidationError(
            f"group_by must be a parameter name or a list of them, got {keys!r}; "
            f"parameters: {params}"
        )
    import pandas as pd

    names = [k.removeprefix("param_") for k in keys]
    if len(frame) == 0:  # no runs, so no parameters either: no groups
        index = pd.MultiIndex.from_arrays([[] for _ in names], names=names)
        return pd.DataFrame(index=index)
    unknown = [k for k in keys if k.removeprefix("param_") not in params]
    if unknown:
        hint = closest(unknown[0].removeprefix("param_"), params)
        raise ValidationError(
            f"group_by names {unknown!r} that are not parameters{hint}; parameters: {params}"
        )
    columns = [f"param_{name}" for name in names]
    # values that are lists or dicts (layer sizes, say) group by their JSON text
    frame = frame.assign(**{c: _hashable(frame[c]) for c in columns})
    status = pd.Series(statuses, index=frame.index, name="status")
    counts = frame.groupby([*(frame[c] for c in columns), status], dropna=False).size()
    counts = counts.unstack("status")
    counts = counts.reindex(columns=_status_order(counts.columns)).fillna(0).astype(int)
    counts.columns = pd.MultiIndex.from_tuples([("runs", s) for s in counts.columns])
    completed = frame[(status == "completed").to_numpy()]
    numeric = [m for m in metrics if m in frame.columns and completed[m].dtype.kind in "biuf"]
    table = counts
    if numeric:
        stats = completed.groupby(columns, dropna=False)[numeric].agg(["mean", "std"])
        # a group without a completed run has no mean: NaN, shown blank
        table = stats.join(counts, how="outer")
    table.index.names = names
    return table


def _hashable(column: Any) -> Any:
    """`column` with each list or dict value as its JSON text (sorted keys), which groups."""
    if column.dtype != object or not column.map(lambda v: isinstance(v, (list, dict))).any():
        return column
    import json

    return column.map(lambda v: json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v)


def _status_order(present: Any) -> list[str]:
    order = ["completed", "failed", "interrupted", "cancelled"]
    return ["completed", *(s for s in order[1:] if s in present)] + [
        s for s in present if s not in order
    ]


def print_table(table: Any, *, title: str, file: Any = None) -> None:
    """Print a grouped DataFrame: a rich table when rich is installed, plain text otherwise."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title, file=file)
        print(table.to_string(float_format=lambda v: f"{v:.6g}"), file=file)
        return
    rich_table = Table(title=title)
    for name in table.index.names:
        rich_table.add_column(str(name), style="bold")
    for column in table.columns:
        label = " ".join(str(c) for c in column) if isinstance(column, tuple) else str(column)
        rich_table.add_column(label, justify="right")
    for key, row in table.iterrows():
        keys = key if isinstance(key, tuple) else (key,)
        rich_table.add_row(*(cell(k) for k in keys), *(cell(v) for v in row.tolist()))
    Console(file=file).print(rich_table)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def cell(value: Any) -> str:
    """A value as a table shows it: floats to 6 significant digits, None blank."""
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value:  # NaN: a count or metric a group does not have
            return ""
        return f"{value:.6g}"
    return str(value)


PROVENANCE_COLUMNS = (
    "code_hash",
    "git_commit",
    "git_dirty",
    "host",
    "worker",
    "slurm_job_id",
    "slurm_array_task_id",
)


def provenance_columns(record: dict[str, Any]) -> dict[str, Any]:
    """The `PROVENANCE_COLUMNS` of one record."""
    prov = record.get("provenance") or {}
    git = prov.get("git") or {}
    slurm = prov.get("slurm") or {}
    return {
        "code_hash": prov.get("code_hash"),
        "git_commit": git.get("commit"),
        "git_dirty": git.get("dirty"),
        "host": prov.get("host"),
        "worker": prov.get("worker"),
        "slurm_job_id": slurm.get("job_id"),
        "slurm_array_task_id": slurm.get("array_task_id"),
    }
