"""The capture interface, exercised through real inline sweeps into a temporary store."""

from __future__ import annotations

import fractions
import gc
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from sweeps import checked_result

import metalab
from metalab.store import create_store

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LEVELS = ("debug", "info", "warning", "error", "critical")


def run_op(op, store, *, params=None, replicates=1, name="cap"):
    """Run `op` inline over `params` (one case by default); return the handle's results."""
    exp = metalab.Experiment(
        name=name,
        version="1",
        context={},
        operation=op,
        params=params if params is not None else metalab.grid(x=[0]),
        seeds=metalab.seeds(base=0, replicates=replicates),
    )
    return checked_result(metalab.run(exp, store=store, executor="inline"))


def only_run(op, store):
    """Run `op` once; return the run as the handle gives it and as `load_results` reads it."""
    from_handle = run_op(op, store)
    from_store = metalab.load_results(store)
    assert len(from_handle) == len(from_store) == 1
    return from_handle[0], from_store[0]


def assert_failed_naming(run, name, error_type="ValidationError"):
    assert run.status == "failed"
    assert run.error is not None
    assert run.error["type"].endswith(error_type), run.error
    assert repr(name) in run.error["message"] or name in run.error["message"], run.error


# ---------------------------------------------------------------- metrics
NUMBERS = [
    ("py_int", 3, int),
    ("py_float", 0.25, float),
    ("py_bool", True, bool),
    ("np_int64", np.int64(7), int),
    ("np_int32", np.int32(-2), int),
    ("np_float64", np.float64(1.5), float),
    ("np_float32", np.float32(0.5), float),
    ("np_bool", np.bool_(False), bool),
]


def test_metric_numbers_are_stored_as_plain_python_values(store_path):
    @metalab.operation
    def op(capture):
        for name, value, _ in NUMBERS:
            capture.metric(name, value)

    for run in only_run(op, store_path):
        assert run.status == "completed", run.error
        for name, value, python_type in NUMBERS:
            stored = run.metrics[name]
            assert type(stored) is python_type, (name, type(stored))
            assert stored == value


@pytest.mark.parametrize(
    "value",
    ["0.9", [1, 2], None, np.array([1.0, 2.0]), {"a": 1}],
    ids=["str", "list", "None", "ndarray", "dict"],
)
def test_metric_rejects_non_numbers_naming_the_metric(store_path, value):
    @metalab.operation
    def op(capture):
        capture.metric("bad_metric", value)

    for run in only_run(op, store_path):
        assert_failed_naming(run, "bad_metric")
        assert "bad_metric" not in run.metrics


def test_stepped_metrics_form_a_series(store_path):
    @metalab.operation
    def op(capture):
        for step, loss in enumerate([0.9, 0.5, np.float32(0.25)]):
            capture.metric("loss", loss, step=step)
        capture.metric("acc", 0.8, step=10)

    for run in only_run(op, store_path):
        assert run.status == "completed", run.error
        assert run.metric_series("loss") == ([0, 1, 2], [0.9, 0.5, 0.25])
        assert run.metric_series("acc") == ([10], [0.8])
        with pytest.raises(KeyError):
            run.metric_series("never_logged")


def test_log_metrics_records_several_metrics_with_and_without_step(store_path):
    @metalab.operation
    def op(capture):
        capture.log_metrics({"precision": 0.92, "recall": np.float64(0.89), "ok": True})
        capture.log_metrics({"loss": 0.5, "lr": 0.1}, step=0)
        capture.log_metrics({"loss": 0.4, "lr": 0.05}, step=1)

    for run in only_run(op, store_path):
        assert run.status == "completed", run.error
        assert run.metrics["precision"] == 0.92
        assert run.metrics["recall"] == 0.89
        assert run.metrics["ok"] is True
        assert run.metric_series("loss") == ([0, 1], [0.5, 0.4])
        assert run.metric_series("lr") == ([0, 1], [0.1, 0.05])


