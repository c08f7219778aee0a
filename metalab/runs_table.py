"""The columnar table of runs: one row per run, what a results table shows, as Apache Arrow.

Columns, named as `Results.to_dataframe()` names them:

* the record columns (`metalab.record.RECORD_COLUMNS`): `run_id`, `experiment_id`, `index`,
  `replicate`, `status`, `duration`, `started_at`, `finished_at`;
* `param_<name>`, one per parameter;
* one per scalar metric, named after it (`metric_<name>` where a record or parameter column
  has that name);
* columns a store keeps for its own bookkeeping, named `_<name>` (a file store's record file
  identity, say), which no frame shows;
* `_series`, where a store keeps it: each run's stepped metrics (`{name: {"steps": [...],
  "values": [...]}}`) as JSON text, null for a run without any; `Results.metric_series()`
  reads it instead of every record.

Each field's metadata says what it holds (`metalab`: `record`, `param`, `metric` or
`store`; `name`: the parameter's or metric's own name). A value a run lacks is null. A column
whose values are not all of one plain type (bool, int, float, str), or where some run has the
value None, holds each value as JSON text (field metadata `json`), so that nothing is lost or
changed on the way: a frame gets the values back as a DataFrame built from them would.

A table read from a file is checked (`checked`) before anything of it is used: a table that
is not one is never trusted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import arrow_arrays
from .errors import require
from .record import RECORD_COLUMNS

SERIES = "_series"
"""The column of each run's stepped metrics, as JSON text (null for none)."""
KIND = b"metalab"
NAME = b"name"
JSON = b"json"
TABLE_FORMAT = b"metalab.runs/1"
"""Schema metadata `metalab.table` of every runs table (a change of columns changes it)."""

_KINDS = {"params": b"param", "metrics": b"metric"}
_RECORD_TYPES = {
    "run_id": "string",
    "experiment_id": "string",
    "index": "int64",
    "replicate": "int64",
    "status": "string",
    "duration": "float64",
    "started_at": "string",
    "finished_at": "string",
}
"""The Arrow type each record column has (or null, or JSON text when its values are odd)."""


def record_type(name: str) -> Any:
    """The Arrow type of record column `name` (null for a name that is not one)."""
    pa = _pa()
    type_name = _RECORD_TYPES.get(name)
    return getattr(pa, type_name)() if type_name else pa.null()


Row = dict[str, Any]
"""A run as tables read it: its record columns, `params` and `metrics`."""


class _Missing:
    """The value of a parameter or metric a run does not have."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def available() -> bool:
    """Whether pyarrow and pandas are installed (the columnar table needs both). Imports
    neither: a sweep's driver that never reads a table does without them."""
    from importlib.util import find_spec

    return find_spec("pyarrow") is not None and find_spec("pandas") is not None


def _pa():
    return require("pyarrow", "pandas", "the columnar table of runs")


# ---------------------------------------------------------------- building
def build(
    record_columns: Mapping[str, Sequence[Any]],
    params: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
    metrics: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
    extra: Mapping[str, tuple[str, Sequence[Any]]] | None = None,
) -> Any:
    """A runs table from columns: each record column's values, each run's params and metrics
    (a dict per run, or a dict of columns: a value per run by name, every run having each),
    and `extra` store columns (`name -> (arrow type name, values)`)."""
    pa = _pa()
    fields, arrays = [], []
    for name in RECORD_COLUMNS:
        values = record_columns.get(name)
        values = [None] * _count(record_columns, params) if values is None else values
        field, array = column_of(pa, name, b"record", name, list(values))
        fields.append(field)
        arrays.append(array)
    taken = set(RECORD_COLUMNS)
    for kind, mappings in (("params", params), ("metrics", metrics)):
        if isinstance(mappings, Mapping):  # already by name: {name: a value per run}
            by_name = mappings
        else:
            by_name = {
                key: [m.get(key, MISSING) if m else MISSING for m in mappings]
                for key in _names_in(mappings)
            }
        for key, values in by_name.items():
            column = column_name(kind, key, taken)
            taken.add(column)
            field, array = column_of(pa, column, _KINDS[kind], key, list(values))
            fields.append(field)
            arrays.append(array)
    for name, (type_name, values) in (extra or {}).items():
        own = b"series" if name == SERIES else b"store"
        fields.append(pa.field(name, getattr(pa, type_name)(), metadata={KIND: own}))
        arrays.append(arrow_arrays.array(values, fields[-1].type))
    schema = pa.schema(fields, metadata={b"metalab.table": TABLE_FORMAT})
    return pa.Table.from_arrays(arrays, schema=schema)


