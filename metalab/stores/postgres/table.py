"""`PostgresStore.query_table`: the runs a query selects as a runs table (`metalab.runs_table`),
read with one `COPY` and decoded column by column, never a record per run.

PostgreSQL sends, for each run, its record columns and the value of each parameter and
metric, as CSV that pyarrow parses in bulk; `columns` then types each column as `runs_table`
would. Each run's `shape` (`param_shape`, `metric_shape`: its names in the record's order,
each with the kind of its value) says how: a column whose values are all bools, all strings,
or all numbers comes as text (`params ->> name`), any other as JSON text (`params -> name`).
The names and kinds to select come from a sample of runs; the shapes of all the runs selected
say which the sample missed or got wrong (read by a second `COPY`), and the order of the
columns: a column comes where the first run holding it has it. A run whose columns do not give
back exactly what its record holds (`tabled` false: a NaN metric, say, or a run written
before these columns existed) is read from its record. Everything is read in one snapshot
of the database.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from ...errors import require
from ...record import RECORD_COLUMNS
from ...runs_table import MISSING, TABLE_FORMAT
from .columns import column_name as _column_name
from .columns import decoded, decoded_text, field_and_array
from .query import ORDER

SAMPLE = 100
"""Runs whose shapes make the first guess of the columns to select."""
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
Key = tuple[str, str]
"""A column's kind (`params` or `metrics`) and name."""
Shape = tuple[tuple[str, str], ...]
"""Names, each with the kind of its value (`encoding.shape`)."""


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
    guess = _sample(conn, schema, experiment_id)
    raw = _copy(pa, conn, schema, where, args, guess.as_text, guess.usual)
    untabled = _untabled(pa, pc, raw)
    tabled = raw.column("_tabled")
    shapes = {
        kind: _shapes(pa, pc, raw.column(col), tabled, guess.usual[kind]) for kind, _, col in _KINDS
    }
    run_ids = pc.take(raw.column("run_id"), pa.array(untabled, type=pa.int64())).to_pylist()
    found = records(conn, run_ids) if untabled else {}
    rows = {i: found[run_id] for i, run_id in zip(untabled, run_ids)}
    ordered = {kind: _ordered_names(shapes[kind], rows, kind) for kind, _, _ in _KINDS}
    kinds = {
        (kind, name): set(letters)
        for kind, found_shapes in shapes.items()
        for name, letters in _letters(found_shapes).items()
    }
    texts = {key: (raw.column(_label(key)), text) for key, text in guess.as_text.items()}
    again = {  # missed, or read as text though not all of one plain kind
        key: _plain(letters)
        for key, letters in kinds.items()
        if key not in texts or (texts[key][1] and not _plain(letters))
    }
    if again:
        more = _copy(pa, conn, schema, where, args, again, None)
        texts.update({key: (more.column(_label(key)), text) for key, text in again.items()})
    return _assemble(pa, pc, raw, texts, kinds, ordered, rows)


def _plain(letters: set[str]) -> bool:
    """Whether values of these kinds make a plain column, which `->>` gives exactly."""
    return letters <= {"b"} or letters <= {"s"} or letters <= {"i", "f"}


def _letters(shapes: list[tuple[int, Shape]]) -> dict[str, set[str]]:
    letters: dict[str, set[str]] = {}
    for _, shape in shapes:
        for name, letter in shape:
            letters.setdefault(name, set()).add(letter)
    return letters


def _label(key: Key) -> str:
    return f"{key[0]}:{key[1]}"


@dataclasses.dataclass(frozen=True)
class _Guess:
    """What a sample of runs says: whether to read each column as text (else as JSON text),
    and each kind's usual shape (JSON text)."""

    as_text: dict[Key, bool]
    usual: dict[str, str | None]


def _sample(conn: psycopg.Connection[Any], schema: str, experiment_id: str | None) -> _Guess:
    condition = sql.SQL("tabled" if experiment_id is None else "tabled AND experiment_id = %s")
    query = sql.SQL(
        "SELECT param_shape, metric_shape, count(*) FROM (SELECT param_shape, metric_shape"
        " FROM {schema}.runs WHERE {condition} LIMIT {limit}) AS sample GROUP BY 1, 2"
        " ORDER BY 3 DESC"
    ).format(schema=sql.Identifier(schema), condition=condition, limit=sql.Literal(SAMPLE))
    rows = conn.execute(query, [] if experiment_id is None else [experiment_id]).fetchall()
    counts: dict[str, collections.Counter[str]] = {
        "params": collections.Counter(),
        "metrics": collections.Counter(),
    }
    for param_shape, metric_shape, count in rows:
        counts["params"][param_shape] += count
        counts["metrics"][metric_shape] += count
    as_text = {
        (kind, name): _plain(letters)
        for kind, counted in counts.items()
        for name, letters in _letters([(0, _parsed(text)) for text in counted]).items()
    }
    usual = {
        kind: counted.most_common(1)[0][0] if counted else None for kind, counted in counts.items()
    }
    return _Guess(as_text, usual)


def _most_common(counted: collections.Counter[str]) -> str | None:
    return counted.most_common(1)[0][0] if counted else None


def _parsed(text: str) -> Shape:
    return tuple((name, letter) for name, letter in json.loads(text))


