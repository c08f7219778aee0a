"""`Results` and `Run`: the runs of a sweep as objects, tables and DataFrames."""

from __future__ import annotations

from .collection import Results
from .run import Run

__all__ = ["Results", "Run"]
