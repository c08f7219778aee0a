"""Columns of a runs table (`metalab.runs_table`) from what PostgreSQL sends, in bulk.

A parameter or metric comes as the JSON text of each run's value (null where the run lacks
it) and becomes the column `runs_table` makes of the values: bool, int64, float64 or string
when they are all of that kind, else JSON text. Plain columns are decoded by pyarrow compute,
never a Python value per run; only a column whose values break that rule's fast cases (a
run read from its record with a value of another type, say) is built from Python values, by
`runs_table` itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ... import runs_table
from ...errors import require
from ...runs_table import JSON, KIND, MISSING, NAME

EXACT_INT = 1 << 53
"""The largest integer a float64 column holds exactly (pyarrow refuses larger ones)."""
_INT64 = 1 << 63
_dumps = json.JSONEncoder(allow_nan=True, separators=(",", ":"), default=repr).encode

Decoded = tuple[Any, bool]
"""An Arrow array and whether it holds JSON text."""


def decoded(pa: Any, pc: Any, texts: Any) -> Decoded | None:
    """The values of `texts` (JSON texts, null where a run lacks the value) as `runs_table`
    types them, or None when every value is null."""
    if texts.null_count == len(texts):
        return None
    # the first character of a JSON text says its kind
    firsts = set(pc.unique(pc.utf8_slice_codeunits(texts, 0, 1)).to_pylist()) - {None}
    if firsts == {'"'}:
        return _strings(pa, pc, texts), False
    if firsts <= {"t", "f"}:
        return pc.equal(texts, "true"), False
    if firsts <= set("-0123456789"):
        numbers = _numbers(pa, pc, texts)
        if numbers is not None:
            return numbers
    return texts, True


def decoded_text(pa: Any, pc: Any, texts: Any, kinds: set[str]) -> Decoded | None:
    """The values of `texts` (each as text, a string without quotes: what `->>` gives, null
    where a run lacks the value), all of `kinds` (`encoding.shape`'s letters; bools, strings,
    or ints and floats), as `runs_table` types them, or None when every value is null."""
    if texts.null_count == len(texts):
        return None
    if kinds <= {"s"}:
        return texts, False
    if kinds <= {"b"}:
        return pc.equal(texts, "true"), False
    if "i" not in kinds:
        return pc.cast(texts, pa.float64()), False
    return _numbers(pa, pc, texts) or (texts, True)


def _numbers(pa: Any, pc: Any, texts: Any) -> Decoded | None:
    """Numbers (as jsonb writes them: a float with a point, never an exponent; an int
    without) as int64 or float64, or None when a float64 column could not hold an int
    exactly (JSON keeps such a column: `runs_table` does so too)."""
    points = pc.match_substring(texts, ".")
    if not pc.any(points).as_py():
        try:
            return pc.cast(texts, pa.int64()), False
        except pa.ArrowInvalid:  # an int beyond 64 bits
            return texts, True
    numbers = pc.cast(texts, pa.float64())
    wide = pc.and_(pc.greater(pc.abs(numbers), EXACT_INT), pc.invert(points))
    return None if pc.any(wide).as_py() else (numbers, False)


def _strings(pa: Any, pc: Any, texts: Any) -> Any:
    inner = pc.utf8_slice_codeunits(texts, 1, -1)
    escaped = pc.fill_null(pc.match_substring(texts, "\\"), False)
    if not pc.any(escaped).as_py():
        return inner
    values = [json.loads(text) for text in pc.filter(texts, escaped).to_pylist()]
    if isinstance(inner, pa.ChunkedArray):
        inner, escaped = inner.combine_chunks(), escaped.combine_chunks()
    return pc.replace_with_mask(inner, escaped, pa.array(values, type=pa.string()))


def field_and_array(
    pa: Any,
    pc: Any,
    column: str,
    kind: bytes,
    name: str,
    fast: Decoded | None,
    length: int,
    patch: Mapping[int, Any] | None = None,
) -> tuple[Any, Any] | None:
    """The field and array of a column: `fast` (None: all null), with the values at the
    positions of `patch` (Python values, `MISSING` where a run lacks one) put in. None for a
    parameter or metric no run has; a record column no run has is of its type, all null."""
    if patch:
        if fast is not None:  # what the record says replaces what the columns say
            mask = _mask(pa, patch, length)
            fast = pc.if_else(mask, pa.scalar(None, fast[0].type), fast[0]), fast[1]
        try:
            fast = _patched(pa, pc, fast, length, patch, kind)
        except _Mixed:
            return _from_values(pa, column, kind, name, fast, length, patch)
    if fast is None or fast[0].null_count == length:
        if kind != b"record":
            return None
        type_ = runs_table.record_type(name)  # all null, of its type, as runs_table makes it
        return pa.field(column, type_, metadata={KIND: kind, NAME: name.encode()}), pa.nulls(
            length, type_
        )
    array, is_json = fast
    metadata = {KIND: kind, NAME: name.encode()}
    if is_json:
        metadata[JSON] = b"1"
    return pa.field(column, array.type, metadata=metadata), array


class _Mixed(Exception):
    """The values put in do not fit the column's type: build it from its values."""