def _count(record_columns: Mapping[str, Sequence[Any]], params: Any) -> int:
    for values in record_columns.values():
        return len(values)
    if isinstance(params, Mapping):
        return len(next(iter(params.values()), ()))
    return len(params)


def from_rows(rows: Sequence[Row], extra: Mapping[str, tuple[str, Sequence[Any]]] | None = None):
    """A runs table of rows (dicts with the record columns, `params` and `metrics`)."""
    columns = {name: [row.get(name) for row in rows] for name in RECORD_COLUMNS}
    return build(
        columns,
        [row.get("params") or {} for row in rows],
        [row.get("metrics") or {} for row in rows],
        extra,
    )


def empty() -> Any:
    """A runs table of no runs."""
    return build({}, [], [])


def _names_in(mappings: Iterable[Mapping[str, Any] | None]) -> list[str]:
    # runs of a sweep share their key sets: collect each distinct set once
    sets = dict.fromkeys(tuple(m) if m else () for m in mappings)
    return list(dict.fromkeys(name for names in sets for name in names))


def column_name(kind: str, key: str, taken: set[str]) -> str:
    """`param_<key>`, or a metric's own name unless a column has it (or it starts with `_`,
    as store columns do): then `metric_<key>`."""
    if kind == "params":
        return f"param_{key}"
    name = key
    while name in taken or name.startswith("_"):
        name = f"metric_{name}"
    return name


_PLAIN = {bool: "bool_", int: "int64", float: "float64", str: "string"}


def column_of(pa: Any, column: str, kind: bytes, name: str, values: list[Any]) -> tuple[Any, Any]:
    """The field and array of one column: a plain type where the values allow it (missing
    values null), else JSON text."""
    if kind == b"record":  # a record field None or absent: the same
        values = [MISSING if v is None else v for v in values]
    types = set(map(type, values))
    missing = _Missing in types
    types.discard(_Missing)
    metadata = {KIND: kind, NAME: name.encode()}
    plain = None
    if types <= {bool} or types <= {str} or types <= {int, float}:
        plain = _PLAIN[float] if float in types else _PLAIN[next(iter(types))] if types else None
    if plain == "int64" and kind == b"record" and _RECORD_TYPES.get(name) == "float64":
        plain = "float64"  # a duration of whole seconds is still a float column
    if plain == "float64" and int in types and not _exact_as_floats(values):
        plain = None  # an int a float cannot hold exactly: JSON keeps it
    if not types and kind == b"record":
        plain = _RECORD_TYPES.get(name)  # no value (no run, or none has it): still typed
    if plain is not None or not types:
        plain_values = [None if v is MISSING else v for v in values] if missing else values
        try:
            type_ = getattr(pa, plain)() if plain else pa.null()
            array = arrow_arrays.array(plain_values, type_)
            return pa.field(column, type_, metadata=metadata), array
        except (OverflowError, pa.ArrowInvalid):  # an int beyond 64 bits: JSON keeps it
            pass
    metadata[JSON] = b"1"
    dumps = json.JSONEncoder(allow_nan=True, separators=(",", ":"), default=_fallback).encode
    texts = [None if v is MISSING else dumps(v) for v in values]
    return pa.field(column, pa.string(), metadata=metadata), arrow_arrays.strings(texts)


def _exact_as_floats(values: list[Any]) -> bool:
    """Whether every int among `values` is one a float holds exactly."""
    return all(-(2**53) <= v <= 2**53 for v in values if type(v) is int)


def _fallback(value: Any) -> Any:
    return repr(value)