def _copy(
    pa: Any,
    conn: psycopg.Connection[Any],
    schema: str,
    where: sql.Composable,
    args: list[Any],
    as_text: dict[Key, bool],
    usual: dict[str, str | None] | None,
) -> Any:
    """The values of the runs' columns `as_text` (as text, else as JSON text), parsed from
    CSV, after their record columns and shapes (null where a shape is the `usual` one)
    unless `usual` is None."""
    selected: list[sql.Composable] = []
    head: list[Any] = []
    if usual is not None:
        selected += [sql.Identifier(_RECORD_SQL[c]) for c in RECORD_COLUMNS]
        selected += [sql.SQL("tabled, NULLIF(param_shape, %s), NULLIF(metric_shape, %s)")]
        head = [usual["params"], usual["metrics"]]
    selected += [
        sql.SQL("{column} {op} %s").format(
            column=sql.Identifier(kind), op=sql.SQL("->>" if text else "->")
        )
        for (kind, _), text in as_text.items()
    ]
    query = sql.SQL(
        "COPY (SELECT {selected} FROM {schema}.runs WHERE {where} {order}) TO STDOUT (FORMAT csv)"
    ).format(
        selected=sql.SQL(", ").join(selected),
        schema=sql.Identifier(schema),
        where=where,
        order=ORDER,
    )
    data = bytearray()
    with conn.cursor().copy(query, [*head, *(name for _, name in as_text), *args]) as copy:
        for chunk in copy:
            data += chunk
    columns = [*(_SELECTED if usual is not None else ()), *map(_label, as_text)]
    return _parsed_csv(pa, data, columns)


def _parsed_csv(pa: Any, data: bytearray, columns: list[str]) -> Any:
    types = {name: pa.string() for name in columns}
    types.update(index=pa.int64(), replicate=pa.int64(), duration=pa.float64())
    types["_tabled"] = pa.bool_()
    types = {name: types[name] for name in columns}
    if not data or not columns:
        return pa.table({c: pa.array([], type=t) for c, t in types.items()})
    csv = require("pyarrow.csv", "pandas", "a table of runs")
    convert = csv.ConvertOptions(
        column_types=types,
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        true_values=["t"],
        false_values=["f"],
    )
    read = csv.ReadOptions(column_names=columns, block_size=_BLOCK)
    try:
        # only a record column could hold a line break: a JSON text escapes its own
        return csv.read_csv(pa.py_buffer(data), read, csv.ParseOptions(), convert)
    except pa.ArrowInvalid:
        pass
    parse = csv.ParseOptions(newlines_in_values=True)
    try:
        return csv.read_csv(pa.py_buffer(data), read, parse, convert)
    except pa.ArrowInvalid:  # a row longer than a block (a huge parameter): one block
        read = csv.ReadOptions(column_names=columns, block_size=len(data) + 1)
        return csv.read_csv(pa.py_buffer(data), read, parse, convert)


def _untabled(pa: Any, pc: Any, raw: Any) -> list[int]:
    tabled = raw.column("_tabled")
    if raw.num_rows == 0 or pc.all(tabled).as_py():
        return []
    return pc.indices_nonzero(pc.invert(tabled)).to_pylist()


def _shapes(
    pa: Any, pc: Any, shapes: Any, tabled: Any, usual: str | None
) -> list[tuple[int, Shape]]:
    """Each distinct shape of the tabled runs (null: the `usual` one), with the position of
    its first run."""
    found = []
    if usual is not None:
        first = pc.index(pc.and_(tabled, pc.is_null(shapes)), True).as_py()
        if first >= 0:
            found.append((first, _parsed(usual)))
    if len(shapes) == shapes.null_count:
        return found
    np = require("numpy", "pandas", "a table of runs")
    encoded = pc.dictionary_encode(shapes.combine_chunks())
    valid = encoded.is_valid()
    positions = pc.indices_nonzero(valid).to_numpy()
    codes, first = np.unique(pc.filter(encoded.indices, valid).to_numpy(), return_index=True)
    texts = encoded.dictionary.to_pylist()
    return found + [
        (int(positions[at]), _parsed(texts[code]))
        for code, at in zip(codes.tolist(), first.tolist())
    ]


def _ordered_names(
    shapes: list[tuple[int, Shape]], rows: dict[int, dict[str, Any]], kind: str
) -> list[str]:
    """The names in the order `runs_table` gives them: by the first run holding them, then
    in that run's order."""
    own = [(i, tuple(_mapping(row.get(kind)))) for i, row in rows.items()]
    tabled = [(i, tuple(name for name, _ in shape)) for i, shape in shapes]
    return list(dict.fromkeys(name for _, names in sorted(tabled + own) for name in names))


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _assemble(
    pa: Any,
    pc: Any,
    raw: Any,
    texts: dict[Key, tuple[Any, bool]],
    kinds: dict[Key, set[str]],
    ordered: dict[str, list[str]],
    rows: dict[int, dict[str, Any]],
) -> Any:
    length = raw.num_rows
    fields, arrays = [], []
    for name in RECORD_COLUMNS:
        array = raw.column(name)
        if rows:  # put in from records: one array
            array = array.combine_chunks()
        patch = {i: row.get(name) for i, row in rows.items()}
        made = field_and_array(pa, pc, name, b"record", name, (array, False), length, patch)
        assert made is not None
        fields.append(made[0])
        arrays.append(made[1])
    taken = set(RECORD_COLUMNS)
    tabled = raw.column("_tabled").combine_chunks() if rows else None
    for kind, meta, _ in _KINDS:
        for name in ordered[kind]:
            fast = None
            column, text = texts.get((kind, name), (None, False))
            if column is not None:
                if tabled is not None:  # a run read from its record: not from its jsonb
                    column = column.combine_chunks()
                    column = pc.if_else(tabled, column, pa.scalar(None, pa.string()))
                if text:
                    fast = decoded_text(pa, pc, column, kinds.get((kind, name), set()))
                else:
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
