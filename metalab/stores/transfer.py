"""Copy experiments between stores: every manifest, experiment, record, artifact, log and
derived metric. Idempotent: copying again changes nothing and copies nothing twice.

Runs are copied as `metalab.stores.copying` copies them: the record last, so a destination
never holds a completed record whose artifacts are missing, even if a copy is interrupted.

The source may come from anyone: a manifest or run whose ids or artifact names have not the
form metalab gives them (see `metalab._trust`) is skipped with an `UnsafeStoreWarning`, and
nothing is written for it.
"""

from __future__ import annotations

from typing import Any

from .. import _trust
from ..contracts import Record, Store
from ..errors import StoreError, ValidationError
from ..locators import scheme_of
from ..registry import open_store
from .copying import TransferReport, UnreadableRun, copy_run, filename, matches
from .locator import to_locator

__all__ = ["TransferReport", "export_store", "import_from_filestore", "transfer"]


def transfer(source: Any, destination: Any, *, experiment_id: str | None = None) -> TransferReport:
    """Copy the runs of `source` (all experiments, or `experiment_id`) into `destination`.

    Both are locators, paths or store objects; the destination is created when missing.
    `experiment_id` is `name:version` or a bare name (every version of it).
    """
    src = open_store(source, create=False)
    manifests = [
        m
        for m in _trust.usable_manifests(src.manifests(), src)
        if matches(m.get("experiment_id"), experiment_id)
    ]
    if experiment_id is not None and not manifests:
        _check_holds(src, experiment_id)  # before the destination is made
    dst = open_store(destination, create=True)
    if src.locator == dst.locator:
        raise ValidationError(f"source and destination are the same store: {_name(src)}")
    report = TransferReport(_name(src), _name(dst))

    existing = {_manifest_key(m) for m in dst.manifests()}
    for manifest in manifests:
        clean = {k: v for k, v in manifest.items() if not k.startswith("_")}
        key = clean.get("experiment_key")
        if key:
            try:
                dst.load_experiment(key)
            except StoreError:
                dst.save_experiment(key, src.load_experiment(key))
        if _manifest_key(clean) not in existing:
            dst.write_manifest(clean["experiment_id"], clean)
            existing.add(_manifest_key(clean))
            report.manifests += 1

    experiments: set[Any] = set()
    for record in src.iter_records():
        exp_id = record.get("experiment_id")
        if not matches(exp_id, experiment_id):
            continue
        if not _safe_run(src, record):
            report.skipped += 1
            continue
        try:
            copy_run(src, dst, record, report)
        except UnreadableRun as exc:  # an artifact missing or outside the source
            _trust.skipped(f"run record {record['run_id']!r} of {_name(src)}", str(exc))
            report.skipped += 1
            continue
        experiments.add(exp_id)
    dst.flush_journal()
    report.experiments = sorted(experiments | {m["experiment_id"] for m in manifests})
    return report


def _check_holds(src: Store, experiment_id: str) -> None:
    """`ValidationError` naming what `src` holds unless it holds a record of
    `experiment_id` (it has no manifest of it)."""
    if any(matches(r.get("experiment_id"), experiment_id) for r in src.iter_records()):
        return
    known = sorted({str(m["experiment_id"]) for m in src.manifests() if m.get("experiment_id")})
    raise ValidationError(
        f"{_name(src)} holds no experiment {experiment_id!r}; it holds: "
        f"{', '.join(known) or 'nothing'}"
    )


def _safe_run(src: Store, record: Record) -> bool:
    """Whether a record's run id and artifact names may name files; warns when not."""
    run_id = record.get("run_id")
    if not _trust.is_run_id(run_id):
        why = f"its run id {run_id!r} is not a run id (32 hexadecimal digits)"
    else:
        bad = [d for d in _descriptors(record) if not _safe_descriptor(d)]
        if not bad:
            return True
        why = f"its artifact {bad[0]!r} names no file of the run's directory"
    _trust.skipped(f"run record {run_id!r} of {_name(src)}", why)
    return False


def _descriptors(record: Record) -> list[Any]:
    artifacts = record.get("artifacts") or []
    return list(artifacts.values() if isinstance(artifacts, dict) else artifacts)


def _safe_descriptor(descriptor: Any) -> bool:
    if not isinstance(descriptor, dict) or not isinstance(descriptor.get("ref"), str):
        return False
    return _trust.is_file_name(filename({"name": None, **descriptor}))


def export_store(source: Any, destination: Any, experiment_id: str | None = None) -> TransferReport:
    """Export a store (e.g. PostgreSQL) into another (e.g. a directory); see `transfer`."""
    return transfer(source, destination, experiment_id=experiment_id)


def import_from_filestore(
    source: Any, destination: Any, experiment_id: str | None = None
) -> TransferReport:
    """Import a file store (a directory) into another store (e.g. PostgreSQL)."""
    src = open_store(source, create=False)
    if scheme_of(src.locator) != "file":
        raise ValidationError(
            f"import_from_filestore reads a file store (a directory), got {_name(src)}; "
            "use export_store to copy between any two stores"
        )
    return transfer(src, destination, experiment_id=experiment_id)


def _manifest_key(manifest: dict[str, Any]) -> tuple[Any, ...]:
    return (
        manifest.get("experiment_id"),
        manifest.get("session"),
        manifest.get("submitted_at"),
        manifest.get("experiment_key"),
    )


def _name(store: Store) -> str:
    return to_locator(store)
