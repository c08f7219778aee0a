"""The Results API: selection by params, metrics and status, tables, grouped display, stepped
metrics, provenance columns, and stores holding several experiments."""

from __future__ import annotations

import io
import os
import time

import numpy as np
import pytest

import metalab
from metalab.errors import ValidationError

RATES = [0.1 * k for k in (1, 2, 3)]  # the last is 0.30000000000000004, not 0.3


@metalab.operation
def fit(params, seeds, capture):
    rng = seeds.numpy()
    loss = 1.0
    for step in range(4):
        loss *= 1 - params["learning_rate"]
        capture.metric("loss", loss, step=step)
    capture.metric("final", loss + rng.normal(0, 1e-3))
    capture.metric("accuracy", 1 - loss)
    if params["optimizer"] == "bad":
        raise RuntimeError("diverged")


def experiment(name="fit", optimizers=("adam", "sgd")):
    return metalab.Experiment(
        name=name,
        version="1",
        context={},
        operation=fit,
        params=metalab.grid(learning_rate=RATES, optimizer=list(optimizers)),
        seeds=metalab.seeds(base=3, replicates=2),
    )


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    store = tmp_path_factory.mktemp("results") / "store"
    metalab.run(experiment(), store, executor="inline").result()
    metalab.run(experiment("other", ("adam", "bad")), store, executor="inline").result()
    return metalab.load_results(store, "fit")


def test_filter_matches_float_params_as_typed(results):
    assert RATES[2] != 0.3
    chosen = results.filter(learning_rate=0.3)
    assert len(chosen) == 4
    assert {r.params["optimizer"] for r in chosen} == {"adam", "sgd"}
    assert len(results.filter(learning_rate=0.3, optimizer="sgd")) == 2
    assert len(results.filter(learning_rate=0.31)) == 0


def test_filter_lists_and_comparisons(results):
    assert len(results.filter(optimizer=["adam", "sgd"])) == 12
    assert len(results.filter(learning_rate__in=[0.1, 0.3])) == 8
    assert len(results.filter(learning_rate__gt=0.15)) == 8
    assert len(results.filter(learning_rate__le=0.2, optimizer__ne="adam")) == 4
    assert len(results.filter(missing_param=1)) == 0
    with pytest.raises(ValidationError, match="needs a single value"):
        results.filter(learning_rate__lt=[1, 2])


def test_where_selects_on_metrics_and_status(results):
    good = results.where(accuracy__ge=0.5)
    assert len(good) > 0
    assert all(r.metrics["accuracy"] >= 0.5 for r in good)
    assert len(good) + len(results.where(accuracy__lt=0.5)) == len(results)
    assert len(results.where(status="completed")) == 12
    assert len(results.where(status=["failed", "cancelled"])) == 0
    assert len(results.where(lambda run: run.params["optimizer"] == "adam")) == 6
    with pytest.raises(ValidationError, match="unknown status"):
        results.where(status="done")


def test_loads_one_experiment_or_all(results):
    store = results.store
    everything = metalab.load_results(store.locator)
    assert len(everything) == 24
    assert sorted({r.experiment_id for r in everything}) == ["fit:1", "other:1"]
    other = metalab.load_results(store.locator, experiment="other:1")
    assert len(other) == 12
    assert len(other.failed) == 6 and len(other.successful) == 6
    assert all(r.error["message"] == "diverged" for r in other.failed)
    assert len(everything[:5]) == 5 and isinstance(everything[:5], metalab.Results)


def test_display_groups_mean_and_std(results):
    out = io.StringIO()
    table = results.display(group_by=["learning_rate"], file=out)
    text = out.getvalue()
    assert "learning_rate" in text and "mean" in text and "std" in text
    assert list(table.index) == RATES
    sub = results.filter(learning_rate=0.3)
    assert table.loc[RATES[2], ("accuracy", "mean")] == pytest.approx(
        np.mean([r.metrics["accuracy"] for r in sub])
    )
    assert table.loc[RATES[2], ("runs", "count")] == 4
    with pytest.raises(ValidationError, match="not parameters"):
        results.display(group_by=["loss"])


