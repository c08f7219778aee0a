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

Entry format: `ENTRY` (magic, the lengths of the three parts that follow, and the CRC-32 of
them, so that a damaged entry is never read), then
* the header, UTF-8 JSON: `[run ids, *ROW_FIELDS]`, a column each, with one value per record.
  A column is a JSON list, or `{"f8": k}`: the k-th array of the binary part (floats, which
  JSON is slow to write and read). `metrics` is a list of dicts, or, when every record of the
  entry has the same metric names, `{"keys": [names], "columns": [a column per name]}`;
* the binary part: arrays of 8-byte little-endian values, one value per record: inodes,
  mtimes (ns) and sizes of the record files, then the float columns;
* the body: the records' bytes, one after the other (each as long as its size).

No pickle: a journal another user wrote is safe to read, and is trusted for records that user
could rewrite anyway (`metalab._trust.may_vouch`). A record it holds is taken only when it
names the run its file is named after (`names_run`).
"""

from __future__ import annotations

import array
import itertools
import json
import operator
import os
import struct
import sys
import threading
import weakref
import zlib
from collections.abc import Iterator
from typing import Any

from ...claims import HOST_TAG
from ...record import RECORD_COLUMNS, RECORD_FORMAT, copied, encode_record

ENTRY = struct.Struct("<4sIIII")
MAGIC = b"MLJ1"
_IDENTITY = ("Q", "q", "Q")  # array types of inode, mtime_ns, size
ROW_FIELDS = ("format", *RECORD_COLUMNS[1:], "params", "metrics")
"""What a journal notes of each record besides its run id (a change here changes `MAGIC`)."""
ROW_KEYS = ("run_id", *ROW_FIELDS)
"""The keys of a row: what `Results` needs of a record to select, sort and tabulate it."""
_row_of = operator.itemgetter(*ROW_FIELDS)
SUFFIX = ".jnl"
MIN_FIRST_ENTRY = 16
"""A process starts a journal file once it has this many records to note (a task of one run,
as a SLURM array task may be, is not worth a file of its own); after that, every batch."""
MAX_PENDING = 1024
MAX_PENDING_BYTES = 8 << 20
MAX_FILE_BYTES = 256 << 20
"""A writer starts a new journal file past this size, so that a long-lived one (a Dask worker
serving many sweeps) leaves files that go idle and can be replaced by a snapshot."""
IDLE_SECONDS = 300.0
"""A journal file nobody wrote to for this long may be removed once a snapshot holds its
records (a writer still alive just starts another)."""


class Journal:
    """The journal one process keeps for one store: notes records, appends them in batches."""

    def __init__(self, directory: str):
        self._dir = directory
        self._lock = threading.Lock()
        # (run id, stat, bytes, row values) of each record written since the last entry; the
        # values are the record's own (its params and metrics dicts, not copies) until a
        # batch ends without an entry, when those kept for the next are copied
        self._pending: list[tuple[str, os.stat_result, bytes, tuple[Any, ...]]] = []
        self._kept: list[tuple[str, os.stat_result, bytes, tuple[Any, ...]]] = []
        self._pending_bytes = 0
        self._path: str | None = None  # this process's journal file, once it has one
        self._written = 0  # bytes written to it
        _journals.add(self)

    def note(self, run_id: str, st: os.stat_result, data: bytes, record: dict[str, Any]) -> None:
        """Remember that `data`, `record`'s encoding, is the file whose stat is `st`.

        Called for every record written, so it only takes the row's values and appends
        (atomic under the GIL: the threads of a process share a journal); `flush` does the
        rest, once per batch, before the batch's records leave the task's hands."""
        try:
            row = _row_of(record)
        except KeyError:  # not a record a table can show: loading reads its file
            return
        self._pending.append((run_id, st, data, row))
        self._pending_bytes += len(data)  # an estimate when threads race: bounds memory only
        if len(self._pending) >= MAX_PENDING or self._pending_bytes >= MAX_PENDING_BYTES:
            self.flush(force=True)

    def flush(self, force: bool = False) -> None:
        """Append the noted records as one entry (best effort: on any error they are dropped,
        and loading reads their files). Without `force`, a process with no journal file yet
        waits until it has `MIN_FIRST_ENTRY` records."""
        with self._lock:
            pending, self._pending = self._pending, []
            # a copy: a thread that read `_pending` before the swap may still append to it
            items = self._kept + list(pending)
            if not items:
                return
            if self._path is None and not force and len(items) < MIN_FIRST_ENTRY:
                # kept for the next batch: the values as they are now, since the caller
                # gets the records (and may change them) once this batch ends
                self._kept = [(*item[:3], _copied_row(item[3])) for item in items]
                return
            self._kept, self._pending_bytes = [], 0
            try:
                entry = encode_entry(
                    [item[0] for item in items],
                    [item[1] for item in items],
                    [item[2] for item in items],
                    [[item[3][k] for item in items] for k in range(len(ROW_FIELDS))],
                )
                fd = self._open()
                try:
                    write_all(fd, entry)
                finally:
                    os.close(fd)  # no descriptor held between batches
                self._written += sum(map(len, entry))
            except (OSError, ValueError, TypeError):
                # a store that cannot be written here, a value JSON cannot hold: nothing is
                # lost but time (loading reads these records' files); a later batch starts
                # a new file
                self._path = None

    def _open(self) -> int:
        """This process's journal file, opened to append; a new one the first time, or when
        a load removed it."""
        if self._path is not None and self._written < MAX_FILE_BYTES:
            try:
                return os.open(self._path, os.O_WRONLY | os.O_APPEND)
            except FileNotFoundError:
                pass
        path = f"{self._dir}/{HOST_TAG}-{os.getpid()}-{os.urandom(4).hex()}{SUFFIX}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
        try:
            fd = os.open(path, flags, 0o644)
        except FileNotFoundError:
            os.makedirs(self._dir, exist_ok=True)
            fd = os.open(path, flags, 0o644)
        self._path, self._written = path, 0
        return fd

    def forget(self) -> None:
        """In a forked child: the parent's pending records and journal file are the parent's."""
        self._lock = threading.Lock()
        self._pending, self._kept = [], []
        self._pending_bytes, self._path, self._written = 0, None, 0


_journals: weakref.WeakSet[Journal] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for journal in list(_journals):
        journal.forget()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _copied_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row's values as they are now (its params and metrics copied)."""
    return (*row[:-2], copied(row[-2]), copied(row[-1]))


