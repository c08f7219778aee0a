"""Context: the read-only inputs every run of an experiment shares.

A context is a plain dict or an instance of a `@context_spec` class. Files and directories are
named with `FilePath` / `DirPath`; their fingerprints come from file metadata (size, mtime,
inode), computed when the sweep starts, so hashing is O(1) in file size.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from ._identity import canonical_json, normalize, sha256_hex
from .errors import ContextFileError, FingerprintError, ValidationError


class _PathRef:
    """A path the context points at, as written; once the sweep's fingerprint is taken, the
    copy a run receives also knows the absolute path that was fingerprinted (`resolved`),
    which `str()` and `os.fspath()` then give."""

    __slots__ = ("_resolved", "path")
    kind = "path"
    path: str

    def __init__(self, path: str | os.PathLike):
        if isinstance(path, _PathRef):
            path = path.path
        try:
            self.path = os.fspath(path)
        except TypeError:
            raise ValidationError(
                f"{type(self).__name__} needs a path (str or os.PathLike), got {path!r}"
            ) from None
        if isinstance(self.path, bytes):
            self.path = os.fsdecode(self.path)
        if not self.path:
            raise ValidationError(f"{type(self).__name__} needs a non-empty path")
        self._resolved: str | None = None

    @property
    def resolved(self) -> str | None:
        """The absolute path the sweep fingerprinted, or None outside a sweep's context."""
        return self._resolved

    def __str__(self) -> str:
        return self._resolved or self.path

    def __fspath__(self) -> str:
        return self._resolved or self.path

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.path == other.path  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.path))

    def __getstate__(self):
        return self.path if self._resolved is None else (self.path, self._resolved)

    def __setstate__(self, state):
        self.path, self._resolved = (state, None) if isinstance(state, str) else state

    def exists(self) -> bool:
        """Return whether the path exists now."""
        return os.path.exists(self)

    def metadata(self, where: str) -> dict:
        """Return the metadata the fingerprint hashes; raise `ContextFileError` if missing."""
        raise NotImplementedError


def _stat_entry(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino]


class FilePath(_PathRef):
    """A file the operation reads; fingerprinted by (size, mtime, inode), never by content."""

    __slots__ = ()
    kind = "FilePath"

    def metadata(self, where: str) -> dict:
        try:
            st = os.stat(self)
        except FileNotFoundError:
            raise ContextFileError(
                f"context field {where} points to {self.path!r}, which does not exist "
                f"(cwd: {os.getcwd()}); create it before calling metalab.run()"
            ) from None
        if not os.path.isfile(self):
            raise ContextFileError(f"context field {where}: {self.path!r} is not a file")
        return {"path": os.path.normpath(self.path), "stat": _stat_entry(st)}


class DirPath(_PathRef):
    """A directory the operation reads; fingerprinted by the metadata of every file under it."""

    __slots__ = ()
    kind = "DirPath"

    def metadata(self, where: str) -> dict:
        if not os.path.isdir(self):
            state = "is not a directory" if os.path.exists(self) else "does not exist"
            raise ContextFileError(
                f"context field {where} points to {self.path!r}, which {state} "
                f"(cwd: {os.getcwd()}); create it before calling metalab.run()"
            )
        entries = []
        top = os.fspath(self)
        for root, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                try:
                    st = os.stat(full)
                except FileNotFoundError:
                    continue
                entries.append([os.path.relpath(full, top), *_stat_entry(st)])
        return {"path": os.path.normpath(self.path), "entries": sha256_hex(canonical_json(entries))}


class FrozenContext(Mapping):
    """A read-only view of a dict context; keys also read as attributes (`context.lr`)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None):
        object.__setattr__(self, "_data", dict(data or {}))

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"context has no field {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError("the context is read-only; put values that change per run in params")

    def __repr__(self) -> str:
        return f"FrozenContext({self._data!r})"

    def __getstate__(self):
        return self._data

    def __setstate__(self, state):
        object.__setattr__(self, "_data", state)


def _path_fields(cls: type) -> dict[str, type]:
    """Return the fields of a spec class annotated FilePath/DirPath (resolved once per class)."""
    cached = cls.__dict__.get("__metalab_path_fields__")
    if cached is not None:
        return cached
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable annotations: fall back to their text
        hints = {f.name: _PATH_TYPES.get(str(f.type), f.type) for f in dataclasses.fields(cls)}
    found = {name: hint for name, hint in hints.items() if hint in (FilePath, DirPath)}
    cls.__metalab_path_fields__ = found  # type: ignore[attr-defined]
    return found


def _coerce_paths(self) -> None:
    for name, kind in _path_fields(type(self)).items():
        value = getattr(self, name)
        if isinstance(value, (str, os.PathLike)) and not isinstance(value, _PathRef):
            object.__setattr__(self, name, kind(value))


_PATH_TYPES = {
    "FilePath": FilePath,
    "metalab.FilePath": FilePath,
    "DirPath": DirPath,
    "metalab.DirPath": DirPath,
}


def context_spec(cls: type | None = None, /):
    """Make `cls` a frozen dataclass usable as an experiment context.

    Fields annotated `metalab.FilePath` or `metalab.DirPath` accept plain strings too.
    """

    def wrap(klass: type) -> type:
        user_post_init = getattr(klass, "__post_init__", None)

        def __post_init__(self):
            _coerce_paths(self)
            if user_post_init is not None:
                user_post_init(self)

        klass.__post_init__ = __post_init__  # type: ignore[attr-defined]
        klass = dataclasses.dataclass(frozen=True)(klass)
        klass.__metalab_context_spec__ = True  # type: ignore[attr-defined]
        return klass

    return wrap if cls is None else wrap(cls)


def is_context_spec(obj: Any) -> bool:
    """Return whether `obj` is a context spec: an instance of a `@context_spec` class or of
    any frozen dataclass."""
    if isinstance(obj, type) or not dataclasses.is_dataclass(obj):
        return False
    cls: Any = type(obj)
    return bool(getattr(cls, "__metalab_context_spec__", False) or cls.__dataclass_params__.frozen)


def check_context(context: Any) -> Any:
    """Validate an `Experiment`'s context, returning what the experiment keeps."""
    if context is None:
        return FrozenContext({})
    if isinstance(context, FrozenContext):
        return context
    if isinstance(context, Mapping):
        for key in context:
            if not isinstance(key, str):
                raise ValidationError(f"context keys must be strings, got {key!r}")
        return FrozenContext(context)
    if is_context_spec(context):
        return _with_path_objects(context)
    if dataclasses.is_dataclass(context) and not isinstance(context, type):
        raise ValidationError(
            f"context {context!r} is an instance of a dataclass that is not frozen; a context "
            f"is read-only: declare {type(context).__name__} with @dataclass(frozen=True) or "
            "@metalab.context_spec"
        )
    raise ValidationError(
        f"context must be a dict, an instance of a @metalab.context_spec class or of a "
        f"frozen dataclass, got {context!r} ({type(context).__name__})"
    )


