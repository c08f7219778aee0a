"""The journal format of file stores: what writers note of their records, and what a load
reads back (the loads themselves are tested in test_results.py)."""

from __future__ import annotations

import math
import os

import pytest

from metalab.record import encode_record
from metalab.stores.file import journal


def record(i: int, metrics: dict, **fields) -> dict:
    return {
        "format": "metalab.run/1",
        "run_id": f"{i:032x}",
        "experiment_id": "exp:1",
        "index": i,
        "replicate": 0,
        "status": "completed",
        "params": {"x": i * 0.5, "name": f"n{i}", "flag": i % 2 == 0, "xs": [i, None]},
        "duration": 0.25 * i,
        "started_at": "2026-11-22T00:00:00+00:00",
        "finished_at": "2026-11-22T00:00:01+00:00",
        "metrics": metrics,
        **fields,
    }


def sealed(header: bytes, binary: bytes, body: bytes) -> bytes:
    """An entry with a valid CRC around the given parts (whatever they hold)."""
    import zlib

    check = zlib.crc32(header + binary + body)
    head = journal.ENTRY.pack(journal.MAGIC, len(header), len(binary), len(body), check)
    return head + header + binary + body


def entry_of(records: list[dict], tmp_path) -> tuple[list[bytes], list[os.stat_result]]:
    datas, stats = [], []
    for rec in records:
        path = tmp_path / f"{rec['run_id']}.json"
        path.write_bytes(encode_record(rec))
        datas.append(path.read_bytes())
        stats.append(os.stat(path))
    parts = journal.encode_entry(
        [r["run_id"] for r in records],
        stats,
        datas,
        [[r[k] for r in records] for k in journal.ROW_FIELDS],
    )
    return parts, stats


@pytest.mark.parametrize(
    "metrics",
    [
        lambda i: {"loss": i / 3, "acc": 1 - i / 3},  # floats: the binary part
        lambda i: {"loss": i / 3, "count": i},  # floats and ints
        lambda i: {"loss": float("nan") if i == 1 else i / 3, "inf": math.inf},
        lambda i: {"loss": i / 3} if i % 2 else {"acc": 0.5, "note": None},  # different names
        lambda i: {},
        lambda i: {"loss": i / 3, "series": [1.0, 2.0], "text": "ünïcode"},
    ],
)
def test_an_entry_reads_back_every_field_as_the_record_holds_it(tmp_path, metrics):
    records = [record(i, metrics(i)) for i in range(5)]
    records[2]["duration"] = 3  # an int among floats stays an int
    parts, stats = entry_of(records, tmp_path)
    data = b"".join(parts)
    ((columns, offset, length),) = journal.read_entries(data)
    run_ids, inodes, mtimes, sizes = columns[:4]
    assert run_ids == [r["run_id"] for r in records]
    assert inodes == [s.st_ino for s in stats] and mtimes == [s.st_mtime_ns for s in stats]
    assert sizes == [s.st_size for s in stats] and sum(sizes) == length
    for name, column in zip(journal.ROW_FIELDS, columns[4:]):
        expected = [encode_record(r[name]) for r in records]  # NaN == NaN as text
        assert [encode_record(v) for v in column] == expected, name
        assert [type(v) for v in column] == [type(r[name]) for r in records], name
    body = data[offset : offset + length]
    assert body == b"".join((tmp_path / f"{r['run_id']}.json").read_bytes() for r in records)


