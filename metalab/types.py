"""Types used in signatures users write (operations, derived metric functions, tools)."""

from __future__ import annotations

from typing import Any, TypeAlias

from .record import RunRecord, Status

Metric: TypeAlias = int | float | bool
"""A scalar metric value: what `capture.metric` stores and derived functions return."""

Params: TypeAlias = dict[str, Any]
"""The resolved parameters of one run."""

__all__ = ["Metric", "Params", "RunRecord", "Status"]
