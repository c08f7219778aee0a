"""Records and documents as JSON text for the database, and records read back from it.

A record is kept as the exact JSON text the file store would write (`json_text`); the
columns PostgreSQL queries (`params`, `metrics`, `series` as jsonb) take `sql_json`, which
jsonb accepts whatever the values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

from ...errors import StoreFormatError
from ...record import RECORD_FORMAT, check_format, paused_gc
from ...serializers import _json_default


def json_text(value: Any) -> str:
    """The JSON text the file store would write for `value`."""
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def sql_json(value: Any) -> str:
    """JSON text that PostgreSQL's jsonb accepts: non-finite floats become the strings
    "NaN", "Infinity" and "-Infinity", NUL characters become U+FFFD."""
    return json.dumps(_sql_safe(value), default=_json_default, ensure_ascii=False)


def _sql_safe(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _non_finite(value)
    if isinstance(value, int):
        # numbers beyond float8's range would make metric_value() fail for the whole query
        return value if value.bit_length() < 1024 else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, Mapping):
        return {_sql_safe(str(k)): _sql_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_sql_safe(v) for v in value]
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return _sql_safe(value.tolist())
    return value


def _non_finite(value: float) -> str:
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _parse_all(texts: Sequence[str]) -> list[Any]:
    """Parse JSON texts as one array, with the cyclic garbage collector paused.

    Parsing builds thousands of dicts that all stay alive; collecting while they are built
    scans them again and again and doubles the time it takes to load a large store. One
    array shares each key string among all the records of a batch.
    """
    with paused_gc():
        return cast(list[Any], json.loads(f"[{','.join(texts)}]"))


def parse_records(rows: Sequence[tuple[Any, ...]], where: str) -> list[dict[str, Any]]:
    """Return the records of `(run_id, JSON text)` rows, parsed in one go.
    StoreFormatError names the first record that is no JSON or has another format;
    `where` is `run record {} in store ...`, `{}` standing for the run id."""
    try:
        records = _parse_all([text for _, text in rows])
    except ValueError:
        records = []
    if len(records) != len(rows):
        for run_id, text in rows:  # name the record that does not parse
            try:
                json.loads(text)
            except ValueError as exc:
                raise StoreFormatError(
                    f"{where.format(repr(run_id))} is not valid JSON ({exc})"
                ) from exc
    for (run_id, _), record in zip(rows, records):
        if record.get("format") != RECORD_FORMAT:  # the message costs more than the check
            check_format(record, where.format(repr(run_id)))
    return records