def test_entries_cut_short_or_damaged_are_skipped_never_misread(tmp_path):
    first, _ = entry_of([record(i, {"loss": i / 3}) for i in range(3)], tmp_path)
    second, _ = entry_of([record(i, {"loss": i / 7}) for i in range(3, 6)], tmp_path)
    one, two = b"".join(first), b"".join(second)
    assert len(journal.read_entries(one + two)) == 2
    # a writer killed mid-entry: the whole entries before it are read
    assert len(journal.read_entries(one + two[: len(two) // 2])) == 1
    assert journal.read_entries(one[:10]) == []
    # a damaged byte anywhere (header, binary part, a record) skips that entry by its CRC,
    # and reading goes on from its declared end
    for at in (journal.ENTRY.size, len(one) // 2, len(one) - 10):
        broken = bytearray(one)
        broken[at] ^= 0x01
        (kept,) = journal.read_entries(bytes(broken) + two)
        assert kept[0][0] == [f"{i:032x}" for i in range(3, 6)]
    # whole but malformed: a header of columns of the wrong length, or another magic
    header = first[1].replace(f'"{0:032x}", '.encode(), b"", 1)
    assert journal.read_entries(sealed(header, first[2], b"".join(first[3:]))) == []
    assert journal.read_entries(sealed(first[1], first[2], b"".join(first[3:]))) != []
    assert journal.read_entries(b"XXXX" + one[4:]) == []


def test_a_journal_starts_a_file_for_batches_worth_one_and_appends_after(tmp_path):
    writer = journal.Journal(str(tmp_path / "journal"))
    records = [record(i, {"loss": i / 3}) for i in range(40)]
    _, stats = entry_of(records, tmp_path)

    def note(i):
        writer.note(records[i]["run_id"], stats[i], encode_record(records[i]), records[i])

    for i in range(journal.MIN_FIRST_ENTRY - 1):
        note(i)
    writer.flush()  # too few for a file of its own: kept for the next batch
    assert not (tmp_path / "journal").exists()
    note(journal.MIN_FIRST_ENTRY - 1)
    writer.flush()
    (path,) = (tmp_path / "journal").iterdir()
    note(30)  # once the process has a file, every batch goes to it
    writer.flush()
    entries = journal.read_entries(path.read_bytes())
    assert [len(columns[0]) for columns, _, _ in entries] == [journal.MIN_FIRST_ENTRY, 1]
    # a record a table cannot show (no metrics, say) is not noted
    incomplete = dict(records[31])
    del incomplete["metrics"]
    writer.note(incomplete["run_id"], stats[31], encode_record(incomplete), incomplete)
    note(32)
    writer.flush()
    entries = journal.read_entries(path.read_bytes())
    assert entries[-1][0][0] == [records[32]["run_id"]]
    # a journal file removed meanwhile (by a load): the next batch starts another
    path.unlink()
    note(33)
    writer.flush()
    (again,) = (tmp_path / "journal").iterdir()
    assert again != path and len(journal.read_entries(again.read_bytes())) == 1


def test_short_writes_go_on_where_they_stopped(tmp_path, monkeypatch):
    real = os.writev

    def seven_bytes_at_most(fd, buffers):
        return real(fd, [bytes(b"".join(buffers)[:7])])

    monkeypatch.setattr(os, "writev", seven_bytes_at_most)
    parts = [b"header", b"", b"binary part", *(f"record {i};".encode() for i in range(1500))]
    expected = b"".join(parts)
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        journal.write_all(fd, list(parts))
    finally:
        os.close(fd)
    assert path.read_bytes() == expected


def test_headers_of_the_wrong_shape_are_skipped(tmp_path):
    parts, _ = entry_of([record(i, {"loss": i / 3}) for i in range(3)], tmp_path)
    import json

    header = json.loads(parts[1])
    for bad_ids in ([["x"], ["y"], ["z"]], [1, 2, 3], "abc"):
        header[0] = bad_ids
        text = json.dumps(header).encode()
        assert journal.read_entries(sealed(text, parts[2], b"".join(parts[3:]))) == []
    deep = b"[" * 100_000 + b"]" * 100_000  # deeper than the JSON parser goes
    assert journal.read_entries(sealed(deep, b"", b"")) == []


def test_records_of_another_format_are_read_from_their_files(tmp_path, monkeypatch):
    import metalab
    from metalab import runs_table
    from metalab.store import FileStore

    monkeypatch.setattr(runs_table, "available", lambda: False)  # loads read journals

    store = FileStore.open(tmp_path / "store")
    for i in range(20):
        store.put_record(record(i, {"loss": i / 3}, format="metalab.run/1"))
    store.flush_journal()
    assert all(
        isinstance(r, bytes) for r in metalab.load_results(tmp_path / "store")._source.entries
    )
    # the same records, noted as another format (a later metalab's, say): not taken
    (path,) = (tmp_path / "store" / "cache" / "journal").iterdir()
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"metalab.run/1"', b'"metalab.run/9"', 1))
    loaded = metalab.load_results(tmp_path / "store")
    assert len(loaded) == 20 and not any(isinstance(r, bytes) for r in loaded._source.entries)
