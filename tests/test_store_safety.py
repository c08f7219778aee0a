"""A store from someone else, or left by a kill: ids are checked before they become paths,
pickles are loaded only from the user's own files, and what a kill leaves is repaired."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import metalab
from metalab import claims, processes
from metalab.errors import StoreError, UnsafeStoreWarning, UntrustedDataError
from metalab.results import Run
from metalab.store import FileStore
from metalab.stores.file import journal, loading

HERE = Path(__file__).parent


@metalab.operation
def safety_op(params, capture):
    capture.metric("x2", params["x"] * 2)
    capture.log(f"x={params['x']}")
    capture.artifact("obj", {"x": params["x"], "set": {1, 2}}, kind="pickle")
    capture.artifact("cfg", {"x": params["x"]})


def make_exp(n=3, name="safe"):
    return metalab.Experiment(
        name=name,
        version="1",
        context={},
        operation=safety_op,
        params=metalab.grid(x=list(range(n))),
        seeds=metalab.seeds(base=3),
    )


def sweep(store, n=3):
    return metalab.run(make_exp(n), store=store, executor="inline").result()


def files_under(directory):
    return sorted(
        os.path.relpath(os.path.join(top, name), directory)
        for top, _, files in os.walk(directory)
        for name in files
    )


def run_script(script: str, *args: str) -> subprocess.CompletedProcess:
    """Run `script` in a fresh Python that imports the tests' modules."""
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def dead_pid() -> int:
    proc = run_script("import os; print(os.getpid())")
    return int(proc.stdout)


# ---------------------------------------------------------------- crafted stores
def craft_escaping_record(store_path: Path, target: Path) -> Path:
    """Make the first record of the store name `target` (outside the store) as its run id;
    return the record's file."""
    path = sorted((store_path / "runs").rglob("*.json"))[0]
    record = json.loads(path.read_bytes())
    escape = os.path.relpath(target, path.parent)
    record["run_id"] = escape
    path.write_text(json.dumps(record))
    return path


def test_a_record_naming_a_path_outside_the_store_is_skipped_and_never_written_to(tmp_path):
    store_path, outside = tmp_path / "store", tmp_path / "outside"
    outside.mkdir()
    sweep(store_path)
    crafted = craft_escaping_record(store_path, outside / "x")
    with pytest.warns(UnsafeStoreWarning, match=f"skipped run record {crafted}"):
        results = metalab.load_results(store_path)
    assert len(results) == 2
    assert all(len(run.run_id) == 32 for run in results)

    def doubled(run):
        return run.metrics["x2"] * 2

    with pytest.warns(UnsafeStoreWarning):
        metalab.load_results(store_path).compute_derived([doubled])
    assert files_under(outside) == []
    assert all(run.log.endswith(f"x={run.params['x']}\n") for run in results)


def test_a_record_of_another_run_id_in_a_file_is_skipped_by_every_reader(tmp_path):
    """A record whose run id is valid but not its file's is not followed either: get_record,
    iter_records and scan agree with loading."""
    store_path = tmp_path / "store"
    sweep(store_path)
    store = FileStore.open(store_path)
    path = sorted((store_path / "runs").rglob("*.json"))[0]
    run_id = path.name[:-5]
    record = json.loads(path.read_bytes())
    record["run_id"] = "f" * 32
    path.write_text(json.dumps(record))
    with pytest.warns(UnsafeStoreWarning, match="not the one its file is named after"):
        assert store.get_record(run_id) is None
    with pytest.warns(UnsafeStoreWarning):
        assert run_id not in {r["run_id"] for r in store.iter_records()}


