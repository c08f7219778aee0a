"""Stores whose files are not what metalab wrote: links inside the store, records of the wrong
shape, logs cut short. Reads skip what is not the store's with an `UnsafeStoreWarning`, a
resume runs again the runs they held, and nothing is read or written outside the store."""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
from sweeps import indexed_experiment, metalab_cmd

import metalab
from metalab.errors import UnsafeStoreWarning


@metalab.operation
def crafted_op(params, capture):
    capture.log(f"hello {params['i']}")
    capture.artifact("blob", {"i": params["i"]}, kind="json")
    capture.metric("i", params["i"])


def make_exp(n=4):
    return indexed_experiment(crafted_op, n, "crafted")


def sweep(store, n=4):
    return metalab.run(make_exp(n), store=store, executor="inline").result()


def record_file(store: Path, index: int) -> Path:
    for path in store.glob("runs/*/*.json"):
        if json.loads(path.read_bytes())["index"] == index:
            return path
    raise AssertionError(f"no record of index {index}")


def files_under(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


def load(store) -> list:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnsafeStoreWarning)
        results = list(metalab.load_results(store))
    return results, [str(w.message) for w in caught if w.category is UnsafeStoreWarning]


# ---------------------------------------------------------------- links
def test_a_store_of_links_is_seen_the_same_by_loading_and_resume(tmp_path):
    """A copy made of links (`cp -rs`): its records are no files of the store. Loading
    skips them with a warning and takes their markers away, so the next resume runs them
    again into files of its own; the store the links led to is left as it was."""
    base, tree = tmp_path / "base", tmp_path / "tree"
    sweep(base)
    subprocess.run(["cp", "-rs", str(base), str(tree)], check=True)
    before = files_under(base)
    results, warned = load(tree)
    assert results == [] and len(warned) == 4
    assert all("symbolic link" in message for message in warned)
    with pytest.warns(UnsafeStoreWarning):
        again = sweep(tree)
    assert sorted(run.params["i"] for run in again) == [0, 1, 2, 3]
    assert all(run.status == "completed" and run.record["attempt"] == 1 for run in again)
    results, warned = load(tree)
    assert len(results) == 4 and warned == []
    assert all(not path.is_symlink() for path in tree.glob("runs/*/*.json"))
    assert files_under(base) == before


def test_links_inside_a_store_lead_no_read_or_write_outside_it(tmp_path):
    store, outside = tmp_path / "store", tmp_path / "outside"
    outside.mkdir()
    sweep(store)
    victim = outside / "private.txt"
    victim.write_text("PRIVATE\n")
    # a log that is a link to a file outside
    first = record_file(store, 0)
    run_id = first.stem
    log = store / "logs" / run_id[:2] / f"{run_id}.log"
    log.unlink()
    log.symlink_to(victim)
    # a run whose artifact directory is a link to a directory outside
    second = record_file(store, 1)
    artifacts = store / "artifacts" / second.stem[:2] / second.stem
    shutil.rmtree(artifacts)
    (outside / "art").mkdir()
    artifacts.symlink_to(outside / "art")
    second.unlink()
    second.with_suffix(".done").unlink()
    with pytest.warns(UnsafeStoreWarning, match="symbolic link"):
        logs = {run.params["i"]: run.log for run in metalab.load_results(store)}
    assert logs[0] == "" and "PRIVATE" not in "".join(logs.values())
    exported = tmp_path / "exported"
    done = metalab_cmd("store", "export", "--from", str(store), "--to", str(exported))
    assert done.returncode == 0, done.stderr
    assert not any(b"PRIVATE" in data for data in files_under(exported).values())
    # the resume runs run 1 again: its artifact goes nowhere outside, the run fails saying why
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = metalab.run(make_exp(), store=store, executor="inline").result()
    failed = [run for run in results if run.status == "failed"]
    assert [run.params["i"] for run in failed] == [1]
    assert "symbolic link" in failed[0].error["message"]
    assert victim.read_text() == "PRIVATE\n"
    assert list((outside / "art").iterdir()) == []


