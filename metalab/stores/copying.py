"""Copying one run from a store to another, as `transfer` and `FallbackStore.sync` do.

A run is copied in the order a sweep writes it: artifacts, log and derived metrics first, the
record last (with its artifact references rewritten for the destination), so a destination
never holds a completed record whose artifacts are missing, even if a copy is interrupted.
A run the destination already holds, the same or newer, is left alone.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..contracts import Record, Store
from ..errors import StoreError


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


class RunSource(Protocol):
    """What a run is copied from: its artifacts, log and derived metrics."""

    def read_artifact(self, ref: str) -> bytes: ...

    def read_log(self, run_id: str) -> str: ...

    def get_derived(self, run_id: str) -> dict[str, Any]: ...


class UnreadableRun(StoreError):
    """A run of the source whose artifacts cannot be read: nothing of it is copied."""


def matches(exp_id: Any, experiment_id: str | None) -> bool:
    """Whether a record or manifest of experiment `exp_id` is selected by `experiment_id`
    (None: all; `name:version`; or a bare name, every version of it)."""
    return (
        experiment_id is None
        or exp_id in (experiment_id, None)
        or (isinstance(exp_id, str) and exp_id.split(":", 1)[0] == experiment_id)
    )


def copy_run(src: RunSource, dst: Store, record: Record, report: TransferReport) -> None:
    """Copy the run of `record` from `src` into `dst`, counting what was done in `report`.
    UnreadableRun (nothing written) when an artifact of the run cannot be read; idempotent."""
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
            raise UnreadableRun(str(exc)) from exc
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
        new["ref"] = dst.put_artifact(run_id, filename(new), data)
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


def _same_run(
    current: Record,
    record: Record,
    dst: Store,
    copied: list[tuple[dict[str, Any], bytes]],
    log: str,
    derived: dict[str, Any],
) -> bool:
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


def _newer(current: Record, record: Record) -> bool:
    """Whether the destination's record of a run is newer than the source's: it finished
    later, or it completed where the source's did not."""
    if current.get("status") == "completed" and record.get("status") != "completed":
        return True
    if record.get("status") == "completed" and current.get("status") != "completed":
        return False
    return (current.get("finished_at") or "") > (record.get("finished_at") or "")


def filename(descriptor: dict[str, Any]) -> str:
    """Return the file name of an artifact descriptor (from its reference, else its name)."""
    ref = str(descriptor.get("ref", ""))
    name = posixpath.basename(ref.split("://", 1)[-1].split(":", 1)[-1])
    return name or str(descriptor["name"])
