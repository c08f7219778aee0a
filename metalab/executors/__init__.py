"""Executors: where runs happen (inline, local Dask, a Dask cluster, SLURM).

Each satisfies `metalab.contracts.Executor`; the core finds them through `metalab.registry`.
"""

from ..contracts import Executor
from ..registry import resolve_executor
from .inline import InlineExecutor

__all__ = ["Executor", "InlineExecutor", "resolve_executor"]
