"""Run records as files: `runs/<aa>/<run_id>.json`, and `.done` markers for completed ones.

A record is written through its run's claim file (renamed into place whole), or else through
a temporary file of its own; the `.done` marker follows a completed record, never precedes
it, so a resume that lists markers never counts a run complete without its record. A record
is read only from the file named after its run id; a file that holds no record of that run is
skipped with an `UnsafeStoreWarning` and no longer counts its run complete.
"""

from __future__ import annotations

import json
import os
import stat
import warnings
from collections.abc import Iterator
from typing import Any

from ... import _trust
from ...errors import StoreFormatError, UnsafeStoreWarning
from ...record import check_format, encode_record, shape_problem
from ..atomic import NotAFile, atomic_write, read_bytes
from .claims import ClaimFiles
from .journal import Journal
from .layout import Layout


class RecordFiles:
    """The record files of one store: scanned, written (noted in the journal) and read."""

    def __init__(self, layout: Layout, claims: ClaimFiles, journal: Journal):
        self._layout = layout
        self._claims = claims
        self._journal = journal
        # the identity (inode, mtime, size) of records read as not completed, which have no
        # `.done` marker for that reason (see `scan`)
        self._not_completed: dict[str, tuple[int, int, int]] = {}

    # ---------------------------------------------------------------- scanning
    def scan(self) -> tuple[set[str], set[str]]:
        """One listing of the records: (run ids with a final record, run ids completed).

        A completed record whose `.done` marker is missing (its writer was killed between
        the two) counts as completed, and its marker is made again."""
        final: set[str] = set()
        done: set[str] = set()
        for listed, completed in self._directories():
            final |= listed
            done |= completed
        return final, done

    def completed_ids(self) -> bytes:
        """The run ids `scan` finds completed, 16 bytes each back to back: one directory's
        names at a time, no string kept per run."""
        out = bytearray()
        for _, completed in self._directories():
            if completed:
                out += bytes.fromhex("".join(completed))
        return bytes(out)

    def _directories(self) -> Iterator[tuple[set[str], set[str]]]:
        """(run ids with a final record, run ids completed) of each directory of records."""
        self._claims.tidy_once()
        unmarked_all: set[str] = set()
        for directory, names in self._layout.listings("runs"):
            final: set[str] = set()
            done: set[str] = set()
            for run_id, suffix in self._layout.runs_in("runs", directory, names, "json|done"):
                (final if suffix == "json" else done).add(run_id)
            unmarked = final - done
            unmarked_all |= unmarked
            for run_id in unmarked:
                if self._completed_unmarked(run_id):
                    done.add(run_id)
            yield final, done
        if len(self._not_completed) > len(unmarked_all):  # forget runs completed or gone since
            self._not_completed = {
                run_id: seen
                for run_id, seen in self._not_completed.items()
                if run_id in unmarked_all
            }

    def _completed_unmarked(self, run_id: str) -> bool:
        """Whether the record of `run_id`, which has no `.done` marker, is completed; if so
        the marker is made again (where this user may write). A run claimed now is being
        run again: its record is left to its writer."""
        path = self._layout.record_path(run_id)
        try:
            seen = identity(os.stat(path, follow_symlinks=False))
        except FileNotFoundError:
            return False
        if self._not_completed.get(run_id) == seen or self._claims.is_claimed(run_id):
            return False
        try:
            record = self.read(path)
        except StoreFormatError:  # unreadable: the run is run again
            record = None
        if record is None or record.get("status") != "completed":
            self._not_completed[run_id] = seen
            return False
        mark_done(path, self._layout.done_path(run_id))
        return True

    # ---------------------------------------------------------------- writing
    def put(self, record: dict[str, Any]) -> bytes:
        """Persist a final record and note it in the journal; return its encoding."""
        run_id = record["run_id"]
        marker = self._layout.done_path(run_id)
        data = encode_record(record)
        path = self._layout.record_path(run_id)
        try:
            if record["status"] == "completed":
                st = self._write(run_id, data, path)
                mark_done(path, marker)
            else:
                try:
                    os.unlink(marker)
                except FileNotFoundError:
                    pass
                st = self._write(run_id, data, path)
        except OSError as exc:
            raise self._layout.write_failed(f"the record of run {run_id}", exc) from exc
        self._journal.note(run_id, st, data, record)
        return data

    def _write(self, run_id: str, data: bytes, path: str) -> os.stat_result:
        """Write a record through this thread's claim on the run, or else a file of its own;
        return the stat of the file written."""
        st = self._claims.write_record(run_id, data, path)
        if st is None:
            st = atomic_write(path, data, make_dir=self._layout.sharded)
        return st

    # ---------------------------------------------------------------- reading
    def get(self, run_id: str) -> dict[str, Any] | None:
        """Return the record of `run_id`, or None."""
        path = self._layout.record_path(run_id)
        if not os.access(path, os.F_OK):  # no exception raised for runs never recorded
            return None
        return self.read(path)

    def read(self, path: str) -> dict[str, Any] | None:
        """The record in the file at `path`, or None (none there, or none that is a run's
        record, see `named_record`)."""
        data = _record_bytes(path)
        return None if data is None else named_record(data, path)

    def iter_encoded(self) -> Iterator[tuple[bytes, dict[str, Any]]]:
        """Yield (the file's bytes, the record) of every record of the store."""
        final, _ = self.scan()
        for run_id in sorted(final):
            # listed a moment ago: open it directly (a record replaced meanwhile still reads)
            path = self._layout.record_path(run_id)
            data = _record_bytes(path)
            if data is not None and (record := named_record(data, path)) is not None:
                yield data, record


def _record_bytes(path: str) -> bytes | None:
    """The bytes of the record file at `path`, or None: none there, or no regular file (a
    link, which could lead anywhere, or a directory), which is skipped with an
    `UnsafeStoreWarning` and no longer counts its run complete."""
    try:
        return read_bytes(path)
    except NotAFile as exc:
        not_a_record(path, str(exc.strerror))
        return None


def not_a_record(path: str, what: str | os.stat_result) -> None:
    """Warn that the record file at `path` is no regular file (`what` it is, or its
    `lstat`), and take its `.done` marker away: the next resume runs its run again."""
    if isinstance(what, os.stat_result):
        mode = what.st_mode
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "no regular file"
        what = "it is " + ("a directory" if stat.S_ISDIR(mode) else kind)
    _unmark(path)
    _trust.skipped(f"run record {path}", f"{what} (the next resume runs its run again)")


def mark_done(path: str, marker: str) -> None:
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


def identity(st: os.stat_result) -> tuple[int, int, int]:
    """What tells a record file from any later one at its path: (inode, mtime_ns, size)."""
    return st.st_ino, st.st_mtime_ns, st.st_size


class _UnreadableRecord(StoreFormatError):
    """A record file that holds no JSON object: cut short or damaged."""


def _decode_record(data: bytes, path: str) -> dict[str, Any]:
    try:
        record = json.loads(data)
    except ValueError as exc:
        raise _UnreadableRecord(f"run record {path!r} is not valid JSON ({exc})") from exc
    except RecursionError:  # nested deeper than any record: crafted
        raise _UnreadableRecord(f"run record {path!r} is nested too deeply") from None
    if not isinstance(record, dict):
        raise _UnreadableRecord(f"run record {path!r} is not a JSON object")
    check_format(record, path)
    problem = shape_problem(record)
    if problem is not None:
        raise _UnreadableRecord(f"run record {path!r} {problem}")
    return record


def named_record(data: bytes, path: str) -> dict[str, Any] | None:
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
