"""The run ids a store keeps for an experiment: used only when they check out."""

from __future__ import annotations

import pytest

import metalab
from metalab import run_id_cache
from metalab.run_ids import RunIds
from metalab.store import FileStore


@metalab.operation
def noop(params, capture):
    capture.metric("x", params["a"])


def experiment(n=200, version="1"):
    return metalab.Experiment(
        name="ids",
        version=version,
        context={},
        operation=noop,
        params=metalab.grid(a=list(range(n)), b=["u", "v"]),
        seeds=metalab.seeds(base=0, replicates=3),
    )


@pytest.fixture
def small_threshold(monkeypatch):
    monkeypatch.setattr(run_id_cache, "MIN_RUNS", 1)


def test_kept_ids_are_the_computed_ones(tmp_path, small_threshold):
    store = FileStore.open(tmp_path / "store")
    exp = experiment()
    first = run_id_cache.run_ids_of(exp, store)
    assert first == exp.run_ids()
    key = run_id_cache._key(exp)
    assert store.load_experiment(key)  # kept
    assert run_id_cache.run_ids_of(exp, store) == first
    # another experiment (other params) has ids of its own
    other = experiment(n=100)
    assert run_id_cache.run_ids_of(other, store) == other.run_ids() != first


@pytest.mark.parametrize("damage", ["truncated", "flipped", "forged", "other-count"])
def test_damaged_or_forged_ids_are_computed_again(tmp_path, small_threshold, damage):
    store = FileStore.open(tmp_path / "store")
    exp = experiment()
    ids = run_id_cache.run_ids_of(exp, store)
    key = run_id_cache._key(exp)
    blob = store.load_experiment(key)
    if damage == "truncated":
        blob = blob[:-5]
    elif damage == "flipped":  # a byte changed: the checksum no longer holds
        blob = blob[:-1] + bytes([blob[-1] ^ 1])
    elif damage == "forged":  # every id replaced, with a checksum that holds
        wrong = RunIds(bytes(16) * len(ids))
        blob = run_id_cache._encoded(wrong)
    else:
        blob = run_id_cache._encoded(ids[:-1])
    store.save_experiment(key, blob)
    assert run_id_cache.run_ids_of(exp, store) == ids
    assert run_id_cache._decoded(store.load_experiment(key), len(ids)) == ids  # kept again


def test_a_resumed_sweep_skips_what_is_done_with_kept_ids(tmp_path, small_threshold, monkeypatch):
    exp = experiment(n=20)
    first = metalab.run(exp, tmp_path / "store", executor="inline")
    first.result()

    def no_hashing(self, indices=None):
        raise AssertionError("every run id hashed again")

    # the second submission takes the ids kept in the store (a sample is still recomputed)
    monkeypatch.setattr(metalab.Experiment, "run_ids", no_hashing)
    monkeypatch.setattr(metalab.Experiment, "packed_run_ids", no_hashing)
    again = metalab.run(exp, tmp_path / "store", executor="inline")
    again.wait()
    assert again.status.skipped == exp.total_runs and again.status.pending == 0
    assert len(again.result()) == exp.total_runs
