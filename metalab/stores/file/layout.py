"""Where a file store keeps what: its directories, shards, per-run paths and `_meta.json`.

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
    control/cancel-<session>            marker: the session was asked to stop
    cache/journal/<name>.jnl            records noted by their writers, for loading (safe to delete)

`<aa>` is the first two hex digits of the run id: 256 shards keep every directory small (a
300,000-run sweep leaves about 2,300 entries in each, where one directory would hold 600,000),
and writers on different runs rarely work in the same directory, which a filesystem serializes.
Shard directories are made when first written to. Stores of version 1 keep one directory per
kind (`runs/<run_id>.json`, ...) and are read and written in that layout.

A store may come from anyone: a run id is checked before it becomes a path, and a listing
gives only the files named after a run id in the directory of that run (see `metalab._trust`).
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ... import _trust
from ...errors import StoreError, StoreFormatError
from ...record import encode_record
from ..atomic import atomic_write, link_exclusive, temporary, without_leftovers

STORE_FORMAT = "metalab.filestore"
STORE_VERSION = 2
"""1: one directory per kind; 2: per-run files sharded by the run id's first two hex digits."""
DIRECTORIES = (
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

LINKED_DIRECTORY = "it is a symbolic link, not a directory of the store"

SERVICES = "services"
"""The directory of the services that belong to a store (`metalab postgres start --store`),
which may be made before the store is: a directory holding only it becomes a store."""


class NotOwnDirectory(StoreError):
    """A directory of a store that is a symbolic link (or no directory at all)."""


class Layout:
    """The paths of one store's files, in the layout of its version."""

    def __init__(self, root: Path):
        self.root = root
        # plain strings: paths are made several times per run, where pathlib's cost shows
        self.top = str(root)
        self.sharded = layout_version(self.top) >= 2
        self._checked: str | None = None  # the run id `run_dir` checked last
        # the record, `.done` and claim paths of the run whose paths were made last: a run's
        # claim, record and marker are each asked for two or three times in a row
        self._last: tuple[str | None, tuple[str, str, str]] = (None, ("", "", ""))
        self._foreign: set[Any] | None = None  # see `_find_foreign`

    @property
    def version(self) -> int:
        return 2 if self.sharded else 1

    # ---------------------------------------------------------------- paths
    def file(self, sub: str, name: str) -> str:
        return f"{self.top}/{sub}/{name}"

    def run_dir(self, sub: str, run_id: str) -> str:
        """The directory of `sub` (runs, claims, logs, derived, artifacts) holding `run_id`'s
        files; a `StoreError` for anything but a run id, which no path is made of, and for a
        directory of the store that is a symbolic link (see `own_directory`)."""
        if run_id is not self._checked:  # a run's paths are made several times in a row
            _trust.check_run_id(run_id)
            self._checked = run_id
        foreign = self._foreign
        if foreign is None:
            foreign = self._find_foreign()
        if foreign:  # raises, naming the linked directory
            if sub in foreign:
                self.own_directory(f"{self.top}/{sub}")
            elif (sub, run_id[:2]) in foreign:
                self.own_directory(f"{self.top}/{sub}/{run_id[:2]}")
        if self.sharded:
            return f"{self.top}/{sub}/{run_id[:2]}"
        return f"{self.top}/{sub}"

    def _find_foreign(self) -> set[Any]:
        """The directories of per-run files that are no directories of the store (links,
        which could send reads and writes anywhere): `sub`, or `(sub, shard)`. Found from one
        listing of each, once per task (see `recheck`): the shards metalab makes meanwhile
        are its own."""
        foreign: set[Any] = set()
        for sub in ("runs", "claims", "logs", "derived", "artifacts"):
            try:
                st = os.lstat(f"{self.top}/{sub}")
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                foreign.add(sub)
            elif self.sharded:
                with os.scandir(f"{self.top}/{sub}") as entries:
                    for entry in entries:
                        if self.is_shard(entry.name) and not entry.is_dir(follow_symlinks=False):
                            foreign.add((sub, entry.name))
        self._foreign = foreign
        return foreign

    def recheck(self) -> None:
        """Look for foreign directories again at the next per-run path (the store calls
        this at the end of every task: a worker keeps its store object from sweep to sweep)."""
        self._foreign = None

    def own_directory(self, path: str) -> bool:
        """Whether `path` is a directory (True) or missing (False); a `StoreError` for a
        symbolic link or anything else there: metalab neither writes nor reads through
        links inside a store, which could lead anywhere."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            return True
        what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a directory"
        raise NotOwnDirectory(
            f"{path!r} in store {str(self.root)!r} is {what}: a store's directories must be "
            "its own (metalab neither writes nor reads through links inside a store); "
            "replace it with a directory (link the whole store instead, if it must live "
            "elsewhere)"
        )

    def run_file(self, sub: str, run_id: str, suffix: str) -> str:
        return f"{self.run_dir(sub, run_id)}/{run_id}{suffix}"

    def record_path(self, run_id: str) -> str:
        return self._run_paths(run_id)[0]

    def done_path(self, run_id: str) -> str:
        """The `.done` marker beside a completed record."""
        return self._run_paths(run_id)[1]

    def claim_path(self, run_id: str) -> str:
        return self._run_paths(run_id)[2]

    def _run_paths(self, run_id: str) -> tuple[str, str, str]:
        last = self._last  # one tuple: threads sharing the layout read it whole
        if last[0] is run_id:
            return last[1]
        runs = self.run_dir("runs", run_id)
        claims = self.run_dir("claims", run_id)
        paths = (f"{runs}/{run_id}.json", f"{runs}/{run_id}.done", f"{claims}/{run_id}.claim")
        self._last = (run_id, paths)
        return paths

    def artifact_path(self, ref: str) -> Path:
        """The file behind an artifact reference (`artifacts/<run_id>/<name>`, which does
        not name the shard)."""
        parts = ref.split("/")
        if self.sharded and len(parts) == 3 and parts[0] == "artifacts":
            return self.root / "artifacts" / parts[1][:2] / parts[1] / parts[2]
        return self.root / ref

    def write_failed(self, what: str, exc: OSError) -> StoreError:
        """The error for `what` that could not be written (a full disk, say)."""
        return StoreError(
            f"cannot write {what} to store {str(self.root)!r}: {exc.strerror or exc}"
            + (f" ({exc.filename})" if exc.filename else "")
        )

    # ---------------------------------------------------------------- listings
    def is_shard(self, name: str) -> bool:
        return self.sharded and len(name) == 2 and not name.startswith(".")

    def listings(self, sub: str) -> Iterator[tuple[str, list[str]]]:
        """(directory, names) of the directories of `sub` holding per-run files: its shards
        and itself. Temporary files left by dead writers are removed on the way."""
        top = f"{self.top}/{sub}"
        with os.scandir(top) as found:
            entries = list(found)
        names = [entry.name for entry in entries]
        now = time.time()
        for entry in entries:
            if self.is_shard(entry.name):
                if not entry.is_dir(follow_symlinks=False):  # a link could lead anywhere
                    if entry.is_symlink():
                        _trust.skipped(entry.path, LINKED_DIRECTORY)
                    continue
                try:
                    inner = os.listdir(entry.path)
                except (NotADirectoryError, FileNotFoundError):
                    continue
                yield entry.path, without_leftovers(entry.path, inner, now)
        yield top, [n for n in without_leftovers(top, names, now) if not self.is_shard(n)]

    def runs_in(
        self, sub: str, directory: str, names: list[str], suffixes: str
    ) -> list[tuple[str, str]]:
        """(run id, suffix) of the files of `directory` (of `sub`) named `<run id><suffix>`,
        a suffix of `suffixes` (`json|done`, say). A file whose name ends so but is not a
        run id's, or that is not where the store keeps that run's files, is skipped with an
        `UnsafeStoreWarning`."""
        listing = "\n".join(names)
        found = _run_files(suffixes).findall(listing)
        shard = directory[len(self.top) + len(sub) + 2 :]
        if self.sharded:
            placed = [item for item in found if shard and item[0].startswith(shard)]
        else:
            placed = found if not shard else []
        ends = tuple(f".{suffix}" for suffix in suffixes.split("|"))
        # every name with such an ending is a placed run's (most listings): nothing to check;
        # else those not placed are named by the slower look below (hidden ones are not)
        with_ending = sum(f"{listing}\n".count(f"{end}\n") for end in ends)
        if len(placed) != with_ending and len(placed) != len(
            _named_files(suffixes).findall(listing)
        ):
            good = {f"{run_id}.{suffix}" for run_id, suffix in placed}
            for name in names:
                if name.endswith(ends) and not name.startswith(".") and name not in good:
                    _trust.skipped(
                        f"{directory}/{name}",
                        "its name is not a run id (32 hexadecimal digits) in the directory "
                        "of its run",
                    )
        return placed

    # ---------------------------------------------------------------- _meta.json
    def check_meta(self, create: bool) -> None:
        """Read `_meta.json` (made with the layout when missing and `create`, repaired when
        damaged) and take the version it names; `StoreError` when there is no store and
        `create` is False, `StoreFormatError` for a store this metalab cannot read."""
        meta_path = self.root / "_meta.json"
        try:
            meta = json.loads(meta_path.read_bytes())
        except FileNotFoundError:
            if not create:
                raise StoreError(
                    f"no metalab store at {str(self.root)!r} (no _meta.json)"
                ) from None
            self.create()
            return
        except ValueError as exc:  # empty or cut short: a kill or a full disk as it was written
            meta = self._repaired_meta(exc)
        except NotADirectoryError:
            raise StoreError(
                f"store path {str(self.root)!r} is a file (or inside one), not a store: a file "
                "store is a directory; choose a new or empty directory, or an existing store"
            ) from None
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
        self.sharded = version >= 2
        if create:
            self.make_directories()

    def _repaired_meta(self, damage: ValueError) -> dict[str, Any]:
        """The meta data of a store whose `_meta.json` is empty or cut short, written anew
        when its directories are a store's (else a `StoreError`): its version is the one
        its layout shows. A store this user cannot write is read as it is."""
        path = f"{self.top}/_meta.json"
        if not all(os.path.isdir(f"{self.top}/{sub}") for sub in ("runs", "experiments")):
            raise StoreError(
                f"{path!r} is damaged ({damage}) and {str(self.root)!r} does not look like a "
                "metalab store (no runs/ and experiments/ directories)"
            )
        meta = {
            "format": STORE_FORMAT,
            "version": self._version_from_directories(),
            "created_at": now(),
            "repaired": True,
        }
        try:
            atomic_write(path, encode_record(meta))
        except OSError:
            pass
        return meta

    def _version_from_directories(self) -> int:
        """1 when a per-run directory holds a run's file directly, else the current version."""
        for sub in ("runs", "claims", "logs", "derived", "artifacts"):
            try:
                names = os.listdir(f"{self.top}/{sub}")
            except OSError:
                continue
            if any(_trust.is_run_id(name.partition(".")[0]) for name in names):
                return 1
        return STORE_VERSION

    def create(self) -> None:
        """Make a new store here: its directories, then its `_meta.json`, whole or absent."""
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"store path {str(self.root)!r} exists and is not a directory")
        if self.root.is_dir() and any(
            not name.startswith(".") and name not in DIRECTORIES and name != SERVICES
            for name in os.listdir(self.root)
        ):
            raise StoreError(
                f"{str(self.root)!r} is a non-empty directory that is not a metalab store; "
                "choose an empty or new directory"
            )
        meta = {"format": STORE_FORMAT, "version": STORE_VERSION, "created_at": now()}
        tmp = f"{self.top}/{temporary('_meta.json')}"
        try:
            self.make_directories()
            # whole or absent: written aside, then linked into place, which fails if another
            # process created it first
            atomic_write(tmp, encode_record(meta))
            linked = link_exclusive(tmp, f"{self.top}/_meta.json")
            if linked is None and not os.path.exists(f"{self.top}/_meta.json"):
                # a filesystem without hard links: a store made at once by two processes
                # gets the same meta data twice, whole either way
                os.replace(tmp, f"{self.top}/_meta.json")
        except OSError as exc:
            raise StoreError(
                f"cannot create a store at {str(self.root)!r}: {exc.strerror or exc}"
            ) from exc
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def make_directories(self) -> None:
        for sub in DIRECTORIES:
            (self.root / sub).mkdir(parents=True, exist_ok=True)


@functools.lru_cache(maxsize=8)
def _named_files(suffixes: str) -> re.Pattern[str]:
    """The lines of a listing that are `<name>.<suffix>`, a suffix of `suffixes`, the name
    not starting with a dot (the files `runs_in` checks are named after a run id)."""
    return re.compile(f"^[^.\n][^\n]*\\.(?:{suffixes})$", re.MULTILINE)


@functools.lru_cache(maxsize=8)
def _run_files(suffixes: str) -> re.Pattern[str]:
    """The lines of a listing that are `<run id>.<suffix>`, a suffix of `suffixes`."""
    return re.compile(f"^({_trust.RUN_ID_PATTERN})\\.({suffixes})$", re.MULTILINE)


def layout_version(root: str) -> int:
    """The version in `root/_meta.json`, or the current one for a store not made yet (or a
    meta file `FileStore.open` will refuse with a clear error)."""
    try:
        with open(f"{root}/_meta.json", "rb") as fh:
            version = json.loads(fh.read()).get("version")
    except (OSError, ValueError, AttributeError):
        return STORE_VERSION
    return version if isinstance(version, int) else STORE_VERSION


def now() -> str:
    """The time now, as the store's files note it (UTC, ISO 8601, microseconds)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds")