def test_a_shard_that_is_a_link_is_refused_for_writing_and_skipped_for_reading(tmp_path):
    store, outside = tmp_path / "store", tmp_path / "outside"
    sweep(store)
    first = record_file(store, 0)
    shard = first.parent
    shutil.move(str(shard), outside)
    shard.symlink_to(outside)
    moved = files_under(outside)
    results, warned = load(store)
    assert 0 not in [run.params["i"] for run in results]
    assert any("symbolic link" in message for message in warned)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(metalab.MetalabError, match="is a symbolic link"):
            metalab.run(make_exp(), store=store, executor="inline").result()
    assert files_under(outside) == moved


# ---------------------------------------------------------------- records of the wrong shape
@pytest.mark.parametrize(
    "damage",
    [
        {"metrics": [1, 2]},
        {"params": [1]},
        {"status": "failed", "error": "oops"},
        {"artifacts": ["x"]},
        {"series": "abc"},
        {"index": "1"},
        {"status": "weird"},
    ],
    ids=repr,
)
def test_a_record_of_the_wrong_shape_is_skipped_and_run_again(tmp_path, damage):
    store = tmp_path / "store"
    sweep(store)
    path = record_file(store, 1)
    path.write_text(json.dumps({**json.loads(path.read_bytes()), **damage}))
    results, warned = load(store)
    assert sorted(run.params["i"] for run in results) == [0, 2, 3]
    assert len(warned) == 1 and path.stem in warned[0]
    with pytest.warns(UnsafeStoreWarning):
        frame = metalab.load_results(store).to_dataframe()
    assert len(frame) == 3
    with pytest.warns(UnsafeStoreWarning):  # the resume's own look at the store
        again = metalab.run(make_exp(), store=store, executor="inline").result()
    assert sorted(run.params["i"] for run in again) == [0, 1, 2, 3]
    status = metalab_cmd("status", str(store))
    assert status.returncode == 0, status.stderr


def test_a_record_nested_too_deeply_is_skipped(tmp_path):
    store = tmp_path / "store"
    sweep(store)
    path = record_file(store, 2)
    path.write_text("[" * 100_000 + "]" * 100_000)
    results, warned = load(store)
    assert sorted(run.params["i"] for run in results) == [0, 1, 3]
    assert any("nested too deeply" in message for message in warned)
    with pytest.warns(UnsafeStoreWarning):
        assert len(metalab.run(make_exp(), store=store, executor="inline").result()) == 4


def test_a_directory_in_a_records_place_is_skipped(tmp_path):
    store = tmp_path / "store"
    sweep(store)
    path = record_file(store, 3)
    path.unlink()
    path.with_suffix(".done").unlink()
    path.mkdir()
    results, warned = load(store)
    assert sorted(run.params["i"] for run in results) == [0, 1, 2]
    assert any("a directory" in message for message in warned)


def test_derived_metrics_that_are_no_object_read_as_none(tmp_path):
    store = tmp_path / "store"
    sweep(store)
    run_id = record_file(store, 0).stem
    derived = store / "derived" / run_id[:2]
    derived.mkdir(parents=True, exist_ok=True)
    (derived / f"{run_id}.json").write_text("[1, 2]")
    with pytest.warns(UnsafeStoreWarning, match="no JSON object"):
        found = {run.params["i"]: run.derived for run in metalab.load_results(store)}
    assert found[0] == {}


# ---------------------------------------------------------------- logs cut short
def test_a_log_cut_inside_a_character_reads_and_exports(tmp_path):
    """A full disk may cut a log's last line inside a character: the log still reads (the
    cut character replaced) and the store still exports."""
    store = tmp_path / "store"
    sweep(store)
    run_id = record_file(store, 0).stem
    log = store / "logs" / run_id[:2] / f"{run_id}.log"
    log.write_bytes(log.read_bytes() + "é".encode()[:1])
    logs = {run.params["i"]: run.log for run in metalab.load_results(store)}
    assert logs[0].startswith(log.read_text(errors="replace")[:10])
    assert logs[0].endswith("\ufffd")
    done = metalab_cmd("store", "export", "--from", str(store), "--to", str(tmp_path / "copy"))
    assert done.returncode == 0, done.stderr