def test_log_metrics_rejects_a_bad_value_naming_it(store_path):
    @metalab.operation
    def op(capture):
        capture.log_metrics({"fine": 1.0, "broken": "text"})

    for run in only_run(op, store_path):
        assert_failed_naming(run, "broken")


# ---------------------------------------------------------------- data
def test_data_round_trips_json_values(store_path):
    summary = {"counts": [1, 2, 3], "label": "x", "nested": {"ok": True, "none": None}}

    @metalab.operation
    def op(capture):
        capture.data("summary", summary)
        capture.data("numbers", [1.5, 2.5])

    for run in only_run(op, store_path):
        assert run.status == "completed", run.error
        assert run.artifact("summary") == summary
        assert run.artifact("numbers") == [1.5, 2.5]


def test_data_round_trips_numpy_arrays(store_path):
    matrix = np.arange(12, dtype=np.int16).reshape(3, 4)
    floats = np.linspace(0.0, 1.0, 5, dtype=np.float32)

    @metalab.operation
    def op(capture):
        capture.data("matrix", matrix)
        capture.data("floats", floats)

    for run in only_run(op, store_path):
        assert run.status == "completed", run.error
        assert set(run.artifacts) >= {"matrix", "floats"}
        for name, expected in (("matrix", matrix), ("floats", floats)):
            loaded = run.artifact(name)
            assert isinstance(loaded, np.ndarray)
            assert loaded.dtype == expected.dtype
            np.testing.assert_array_equal(loaded, expected)


@pytest.mark.parametrize(
    "value",
    [object(), fractions.Fraction(1, 3), np.array([object()], dtype=object)],
    ids=["object", "fraction", "object-array"],
)
def test_data_rejects_values_it_cannot_store_naming_them(store_path, value):
    @metalab.operation
    def op(capture):
        capture.data("weird_data", value)

    for run in only_run(op, store_path):
        assert_failed_naming(run, "weird_data")
        assert "weird_data" not in run.artifacts


