"""The rows of a file store's runs table that its records give when the cached table does not
(`metalab.stores.file.table`): from the writers' journals, by columns, an entry at a time, where
a journal noted the identity a record's file has now; else from the record files themselves.
"""

from __future__ import annotations

import json
import mmap
import os
import stat
from typing import Any

from ... import _trust, arrow_arrays, runs_table
from ...record import RECORD_FORMAT
from ..atomic import read_fd
from . import journal
from .layout import Layout
from .records import named_record

STORE_COLUMNS = {"_inode": "uint64", "_mtime_ns": "int64", "_size": "uint64"}
"""The columns a file store adds to its runs table: the identity of each record's file."""


def arrow() -> tuple[Any, Any]:
    """pyarrow and pyarrow.compute."""
    pa = runs_table._pa()
    import pyarrow.compute as pc

    return pa, pc


def identical(table: Any, listed: Any) -> Any:
    """A mask of the rows of `table` whose record file `listed` (a table of run ids, each
    once, and file identities) holds as it is: same run id, inode, modification time and
    size. Made with compute functions (a join would load Arrow's query engine, and pandas
    with it)."""
    _, pc = arrow()
    at = pc.index_in(table.column("run_id"), value_set=listed.column("run_id"))
    mask = pc.is_valid(at)
    for key in STORE_COLUMNS:
        same = pc.equal(table.column(key), pc.take(listed.column(key), at))
        mask = pc.and_kleene(mask, same)
    return mask


def from_journals(
    layout: Layout, wanted: Any, owners: set[tuple[int, int]]
) -> tuple[list[Any], Any]:
    """(tables of the rows journals give of the `wanted` records, the rows of `wanted` they
    did not give). `wanted` is a table of run ids and record file identities (see
    `_record_stats`); a journal's row is taken when it noted the identity the file has now,
    and the journal's writer could have written every file of `owners` (owner, mode). Read
    by columns, an entry at a time: no object is kept per row."""
    if not wanted.num_rows:
        return [], wanted
    pa, pc = arrow()
    tables = []
    files = _journal_files(layout.top)
    try:
        for _, jst, data in files:
            if not all(_trust.may_vouch(jst, *owner) for owner in owners):
                continue  # its records are read from their files
            released = 0
            for columns, offset, length in journal.iter_entries(data, metric_columns=True):
                table = _entry_table(columns, data, offset, length)
                if table is not None:
                    tables.append(table)
                released = _release(data, released, offset + length)
    finally:
        for _, _, data in files:  # no descriptor kept: a mapping holds one of its own
            try:
                data.close()
            except BufferError:  # still in use: closed when it is no longer
                pass
    if not tables:
        return [], wanted
    noted = runs_table.concat(tables)
    del tables
    # the rows noted with the identity the file has now, the first of each run id (a record
    # two journals hold alike: a writer's and an earlier load's), in the order noted
    noted = noted.filter(identical(noted, wanted))
    ids = noted.column("run_id")
    first = pc.index_in(ids, value_set=ids)
    matched = noted.filter(pc.equal(first, arrow_arrays.numbers(range(len(ids)), pa.int64())))
    rest = wanted.filter(pc.invert(pc.is_in(wanted["run_id"], matched["run_id"])))
    return [matched], rest


_RELEASE_BYTES = 32 << 20


def _release(data: Any, released: int, upto: int) -> int:
    """Let go of the pages of a mapped journal read up to `upto` (past `released`), every
    `_RELEASE_BYTES`: they stay in the page cache, not in this process's memory. Returns
    how far the mapping is released."""
    end = upto - upto % mmap.PAGESIZE
    if end - released < _RELEASE_BYTES:
        return released
    try:
        data.madvise(mmap.MADV_DONTNEED, released, end - released)
    except (AttributeError, OSError, ValueError):
        return upto  # (no madvise here: the pages go with the mapping)
    return end