def encode_entry(
    run_ids: list[str],
    stats: list[os.stat_result],
    records: list[bytes],
    fields: list[list[Any]],
) -> list[bytes]:
    """One journal entry, in parts to write one after the other: the records' run ids, file
    stats and bytes, and their `ROW_FIELDS` (one list per field)."""
    arrays = [
        _packed("Q", [st.st_ino for st in stats]),
        _packed("q", [st.st_mtime_ns for st in stats]),
        _packed("Q", [st.st_size for st in stats]),
    ]
    columns: list[Any] = [run_ids]
    for name, values in zip(ROW_FIELDS, fields):
        if name == "metrics":
            columns.append(_metrics_column(values, arrays))
        else:
            columns.append(_column(values, arrays))
    header = encode_record(columns)  # type: ignore[arg-type]
    binary = b"".join(arrays)
    body = sum(map(len, records))
    check = zlib.crc32(binary, zlib.crc32(header))
    for record in records:
        check = zlib.crc32(record, check)
    return [ENTRY.pack(MAGIC, len(header), len(binary), body, check), header, binary, *records]


def write_all(fd: int, parts: list[bytes]) -> None:
    """Write `parts` to `fd` in order, in as few calls as the system allows (one `writev`
    for up to 1,000 of them: no copy of the records into one buffer)."""
    index = 0
    while index < len(parts):
        batch = parts[index : index + 1000]
        written = os.writev(fd, batch)
        for part in batch:  # a short write: go on from where it stopped
            if written >= len(part):
                written -= len(part)
                index += 1
                continue
            parts[index] = part[written:]
            break


def _packed(code: str, values: list[Any]) -> bytes:
    packed = array.array(code, values)
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def _column(values: list[Any], arrays: list[bytes]) -> Any:
    """A column as the header holds it: floats go to the binary part."""
    if values and set(map(type, values)) == {float}:
        arrays.append(_packed("d", values))
        return {"f8": len(arrays) - 1}
    return values


def _metrics_column(values: list[Any], arrays: list[bytes]) -> Any:
    first = values[0] if values else None
    if type(first) is not dict:
        return values
    keys = tuple(first)
    if not all(type(m) is dict and tuple(m) == keys for m in values):
        return values  # records with different metrics: a dict each
    return {"keys": keys, "columns": [_column([m[k] for m in values], arrays) for k in keys]}


def read_entries(data: bytes, *, metric_columns: bool = False) -> list[tuple[list[Any], int, int]]:
    """The (columns, body offset, body length) of each whole entry of a journal file's bytes:
    `iter_entries` as a list."""
    return list(iter_entries(data, metric_columns=metric_columns))