# ---------------------------------------------------------------- combining
def concat(tables: Sequence[Any]) -> Any:
    """One table of the rows of `tables`, in order; a column two tables hold with different
    types becomes JSON text in both (null-typed columns take the other's type)."""
    pa = _pa()
    tables = [t for t in tables if t is not None]
    if not tables:
        return empty()
    if len(tables) == 1:
        return tables[0]
    fields: dict[str, Any] = {}
    for table in tables:
        for field in table.schema:
            seen = fields.get(field.name)
            if seen is None or seen.type == pa.null():
                fields[field.name] = field
            elif field.type != pa.null() and not _same_encoding(seen, field):
                fields[field.name] = _widened(pa, seen, field)
    schema = pa.schema(list(fields.values()), metadata={b"metalab.table": TABLE_FORMAT})
    return pa.concat_tables([_conformed(pa, table, schema) for table in tables])


def _same_encoding(a: Any, b: Any) -> bool:
    return a.type == b.type and (a.metadata or {}).get(JSON) == (b.metadata or {}).get(JSON)


def _widened(pa: Any, a: Any, b: Any) -> Any:
    if {a.type, b.type} == {pa.int64(), pa.float64()} and not _is_json(a) and not _is_json(b):
        return pa.field(a.name, pa.float64(), metadata=a.metadata)
    return pa.field(a.name, pa.string(), metadata={**(a.metadata or {}), JSON: b"1"})