# ---------------------------------------------------------------- artifacts
class Point:
    """A picklable value that JSON cannot hold."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


ARRAY = np.arange(6, dtype=np.float64).reshape(2, 3)

KINDS = [
    ("json", {"model": "resnet", "layers": 50, "sizes": [1, 2]}),
    ("numpy", ARRAY),
    ("pickle", Point(1, 2)),
    ("text", "hello\nworld ✓"),
    ("bytes", b"\x00\x01binary\xff"),
]


def assert_same(loaded, expected):
    if isinstance(expected, np.ndarray):
        assert isinstance(loaded, np.ndarray)
        assert loaded.dtype == expected.dtype
        np.testing.assert_array_equal(loaded, expected)
    else:
        assert type(loaded) is type(expected)
        assert loaded == expected


def kinds_of(run):
    return {a["name"]: a["kind"] for a in run.record["artifacts"]}


@pytest.mark.parametrize(("kind", "value"), KINDS, ids=[k for k, _ in KINDS])
def test_artifact_round_trips_each_kind(store_path, kind, value):
    @metalab.operation
    def op(capture):
        capture.artifact("thing", value, kind=kind)

    for run in only_run(op, store_path):
        assert run.status == "completed", run.error
        assert kinds_of(run)["thing"] == kind
        assert_same(run.artifact("thing"), value)


@pytest.mark.parametrize(("kind", "value"), KINDS, ids=[k for k, _ in KINDS])
def test_artifact_format_is_an_alias_of_kind(store_path, kind, value):
    @metalab.operation
    def op(capture):
        capture.artifact("thing", value, format=kind)

    for run in only_run(op, store_path):
        assert run.status == "completed", run.error
        assert kinds_of(run)["thing"] == kind
        assert_same(run.artifact("thing"), value)


INFERRED = [
    ("numpy", ARRAY),
    ("text", "plain text"),
    ("bytes", b"raw"),
    ("json", {"model": "resnet", "layers": 50}),
    ("json", [1, 2.5, "x", None]),
    ("pickle", Point(3, 4)),
    ("pickle", {1, 2, 3}),
    ("pickle", {"ids": {1, 2}}),
]


@pytest.mark.parametrize(
    ("expected_kind", "value"),
    INFERRED,
    ids=["ndarray", "str", "bytes", "dict", "list", "object", "set", "dict-with-set"],
)
def test_artifact_infers_a_kind_that_round_trips(store_path, expected_kind, value):
    @metalab.operation
    def op(capture):
        capture.artifact("thing", value)

    for run in only_run(op, store_path):
        assert run.status == "completed", run.error
        assert_same(run.artifact("thing"), value)
        assert kinds_of(run)["thing"] == expected_kind


def test_artifact_with_unknown_kind_fails_listing_known_kinds(store_path):
    @metalab.operation
    def op(capture):
        capture.artifact("thing", {"a": 1}, kind="yaml")

    for run in only_run(op, store_path):
        assert_failed_naming(run, "yaml")
        for kind in ("json", "numpy", "pickle", "text", "bytes"):
            assert kind in run.error["message"]


def test_figure_is_stored_as_png(store_path):
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.subplots()
    ax.plot([0, 1, 2], [0.9, 0.5, 0.2])

    @metalab.operation
    def op(capture):
        capture.figure("learning_curve", fig)

    for run in only_run(op, store_path):
        assert run.status == "completed", run.error
        descriptor = next(a for a in run.record["artifacts"] if a["name"] == "learning_curve")
        assert descriptor["media_type"] == "image/png"
        png = run.artifact("learning_curve")
        assert isinstance(png, bytes)
        assert png.startswith(PNG_SIGNATURE)


def test_file_is_copied_into_the_store(store_path, tmp_path):
    source = tmp_path / "notes.txt"
    source.write_text("first version\n")

    @metalab.operation
    def op(capture):
        capture.file("notes", source)

    from_handle = run_op(op, store_path)
    source.write_text("changed afterwards\n")
    source.unlink()
    for run in (from_handle[0], metalab.load_results(store_path)[0]):
        assert run.status == "completed", run.error
        assert run.artifact("notes") == b"first version\n"


# ---------------------------------------------------------------- logs
LINE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}")


def test_log_lines_carry_timestamp_level_and_worker(store_path):
    @metalab.operation
    def op(capture):
        capture.log("Starting training")
        capture.log("Parameters: lr=0.01", level="debug")
        capture.log("Loss above threshold", level="warning")
        capture.log("Training complete")

    for run in only_run(op, store_path):
        assert run.status == "completed", run.error
        worker = run.provenance["worker"]
        assert worker
        lines = run.log.splitlines()
        assert len(lines) == 4
        expected = [
            ("info", "Starting training"),
            ("debug", "Parameters: lr=0.01"),
            ("warning", "Loss above threshold"),
            ("info", "Training complete"),
        ]
        for line, (level, message) in zip(lines, expected):
            assert LINE.search(line), line
            assert level.upper() in line.upper().split(message.upper())[0], line
            assert worker in line, line
            assert line.endswith(message), line


def test_a_log_that_cannot_be_closed_fails_the_run_keeping_what_it_captured(
    store_path, monkeypatch
):
    """A full disk as the log is flushed at the run's end: the run is recorded failed with
    that error, and with the metrics it captured and its times (it is run again on resume)."""
    import errno

    from metalab.stores.file.store import FileStore

    real_open_log = FileStore.open_log

    class FullDiskLog:
        def __init__(self, fh):
            self._fh = fh

        def write(self, text):
            return self._fh.write(text)

        def close(self):
            self._fh.close()
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(
        FileStore, "open_log", lambda self, run_id: FullDiskLog(real_open_log(self, run_id))
    )

    @metalab.operation
    def op(params, capture):
        capture.metric("kept", 3.5)
        capture.log("a line")

    (run,) = run_op(op, store_path)
    assert run.status == "failed"
    assert "No space left on device" in run.error["message"]
    assert run.metrics == {"kept": 3.5}
    assert run.record["started_at"] and run.record["finished_at"]


def test_log_file_lives_in_the_store(store_path):
    @metalab.operation
    def op(capture):
        capture.log("saved with the run")

    (run, _) = only_run(op, store_path)
    log_file = store_path / "logs" / run.run_id[:2] / f"{run.run_id}.log"
    assert "saved with the run" in log_file.read_text()


def test_log_rejects_an_unknown_level_listing_valid_ones(store_path):
    @metalab.operation
    def op(capture):
        capture.log("hello", level="verbose")

    for run in only_run(op, store_path):
        assert_failed_naming(run, "verbose")
        for level in LEVELS:
            assert level in run.error["message"]


# ---------------------------------------------------------------- names
BAD_NAMES = ["a/b", "a\\b", "..", "../escape", "x/../../y", "a..b"]


@pytest.mark.parametrize("method", ["artifact", "data"])
@pytest.mark.parametrize("name", BAD_NAMES)
def test_artifact_names_with_separators_or_dotdot_are_rejected(store_path, tmp_path, method, name):
    @metalab.operation
    def op(capture):
        getattr(capture, method)(name, {"a": 1})

    for run in only_run(op, store_path):
        assert_failed_naming(run, name)
        assert run.record["artifacts"] == []
    assert not (tmp_path / "y.json").exists()
    assert not (store_path / "artifacts" / "escape.json").exists()


@pytest.mark.parametrize("method", ["artifact", "data"])
def test_an_artifact_name_too_long_for_a_file_is_a_validation_error(store_path, method):
    """A 300-character name failed at the store's write with a StoreError."""

    @metalab.operation
    def op(capture):
        getattr(capture, method)("a" * 201, {"a": 1})
        capture.data("a" * 200, {"b": 2})  # not reached: the run fails above

    for run in only_run(op, store_path):
        assert run.status == "failed"
        assert run.error["type"] == "metalab.errors.ValidationError", run.error
        assert "has 201 bytes; at most 200 are allowed" in run.error["message"]
        assert run.record["artifacts"] == []


