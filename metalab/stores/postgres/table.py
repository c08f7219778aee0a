"""`PostgresStore.query_table`: the runs a query selects as a runs table (`metalab.runs_table`),
read with one `COPY` and decoded column by column, never a record per run.

PostgreSQL sends, for each run, its record columns and the JSON text of each parameter and
metric (`params -> name`), as CSV that pyarrow parses in bulk; `columns` then types each
column as `runs_table` would. The names to select come from a sample of runs. Each run's own
names (`param_keys`, `metric_keys`: JSON lists in the record's order) say which names the
sample missed (read by a second `COPY`) and the order of the columns: a column comes where
the first run holding it has it. A run whose columns do not give back exactly what its record
holds (`tabled` false: a NaN metric, say, or a run written before these columns existed) is
read from its record. Everything is read in one snapshot of the database.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from ...errors import require
from ...record import RECORD_COLUMNS
from ...runs_table import MISSING, TABLE_FORMAT
from .columns import column_name as _column_name
from .columns import decoded, field_and_array
from .query import ORDER

SAMPLE = 100
"""Runs whose names make the first guess of the columns to select."""
_RECORD_SQL = {
    "run_id": "run_id",
    "experiment_id": "experiment_id",
    "index": "run_index",
    "replicate": "replicate",
    "status": "status",
    "duration": "duration",
    "started_at": "started_at",
    "finished_at": "finished_at",
}
_SELECTED = (*RECORD_COLUMNS, "_tabled", "_params", "_metrics")
_KINDS = (("params", b"param", "_params"), ("metrics", b"metric", "_metrics"))
_BLOCK = 1 << 22

Records = Callable[[psycopg.Connection[Any], list[str]], dict[str, dict[str, Any]]]
"""Reads the records of run ids (those that exist) on a connection, by run id."""


def read_table(
    conn: psycopg.Connection[Any],
    schema: str,
    experiment_id: str | None,
    where: sql.Composable,
    args: list[Any],
    records: Records,
) -> Any:
    """The runs of `{schema}.runs` matching `where` (its arguments `args`), in the order of
    `query_records`, as a runs table; run in a snapshot (`Database.snapshot`), so that every
    statement sees the same runs. `records` reads the runs that are not tabled."""
    pa, pc = (
        require("pyarrow", "pandas", "a table of runs"),
        require("pyarrow.compute", "pandas", "a table of runs"),
    )
    conn.execute("SET LOCAL jit = off")  # compiling costs more than it saves on a scan
    names = _sampled_names(conn, schema, experiment_id)
    raw = _copy(pa, conn, schema, where, args, names)
    length = raw.num_rows
    untabled = _untabled(pa, pc, raw)
    own = {kind: _key_lists(pa, pc, raw.column(col)) for kind, _, col in _KINDS}
    run_ids = pc.take(raw.column("run_id"), pa.array(untabled, type=pa.int64())).to_pylist()
    found = records(conn, run_ids) if untabled else {}
    rows = {i: found[run_id] for i, run_id in zip(untabled, run_ids)}
    ordered = {kind: _ordered_names(own[kind], rows, kind) for kind, _, _ in _KINDS}
    texts = _texts(raw, names)
    missed = {k: [n for n in ordered[k] if (k, n) not in texts] for k, _, _ in _KINDS}
    if any(missed.values()):
        texts.update(_texts(_copy(pa, conn, schema, where, args, missed), missed))
    return _assemble(pa, pc, raw, texts, ordered, rows, length)


def _sampled_names(
    conn: psycopg.Connection[Any], schema: str, experiment_id: str | None
) -> dict[str, list[str]]:
    condition = sql.SQL("tabled" if experiment_id is None else "tabled AND experiment_id = %s")
    query = sql.SQL(
        "SELECT DISTINCT param_keys, metric_keys FROM (SELECT param_keys, metric_keys"
        " FROM {schema}.runs WHERE {condition} LIMIT {limit}) AS sample"
    ).format(schema=sql.Identifier(schema), condition=condition, limit=sql.Literal(SAMPLE))
    rows = conn.execute(query, [] if experiment_id is None else [experiment_id]).fetchall()
    names: dict[str, dict[str, None]] = {"params": {}, "metrics": {}}
    for param_keys, metric_keys in rows:
        names["params"].update(dict.fromkeys(json.loads(param_keys)))
        names["metrics"].update(dict.fromkeys(json.loads(metric_keys)))
    return {kind: list(keys) for kind, keys in names.items()}


def _copy(
    pa: Any,
    conn: psycopg.Connection[Any],
    schema: str,
    where: sql.Composable,
    args: list[Any],
    names: dict[str, list[str]],
) -> Any:
    """The runs' record columns and the JSON text of each of `names`, parsed from CSV."""
    values = [
        sql.SQL("{column} -> %s").format(column=sql.Identifier(kind))
        for kind, _, _ in _KINDS
        for _ in names[kind]
    ]
    selected = [sql.Identifier(_RECORD_SQL[c]) for c in RECORD_COLUMNS] + [
        sql.Identifier(c) for c in ("tabled", "param_keys", "metric_keys")
    ]
    query = sql.SQL(
        "COPY (SELECT {selected} FROM {schema}.runs WHERE {where} {order}) TO STDOUT (FORMAT csv)"
    ).format(
        selected=sql.SQL(", ").join(selected + values),
        schema=sql.Identifier(schema),
        where=where,
        order=ORDER,
    )
    data = bytearray()
    with conn.cursor().copy(query, [*names["params"], *names["metrics"], *args]) as copy:
        for chunk in copy:
            data += chunk
    columns = [*_SELECTED, *(f"{kind}:{n}" for kind, _, _ in _KINDS for n in names[kind])]
    return _parsed_csv(pa, bytes(data), columns)


