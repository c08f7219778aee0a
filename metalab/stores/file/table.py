"""The runs table of a file store: one Parquet file, checked against the records at each load.

`cache/table/runs.parquet` holds a runs table (`metalab.runs_table`) of every record of the
store, sorted as loads return them (experiment id, run index, run id), with three store
columns: `_inode`, `_mtime_ns` and `_size`, the identity of each record's file when the table
was made. Its schema metadata `metalab.shards` notes, for each directory of records
(`runs/<aa>`), its inode and modification time as they were before it was listed.

Records are only ever renamed into place or removed, and either changes the directory that
holds them. So a load stats the directories only (256 at most), and trusts the table's rows
for a directory whose inode and modification time are the ones noted. Every other directory
is listed and its files stat'ed: a row is kept where the file is the one noted (same inode,
modification time and size), the journals writers keep (`metalab.stores.file.journal`) give
the rows of records written since, and any other record is read from its file. A directory
is noted only when it was last changed at least `SETTLED_NS` before it was listed (the
filesystem's clock, read from a file written then), so that a record written in the same
clock tick as the listing is never missed. When anything changed, the load writes the table
again (when this user may write the store).

The table is a cache: deleting it costs time, never a record. A table file that is damaged,
is no runs table, was written by someone who could not have written the records, or notes
directories that are not these is never trusted: its rows are checked as any others.
A record edited in place by hand (not replaced) changes no directory: touch the directory of
its run, or delete `cache/table/`, and the next load reads it again.
"""

from __future__ import annotations

import binascii
import json
import os
import stat
import time
from typing import Any

from ... import _trust, arrow_arrays, runs_table
from ..._identity import RUN_ID_LENGTH
from ..atomic import atomic_write, read_fd, remove_if_left, temporary
from . import journal
from .layout import LINKED_DIRECTORY, Layout
from .records import not_a_record
from .table_rows import STORE_COLUMNS as _STORE_COLUMNS
from .table_rows import arrow as _arrow
from .table_rows import from_files, from_journals, identical, table_of_rows

TABLE = "cache/table/runs.parquet"
SETTLED_NS = 1_000_000_000
"""How long before its listing a directory must have last changed to be noted as settled."""
FRESH_WORTH_A_TABLE = 1000
"""A load that notes no directory writes its table when it read this many records from their
files (reading fewer again costs less than writing the table)."""


def _read(source: Any, columns: list[str] | None = None) -> Any:
    """The table of a Parquet file's bytes (`columns` of it, or all), read in the calling
    thread: Arrow's thread pools, torn down at interpreter exit while a worker of theirs is
    still alive, can abort the process (`std::terminate`). Read through `ParquetFile`, not
    `read_table`, whose first call in a process sets up Arrow's datasets: about a second
    and 80 MB."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(source, pre_buffer=False).read(columns=columns, use_threads=False)


def load_table(layout: Layout, experiment: str | None = None, *, write: bool = False) -> Any:
    """The runs of the store (of one experiment id or name; all when None) as a runs table,
    from the cached table where it is current; rewrites the cache when it was not and the
    new one saves later loads work (`write`: whenever it was not current)."""
    pa, pc = _arrow()
    cached, noted = _cached(layout)
    if cached is not None and _as_noted(_directories(layout), noted):
        found = _of_experiment(pc, runs_table.without_store_columns(cached), experiment)
        return runs_table.in_order_of_appearance(found)
    # the table is to be made again: the filesystem's clock first, then the directories
    # (stat'ed again), so that a directory noted now changed well before it was listed
    clock = _filesystem_now(layout)
    directories = _directories(layout)
    settled = {
        name for name, st in directories.items() if noted.get(name) == [st.st_ino, st.st_mtime_ns]
    }
    changed = [name for name in directories if name not in settled]
    listed, owners = _record_stats(layout, changed)
    parts = []
    if cached is not None:
        shard = _shard_of(pc, cached.column("run_id"), layout.sharded)
        parts.append(cached.filter(pc.is_in(shard, arrow_arrays.strings(sorted(settled)))))
        still = _still_current(pa, pc, cached, shard, changed, listed)
        if still is not None:
            parts.append(still)
            listed = listed.filter(pc.invert(pc.is_in(listed["run_id"], still["run_id"])))
    journaled, listed = from_journals(layout, listed, owners)
    parts += journaled
    fresh, stats = from_files(layout, listed)
    if fresh:
        parts.append(table_of_rows(fresh, stats))
    table = runs_table.concat(parts) if parts else _empty()
    if changed or cached is None or settled != noted.keys():
        table = table.sort_by(
            [("experiment_id", "ascending"), ("index", "ascending"), ("run_id", "ascending")]
        )
        table = runs_table.in_order_of_appearance(table)
        settled_now = _settled_now(directories, clock)
        # a table that notes no directory saves the next load little over the journals,
        # unless many records had to be read from their files (right after a sweep, every
        # directory changed a moment ago: no table is written then)
        worth = write or settled_now or len(fresh) >= FRESH_WORTH_A_TABLE
        if worth and _write(layout, table, settled_now):
            _retire_journals(layout)
        else:
            _remove_leftovers(layout)
    table = _of_experiment(pc, runs_table.without_store_columns(table), experiment)
    if experiment is not None:  # its own runs may name their columns in another order
        table = runs_table.in_order_of_appearance(table)
    # what the rebuild allocated and freed goes back to the system, not to Arrow's pool
    pa.default_memory_pool().release_unused()
    return table


def _as_noted(directories: dict[str, os.stat_result], noted: dict[str, Any]) -> bool:
    """Whether the directories of records are exactly those a table noted, unchanged."""
    return noted.keys() == directories.keys() and all(
        noted[name] == [st.st_ino, st.st_mtime_ns] for name, st in directories.items()
    )


def current_runs(layout: Layout) -> tuple[set[str], set[str]] | None:
    """(run ids with a record, run ids completed), from the cached table when it holds every
    directory of records as it is now; None when it does not (or pyarrow is missing), and
    the records must be listed. Reads the table's run ids and statuses only."""
    statuses = _current_statuses(layout)
    if statuses is None:
        return None
    _, pc = _arrow()
    ids, completed = statuses
    if pc.all(completed).as_py() is not False:  # every run completed (or none at all)
        every = set(ids.to_pylist())
        return every, every.copy()  # (a copy is quicker than a second set of strings)
    return set(ids.to_pylist()), set(ids.filter(completed).to_pylist())


