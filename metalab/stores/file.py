"""`FileStore`: a directory of JSON records, artifacts and logs that can be moved or rsynced.

Layout::

    _meta.json                          store format and version
    experiments/<experiment_id>_<ts>.json   manifests, one per submission
    experiments/blobs/<key>.pkl         the serialized experiment workers rebuild runs from
    runs/<aa>/<run_id>.json             final run records (versioned JSON)
    runs/<aa>/<run_id>.done             marker: the completed record is persisted
    artifacts/<aa>/<run_id>/<name><ext> artifacts, referenced as artifacts/<run_id>/<name><ext>
    logs/<aa>/<run_id>.log              capture.log() lines
    derived/<aa>/<run_id>.json          derived metrics
    claims/<aa>/<run_id>.claim          who is running a run now, and its record in the making
    cache/journal/<name>.jnl            records noted by their writers, for loading (safe to delete)

`<aa>` is the first two hex digits of the run id: 256 shards keep every directory small (a
300,000-run sweep leaves about 2,300 entries in each, where one directory would hold 600,000),
and writers on different runs rarely work in the same directory, which a filesystem serializes.
Shard directories are made when first written to. Stores of version 1 keep one directory per
kind (`runs/<run_id>.json`, ...) and are read and written in that layout.

Every file is written to a temporary name and renamed into place, so readers see whole files.
A temporary name says who writes it (`.<name>.<host>-<pid>.<n>.tmp`): one left by a killed
writer is removed when a listing comes across it, once its writer is dead by the rule claims
follow (`metalab._claims.is_alive`).

A store may come from anyone, so what it holds is checked before it becomes a path (see
`metalab._trust`): a record is read only from a file named after its run id, a manifest
only when its experiment id, name and session have their form; anything else is skipped
with an `UnsafeStoreWarning`.
"""

from __future__ import annotations

import datetime as _dt
import errno
import functools
import itertools
import json
import os
import re
import stat
import threading
import time
import warnings
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from .. import _claims, _trust
from ..contracts import StoreDefaults
from ..errors import StoreError, StoreFormatError, UnsafeStoreWarning
from ..locators import path_from_file_uri
from ..record import RECORD_FORMAT, check_format, encode_record
from . import _journal
from ._files import (
    atomic_write,
    create_exclusive,
    link_exclusive,
    remove_if_left,
    temporary,
    without_leftovers,
    write_fd,
)

STORE_FORMAT = "metalab.filestore"
STORE_VERSION = 2
"""1: one directory per kind; 2: per-run files sharded by the run id's first two hex digits."""
_LAYOUT = (
    "experiments",
    "experiments/blobs",
    "runs",
    "artifacts",
    "logs",
    "derived",
    "claims",
    "control",
    "cache",
)
SNAPSHOT_AFTER_READS = 1000
"""A load that read at least this many record files from disk (no journal held them) writes
a snapshot journal of everything it loaded, so the next load reads few files."""
SNAPSHOT_AFTER_FILES = 64
_TS_FORMAT = "%Y%m%dT%H%M%S.%fZ"
_TS_LEN = len("20260101T000000.000000Z")
_stores: weakref.WeakSet[FileStore] = weakref.WeakSet()


_pid = [os.getpid()]  # this process's id (updated in a fork)


def _after_fork_in_child() -> None:
    """A forked child has a pid of its own, and the claims it inherited are its parent's."""
    _pid[0] = os.getpid()
    for store in list(_stores):
        for _, _, fd, _ in store._held.values():
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        store._held.clear()
        store._journal.forget()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _dumps(value: Any) -> bytes:
    return encode_record(value)