def _parsed_csv(pa: Any, data: bytes, columns: list[str]) -> Any:
    types = {name: pa.string() for name in columns}
    types.update(index=pa.int64(), replicate=pa.int64(), duration=pa.float64())
    types["_tabled"] = pa.bool_()
    if not data:
        return pa.table({c: pa.array([], type=types[c]) for c in columns})
    csv = require("pyarrow.csv", "pandas", "a table of runs")
    convert = csv.ConvertOptions(
        column_types=types,
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        true_values=["t"],
        false_values=["f"],
    )
    parse = csv.ParseOptions(newlines_in_values=True)
    try:
        read = csv.ReadOptions(column_names=columns, block_size=_BLOCK)
        return csv.read_csv(pa.py_buffer(data), read, parse, convert)
    except pa.ArrowInvalid:  # a row longer than a block (a huge parameter): one block
        read = csv.ReadOptions(column_names=columns, block_size=len(data) + 1)
        return csv.read_csv(pa.py_buffer(data), read, parse, convert)


def _untabled(pa: Any, pc: Any, raw: Any) -> list[int]:
    tabled = raw.column("_tabled")
    if raw.num_rows == 0 or pc.all(tabled).as_py():
        return []
    return pc.indices_nonzero(pc.invert(tabled)).to_pylist()


def _key_lists(pa: Any, pc: Any, keys: Any) -> list[tuple[int, tuple[str, ...]]]:
    """Each distinct list of names of the tabled runs, with the position of its first run."""
    if len(keys) == keys.null_count:
        return []
    np = require("numpy", "pandas", "a table of runs")
    encoded = pc.dictionary_encode(keys.combine_chunks())
    valid = encoded.is_valid()
    positions = pc.indices_nonzero(valid).to_numpy()
    codes, first = np.unique(pc.filter(encoded.indices, valid).to_numpy(), return_index=True)
    texts = encoded.dictionary.to_pylist()
    return [
        (int(positions[at]), tuple(json.loads(texts[code])))
        for code, at in zip(codes.tolist(), first.tolist())
    ]


def _ordered_names(
    lists: list[tuple[int, tuple[str, ...]]], rows: dict[int, dict[str, Any]], kind: str
) -> list[str]:
    """The names in the order `runs_table` gives them: by the first run holding them, then
    in that run's order."""
    own = [(i, tuple(_mapping(row.get(kind)))) for i, row in rows.items()]
    ordered = sorted(lists + own)
    return list(dict.fromkeys(name for _, names in ordered for name in names))


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _texts(raw: Any, names: dict[str, list[str]]) -> dict[tuple[str, str], Any]:
    return {
        (kind, name): raw.column(f"{kind}:{name}") for kind, _, _ in _KINDS for name in names[kind]
    }


def _assemble(
    pa: Any,
    pc: Any,
    raw: Any,
    texts: dict[tuple[str, str], Any],
    ordered: dict[str, list[str]],
    rows: dict[int, dict[str, Any]],
    length: int,
) -> Any:
    fields, arrays = [], []
    for name in RECORD_COLUMNS:
        array = raw.column(name).combine_chunks()
        patch = {i: row.get(name) for i, row in rows.items()}
        made = field_and_array(pa, pc, name, b"record", name, (array, False), length, patch)
        assert made is not None
        fields.append(made[0])
        arrays.append(made[1])
    taken = set(RECORD_COLUMNS)
    tabled = raw.column("_tabled").combine_chunks() if rows else None
    for kind, meta, _ in _KINDS:
        for name in ordered[kind]:
            column = texts.get((kind, name))
            fast = None
            if column is not None:
                column = column.combine_chunks()
                if tabled is not None:  # a run read from its record: not from its jsonb
                    column = pc.if_else(tabled, column, pa.scalar(None, pa.string()))
                fast = decoded(pa, pc, column)
            patch = {i: _mapping(row.get(kind)).get(name, MISSING) for i, row in rows.items()}
            label = _column_name(kind, name, taken)
            made = field_and_array(pa, pc, label, meta, name, fast, length, patch)
            if made is not None:
                taken.add(label)
                fields.append(made[0])
                arrays.append(made[1])
    schema = pa.schema(fields, metadata={b"metalab.table": TABLE_FORMAT})
    return pa.Table.from_arrays(arrays, schema=schema)
