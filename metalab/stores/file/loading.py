"""Loading every record of a file store at once, from journals where they are current.

The record files are listed and stat'ed; a journal entry gives a record only where the
identity it noted (inode, mtime, size) is the file's now, and only when the journal's owner
could have rewritten that file anyway (`metalab._trust.may_vouch`). Every other record is
read from its file. A load that read many files, or found journals worth merging, writes a
snapshot journal of everything it loaded (see `metalab.stores.file.journal`).
"""

from __future__ import annotations

import itertools
import os
import stat
import time
from typing import Any

from ... import _trust
from ...record import RECORD_FORMAT
from ..atomic import NotAFile, atomic_write, read_fd, read_with_stat, remove_if_left
from . import journal
from .layout import Layout
from .records import identity, named_record, not_a_record

SNAPSHOT_AFTER_READS = 1000
"""A load that read at least this many record files from disk (no journal held them) writes
a snapshot journal of everything it loaded, so the next load reads few files."""
SNAPSHOT_AFTER_FILES = 64
"""A load that found more journal files a snapshot could replace writes one."""

Entry = bytes | dict[str, Any]
"""A record as loaded: its bytes, as a journal holds them, or the record read from its file."""
Row = dict[str, Any]
"""What a results table needs of a record (the keys `journal.ROW_KEYS`)."""


def load_records(layout: Layout) -> list[tuple[Entry, Row]]:
    """Every record of the store as (entry, row); may write a snapshot journal."""
    files = record_stats(layout)
    found: dict[str, Entry] = {}
    rows: dict[str, Row] = {}
    journals = read_journals(layout.top)
    if journals:
        current = _Current(files)
        matched = [current.take(data, jst, found, rows) for _, jst, data in journals]
    else:
        matched = []
    read = _read_files(layout, files, found, rows)
    # the journal files a snapshot would replace, and the bytes of their records no load
    # needs (rewritten or removed since, or given by another journal first)
    now = time.time()
    removable = [
        (path, held - given)
        for (path, st, _), (given, held) in zip(journals, matched)
        if journal.removable(path, st, now)
    ]
    if (
        len(read) >= SNAPSHOT_AFTER_READS
        or len(removable) > SNAPSHOT_AFTER_FILES
        or sum(w for _, w in removable) > sum(g for g, _ in matched) // 2 + (1 << 20)
    ) and _journal_writable(layout.top):
        snapshot = _snapshot(found, rows, read, files)
        _write_snapshot(layout.top, snapshot, [path for path, _ in removable])
    return [(entry, rows[run_id]) for run_id, entry in found.items()]


def _read_files(
    layout: Layout,
    files: dict[str, os.stat_result],
    found: dict[str, Entry],
    rows: dict[str, Row],
) -> dict[str, bytes]:
    """Read from their files the records no journal gave, into `found` and `rows`; return
    the bytes of those a snapshot may hold: this user's, still the file listed (one renamed
    over it meanwhile is returned, but its identity is unknown)."""
    read: dict[str, bytes] = {}
    uid = os.getuid()
    for run_id in sorted(files.keys() - found.keys()):
        path = layout.record_path(run_id)
        try:
            got = read_with_stat(path)
        except NotAFile as exc:  # replaced since the listing
            not_a_record(path, str(exc.strerror))
            continue
        if got is None:  # removed since the listing
            continue
        raw, st = got
        record = named_record(raw, path)
        if record is None:
            continue
        found[run_id] = rows[run_id] = record
        if st.st_uid == uid and identity(st) == identity(files[run_id]):
            read[run_id] = raw
    return read


def record_stats(layout: Layout) -> dict[str, os.stat_result]:
    """Run id -> stat of its record file, for every record of the store."""
    top = f"{layout.top}/runs"
    out: dict[str, os.stat_result] = {}
    directories = [top]
    if layout.sharded:
        directories += [f"{top}/{name}" for name in os.listdir(top) if layout.is_shard(name)]
    for directory in directories:
        try:  # a shard that is a link is no directory of the store (see `table`)
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
                    out[run_id] = st
                else:
                    not_a_record(f"{directory}/{run_id}.json", st)
        finally:
            os.close(fd)
    return out