def test_files_not_named_after_a_run_id_are_skipped_with_a_warning(tmp_path):
    store_path = tmp_path / "store"
    sweep(store_path)
    odd = store_path / "runs" / "zz"
    odd.mkdir()
    (odd / "not-a-run.json").write_text("{}")
    misplaced = store_path / "runs" / "00" / ("ab" + "0" * 30 + ".json")
    misplaced.parent.mkdir(exist_ok=True)
    misplaced.write_text("{}")
    store = FileStore.open(store_path)
    with pytest.warns(UnsafeStoreWarning) as caught:
        final, done = store.scan()
    assert len(final) == len(done) == 3
    assert {str(misplaced)} <= {str(w.message).split(": ")[0][len("skipped ") :] for w in caught}


def test_a_journal_entry_naming_another_run_is_not_taken(tmp_path):
    """A journal vouches for a record file only with that run's record: a crafted entry whose
    record bytes name another run id is passed over, and the file is read instead."""
    store_path = tmp_path / "store"
    sweep(store_path)
    store = FileStore.open(store_path)
    files = loading.record_stats(store._layout)
    run_ids = sorted(files)
    bad = json.loads(store.record_path(run_ids[0]).read_bytes())
    bad["run_id"] = "../../../outside"
    crafted = json.dumps(bad).encode()
    crafted += b" " * (files[run_ids[0]].st_size - len(crafted))  # the size the journal notes
    entry = journal.encode_entry(
        run_ids[:1],
        [files[run_ids[0]]],
        [crafted],
        [[bad.get(key)] for key in journal.ROW_FIELDS],
    )
    journals = store_path / "cache" / "journal"
    journals.mkdir(exist_ok=True)
    for old in journals.glob("*"):
        old.unlink()
    (journals / "crafted.jnl").write_bytes(b"".join(entry))
    loaded = metalab.load_results(store_path)
    assert sorted(run.run_id for run in loaded) == run_ids


@pytest.mark.parametrize(
    "record",
    [
        '{"format": "metalab.run/1", "run_id": "%s", "status": "completed"}',
        '{"format": "metalab.run/1", "run_id": "%s", "params": {"note": "run_id"}}',
        '{"status": "completed", "run_id": "%s", "format": "metalab.run/1"}',
    ],
)
def test_journal_records_naming_their_run_are_taken(record):
    run_id = "a" * 32
    data = (record % run_id).encode()
    assert journal.names_run(data, run_id)
    if record.startswith('{"format": "metalab.run/1", "run_id": "%s", "status"'):
        # what metalab writes: taken without parsing, by the check of a whole entry
        assert journal.name_their_runs(data, [0], len(data), [run_id])


@pytest.mark.parametrize(
    "record",
    [
        '{"format": "metalab.run/1", "run_id": "%s", "run_id": "../x"}',
        '{"format": "metalab.run/1", "run_id": "%s", "run\\u005fid": "../x"}',
        '{"format": "metalab.run/1", "params": {"run_id": "%s"}}',
        '{"format": "metalab.run/1", "run_id": "%s0"}',
    ],
)
def test_journal_records_naming_another_run_are_not_taken(record):
    run_id = "a" * 32
    data = (record % run_id).encode()
    assert not journal.names_run(data, run_id)
    assert not journal.name_their_runs(data, [0], len(data), [run_id])


def test_run_log_never_reads_outside_the_store(tmp_path):
    """Defence in depth: a run id that reached a `Run` some other way still makes no path."""
    store_path, outside = tmp_path / "store", tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.log").write_text("secret")
    results = sweep(store_path)
    record = dict(results[0].record)
    store = FileStore.open(store_path)
    shard = store_path / "logs" / record["run_id"][:2]
    record["run_id"] = os.path.relpath(outside / "secret", shard)
    with pytest.raises(StoreError, match="is not a run id"):
        Run(record, store).log  # noqa: B018 - the property reads the log
    with pytest.raises(StoreError, match="is not a run id"):
        store.put_derived(record["run_id"], {"x": 1})
    assert files_under(outside) == ["secret.log"]


