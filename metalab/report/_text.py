"""The report's HTML text: headers, notes, failure groups, provenance, all escaped."""

from __future__ import annotations

import datetime as _dt
import html
from collections import Counter
from collections.abc import Iterable
from importlib import metadata
from typing import Any

from .._aggregate import COMPLETED
from . import limits
from ._runs import STATUS_COLORS, Runs


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def seconds_text(value: float) -> str:
    if value < 120:
        return f"{value:.3g} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def notes_html(notes: Iterable[str]) -> str:
    unique = list(dict.fromkeys(notes))
    return "".join(f'<p class="note">{escape(n)}</p>' for n in unique)


def code_text(prov: dict[str, Any]) -> str | None:
    code_hash = prov.get("code_hash")
    if code_hash is None:
        return None
    return f"{prov.get('operation', '?')} @ {str(code_hash)[:16]}"


def git_text(git: Any) -> str:
    if not isinstance(git, dict):
        return "not in a git work tree"
    dirty = " (dirty: uncommitted changes)" if git.get("dirty") else " (clean)"
    return f"{str(git.get('commit', '?'))[:12]}{dirty}"


def provenance_row(name: str, values: list[Any]) -> str:
    counts = Counter("" if v is None else str(v) for v in values)
    counts.pop("", None)
    if not counts:
        return f"<tr><td>{escape(name)}</td><td class='note'>not recorded</td></tr>"
    shown = counts.most_common(limits.MAX_LISTED)
    cells = "<br>".join(f"<code>{escape(v)}</code> ({n})" for v, n in shown)
    if len(counts) > limits.MAX_LISTED:
        cells += f"<br><span class='note'>and {len(counts) - limits.MAX_LISTED} more values</span>"
    distinct = f" <span class='note'>({len(counts)} distinct)</span>" if len(counts) > 1 else ""
    return f"<tr><td>{escape(name)}{distinct}</td><td>{cells}</td></tr>"


def traceback_text(traceback: str) -> str:
    """A stored traceback as shown: whole, or its first and last lines when very long."""
    lines = traceback.rstrip().splitlines()
    if len(lines) <= limits.TRACEBACK_LINES:
        return "\n".join(lines)
    head = limits.TRACEBACK_LINES // 10
    skipped = len(lines) - limits.TRACEBACK_LINES
    return "\n".join(
        [
            *lines[:head],
            f"... ({skipped} lines left out) ...",
            *lines[head - limits.TRACEBACK_LINES :],
        ]
    )


def error_text(record: dict[str, Any]) -> str:
    """`Type: message` of a run that did not complete ('' for a completed one)."""
    if record.get("status") == COMPLETED:
        return ""
    error = record.get("error") or {}
    text = f"{error.get('type') or record.get('status')}: {error.get('message') or ''}"
    text = " ".join(text.split()) if "\n" in text else text
    return text if len(text) <= limits.MAX_ERROR_CHARS else text[: limits.MAX_ERROR_CHARS] + " ..."


def badges(runs: Runs) -> str:
    return "".join(
        f'<span class="badge" style="background:{STATUS_COLORS.get(s, "#555")}">'
        f"{escape(s)}: {n}</span>"
        for s, n in runs.status_counts().items()
    )


def generated() -> str:
    """`Generated <now> by metalab <version>.`, the last line of a page's head."""
    try:
        version = metadata.version("metalab")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        version = "(not installed)"
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    return f'<p class="note">Generated {escape(now)} by metalab {escape(version)}.</p>'


def overview(title: str, parts: list[Runs]) -> str:
    """The head of a page of several experiment ids: what they are, then a section each."""
    items = "".join(
        f"<li><b>{escape(part.experiments[0])}</b>: {plural(part.count, 'run')} {badges(part)}</li>"
        for part in parts
    )
    locator = parts[0].locator
    return (
        f"<h1>{escape(title)}</h1><p>These runs belong to {len(parts)} experiment ids (versions "
        "of an experiment are told apart by their id). Each has its own section below, the "
        f"one with the latest finished run first:</p><ul>{items}</ul>"
        + (f"<p><b>Store:</b> <code>{escape(locator)}</code></p>" if locator else "")
        + generated()
    )


def failure_group(error_type: str, message: str, records: list[dict[str, Any]]) -> str:
    statuses = Counter(str(r.get("status")) for r in records)
    indices = [str(r.get("index")) for r in records[: limits.MAX_LISTED]]
    more = (
        f" and {len(records) - limits.MAX_LISTED} more" if len(records) > limits.MAX_LISTED else ""
    )
    short = message if len(message) <= 500 else message[:500] + " ..."
    excerpt = traceback_text(str((records[0].get("error") or {}).get("traceback") or ""))
    body = f"<pre>{escape(excerpt)}</pre>" if excerpt else "<p class='note'>no traceback</p>"
    status_text = ", ".join(f"{s} {n}" for s, n in statuses.items())
    causes = Counter(c for r in records if (c := (r.get("error") or {}).get("cause")))
    if causes:  # lost to the scheduler: say why
        status_text += "; cause " + ", ".join(f"{c} {n}" for c, n in causes.items())
    return (
        f"<details open><summary><b>{escape(error_type)}</b>: {escape(short)} "
        f"&mdash; {plural(len(records), 'run')} ({escape(status_text)})</summary>"
        f"<p>Runs (index): {escape(', '.join(indices))}{more}; first run id "
        f"<code>{escape(records[0].get('run_id', ''))}</code></p>{body}</details>"
    )