def read_journals(top: str) -> list[tuple[str, os.stat_result, bytes]]:
    """(path, stat, bytes) of every journal file of the store at `top`, snapshots first
    (what they give, a writer's journal need not)."""
    directory = f"{top}/cache/journal"
    try:
        names = os.listdir(directory)
    except OSError:  # no journal yet, or no cache at all
        return []
    names.sort(key=lambda name: (not name.startswith("load-"), name))
    out = []
    for name in names:
        if remove_if_left(directory, name) or not name.endswith(journal.SUFFIX):
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
            data = read_fd(fd, st.st_size + 1)  # one read, unless it grew since
        except OSError:
            continue
        finally:
            os.close(fd)
        out.append((path, st, data))
    return out


def _journal_writable(top: str) -> bool:
    """Whether this user may write journals here (else a load builds no snapshot)."""
    for directory in (f"{top}/cache/journal", f"{top}/cache", top):
        if os.path.lexists(directory):  # the first that exists is the one written to
            return os.path.isdir(directory) and os.access(directory, os.W_OK)
    return False


def _snapshot(
    found: dict[str, Entry],
    rows: dict[str, Row],
    read: dict[str, bytes],
    files: dict[str, os.stat_result],
) -> tuple[list[str], list[os.stat_result], list[bytes], list[list[Any]]]:
    """What a snapshot of the records loaded holds (`read`: the bytes of those read from
    their files), in the order loads sort them: (run ids, stats, bytes, row columns)."""
    wanted = journal.ROW_FIELDS
    ids = [
        run_id
        for run_id, entry in found.items()
        if (isinstance(entry, bytes) or run_id in read)
        and all(key in rows[run_id] for key in wanted)
    ]
    ids.sort(key=lambda run_id: _order(rows[run_id]))
    return (
        ids,
        [files[run_id] for run_id in ids],
        [e if isinstance(e := found[run_id], bytes) else read[run_id] for run_id in ids],
        [[rows[run_id][key] for run_id in ids] for key in wanted],
    )


def _write_snapshot(
    top: str,
    snapshot: tuple[list[str], list[os.stat_result], list[bytes], list[list[Any]]],
    replaced: list[str],
) -> None:
    """Write one journal holding `snapshot`, then remove the journal files it `replaced`.
    Best effort: a store this user cannot write keeps its journals."""
    path = f"{top}/cache/journal/{journal.snapshot_name()}"
    try:
        atomic_write(path, b"".join(journal.encode_entry(*snapshot)), make_dir=True)
    except (OSError, ValueError, TypeError):
        return
    for path in replaced:
        try:
            os.unlink(path)
        except OSError:
            pass


def _order(row: Row) -> tuple[str, int, str]:
    """Where a record goes when loaded: by experiment id, index and run id (`load_results`)."""
    index = row.get("index")
    return str(row.get("experiment_id", "")), index if type(index) is int else 0, row["run_id"]


class _Current:
    """The record files of a store as listed, to take from journals what is still theirs."""

    def __init__(self, files: dict[str, os.stat_result]):
        self.files = files
        # (run id, inode, mtime_ns, size) of every record file: a journal entry whose records
        # are all here is taken whole, compared and sliced in bulk
        self.identities = {(r, s.st_ino, s.st_mtime_ns, s.st_size) for r, s in files.items()}
        self.owners = {(s.st_uid, s.st_mode) for s in files.values()}

    def take(
        self, data: bytes, jst: os.stat_result, found: dict[str, Entry], rows: dict[str, Row]
    ) -> tuple[int, int]:
        """Take from the journal bytes `data` every record whose file is the one it noted,
        into `found` (run id -> bytes) and `rows`; return how many bytes of records it gave,
        and how many it holds."""
        given = held = 0
        trust = {owner: _trust.may_vouch(jst, *owner) for owner in self.owners}
        for columns, offset, length in journal.read_entries(data):
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
        found: dict[str, Entry],
        rows: dict[str, Row],
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
            if journal.name_their_runs(data, ends[:-1], ends[-1], run_ids) or all(
                map(journal.names_run, records, run_ids)
            ):
                found.update(zip(run_ids, records))
                keys = journal.ROW_KEYS
                rows.update(zip(run_ids, [dict(zip(keys, t)) for t in zip(run_ids, *fields)]))
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
                and journal.names_run(data[offset : offset + size], run_id)
            ):
                found[run_id] = data[offset : offset + size]
                rows[run_id] = dict(zip(journal.ROW_KEYS, [run_id, *(c[i] for c in fields)]))
                given += size
            offset += size
        return given