def _with_path_objects(spec: Any) -> Any:
    """`spec`, or a copy of it whose fields annotated FilePath/DirPath hold such objects
    (a plain dataclass keeps the strings it was given)."""
    fields = _path_fields(type(spec))
    if all(isinstance(getattr(spec, name), _PathRef) for name in fields):
        return spec
    spec = copy.copy(spec)
    _coerce_paths(spec)
    return spec


def resolved_context(context: Any) -> Any:
    """Return a copy of `context` in which each `FilePath`/`DirPath` knows its absolute path,
    resolved against the current directory: the context runs of a sweep receive, and the
    one whose files are fingerprinted, so that runs open exactly the fingerprinted files."""
    try:
        resolved = copy.deepcopy(context)
    except (TypeError, copy.Error, RecursionError) as exc:
        # an open file, a lock, a generator: no JSON value. Describing the context names
        # the field that holds it (FingerprintError), as for any other value that is not
        context_manifest(context, resolve=False)
        raise FingerprintError(
            f"the context cannot be copied for the sweep's runs ({exc}): it holds JSON "
            "values, FilePath/DirPath references and context specs"
        ) from None
    for ref in _path_refs(resolved):
        try:
            ref._resolved = os.path.abspath(ref.path)
        except FileNotFoundError:
            raise ContextFileError(
                f"the current directory was removed: relative path {ref.path!r} in the "
                "context names nothing; change to an existing directory first"
            ) from None
    return resolved


def _path_refs(value: Any) -> Iterator[_PathRef]:
    if isinstance(value, _PathRef):
        yield value
    elif is_context_spec(value):
        _coerce_paths(value)
        for f in dataclasses.fields(value):
            yield from _path_refs(getattr(value, f.name))
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _path_refs(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _path_refs(item)


def _describe(value: Any, where: str, resolve: bool) -> Any:
    if isinstance(value, _PathRef):
        out = {"__metalab__": value.kind, "path": os.path.normpath(value.path)}
        if resolve:
            out.update(value.metadata(where))
        return out
    if is_context_spec(value):
        return {
            f.name: _describe(getattr(value, f.name), f"{where}.{f.name}", resolve)
            for f in dataclasses.fields(value)
        }
    if isinstance(value, Mapping):
        return {str(k): _describe(v, f"{where}[{k!r}]", resolve) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_describe(v, f"{where}[{i}]", resolve) for i, v in enumerate(value)]
    return normalize(value, where)


def context_manifest(context: Any, *, resolve: bool = False) -> dict:
    """Describe a context as JSON; with `resolve=True` file metadata is read (and must exist)."""
    if is_context_spec(context):
        cls = type(context)
        return {
            "type": "spec",
            "class": f"{cls.__module__}:{cls.__qualname__}",
            "fields": _describe(context, "context", resolve),
        }
    return {"type": "dict", "fields": _describe(dict(context), "context", resolve)}


def context_fingerprint(context: Any) -> str:
    """Hash the context's fields and file metadata (the class name does not enter it)."""
    return manifest_fingerprint(context_manifest(context, resolve=True))


def manifest_fingerprint(manifest: Mapping[str, Any]) -> str:
    """Hash a resolved `context_manifest` (its fields: the class name does not enter it)."""
    return sha256_hex(canonical_json(manifest["fields"]))


def context_for_run(context: Any) -> Any:
    """Return the context object one run receives: a private copy, so runs never share state."""
    if isinstance(context, FrozenContext):
        return context if not context else FrozenContext(copy.deepcopy(context._data))
    return copy.deepcopy(context)