def _entry_table(columns: list[Any], data: Any, offset: int, length: int) -> Any | None:
    """The runs table of one journal entry (its columns, and its records' bytes at `offset`
    in `data`), with the identities it noted; None for an entry this metalab did not
    write."""
    try:
        run_ids, inodes, mtimes, sizes = columns[:4]
        fields = dict(zip(journal.ROW_FIELDS, columns[4:]))
        if sum(sizes) != length or (run_ids and set(fields["format"]) != {RECORD_FORMAT}):
            return None
        params, metrics = fields["params"], fields["metrics"]
        if not all(type(p) is dict for p in params) or not (
            isinstance(metrics, dict) or all(type(m) is dict for m in metrics)
        ):
            return None
        record_columns = {name: fields[name] for name in runs_table.RECORD_COLUMNS[1:]}
        extra = {
            "_inode": ("uint64", inodes),
            "_mtime_ns": ("int64", mtimes),
            "_size": ("uint64", sizes),
            runs_table.SERIES: ("string", _series_texts(data, offset, sizes)),
        }
        table = runs_table.build({"run_id": run_ids, **record_columns}, params, metrics, extra)
    except (TypeError, ValueError, KeyError, IndexError, OverflowError):
        return None
    return runs_table.checked(table)


_NO_SERIES = b'"series": {}'
_SERIES_KEY = b'"series": '


def _series_texts(data: Any, offset: int, sizes: list[int]) -> list[str | None]:
    """The `_series` of the records one after the other at `offset` in `data`: a record
    whose only `"series"` key holds `{}` (most) is not parsed, nor copied."""
    out: list[str | None] = []
    loads = json.loads
    find = data.find
    for size in sizes:
        start, offset = offset, offset + size
        key = find(_SERIES_KEY, start, offset)
        if (
            key >= 0
            and find(_SERIES_KEY, key + 1, offset) < 0
            and find(_NO_SERIES, key, offset) == key
        ):
            out.append(None)
            continue
        parsed = loads(data[start:offset])
        out.extend(runs_table.series_texts([parsed]))
    return out


def _journal_files(top: str) -> list[tuple[str, os.stat_result, Any]]:
    """(path, stat, mapped bytes) of the journal files of the store at `top`, snapshots
    first; mapped, not read: most of a journal is records' bytes a table does not need."""
    directory = f"{top}/cache/journal"
    try:
        names = sorted(os.listdir(directory), key=lambda n: (not n.startswith("load-"), n))
    except OSError:
        return []
    out = []
    for name in names:
        if not name.endswith(journal.SUFFIX) or name.startswith("."):
            continue
        try:
            fd = os.open(f"{directory}/{name}", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and st.st_size:
                out.append((name, st, mmap.mmap(fd, 0, access=mmap.ACCESS_READ)))
        except (OSError, ValueError):
            pass
        finally:
            os.close(fd)
    return out


def from_files(layout: Layout, wanted: Any) -> tuple[list[dict[str, Any]], list[Any]]:
    """The records of `wanted` (a table of run ids, see `_record_stats`) read from their
    files, with the stat of each file read (a record replaced since its listing gets the
    identity of the file read)."""
    rows = []
    stats = []
    for run_id in sorted(wanted.column("run_id").to_pylist()):
        path = layout.record_path(run_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:  # removed since the listing
            continue
        try:
            st = os.fstat(fd)
            raw = read_fd(fd, st.st_size + 1) if stat.S_ISREG(st.st_mode) else None
        except OSError:
            raw = None
        finally:
            os.close(fd)
        record = None if raw is None else named_record(raw, path)
        if record is not None:
            stats.append(st)
            rows.append(record)
    return rows, stats


def table_of_rows(rows: list[dict[str, Any]], stats: list[os.stat_result]) -> Any:
    """The runs table of records read from their files, with their files' identities."""
    extra: dict[str, tuple[str, list[Any]]] = {
        "_inode": ("uint64", [st.st_ino for st in stats]),
        "_mtime_ns": ("int64", [st.st_mtime_ns for st in stats]),
        "_size": ("uint64", [st.st_size for st in stats]),
        runs_table.SERIES: ("string", runs_table.series_texts(rows)),
    }
    return runs_table.from_rows(rows, extra)
