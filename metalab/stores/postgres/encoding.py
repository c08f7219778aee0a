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


_INT64 = 1 << 63
_EXPONENT_FROM = 1e16
"""Where `repr(float)` starts writing an exponent, which jsonb's numeric drops (`1e+16` reads
back as the integer 10000000000000000)."""


def table_columns(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """The columns a runs table reads of a run besides `params` and `metrics`: `replicate`,
    `duration`, `started_at`, `finished_at`, the `shape` of its parameters and of its metrics
    and `tabled`: whether these columns and the jsonb `params`
    and `metrics` give back exactly what the record holds. A record that is not tabled
    (a NaN metric, say, which jsonb keeps as the string "NaN") leaves them NULL: the table
    reads its record instead."""
    params, metrics = record.get("params") or {}, record.get("metrics") or {}
    replicate, duration = record.get("replicate"), record.get("duration")
    started, finished = record.get("started_at"), record.get("finished_at")
    tabled = (
        isinstance(record.get("experiment_id"), str)
        and _int64_or_none(record.get("index"))
        and _int64_or_none(replicate)
        and (duration is None or isinstance(duration, float))
        and _text_or_none(started)
        and _text_or_none(finished)
        and isinstance(params, dict)
        and isinstance(metrics, dict)
        and _jsonb_keeps(params)
        and _jsonb_keeps(metrics)
    )
    if not tabled:
        return (None, None, None, None, None, None, False)
    return (
        None if replicate is None else int(replicate),
        None if duration is None else float(duration),
        started,
        finished,
        shape(params),
        shape(metrics),
        True,
    )


def shape(values: Mapping[str, Any]) -> str:
    """The names of `values` in order, each with the kind of its value (`b`ool, `i`nt,
    `f`loat, `s`tring, `n`ull, or `j`son: a list or dict), as JSON text:
    `[["lr", "f"], ["optimizer", "s"]]`."""
    return json_text([[name, kind_of(value)] for name, value in values.items()])


def kind_of(value: Any) -> str:
    """The letter `shape` gives the kind of `value`."""
    if isinstance(value, bool):
        return "b"
    if isinstance(value, int):
        return "i"
    if isinstance(value, float):
        return "f"
    if isinstance(value, str):
        return "s"
    return "n" if value is None else "j"


def _int64_or_none(value: Any) -> bool:
    if value is None:
        return True
    return isinstance(value, int) and not isinstance(value, bool) and -_INT64 <= value < _INT64


def _text_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and "\x00" not in value)


def _jsonb_keeps(value: Any) -> bool:
    """Whether jsonb keeps `value` so that its JSON text reads back as the same values, of the
    same types (keys of nested dicts aside, which jsonb sorts)."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, int):
        return value.bit_length() < 1024
    if isinstance(value, float):
        # -0.0: numeric has no negative zero
        return abs(value) < _EXPONENT_FROM and (value != 0 or math.copysign(1.0, value) > 0)
    if isinstance(value, dict):
        return all(
            isinstance(k, str) and "\x00" not in k and _jsonb_keeps(v) for k, v in value.items()
        )
    if isinstance(value, (list, tuple)):
        return all(map(_jsonb_keeps, value))
    return False


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