def completed_ids(layout: Layout) -> bytes | None:
    """The run ids of the completed records, 16 bytes each back to back (`bytes.fromhex` of
    each id), from the cached table when it is current (see `current_runs`); None when the
    records must be listed. No string is made per run."""
    statuses = _current_statuses(layout)
    if statuses is None:
        return None
    _, pc = _arrow()
    ids, completed = statuses
    if pc.all(completed).as_py() is False:
        ids = ids.filter(completed)
    ids = ids.chunk(0) if ids.num_chunks == 1 else ids.combine_chunks()
    text = _id_text(ids)
    return None if text is None else binascii.unhexlify(text)


def _id_text(ids: Any) -> memoryview | None:
    """The characters of `ids` (an Arrow string array) back to back, when each is a run id
    (32 lowercase hexadecimal digits); else None. Checked on the array's buffers: no string
    is made per id."""
    import numpy as np

    count, width = len(ids), RUN_ID_LENGTH
    if not count:
        return memoryview(b"")
    if ids.null_count:
        return None
    offsets_buffer, data_buffer = ids.buffers()[1:3]
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[ids.offset : ids.offset + count + 1]
    start = int(offsets[0])
    if not np.array_equal(offsets, np.arange(start, start + width * count + 1, width)):
        return None  # an id not of 32 characters
    text = memoryview(data_buffer)[start : start + width * count]
    step = 1 << 20
    for at in range(0, len(text), step):  # (a slice at a time: no copy of the whole text)
        if text[at : at + step].tobytes().translate(None, b"0123456789abcdef"):
            return None  # not lowercase hexadecimal
    return text


def _current_statuses(layout: Layout) -> tuple[Any, Any] | None:
    """(run ids, completed or not) as Arrow arrays, from the cached table when it holds every
    directory of records as it is now; else None."""
    opened = _opened(layout)  # first: a store without a table imports no pyarrow
    if opened is None or not runs_table.available():
        return None
    import pyarrow.parquet as pq

    directories = _directories(layout)
    try:
        source = runs_table._pa().py_buffer(opened)
        schema = pq.read_schema(source)
        noted = json.loads((schema.metadata or {})[b"metalab.shards"])
        if not isinstance(noted, dict) or not _as_noted(directories, noted):
            return None
        if not runs_table.readable_schema(schema):
            return None
        table = _read(source, ["run_id", "status"])
    except Exception:  # noqa: BLE001 - damaged or foreign: the records are listed
        return None
    pa, pc = _arrow()
    if table.schema.types != [pa.string(), pa.string()] or table.column("status").null_count:
        return None
    ids = table.column("run_id")
    if any(_id_text(chunk) is None for chunk in ids.chunks):
        return None
    # (a pattern, not a Python string made an Arrow scalar: that conversion imports pandas)
    return ids, pc.match_substring_regex(table.column("status"), pattern="^completed$")