def test_display_without_rich(results, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_rich(name, *args, **kwargs):
        if name.startswith("rich"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_rich)
    out = io.StringIO()
    results.display(group_by="optimizer", file=out)
    assert "adam" in out.getvalue() and "sgd" in out.getvalue()


def test_stepped_metrics_per_run_and_long_form(results):
    steps, values = results[0].metric_series("loss")
    assert steps == [0, 1, 2, 3] and len(values) == 4
    long = results.metric_series("loss")
    assert len(long) == 12 * 4
    assert set(long.columns) >= {"run_id", "param_learning_rate", "step", "value", "metric"}
    first = long[long.run_id == results[0].run_id]
    assert list(first.value) == values


def test_table_and_dataframe_columns(results):
    text = results.table()
    assert "learning_rate" in text and "accuracy" in text and "completed" in text
    df = results.table(as_dataframe=True)
    assert {"param_learning_rate", "param_optimizer", "accuracy", "status"} <= set(df.columns)
    full = results.to_dataframe(include_provenance=True)
    for column in ("run_id", "status", "duration", "started_at", "code_hash", "host", "worker"):
        assert column in full.columns
    assert full["code_hash"].str.len().eq(64).all()
    assert full["host"].notna().all()


def test_to_csv_has_params_and_metrics(results, tmp_path):
    import csv

    path = tmp_path / "out.csv"
    results.to_csv(path)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 12
    assert {"param_learning_rate", "param_optimizer", "accuracy", "final"} <= set(rows[0])


# ---------------------------------------------------------------- the DataFrame cache
@pytest.fixture
def settled(monkeypatch):
    """Records count as settled at once (not RACY_SECONDS after their last change)."""
    from metalab.stores import file

    monkeypatch.setattr(file, "RACY_SECONDS", 0.0)


def test_a_cached_dataframe_is_the_one_the_records_give(tmp_path, settled):
    import pandas as pd

    store = tmp_path / "store"
    metalab.run(experiment(), store, executor="inline").result()
    metalab.run(experiment("other", ("adam", "bad")), store, executor="inline").result()
    for selection in (None, "fit", "other:1"):
        first = metalab.load_results(store, selection)
        assert first._frame is None  # nothing cached yet: the records were read from files
        computed = first.to_dataframe()
        again = metalab.load_results(store, selection)
        assert again._frame is not None  # records and frame from the cache, one snapshot
        cached = again.to_dataframe()
        # the cached frame came without decoding a record: they are decoded when first read
        assert again._encoded and all(isinstance(r, bytes) for r in again._loaded)
        assert type(cached) is type(computed)
        pd.testing.assert_frame_equal(cached, computed)
        assert cached["optimizer"].tolist() == computed["param_optimizer"].tolist()
        assert again.records == first.records
        assert again.to_dataframe(include_record=False).shape[1] < cached.shape[1]
        cached.loc[0, "run_id"] = "changed by the user"  # a copy: the cache stays as it was
        assert again.to_dataframe()["run_id"][0] == computed["run_id"][0]
    assert len(list((store / "cache").glob("load-*.pkl"))) == 3


def test_a_cache_file_others_could_have_written_is_not_read(tmp_path, settled):
    store = tmp_path / "store"
    metalab.run(experiment(), store, executor="inline").result()
    metalab.load_results(store).to_dataframe()
    (cache_file,) = (store / "cache").iterdir()
    assert metalab.load_results(store)._frame is not None
    os.chmod(cache_file, 0o666)  # unpickling runs code: only the user's own files count
    assert metalab.load_results(store)._frame is None


def test_new_or_rewritten_records_are_never_hidden_by_the_cache(tmp_path, settled):
    store = tmp_path / "store"
    metalab.run(experiment(), store, executor="inline").result()
    metalab.load_results(store).to_dataframe()  # cached
    time.sleep(0.05)
    metalab.run(experiment("other", ("adam", "bad")), store, executor="inline").result()
    df = metalab.load_results(store).to_dataframe()
    assert sorted(set(df["experiment_id"])) == ["fit:1", "other:1"]
    # a record rewritten in place of another (a re-run) changes what is cached
    time.sleep(0.05)
    exp = experiment("other", ("adam", "bad"))
    metalab.run(exp, store, executor="inline", resume=False).result()
    df = metalab.load_results(store, "other").to_dataframe()
    fresh = {r.run_id: r.record["finished_at"] for r in metalab.load_results(store, "other")}
    assert dict(zip(df["run_id"], df["finished_at"])) == fresh


def test_records_changed_moments_ago_are_not_cached(tmp_path):
    store = tmp_path / "store"
    metalab.run(experiment(), store, executor="inline").result()
    metalab.load_results(store).to_dataframe()
    assert not list((store / "cache").iterdir())  # within RACY_SECONDS of the last write


def test_selections_and_read_only_stores_do_without_the_cache(tmp_path, settled):
    store = tmp_path / "store"
    metalab.run(experiment(), store, executor="inline").result()
    metalab.load_results(store).to_dataframe()
    loaded = metalab.load_results(store)
    adam = loaded.filter(optimizer="adam").to_dataframe()
    assert set(adam["param_optimizer"]) == {"adam"} and len(adam) == len(loaded) // 2
    # a store where nothing can be cached (here `cache` is a file, as a read-only store's
    # directory would refuse files): loading works the same, without a cache
    for path in (store / "cache").iterdir():
        path.unlink()
    (store / "cache").rmdir()
    (store / "cache").write_text("not a directory")
    assert len(metalab.load_results(store).to_dataframe()) == len(loaded)
    assert metalab.load_results(store)._frame is None
