"""The user's source code: its hash, its lines travelling with code shipped by value, and
tracebacks that point at it.

An operation or derived metric function defined in a script's `__main__` or a notebook cell
travels to workers by value. Its code keeps its file name and line numbers, but a worker may
not be able to read that file (a notebook cell exists only in the kernel's `linecache`), so
the lines travel along and are registered with `linecache` there: tracebacks then show the
user's file, line and source text, and the code hash can be computed again.
"""

from __future__ import annotations

import hashlib
import inspect
import linecache
import os
import textwrap
import traceback
import types
from collections.abc import Callable
from typing import Any

SourceLines = dict[str, list[str]]
"""file name -> its lines, as `linecache` holds them."""

_MAX_SHIPPED = 2_000_000
"""Most characters of source shipped with one function (a generated file may be huge)."""

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def code_hash(func: Callable[..., Any]) -> str:
    """The sha256 of `func`'s source, or "" when its source cannot be read."""
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        return ""
    return hashlib.sha256(textwrap.dedent(source).encode("utf-8")).hexdigest()


def lines_of(func: Callable[..., Any]) -> SourceLines:
    """The lines of the code `func`, and the functions of its module it calls, were compiled
    from, when that is not a file on disk (a notebook cell, whose lines only `linecache`
    holds); files on disk are read where they are needed."""
    out: SourceLines = {}
    size = 0
    for code in _codes(func):
        name = code.co_filename
        if name in out or os.path.exists(name):
            continue
        lines = linecache.getlines(name)
        size += sum(map(len, lines))
        if lines and size <= _MAX_SHIPPED:
            out[name] = lines
    return out


def _codes(func: Callable[..., Any]) -> list[types.CodeType]:
    """`func`'s code, and that of the functions of its own module it names."""
    return [function.__code__ for function in _functions(func)]


def _functions(func: Callable[..., Any]) -> list[types.FunctionType]:
    """`func` (unwrapped), and the functions of its own module it names."""
    func = inspect.unwrap(func)
    if not isinstance(func, types.FunctionType):
        return []
    found = [func]
    module = func.__module__
    for name in func.__code__.co_names:
        value = func.__globals__.get(name)
        if isinstance(value, types.FunctionType) and value.__module__ == module:
            found.append(value)
    return found


Places = dict[tuple[str, int], str]
"""(code name, first line) -> the file name the code was compiled from."""


def places_of(func: Callable[..., Any]) -> Places:
    """Where the code of `func`, and of the functions of its module it names, comes from."""
    return {(code.co_name, code.co_firstlineno): code.co_filename for code in _codes(func)}


def restore_places(func: Callable[..., Any], places: Places | None) -> None:
    """Give the code of `func` (shipped by value), and of the functions of its module it
    names, the file names `places` says they were compiled from. A pickler may rename them
    (cloudpickle 3.1.3 and later call every such file `<dynamic-code>`), which would leave
    tracebacks without the user's file, lines and source text."""
    for function in _functions(func) if places else ():
        code = function.__code__
        name = places.get((code.co_name, code.co_firstlineno))  # type: ignore[union-attr]
        if name is not None and code.co_filename != name:
            function.__code__ = _renamed(code, code.co_filename, name)


def _renamed(code: types.CodeType, old: str, new: str) -> types.CodeType:
    """`code`, and the code nested in it (inner functions, lambdas) named `old`, named `new`."""
    consts = tuple(
        _renamed(item, old, new)
        if isinstance(item, types.CodeType) and item.co_filename == old
        else item
        for item in code.co_consts
    )
    return code.replace(co_filename=new, co_consts=consts)


def register(lines: SourceLines | None) -> None:
    """Make tracebacks in this process show shipped lines: register them with `linecache`
    under their file names, except for files this process can read itself."""
    for name, content in (lines or {}).items():
        if os.path.exists(name):
            continue
        # no modification time: linecache.checkcache keeps the entry
        linecache.cache[name] = (sum(map(len, content)), None, list(content), name)


def format_exception(exc: BaseException) -> str:
    """Format `exc` as a traceback that starts at the user's code: metalab's own frames that
    lead to it (the run function, the operation's call) are left out."""
    tb = exc.__traceback__
    first = tb
    while first is not None and first.tb_frame.f_code.co_filename.startswith(_PACKAGE):
        first = first.tb_next
    if first is not None:
        tb = first  # when every frame is metalab's, the error is metalab's: keep them all
    return "".join(traceback.format_exception(type(exc), exc, tb))