def _patched(
    pa: Any, pc: Any, fast: Decoded | None, length: int, patch: Mapping[int, Any], kind: bytes
) -> Decoded | None:
    present = {
        i: v for i, v in patch.items() if v is not MISSING and not (v is None and kind == b"record")
    }
    if not present:
        return fast
    if fast is None or fast[0].null_count == length:
        raise _Mixed
    array, is_json = fast
    values = list(present.values())
    if is_json:
        values = [_dumps(v) for v in values]
    elif not _fits(pa, array.type, values):
        raise _Mixed
    elif array.type == pa.float64():
        values = [float(v) for v in values]
    replaced = pc.replace_with_mask(
        array, _mask(pa, present, length), pa.array(values, type=array.type)
    )
    return replaced, is_json


def _mask(pa: Any, positions: Mapping[int, Any], length: int) -> Any:
    np = require("numpy", "pandas", "a table of runs")
    mask = np.zeros(length, dtype=bool)
    mask[np.fromiter(positions, dtype=np.int64, count=len(positions))] = True
    return pa.array(mask, type=pa.bool_())


def _fits(pa: Any, type_: Any, values: list[Any]) -> bool:
    """Whether `values` keep a column of `type_` (holding values already) of that type."""
    kinds = set(map(type, values))
    if type_ == pa.int64():
        return kinds == {int} and all(-_INT64 <= v < _INT64 for v in values)
    if type_ == pa.float64():
        return kinds <= {int, float} and all(
            type(v) is float or -EXACT_INT <= v <= EXACT_INT for v in values
        )
    if type_ == pa.string():
        return kinds == {str}
    return type_ == pa.bool_() and kinds == {bool}


def _from_values(
    pa: Any,
    column: str,
    kind: bytes,
    name: str,
    fast: Decoded | None,
    length: int,
    patch: Mapping[int, Any],
) -> tuple[Any, Any] | None:
    """The column built by `runs_table` from each run's Python value."""
    values: list[Any] = [MISSING] * length
    if fast is not None:
        array, is_json = fast
        loads = json.loads
        for i, value in enumerate(array.to_pylist()):
            if value is not None:
                values[i] = loads(value) if is_json else value
    for i, value in patch.items():
        values[i] = value
    if kind != b"record" and all(v is MISSING for v in values):
        return None
    return runs_table.column_of(pa, column, kind, name, values)


def column_name(kind: str, name: str, taken: set[str]) -> str:
    """The column of parameter or metric `name` (`kind`: `params` or `metrics`) in a runs
    table whose columns are `taken` so far."""
    return runs_table.column_name(kind, name, taken)