@metalab.operation
def _longest_name(capture):
    capture.data("é" * 100, {"b": 2})  # 200 bytes: the longest allowed


def test_the_longest_artifact_name_is_written(store_path):
    for run in only_run(_longest_name, store_path):
        assert run.status == "completed", run.error
        assert run.artifact("é" * 100) == {"b": 2}


# ---------------------------------------------------------------- codecs
@pytest.fixture
def codec_registry():
    """Restore the codec registry after a test registers its own codecs."""
    from metalab import serializers

    codecs, kinds = dict(serializers._codecs), list(serializers._user_kinds)
    yield
    serializers._codecs.clear()
    serializers._codecs.update(codecs)
    serializers._user_kinds[:] = kinds


def test_user_codec_is_used_by_kind_and_round_trips(store_path, codec_registry):
    metalab.register_codec(
        metalab.Codec(
            kind="csvrow",
            media_type="text/csv",
            extension=".csv",
            encode=lambda row: ",".join(str(v) for v in row).encode(),
            decode=lambda data: [int(v) for v in data.decode().split(",")],
        )
    )

    @metalab.operation
    def op(capture):
        capture.artifact("row", [3, 1, 2], kind="csvrow")

    for run in only_run(op, store_path):
        assert run.status == "completed", run.error
        descriptor = next(a for a in run.record["artifacts"] if a["name"] == "row")
        assert descriptor["kind"] == "csvrow"
        assert descriptor["media_type"] == "text/csv"
        assert descriptor["ref"].endswith(".csv")
        assert create_store(store_path).artifact_path(descriptor["ref"]).read_bytes() == b"3,1,2"
        assert run.artifact("row") == [3, 1, 2]


