"""What `Results.filter` and `Results.where` select: conditions on params and metrics, the
part of them a database answers, and the names a condition may use."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .._identity import normalize
from ..errors import UnknownNameError, ValidationError
from ..names import closest
from ..runs_table import MISSING

_OPERATORS = {
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
}


def same(a: Any, b: Any) -> bool:
    """Equality for filters: numbers compare by value, and when one side is a float within
    a relative 1e-9 (integers compare exactly); anything else by type and value."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) or isinstance(b, float):
            return a == b or math.isclose(a, b, rel_tol=1e-9)
        return a == b
    return type(a) is type(b) and a == b


def condition(key: str, value: Any, kind: str):
    """A test of a params or metrics mapping for `filter`/`where` keyword `key=value`."""
    name, test = value_test(key, value, kind)
    return lambda mapping: name in mapping and test(mapping[name])


def value_test(key: str, value: Any, kind: str) -> tuple[str, Callable[[Any], bool]]:
    """(the name `filter`/`where` keyword `key=value` is about, a test of one run's value of
    it); a run without the name never matches, so the test is asked only of values."""
    name, op = split_key(key)
    if op in _OPERATORS:
        if isinstance(value, (list, tuple, set, dict)) or value is None:
            raise ValidationError(
                f"{key}={value!r}: a comparison needs a single value to compare the {kind} to"
            )
        compare = _OPERATORS[op]

        def test(found: Any) -> bool:
            if found is None:
                return False
            try:
                return bool(compare(found, value))
            except TypeError:
                return False

        return name, test
    if op == "in" or (op == "eq" and isinstance(value, (list, tuple, set))):
        if not isinstance(value, (list, tuple, set)):
            raise ValidationError(f"{key}={value!r}: __in needs a list of values")
        options = [_wanted(key, v, kind, name) for v in value]
        return name, lambda found: any(same(found, v) for v in options)
    wanted = _wanted(key, value, kind, name)
    if op == "ne":
        return name, lambda found: not same(found, wanted)
    return name, lambda found: same(found, wanted)


def _wanted(key: str, value: Any, kind: str, name: str) -> Any:
    """`value` as the runs' values of `name` are compared with it; a `ValidationError` for a
    NaN or an infinity, which equals no value."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(
            f"{key}={value!r}: a NaN or infinite value equals no {kind} value, so it "
            f"selects nothing; compare instead ({name}__gt=..., {name}__lt=...), or select "
            f"with a function: where(lambda run: math.isnan(run.metrics.get({name!r}, 0)))"
        )
    return normalize(value, f"{kind} {name!r}")


def column_mask(values: list[Any], test: Callable[[Any], bool]) -> list[bool]:
    """Which of a column's values (`runs_table.MISSING` where a run has none) pass `test`."""
    return [value is not MISSING and test(value) for value in values]


_SQL_OPERATORS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def split_param_conditions(
    params: Mapping[str, Any], already: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, float], dict[str, Any]]:
    """(equalities a database answers exactly as `filter` does, numbers a database narrows
    to those within a relative 1e-9, the conditions left to test in memory).

    Strings and booleans go to the database as they are; a number goes as a range around it
    and stays among the conditions tested in memory too (numbers compare with a tolerance
    there, and a stored 3.0 equals 3, which the database's range only approaches from
    above). A second condition on a parameter the query already constrains stays in memory.
    """
    pushed: dict[str, Any] = {}
    near: dict[str, float] = {}
    rest: dict[str, Any] = {}
    for key, value in params.items():
        name, op = split_key(key)
        fresh = name not in already and name not in pushed and name not in near
        if op == "eq" and isinstance(value, (str, bool)) and fresh:
            pushed[name] = value
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if op == "eq" and number and math.isfinite(value) and fresh:
            near[name] = value
        rest[key] = value
    return pushed, near, rest


def split_metric_conditions(
    metrics: Mapping[str, Any],
) -> tuple[list[tuple[str, str, float]], dict[str, Any]]:
    """(comparisons with a number a database answers as `where` does, the other conditions)."""
    pushed: list[tuple[str, str, float]] = []
    rest: dict[str, Any] = {}
    for key, value in metrics.items():
        name, _, op = key.rpartition("__")
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if name and op in _SQL_OPERATORS and number and math.isfinite(value):
            pushed.append((name, _SQL_OPERATORS[op], value))
        else:
            rest[key] = value
    return pushed, rest


def split_key(key: str) -> tuple[str, str]:
    """`"lr__lt"` -> `("lr", "lt")`; a key without a known operator suffix -> `(key, "eq")`."""
    name, _, op = key.rpartition("__")
    if not name or op not in (*_OPERATORS, "ne", "in", "eq"):
        return key, "eq"
    return name, op


def check_names(keys: Iterable[str], known: Iterable[str], kind: str, call: str) -> None:
    """Raise `UnknownNameError` when a condition of `call` names no `kind` of the runs."""
    names = sorted(set(known))
    for key in keys:
        name, _ = split_key(key)
        if name not in names:
            raise UnknownNameError(
                f"{call}: no {kind} is called {name!r}{closest(name, names)}; "
                f"the runs' {kind}s are {names}"
            )