def _conformed(pa: Any, table: Any, schema: Any) -> Any:
    arrays = []
    for field in schema:
        if field.name not in table.column_names:
            arrays.append(pa.nulls(table.num_rows, type=field.type))
            continue
        column = table.column(field.name)
        own = table.schema.field(field.name)
        if _same_encoding(own, field):
            arrays.append(column)
        elif own.type == pa.null():
            arrays.append(pa.nulls(table.num_rows, type=field.type))
        elif _is_json(field) and not _is_json(own):
            dumps = json.JSONEncoder(allow_nan=True, separators=(",", ":")).encode
            texts = [None if v is None else dumps(v) for v in column.to_pylist()]
            arrays.append(arrow_arrays.strings(texts))
        else:
            arrays.append(column.cast(field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _is_json(field: Any) -> bool:
    return (field.metadata or {}).get(JSON) == b"1"


# ---------------------------------------------------------------- checking
def checked(table: Any) -> Any | None:
    """`table` when it is a runs table this metalab can read (from any file: the record
    columns of their types, every other column described), else None."""
    if not readable_schema(table.schema) or table.column("run_id").null_count:
        return None
    return table


def readable_schema(schema: Any) -> bool:
    """Whether `schema` (an Arrow schema) is a runs table's that this metalab can read."""
    pa = _pa()
    if (schema.metadata or {}).get(b"metalab.table") != TABLE_FORMAT:
        return False
    names = schema.names
    if len(set(names)) != len(names):
        return False
    for name, type_name in _RECORD_TYPES.items():
        if name not in names:
            return False
        field = schema.field(name)
        if field.type not in (getattr(pa, type_name)(), pa.null()) and not (
            _is_json(field) and field.type == pa.string()
        ):
            return False
    for field in schema:
        kind = (field.metadata or {}).get(KIND)
        if kind not in (b"record", b"param", b"metric", b"store", b"series"):
            return False
        if kind == b"series" and (field.name != SERIES or field.type != pa.string()):
            return False
        if kind in (b"param", b"metric") and not (field.metadata or {}).get(NAME):
            return False
        if _is_json(field) and field.type != pa.string():
            return False
    return True


# ---------------------------------------------------------------- reading
def fields_of(table: Any, kind: str) -> list[Any]:
    """The fields of `kind` (`params` or `metrics`) that some run of `table` has."""
    want = _KINDS[kind]
    return [
        field
        for field in table.schema
        if (field.metadata or {}).get(KIND) == want
        and table.column(field.name).null_count < table.num_rows
    ]


def in_order_of_appearance(table: Any) -> Any:
    """`table` with its parameter and metric columns in the order the runs, in row order,
    first have them (how a table built from the records in order names them); a table put
    together from parts (shards, journals) otherwise orders them by part."""
    kinds = set(_KINDS.values())
    firsts = {}
    for position, field in enumerate(table.schema):
        if (field.metadata or {}).get(KIND) in kinds:
            firsts[field.name] = (_first_valid(table.column(position)), position)
    ordered = sorted(firsts, key=firsts.__getitem__)
    if ordered == [name for name in table.schema.names if name in firsts]:
        return table
    slots = iter(ordered)
    return table.select([next(slots) if name in firsts else name for name in table.schema.names])


def _first_valid(column: Any) -> int:
    """The row of the first value of `column` (its length when it has none): no per-row
    Python, and none of pyarrow.compute's helpers that import pandas."""
    import numpy as np

    offset = 0
    for chunk in column.chunks:
        if chunk.null_count == 0 and len(chunk):
            return offset
        if chunk.null_count < len(chunk):
            valid = chunk.is_valid().to_numpy(zero_copy_only=False)
            return offset + int(np.argmax(valid))
        offset += len(chunk)
    return offset


def names(table: Any, kind: str) -> list[str]:
    """The names of the parameters or metrics (`kind`) some run of `table` has."""
    return [field.metadata[NAME].decode() for field in fields_of(table, kind)]


def field_named(table: Any, kind: str, name: str) -> Any | None:
    """The field of parameter or metric `name`, or None when no run has it."""
    for field in fields_of(table, kind):
        if field.metadata[NAME].decode() == name:
            return field
    return None


def values(table: Any, kind: str, name: str) -> list[Any]:
    """Each run's value of parameter or metric `name` (`MISSING` where a run lacks it)."""
    field = field_named(table, kind, name)
    if field is None:
        return [MISSING] * table.num_rows
    return _python(table.column(field.name).to_pylist(), field, MISSING)


def _python(values: list[Any], field: Any, missing: Any) -> list[Any]:
    if _is_json(field):
        loads = json.loads
        return [missing if v is None else loads(v) for v in values]
    return [missing if v is None else v for v in values]


def record_column(table: Any, name: str) -> list[Any]:
    """Each run's value of a record column (None where it has none)."""
    return _python(table.column(name).to_pylist(), table.schema.field(name), None)


def rows(table: Any) -> list[Row]:
    """Every run of `table` as a row: its record columns, `params` and `metrics`."""
    out: list[Row] = [{} for _ in range(table.num_rows)]
    for name in RECORD_COLUMNS:
        for row, value in zip(out, record_column(table, name)):
            row[name] = value
    for row in out:
        row["params"], row["metrics"] = {}, {}
    for kind in ("params", "metrics"):
        for field in fields_of(table, kind):
            key = field.metadata[NAME].decode()
            column = _python(table.column(field.name).to_pylist(), field, MISSING)
            for row, value in zip(out, column):
                if value is not MISSING:
                    row[kind][key] = value
    return out


def frame(
    table: Any,
    *,
    include_record: bool = True,
    include_params: bool = True,
    include_metrics: bool = True,
) -> Any:
    """The table as `Results.to_dataframe()` shows it (without store columns)."""
    pd = require("pandas", "pandas", "Results.to_dataframe()")
    keep = []
    if include_record:
        keep += list(RECORD_COLUMNS)
    if include_params:
        keep += [f.name for f in fields_of(table, "params")]
    if include_metrics:
        keep += [f.name for f in fields_of(table, "metrics")]
    selected = table.select(keep)
    out = selected.to_pandas()
    for field in selected.schema:
        if _is_json(field):
            values = _python(selected.column(field.name).to_pylist(), field, None)
            # what a DataFrame built from the values would hold (NaN for a missing number)
            out[field.name] = pd.Series(values, index=out.index)
    return out


def without_store_columns(table: Any, *, series: bool = True) -> Any:
    """`table` without the columns its store keeps for itself (and without `_series`, unless
    `series`)."""
    dropped = (b"store",) if series else (b"store", b"series")
    keep = [f.name for f in table.schema if (f.metadata or {}).get(KIND) not in dropped]
    return table.select(keep) if len(keep) != table.num_columns else table


def series_texts(records: Sequence[Any]) -> list[str | None]:
    """The `_series` column of records: each one's stepped metrics as JSON, or None."""
    dumps = json.JSONEncoder(allow_nan=True, separators=(",", ":"), default=_fallback).encode
    return [dumps(series) if (series := r.get("series")) else None for r in records]


def series_of(table: Any) -> list[dict[str, Any] | None] | None:
    """Each run's stepped metrics (None for a run without any), from the `_series` column;
    None when the table has no such column."""
    if SERIES not in table.column_names:
        return None
    loads = json.loads
    return [None if v is None else loads(v) for v in table.column(SERIES).to_pylist()]
