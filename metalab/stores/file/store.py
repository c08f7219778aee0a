"""`FileStore`: a directory of JSON records, artifacts and logs that can be moved or rsynced.

The store contract (`metalab.contracts.Store`, with a journal: `JournalStore`) over the
parts of this package: `layout` (where what is kept), `experiments`, `records`, `claims`,
`journal` and `loading`; artifacts, logs, derived metrics and cancellation markers are
plain files handled here.

Every file is written to a temporary name and renamed into place, so readers see whole files
(`metalab.stores.file.atomic`). A store may come from anyone, so what it holds is checked
before it becomes a path (see `metalab._trust`): a record is read only from a file named
after its run id, a manifest only when its experiment id, name and session have their form;
anything else is skipped with an `UnsafeStoreWarning`.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

from ... import _trust
from ...contracts import JournalStore, StoreCapabilities, StoreDefaults, TableStore
from ...errors import StoreError
from ...locators import path_from_file_uri
from ...record import encode_record
from ..atomic import NotAFile, atomic_write, read_bytes
from . import loading
from .claims import ClaimFiles
from .experiments import ExperimentFiles
from .journal import Journal
from .layout import Layout, NotOwnDirectory
from .records import RecordFiles
from .table import TABLE, completed_ids, current_runs, load_table


class FileStore(StoreDefaults):
    """A store in a directory tree; safe for many processes and hosts on a shared filesystem."""

    scheme = "file"
    capabilities: ClassVar[StoreCapabilities] = StoreCapabilities(journal=True, table=True)

    def __init__(self, root: str | os.PathLike):
        self.root = Path(os.path.abspath(os.fspath(root)))
        self._locator = self.root.as_uri()
        self._layout = Layout(self.root)
        self._claims = ClaimFiles(self._layout)
        # what this process noted of the records it wrote, for loading
        self._journal = Journal(f"{self._layout.top}/cache/journal")
        self._records = RecordFiles(self._layout, self._claims, self._journal)
        self._experiments = ExperimentFiles(self._layout)

    # ---------------------------------------------------------------- opening
    @classmethod
    def open(cls, locator: str | os.PathLike, *, create: bool = True) -> FileStore:
        """Open the store at `locator`, a path or a `file://` URI, creating its layout when
        `create` (idempotent). `StoreError` when there is no store and `create` is False,
        or the path cannot hold one; `StoreFormatError` for a store of a later metalab."""
        text = os.fspath(locator)
        if text[:7].lower() == "file://":
            text = path_from_file_uri(text)
        store = cls(text)
        store._layout.check_meta(create)
        return store

    @property
    def locator(self) -> str:
        """`file://` URI of the store root."""
        return self._locator

    def work_directory(self) -> Path:
        """The store's root: executors keep their files (scripts, batch logs) beside runs."""
        return self.root

    def footprint(self, runs: int) -> dict[str, int]:
        """Each run's record and `.done` marker, and the shard directories of records and
        claims they open (see `layout`)."""
        files = 2 * runs
        return {"files": files, "inodes": files + 2 * min(runs, 256)}

    def __repr__(self) -> str:
        return f"FileStore({str(self.root)!r})"

    @property
    def version(self) -> int:
        """The layout version of this store (see `metalab.stores.file.layout`)."""
        return self._layout.version

    def __reduce__(self):
        return (_reopened, (str(self.root), self.version))

    # ---------------------------------------------------------------- experiments
    def write_manifest(self, experiment_id: str, manifest: Mapping[str, Any]) -> str:
        """Write a manifest under a unique timestamped name; never overwrites. `StoreError`
        for an experiment id that has not its form, or a manifest that cannot be written."""
        return self._experiments.write_manifest(experiment_id, manifest)

    def manifests(self, experiment_id: str | None = None) -> list[dict[str, Any]]:
        """Return manifests, oldest first, each with its file name under `_file`.

        A manifest whose experiment id is not the one its file is named after, or whose
        name, version, session or experiment key has not their form, is skipped with an
        `UnsafeStoreWarning`."""
        return self._experiments.manifests(experiment_id)

    def save_experiment(self, key: str, blob: bytes) -> None:
        """Write the serialized experiment once; idempotent (a file holding other bytes,
        damaged or changed by someone, is replaced)."""
        self._experiments.save(key, blob)

    def load_experiment(self, key: str) -> bytes:
        """Return the serialized experiment `key`; `StoreError` if it is missing."""
        return self._experiments.load(key)

    def read_pickled(self, kind: str, key: str) -> tuple[bytes, str | None]:
        """Return the bytes of experiment `key` (`kind` "experiment") or of the artifact
        reference `key` ("artifact"), and why someone other than this user could have
        written them: the file is not the user's, or group or others may write it (None
        when nobody else could). Raises `StoreError` when they are missing."""
        if kind == "experiment":
            path, what = self._experiments.blob_path(key), f"experiment {key!r}"
        else:
            path, what = str(self._inside(key)), f"artifact {key!r}"
        try:
            return _trust.read_for_unpickling(path)
        except FileNotFoundError:
            raise StoreError(f"{what} is missing from store {str(self.root)!r}") from None

    # ---------------------------------------------------------------- records
    def record_path(self, run_id: str) -> Path:
        """The file holding `run_id`'s record (it may not exist)."""
        return Path(self._layout.record_path(run_id))

    def scan(self) -> tuple[set[str], set[str]]:
        """One listing of the records: (run ids with a final record, run ids completed).

        A completed record whose `.done` marker is missing (its writer was killed between
        the two) counts as completed, and its marker is made again. The first scan of a
        store object also removes what killed writers left among the claims."""
        current = current_runs(self._layout)  # from the runs table, when it is current
        if current is not None:
            self._claims.tidy_once()
            return current
        return self._records.scan()

    def completed_run_ids(self) -> bytes:
        """The completed run ids as 16 bytes each: from the runs table when it is current,
        else from one listing of the records (see `TableStore`)."""
        done = completed_ids(self._layout)
        if done is None:
            return self._records.completed_ids()
        self._claims.tidy_once()
        return done

    def put_record(self, record: dict[str, Any]) -> bytes:
        """Persist a final record, replacing any earlier one of its run; idempotent. The
        `.done` marker follows a completed record, never precedes it.

        Returns the record's encoding as written (`metalab.record.encode_record`). The
        journal takes the record's fields when `flush_journal` is next called (the end of a
        task): the caller leaves the record as it is until then. `StoreError` when it
        cannot be written."""
        return self._records.put(record)

    def flush_journal(self) -> None:
        """Append the records this process wrote since the last call to its journal (the end
        of a task calls it; see `metalab.stores.file.journal`). Best effort and idempotent:
        a journal that cannot be written costs loads time, never a record."""
        self._journal.flush()
        self._layout.recheck()

    def get_record(self, run_id: str) -> dict[str, Any] | None:
        """Return the record of `run_id`, or None; `StoreFormatError` for a record of a
        format this metalab cannot read."""
        return self._records.get(run_id)

    def get_records(self, run_ids: Iterable[str]) -> Iterator[dict[str, Any]]:
        """Yield the existing records of `run_ids`, in order."""
        for run_id in run_ids:
            record = self._records.get(run_id)
            if record is not None:
                yield record

    def iter_records(self, experiment_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Yield every record of the store (or of one experiment)."""
        for _, record in self._records.iter_encoded():
            if experiment_id is None or record.get("experiment_id") == experiment_id:
                yield record

    def iter_encoded_records(self) -> Iterator[tuple[bytes, dict[str, Any]]]:
        """Yield (the file's bytes, the record) of every record of the store."""
        return self._records.iter_encoded()

    def load_table(self, experiment: str | None = None) -> Any:
        """The runs (of one experiment id or name; all when None) as a runs table, from the
        store's cached table where it is current (see `metalab.stores.file.table`)."""
        return load_table(self._layout, experiment)

    def table_file(self) -> Path:
        """Bring the table file up to date and return its path (see `TableStore`)."""
        load_table(self._layout, write=True)
        path = self.root / TABLE
        if not path.is_file():
            raise StoreError(
                f"the runs table of store {str(self.root)!r} could not be written (is the "
                f"store read-only?); `metalab.load_results(store).to_arrow()` gives it in "
                "memory"
            )
        return path

    def load_records(self) -> list[tuple[bytes | dict[str, Any], dict[str, Any]]]:
        """Every record of the store as (entry, row).

        `entry` is the record's bytes, as a journal holds them (parse them with
        `metalab.record.decode_record`), or the record itself, read from its file; `row` is
        what a results table needs of it (the keys `journal.ROW_KEYS`). Reads records;
        writes nothing but, after a load that read many files or found journals worth
        merging, a snapshot journal (see `metalab.stores.file.loading`).
        """
        return loading.load_records(self._layout)

    # ---------------------------------------------------------------- artifacts and logs
    def put_artifact(self, run_id: str, filename: str, data: bytes) -> str:
        """Write artifact bytes; return the reference `artifacts/<run_id>/<filename>`.

        References do not name the shard (a store of version 2 keeps the file under
        `artifacts/<aa>/<run_id>/`), so every store, a fallback and its primary say, gives
        the same reference for the same artifact. Idempotent; `StoreError` for a file name
        that is no single path component, or bytes that cannot be written.
        """
        directory = f"{self._layout.run_dir('artifacts', run_id)}/{run_id}"
        if not _trust.is_file_name(filename):
            raise StoreError(
                f"artifact file name {filename!r} of run {run_id} cannot name a file in its "
                "run's directory (one path component, not starting with '.')"
            )
        try:
            if not self._layout.own_directory(directory):
                os.makedirs(directory, exist_ok=True)
            atomic_write(f"{directory}/{filename}", data)
        except OSError as exc:
            raise self._layout.write_failed(f"artifact {filename!r} of run {run_id}", exc) from exc
        return f"artifacts/{run_id}/{filename}"

    def read_artifact(self, ref: str) -> bytes:
        """Return the bytes of an artifact reference (relative to this store's root);
        `StoreError` when it is missing or points outside the store."""
        path = self._inside(ref)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"artifact {ref!r} is missing from store {str(self.root)!r}") from None

    def _inside(self, ref: str) -> Path:
        """The file behind an artifact reference; a `StoreError` if it is outside the store."""
        path = self.artifact_path(ref).resolve()
        if self.root.resolve() not in path.parents:
            raise StoreError(f"artifact reference {ref!r} points outside the store")
        return path

    def artifact_path(self, ref: str) -> Path:
        """Return the file behind an artifact reference."""
        return self._layout.artifact_path(ref)

    def open_log(self, run_id: str) -> IO[str]:
        """Open the run's log for appending (line buffered); earlier attempts' lines stay."""
        path = self._layout.run_file("logs", run_id, ".log")
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
        try:
            if self._layout.sharded:
                os.makedirs(os.path.dirname(path), exist_ok=True)
            try:
                fd = os.open(path, flags, 0o644)
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                # a link in the log's place (which could lead anywhere) is no log of ours:
                # it goes, and the log starts anew here
                _trust.skipped(f"log {path}", "it is a symbolic link; a new log replaces it")
                os.unlink(path)
                fd = os.open(path, flags, 0o644)
            return open(fd, "a", encoding="utf-8", buffering=1)
        except OSError as exc:
            raise self._layout.write_failed(f"the log of run {run_id}", exc) from exc

    def put_log(self, run_id: str, text: str) -> None:
        """Replace the run's log with `text` (what a transfer between stores writes);
        idempotent."""
        path = self._layout.run_file("logs", run_id, ".log")
        try:
            atomic_write(path, text.encode("utf-8"), make_dir=True)
        except OSError as exc:
            raise self._layout.write_failed(f"the log of run {run_id}", exc) from exc

    def read_log(self, run_id: str) -> str:
        """Return the run's log text, or "" when it logged nothing."""
        data = self._run_file(run_id, "logs", ".log", "log")
        # a line cut short (a full disk, a kill) must not hide the rest
        return "" if data is None else data.decode("utf-8", errors="replace")

    def _run_file(self, run_id: str, sub: str, suffix: str, what: str) -> bytes | None:
        """The bytes of a run's file of `sub`, or None: none there, or none of the store's
        (a link, a directory, a directory of the store that is a link), which is skipped with
        an `UnsafeStoreWarning`."""
        try:
            return read_bytes(self._layout.run_file(sub, run_id, suffix))
        except NotAFile as exc:
            _trust.skipped(f"{what} {exc.filename}", str(exc.strerror))
        except NotOwnDirectory as exc:
            _trust.skipped(f"the {what} of run {run_id}", str(exc))
        return None

    # ---------------------------------------------------------------- claims
    def claim(self, run_id: str, owner: dict[str, Any]) -> bool:
        """Create the run's claim file, taking over a claim whose owner is dead; False while
        a live owner holds it. The claim is this thread's, kept fresh by the heartbeat."""
        return self._claims.claim(run_id, owner)

    def claim_owner(self, run_id: str) -> dict[str, Any] | None:
        """Return the owner of the claim on `run_id`, alive or dead, or None when unclaimed."""
        return self._claims.owner(run_id)

    def release(self, run_id: str) -> None:
        """Remove this thread's claim on `run_id` (nothing when `put_record` already did,
        or when the claim is not ours); idempotent."""
        self._claims.release(run_id)

    def claims(self) -> dict[str, dict[str, Any]]:
        """Return the live claims: run id -> owner (removing what dead writers left)."""
        return self._claims.live()

    def held_files(self) -> list[str]:
        """The claim files this process holds (what the heartbeat touches)."""
        return self._claims.held_files()

    # ---------------------------------------------------------------- control
    def request_cancel(self, session: str) -> None:
        """Leave a cancellation marker for `session`; idempotent."""
        (self.root / "control" / f"cancel-{_session(session)}").touch()

    def cancel_requested(self, session: str) -> bool:
        """Whether the cancellation marker of `session` exists."""
        return os.path.exists(self._layout.file("control", f"cancel-{_session(session)}"))

    # ---------------------------------------------------------------- derived metrics
    def put_derived(self, run_id: str, values: Mapping[str, Any]) -> None:
        """Replace the run's derived metrics document atomically; idempotent."""
        path = self._layout.run_file("derived", run_id, ".json")
        try:
            atomic_write(path, encode_record(dict(values)), make_dir=True)
        except OSError as exc:
            raise self._layout.write_failed(f"the derived metrics of run {run_id}", exc) from exc

    def get_derived(self, run_id: str) -> dict[str, Any]:
        """Return the run's derived metrics document, or {}."""
        data = self._run_file(run_id, "derived", ".json", "derived metrics")
        if data is None:
            return {}
        try:
            document = json.loads(data)
        except (ValueError, RecursionError):
            document = None
        if not isinstance(document, dict):
            _trust.skipped(f"the derived metrics of run {run_id}", "they are no JSON object")
            return {}
        return document


def _session(session: str) -> str:
    if not _trust.is_name(session):
        raise StoreError(f"{session!r} is not a session: metalab makes no path of it")
    return session


def _reopened(root: str, version: int) -> FileStore:
    """A store unpickled in another process: the layout travels with it."""
    store = FileStore(root)
    store._layout.sharded = version >= 2
    return store


if TYPE_CHECKING:  # mypy checks here that a FileStore meets its contracts
    _contract: type[JournalStore] = FileStore
    _table_contract: type[TableStore] = FileStore