def _empty() -> Any:
    extra: dict[str, tuple[str, list[Any]]] = {k: (t, []) for k, t in _STORE_COLUMNS.items()}
    return runs_table.build({}, [], [], {**extra, runs_table.SERIES: ("string", [])})


# ---------------------------------------------------------------- what is on disk
def _directories(layout: Layout) -> dict[str, os.stat_result]:
    """The stat of each directory of records, by shard name (`""` for a store of version 1,
    whose records share `runs/`)."""
    top = f"{layout.top}/runs"
    if not layout.sharded:
        try:
            return {"": os.stat(top)}
        except OSError:
            return {}
    out = {}
    try:
        names = os.listdir(top)
    except OSError:
        return {}
    for name in names:
        if layout.is_shard(name):
            try:
                st = os.stat(f"{top}/{name}", follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                out[name] = st
            elif stat.S_ISLNK(st.st_mode):
                _trust.skipped(f"{top}/{name}", LINKED_DIRECTORY)
    return out


def _record_stats(layout: Layout, shards: list[str]) -> tuple[Any, set[tuple[int, int]]]:
    """The record files of `shards`: a table of their run ids and identities (`_inode`,
    `_mtime_ns`, `_size`), and the (owner, mode) pairs the files have. Built a batch of
    directories at a time: Python objects are kept for at most `_STAT_BATCH` files."""
    pa, _ = _arrow()
    owners: set[tuple[int, int]] = set()
    parts = []
    ids: list[str] = []
    stats: list[os.stat_result] = []
    for name in sorted(shards):
        directory = f"{layout.top}/runs/{name}" if name else f"{layout.top}/runs"
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            for run_id, _ in layout.runs_in("runs", directory, os.listdir(fd), "json"):
                try:
                    st = os.stat(f"{run_id}.json", dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:  # removed since the listing
                    continue
                if stat.S_ISREG(st.st_mode):
                    ids.append(run_id)
                    stats.append(st)
                else:  # a link (which could lead anywhere), a directory: no record
                    not_a_record(f"{directory}/{run_id}.json", st)
        finally:
            os.close(fd)
        if len(ids) >= _STAT_BATCH:
            parts.append(_identities(pa, ids, stats, owners))
            ids, stats = [], []
    if ids or not parts:
        parts.append(_identities(pa, ids, stats, owners))
    return (parts[0] if len(parts) == 1 else pa.concat_tables(parts)), owners


_STAT_BATCH = 16_384
"""Record files `_record_stats` notes in Python lists before it makes them Arrow columns."""


def _identities(
    pa: Any, ids: list[str], stats: list[os.stat_result], owners: set[tuple[int, int]]
) -> Any:
    """A table of run ids and the identities of their record files (`stats`); adds the
    files' (owner, mode) pairs to `owners`."""
    owners.update({(st.st_uid, st.st_mode) for st in stats})
    return pa.table(
        {
            "run_id": arrow_arrays.strings(ids),
            "_inode": arrow_arrays.numbers([st.st_ino for st in stats], pa.uint64()),
            "_mtime_ns": arrow_arrays.numbers([st.st_mtime_ns for st in stats], pa.int64()),
            "_size": arrow_arrays.numbers([st.st_size for st in stats], pa.uint64()),
        }
    )


def _filesystem_now(layout: Layout) -> int | None:
    """The filesystem's clock now (ns), from a file written and removed; None when this user
    may not write here (then no table is written either)."""
    directory = f"{layout.top}/cache/table"
    path = f"{directory}/{temporary('clock')}"
    try:
        os.makedirs(directory, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return None
    try:
        return os.fstat(fd).st_mtime_ns
    finally:
        os.close(fd)
        try:
            os.unlink(path)
        except OSError:
            pass


def _settled_now(directories: dict[str, os.stat_result], clock: int | None) -> dict[str, list]:
    """The directories a table made now may note: those last changed well before `clock`."""
    if clock is None:
        return {}
    return {
        name: [st.st_ino, st.st_mtime_ns]
        for name, st in directories.items()
        if st.st_mtime_ns < clock - SETTLED_NS
    }


# ---------------------------------------------------------------- the cached table
def _cached(layout: Layout) -> tuple[Any, dict]:
    """(the cached table, the directories it notes), or (None, {}) when there is none this
    load may trust."""

    data = _opened(layout)
    if data is None:
        return None, {}
    try:
        table = _read(runs_table._pa().py_buffer(data))
        noted = json.loads((table.schema.metadata or {})[b"metalab.shards"])
    except Exception:  # noqa: BLE001 - damaged or foreign: never trusted, only ignored
        return None, {}
    table = runs_table.checked(table)
    if table is None or not isinstance(noted, dict) or not _has_store_columns(table):
        return None, {}
    if table.schema.field("run_id").type != runs_table._pa().string():
        return None, {}  # an empty table of an earlier version, its run ids untyped
    if any(_id_text(chunk) is None for chunk in table.column("run_id").chunks):
        return None, {}  # (each run id is checked again when it becomes a path)
    return table, {k: v for k, v in noted.items() if isinstance(v, list)}


def _opened(layout: Layout) -> bytes | None:
    """The bytes of the cached table file when this load may trust it: a regular file
    whoever could write the records wrote, nobody else could; or None. (Read, not mapped:
    a mapping would keep the file open for as long as the table read from it lives.)"""
    path = f"{layout.top}/{TABLE}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        owner = os.stat(f"{layout.top}/runs")
        if not stat.S_ISREG(st.st_mode) or not _trust.may_vouch(st, owner.st_uid, 0o755):
            return None
        return read_fd(fd, st.st_size + 1) if st.st_size else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _has_store_columns(table: Any) -> bool:
    pa, _ = _arrow()
    series = runs_table.SERIES
    if series not in table.column_names or table.schema.field(series).type != pa.string():
        return False
    return all(
        name in table.column_names and table.schema.field(name).type == getattr(pa, type_)()
        for name, type_ in _STORE_COLUMNS.items()
    )


def _shard_of(pc: Any, run_ids: Any, sharded: bool) -> Any:
    if sharded:
        return pc.utf8_slice_codeunits(run_ids, 0, 2)
    return pc.if_else(pc.is_valid(run_ids), "", None)


def _still_current(
    pa: Any, pc: Any, cached: Any, shard: Any, changed: list[str], listed: Any
) -> Any | None:
    """The rows of `cached` in `changed` directories whose file is the one they note (the
    record files of those directories are `listed`, see `_record_stats`)."""
    if not changed or not listed.num_rows:
        return None
    candidates = cached.filter(pc.is_in(shard, arrow_arrays.strings(changed)))
    if not candidates.num_rows:
        return None
    matched = candidates.filter(identical(candidates, listed))
    return matched if matched.num_rows else None


def _write(layout: Layout, table: Any, settled: dict[str, list]) -> bool:
    """Write `table` as the store's cached table, noting `settled` directories; best effort
    (a store this user may not write keeps the table it has). Whether it was written."""
    import pyarrow.parquet as pq

    if not _writable(layout.top):
        return False
    pa, _ = _arrow()
    metadata = dict(table.schema.metadata or {})
    metadata[b"metalab.shards"] = json.dumps(settled).encode()
    sink = pa.BufferOutputStream()
    try:
        pq.write_table(table.replace_schema_metadata(metadata), sink, compression="zstd")
        atomic_write(f"{layout.top}/{TABLE}", sink.getvalue().to_pybytes(), make_dir=True)
    except (OSError, pa.ArrowException):
        return False
    return True


def _retire_journals(layout: Layout) -> None:
    """Remove the journal files the table just written makes redundant: this user's, that
    nobody wrote to for a while (`journal.removable`); a writer still at work keeps its own.
    Temporary files dead writers left in `cache/` go too."""
    _remove_leftovers(layout)
    directory = f"{layout.top}/cache/journal"
    try:
        names = os.listdir(directory)
    except OSError:
        return
    now = time.time()
    for name in names:
        if not name.endswith(journal.SUFFIX) or name.startswith("."):
            continue
        path = f"{directory}/{name}"
        try:
            st = os.stat(path, follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and journal.removable(path, st, now):
                os.unlink(path)
        except OSError:
            continue


def _remove_leftovers(layout: Layout) -> None:
    """Remove the temporary files dead writers left in `cache/`."""
    for leftovers in (f"{layout.top}/cache/table", f"{layout.top}/cache/journal"):
        try:
            for name in os.listdir(leftovers):
                remove_if_left(leftovers, name)
        except OSError:
            continue


def _writable(top: str) -> bool:
    for directory in (f"{top}/cache/table", f"{top}/cache", top):
        if os.path.lexists(directory):
            return os.path.isdir(directory) and os.access(directory, os.W_OK)
    return False


def _of_experiment(pc: Any, table: Any, experiment: str | None) -> Any:
    if experiment is None:
        return table
    ids = table.column("experiment_id")
    if ":" in experiment:
        return table.filter(pc.is_in(ids, value_set=arrow_arrays.strings([experiment])))
    return table.filter(pc.starts_with(ids, f"{experiment}:"))
