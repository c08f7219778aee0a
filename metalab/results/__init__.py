"""`Results` and `Run`: the runs of a sweep as objects, tables and DataFrames."""

from __future__ import annotations

from ..stored_run import Run
from .collection import Results
from .loading import load_results, table_path

__all__ = ["Results", "Run", "load_results", "table_path"]
