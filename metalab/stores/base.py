"""The store contract: what the runner, the run function and results need from a store.

A store is opened from a locator string (`file:///...`, `postgresql://...`) in every process
that touches it, so workers never receive a live store object (DESIGN invariant 5).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO, Any, Protocol, runtime_checkable


def flush_journal(store: Any) -> None:
    """End a batch of records: a store that journals them for loading (`FileStore`) writes
    its entry now, before the records leave the batch's hands; other stores have nothing to
    do. Looked up on the type, so a stand-in that answers every attribute is no journal."""
    flush = getattr(type(store), "flush_journal", None)
    if flush is not None:
        flush(store)


@runtime_checkable
class Store(Protocol):
    """Persistence for experiments, run records, artifacts, logs, claims and derived metrics."""

    locator: str

    def write_manifest(self, experiment_id: str, manifest: dict[str, Any]) -> str:
        """Add a timestamped manifest (never overwrites one); return where it went."""
        ...

    def manifests(self, experiment_id: str | None = None) -> list[dict[str, Any]]:
        """Return manifests (of one experiment or all), oldest first."""
        ...

    def save_experiment(self, key: str, blob: bytes) -> None:
        """Store the serialized experiment under `key`; idempotent."""
        ...

    def load_experiment(self, key: str) -> bytes:
        """Return the serialized experiment stored under `key`; raise StoreError if absent."""
        ...

    def read_pickled(self, kind: str, key: str) -> tuple[bytes, str | None]:
        """Return the bytes of the experiment `key` (`kind` "experiment") or of the artifact
        reference `key` ("artifact"), about to be unpickled, and why someone other than the
        user could have written them (None when nobody else could; see `metalab._trust`).
        Raise StoreError when they are missing."""
        ...

    def scan(self) -> tuple[set[str], set[str]]:
        """Return (ids with a final record, ids completed) in one pass over the store."""
        ...

    def put_record(self, record: dict[str, Any]) -> None:
        """Persist a final record atomically, replacing any earlier record of that run."""
        ...

    def get_record(self, run_id: str) -> dict[str, Any] | None:
        """Return the record of `run_id`, or None when it has none."""
        ...

    def get_records(self, run_ids: Iterable[str]) -> Iterator[dict[str, Any]]:
        """Yield the records of `run_ids` that exist, in the order given."""
        ...

    def iter_records(self, experiment_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Yield every record (of one experiment, or all)."""
        ...

    def put_artifact(self, run_id: str, filename: str, data: bytes) -> str:
        """Store artifact bytes atomically; return a store-relative reference."""
        ...

    def read_artifact(self, ref: str) -> bytes:
        """Return the bytes behind a reference from `put_artifact`."""
        ...

    def open_log(self, run_id: str) -> IO[str]:
        """Open the run's log for writing (a new attempt starts a new log)."""
        ...

    def put_log(self, run_id: str, text: str) -> None:
        """Replace the run's log with `text` (transfers between stores)."""
        ...

    def read_log(self, run_id: str) -> str:
        """Return the run's log text ("" when it logged nothing)."""
        ...

    def claim(self, run_id: str, owner: dict[str, Any]) -> bool:
        """Claim `run_id` for `owner`; False while another live owner holds it."""
        ...

    def claim_owner(self, run_id: str) -> dict[str, Any] | None:
        """Return the owner of the claim on `run_id` (alive or dead), or None."""
        ...

    def release(self, run_id: str) -> None:
        """Give up a claim this process holds; idempotent."""
        ...

    def claims(self) -> dict[str, dict[str, Any]]:
        """Return live claims: run id -> owner."""
        ...

    def request_cancel(self, session: str) -> None:
        """Ask every run of `session` to stop; idempotent."""
        ...

    def cancel_requested(self, session: str) -> bool:
        """Whether `request_cancel(session)` was called."""
        ...

    def put_derived(self, run_id: str, values: dict[str, Any]) -> None:
        """Replace the derived metrics document of `run_id` atomically."""
        ...

    def get_derived(self, run_id: str) -> dict[str, Any]:
        """Return the derived metrics document of `run_id` ({} when none)."""
        ...