class FileStore(StoreDefaults):
    """A store in a directory tree; safe for many processes and hosts on a shared filesystem."""

    scheme = "file"

    def __init__(self, root: str | os.PathLike):
        self.root = Path(os.path.abspath(os.fspath(root)))
        self._top = str(self.root)
        self._locator = self.root.as_uri()
        self._owner_cache: tuple[dict[str, Any], bytes] | None = None
        # this process's claims: (path, thread) -> (when claimed, owner bytes, open
        # descriptor or None once the record was written into it, inode)
        self._held: dict[tuple[str, int], tuple[float, bytes, int | None, int]] = {}
        _stores.add(self)
        self._watched = 0  # the pid whose heartbeat thread touches the claims in _held
        # what this process noted of the records it wrote, for loading
        self._journal = _journal.Journal(f"{self._top}/cache/journal")
        self._sharded = _layout_version(self._top) >= 2
        # the identity (inode, mtime, size) of records read as not completed, which have no
        # `.done` marker for that reason (see `scan`)
        self._not_completed: dict[str, tuple[int, int, int]] = {}
        self._claims_tidied = False

    # ---------------------------------------------------------------- opening
    @classmethod
    def open(cls, root: str | os.PathLike, *, create: bool = True) -> FileStore:
        """Open the store at `root` (a path or a `file://` URI), creating its layout when
        `create` (idempotent)."""
        if isinstance(root, str) and root.startswith("file://"):
            root = path_from_file_uri(root)
        store = cls(root)
        store._check_meta(create)
        return store

    def _check_meta(self, create: bool) -> None:
        meta_path = self.root / "_meta.json"
        try:
            meta = json.loads(meta_path.read_bytes())
        except FileNotFoundError:
            if not create:
                raise StoreError(
                    f"no metalab store at {str(self.root)!r} (no _meta.json)"
                ) from None
            self._create()
            return
        except ValueError as exc:  # empty or cut short: a kill or a full disk as it was written
            meta = self._repaired_meta(exc)
        except OSError as exc:
            raise StoreError(f"cannot read {str(meta_path)!r}: {exc}") from exc
        version = meta.get("version", 0) if isinstance(meta, dict) else None
        if (
            not isinstance(meta, dict)
            or meta.get("format") != STORE_FORMAT
            or not isinstance(version, int)
            or version > STORE_VERSION
        ):
            found = meta.get("format") if isinstance(meta, dict) else meta
            raise StoreFormatError(
                f"{str(self.root)!r} holds store format {found!r} version "
                f"{version!r}; this metalab reads {STORE_FORMAT!r} up to version "
                f"{STORE_VERSION}"
            )
        self._sharded = version >= 2
        if create:
            self._make_layout()

    def _repaired_meta(self, damage: ValueError) -> dict[str, Any]:
        """The meta data of a store whose `_meta.json` is empty or cut short, written anew
        when its directories are a store's (else a `StoreError`): its version is the one
        its layout shows. A store this user cannot write is read as it is."""
        path = f"{self._top}/_meta.json"
        if not all(os.path.isdir(f"{self._top}/{sub}") for sub in ("runs", "experiments")):
            raise StoreError(
                f"{path!r} is damaged ({damage}) and {str(self.root)!r} does not look like a "
                "metalab store (no runs/ and experiments/ directories)"
            )
        meta = {
            "format": STORE_FORMAT,
            "version": self._version_from_layout(),
            "created_at": _now(),
            "repaired": True,
        }
        try:
            atomic_write(path, _dumps(meta))
        except OSError:
            pass
        return meta

    def _version_from_layout(self) -> int:
        """1 when a per-run directory holds a run's file directly, else the current version."""
        for sub in ("runs", "claims", "logs", "derived", "artifacts"):
            try:
                names = os.listdir(f"{self._top}/{sub}")
            except OSError:
                continue
            if any(_trust.is_run_id(name.partition(".")[0]) for name in names):
                return 1
        return STORE_VERSION

    def _create(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"store path {str(self.root)!r} exists and is not a directory")
        if self.root.is_dir() and any(
            not name.startswith(".") and name not in _LAYOUT for name in os.listdir(self.root)
        ):
            raise StoreError(
                f"{str(self.root)!r} is a non-empty directory that is not a metalab store; "
                "choose an empty or new directory"
            )
        meta = {"format": STORE_FORMAT, "version": STORE_VERSION, "created_at": _now()}
        tmp = f"{self._top}/{temporary('_meta.json')}"
        try:
            self._make_layout()
            # whole or absent: written aside, then linked into place, which fails if another
            # process created it first
            atomic_write(tmp, _dumps(meta))
            linked = link_exclusive(tmp, f"{self._top}/_meta.json")
            if linked is None and not os.path.exists(f"{self._top}/_meta.json"):
                # a filesystem without hard links: a store made at once by two processes
                # gets the same meta data twice, whole either way
                os.replace(tmp, f"{self._top}/_meta.json")
        except OSError as exc:
            raise StoreError(
                f"cannot create a store at {str(self.root)!r}: {exc.strerror or exc}"
            ) from exc
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def _make_layout(self) -> None:
        for sub in _LAYOUT:
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    @property
    def locator(self) -> str:
        """`file://` URI of the store root."""
        return self._locator

    def work_directory(self) -> Path:
        """The store's root: executors keep their files beside the runs."""
        return self.root

    def __repr__(self) -> str:
        return f"FileStore({str(self.root)!r})"

    @property
    def version(self) -> int:
        """The layout version of this store (see the module docstring)."""
        return 2 if self._sharded else 1

    def __reduce__(self):
        return (_reopened, (str(self.root), self.version))

    # ---------------------------------------------------------------- experiments
    def write_manifest(self, experiment_id: str, manifest: dict[str, Any]) -> str:
        """Write a manifest under a unique timestamped name; never overwrites."""
        if not _trust.is_experiment_id(experiment_id):
            raise StoreError(
                f"{experiment_id!r} is not an experiment id (name:version): metalab makes no "
                "path of it"
            )
        data = _dumps(manifest)
        directory = f"{self._top}/experiments"
        tmp = f"{directory}/{temporary('manifest')}"
        try:
            atomic_write(tmp, data)
            try:
                stamp = _dt.datetime.now(_dt.UTC)
                while True:
                    path = f"{directory}/{experiment_id}_{stamp.strftime(_TS_FORMAT)}.json"
                    if _create_once(tmp, path, data):
                        return path
                    stamp += _dt.timedelta(microseconds=1)
            finally:
                os.unlink(tmp)
        except OSError as exc:
            raise self._write_failed(f"the manifest of {experiment_id!r}", exc) from exc

    def manifests(self, experiment_id: str | None = None) -> list[dict[str, Any]]:
        """Return manifests, oldest first, each with its file name under `_file`.

        A manifest whose experiment id is not the one its file is named after, or whose
        name, version, session or experiment key has not their form, is skipped with an
        `UnsafeStoreWarning`."""
        out = []
        directory = f"{self._top}/experiments"
        for name in sorted(os.listdir(directory), key=lambda n: n[-_TS_LEN - 5 :]):
            if remove_if_left(directory, name) or not name.endswith(".json"):
                continue
            if name.startswith("."):
                continue
            exp_id = name[: -_TS_LEN - 6]
            if experiment_id is not None and exp_id != experiment_id:
                continue
            try:
                manifest = json.loads(read_bytes(f"{directory}/{name}") or b"")
            except (OSError, ValueError):
                continue
            why = _manifest_problem(manifest, exp_id)
            if why is not None:
                _trust.skipped(f"manifest {directory}/{name}", why)
                continue
            manifest["_file"] = f"experiments/{name}"
            out.append(manifest)
        return out

    def save_experiment(self, key: str, blob: bytes) -> None:
        """Write the serialized experiment once; later calls with the same key do nothing,
        unless the file holds other bytes (damaged, or changed by someone), which are
        replaced."""
        path = self._blob_path(key)
        if read_bytes(path) != blob:
            try:
                atomic_write(path, blob)
            except OSError as exc:
                raise self._write_failed(f"experiment {key!r}", exc) from exc

    def _blob_path(self, key: str) -> str:
        return f"{self._top}/experiments/blobs/{_trust.check_experiment_key(key)}.pkl"

    def load_experiment(self, key: str) -> bytes:
        """Return the serialized experiment `key`."""
        data = read_bytes(self._blob_path(key))
        if data is None:
            raise StoreError(f"store {str(self.root)!r} has no experiment {key!r}")
        return data

    def read_pickled(self, kind: str, key: str) -> tuple[bytes, str | None]:
        """Return the bytes of experiment `key` (`kind` "experiment") or of the artifact
        reference `key` ("artifact"), and why someone other than this user could have
        written them: the file is not the user's, or group or others may write it (None
        when nobody else could). Raises `StoreError` when they are missing."""
        if kind == "experiment":
            path, what = self._blob_path(key), f"experiment {key!r}"
        else:
            path, what = str(self._inside(key)), f"artifact {key!r}"
        try:
            return _trust.read_for_unpickling(path)
        except FileNotFoundError:
            raise StoreError(f"{what} is missing from store {str(self.root)!r}") from None

    def _write_failed(self, what: str, exc: OSError) -> StoreError:
        """The error for `what` that could not be written (a full disk, say)."""
        return StoreError(
            f"cannot write {what} to store {str(self.root)!r}: {exc.strerror or exc}"
            + (f" ({exc.filename})" if exc.filename else "")
        )

    # ---------------------------------------------------------------- records
    def _file(self, sub: str, name: str) -> str:
        # plain strings: this runs several times per run, where pathlib's cost shows
        return f"{self._top}/{sub}/{name}"

    def _run_dir(self, sub: str, run_id: str) -> str:
        """The directory of `sub` (runs, claims, logs, derived, artifacts) holding `run_id`'s
        files; a `StoreError` for anything but a run id, which no path is made of."""
        _trust.check_run_id(run_id)
        if self._sharded:
            return f"{self._top}/{sub}/{run_id[:2]}"
        return f"{self._top}/{sub}"

    def _run_file(self, sub: str, run_id: str, suffix: str) -> str:
        return f"{self._run_dir(sub, run_id)}/{run_id}{suffix}"

    def _record_path(self, run_id: str) -> str:
        return self._run_file("runs", run_id, ".json")

    def record_path(self, run_id: str) -> Path:
        """The file holding `run_id`'s record (it may not exist)."""
        return Path(self._record_path(run_id))

    def _is_shard(self, name: str) -> bool:
        return self._sharded and len(name) == 2 and not name.startswith(".")

    def _listings(self, sub: str) -> Iterator[tuple[str, list[str]]]:
        """(directory, names) of the directories of `sub` holding per-run files: its shards
        and itself. Temporary files left by dead writers are removed on the way."""
        top = f"{self._top}/{sub}"
        names = os.listdir(top)
        now = time.time()
        for name in names:
            if self._is_shard(name):
                directory = f"{top}/{name}"
                try:
                    inner = os.listdir(directory)
                except (NotADirectoryError, FileNotFoundError):
                    continue
                yield directory, without_leftovers(directory, inner, now)
        yield top, [n for n in without_leftovers(top, names, now) if not self._is_shard(n)]

    def _runs_in(
        self, sub: str, directory: str, names: list[str], suffixes: str
    ) -> list[tuple[str, str]]:
        """(run id, suffix) of the files of `directory` (of `sub`) named `<run id><suffix>`,
        a suffix of `suffixes` (`json|done`, say). A file whose name ends so but is not a
        run id's, or that is not where the store keeps that run's files, is skipped with an
        `UnsafeStoreWarning`."""
        found = _run_files(suffixes).findall("\n".join(names))
        shard = directory[len(self._top) + len(sub) + 2 :]
        if self._sharded:
            placed = [item for item in found if shard and item[0].startswith(shard)]
        else:
            placed = found if not shard else []
        ends = tuple(f".{suffix}" for suffix in suffixes.split("|"))
        if len(placed) != sum(1 for n in names if n.endswith(ends) and not n.startswith(".")):
            good = {f"{run_id}.{suffix}" for run_id, suffix in placed}
            for name in names:
                if name.endswith(ends) and not name.startswith(".") and name not in good:
                    _trust.skipped(
                        f"{directory}/{name}",
                        "its name is not a run id (32 hexadecimal digits) in the directory "
                        "of its run",
                    )
        return placed

    def scan(self) -> tuple[set[str], set[str]]:
        """One listing of the records: (run ids with a final record, run ids completed).

        A completed record whose `.done` marker is missing (its writer was killed between
        the two) counts as completed, and its marker is made again."""
        final: set[str] = set()
        done: set[str] = set()
        if not self._claims_tidied:
            self._tidy_claims()
        for directory, names in self._listings("runs"):
            for run_id, suffix in self._runs_in("runs", directory, names, "json|done"):
                (final if suffix == "json" else done).add(run_id)
        unmarked = final - done
        if len(self._not_completed) > len(unmarked):  # forget runs completed or gone since
            self._not_completed = {
                run_id: seen for run_id, seen in self._not_completed.items() if run_id in unmarked
            }
        for run_id in unmarked:
            if self._completed_unmarked(run_id):
                done.add(run_id)
        return final, done

    def _tidy_claims(self) -> None:
        """Remove what killed writers left among the claims (temporary files, owner files of
        earlier versions): once per store object, so a resume starts from a clean store."""
        self._claims_tidied = True
        try:
            for _ in self._claim_listings():
                pass
        except FileNotFoundError:
            pass

    def _completed_unmarked(self, run_id: str) -> bool:
        """Whether the record of `run_id`, which has no `.done` marker, is completed; if so
        the marker is made again (where this user may write). A run claimed now is being
        run again: its record is left to its writer."""
        path = self._record_path(run_id)
        try:
            seen = _identity(os.stat(path))
        except FileNotFoundError:
            return False
        if self._not_completed.get(run_id) == seen or os.path.exists(self._claim_path(run_id)):
            return False
        try:
            record = self._read_record(path)
        except StoreFormatError:  # unreadable: the run is run again
            record = None
        if record is None or record.get("status") != "completed":
            self._not_completed[run_id] = seen
            return False
        self._mark_done(path, self._run_file("runs", run_id, ".done"))
        return True

    @staticmethod
    def _mark_done(path: str, marker: str) -> None:
        """Make the `.done` marker of the completed record at `path`."""
        try:
            os.link(path, marker)  # one call, no file to open; the marker's content is unused
        except FileExistsError:
            pass
        except OSError:  # a filesystem without hard links, or a store this user cannot write
            try:
                os.close(os.open(marker, os.O_WRONLY | os.O_CREAT, 0o644))
            except OSError:
                pass

    def put_record(self, record: dict[str, Any]) -> bytes:
        """Persist a final record; the `.done` marker follows a completed one, never precedes it.

        Returns the record's encoding as written (`metalab.record.encode_record`). The
        journal takes the record's fields when `flush_journal` is next called (the end of a
        task): the caller leaves the record as it is until then."""
        run_id = record["run_id"]
        marker = self._run_file("runs", run_id, ".done")
        data = encode_record(record)
        path = self._record_path(run_id)
        try:
            if record["status"] == "completed":
                st = self._write_record(run_id, data, path)
                self._mark_done(path, marker)
            else:
                try:
                    os.unlink(marker)
                except FileNotFoundError:
                    pass
                st = self._write_record(run_id, data, path)
        except OSError as exc:
            raise self._write_failed(f"the record of run {run_id}", exc) from exc
        self._journal.note(run_id, st, data, record)
        return data

    def _write_record(self, run_id: str, data: bytes, path: str) -> os.stat_result:
        """Write a record through this thread's claim on the run, or else a file of its own;
        return the stat of the file written."""
        st = self._put_claimed(run_id, data, path)
        if st is None:
            st = atomic_write(path, data, make_dir=self._sharded)
        return st

    def flush_journal(self) -> None:
        """Append the records this process wrote since the last call to its journal (the end
        of a task calls it; see `metalab.stores._journal`)."""
        self._journal.flush()

    def get_record(self, run_id: str) -> dict[str, Any] | None:
        """Return the record of `run_id`, or None."""
        path = self._record_path(run_id)
        if not os.path.exists(path):  # cheaper than a failed open for runs never recorded
            return None
        return self._read_record(path)

    def _read_record(self, path: str) -> dict[str, Any] | None:
        data = read_bytes(path)
        return None if data is None else _named_record(data, path)

    def get_records(self, run_ids: Iterable[str]) -> Iterator[dict[str, Any]]:
        """Yield the existing records of `run_ids`, in order."""
        for run_id in run_ids:
            record = self.get_record(run_id)
            if record is not None:
                yield record

    def iter_records(self, experiment_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Yield every record of the store (or of one experiment)."""
        for _, record in self.iter_encoded_records():
            if experiment_id is None or record.get("experiment_id") == experiment_id:
                yield record

    def iter_encoded_records(self) -> Iterator[tuple[bytes, dict[str, Any]]]:
        """Yield (the file's bytes, the record) of every record of the store."""
        final, _ = self.scan()
        for run_id in sorted(final):
            # listed a moment ago: open it directly (a record replaced meanwhile still reads)
            path = self._record_path(run_id)
            data = read_bytes(path)
            if data is not None and (record := _named_record(data, path)) is not None:
                yield data, record

    # ---------------------------------------------------------------- loading
    def load_records(self) -> list[tuple[bytes | dict[str, Any], dict[str, Any]]]:
        """Every record of the store as (entry, row).

        `entry` is the record's bytes, as a journal holds them (parse them with
        `metalab.record.decode_record`), or the record itself, read from its file; `row` is
        what a results table needs of it (the keys `_journal.ROW_KEYS`). A load that read
        many files, or found journals worth merging, writes a snapshot journal (see
        `metalab.stores._journal`).
        """
        files = self._record_stats()
        found: dict[str, bytes | dict[str, Any]] = {}
        rows: dict[str, dict[str, Any]] = {}
        journals = self._read_journals()
        if journals:
            current = _Current(files)
            matched = [current.take(data, jst, found, rows) for _, jst, data in journals]
        else:
            matched = []
        # the records read from their files that a snapshot may hold: this user's, still the
        # file listed (one renamed over it meanwhile is returned, but its identity is unknown)
        read: dict[str, bytes] = {}
        uid = os.getuid()
        for run_id in sorted(files.keys() - found.keys()):
            path = self._record_path(run_id)
            got = _read_with_stat(path)
            if got is None:  # removed since the listing
                continue
            raw, st = got
            record = _named_record(raw, path)
            if record is None:
                continue
            found[run_id] = rows[run_id] = record
            listed = files[run_id]
            if st.st_uid == uid and _identity(st) == _identity(listed):
                read[run_id] = raw
        # the journal files a snapshot would replace, and the bytes of their records no load
        # needs (rewritten or removed since, or given by another journal first)
        now = time.time()
        removable = [
            (path, held - given)
            for (path, st, _), (given, held) in zip(journals, matched)
            if _journal.removable(path, st, now)
        ]
        if (
            len(read) >= SNAPSHOT_AFTER_READS
            or len(removable) > SNAPSHOT_AFTER_FILES
            or sum(w for _, w in removable) > sum(g for g, _ in matched) // 2 + (1 << 20)
        ) and self._journal_writable():
            self._write_snapshot(found, rows, read, files, [path for path, _ in removable])
        return [(entry, rows[run_id]) for run_id, entry in found.items()]

    def _record_stats(self) -> dict[str, os.stat_result]:
        """Run id -> stat of its record file, for every record of the store."""
        top = f"{self._top}/runs"
        out: dict[str, os.stat_result] = {}
        directories = [top]
        if self._sharded:
            directories += [f"{top}/{name}" for name in os.listdir(top) if self._is_shard(name)]
        for directory in directories:
            try:
                fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            except (FileNotFoundError, NotADirectoryError):
                continue
            try:
                for run_id, _ in self._runs_in("runs", directory, os.listdir(fd), "json"):
                    try:
                        out[run_id] = os.stat(f"{run_id}.json", dir_fd=fd)
                    except FileNotFoundError:  # removed since the listing
                        pass
            finally:
                os.close(fd)
        return out

    def _journal_writable(self) -> bool:
        """Whether this user may write journals here (else a load builds no snapshot)."""
        for directory in (f"{self._top}/cache/journal", f"{self._top}/cache", self._top):
            if os.path.lexists(directory):  # the first that exists is the one written to
                return os.path.isdir(directory) and os.access(directory, os.W_OK)
        return False

    def _read_journals(self) -> list[tuple[str, os.stat_result, bytes]]:
        """(path, stat, bytes) of every journal file of the store, snapshots first (what
        they give, a writer's journal need not)."""
        directory = f"{self._top}/cache/journal"
        try:
            names = os.listdir(directory)
        except OSError:  # no journal yet, or no cache at all
            return []
        names.sort(key=lambda name: (not name.startswith("load-"), name))
        out = []
        for name in names:
            if remove_if_left(directory, name) or not name.endswith(_journal.SUFFIX):
                continue
            if name.startswith("."):
                continue
            path = f"{directory}/{name}"
            try:  # a regular file, not followed through a link: a FIFO would never end
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    continue
                data = _read_fd(fd, st.st_size + 1)  # one read, unless it grew since
            except OSError:
                continue
            finally:
                os.close(fd)
            out.append((path, st, data))
        return out

    def _write_snapshot(
        self,
        found: dict[str, bytes | dict[str, Any]],
        rows: dict[str, dict[str, Any]],
        read: dict[str, bytes],
        files: dict[str, os.stat_result],
        replaced: list[str],
    ) -> None:
        """Write one journal of the records loaded (`read`: the bytes of those read from
        their files), in the order loads sort them, then remove the journal files it
        `replaced`. Best effort: a store this user cannot write keeps its journals."""
        wanted = _journal.ROW_FIELDS
        ids = [
            run_id
            for run_id, entry in found.items()
            if (isinstance(entry, bytes) or run_id in read)
            and all(key in rows[run_id] for key in wanted)
        ]
        ids.sort(key=lambda run_id: _order(rows[run_id]))
        path = f"{self._top}/cache/journal/{_journal.snapshot_name()}"
        try:
            entry = _journal.encode_entry(
                ids,
                [files[run_id] for run_id in ids],
                [e if isinstance(e := found[run_id], bytes) else read[run_id] for run_id in ids],
                [[rows[run_id][key] for run_id in ids] for key in wanted],
            )
            atomic_write(path, b"".join(entry), make_dir=True)
        except (OSError, ValueError, TypeError):
            return
        for path in replaced:
            try:
                os.unlink(path)
            except OSError:
                pass

    # ---------------------------------------------------------------- artifacts and logs
    def put_artifact(self, run_id: str, filename: str, data: bytes) -> str:
        """Write artifact bytes; return the reference `artifacts/<run_id>/<filename>`.

        References do not name the shard (a store of version 2 keeps the file under
        `artifacts/<aa>/<run_id>/`), so every store, a fallback and its primary say, gives
        the same reference for the same artifact.
        """
        directory = f"{self._run_dir('artifacts', run_id)}/{run_id}"
        if not _trust.is_file_name(filename):
            raise StoreError(
                f"artifact file name {filename!r} of run {run_id} cannot name a file in its "
                "run's directory (one path component, not starting with '.')"
            )
        try:
            os.makedirs(directory, exist_ok=True)
            atomic_write(f"{directory}/{filename}", data)
        except OSError as exc:
            raise self._write_failed(f"artifact {filename!r} of run {run_id}", exc) from exc
        return f"artifacts/{run_id}/{filename}"

    def read_artifact(self, ref: str) -> bytes:
        """Return the bytes of an artifact reference (relative to this store's root)."""
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
        parts = ref.split("/")
        if self._sharded and len(parts) == 3 and parts[0] == "artifacts":
            return self.root / "artifacts" / parts[1][:2] / parts[1] / parts[2]
        return self.root / ref

    def open_log(self, run_id: str) -> IO[str]:
        """Open the run's log for appending (line buffered); earlier attempts' lines stay."""
        path = self._run_file("logs", run_id, ".log")
        try:
            if self._sharded:
                os.makedirs(os.path.dirname(path), exist_ok=True)
            return open(path, "a", encoding="utf-8", buffering=1)
        except OSError as exc:
            raise self._write_failed(f"the log of run {run_id}", exc) from exc

    def put_log(self, run_id: str, text: str) -> None:
        """Replace the run's log with `text` (what a transfer between stores writes)."""
        path = self._run_file("logs", run_id, ".log")
        try:
            atomic_write(path, text.encode("utf-8"), make_dir=True)
        except OSError as exc:
            raise self._write_failed(f"the log of run {run_id}", exc) from exc

    def read_log(self, run_id: str) -> str:
        """Return the run's log text, or "" when it logged nothing."""
        try:
            with open(self._run_file("logs", run_id, ".log"), encoding="utf-8") as fh:
                return fh.read()
        except FileNotFoundError:
            return ""

    # ---------------------------------------------------------------- claims
    def _claim_path(self, run_id: str) -> str:
        return self._run_file("claims", run_id, ".claim")

    def claim(self, run_id: str, owner: dict[str, Any]) -> bool:
        """Create the run's claim file, taking over a claim whose owner is dead."""
        path = self._claim_path(run_id)
        if self._create_claim(path, owner):
            return True
        current = self._read_claim(path)
        if current is None:
            return self._create_claim(path, owner)
        if _claims.is_alive(current[0], current[1]):
            return False
        return self._take_over(path, owner, current[2])

    def _create_claim(self, path: str, owner: dict[str, Any]) -> bool:
        """Create the claim file `path` holding `owner`, atomically; False if it exists.

        The owner is written to a temporary file first, which is then linked to `path`
        (which fails if `path` exists): a claim file never exists without its owner, even
        if the process is killed as it claims. The claim file is also the run's record in
        the making: it stays open, and `put_record` writes the record into it and renames it
        into `runs/`, so a run's claim, record and release cost one file between them (see
        `_put_claimed`). Claims are this process's and thread's: `put_record` and `release`
        of the same run come from the thread that claimed it.
        """
        content = self._owner_bytes(owner)
        directory, _, name = path.rpartition("/")
        tmp = f"{directory}/{temporary(name)}"
        try:
            fd = create_exclusive(tmp)
            try:
                write_fd(fd, content)
                inode = os.fstat(fd).st_ino
                linked = link_exclusive(tmp, path)
            except BaseException:
                os.close(fd)
                raise
            finally:
                os.unlink(tmp)
            if linked is None:  # a filesystem without hard links: created, then written
                os.close(fd)
                fd = create_exclusive(path, make_dir=False)
                try:
                    write_fd(fd, content)
                except BaseException:
                    os.close(fd)
                    os.unlink(path)
                    raise
                inode, linked = os.fstat(fd).st_ino, True
        except FileExistsError:
            return False
        except OSError as exc:
            raise self._write_failed(f"the claim on run {name[:-6]}", exc) from exc
        if not linked:
            os.close(fd)
            return False
        self._held[(path, threading.get_ident())] = (time.monotonic(), content, fd, inode)
        if self._watched != _pid[0]:  # the heartbeat touches every claim in _held
            _claims.heartbeat.watch_files(self)
            self._watched = _pid[0]
        return True

    def held_files(self) -> list[str]:
        """The claim files this process holds (what the heartbeat touches)."""
        return [path for path, _ in list(self._held)]

    @staticmethod
    def _still_ours(path: str, held: tuple[float, bytes, int | None, int]) -> os.stat_result | None:
        """The stat of the file at `path` if it is the claim file we created (not one another
        host made after taking the run over, its clock or ours having gone wrong); else None."""
        try:
            st = os.stat(path)
        except OSError:  # gone, or a stale NFS handle: not ours to touch
            return None
        return st if st.st_ino == held[3] else None

    def _put_claimed(self, run_id: str, data: bytes, path: str) -> os.stat_result | None:
        """Write `data` into this thread's claim on `run_id` and rename it to `path`, which
        also releases the claim; return the file's stat, or None (nothing published) when
        this thread holds no claim on the run."""
        claim = self._claim_path(run_id)
        key = (claim, threading.get_ident())
        held = self._held.get(key)
        if held is None or held[2] is None:
            return None
        fd = held[2]
        # whatever happens now, the descriptor is used once: a failed write never mixes
        # with a later one (the record then goes through a file of its own)
        self._held[key] = (held[0], held[1], None, held[3])
        try:
            view = memoryview(data)
            offset = 0
            while offset < len(view):
                offset += os.pwrite(fd, view[offset:], offset)
            if len(data) < len(held[1]):
                os.ftruncate(fd, len(data))
            ours = self._still_ours(claim, held)  # checked while open: its inode is unique
        finally:
            # closed before the rename: on NFS a close sends the data (and reports a failed
            # write), so the record is whole on the server before its name appears there
            os.close(fd)
        if ours is None:
            return None
        try:
            try:
                os.rename(claim, path)  # the record appears whole, and the claim is gone
            except FileNotFoundError:
                if not os.path.exists(claim):
                    return None  # our claim went (removed by hand?): write the record anew
                os.makedirs(os.path.dirname(path), exist_ok=True)  # a shard not written to yet
                os.rename(claim, path)
        except OSError as exc:
            if exc.errno == errno.EXDEV:  # claims/ on another filesystem than runs/
                return None
            raise
        del self._held[key]
        return ours  # its identity as the record: a rename keeps inode and mtime

    def _owner_bytes(self, owner: dict[str, Any]) -> bytes:
        cached = self._owner_cache
        if cached is None or cached[0] is not owner:  # one owner dict serves a whole task
            cached = self._owner_cache = (owner, _dumps(owner))
        return cached[1]

    def _read_claim(self, path: str) -> tuple[dict[str, Any], float, tuple[int, int]] | None:
        """(owner, heartbeat age in seconds, identity) of the claim file at `path`, or None.

        The identity (inode, modification time) tells this claim file from any later one at
        the same path, whatever they hold."""
        try:
            st = os.stat(path)
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return None
        age, which = time.time() - st.st_mtime, (st.st_ino, st.st_mtime_ns)
        try:
            found = json.loads(data)
        except ValueError:
            # no owner: cut short by a kill as it was written (dead once it is a few seconds
            # old, see `metalab._claims.is_alive`), or its record being written in now
            return {"host": None}, age, which
        if isinstance(found, dict) and "pid" in found:
            return found, age, which
        # for a moment before it is renamed, a claim holds the run's record, whose provenance
        # names the process writing it (its host and pid: no start time, so a reused pid
        # counts as alive while the heartbeat is fresh)
        provenance = found.get("provenance") if isinstance(found, dict) else None
        if not isinstance(provenance, dict):
            return {"host": None}, age, which
        writer = {key: provenance.get(key) for key in ("host", "pid", "session")}
        return {**writer, "start": None}, age, which

    def _take_over(self, path: str, owner: dict[str, Any], dead: tuple[int, int]) -> bool:
        """Replace the dead claim file whose identity is `dead`, unless it changed since."""
        lock = path[: -len(".claim")] + ".takeover"
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                if time.time() - os.stat(lock).st_mtime > 60:
                    os.unlink(lock)
            except FileNotFoundError:
                pass
            return False
        os.close(fd)
        try:
            current = self._read_claim(path)
            if current is not None and current[2] != dead:
                return False  # someone else took it over, or it beat, meanwhile
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            self._tidy_run(path.rpartition("/")[2][: -len(".claim")])
            return self._create_claim(path, owner)
        finally:
            os.unlink(lock)

    def _tidy_run(self, run_id: str) -> None:
        """Remove the temporary files a dead owner of `run_id`'s claim left (its log,
        derived metrics or artifacts being written when it was killed)."""
        now = time.time()
        places = [(self._run_dir(sub, run_id), f".{run_id}.") for sub in ("logs", "derived")]
        places.append((f"{self._run_dir('artifacts', run_id)}/{run_id}", "."))
        for directory, prefix in places:
            try:
                names = os.listdir(directory)
            except OSError:
                continue
            for name in names:
                if name.startswith(prefix):
                    remove_if_left(directory, name, now)

    def claim_owner(self, run_id: str) -> dict[str, Any] | None:
        """Return the owner of the claim on `run_id`, alive or dead, or None when unclaimed."""
        current = self._read_claim(self._claim_path(run_id))
        return None if current is None else current[0]

    def release(self, run_id: str) -> None:
        """Remove this thread's claim on `run_id` (nothing when `put_record` already did,
        or when the claim is not ours)."""
        path = self._claim_path(run_id)
        held = self._held.pop((path, threading.get_ident()), None)
        if held is None:
            return
        ours = self._still_ours(path, held) is not None
        if held[2] is not None:
            try:
                os.close(held[2])  # before the unlink: NFS renames open files it unlinks
            except OSError:
                pass
        if ours:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def claims(self) -> dict[str, dict[str, Any]]:
        """Return the live claims: run id -> owner."""
        out = {}
        for directory, names in self._claim_listings():
            for run_id, _ in self._runs_in("claims", directory, names, "claim"):
                current = self._read_claim(f"{directory}/{run_id}.claim")
                if current is not None and _claims.is_alive(current[0], current[1]):
                    out[run_id] = current[0]
        return out

    def _claim_listings(self) -> Iterator[tuple[str, list[str]]]:
        """`_listings("claims")`, removing on the way what dead writers left: temporary files
        and the owner files of earlier versions."""
        for directory, names in self._listings("claims"):
            for name in names:
                if name.startswith(".owner-"):
                    self._remove_if_dead(f"{directory}/{name}")
            yield directory, names

    def _remove_if_dead(self, owner_file: str) -> None:
        """Remove an owner file of a process that is gone. Earlier metalab versions made
        claims as hard links to one owner file per process, which a killed process left."""
        current = self._read_claim(owner_file)
        if current is not None and not _claims.is_alive(current[0], current[1]):
            try:
                os.unlink(owner_file)
            except FileNotFoundError:
                pass

    # ---------------------------------------------------------------- control
    def request_cancel(self, session: str) -> None:
        """Leave a cancellation marker for `session`."""
        (self.root / "control" / f"cancel-{_session(session)}").touch()

    def cancel_requested(self, session: str) -> bool:
        """Whether the cancellation marker of `session` exists."""
        return os.path.exists(self._file("control", f"cancel-{_session(session)}"))

    # ---------------------------------------------------------------- derived metrics
    def put_derived(self, run_id: str, values: dict[str, Any]) -> None:
        """Replace the run's derived metrics document."""
        path = self._run_file("derived", run_id, ".json")
        try:
            atomic_write(path, _dumps(values), make_dir=True)
        except OSError as exc:
            raise self._write_failed(f"the derived metrics of run {run_id}", exc) from exc

    def get_derived(self, run_id: str) -> dict[str, Any]:
        """Return the run's derived metrics document, or {}."""
        try:
            with open(self._run_file("derived", run_id, ".json"), "rb") as fh:
                return json.loads(fh.read())
        except FileNotFoundError:
            return {}


class _Current:
    """The record files of a store as listed, to take from journals what is still theirs."""

    def __init__(self, files: dict[str, os.stat_result]):
        self.files = files
        # (run id, inode, mtime_ns, size) of every record file: a journal entry whose records
        # are all here is taken whole, compared and sliced in bulk
        self.identities = {(r, s.st_ino, s.st_mtime_ns, s.st_size) for r, s in files.items()}
        self.owners = {(s.st_uid, s.st_mode) for s in files.values()}

    def take(
        self,
        data: bytes,
        jst: os.stat_result,
        found: dict[str, bytes | dict[str, Any]],
        rows: dict[str, dict[str, Any]],
    ) -> tuple[int, int]:
        """Take from the journal bytes `data` every record whose file is the one it noted,
        into `found` (run id -> bytes) and `rows`; return how many bytes of records it gave,
        and how many it holds."""
        given = held = 0
        trust = {owner: _trust.may_vouch(jst, *owner) for owner in self.owners}
        for columns, offset, length in _journal.read_entries(data):
            held += length
            try:
                given += self._take_entry(columns, offset, length, data, trust, found, rows)
            except (TypeError, ValueError, KeyError, IndexError):
                continue  # not an entry this metalab wrote (its records are read from files)
        return given, held

    def _take_entry(
        self,
        columns: list[list[Any]],
        offset: int,
        length: int,
        data: bytes,
        trust: dict[tuple[int, int], bool],
        found: dict[str, bytes | dict[str, Any]],
        rows: dict[str, dict[str, Any]],
    ) -> int:
        """Take what one journal entry gives; return how many bytes of records."""
        run_ids, inodes, mtimes, sizes = columns[:4]
        fields = columns[4:]
        if sum(sizes) != length or (run_ids and set(fields[0]) != {RECORD_FORMAT}):
            return 0  # not what this metalab writes: its records are read from their files
        if found.keys() >= set(run_ids):
            return 0  # all given by another journal (a snapshot, say) already
        if (
            all(trust.values())
            and self.identities.issuperset(zip(run_ids, inodes, mtimes, sizes))
            and found.keys().isdisjoint(run_ids)
        ):
            ends = list(itertools.accumulate(sizes, initial=offset))
            records = [data[a:b] for a, b in itertools.pairwise(ends)]
            if _journal.name_their_runs(data, ends[:-1], ends[-1], run_ids) or all(
                map(_journal.names_run, records, run_ids)
            ):
                found.update(zip(run_ids, records))
                rows.update(zip(run_ids, [dict(zip(_ROW_KEYS, t)) for t in zip(run_ids, *fields)]))
                return length
        given = 0
        for i, run_id in enumerate(run_ids):  # some records rewritten since, say
            size = sizes[i]
            st = self.files.get(run_id)
            if (
                st is not None
                and st.st_mtime_ns == mtimes[i]
                and st.st_ino == inodes[i]
                and st.st_size == size
                and run_id not in found
                and trust[st.st_uid, st.st_mode]
                and _journal.names_run(data[offset : offset + size], run_id)
            ):
                found[run_id] = data[offset : offset + size]
                rows[run_id] = dict(zip(_ROW_KEYS, [run_id, *(c[i] for c in fields)]))
                given += size
            offset += size
        return given


_ROW_KEYS = _journal.ROW_KEYS


def _order(row: dict[str, Any]) -> tuple[str, int, str]:
    """Where a record goes when loaded: by experiment id, index and run id (`load_results`)."""
    index = row.get("index")
    return str(row.get("experiment_id", "")), index if type(index) is int else 0, row["run_id"]


@functools.lru_cache(maxsize=8)
def _run_files(suffixes: str) -> re.Pattern[str]:
    """The lines of a listing that are `<run id>.<suffix>`, a suffix of `suffixes`."""
    return re.compile(f"^({_trust.RUN_ID_PATTERN})\\.({suffixes})$", re.MULTILINE)


def _create_once(written: str, path: str, data: bytes) -> bool:
    """Give the file `written` (holding `data`) the name `path` unless it exists: True if
    it did. Where the filesystem has no hard links, `path` is created and written instead."""
    linked = link_exclusive(written, path)
    if linked is not None:
        return linked
    try:
        fd = create_exclusive(path, make_dir=False)
    except FileExistsError:
        return False
    try:
        write_fd(fd, data)
    finally:
        os.close(fd)
    return True


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_mtime_ns, st.st_size


def _read_with_stat(path: str) -> tuple[bytes, os.stat_result] | None:
    """The bytes of the file at `path` and its stat as opened, or None if there is none."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return _read_fd(fd), os.fstat(fd)
    finally:
        os.close(fd)


def read_bytes(path: str) -> bytes | None:
    """The bytes of the file at `path`, or None if there is none: os-level calls, about half
    the time of `open().read()` for the small files records are."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return _read_fd(fd)
    finally:
        os.close(fd)


_READ_SIZE = 1 << 16


def _read_fd(fd: int, size: int = _READ_SIZE) -> bytes:
    """Everything left to read from `fd`, asking for `size` bytes first: a regular file
    shorter than that comes in one call (a short read of one is its end)."""
    data = os.read(fd, size)
    if len(data) < size:
        return data
    parts = [data]
    while chunk := os.read(fd, max(size, _READ_SIZE)):
        parts.append(chunk)
    return b"".join(parts)


class _UnreadableRecord(StoreFormatError):
    """A record file that holds no JSON object: cut short or damaged."""


def _decode_record(data: bytes, path: str) -> dict[str, Any]:
    try:
        record = json.loads(data)
    except ValueError as exc:
        raise _UnreadableRecord(f"run record {path!r} is not valid JSON ({exc})") from exc
    if not isinstance(record, dict):
        raise _UnreadableRecord(f"run record {path!r} is not a JSON object")
    return check_format(record, path)


def _named_record(data: bytes, path: str) -> dict[str, Any] | None:
    """The record in `data`, read from `path`; None, with an `UnsafeStoreWarning`, when it
    is not the record of the run its file is named after, or no record at all (a damaged
    file must not stop the analysis of every other run). Such a file no longer counts its
    run complete, so the next resume runs the run again and replaces it. A record of another
    format still raises `StoreFormatError`."""
    try:
        record = _decode_record(data, path)
    except _UnreadableRecord as exc:
        _unmark(path)
        warnings.warn(
            UnsafeStoreWarning(
                f"skipped {exc}: the file is damaged; the next resume runs its run again"
            ),
            stacklevel=3,
        )
        return None
    run_id = record.get("run_id")
    if run_id == path.rpartition("/")[2][:-5] and _trust.is_run_id(run_id):
        return record
    _unmark(path)
    _trust.skipped(
        f"run record {path}",
        f"its run id {run_id!r} is not the one its file is named after (the next resume runs "
        "the run again)",
    )
    return None


def _unmark(path: str) -> None:
    """Remove the `.done` marker of the record file at `path`, which holds no record of its
    run, where this user may."""
    try:
        os.unlink(path[: -len(".json")] + ".done")
    except OSError:  # no marker, or a store this user may only read
        pass


def _layout_version(root: str) -> int:
    """The version in `root/_meta.json`, or the current one for a store not made yet (or a
    meta file `FileStore.open` will refuse with a clear error)."""
    try:
        with open(f"{root}/_meta.json", "rb") as fh:
            version = json.loads(fh.read()).get("version")
    except (OSError, ValueError, AttributeError):
        return STORE_VERSION
    return version if isinstance(version, int) else STORE_VERSION


def _session(session: str) -> str:
    if not _trust.is_name(session):
        raise StoreError(f"{session!r} is not a session: metalab makes no path of it")
    return session


def _manifest_problem(manifest: Any, exp_id: str) -> str | None:
    """Why a manifest read from a file named after `exp_id` cannot be used, or None."""
    if isinstance(manifest, dict) and manifest.get("experiment_id") != exp_id:
        found = manifest.get("experiment_id")
        return f"its experiment id {found!r} is not {exp_id!r}, the one its file is named after"
    return _trust.manifest_problem(manifest)


def _reopened(root: str, version: int) -> FileStore:
    """A store unpickled in another process: the layout travels with it, no file is read."""
    store = FileStore(root)
    store._sharded = version >= 2
    return store


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds")
