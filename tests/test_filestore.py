"""`FileStore`: its on-disk layout, locators, format checks, manifests, claims, atomic writes."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from sweeps import checked_result, draw_experiment

import metalab
from metalab import claims
from metalab.errors import UnsafeStoreWarning
from metalab.store import FileStore, create_store, to_locator


@metalab.operation
def store_op(params, capture):
    capture.metric("x2", params["x"] * 2)
    capture.log(f"x={params['x']}")
    capture.artifact("arr", np.arange(3) + params["x"])
    capture.artifact("cfg", {"x": params["x"]})
    if params["x"] < 0:
        raise ValueError("negative x")


def make_exp(xs=(1, 2), version="1", **extra):
    return metalab.Experiment(
        name="fs",
        version=version,
        context={},
        operation=store_op,
        params=metalab.grid(x=list(xs)),
        seeds=metalab.seeds(base=3),
        **extra,
    )


def sweep(store, xs=(1, 2), **extra):
    return checked_result(metalab.run(make_exp(xs, **extra), store=store, executor="inline"))


def names(directory):
    return sorted(os.listdir(directory))


def shard(root, sub, run_id):
    """The directory of `sub` holding `run_id`'s files: its shard, the run id's first two
    hex digits."""
    return root / sub / run_id[:2]


def minimal_record(run_id):
    """A record as a store keeps it (format, run id, experiment, index, status)."""
    from metalab.record import RECORD_FORMAT

    return {
        "format": RECORD_FORMAT,
        "run_id": run_id,
        "experiment_id": "e:1",
        "index": 0,
        "status": "completed",
        "metrics": {"x": 1.5},
    }


def files_under(directory):
    return sorted(
        os.path.relpath(os.path.join(top, name), directory)
        for top, _, files in os.walk(directory)
        for name in files
    )


# ---------------------------------------------------------------- layout
def test_layout_after_a_sweep(store_path):
    exp = make_exp()
    results = metalab.run(exp, store=store_path, executor="inline").result()
    assert [r.status for r in results] == ["completed", "completed"]

    meta = json.loads((store_path / "_meta.json").read_text())
    assert isinstance(meta, dict) and meta.get("format")

    manifests = [n for n in names(store_path / "experiments") if n.endswith(".json")]
    assert len(manifests) == 1
    assert manifests[0].startswith(f"{exp.experiment_id}_")

    for run in results:
        run_id = run.run_id
        assert (shard(store_path, "runs", run_id) / f"{run_id}.json").is_file()
        assert (shard(store_path, "runs", run_id) / f"{run_id}.done").exists()
        artifact_dir = shard(store_path, "artifacts", run_id) / run_id
        assert len(names(artifact_dir)) == 2
        assert "x=" in (shard(store_path, "logs", run_id) / f"{run_id}.log").read_text()
        assert results.store.record_path(run_id) == shard(store_path, "runs", run_id) / (
            f"{run_id}.json"
        )

    record_files = [n for n in files_under(store_path / "runs") if n.endswith(".json")]
    assert sorted(record_files) == sorted(f"{r.run_id[:2]}/{r.run_id}.json" for r in results)


def test_each_submission_writes_its_own_manifest(store_path):
    exp = make_exp()
    metalab.run(exp, store=store_path, executor="inline").result()
    metalab.run(exp, store=store_path, executor="inline").result()
    manifests = [n for n in names(store_path / "experiments") if n.endswith(".json")]
    assert len(manifests) == 2
    assert len(set(manifests)) == 2
    for name in manifests:
        assert name.startswith(f"{exp.experiment_id}_")
        stamp = name[len(exp.experiment_id) + 1 : -len(".json")]
        assert any(c.isdigit() for c in stamp)


def test_records_carry_their_format(store_path):
    results = sweep(store_path)
    for run in results:
        record = json.loads(results.store.record_path(run.run_id).read_text())
        assert record["format"] == "metalab.run/1"
        assert record["run_id"] == run.run_id
        assert record["status"] == "completed"


def test_failed_run_has_a_record_but_no_done_marker(store_path):
    results = sweep(store_path, xs=(-1, 1))
    failed, completed = results
    assert failed.status == "failed"
    assert completed.status == "completed"
    assert (shard(store_path, "runs", failed.run_id) / f"{failed.run_id}.json").is_file()
    assert not (shard(store_path, "runs", failed.run_id) / f"{failed.run_id}.done").exists()
    assert (shard(store_path, "runs", completed.run_id) / f"{completed.run_id}.done").exists()


def test_a_version_1_store_keeps_its_flat_layout(store_path):
    """Stores made before sharding (one directory per kind) are read, resumed and written
    in their own layout, by the driver and by workers that unpickle the store."""
    import pickle

    FileStore.open(store_path)
    meta = json.loads((store_path / "_meta.json").read_text())
    (store_path / "_meta.json").write_text(json.dumps({**meta, "version": 1}))

    results = sweep(store_path, xs=(-1, 1))
    failed, completed = results
    assert (store_path / "runs" / f"{completed.run_id}.json").is_file()
    assert (store_path / "runs" / f"{completed.run_id}.done").exists()
    assert (store_path / "runs" / f"{failed.run_id}.json").is_file()
    assert (store_path / "logs" / f"{completed.run_id}.log").is_file()
    assert (store_path / "artifacts" / completed.run_id).is_dir()
    assert [p for p in (store_path / "runs").iterdir() if p.is_dir()] == []

    again = metalab.run(make_exp(xs=(-1, 1)), store=store_path, executor="inline")
    checked_result(again)
    assert again.status.skipped == 1  # the completed run; the failed one runs again
    opened = create_store(store_path)
    assert opened.version == 1 and pickle.loads(pickle.dumps(opened)).version == 1
    assert sorted(r.run_id for r in metalab.load_results(store_path)) == sorted(
        r.run_id for r in results
    )
    # the layout is read however the store object is made
    assert FileStore(store_path).version == 1
    assert len(metalab.load_results(FileStore(store_path))) == 2
    # a new store is sharded, and so is its unpickled copy
    fresh = FileStore.open(store_path.parent / "fresh")
    assert fresh.version == 2 and pickle.loads(pickle.dumps(fresh)).version == 2
    assert FileStore(store_path.parent / "never-made").version == 2


def test_artifact_references_do_not_name_the_shard(store_path):
    """A fallback and its primary give the same reference for an artifact; a version 2
    store keeps the file in its shard and finds it from that reference."""
    store = FileStore.open(store_path)
    run_id = "ab12cd" + "0" * 26
    ref = store.put_artifact(run_id, "x.bin", b"bytes")
    assert ref == f"artifacts/{run_id}/x.bin"
    assert (store_path / "artifacts" / "ab" / run_id / "x.bin").read_bytes() == b"bytes"
    assert store.read_artifact(ref) == b"bytes"
    assert store.artifact_path(ref) == store_path / "artifacts" / "ab" / run_id / "x.bin"
    with pytest.raises(metalab.StoreError, match="outside the store"):
        store.read_artifact("artifacts/../../etc/passwd")


def test_claims_in_shards_made_by_several_threads_at_once_leave_nothing(store_path):
    """Threads claiming in shards not made yet (the start of a sweep): every claim file,
    descriptor and heartbeat goes when the claims are released."""
    import threading

    store = FileStore.open(store_path)
    owner = claims.owner("session-a")
    start = threading.Barrier(8)

    def work(k):
        start.wait()
        for shard in range(256):
            run_id = f"{shard:02x}{k:030d}"
            assert store.claim(run_id, owner)
            store.release(run_id)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert files_under(store_path / "claims") == []
    assert store._claims.held == {}
    assert not [path for path in claims.heartbeat._held if path.startswith(str(store_path))]


# ---------------------------------------------------------------- portability
def test_artifact_refs_are_relative_so_the_store_can_move(store_path, tmp_path):
    sweep(store_path)
    for record_file in (store_path / "runs").glob("*/*.json"):
        record = json.loads(record_file.read_text())
        for artifact in record["artifacts"]:
            assert not os.path.isabs(artifact["ref"])
            assert str(store_path) not in artifact["ref"]

    moved = tmp_path / "elsewhere" / "moved_store"
    moved.parent.mkdir()
    shutil.move(store_path, moved)
    assert not store_path.exists()

    results = metalab.load_results(moved)
    assert len(results) == 2
    np.testing.assert_array_equal(results[0].artifact("arr"), np.arange(3) + 1)
    assert results[1].artifact("cfg") == {"x": 2}
    assert "x=2" in results[1].log


@pytest.mark.parametrize("form", ["str", "path", "uri", "object"])
def test_store_can_be_given_as_path_uri_or_object(store_path, form):
    store_path.parent.mkdir(exist_ok=True)
    given = {
        "str": lambda: str(store_path),
        "path": lambda: store_path,
        "uri": lambda: store_path.as_uri(),
        "object": lambda: create_store(store_path),
    }[form]()
    results = sweep(given)
    assert [r.status for r in results] == ["completed", "completed"]
    assert len(list((store_path / "runs").glob("*/*.done"))) == 2
    for loader in (str(store_path), store_path, store_path.as_uri(), create_store(store_path)):
        loaded = metalab.load_results(loader)
        assert sorted(r.run_id for r in loaded) == sorted(r.run_id for r in results)


def test_to_locator_returns_the_file_uri(store_path):
    store = create_store(store_path)
    assert isinstance(store, FileStore)
    assert to_locator(store) == store_path.as_uri()
    assert to_locator(str(store_path)) == store_path.as_uri()
    reopened = create_store(to_locator(store))
    assert to_locator(reopened) == store_path.as_uri()


def test_a_file_store_meets_the_store_contract_with_a_journal(store_path):
    from metalab.contracts import Store, StoreCapabilities

    store = FileStore.open(store_path)
    assert isinstance(store, Store)
    assert FileStore.capabilities == StoreCapabilities(journal=True, table=True)
    assert store.public_locator == store.locator == store_path.as_uri()
    assert store.work_directory() == store_path
    assert store.load_records() == []
    store.flush_journal()
    store.flush_journal()  # idempotent
    data = store.put_record(minimal_record("f" * 32))
    assert json.loads(data) == store.get_record("f" * 32)


def test_open_takes_a_path_or_a_file_uri(store_path):
    with pytest.raises(metalab.StoreError, match="no metalab store"):
        FileStore.open(store_path.as_uri(), create=False)
    made = FileStore.open(store_path.as_uri())
    assert made.root == store_path and (store_path / "_meta.json").exists()
    for locator in (str(store_path), store_path, made.locator, f"file://localhost{store_path}"):
        assert FileStore.open(locator, create=False).root == store_path
    with pytest.raises(metalab.StoreError, match="names host"):
        FileStore.open(f"file://elsewhere{store_path}")


def test_unknown_scheme_lists_known_schemes(tmp_path):
    with pytest.raises(metalab.StoreError) as excinfo:
        create_store("s3://bucket/runs")
    message = str(excinfo.value)
    assert "s3" in message
    assert "file://" in message
    assert "postgresql://" in message
    with pytest.raises(metalab.StoreError):
        metalab.load_results("s3://bucket/runs")


@pytest.mark.parametrize("executor", ["inline", None])
def test_a_store_removed_and_made_again_at_its_path_gets_the_next_sweeps_records(
    tmp_path, executor
):
    """The processes that wrote a store keep its store object (the inline executor's and the
    kept local cluster's workers): a store removed, or moved away, and made again at the same
    path gets the next sweep's records, never the directory that went."""
    path = tmp_path / "store"
    exp = make_exp(xs=range(6))
    assert len(checked_result(metalab.run(exp, path, executor))) == 6
    shutil.rmtree(path)
    assert len(checked_result(metalab.run(exp, path, executor))) == 6
    assert len(list((path / "runs").rglob("*.done"))) == 6
    moved = tmp_path / "moved"
    path.rename(moved)
    before = files_under(moved)
    results = checked_result(metalab.run(make_exp(xs=range(8)), path, executor))
    assert len(results) == 8 and {r.status for r in results} == {"completed"}
    assert len(list((path / "runs").rglob("*.json"))) == 8
    assert files_under(moved) == before  # the store moved away got nothing
    assert len(metalab.load_results(path)) == 8


def test_a_record_that_cannot_be_written_names_its_whole_path(store_path):
    """A record that cannot be put in place names the file in the error."""
    store = FileStore.open(store_path)
    run_id = "ab" + "0" * 30
    assert store.claim(run_id, claims.owner("s"))
    record = store_path / "runs" / "ab" / f"{run_id}.json"
    record.mkdir(parents=True)  # a directory in the record's place
    with pytest.raises(metalab.StoreError) as caught:
        store.put_record(minimal_record(run_id))
    assert str(store_path / "claims" / "ab" / f"{run_id}.claim") in str(caught.value)
    store.release(run_id)


def test_a_directory_in_a_claims_place_is_a_clear_error(store_path):
    store = FileStore.open(store_path)
    run_id = "cd" + "0" * 30
    (store_path / "claims" / "cd" / f"{run_id}.claim").mkdir(parents=True)
    with pytest.raises(metalab.StoreError, match=f"cannot read the claim file .*{run_id}"):
        store.claim(run_id, claims.owner("s"))
    with pytest.warns(UnsafeStoreWarning, match=run_id):
        assert store.claims() == {}


# ---------------------------------------------------------------- refusing foreign directories
def test_store_of_another_format_is_refused(store_path):
    store_path.mkdir()
    (store_path / "_meta.json").write_text(json.dumps({"format": "other.store", "version": 1}))
    with pytest.raises(metalab.StoreFormatError):
        create_store(store_path)
    with pytest.raises(metalab.StoreFormatError):
        metalab.load_results(store_path)
    with pytest.raises(metalab.StoreFormatError):
        sweep(store_path)
    assert names(store_path) == ["_meta.json"]


def test_non_empty_directory_that_is_not_a_store_is_refused(store_path):
    store_path.mkdir()
    (store_path / "thesis.tex").write_text("precious")
    with pytest.raises(metalab.StoreError):
        create_store(store_path)
    with pytest.raises(metalab.StoreError):
        sweep(store_path)
    assert names(store_path) == ["thesis.tex"]
    assert (store_path / "thesis.tex").read_text() == "precious"


def test_load_results_on_a_missing_path_raises_store_error(tmp_path):
    missing = tmp_path / "no_such_store"
    with pytest.raises(metalab.StoreError):
        metalab.load_results(missing)
    assert not missing.exists()


# ---------------------------------------------------------------- manifests
def test_manifest_describes_the_experiment(store_path):
    exp = make_exp(
        xs=(1, 2, 3),
        description="doubling numbers",
        tags=["demo", "fs"],
        metadata={"author": "me", "groups": ["a", "b"]},
    )
    before = dt.datetime.now(dt.UTC)
    results = metalab.run(exp, store=store_path, executor="inline").result()
    after = dt.datetime.now(dt.UTC)
    (name,) = [n for n in names(store_path / "experiments") if n.endswith(".json")]
    manifest = json.loads((store_path / "experiments" / name).read_text())
    text = json.dumps(manifest)

    assert manifest["name"] == "fs"
    assert manifest["version"] == "1"
    assert manifest["description"] == "doubling numbers"
    assert manifest["tags"] == ["demo", "fs"]
    assert manifest["metadata"] == {"author": "me", "groups": ["a", "b"]}
    assert store_op.ref in text
    assert store_op.code_hash and store_op.code_hash in text
    assert manifest["total_runs"] == 3
    assert manifest["context_fingerprint"] == results[0].record["fingerprints"]["context"]

    params_spec = manifest["params"]
    assert params_spec["type"] == "grid"
    assert params_spec["axes"] == {"x": [1, 2, 3]}
    assert manifest["seeds"]["base"] == 3
    assert manifest["seeds"]["replicates"] == 1

    submitted = dt.datetime.fromisoformat(manifest["submitted_at"])
    assert before <= submitted <= after


# ---------------------------------------------------------------- claims
RUN_1, RUN_2 = "1" * 32, "2" * 32


def test_claim_is_exclusive_while_the_owner_lives(store_path):
    store = create_store(store_path)
    owner = claims.owner("session-a")
    try:
        assert store.claim(RUN_1, owner) is True
        assert store.claim(RUN_1, owner) is False
        assert store.claim(RUN_1, claims.owner("session-b")) is False
        assert RUN_1 in store.claims()
    finally:
        store.release(RUN_1)
    store.release(RUN_1)  # idempotent
    store.release("0" * 32)
    assert RUN_1 not in store.claims()
    assert store.claim(RUN_1, owner) is True
    store.release(RUN_1)


def dead_pid():
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(proc.stdout)


def test_claim_of_a_dead_owner_is_taken_over(store_path):
    store = create_store(store_path)
    pid = dead_pid()
    claim_file = shard(store_path, "claims", RUN_2) / f"{RUN_2}.claim"
    claim_file.parent.mkdir()
    claim_file.write_text(
        json.dumps({"host": socket.gethostname(), "pid": pid, "start": None, "session": "old"})
    )
    assert RUN_2 not in store.claims()
    me = claims.owner("new")
    try:
        assert store.claim(RUN_2, me) is True
        holder = json.loads(claim_file.read_text())
        assert holder["pid"] == os.getpid()
        assert holder["session"] == "new"
        assert store.claim(RUN_2, claims.owner("third")) is False
    finally:
        store.release(RUN_2)
    assert not claim_file.exists()


def test_sweep_leaves_no_claims_or_temporary_files(store_path):
    sweep(store_path, xs=(-1, 1, 2))
    sweep(store_path, xs=(-1, 1, 2))
    assert files_under(store_path / "claims") == []
    leftovers = [
        os.path.relpath(os.path.join(root, name), store_path)
        for root, dirs, files in os.walk(store_path)
        for name in files + dirs
        if name.startswith(".") or name.endswith(".tmp")
    ]
    assert leftovers == []


def test_a_claim_file_becomes_the_record(store_path):
    """A claim holds its owner while the run runs; its record is written into it and the
    file renamed into runs/, which releases the claim: one file per run."""
    store = FileStore.open(store_path)
    owner = claims.owner("session-a")
    run_id = "a" * 32
    assert store.claim(run_id, owner)
    claim = shard(store_path, "claims", run_id) / f"{run_id}.claim"
    assert json.loads(claim.read_bytes()) == json.loads(json.dumps(owner))
    inode = claim.stat().st_ino
    # another owner (another session) cannot take a live claim
    assert not store.claim(run_id, claims.owner("session-b"))
    record = {**minimal_record(run_id), "status": "completed"}
    store.put_record(record)
    assert not claim.exists() and store.claims() == {}
    path = store.record_path(run_id)
    assert path.stat().st_ino == inode and store.get_record(run_id) == record
    assert path.with_suffix(".done").exists()
    store.release(run_id)  # nothing left to release: and nothing of anyone else's removed
    assert store.claim(run_id, claims.owner("session-b"))
    store.release(run_id)
    store.release(run_id)  # idempotent
    assert files_under(store_path / "claims") == [] and store._claims.held == {}


def test_the_heartbeat_refreshes_held_claims_and_only_those(store_path):
    store = FileStore.open(store_path)
    owner = claims.owner("s")
    held, done = "a" * 32, "b" * 32
    assert store.claim(held, owner) and store.claim(done, owner)
    claim = shard(store_path, "claims", held) / f"{held}.claim"
    os.utime(claim, (1_000_000_000, 1_000_000_000))  # a lease about to lapse
    store.put_record(minimal_record(done))  # its claim became its record
    record_mtime = store.record_path(done).stat().st_mtime
    claims.heartbeat.beat_once()
    assert time.time() - claim.stat().st_mtime < 60  # fresh again for other hosts
    assert store.record_path(done).stat().st_mtime == record_mtime
    assert not (shard(store_path, "claims", done) / f"{done}.claim").exists()
    store.release(held)
    assert files_under(store_path / "claims") == []


def test_a_record_shorter_than_its_claim_is_written_whole(store_path):
    store = FileStore.open(store_path)
    run_id = "b" * 32
    assert store.claim(run_id, {**claims.owner("s"), "padding": "x" * 5000})
    record = {**minimal_record(run_id), "status": "failed"}
    store.put_record(record)
    assert store.get_record(run_id) == record
    assert not store.record_path(run_id).with_suffix(".done").exists()


def test_a_claim_taken_over_while_stalled_is_left_to_its_new_owner(store_path):
    """A process stalled past its lease (or misjudged by a host whose clock is wrong) finds
    its claim taken over: its record goes to a file of its own, never through the new
    owner's claim file, and the new owner's claim stays."""
    store = FileStore.open(store_path)
    run_id = "c" * 32
    assert store.claim(run_id, claims.owner("stalled"))
    claim = shard(store_path, "claims", run_id) / f"{run_id}.claim"
    os.unlink(claim)  # what a takeover does, then it claims anew
    claim.write_bytes(json.dumps({**claims.owner("other"), "pid": 1}).encode())
    record = {**minimal_record(run_id), "status": "completed"}
    store.put_record(record)
    assert store.get_record(run_id) == record
    store.release(run_id)
    assert json.loads(claim.read_bytes())["session"] == "other"
    assert store._claims.held == {}


def test_a_takeover_never_replaces_a_claim_another_process_just_took_over(store_path):
    """Two processes find the same dead claim: once one has taken it over (even if the new
    claim file holds what the dead one held), the other's takeover stops."""
    store = FileStore.open(store_path)
    run_id = "f" * 32
    claim = shard(store_path, "claims", run_id) / f"{run_id}.claim"
    claim.parent.mkdir(parents=True)
    claim.write_bytes(b"")  # a dead claim without an owner: a record half written in
    os.utime(claim, (1_000_000_000, 1_000_000_000))
    dead = store._claims.read(str(claim))
    assert not claims.is_alive(dead[0], dead[1])
    # another process takes it over first; its new claim reads the same (being written)
    os.unlink(claim)
    claim.write_bytes(b"")
    assert not store._claims.take_over(str(claim), claims.owner("late"), dead[2])
    assert claim.read_bytes() == b"" and store._claims.held == {}


def test_a_failed_record_write_never_mixes_with_the_next_one(store_path, monkeypatch):
    """A completed record whose write fails half way (disk full) is followed by the failed
    record the run function writes: that one is whole, never mixed with the first."""
    import errno

    store = FileStore.open(store_path)
    run_id = "9" * 32
    assert store.claim(run_id, claims.owner("s"))
    real_pwrite, calls = os.pwrite, []

    def pwrite(fd, data, offset):
        calls.append(offset)
        if len(calls) == 1:
            return real_pwrite(fd, bytes(data)[:10], offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", pwrite)
    big = {**minimal_record(run_id), "metrics": {f"m{i}": i for i in range(200)}}
    with pytest.raises(metalab.StoreError, match="No space left on device"):
        store.put_record(big)
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    failed = {**minimal_record(run_id), "status": "failed"}
    store.put_record(failed)
    assert store.get_record(run_id) == failed
    store.release(run_id)
    assert files_under(store_path / "claims") == [] and store._claims.held == {}


def test_threads_of_one_process_never_release_each_others_claims(store_path):
    """A thread that wrote a run's record (its claim became the record) and has yet to call
    release must not remove the claim another thread of the process took on the run since."""
    import threading

    store = FileStore.open(store_path)
    owner = claims.owner("s")
    run_id = "7" * 32
    assert store.claim(run_id, owner)
    store.put_record(minimal_record(run_id))  # claim gone, release still to come
    taken = threading.Event()
    done = threading.Event()

    def other():
        assert store.claim(run_id, owner)
        taken.set()
        done.wait(10)
        store.release(run_id)

    thread = threading.Thread(target=other)
    thread.start()
    assert taken.wait(10)
    store.release(run_id)  # the first thread's release: the other's claim stays
    assert run_id in store.claims()
    done.set()
    thread.join()
    assert store.claims() == {} and files_under(store_path / "claims") == []


def test_a_forked_child_holds_none_of_its_parents_claims(store_path):
    store = FileStore.open(store_path)
    assert store.claim("8" * 32, claims.owner("s"))
    pid = os.fork()
    if pid == 0:  # the child: nothing to touch, release or write through
        os._exit(0 if store._claims.held == {} and store.held_files() == [] else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert len(store._claims.held) == 1
    store.release("8" * 32)
    assert files_under(store_path / "claims") == []


def test_a_sweep_in_threads_leaves_no_claim_when_it_returns(store_path):
    for version in range(3):
        exp = make_exp(xs=range(12), version=str(version))
        metalab.run(exp, store_path, executor=metalab.ThreadExecutor(max_workers=2)).result()
        assert files_under(store_path / "claims") == []


def test_claim_of_a_killed_process_is_taken_over(store_path):
    """A process killed while running a run leaves its claim; it is dead at once (same
    host, pid gone) and another owner takes the run over."""
    script = (
        "import os, signal, sys\n"
        "from metalab.store import FileStore\n"
        "from metalab import claims\n"
        "store = FileStore.open(sys.argv[1])\n"
        "assert store.claim('c' * 32, claims.owner('s'))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    FileStore.open(store_path)
    subprocess.run([sys.executable, "-c", script, str(store_path)], timeout=60)
    assert files_under(store_path / "claims") == [f"cc/{'c' * 32}.claim"]
    store = FileStore.open(store_path)
    assert store.claims() == {}  # the owner is dead
    assert store.claim("c" * 32, claims.owner("t"))  # taken over
    store.release("c" * 32)
    assert files_under(store_path / "claims") == []


def test_owner_file_left_by_an_older_store_is_removed_when_its_process_is_gone(store_path):
    """Stores written by metalab 0.1 kept claims as hard links to per-process owner files;
    a killed process could leave one behind: listing claims removes it."""
    FileStore.open(store_path)
    left = store_path / "claims" / ".owner-1-0-0"
    left.write_text(json.dumps({"host": claims.owner()["host"], "pid": 2**22 + 7}))
    assert FileStore.open(store_path).claims() == {}
    assert not left.exists()


def test_a_record_is_written_even_when_its_claim_file_cannot_become_it(store_path, monkeypatch):
    """Where the claim file cannot be renamed into runs/ (claims/ on another filesystem, or
    the claim removed by hand), the record is written the usual way and nothing is left."""
    import errno

    store = FileStore.open(store_path)
    owner = claims.owner("s")
    # the claim removed by hand while the run ran
    assert store.claim("d" * 32, owner)
    os.unlink(shard(store_path, "claims", "d" * 32) / ("d" * 32 + ".claim"))
    store.put_record(minimal_record("d" * 32))
    assert store.get_record("d" * 32) == minimal_record("d" * 32)
    store.release("d" * 32)
    # claims/ on another filesystem: rename refuses to cross
    real_rename = os.rename

    def rename(src, dst, *args, **kwargs):
        if str(src).endswith(".claim"):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", rename)
    assert store.claim("e" * 32, owner)
    store.put_record(minimal_record("e" * 32))
    assert store.get_record("e" * 32) == minimal_record("e" * 32)
    store.release("e" * 32)
    assert files_under(store_path / "claims") == [] and store._claims.held == {}
    assert store.scan()[1] == {"d" * 32, "e" * 32}  # both completed, both marked


def test_a_claim_killed_while_its_record_was_written_in_is_dead_at_once(store_path):
    """Killed between writing its record into the claim and renaming it: the record names
    the writing process, so on its host the claim is dead as soon as that process is, with
    no wait for the lease."""
    store = FileStore.open(store_path)
    run_id = "6" * 32
    claim = shard(store_path, "claims", run_id) / f"{run_id}.claim"
    claim.parent.mkdir(parents=True)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    host = claims.owner()["host"]
    record = {**minimal_record(run_id), "provenance": {"host": host, "pid": int(gone.stdout)}}
    claim.write_text(json.dumps(record))  # fresh: the heartbeat would say alive
    assert store.claims() == {}
    assert store.claim(run_id, claims.owner("t"))  # taken over at once
    store.release(run_id)
    # a record written in by a live process is a live claim, reported with its session
    record["provenance"] = {"host": host, "pid": os.getpid(), "session": "s1"}
    claim.write_text(json.dumps(record))
    assert store.claims()[run_id]["session"] == "s1"
    assert not store.claim(run_id, claims.owner("t"))


def test_a_store_path_that_is_a_file_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("mine\n")
    for target in (path, path / "sub"):
        with pytest.raises(metalab.StoreError, match=r"is a file \(or inside one\), not a store"):
            metalab.run(draw_experiment("filed"), target, executor="inline")
        with pytest.raises(metalab.StoreError, match="is a file"):
            metalab.load_results(target)
        with pytest.raises(metalab.StoreError, match="is a file"):
            metalab.reconnect(target)
    assert path.read_text() == "mine\n"


def test_a_directory_holding_only_a_service_becomes_a_store(tmp_path):
    # `metalab postgres start --store DIR` may come first: DIR/services/postgres/
    store = tmp_path / "my_exp"
    record = store / "services" / "postgres" / "service.json"
    record.parent.mkdir(parents=True)
    record.write_text('{"state": "stopped"}')
    results = metalab.run(draw_experiment("served", replicates=1), store, executor="inline")
    assert len(results.result()) == 6
    assert (store / "_meta.json").exists()
    assert record.read_text() == '{"state": "stopped"}'
    other = tmp_path / "other"
    (other / "services").mkdir(parents=True)
    (other / "thesis.tex").write_text("x")
    with pytest.raises(metalab.StoreError, match="non-empty directory that is not a metalab"):
        metalab.run(draw_experiment("served", replicates=1), other, executor="inline")
