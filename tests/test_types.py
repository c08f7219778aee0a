"""`metalab.types`: the names users write in signatures of operations and derived metrics."""

from __future__ import annotations

import metalab
import metalab.types


def test_types_exports_metric_run_record_and_status():
    assert {"Metric", "Params", "RunRecord", "Status"} <= set(metalab.types.__all__)
    assert metalab.types.RunRecord is metalab.RunRecord
    assert metalab.types.Status is metalab.Status
    assert metalab.types.Status.COMPLETED == "completed"
    for name in metalab.types.__all__:
        assert getattr(metalab.types, name) is not None
