"""Run records: the one JSON document every run leaves in the store, and its statuses."""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import gc
import time
from collections.abc import Iterator
from enum import StrEnum
from typing import Any

from .errors import StoreFormatError
from .serializers import _json_default

RECORD_FORMAT = "metalab.run/1"
RECORD_COLUMNS = (
    "run_id",
    "experiment_id",
    "index",
    "replicate",
    "status",
    "duration",
    "started_at",
    "finished_at",
)
"""The record fields `Results.to_dataframe()` has a column for."""


class Status(StrEnum):
    """The final state of a run (records are only written final; claims mark running runs)."""

    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"


FINAL_STATUSES = frozenset(s.value for s in Status)


_second: list[Any] = [None, ""]  # the last whole second formatted, and its text


def utc_now() -> str:
    """Return the current UTC time as an ISO-8601 string with microseconds
    (`2026-01-01T12:00:00.000001+00:00`)."""
    now = time.time()
    second = int(now)
    micros = int((now - second) * 1_000_000)
    cached = _second
    if cached[0] != second:
        text = _dt.datetime.fromtimestamp(second, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        cached[0], cached[1] = second, text
    return f"{cached[1]}.{micros:06d}+00:00"


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while 100,000s of records (and the objects made
    from them) are built: they all stay alive, so no collection could free any of them, and
    each one would scan them all again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_MUTABLE = frozenset((dict, list))


def copied(value: Any) -> Any:
    """`value` as it is now, for keeping: a dict copied, deeply where it holds dicts or lists
    (JSON values: the containers are dicts and lists, everything else is immutable)."""
    if type(value) is dict:
        if _MUTABLE.isdisjoint(map(type, value.values())):
            return value.copy()
        return copy.deepcopy(value)
    return copy.deepcopy(value) if type(value) in _MUTABLE else value


_encoder: Any = None


def _encode(value: Any) -> str:
    global _encoder
    if _encoder is None:
        import json

        # no check for circular containers: a record holds JSON values only (checked as
        # they were captured); one that were circular would raise RecursionError instead
        _encoder = json.JSONEncoder(default=_json_default, ensure_ascii=False, check_circular=False)
    return _encoder.encode(value)


class SharedPart(dict):
    """A part of many records, made once and never changed: a process's provenance in one
    sweep. `encode_record` encodes it once, when it is made, not once per record.

    Changing it raises TypeError; a copy of it (and one unpickled) is a plain dict."""

    __slots__ = ("text",)

    def __init__(self, items: dict[str, Any]):
        super().__init__(items)
        self.text = _encode(items)
        """Its JSON encoding."""

    def _unchangeable(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            "this part is shared by the records of a sweep and cannot be changed; "
            "change a copy: dict(part)"
        )

    __setitem__ = __delitem__ = __ior__ = _unchangeable  # type: ignore[assignment]
    setdefault = pop = popitem = clear = update = _unchangeable  # type: ignore[assignment]

    def __reduce__(self) -> Any:
        return (dict, (dict(self),))

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return copy.deepcopy(dict(self), memo)


def encode_record(record: dict[str, Any]) -> bytes:
    """Encode a record as the UTF-8 JSON the stores write (and workers send to the driver).

    A record whose last field, `provenance`, is a `SharedPart` has that part's encoding
    spliced in: the same bytes, made without encoding the part again."""
    last = record.get("provenance") if isinstance(record, dict) else None
    if type(last) is SharedPart and len(record) > 1 and next(reversed(record)) == "provenance":
        rest = record.copy()
        del rest["provenance"]
        return f'{_encode(rest)[:-1]}, "provenance": {last.text}}}'.encode()
    return _encode(record).encode()


def decode_record(data: bytes) -> dict[str, Any]:
    """Decode what `encode_record` made."""
    import json

    return json.loads(data)


def check_format(record: dict[str, Any], where: str) -> dict[str, Any]:
    """Return `record` if this metalab reads its format; raise `StoreFormatError` otherwise."""
    fmt = record.get("format")
    if fmt != RECORD_FORMAT:
        raise StoreFormatError(
            f"{where} has record format {fmt!r}; this metalab reads {RECORD_FORMAT!r}"
        )
    return record


_SHAPES: tuple[tuple[str, tuple[type, ...], str], ...] = (
    ("experiment_id", (str,), "a string"),
    ("index", (int,), "a whole number"),
    ("case", (int,), "a whole number"),
    ("replicate", (int,), "a whole number"),
    ("attempt", (int,), "a whole number"),
    ("params", (dict,), "an object"),
    ("metrics", (dict,), "an object"),
    ("series", (dict,), "an object"),
    ("artifacts", (list,), "a list"),
    ("error", (dict, type(None)), "an object or null"),
    ("duration", (int, float, type(None)), "a number or null"),
    ("started_at", (str, type(None)), "a string or null"),
    ("finished_at", (str, type(None)), "a string or null"),
)
_STATUSES = frozenset(status.value for status in Status)


def shape_problem(record: dict[str, Any]) -> str | None:
    """What is wrong with the shape of a decoded record (a field of the wrong type, say, in
    a damaged or crafted store), or None when every field it has has its type."""
    if record.get("status") not in _STATUSES:
        return f"has status {record.get('status')!r}, not one of {sorted(_STATUSES)}"
    for name, types, what in _SHAPES:
        if name in record:
            value = record[name]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                return f"has {name} {_short(value)}, which should be {what}"
    artifacts = record.get("artifacts") or []
    if not all(isinstance(item, dict) for item in artifacts):
        return "has an artifact that is not an object"
    series = record.get("series") or {}
    if not all(isinstance(item, dict) for item in series.values()):
        return "has a series that is not an object"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class RunRecord(dict):
    """A run record: a dict with attribute access to its main fields."""

    @property
    def run_id(self) -> str:
        """The run's content hash."""
        return self["run_id"]

    @property
    def status(self) -> str:
        """`completed`, `failed`, `interrupted` or `cancelled`."""
        return self["status"]

    @property
    def metrics(self) -> dict[str, Any]:
        """The scalar metrics captured without a step."""
        return self.get("metrics", {})

    @property
    def error(self) -> dict[str, Any] | None:
        """`{"type", "message", "traceback"}` for failed runs, else None."""
        return self.get("error")
