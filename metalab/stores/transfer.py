"""Copy experiments between stores: every manifest, experiment, record, artifact, log and
derived metric. Idempotent: copying again changes nothing and copies nothing twice.

A run is copied in the order a sweep writes it: artifacts, log and derived metrics first, the
record last (with its artifact references rewritten for the destination), so a destination
never holds a completed record whose artifacts are missing, even if a copy is interrupted.

The source may come from anyone: a manifest or run whose ids or artifact names have not the
form metalab gives them (see `metalab._trust`) is skipped with an `UnsafeStoreWarning`, and
nothing is written for it.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any

from .. import _trust
from ..errors import StoreError, ValidationError
from .base import flush_journal
from .locator import create_store


@dataclass
class TransferReport:
    """What a transfer did."""

    source: str
    destination: str
    experiments: list[str] = field(default_factory=list)
    manifests: int = 0
    records: int = 0
    unchanged: int = 0
    kept_newer: int = 0
    artifacts: int = 0
    logs: int = 0
    derived: int = 0
    skipped: int = 0
    """Runs not copied: their ids cannot name files, or an artifact is missing or outside
    the source (each named by an `UnsafeStoreWarning`)."""

    def __str__(self) -> str:
        return (
            f"{self.source} -> {self.destination}: {self.records} record(s) copied, "
            f"{self.unchanged} already there"
            + (f", {self.kept_newer} newer there kept" if self.kept_newer else "")
            + (f", {self.skipped} skipped" if self.skipped else "")
            + f"; {self.artifacts} artifact(s), {self.logs} log(s), "
            f"{self.derived} derived document(s), {self.manifests} manifest(s); experiments: "
            f"{', '.join(self.experiments) or 'none'}"
        )


def transfer(source: Any, destination: Any, *, experiment_id: str | None = None) -> TransferReport:
    """Copy the runs of `source` (all experiments, or `experiment_id`) into `destination`.

    Both are locators, paths or store objects; the destination is created when missing.
    `experiment_id` is `name:version` or a bare name (every version of it).
    """
    src = create_store(source, create=False)
    dst = create_store(destination, create=True)
    if _same_store(src, dst):
        raise ValidationError(f"source and destination are the same store: {_name(src)}")
    report = TransferReport(_name(src), _name(dst))

    manifests = [
        m
        for m in _trust.usable_manifests(src.manifests(), src)
        if _matches(m.get("experiment_id"), experiment_id)
    ]
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

    experiments: set[str] = set()
    for record in src.iter_records():
        exp_id = record.get("experiment_id")
        if not _matches(exp_id, experiment_id):
            continue
        if not _safe_run(src, record):
            report.skipped += 1
            continue
        try:
            _copy_run(src, dst, record, report)
        except _UnreadableRun as exc:  # an artifact missing or outside the source
            _trust.skipped(f"run record {record['run_id']!r} of {_name(src)}", str(exc))
            report.skipped += 1
            continue
        experiments.add(exp_id)
    flush_journal(dst)
    if experiment_id is not None and not experiments and not manifests:
        known = sorted({m.get("experiment_id") for m in src.manifests()} - {None})
        raise ValidationError(
            f"{_name(src)} holds no experiment {experiment_id!r}; it holds: "
            f"{', '.join(known) or 'nothing'}"
        )
    report.experiments = sorted(experiments | {m["experiment_id"] for m in manifests})
    return report


def _matches(exp_id: Any, experiment_id: str | None) -> bool:
    """Whether a record or manifest of experiment `exp_id` is selected by `experiment_id`
    (None: all; `name:version`; or a bare name, every version of it)."""
    return (
        experiment_id is None
        or exp_id in (experiment_id, None)
        or (isinstance(exp_id, str) and exp_id.split(":", 1)[0] == experiment_id)
    )


def _safe_run(src: Any, record: dict[str, Any]) -> bool:
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


def _descriptors(record: dict[str, Any]) -> list[Any]:
    artifacts = record.get("artifacts") or []
    return list(artifacts.values() if isinstance(artifacts, dict) else artifacts)


def _safe_descriptor(descriptor: Any) -> bool:
    if not isinstance(descriptor, dict) or not isinstance(descriptor.get("ref"), str):
        return False
    return _trust.is_file_name(_filename({"name": None, **descriptor}))


def export_store(source: Any, destination: Any, experiment_id: str | None = None) -> TransferReport:
    """Export a store (e.g. PostgreSQL) into another (e.g. a directory); see `transfer`."""
    return transfer(source, destination, experiment_id=experiment_id)


def import_from_filestore(
    source: Any, destination: Any, experiment_id: str | None = None
) -> TransferReport:
    """Import a file store (a directory) into another store (e.g. PostgreSQL)."""
    src = create_store(source, create=False)
    if getattr(src, "scheme", None) != "file":
        raise ValidationError(
            f"import_from_filestore reads a file store (a directory), got {_name(src)}; "
            "use export_store to copy between any two stores"
        )
    return transfer(src, destination, experiment_id=experiment_id)


class _UnreadableRun(StoreError):
    """A run of the source whose artifacts cannot be read: nothing of it is copied."""


def _copy_run(src: Any, dst: Any, record: dict[str, Any], report: TransferReport) -> None:
    run_id = record["run_id"]
    record = dict(record)
    artifacts = record.get("artifacts") or []
    copied: list[tuple[dict[str, Any], bytes]] = []
    descriptors = artifacts.values() if isinstance(artifacts, dict) else artifacts
    new_descriptors = []
    for descriptor in descriptors:
        try:
            data = src.read_artifact(descriptor["ref"])
        except StoreError as exc:
            raise _UnreadableRun(str(exc)) from exc
        new = dict(descriptor)
        copied.append((new, data))
        new_descriptors.append(new)
    log = src.read_log(run_id)
    derived = src.get_derived(run_id)

    current = dst.get_record(run_id)
    if current is not None and _same_run(current, record, dst, copied, log, derived):
        report.unchanged += 1
        return
    if current is not None and current != record and _newer(current, record):
        report.kept_newer += 1  # the run ran again there since: never go back
        return
    for new, data in copied:
        new["ref"] = dst.put_artifact(run_id, _filename(new), data)
        report.artifacts += 1
    if isinstance(artifacts, dict):
        record["artifacts"] = {d["name"]: d for d in new_descriptors}
    else:
        record["artifacts"] = new_descriptors
    if log:
        dst.put_log(run_id, log)
        report.logs += 1
    if derived:
        dst.put_derived(run_id, derived)
        report.derived += 1
    dst.put_record(record)
    report.records += 1


def _same_run(current, record, dst, copied, log, derived) -> bool:
    """Whether the destination already holds this run exactly (record, artifacts, log, derived)."""
    strip = ("artifacts",)
    if {k: v for k, v in current.items() if k not in strip} != {
        k: v for k, v in record.items() if k not in strip
    }:
        return False
    theirs = current.get("artifacts") or []
    theirs = list(theirs.values()) if isinstance(theirs, dict) else list(theirs)
    if len(theirs) != len(copied):
        return False
    for descriptor, (new, data) in zip(theirs, copied):
        if {k: v for k, v in descriptor.items() if k != "ref"} != {
            k: v for k, v in new.items() if k != "ref"
        }:
            return False
        try:
            if dst.read_artifact(descriptor["ref"]) != data:
                return False
        except StoreError:
            return False
    # what the source lacks is not copied, so it cannot make the runs differ
    same_log = not log or dst.read_log(record["run_id"]) == log
    return same_log and (not derived or dst.get_derived(record["run_id"]) == derived)


def _newer(current: dict[str, Any], record: dict[str, Any]) -> bool:
    """Whether the destination's record of a run is newer than the source's: it finished
    later, or it completed where the source's did not."""
    if current.get("status") == "completed" and record.get("status") != "completed":
        return True
    if record.get("status") == "completed" and current.get("status") != "completed":
        return False
    return (current.get("finished_at") or "") > (record.get("finished_at") or "")


def _filename(descriptor: dict[str, Any]) -> str:
    ref = str(descriptor.get("ref", ""))
    name = posixpath.basename(ref.split("://", 1)[-1].split(":", 1)[-1])
    return name or str(descriptor["name"])


def _manifest_key(manifest: dict[str, Any]) -> tuple[Any, ...]:
    return (
        manifest.get("experiment_id"),
        manifest.get("session"),
        manifest.get("submitted_at"),
        manifest.get("experiment_key"),
    )


def _name(store: Any) -> str:
    from .locator import to_locator

    return to_locator(store)


def _same_store(a: Any, b: Any) -> bool:
    return getattr(a, "locator", None) is not None and a.locator == getattr(b, "locator", None)
