"""Copying what a `FallbackStore`'s fallback took into its primary, once the primary is back."""

from __future__ import annotations

from typing import Any

from ...contracts import Store
from ...errors import StoreError, ValidationError
from ..copying import TransferReport, copy_run, matches
from ..locator import to_locator


def sync(fallback: Store, primary: Store, experiment_id: str | None) -> TransferReport:
    """Copy every run `fallback` holds (of `experiment_id`, or all) into `primary`, with the
    manifests and experiments they need; idempotent. Records already in the primary are
    kept when they are the same or newer. ValidationError when the fallback holds no such
    experiment."""
    report = TransferReport(to_locator(fallback), to_locator(primary))
    if report.source == report.destination:
        raise ValidationError(
            f"primary and fallback are the same store ({report.source}): sync copies what "
            "a fallback took into another store, its primary"
        )
    manifests = [m for m in fallback.manifests() if matches(m.get("experiment_id"), experiment_id)]
    if experiment_id is not None and not manifests:
        held = sorted({str(m.get("experiment_id")) for m in fallback.manifests()})
        raise ValidationError(
            f"the fallback {to_locator(fallback)} holds no experiment "
            f"{experiment_id!r}; it holds: {', '.join(held) or 'nothing'}"
        )
    for manifest in manifests:
        _copy_manifest(fallback, primary, manifest, report)
    reader = _Reader(fallback, primary)
    for record in fallback.iter_records():
        if not matches(record.get("experiment_id"), experiment_id):
            continue
        copy_run(reader, primary, record, report)
        report.experiments = sorted({*report.experiments, record["experiment_id"]})
    return report


def _copy_manifest(
    fallback: Store, primary: Store, manifest: dict[str, Any], report: TransferReport
) -> None:
    clean = {k: v for k, v in manifest.items() if not k.startswith("_")}
    key = clean.get("experiment_key")
    if key:
        primary.save_experiment(key, fallback.load_experiment(key))
    known = {
        (m.get("experiment_id"), m.get("session"), m.get("submitted_at"))
        for m in primary.manifests(clean.get("experiment_id"))
    }
    if (clean.get("experiment_id"), clean.get("session"), clean.get("submitted_at")) not in known:
        primary.write_manifest(clean["experiment_id"], clean)
        report.manifests += 1


class _Reader:
    """The fallback as a source of runs, finding artifacts written to either store."""

    def __init__(self, fallback: Store, primary: Store):
        self._fallback, self._primary = fallback, primary

    def read_artifact(self, ref: str) -> bytes:
        try:
            return self._fallback.read_artifact(ref)
        except StoreError:
            return self._primary.read_artifact(ref)

    def read_log(self, run_id: str) -> str:
        return self._fallback.read_log(run_id)

    def get_derived(self, run_id: str) -> dict[str, Any]:
        return self._fallback.get_derived(run_id)
