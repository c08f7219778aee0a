"""Where the core finds stores and executors: by locator scheme or by name.

The core never imports a concrete store or executor (nor the dashboard): it asks this
registry, which imports the implementation named here when it is first needed. Users and
tests may register their own (`register_store`, `register_executor`).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from .contracts import Executor, Store, SweepDashboard
from .errors import StoreError, ValidationError
from .locators import KNOWN_SCHEMES, scheme_of

_STORES: dict[str, str] = {
    "file": "metalab.stores.file:FileStore",
    "postgresql": "metalab.stores.postgres:PostgresStore",
    "postgres": "metalab.stores.postgres:PostgresStore",
    "fallback": "metalab.stores.fallback:FallbackStore",
    "memory": "metalab.testing.memory:MemoryStore",
}
_EXECUTORS: dict[str, str] = {
    "dask": "metalab.executors.dask:DaskExecutor",
    "threads": "metalab.executors.dask:ThreadExecutor",
    "processes": "metalab.executors.dask:ProcessExecutor",
    "inline": "metalab.executors.inline:InlineExecutor",
    "jobqueue": "metalab.executors.jobqueue:JobqueueExecutor",
    "slurm": "metalab.executors.slurm:SlurmExecutor",
    "observer": "metalab.following:StoreFollower",
}
_NAMED = ("inline", "threads", "processes", "dask", "observer")
"""The executors `run(executor=<name>)` accepts by name (the others need configuration)."""
_DASHBOARD = "metalab.dashboard:DASHBOARD"
_REPORT_WRITER = "metalab.report:write_report"
_RESULTS_LOADER = "metalab.results:load_results"
_SWEEP_RESULTS = "metalab.results.loading:sweep_results"


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def register_store(scheme: str, target: str | type) -> None:
    """Open locators of `scheme` (`<scheme>://...`) with `target`, a store class or its
    `"module:Class"` name; the class's `open(locator, create=...)` opens them."""
    _STORES[scheme.lower()] = target if isinstance(target, str) else _name(target)


def register_executor(name: str, target: str | type) -> None:
    """Make `run(executor=name)` use `target`, an executor class or its `"module:Class"`."""
    _EXECUTORS[name] = target if isinstance(target, str) else _name(target)


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


# ---------------------------------------------------------------------------- stores
def store_class(scheme: str) -> Any:
    """Return the store class that opens locators of `scheme`."""
    target = _STORES.get(scheme)
    if target is None:
        raise StoreError(
            f"unknown store scheme {scheme + '://'!r}; known schemes: "
            f"{', '.join(KNOWN_SCHEMES)} (or a plain filesystem path)"
        )
    return _load(target)


def open_store(locator: Any, *, create: bool = True) -> Store:
    """Open the store named by `locator`: a path, a `file://`, `postgresql://` or
    `fallback:` locator. A store object is returned unchanged; with `create=False` a
    store that does not exist yet is an error."""
    if not isinstance(create, bool):
        raise ValidationError(f"create must be True or False, got {create!r}")
    if isinstance(locator, Store):
        return locator
    if not isinstance(locator, (str, os.PathLike)):
        raise StoreError(
            f"store must be a path, a locator string or a store object, got {locator!r}"
        )
    text = os.fspath(locator)
    return store_class(scheme_of(text)).open(text, create=create)


# ---------------------------------------------------------------------------- executors
def executor_class(name: str) -> Any:
    """Return the executor class registered as `name` (`"slurm"`) or named so in a
    manifest (`"SlurmExecutor"`); None when no executor has that name."""
    if name in _EXECUTORS:
        return _load(_EXECUTORS[name])
    for target in dict.fromkeys(_EXECUTORS.values()):
        if target.rpartition(":")[2] == name:
            return _load(target)
    return None


def resolve_executor(executor: Any) -> Executor:
    """Turn what a user passed as `executor=` into an executor: None (a local Dask
    cluster, or the active client), a name, a metalab executor, or a `distributed.Client`
    or Dask cluster."""
    if executor is None:
        return _load(_EXECUTORS["dask"])()
    if isinstance(executor, str):
        if executor not in _NAMED:
            raise ValidationError(
                f"unknown executor {executor!r}; known names: {', '.join(_NAMED)}"
            )
        return _load(_EXECUTORS[executor])()
    if isinstance(executor, type):  # a class has the methods an executor's protocol asks
        raise ValidationError(
            f"executor must be an executor object, got the class {executor.__qualname__}: "
            f"make one, executor={executor.__qualname__}(...)"
        )
    if isinstance(executor, Executor):
        return executor
    if _is_dask(executor):
        return _load(_EXECUTORS["dask"])(executor)
    raise ValidationError(
        f"executor must be a metalab executor, a distributed.Client or a Dask cluster, "
        f"or one of {', '.join(map(repr, _NAMED))}; got {executor!r}"
    )


def _is_dask(target: Any) -> bool:
    """Whether `target` is a `distributed.Client` or a Dask cluster (without importing
    distributed: a process that has neither imported it cannot hold one)."""
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return False
    from distributed.deploy import Cluster

    if isinstance(target, (distributed.Client, Cluster)):
        return True
    # a cluster of another package that Dask clients connect to (dask-gateway's, say)
    return isinstance(getattr(target, "scheduler_address", None), str)


def report_writer() -> Callable[..., Path]:
    """Return what writes the HTML report of a `Results` (`metalab.report.write_report`)."""
    return cast(Callable[..., Path], _load(_REPORT_WRITER))


def results_loader() -> Callable[..., Any]:
    """Return what loads a store's results (`metalab.load_results`), for the views."""
    return cast(Callable[..., Any], _load(_RESULTS_LOADER))


def sweep_results_loader() -> Callable[..., Any]:
    """Return what reads a sweep's runs back from its store (`RunHandle.result()`):
    `(store, experiment_id, run_ids) -> Results`."""
    return cast(Callable[..., Any], _load(_SWEEP_RESULTS))


def dashboard() -> SweepDashboard | None:
    """Return what shows sweeps on a Dask dashboard, or None where distributed is missing."""
    try:
        return _load(_DASHBOARD)
    except ImportError:
        return None
