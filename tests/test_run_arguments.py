"""Arguments of `run`, `to_delayed`, `load_results`, `reconnect` and `result` are checked at
once: a bad one is a ValidationError naming the value and what was expected, and nothing is
written."""

from __future__ import annotations

import pytest
from sweeps import indexed_experiment

import metalab
from metalab.errors import ValidationError


@metalab.operation
def ok(params, capture):
    capture.metric("i", params["i"])


def _exp():
    return indexed_experiment(ok, 2, "args")


@pytest.mark.parametrize("value", ["no", "false", 0, 1, None, "True"])
def test_resume_takes_true_or_false_only(tmp_path, value):
    store = tmp_path / "store"
    with pytest.raises(ValidationError, match=rf"resume must be True or False, got {value!r}"):
        metalab.run(_exp(), store, executor="inline", resume=value)
    with pytest.raises(ValidationError, match="resume must be True or False"):
        metalab.to_delayed(_exp(), store, resume=value)
    assert not store.exists()


def test_resume_false_still_reruns_everything(tmp_path):
    metalab.run(_exp(), tmp_path, executor="inline").result()
    handle = metalab.run(_exp(), tmp_path, executor="inline", resume=False)
    assert handle.status.skipped == 0 and handle.status.completed == 2


def test_dry_run_takes_true_or_false_only(tmp_path):
    with pytest.raises(ValidationError, match="dry_run must be True or False, got 'yes'"):
        metalab.run(_exp(), tmp_path / "s", executor="inline", dry_run="yes")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("store", [5, 2.5, ["a"], b"/tmp/x"])
def test_a_store_that_is_no_path_locator_or_store_is_named(tmp_path, store, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValidationError, match="store must be a path, a locator string"):
        metalab.run(_exp(), store, executor="inline")
    with pytest.raises(ValidationError, match="store must be a path, a locator string"):
        metalab.load_results(store)
    with pytest.raises(ValidationError, match="store must be a path, a locator string"):
        metalab.reconnect(store)
    assert list(tmp_path.iterdir()) == []


def test_an_empty_store_string_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValidationError, match="store must be a path or a locator, got an empty"):
        metalab.run(_exp(), "  ", executor="inline")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("experiment", [5, "", "  ", ["args"], b"args"])
def test_load_results_experiment_must_be_a_name(tmp_path, experiment):
    metalab.run(_exp(), tmp_path, executor="inline").result()
    message = rf"experiment must be an experiment's name or 'name:version'.*got {experiment!r}"
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        metalab.load_results(tmp_path, experiment=experiment)
    with pytest.raises(ValidationError, match="experiment must be an experiment's name"):
        metalab.reconnect(tmp_path, experiment=experiment)
    assert len(metalab.load_results(tmp_path, experiment="args")) == 2


def test_reconnect_checks_progress_before_opening_anything(tmp_path):
    with pytest.raises(ValidationError, match="progress must be"):
        metalab.reconnect(tmp_path / "missing", progress="yes")


@pytest.mark.parametrize("chunk_size", ["3", 2.5, 0, True])
def test_to_delayed_checks_chunk_size_before_writing(tmp_path, chunk_size):
    with pytest.raises(ValidationError, match="chunk_size must be a positive integer"):
        metalab.to_delayed(_exp(), tmp_path / "s", chunk_size=chunk_size)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("timeout", ["10", -1, True])
def test_result_timeout_is_a_number_of_seconds(tmp_path, timeout):
    handle = metalab.run(_exp(), tmp_path, executor="inline")
    with pytest.raises(ValidationError, match="timeout must be a number of seconds"):
        handle.result(timeout=timeout)
    assert len(handle.result(timeout=0)) == 2


def test_reconnect_trust_takes_true_or_false_only(tmp_path):
    metalab.run(_exp(), tmp_path, executor="inline").result()
    with pytest.raises(ValidationError, match="trust must be True or False, got 'yes'"):
        metalab.reconnect(tmp_path, trust="yes")


@pytest.mark.parametrize("option", ["poll_interval", "stall_after"])
@pytest.mark.parametrize("value", [-1, 0, float("nan"), float("inf"), "5", True])
def test_slurm_executor_times_are_positive_seconds(option, value):
    with pytest.raises(ValidationError, match=rf"{option} must be a positive number of seconds"):
        metalab.SlurmExecutor(metalab.SlurmConfig(), **{option: value})


@pytest.mark.parametrize("executor", [metalab.ProcessExecutor, metalab.DaskExecutor])
def test_an_executor_class_instead_of_one_is_named(tmp_path, executor):
    store = tmp_path / "store"
    name = executor.__qualname__
    with pytest.raises(ValidationError, match=rf"got the class {name}: make one, executor="):
        metalab.run(_exp(), store, executor=executor)
    assert not store.exists()


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("dask.max-chunk", "abc", "a whole number of runs, at least 1"),
        ("dask.max-chunk", 0, "a whole number of runs, at least 1"),
        ("dask.target-task-seconds", "fast", "a number of seconds above 0"),
        ("dask.min-in-flight", "x", "a whole number of tasks, at least 1"),
        ("dask.local-cluster-idle-timeout", "abc", "seconds >= 0"),
        ("dask.local-cluster-idle-timeout", -1, "seconds >= 0"),
        ("dask.target-tasks", 2.5, "a whole number of tasks"),
        ("dask.dashboard-address", 8787, "an address such as"),
        ("slurm.worker-start-timeout", "soon", "seconds above 0"),
    ],
)
def test_a_wrong_metalab_setting_is_named_before_anything_runs(tmp_path, key, value, expected):
    """A setting read only once the sweep ran part of its runs would fail it half done,
    with an error that names no setting."""
    import dask

    store = tmp_path / "store"
    with dask.config.set({f"metalab.{key}": value}):
        message = rf"Dask setting metalab\.{key} must be {expected}.*got {value!r}"
        with pytest.raises(ValidationError, match=message):
            metalab.run(_exp(), store)  # the default executor: a local Dask cluster
        with pytest.raises(ValidationError, match=message):
            metalab.to_delayed(_exp(), store)
        with pytest.raises(ValidationError, match=message):
            metalab.DaskExecutor()
    assert not store.exists()


def test_settings_of_the_right_kind_are_taken():
    import dask

    from metalab import config

    settings = {
        "metalab.dask.local-cluster-idle-timeout": "5m",
        "metalab.slurm.worker-start-timeout": 90,
        "metalab.dask.target-task-seconds": 0.25,
        "metalab.dask.dashboard-address": None,
    }
    with dask.config.set(settings):
        config.check()
        assert config.seconds_of(config.get("dask.local-cluster-idle-timeout")) == 300
        assert config.get("dask.dashboard-address") is None
