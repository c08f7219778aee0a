"""What a sweep says about runs that did not complete: a count and the first distinct errors."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

from ..errors import RunsFailedWarning
from .tables import error_text

SHOWN_ERRORS = 3
"""Distinct errors a failure summary names; `results.failed` lists every failed run."""
MESSAGE_WIDTH = 200


def failure_summary(records: Iterable[dict[str, Any]], total: int) -> str | None:
    """`"2 of 40 runs did not complete ..."` naming the first distinct errors (type and
    message), or None when no run failed or was interrupted: runs cancelled, or interrupted by
    their sweep's cancellation, are the user's doing."""
    counts = {"failed": 0, "interrupted": 0}
    errors: dict[str, int] = {}
    for record in records:
        status = record.get("status")
        if status not in counts or _cancelled(record):
            continue
        counts[status] += 1
        text = error_text(record.get("error")) or f"{status} (no error recorded)"
        if len(text) > MESSAGE_WIDTH:
            text = text[: MESSAGE_WIDTH - 1] + "…"
        errors[text] = errors.get(text, 0) + 1
    if not errors:
        return None
    shown = [
        text + (f" ({count} runs)" if count > 1 else "")
        for text, count in list(errors.items())[:SHOWN_ERRORS]
    ]
    more = len(errors) - len(shown)
    tail = f"; and {more} other distinct error(s)" if more > 0 else ""
    what = " and ".join(
        f"{n} {'was' if n == 1 else 'were'} {status}"
        if status == "interrupted"
        else f"{n} {status}"
        for status, n in counts.items()
        if n
    )
    return (
        f"{sum(counts.values())} of {total} run{'s' if total != 1 else ''} did not complete "
        f"({what}): {'; '.join(shown)}{tail}. results.failed lists them "
        "(results.failed.table() shows each error, run.error['traceback'] its traceback)"
    )


def _cancelled(record: dict[str, Any]) -> bool:
    """Whether a run was interrupted because its sweep was cancelled (the user's doing)."""
    error = record.get("error") or {}
    return str(error.get("type", "")).rsplit(".", 1)[-1] == "RunCancelled"


def warn_failed(records: Iterable[dict[str, Any]], total: int, stacklevel: int) -> None:
    """Warn with `RunsFailedWarning` when runs failed (see `failure_summary`)."""
    summary = failure_summary(records, total)
    if summary is not None:
        warnings.warn(RunsFailedWarning(summary), stacklevel=stacklevel + 1)