# ---------------------------------------------------------------- failures
def test_failed_run_keeps_partial_capture_and_the_error(store_path):
    @metalab.operation
    def exploding_operation(capture):
        capture.metric("before", 1.0)
        capture.metric("loss", 0.5, step=0)
        capture.log("about to fail")
        capture.artifact("partial", {"done": 1})
        raise RuntimeError("boom at step 1")

    for run in only_run(exploding_operation, store_path):
        assert run.status == "failed"
        assert run.metrics == {"before": 1.0}
        assert run.metric_series("loss") == ([0], [0.5])
        assert "about to fail" in run.log
        assert run.artifact("partial") == {"done": 1}
        assert run.error["type"] == "RuntimeError"
        assert run.error["message"] == "boom at step 1"
        assert "exploding_operation" in run.error["traceback"]
        assert "RuntimeError: boom at step 1" in run.error["traceback"]


def test_keyboard_interrupt_records_interrupted_and_propagates(store_path):
    @metalab.operation
    def op(params, capture):
        capture.metric("seen", params["x"])
        capture.log("working")
        raise KeyboardInterrupt

    exp = metalab.Experiment(
        name="cap",
        version="1",
        context={},
        operation=op,
        params=metalab.grid(x=[0, 1, 2]),
        seeds=metalab.seeds(base=0),
    )
    with pytest.raises(KeyboardInterrupt):
        metalab.run(exp, store=store_path, executor="inline")

    results = metalab.load_results(store_path)
    assert len(results) == 1, "the sweep should stop at the interrupted run"
    run = results[0]
    assert run.status == "interrupted"
    assert run.metrics == {"seen": 0}
    assert "working" in run.log
    assert run.error["type"] == "KeyboardInterrupt"
    assert not (store_path / "runs" / f"{run.run_id}.done").exists()


@pytest.mark.parametrize("fail", [False, True], ids=["completed", "failed"])
def test_scratch_dir_exists_during_the_run_and_is_removed_after(store_path, fail):
    @metalab.operation
    def op(runtime, capture):
        scratch = runtime.scratch_dir
        capture.data("scratch", {"path": str(scratch), "is_dir": scratch.is_dir()})
        (scratch / "temp.bin").write_bytes(b"x" * 10)
        capture.metric("same_dir_twice", runtime.scratch_dir == scratch)
        if fail:
            raise ValueError("fails after using scratch")

    for run in only_run(op, store_path):
        assert run.status == ("failed" if fail else "completed")
        seen = run.artifact("scratch")
        assert seen["is_dir"] is True
        assert run.metrics["same_dir_twice"] is True
        assert not Path(seen["path"]).exists()


def _open_fds():
    """Map each open descriptor to what it points at (a path, `socket:[...]`, `pipe:[...]`)."""
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed while listing (the listing's own descriptor)
            continue
    return fds


def _files_opened(before, after):
    """Descriptors open now but not before that point at files (not sockets or pipes).

    Sockets and pipes can be opened at any moment by threads that earlier tests left
    behind (a client's heartbeat, a pool's reconnect); a file left open by the sweep
    is what this test is after.
    """
    return sorted(
        target
        for fd, target in after.items()
        if before.get(fd) != target
        and target.startswith("/")
        and not target.startswith(("/proc/", "/sys/", "/dev/"))  # a monitor's reads
    )


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_sweep_does_not_leak_file_handles(tmp_path):
    @metalab.operation
    def op(params, capture):
        capture.log(f"run {params['i']}")
        capture.log("detail", level="debug")
        capture.artifact("values", {"i": params["i"]})
        if params["i"] % 5 == 0:
            raise ValueError("every fifth run fails")

    run_op(op, tmp_path / "warmup", params=metalab.grid(i=[0, 1]))
    from metalab.executors.local_clusters import _local

    _local.close_all()  # local clusters kept by earlier tests keep sockets of their own
    gc.collect()
    before = _open_fds()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        results = run_op(op, tmp_path / "store", params=metalab.grid(i=list(range(50))))
        gc.collect()
    after = _open_fds()
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == []
    assert len(results) == 50
    assert sum(r.status == "failed" for r in results) == 10
    assert all("run " in r.log for r in results)
    assert _files_opened(before, after) == []
