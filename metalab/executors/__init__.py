"""Executors: where runs happen (inline, local Dask, a Dask cluster, SLURM)."""

from __future__ import annotations

from typing import Any

from ..errors import ValidationError
from .base import Executor
from .inline import InlineExecutor

_NAMED = ("inline", "threads", "processes", "dask", "observer")


def resolve_executor(executor: Any) -> Any:
    """Turn what a user passed as `executor=` into an executor object."""
    from .dask import DaskExecutor, ProcessExecutor, ThreadExecutor

    if executor is None or executor == "dask":
        return DaskExecutor()
    if isinstance(executor, str):
        from .observer import StoreObserver

        named = {
            "inline": InlineExecutor,
            "threads": ThreadExecutor,
            "processes": ProcessExecutor,
            "observer": StoreObserver,
        }
        if executor not in named:
            raise ValidationError(
                f"unknown executor {executor!r}; known names: {', '.join(_NAMED)}"
            )
        return named[executor]()
    if hasattr(executor, "execute"):
        return executor
    if (hasattr(executor, "submit") and hasattr(executor, "scheduler")) or hasattr(
        executor, "scheduler_address"
    ):
        return DaskExecutor(executor)
    raise ValidationError(
        f"executor must be a metalab executor, a distributed.Client or a Dask cluster, "
        f"or one of {', '.join(map(repr, _NAMED))}; got {executor!r}"
    )


__all__ = ["Executor", "InlineExecutor", "resolve_executor"]
