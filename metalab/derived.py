"""Derived metrics: values computed from a finished run, stored beside it, never fingerprinted.

A derived metric function takes a `Run` and returns a mapping of names to numbers::

    def final_loss(run) -> dict[str, Metric]:
        return {"final_loss": float(run.artifact("loss_history")[-1])}

They run on the worker right after each completed run (`metalab.run(..., derived_metrics=[...])`),
client-side on stored runs (`Results.compute_derived`), or on the fly for a DataFrame
(`Results.to_dataframe(derived_metrics=[...])`). A function that raises, or returns something
other than a mapping of names to numbers, records an error for that run and function; the run
and the other functions are unaffected.

The stored document of a run (`derived/<run_id>.json` in a file store)::

    {"format": "metalab.derived/1",
     "values": {"final_loss": {"value": 0.01, "function": "mod:final_loss",
                               "code_hash": "...", "computed_at": "..."}},
     "errors": {"mod:other": {"type": "KeyError", "message": "...", "code_hash": "...", ...}}}

Each value names the function that produced it and that function's code hash, so values made
by an older definition are visible (`stale`) and can be recomputed.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from . import source
from .errors import ValidationError
from .record import utc_now

DERIVED_FORMAT = "metalab.derived/1"

DerivedFunction = Callable[[Any], Mapping[str, Any]]


def function_ref(fn: DerivedFunction) -> str:
    """`module:qualname` of a derived metric function."""
    if isinstance(fn, Checked):
        return fn.ref
    module = getattr(fn, "__module__", None) or "__main__"
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{module}:{name}"


def function_hash(fn: DerivedFunction) -> str:
    """The code hash of a derived metric function ("" when its source cannot be read)."""
    if isinstance(fn, Checked):
        return fn.code_hash
    try:
        return source.code_hash(fn)
    except Exception:  # noqa: BLE001 - builtins, lambdas in a REPL: no source, no hash
        return ""


class Checked:
    """A derived metric function with its name and code hash taken where it was given.

    It travels to workers with them and with its source lines, so a value computed on a
    worker that cannot read the function's file (a notebook cell) records the same code hash
    as the driver computes, and its tracebacks show the cell's lines.
    """

    __slots__ = ("code_hash", "fn", "ref")

    def __init__(self, fn: DerivedFunction, ref: str, code_hash: str):
        self.fn, self.ref, self.code_hash = fn, ref, code_hash

    def __call__(self, run: Any) -> Mapping[str, Any]:
        return self.fn(run)

    def __reduce__(self):
        lines, places = source.lines_of(self.fn), source.places_of(self.fn)
        return (_checked, (self.fn, self.ref, self.code_hash, lines, places))

    def __repr__(self) -> str:
        return f"<derived metric {self.ref}>"


def _checked(
    fn, ref: str, code_hash: str, lines: source.SourceLines, places: source.Places | None = None
) -> Checked:
    source.register(lines)
    source.restore_places(fn, places)
    return Checked(fn, ref, code_hash)


def check_functions(fns: Any, argument: str = "derived_metrics") -> list[DerivedFunction]:
    """Validate a list of derived metric functions; return them, each with its name and
    code hash (`Checked`)."""
    if fns is None:
        return []
    if callable(fns) or isinstance(fns, (str, bytes)) or not isinstance(fns, Iterable):
        raise ValidationError(f"{argument} must be a list of functions taking a run, got {fns!r}")
    out = list(fns)
    seen: dict[str, Any] = {}
    for fn in out:
        if not callable(fn):
            raise ValidationError(
                f"{argument} must hold functions taking a run and returning a dict of "
                f"metrics; {fn!r} is not callable"
            )
        ref = function_ref(fn)
        if ref in seen and seen[ref] is not fn:
            raise ValidationError(
                f"{argument} holds two different functions named {ref!r} (lambdas or functions "
                "made by one factory): stored values are kept per function name, so give each "
                "its own name (def ..., or set __qualname__)"
            )
        seen[ref] = fn
    return [
        fn if isinstance(fn, Checked) else Checked(fn, function_ref(fn), function_hash(fn))
        for fn in out
    ]


def empty_document() -> dict[str, Any]:
    return {"format": DERIVED_FORMAT, "values": {}, "errors": {}}


def read_document(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """Normalize a stored derived document (also the plain name -> value form) to the format."""
    if not raw:
        return empty_document()
    if raw.get("format") == DERIVED_FORMAT:
        return {
            "format": DERIVED_FORMAT,
            "values": dict(raw.get("values") or {}),
            "errors": dict(raw.get("errors") or {}),
        }
    values = {
        name: value if isinstance(value, dict) and "value" in value else {"value": value}
        for name, value in raw.items()
    }
    return {"format": DERIVED_FORMAT, "values": values, "errors": {}}


def values_of(document: Mapping[str, Any]) -> dict[str, Any]:
    """name -> value of a normalized document."""
    return {name: entry.get("value") for name, entry in document["values"].items()}


def _check_output(out: Any, ref: str) -> dict[str, Any]:
    if not isinstance(out, Mapping):
        raise TypeError(
            f"derived metric function {ref} must return a dict of metric names to numbers, "
            f"got {type(out).__name__}: {out!r:.200}"
        )
    checked: dict[str, Any] = {}
    for name, value in out.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"derived metric function {ref} returned a metric name {name!r}")
        if value is None or isinstance(value, (bool, str)):
            checked[name] = value
        elif isinstance(value, numbers.Integral):
            checked[name] = int(value)
        elif isinstance(value, numbers.Real):
            checked[name] = float(value)
        elif hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # NumPy scalar
            checked[name] = value.item()
        else:
            raise TypeError(
                f"derived metric {name!r} from {ref} must be a number, bool, str or None, "
                f"got {type(value).__name__}: {value!r:.200}"
            )
    return checked


def compute(
    fns: Sequence[DerivedFunction],
    run: Any,
    document: dict[str, Any] | None = None,
    *,
    overwrite: bool | str = True,
) -> tuple[dict[str, Any], bool]:
    """Apply `fns` to `run`, updating `document` (a new one when None) in place.

    `overwrite`: True recomputes every function; False keeps functions that already produced
    values (or an error) for this run; "changed" recomputes only those whose stored code hash
    differs from the function's current one. Returns (document, whether it changed).
    """
    document = empty_document() if document is None else document
    changed = False
    for fn in fns:
        ref, code_hash = function_ref(fn), function_hash(fn)
        mine = [n for n, e in document["values"].items() if e.get("function") == ref]
        error = document["errors"].get(ref)
        if overwrite is not True and (mine or error):
            stored = {document["values"][n].get("code_hash") for n in mine}
            if error:
                stored.add(error.get("code_hash"))
            if overwrite != "changed" or stored == {code_hash}:
                continue
        try:
            values = _check_output(fn(run), ref)
        except Exception as exc:  # noqa: BLE001 - recorded for this run and function
            document["errors"][ref] = {
                "type": type(exc).__name__,
                "message": str(exc),
                "traceback": source.format_exception(exc),
                "code_hash": code_hash,
                "computed_at": utc_now(),
            }
            changed = True
            continue
        for name in mine:
            if name not in values:
                del document["values"][name]
        now = utc_now()
        for name, value in values.items():
            document["values"][name] = {
                "value": value,
                "function": ref,
                "code_hash": code_hash,
                "computed_at": now,
            }
        document["errors"].pop(ref, None)
        changed = True
    return document, changed


def stale(document: Mapping[str, Any], fns: Sequence[DerivedFunction]) -> list[str]:
    """Names of stored values made by one of `fns` under a different code hash."""
    current = {function_ref(fn): function_hash(fn) for fn in fns}
    return [
        name
        for name, entry in document["values"].items()
        if entry.get("function") in current and entry.get("code_hash") != current[entry["function"]]
    ]