def test_store_export_skips_crafted_records_and_manifests(tmp_path):
    store_path, outside, destination = tmp_path / "store", tmp_path / "outside", tmp_path / "dst"
    outside.mkdir()
    sweep(store_path)
    crafted = craft_escaping_record(store_path, outside / "x")
    manifest = next((store_path / "experiments").glob("*.json"))
    forged = json.loads(manifest.read_bytes())
    forged["experiment_id"] = f"{os.path.relpath(outside, store_path / 'experiments')}/e:1"
    stamp = manifest.name[len("safe:1_") : -len(".json")]
    stamp = stamp[:-2] + ("1" if stamp[-2] != "1" else "2") + "Z"
    (manifest.parent / f"safe:1_{stamp}.json").write_text(json.dumps(forged))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "metalab",
            "store",
            "export",
            "--from",
            str(store_path),
            "--to",
            str(destination),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"skipped run record {crafted}" in proc.stderr
    assert "skipped manifest" in proc.stderr
    assert "2 record(s) copied" in proc.stdout
    assert files_under(outside) == []
    assert len(metalab.load_results(destination)) == 2


def test_an_artifact_outside_the_source_skips_its_run_and_the_export_goes_on(tmp_path):
    store_path, outside, destination = tmp_path / "store", tmp_path / "outside", tmp_path / "dst"
    outside.mkdir()
    (outside / "x").write_bytes(b"secret")
    sweep(store_path)
    path = sorted((store_path / "runs").rglob("*.json"))[0]
    record = json.loads(path.read_bytes())
    record["artifacts"][0]["ref"] = os.path.relpath(outside / "x", store_path)
    path.write_text(json.dumps(record))
    with pytest.warns(UnsafeStoreWarning, match="points outside the store"):
        report = metalab.stores.transfer.transfer(store_path, destination)
    assert (report.records, report.skipped) == (2, 1)
    assert "1 skipped" in str(report)
    assert sorted(r.run_id for r in metalab.load_results(destination)) == sorted(
        r.run_id for r in metalab.load_results(store_path) if r.run_id != record["run_id"]
    )
    assert b"secret" not in b"".join(
        (destination / name).read_bytes() for name in files_under(destination)
    )


