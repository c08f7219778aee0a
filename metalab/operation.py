"""The `@operation` decorator: wrap a function so metalab can inject what it asks for."""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from collections.abc import Callable
from typing import Any, TypeVar, overload

from . import source

INJECTABLE = ("context", "params", "seeds", "runtime", "capture")

F = TypeVar("F", bound=Callable[..., Any])


def _requested_arguments(func: Callable[..., Any]) -> tuple[str, ...]:
    """Return the injectable names `func` asks for; raise `TypeError` for any other argument."""
    signature = inspect.signature(func)
    wanted: list[str] = []
    allowed = ", ".join(INJECTABLE)
    for param in signature.parameters.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            return INJECTABLE
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            raise TypeError(
                f"operation {func.__qualname__!r} takes *{param.name}; an operation declares "
                f"its arguments by name, any of: {allowed}"
            )
        if param.name not in INJECTABLE:
            raise TypeError(
                f"operation {func.__qualname__!r} has argument {param.name!r}, which metalab "
                f"cannot inject; an operation may ask for any of: {allowed}"
            )
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise TypeError(
                f"operation {func.__qualname__!r}: argument {param.name!r} is positional-only; "
                "metalab passes arguments by name"
            )
        wanted.append(param.name)
    return tuple(wanted)


class OperationWrapper:
    """Wrapper around an operation function: name, reference, code hash and injection."""

    def __init__(self, func: Callable[..., Any], name: str | None = None):
        if not callable(func):
            raise TypeError(f"an operation must be a function, got {func!r}")
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"operation name must be a non-empty string, got {name!r}")
        self.func = func
        self._name = str(name or getattr(func, "__name__", None) or type(func).__name__)
        self._wants = _requested_arguments(func)
        self._code_hash: str | None = None
        functools.update_wrapper(self, func)

    @property
    def name(self) -> str:
        """The operation name."""
        return self._name

    @property
    def ref(self) -> str:
        """A `module:qualname` reference from which `import_operation` finds the operation."""
        module = getattr(self.func, "__module__", None) or "__main__"
        qualname = getattr(self.func, "__qualname__", self._name)
        return f"{module}:{qualname}"

    @property
    def code_hash(self) -> str:
        """The sha256 of the function's source, or "" when the source cannot be read."""
        if self._code_hash is None:
            self._code_hash = source.code_hash(self.func)
        return str(self._code_hash)

    @property
    def requested(self) -> tuple[str, ...]:
        """The argument names this operation asks metalab to inject."""
        return self._wants

    def run(self, context, params, seeds, runtime, capture) -> Any:
        """Call the function with only the arguments its signature asks for."""
        available = {
            "context": context,
            "params": params,
            "seeds": seeds,
            "runtime": runtime,
            "capture": capture,
        }
        return self.func(**{name: available[name] for name in self._wants})

    def __call__(self, context=None, params=None, seeds=None, runtime=None, capture=None) -> Any:
        """Call the operation directly (same as `run`)."""
        return self.run(context, params, seeds, runtime, capture)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_code_hash"] = self.code_hash
        return state

    def __reduce__(self):
        # An operation importable by its ref travels as the ref (workers import it); one
        # defined in __main__ or a notebook travels by value through cloudpickle.
        if self._importable_as_ref():
            return (import_operation, (self.ref,))
        # by value: its source lines travel too, for tracebacks where its file is not readable
        lines, places = source.lines_of(self.func), source.places_of(self.func)
        return (_rebuild, (type(self), self.__getstate__(), lines, places))

    def _importable_as_ref(self) -> bool:
        module_name, qualname = self.ref.split(":", 1)
        if module_name == "__main__" or "<" in qualname:
            return False
        obj: Any = sys.modules.get(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
        return obj is self

    def __repr__(self) -> str:
        return f"<metalab.operation {self._name!r} ({self.ref})>"


def _rebuild(cls, state, lines=None, places=None):
    source.register(lines)
    source.restore_places(state.get("func"), places)
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj


@overload
def operation(func: F) -> OperationWrapper: ...


@overload
def operation(
    func: None = None, *, name: str | None = None
) -> Callable[[Callable[..., Any]], OperationWrapper]: ...


def operation(func=None, *, name=None):
    """Mark a function as a metalab operation.

    Use as `@operation`, `@operation()` or `@operation(name="custom")`.
    """
    if func is None:
        return lambda f: OperationWrapper(f, name=name)
    if isinstance(func, OperationWrapper):
        return func if name is None else OperationWrapper(func.func, name=name)
    return OperationWrapper(func, name=name)


def import_operation(ref: str) -> OperationWrapper:
    """Import the operation named by `ref` ("module:name"); raise ImportError or AttributeError."""
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise ValueError(f"operation reference must look like 'module:name', got {ref!r}")
    module_name, qualname = ref.split(":")
    if not module_name or not all(qualname.split(".")):
        raise ValueError(
            f"operation reference must look like 'module:name' (both parts given), got {ref!r}"
        )
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AttributeError(f"module {module_name!r} has no operation {qualname!r}") from None
    if isinstance(obj, OperationWrapper):
        return obj
    if callable(obj):
        return OperationWrapper(obj)
    raise TypeError(f"{ref!r} is {obj!r}, not an operation")
