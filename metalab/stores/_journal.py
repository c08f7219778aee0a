"""Record journals: what writers of a file store note so that loading need not parse each record.

Reading 100,000 record files and parsing their JSON takes seconds. So each process that
writes records appends, every batch of runs, one entry to a journal file of its own in
`cache/journal/`: for each record, its run id, the identity of the record's file (inode,
modification time in nanoseconds, size, taken before the file got its name), the fields a
results table shows (`ROW_FIELDS`), and the record's bytes as written. Loading lists and stats
the record files and takes a record from a journal only where the identity is the file's now:
records are renamed into place whole and never written in place, so an equal identity means
the same bytes. Any other record is read from its file.

A load that had to read many files, or found many journal files or much outdated journal
data, writes one journal of everything it loaded (a snapshot, in the same format) and removes
the user's journal files nobody wrote to for a while. Journals are only an accelerator: a
missing, truncated or removed journal costs time, never a record; deleting `cache/` is safe.

Entry format: `ENTRY` (magic, header length, body length), then the header, UTF-8 JSON: a list
of columns, each with one value per record: run id, inode, mtime_ns, size, then `ROW_FIELDS`;
then the body: the records' bytes, one after the other (each as long as its `size`). JSON,
never pickle: a journal another user wrote is safe to parse, and is trusted for records that
user could rewrite anyway (see `trusted`).
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from typing import Any

from ..record import encode_record

ENTRY = struct.Struct("<4sII")
MAGIC = b"MLJ1"
COLUMNS = 4 + 9  # run id, the file's identity (3), ROW_FIELDS
ROW_FIELDS = (
    "experiment_id",
    "index",
    "replicate",
    "status",
    "duration",
    "started_at",
    "finished_at",
    "params",
    "metrics",
)
ROW_KEYS = ("run_id", *ROW_FIELDS)
"""The keys of a row: what `Results` needs of a record to select, sort and tabulate it."""
SUFFIX = ".jnl"
MIN_FIRST_ENTRY = 16
"""A process starts a journal file once it has this many records to note (a task of one run,
as a SLURM array task may be, is not worth a file of its own); after that, every batch."""
MAX_PENDING = 1024
MAX_PENDING_BYTES = 8 << 20
IDLE_SECONDS = 300.0
"""A journal file nobody wrote to for this long may be removed once a snapshot holds its
records (a writer still alive just starts another)."""


class Journal:
    """The journal one process keeps for one store: notes records, appends them in batches."""

    def __init__(self, directory: str):
        self._dir = directory
        self._lock = threading.Lock()
        self._pending: list[tuple[list[Any], bytes]] = []
        self._pending_bytes = 0
        self._path: str | None = None  # this process's journal file, once it has one

    def note(self, run_id: str, st: os.stat_result, data: bytes, record: dict[str, Any]) -> None:
        """Remember that `data`, `record`'s encoding, is the file whose stat is `st`."""
        try:
            row = [run_id, st.st_ino, st.st_mtime_ns, st.st_size]
            row.extend([record[key] for key in ROW_FIELDS])
        except KeyError:  # not a record a table can show: loading reads its file
            return
        with self._lock:
            self._pending.append((row, data))
            self._pending_bytes += len(data)
            full = len(self._pending) >= MAX_PENDING or self._pending_bytes >= MAX_PENDING_BYTES
        if full:
            self.flush(force=True)

    def flush(self, force: bool = False) -> None:
        """Append the noted records as one entry (best effort: on any error they are dropped,
        and loading reads their files). Without `force`, a process with no journal file yet
        waits until it has `MIN_FIRST_ENTRY` records."""
        with self._lock:
            if not self._pending:
                return
            if self._path is None and not force and len(self._pending) < MIN_FIRST_ENTRY:
                return
            pending, self._pending, self._pending_bytes = self._pending, [], 0
            try:
                entry = encode_entry(pending)
                fd = self._open()
                try:
                    view = memoryview(entry)
                    while view:
                        view = view[os.write(fd, view) :]
                finally:
                    os.close(fd)  # no descriptor held between batches
            except (OSError, ValueError, TypeError):
                # a store that cannot be written here, a value JSON cannot hold: nothing is
                # lost but time (loading reads these records' files); a later batch starts
                # a new file
                self._path = None

    def _open(self) -> int:
        """This process's journal file, opened to append; a new one the first time, or when
        a load removed it."""
        if self._path is not None:
            try:
                return os.open(self._path, os.O_WRONLY | os.O_APPEND)
            except FileNotFoundError:
                pass
        path = f"{self._dir}/{_host()}-{os.getpid()}-{os.urandom(4).hex()}{SUFFIX}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
        try:
            fd = os.open(path, flags, 0o644)
        except FileNotFoundError:
            os.makedirs(self._dir, exist_ok=True)
            fd = os.open(path, flags, 0o644)
        self._path = path
        return fd

    def forget(self) -> None:
        """In a forked child: the parent's pending records and journal file are the parent's."""
        self._lock = threading.Lock()
        self._pending, self._pending_bytes, self._path = [], 0, None


def encode_entry(items: list[tuple[list[Any], bytes]]) -> bytes:
    """One journal entry of (row, record bytes) pairs."""
    columns = [list(column) for column in zip(*(row for row, _ in items))]
    header = encode_record(columns)  # type: ignore[arg-type]
    body = b"".join(data for _, data in items)
    return ENTRY.pack(MAGIC, len(header), len(body)) + header + body


def read_entries(data: bytes) -> list[tuple[list[list[Any]], int, int]]:
    """The (columns, body offset, body length) of each whole entry of a journal file's bytes;
    reading stops at the first entry that is cut short or not an entry."""
    import json

    out = []
    view = memoryview(data)
    offset = 0
    while offset + ENTRY.size <= len(data):
        magic, header_len, body_len = ENTRY.unpack_from(data, offset)
        start = offset + ENTRY.size
        end = start + header_len + body_len
        if magic != MAGIC or end > len(data):
            break
        try:
            columns = json.loads(view[start : start + header_len].tobytes())
        except ValueError:
            break
        if (
            isinstance(columns, list)
            and len(columns) == COLUMNS
            and all(isinstance(c, list) and len(c) == len(columns[0]) for c in columns)
        ):
            out.append((columns, start + header_len, body_len))
        offset = end
    return out


def trusted(journal: os.stat_result, uid: int, mode: int) -> bool:
    """Whether a journal file may vouch for a record file of owner `uid` and `mode`: both
    have the same owner, and no one can write the journal who could not write the record."""
    return journal.st_uid == uid and not (journal.st_mode & ~mode & 0o022)


def removable(path: str, st: os.stat_result, now: float) -> bool:
    """Whether a journal file read by a load whose snapshot holds every record it gave may
    go: it must be the user's own, and an earlier snapshot or a file nobody wrote to for
    `IDLE_SECONDS` (a writer still appending to a removed file loses its later entries,
    which costs time: their records are read from their files)."""
    if st.st_uid != os.getuid():
        return False
    return os.path.basename(path).startswith("load-") or now - st.st_mtime > IDLE_SECONDS


def snapshot_name() -> str:
    return f"load-{_host()}-{os.getpid()}-{os.urandom(4).hex()}{SUFFIX}"


_hostname: list[str] = []


def _host() -> str:
    if not _hostname:
        _hostname.append(socket.gethostname().split(".")[0].replace("-", "_") or "host")
    return _hostname[0]