def test_a_damaged_record_is_skipped_by_loads_and_exports_with_a_warning(tmp_path):
    store_path = tmp_path / "store"
    sweep(store_path)
    path = sorted((store_path / "runs").rglob("*.json"))[0]
    data = path.read_bytes()
    with open(path, "r+b") as fh:  # cut short in place (the .done marker is the same file)
        fh.truncate(len(data) // 2)
    with pytest.warns(UnsafeStoreWarning, match=f"{path.stem}.*damaged"):
        assert len(metalab.load_results(store_path)) == 2
    with pytest.warns(UnsafeStoreWarning, match="damaged"):
        report = metalab.stores.transfer.transfer(store_path, tmp_path / "dst")
    assert report.records == 2
    # found damaged, the run no longer counts complete: the next resume runs it again
    with pytest.warns(UnsafeStoreWarning, match="damaged"):  # read once more as it reruns
        again = metalab.run(make_exp(), store=store_path, executor="inline")
        assert again.status.skipped == 2
        assert [r.status for r in again.result()] == ["completed"] * 3
    assert len(metalab.load_results(store_path)) == 3
    assert len(list((store_path / "runs").rglob("*.json"))) == 3


def test_a_record_of_another_run_is_replaced_by_the_next_resume_once_found(tmp_path):
    store_path = tmp_path / "store"
    sweep(store_path)
    path = sorted((store_path / "runs").rglob("*.json"))[0]
    record = json.loads(path.read_bytes())
    record["run_id"] = "../../../tmp/x"
    path.write_text(json.dumps(record))
    with pytest.warns(UnsafeStoreWarning, match="the next resume runs the run again"):
        assert len(metalab.load_results(store_path)) == 2
    with pytest.warns(UnsafeStoreWarning, match="not the one its file is named after"):
        again = metalab.run(make_exp(), store=store_path, executor="inline")
        assert again.status.skipped == 2
        assert len(again.result()) == 3
    assert json.loads(path.read_bytes())["run_id"] == path.stem


def test_a_transfer_skips_records_whose_ids_cannot_name_files(tmp_path):
    """The check is the transfer's own too, whatever store the records come from."""
    from metalab.stores.transfer import _safe_run

    source = FileStore.open(tmp_path / "store")
    good = {"run_id": "a" * 32, "artifacts": [{"name": "m", "ref": "artifacts/x/m.json"}]}
    assert _safe_run(source, good)
    with pytest.warns(UnsafeStoreWarning, match="is not a run id"):
        assert not _safe_run(source, {**good, "run_id": "../x"})
    with pytest.warns(UnsafeStoreWarning, match="names no file"):
        assert not _safe_run(source, {**good, "artifacts": [{"name": "m", "ref": "a/b/.."}]})


def test_a_manifest_with_a_session_that_is_no_name_is_skipped(tmp_path):
    store_path = tmp_path / "store"
    sweep(store_path)
    manifest = next((store_path / "experiments").glob("*.json"))
    forged = json.loads(manifest.read_bytes())
    forged["session"] = "../../elsewhere"
    manifest.write_text(json.dumps(forged))
    with pytest.warns(UnsafeStoreWarning, match="its session"):
        assert FileStore.open(store_path).manifests() == []


@pytest.mark.postgres
def test_reconnect_skips_a_database_manifest_whose_session_is_no_name(pg_locator):
    """Whatever the store, a manifest is used only when its ids and names may become paths
    (reconnect builds paths from its session)."""
    from metalab.store import create_store

    sweep(pg_locator)
    store = create_store(pg_locator)
    (good,) = store.manifests()
    forged = {k: v for k, v in good.items() if not k.startswith("_")}
    forged.update(session="../../elsewhere", submitted_at="9999")
    store.write_manifest(forged["experiment_id"], forged)
    with pytest.warns(UnsafeStoreWarning, match="its session '../../elsewhere'"):
        handle = metalab.reconnect(pg_locator)
    assert handle._sweep.session == good["session"]
    assert len(handle.result()) == 3


# ---------------------------------------------------------------- a completed run's marker
def test_a_completed_record_without_its_marker_counts_as_done_and_is_marked_again(
    tmp_path, monkeypatch
):
    from sweeps import sleep_experiment

    log = tmp_path / "executions.log"
    monkeypatch.setenv("METALAB_TEST_EXEC_LOG", str(log))
    store_path = tmp_path / "store"
    exp = sleep_experiment(3, 0.0, name="marked")
    metalab.run(exp, store=store_path, executor="inline").result()
    markers = sorted((store_path / "runs").rglob("*.done"))
    markers[0].unlink()
    results = metalab.run(exp, store=store_path, executor="inline").result()
    assert len(log.read_text().splitlines()) == 3  # nothing ran again
    assert markers[0].exists()
    assert all(run.status == "completed" for run in results)


def test_a_kill_between_a_completed_record_and_its_marker_is_repaired_on_resume(
    tmp_path, monkeypatch
):
    store_path = tmp_path / "store"
    log = tmp_path / "executions.log"
    script = """
        import os, sys
        import metalab
        from metalab.stores.file import records
        from sweeps import sleep_experiment

        def killed(path, marker):
            os._exit(9)  # the record is written, its marker not yet

        records.mark_done = killed
        metalab.run(sleep_experiment(3, 0.0, name="killed"), store=sys.argv[1],
                    executor="inline").result()
    """
    monkeypatch.setenv("METALAB_TEST_EXEC_LOG", str(log))
    proc = run_script(script, str(store_path))
    assert proc.returncode == 9, proc.stderr
    records = list((store_path / "runs").rglob("*.json"))
    assert len(records) == 1 and not list((store_path / "runs").rglob("*.done"))
    from sweeps import sleep_experiment

    metalab.run(sleep_experiment(3, 0.0, name="killed"), store_path, "inline").result()
    executed = [line.split()[0] for line in log.read_text().splitlines()]
    assert len(executed) == len(set(executed)) == 3  # the killed run's was not run again
    assert records[0].with_suffix(".done").exists()


def test_a_failed_record_without_a_marker_is_run_again(tmp_path):
    store_path = tmp_path / "store"
    store = FileStore.open(store_path)
    run_id = "c" * 32
    store.put_record(
        {"format": "metalab.run/1", "run_id": run_id, "status": "failed", "experiment_id": "e:1"}
    )
    assert store.scan() == ({run_id}, set())
    assert store.scan() == ({run_id}, set())  # known not completed: not read again
    assert not store.record_path(run_id).with_suffix(".done").exists()


# ---------------------------------------------------------------- _meta.json
@pytest.mark.parametrize("content", [b"", b'{"format": "metalab.filest'])
def test_a_store_whose_meta_file_is_empty_or_torn_is_repaired(tmp_path, content):
    store_path = tmp_path / "store"
    sweep(store_path)
    (store_path / "_meta.json").write_bytes(content)
    assert len(metalab.load_results(store_path)) == 3
    meta = json.loads((store_path / "_meta.json").read_bytes())
    assert meta["format"] == "metalab.filestore" and meta["version"] == 2
    (store_path / "_meta.json").write_bytes(content)
    results = sweep(store_path, n=4)
    assert len(results) == 4


def test_a_torn_meta_file_of_a_version_1_store_keeps_its_layout(tmp_path):
    store_path = tmp_path / "store"
    FileStore.open(store_path)
    (store_path / "_meta.json").write_text(
        json.dumps({"format": "metalab.filestore", "version": 1})
    )
    sweep(store_path)
    assert list((store_path / "runs").glob("*.json"))  # flat
    (store_path / "_meta.json").write_bytes(b"")
    store = FileStore.open(store_path)
    assert store.version == 1
    assert len(metalab.load_results(store_path)) == 3


def test_an_empty_meta_file_in_a_directory_that_is_no_store_is_refused(tmp_path):
    (tmp_path / "thing").mkdir()
    (tmp_path / "thing" / "_meta.json").write_bytes(b"")
    with pytest.raises(StoreError, match="does not look like a metalab store"):
        FileStore.open(tmp_path / "thing")


def test_a_kill_while_the_meta_file_is_written_leaves_no_empty_one(tmp_path):
    store_path = tmp_path / "store"
    script = """
        import os, sys
        from metalab.stores import file
        from metalab.stores import atomic

        def killed(fd, data):
            os._exit(9)

        atomic.write_fd = killed
        file.FileStore.open(sys.argv[1])
    """
    proc = run_script(script, str(store_path))
    assert proc.returncode == 9, proc.stderr
    assert not (store_path / "_meta.json").exists()
    assert len(sweep(store_path)) == 3


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (root only), unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {proc.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(directory: Path) -> None:
    """Fill the filesystem of `directory` to its last byte."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (65536, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


def test_on_a_full_disk_a_new_store_fails_with_a_store_error(small_disk):
    fill(small_disk)
    with pytest.raises(StoreError, match="No space left on device"):
        sweep(small_disk / "store")
    meta = small_disk / "store" / "_meta.json"
    assert not meta.exists() or json.loads(meta.read_bytes())["format"] == "metalab.filestore"


def test_on_a_full_disk_a_sweep_fails_with_a_store_error_and_the_store_survives(small_disk):
    store_path = small_disk / "store"
    FileStore.open(store_path)
    fill(small_disk)
    with pytest.raises(StoreError, match="No space left on device"):
        sweep(store_path)
    (small_disk / "filler").unlink()
    assert len(sweep(store_path)) == 3


# ---------------------------------------------------------------- claims
def test_a_claim_without_an_owner_is_dead_once_a_few_seconds_old(tmp_path):
    store = FileStore.open(tmp_path / "store")
    run_id = "d" * 32
    claim = tmp_path / "store" / "claims" / run_id[:2] / f"{run_id}.claim"
    claim.parent.mkdir(parents=True)
    claim.write_bytes(b"")
    assert run_id in store.claims()  # just made: its writer may be writing it now
    old = time.time() - claims.OWNERLESS_SECONDS - 1
    os.utime(claim, (old, old))
    assert store.claims() == {}
    assert store.claim(run_id, claims.owner("s"))
    store.release(run_id)


def test_a_kill_as_a_run_is_claimed_leaves_no_claim_and_stalls_no_resume(tmp_path):
    """Killed while claiming (after the claim's file was made, before its owner was in it):
    no claim without an owner exists, and a resume runs the run at once."""
    store_path = tmp_path / "store"
    script = """
        import os, sys
        import metalab
        from tests_ops import exp

        real = os.write

        def write(fd, data):
            if b'"session"' in bytes(data):
                os._exit(9)  # the claim's owner is being written
            return real(fd, data)

        os.write = write
        metalab.run(exp(), store=sys.argv[1], executor="inline").result()
    """
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "tests_ops.py").write_text(
        textwrap.dedent(
            """
            import metalab

            @metalab.operation
            def op(params, capture):
                capture.metric("x", params["x"])

            def exp():
                return metalab.Experiment(name="claimed", version="1", context={},
                    operation=op, params=metalab.grid(x=[1, 2]), seeds=metalab.seeds(base=1))
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "mods")}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), str(store_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 9, proc.stderr
    assert not list((store_path / "claims").rglob("*.claim"))
    store = FileStore.open(store_path)
    assert store.claims() == {}
    sys.path.insert(0, str(tmp_path / "mods"))
    try:
        import tests_ops

        started = time.monotonic()
        results = metalab.run(tests_ops.exp(), store=store_path, executor="inline").result()
    finally:
        sys.path.remove(str(tmp_path / "mods"))
        sys.modules.pop("tests_ops", None)
    assert time.monotonic() - started < 30
    assert [run.status for run in results] == ["completed", "completed"]
    assert files_under(store_path / "claims") == []


def test_claims_and_markers_work_where_the_filesystem_has_no_hard_links(tmp_path, monkeypatch):
    import errno

    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    store_path = tmp_path / "store"
    results = sweep(store_path)
    assert [run.status for run in results] == ["completed"] * 3
    assert json.loads((store_path / "_meta.json").read_bytes())["version"] == 2
    assert len(list((store_path / "runs").rglob("*.done"))) == 3
    assert files_under(store_path / "claims") == []


# ---------------------------------------------------------------- temporary files
def test_temporary_files_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    store_path = tmp_path / "store"
    sweep(store_path)
    store = FileStore.open(store_path)
    host = claims.HOST_TAG
    dead = f"{host}-{dead_pid()}"
    alive = claims.writer_tag()
    shard = next(p for p in (store_path / "runs").iterdir() if p.is_dir())
    left = [
        shard / f".{'a' * 32}.json.{dead}.0.tmp",
        store_path / "claims" / f".{'b' * 32}.claim.{dead}.1.tmp",
        store_path / "experiments" / f".manifest.{dead}.2.tmp",
        store_path / "cache" / "journal" / f".load-x.jnl.{dead}.3.tmp",
    ]
    kept = [shard / f".{'c' * 32}.json.{alive}.4.tmp"]
    for path in left + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    store.scan()
    store.claims()
    store.manifests()
    metalab.load_results(store_path)
    assert [p for p in left if p.exists()] == []
    assert all(p.exists() for p in kept)


def test_a_resume_removes_temporary_claim_files_of_dead_writers(tmp_path):
    """A kill while a run was being claimed leaves the claim's temporary file; the next
    resume removes it, although every run is complete and nothing needs claiming."""
    store_path = tmp_path / "store"
    sweep(store_path)
    run_id = make_exp().run_id(0)
    left = store_path / "claims" / run_id[:2] / f".{run_id}.claim.{claims.HOST_TAG}-"
    left = left.with_name(left.name + f"{dead_pid()}.0.tmp")
    left.parent.mkdir(parents=True, exist_ok=True)
    left.write_bytes(b"")
    again = metalab.run(make_exp(), store=store_path, executor="inline")
    assert again.result() and again.status.skipped == 3
    assert not left.exists()


def test_an_exited_owner_not_yet_reaped_is_dead():
    """A killed driver's worker processes may stay zombies when nobody reaps them: their
    claims are dead at once, not alive until their lease ends."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the owner: waits for a word, then exits without being reaped
        os.read(read, 1)
        os._exit(0)
    try:
        owner = {"host": claims._HOST, "pid": pid, "start": processes.process_start(pid)}
        assert claims.is_alive(owner, 0.0)
        os.write(write, b"x")
        deadline = time.monotonic() + 10
        while processes.process_start(pid) != processes.EXITED:
            assert time.monotonic() < deadline, "the child did not exit"
            time.sleep(0.01)
        assert not claims.is_alive(owner, 0.0)
    finally:
        os.close(read)
        os.close(write)
        os.waitpid(pid, 0)


def test_a_temporary_file_of_an_unknown_writer_goes_once_a_lease_old(tmp_path):
    store_path = tmp_path / "store"
    store = FileStore.open(store_path)
    shard = store_path / "runs" / "aa"
    shard.mkdir()
    other_host = shard / f".{'a' * 32}.json.elsewhere-12.0.tmp"
    old_format = shard / f".{'a' * 32}.json.12.0.tmp"
    for path in (other_host, old_format):
        path.write_bytes(b"partial")
    store.scan()
    assert other_host.exists() and old_format.exists()  # their writers may be alive
    past = time.time() - claims.LEASE_SECONDS - 1
    for path in (other_host, old_format):
        os.utime(path, (past, past))
    store.scan()
    assert not other_host.exists() and not old_format.exists()


def test_a_run_killed_while_writing_an_artifact_leaves_nothing_once_run_again(tmp_path):
    store_path = tmp_path / "store"
    script = """
        import os, sys
        import metalab
        from test_store_safety import make_exp

        real = os.replace

        def replace(src, dst):
            if "/artifacts/" in str(dst):
                os._exit(9)  # the artifact is written to its temporary file
            return real(src, dst)

        os.replace = replace
        metalab.run(make_exp(2), store=sys.argv[1], executor="inline").result()
    """
    proc = run_script(script, str(store_path))
    assert proc.returncode == 9, proc.stderr
    assert [p for p in files_under(store_path) if p.endswith(".tmp")]
    assert len(sweep(store_path, n=2)) == 2
    assert [p for p in files_under(store_path) if p.endswith(".tmp")] == []


# ---------------------------------------------------------------- pickles
NOBODY = 65534


@pytest.fixture
def as_root():
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")


def blob_of(store_path: Path) -> Path:
    return next((store_path / "experiments" / "blobs").glob("*.pkl"))


def test_reconnect_refuses_an_experiment_someone_else_wrote_unless_trusted(tmp_path, as_root):
    store_path = tmp_path / "store"
    sweep(store_path)
    os.chown(blob_of(store_path), NOBODY, NOBODY)
    with pytest.raises(UntrustedDataError, match=r"owned by .*not by you.*trust=True"):
        metalab.reconnect(store_path)
    assert len(metalab.reconnect(store_path, trust=True).result()) == 3


def test_reconnect_refuses_an_experiment_others_may_write(tmp_path):
    store_path = tmp_path / "store"
    sweep(store_path)
    os.chmod(blob_of(store_path), 0o666)
    with pytest.raises(UntrustedDataError, match="lets others than you write it"):
        metalab.reconnect(store_path)
    os.chmod(blob_of(store_path), 0o600)
    assert len(metalab.reconnect(store_path).result()) == 3


def test_a_pickle_artifact_someone_else_wrote_is_loaded_only_when_trusted(tmp_path, as_root):
    store_path = tmp_path / "store"
    results = sweep(store_path)
    assert results[0].artifact("obj")["set"] == {1, 2}  # the user's own
    for path in (store_path / "artifacts").rglob("obj.pkl"):
        os.chown(path, NOBODY, NOBODY)
    run = metalab.load_results(store_path)[0]
    with pytest.raises(UntrustedDataError, match=r"run.artifact\('obj', trust=True\)"):
        run.artifact("obj")
    assert run.artifact("obj", trust=True)["set"] == {1, 2}
    assert run.artifact("cfg") == {"x": 0}  # JSON runs no code


def test_workers_load_the_experiment_the_sweep_stored_whoever_wrote_its_file(
    tmp_path, as_root, monkeypatch
):
    """Another user stored the same experiment first: its bytes hash to the key the driver
    computed, so they are the driver's own. Other bytes under that key are refused."""
    from metalab import execute

    store_path = tmp_path / "store"
    sweep(store_path)
    blob = blob_of(store_path)
    key = blob.stem
    os.chown(blob, NOBODY, NOBODY)
    monkeypatch.setattr(execute, "_experiments", {})
    store = FileStore.open(store_path)
    assert execute.load_experiment(store, key).name == "safe"
    monkeypatch.setattr(execute, "_experiments", {})
    blob.write_bytes(blob.read_bytes() + b"changed")
    with pytest.raises(UntrustedDataError, match="not the ones the sweep stored"):
        execute.load_experiment(store, key)
    assert len(sweep(store_path)) == 3  # a new submission stores its experiment anew
    assert blob.stat().st_uid == os.getuid()


@pytest.fixture
def pg_locator(postgres_server):
    import urllib.parse
    import uuid

    from metalab.stores.postgres import PostgresStore, parse_locator

    schema = f"Trust {uuid.uuid4().hex[:12]}"  # a name that needs quoting
    quoted = urllib.parse.quote(schema)
    locator = f"{postgres_server}{'&' if '?' in postgres_server else '?'}schema={quoted}"
    yield locator
    PostgresStore(parse_locator(locator)).drop()
    import psycopg

    with psycopg.connect(postgres_server.split("?")[0], autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS metalab_test_other")


@pytest.mark.postgres
def test_a_database_whose_tables_others_may_write_is_trusted_only_when_asked(pg_locator):
    """Pickles from PostgreSQL are the user's own when the store's role owns their table and
    no other role may write it."""
    import psycopg
    from psycopg import sql

    from metalab.store import create_store

    sweep(pg_locator)
    assert len(metalab.reconnect(pg_locator).result()) == 3
    assert metalab.load_results(pg_locator)[0].artifact("obj")["set"] == {1, 2}
    schema = sql.Identifier(create_store(pg_locator).schema).as_string(None)
    with psycopg.connect(pg_locator.split("?")[0], autocommit=True) as conn:
        conn.execute(
            "DO $$ BEGIN CREATE ROLE metalab_test_other; EXCEPTION WHEN OTHERS THEN END $$"
        )
        conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO metalab_test_other")
        conn.execute(f"ALTER TABLE {schema}.experiments OWNER TO metalab_test_other")
        conn.execute(f"GRANT INSERT ON {schema}.artifacts TO PUBLIC")
    with pytest.raises(UntrustedDataError, match="owned by role 'metalab_test_other'"):
        metalab.reconnect(pg_locator)
    assert len(metalab.reconnect(pg_locator, trust=True).result()) == 3
    run = metalab.load_results(pg_locator)[0]
    with pytest.raises(UntrustedDataError, match="may write table"):
        run.artifact("obj")
    assert run.artifact("obj", trust=True)["set"] == {1, 2}
    assert run.artifact("cfg") == {"x": 0}
