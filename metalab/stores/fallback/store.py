"""`FallbackStore`: the `Store` contract over a primary store and a fallback store."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, cast

from ...contracts import Owner, Record, Store, StoreDefaults
from ...locators import redact_password
from ...registry import open_store
from ..copying import TransferReport
from .locator import (
    DEFAULT_RETRY_AFTER,
    FallbackLocation,
    check_arguments,
    parse_locator,
    without_reconnect_wait_of,
)
from .log import FallbackLog
from .routing import Router, unavailable
from .sync import sync


class FallbackStore(StoreDefaults):
    """A primary store with a fallback for the times it cannot be reached; see the package
    doc. It answers no queries of its own (`capabilities` declares none): the fallback may
    hold runs the primary's database does not."""

    cancel_poll_interval = 1.0
    """Seconds between two checks of a sweep's cancellation: each asks both stores, and
    the primary is a database as a rule."""

    def __init__(
        self,
        primary: Store | str | os.PathLike[str],
        fallback: Store | str | os.PathLike[str],
        write_to_both: bool = False,
        *,
        retry_after: float = DEFAULT_RETRY_AFTER,
    ):
        check_arguments(primary, fallback, write_to_both, retry_after)
        self._given_primary = primary
        self.fallback = open_store(fallback)
        self._router = Router(
            without_reconnect_wait_of(primary),
            self.fallback,
            write_to_both=write_to_both,
            retry_after=float(retry_after),
        )
        self._router.open_primary()
        self._claimed: dict[str, Store] = {}

    @classmethod
    def open(cls, locator: str, *, create: bool = True) -> FallbackStore:
        """Open a `fallback:?primary=...&fallback=...` locator (both stores are created when
        missing, whatever `create`); a ValidationError names an option that is unknown,
        given twice or not valid."""
        location = parse_locator(locator)
        return cls(
            location.primary,
            location.fallback,
            write_to_both=location.write_to_both,
            retry_after=location.retry_after,
        )

    # ---------------------------------------------------------------- identity
    @property
    def primary(self) -> Store:
        """The primary store (opened now if it could not be before: StoreUnavailableError
        while it cannot be reached)."""
        return self._router.primary

    @property
    def write_to_both(self) -> bool:
        """Whether every write also goes to the fallback (a live backup)."""
        return self._router.write_to_both

    @property
    def retry_after(self) -> float:
        """Seconds writes go to the fallback once the primary could not be reached."""
        return self._router.retry_after

    @property
    def locator(self) -> str:
        """`fallback:?primary=<locator>&fallback=<locator>[&write_to_both=1][&retry_after=s]`."""
        return FallbackLocation(
            self._router.primary_locator,
            self.fallback.locator,
            self.write_to_both,
            self.retry_after,
        ).locator

    @property
    def public_locator(self) -> str:
        """The locator without the passwords of its stores."""
        return redact_password(self.locator)

    def work_directory(self) -> Path | None:
        """The fallback's work directory: it stays reachable when the primary does not."""
        return self.fallback.work_directory()

    def __repr__(self) -> str:
        primary = redact_password(self._router.primary_locator)
        return f"FallbackStore({primary!r}, {self.fallback.locator!r})"

    # ---------------------------------------------------------------- experiments
    def write_manifest(self, experiment_id: str, manifest: Mapping[str, Any]) -> str:
        """Add a manifest to the store writes go to now; return where it went."""
        return self._router.write(lambda store: store.write_manifest(experiment_id, manifest))

    def manifests(self, experiment_id: str | None = None) -> list[dict[str, Any]]:
        """Return the manifests of both stores (each once), oldest first."""
        seen: dict[tuple[Any, ...], dict[str, Any]] = {}
        for found in self._router.read(lambda store: store.manifests(experiment_id)):
            for manifest in found:
                key = (
                    manifest.get("experiment_id"),
                    manifest.get("session"),
                    manifest.get("submitted_at"),
                )
                seen.setdefault(key, manifest)
        return sorted(seen.values(), key=lambda m: m.get("submitted_at", ""))

    def save_experiment(self, key: str, blob: bytes) -> None:
        """Store the experiment in both stores (a worker must find it whichever store it
        reaches); idempotent."""
        self._router.both(lambda store: store.save_experiment(key, blob))

    def load_experiment(self, key: str) -> bytes:
        """Return the experiment from the first store that has it; StoreError if neither."""
        return self._router.first(lambda store: store.load_experiment(key), None)

    def read_pickled(self, kind: str, key: str) -> tuple[bytes, str | None]:
        """Read as `load_experiment` and `read_artifact` do: the first store that has it."""
        return self._router.first(lambda store: store.read_pickled(kind, key), f"{kind} {key!r}")

    # ---------------------------------------------------------------- records
    def scan(self) -> tuple[set[str], set[str]]:
        """Return (ids with a final record, ids completed) over both stores."""
        final: set[str] = set()
        done: set[str] = set()
        for f, d in self._router.read(lambda store: store.scan()):
            final |= f
            done |= d
        return final, done

    def put_record(self, record: Record) -> None:
        """Persist a final record where writes go now (see `Router.write`); idempotent."""
        self._router.write(lambda store: store.put_record(record))

    def flush_journal(self) -> None:
        """Let each store end its batch of records (a file store journals them)."""
        opened = self._router.primary_opened
        if opened is not None:
            opened.flush_journal()
        self.fallback.flush_journal()

    def get_record(self, run_id: str) -> Record | None:
        """Return the newer of the two stores' records of `run_id`, or None."""
        found = self._router.read(lambda store: store.get_record(run_id))
        return _newest([r for r in found if r is not None])

    def get_records(self, run_ids: Iterable[str]) -> Iterator[Record]:
        """Yield the records of `run_ids` that exist, in the order given."""
        for run_id in run_ids:
            record = self.get_record(run_id)
            if record is not None:
                yield record

    def iter_records(self, experiment_id: str | None = None) -> Iterator[Record]:
        """Yield every record of both stores, the newer one of a run recorded in both."""
        merged: dict[str, Record] = {}
        for records in self._router.read(lambda store: store.iter_records(experiment_id)):
            for record in records:
                current = merged.get(record["run_id"])
                if current is None or _newest([current, record]) is record:
                    merged[record["run_id"]] = record
        yield from merged.values()

    # ---------------------------------------------------------------- artifacts, logs, derived
    def put_artifact(self, run_id: str, filename: str, data: bytes) -> str:
        """Store artifact bytes where writes go now; return the reference."""
        return self._router.write(lambda store: store.put_artifact(run_id, filename, data))

    def read_artifact(self, ref: str) -> bytes:
        """Return the bytes from the first store that has them; StoreError if neither."""
        return self._router.first(lambda store: store.read_artifact(ref), f"artifact {ref!r}")

    def open_log(self, run_id: str) -> IO[str]:
        """A log whose lines follow the writes: to the primary while it answers, to the
        fallback (with the lines written so far) from the moment it does not, to both with
        `write_to_both`."""
        return cast(IO[str], FallbackLog(self._router, run_id))

    def put_log(self, run_id: str, text: str) -> None:
        """Replace the run's log where writes go now; idempotent."""
        self._router.write(lambda store: store.put_log(run_id, text))

    def read_log(self, run_id: str) -> str:
        """Return the primary's log of the run, or the fallback's when the primary has none."""
        logs = self._router.read(lambda store: store.read_log(run_id))
        return next((log for log in logs if log), "")

    def put_derived(self, run_id: str, values: Mapping[str, Any]) -> None:
        """Replace the derived metrics document where writes go now; idempotent."""
        self._router.write(lambda store: store.put_derived(run_id, values))

    def get_derived(self, run_id: str) -> dict[str, Any]:
        """Return the first non-empty derived metrics document of the two stores ({})."""
        for document in self._router.read(lambda store: store.get_derived(run_id)):
            if document:
                return document
        return {}

    # ---------------------------------------------------------------- claims and control
    def claim(self, run_id: str, owner: Owner) -> bool:
        """Claim `run_id` in the store writes go to now; False while a live owner holds it."""
        store, claimed = self._router.answering(lambda store: store.claim(run_id, owner))
        if claimed:
            self._claimed[run_id] = store
        return claimed

    def claim_owner(self, run_id: str) -> Owner | None:
        """Return the owner of the claim on `run_id` in either store, or None."""
        for owner in self._router.read(lambda store: store.claim_owner(run_id)):
            if owner is not None:
                return owner
        return None

    def release(self, run_id: str) -> None:
        """Give up the claim in the store that took it; idempotent."""
        store = self._claimed.pop(run_id, None)
        if store is None:
            return
        try:
            store.release(run_id)
        except Exception as exc:
            if not unavailable(exc):
                raise
            self._router.mark_down(exc)  # the claim lapses with its lease

    def claims(self) -> dict[str, Owner]:
        """Return the live claims of both stores."""
        out: dict[str, Owner] = {}
        for found in self._router.read(lambda store: store.claims()):
            out.update(found)
        return out

    def request_cancel(self, session: str) -> None:
        """Ask every run of `session` to stop, in both stores; idempotent."""
        self._router.both(lambda store: store.request_cancel(session))

    def cancel_requested(self, session: str) -> bool:
        """Return whether either store was asked to stop `session`."""
        return any(self._router.read(lambda store: store.cancel_requested(session)))

    # ---------------------------------------------------------------- sync
    def sync(self, experiment_id: str | None = None) -> TransferReport:
        """Copy every run the fallback holds into the primary (idempotent); return the report.

        Run after the primary is back. Records already in the primary are kept when they
        are the same or newer. The primary is written as when it is used alone (a PostgreSQL
        primary given as a locator retries for its `reconnect_timeout`). Raises
        `StoreUnavailableError` if the primary is still down.
        """
        self._router.primary  # noqa: B018 - opens a primary that could not be opened before
        report = sync(self.fallback, self._syncing_primary(), experiment_id)
        self._router.mark_up()
        return report

    def _syncing_primary(self) -> Store:
        """The primary as `sync` writes to it: as it was given, so that a PostgreSQL primary
        waits for its server as it does outside a FallbackStore."""
        given = self._given_primary
        return open_store(given) if isinstance(given, str | os.PathLike) else given


def _newest(records: list[Record]) -> Record | None:
    """The record finished last (a completed one wins a tie)."""
    if not records:
        return None
    return max(
        records,
        key=lambda r: (r.get("finished_at") or "", r.get("status") == "completed"),
    )
