"""SQL built from `query_records`' filters: parameters by JSON equality, metrics by
comparison, experiment and status by equality; every value a parameter of the statement."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from psycopg import sql

from ..._identity import normalize
from ...errors import ValidationError
from .encoding import sql_json

METRIC_OPERATORS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "="}


ORDER = sql.SQL("ORDER BY experiment_id, run_index, run_id")
"""The order records and tables come in: experiment id, then run index."""


def records_query(
    schema: str,
    experiment_id: str | None,
    params: Mapping[str, Any],
    metric_filters: Iterable[tuple[str, str, float]],
    status: str | None,
    near: Mapping[str, float] | None = None,
) -> tuple[sql.Composed, list[Any]]:
    """Return the statement selecting `(run_id, record)` of the runs matching every filter,
    ordered by experiment id and run index, and its arguments. ValidationError for a bad
    metric filter; FingerprintError for a parameter value that is not JSON."""
    where, args = where_clause(schema, experiment_id, params, metric_filters, status, near)
    query = sql.SQL("SELECT run_id, record FROM {schema}.runs WHERE {where} {order}").format(
        schema=sql.Identifier(schema), where=where, order=ORDER
    )
    return query, args


def where_clause(
    schema: str,
    experiment_id: str | None,
    params: Mapping[str, Any],
    metric_filters: Iterable[tuple[str, str, float]],
    status: str | None,
    near: Mapping[str, float] | None = None,
) -> tuple[sql.Composed, list[Any]]:
    """Return the condition on `{schema}.runs` that every filter makes, and its arguments
    (see `records_query`)."""
    quoted = sql.Identifier(schema)
    conditions: list[sql.Composable] = [sql.SQL("TRUE")]
    args: list[Any] = []
    if experiment_id is not None:
        conditions.append(sql.SQL("experiment_id = %s"))
        args.append(experiment_id)
    if status is not None:
        conditions.append(sql.SQL("status = %s"))
        args.append(status)
    for name, value in params.items():
        wanted = normalize(value, f"filter {name!r}")
        # containment uses the GIN index; equality makes lists and dicts match exactly
        conditions.append(sql.SQL("params @> %s::jsonb AND params -> %s = %s::jsonb"))
        args += [sql_json({name: wanted}), name, sql_json(wanted)]
    for name, number in (near or {}).items():
        whole = _whole(number)
        if whole is not None:
            # a whole number: jsonb equality of numbers (3 equals 3.0), through the GIN index
            conditions.append(sql.SQL("params @> %s::jsonb"))
            args.append(sql_json({name: whole}))
            continue
        low, high = near_bounds(number)
        # CASE: the cast only of numbers (AND does not order its conditions)
        conditions.append(
            sql.SQL(
                "CASE WHEN jsonb_typeof(params -> %s) = 'number' "
                "THEN (params ->> %s)::float8 END BETWEEN %s AND %s"
            )
        )
        args += [name, name, low, high]
    for name, op, threshold in (_metric_filter(f) for f in metric_filters):
        conditions.append(
            sql.SQL("{schema}.metric_value(metrics -> %s) {op} %s").format(
                schema=quoted, op=sql.SQL(op)
            )
        )
        args += [name, threshold]
    return sql.SQL(" AND ").join(conditions), args


def _whole(number: Any) -> int | None:
    """`number` as an int when it is a whole number a float holds exactly, else None."""
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        return None
    if isinstance(number, float) and not number.is_integer():
        return None
    return int(number) if abs(number) <= 2**53 else None


def near_bounds(number: Any) -> tuple[float, float]:
    """The range of values within a relative 1e-9 of `number` (`math.isclose`), widened a
    little so that float rounding never leaves a match out. ValidationError for anything
    but a finite number."""
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise ValidationError(f"near: {number!r} is not a number")
    value = float(number)
    if not math.isfinite(value):
        raise ValidationError(f"near: {number!r} is not a finite number")
    spread = abs(value) * 1.1e-9 + 1e-300
    return value - spread, value + spread


def _metric_filter(item: Any) -> tuple[str, str, float]:
    try:
        name, op, threshold = item
    except (TypeError, ValueError):
        raise ValidationError(
            f"a metric filter is a (metric, operator, threshold) tuple, got {item!r}"
        ) from None
    if not isinstance(name, str):
        raise ValidationError(f"metric filter {item!r}: the metric name must be a string")
    if op not in METRIC_OPERATORS:
        raise ValidationError(
            f"metric filter {item!r}: operator {op!r} is not one of {', '.join(METRIC_OPERATORS)}"
        )
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ValidationError(f"metric filter {item!r}: the threshold must be a number")
    return name, METRIC_OPERATORS[op], float(threshold)