def iter_entries(
    data: Any, *, metric_columns: bool = False
) -> Iterator[tuple[list[Any], int, int]]:
    """The (columns, body offset, body length) of each whole entry of a journal file's bytes,
    the columns `[run ids, inodes, mtimes, sizes, *ROW_FIELDS]`, one entry at a time; reading
    stops at the first entry that is cut short or not an entry. With `metric_columns`, the
    metrics of an entry whose records have the same metric names come as `{name: a value
    per record}`."""
    view = memoryview(data)
    offset = 0
    while offset + ENTRY.size <= len(data):
        magic, header_len, binary_len, body_len, check = ENTRY.unpack_from(data, offset)
        start = offset + ENTRY.size
        end = start + header_len + binary_len + body_len
        if magic != MAGIC or end > len(data):
            break
        if zlib.crc32(view[start:end]) != check:  # damaged: its records are read from files
            offset = end
            continue
        try:
            header = json.loads(view[start : start + header_len].tobytes())
            columns = _columns(
                header,
                view[start + header_len : start + header_len + binary_len],
                metric_columns,
            )
        except (ValueError, TypeError, KeyError, IndexError, RecursionError):
            columns = None  # not an entry this metalab wrote: skipped
        if columns is not None:
            yield columns, start + header_len + binary_len, body_len
        offset = end


def _columns(header: Any, binary: memoryview, metric_columns: bool = False) -> list[Any] | None:
    """The columns of an entry from its header and binary part; None when malformed."""
    if not isinstance(header, list) or len(header) != 1 + len(ROW_FIELDS):
        return None
    run_ids = header[0]
    if not isinstance(run_ids, list) or not set(map(type, run_ids)) <= {str}:
        return None
    n = len(run_ids)
    if binary.nbytes % (8 * n if n else 1):
        return None
    arrays = [binary[i * 8 * n : (i + 1) * 8 * n] for i in range(binary.nbytes // (8 * n or 1))]

    def unpacked(code: str, k: int) -> list[Any]:
        values = array.array(code)
        values.frombytes(arrays[k])
        if sys.byteorder != "little":
            values.byteswap()
        return values.tolist()

    def column(spec: Any) -> list[Any]:
        values = unpacked("d", spec["f8"]) if isinstance(spec, dict) else spec
        if not isinstance(values, list) or len(values) != n:
            raise ValueError("a column of the wrong length")
        return values

    columns: list[Any] = [run_ids, *(unpacked(code, k) for k, code in enumerate(_IDENTITY))]
    for name, spec in zip(ROW_FIELDS, header[1:]):
        if name == "metrics" and isinstance(spec, dict):
            keys = spec["keys"]
            values = [column(c) for c in spec["columns"]]
            if len(values) != len(keys) or not set(map(type, keys)) <= {str}:
                return None
            if metric_columns:
                columns.append(dict(zip(keys, values)))
                continue
            columns.append(
                [dict(zip(keys, row)) for row in zip(*values)] if keys else [{} for _ in range(n)]
            )
        else:
            columns.append(column(spec))
    return columns


_HEAD = b'{"format": "%s", ' % RECORD_FORMAT.encode()
_PREFIX = _HEAD + b'"run_id": "%s"'
_KEYED_HEAD = _HEAD + b'"run_id": "'


def name_their_runs(data: bytes, starts: list[int], end: int, run_ids: list[str]) -> bool:
    """Whether the records in `data` starting at `starts` (the last ending at `end`) name
    their runs, `run_ids`, as `names_run` says, checked for a whole journal entry at once:
    each record has its `run_id` key right after its head, with its run id, and there is no
    other."""
    begin = starts[0] if starts else end
    at = len(_KEYED_HEAD)
    return (
        data.count(b'"run_id"', begin, end) == len(run_ids)
        and data.find(b"\\u", begin, end) < 0
        and all(map(data.startswith, itertools.repeat(_KEYED_HEAD), starts))
        and [data[s + at : s + at + 33] for s in starts] == [b'%s"' % r.encode() for r in run_ids]
    )


def names_run(data: bytes, run_id: str) -> bool:
    """Whether the record bytes `data` name `run_id` as their run id (and no other).

    Records are JSON whose first keys are `format` and `run_id`, as `encode_record` writes
    them: when that key appears once in the bytes, with no `\\u` escape that could spell it
    otherwise, the prefix decides without parsing the record; any other record is parsed."""
    if (
        data.startswith(_PREFIX % run_id.encode())
        and data.count(b'"run_id"') == 1
        and b"\\u" not in data
    ):
        return True
    try:
        record = json.loads(data)
    except (ValueError, RecursionError):
        return False
    return isinstance(record, dict) and record.get("run_id") == run_id


def removable(path: str, st: os.stat_result, now: float) -> bool:
    """Whether a journal file read by a load whose snapshot holds every record it gave may
    go: it must be the user's own, and an earlier snapshot or a file nobody wrote to for
    `IDLE_SECONDS` (a writer still appending to a removed file loses its later entries,
    which costs time: their records are read from their files)."""
    if st.st_uid != os.getuid():
        return False
    return os.path.basename(path).startswith("load-") or now - st.st_mtime > IDLE_SECONDS


def snapshot_name() -> str:
    return f"load-{HOST_TAG}-{os.getpid()}-{os.urandom(4).hex()}{SUFFIX}"
