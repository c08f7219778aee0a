"""Resume: completed runs are skipped, failed ones re-run; bad input never harms the store."""

from __future__ import annotations

import math
import os

import pytest
from sweeps import checked_result

import metalab

FAIL_FLAG = "METALAB_TEST_FAIL_FLAG"


@metalab.operation
def flaky(params, capture):
    capture.metric("x2", params["x"] * 2)
    with open(os.environ["METALAB_TEST_EXEC_LOG"], "a") as fh:
        fh.write(f"{params['x']}\n")
    if params["x"] % 2 and os.path.exists(os.environ[FAIL_FLAG]):
        raise RuntimeError(f"odd x={params['x']} fails while the flag exists")


def _experiment(version="1", op=flaky, xs=range(6)):
    return metalab.Experiment(
        name="flaky",
        version=version,
        context={},
        operation=op,
        params=metalab.grid(x=list(xs)),
        seeds=metalab.seeds(base=3),
    )


@pytest.fixture
def env(tmp_path, monkeypatch):
    log = tmp_path / "exec.log"
    flag = tmp_path / "fail.flag"
    monkeypatch.setenv("METALAB_TEST_EXEC_LOG", str(log))
    monkeypatch.setenv(FAIL_FLAG, str(flag))
    flag.touch()
    return log, flag, tmp_path / "store"


def _executed(log) -> list[int]:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def test_resume_skips_completed_and_reruns_failed(env):
    log, flag, store = env
    first = checked_result(metalab.run(_experiment(), store, executor="inline"))
    assert [r.status for r in first] == ["completed", "failed"] * 3
    assert first[1].error["type"] == "RuntimeError"
    assert "odd x=1 fails" in first[1].error["message"]
    assert "Traceback" in first[1].error["traceback"]
    assert first[1].metrics == {"x2": 2}  # partial metrics survive the failure

    flag.unlink()
    log.unlink()
    handle = metalab.run(_experiment(), store, executor="inline")
    second = checked_result(handle)
    assert sorted(_executed(log)) == [1, 3, 5]
    assert [r.status for r in second] == ["completed"] * 6
    assert handle.status.skipped == 3 and handle.status.completed == 3

    log.unlink()
    third = metalab.run(_experiment(), store, executor="inline")
    assert _executed(log) == []
    assert third.status.skipped == 6
    assert [r.run_id for r in checked_result(third)] == [r.run_id for r in second]


def test_resume_false_reruns_everything(env):
    log, flag, store = env
    flag.unlink()
    metalab.run(_experiment(), store, executor="inline").result()
    metalab.run(_experiment(), store, executor="inline", resume=False).result()
    assert sorted(_executed(log)) == sorted(list(range(6)) * 2)
    assert len(list((store / "runs").glob("*/*.json"))) == 6


def test_rerun_that_fails_after_success_removes_done_marker(env):
    log, flag, store = env
    flag.unlink()
    checked_result(metalab.run(_experiment(), store, executor="inline"))
    flag.touch()
    results = checked_result(metalab.run(_experiment(), store, executor="inline", resume=False))
    failed = [r.run_id for r in results if r.status == "failed"]
    assert len(failed) == 3
    for run_id in failed:
        assert not (store / "runs" / f"{run_id}.done").exists()
    flag.unlink()
    log.unlink()
    checked_result(metalab.run(_experiment(), store, executor="inline"))
    assert sorted(_executed(log)) == [1, 3, 5]


@metalab.operation(name="flaky")
def flaky_v2(params, capture):
    capture.metric("x2", params["x"] * 2 + 0)  # different source, same runs


def test_changed_operation_source_warns_once_with_count(env):
    _log, flag, store = env
    flag.unlink()
    metalab.run(_experiment(xs=range(4)), store, executor="inline").result()
    with pytest.warns(metalab.CodeChangedWarning, match=r"4 completed run\(s\).*version") as caught:
        handle = metalab.run(_experiment(op=flaky_v2, xs=range(6)), store, executor="inline")
    assert len(caught) == 1
    assert handle.status.skipped == 4
    results = handle.result()
    hashes = {r.provenance["code_hash"] for r in results}
    assert hashes == {flaky.code_hash, flaky_v2.code_hash}
    # bumping the version re-runs everything under the new source
    bumped = metalab.run(_experiment("2", op=flaky_v2, xs=range(6)), store, executor="inline")
    assert bumped.status.skipped == 0
    assert {r.provenance["code_hash"] for r in bumped.result()} == {flaky_v2.code_hash}


def _snapshot(store):
    out = {}
    for root, _, files in os.walk(store):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, store)] = fh.read()
    return out


@pytest.mark.parametrize(
    "bad_params, key",
    [
        (metalab.grid(x=[1, math.nan]), "x"),
        (metalab.grid(x=[1], y=[math.inf]), "y"),
        (metalab.manual([{"x": 1}, {"x": 2, "obj": object()}]), "obj"),
    ],
)
def test_bad_params_rejected_at_run_and_store_untouched(env, bad_params, key):
    _log, flag, store = env
    flag.unlink()
    metalab.run(_experiment(), store, executor="inline").result()
    before = _snapshot(store)
    bad = metalab.Experiment(
        name="flaky",
        version="1",
        context={},
        operation=flaky,
        params=bad_params,
        seeds=metalab.seeds(base=3),
    )
    with pytest.raises(metalab.FingerprintError, match=repr(key)):
        metalab.run(bad, store, executor="inline")
    assert _snapshot(store) == before


def test_missing_context_file_rejected_at_run_and_store_untouched(env, tmp_path):
    _log, flag, store = env
    flag.unlink()
    metalab.run(_experiment(), store, executor="inline").result()
    before = _snapshot(store)

    @metalab.context_spec
    class Ctx:
        data: metalab.FilePath

    exp = metalab.Experiment(
        name="flaky",
        version="1",
        context=Ctx(data=metalab.FilePath(tmp_path / "nope.csv")),
        operation=flaky,
        params=metalab.grid(x=[1]),
        seeds=metalab.seeds(base=3),
    )
    with pytest.raises(metalab.ContextFileError, match=r"context\.data.*nope\.csv"):
        metalab.run(exp, store, executor="inline")
    assert _snapshot(store) == before


@metalab.operation
def numpy_everything(params, capture):
    import numpy as np

    capture.metric("n", np.int64(params["n"]))
    capture.metric("half", np.float32(0.5))
    capture.metric("flag", np.bool_(params["n"] > 1))


def test_numpy_scalar_params_and_metrics(tmp_path):
    import numpy as np

    def exp(values):
        return metalab.Experiment(
            name="np",
            version="1",
            context={},
            operation=numpy_everything,
            params=metalab.grid(n=values),
            seeds=metalab.seeds(base=0),
        )

    results = metalab.run(exp([np.int64(1), np.int32(2)]), tmp_path, executor="inline").result()
    assert [r.params for r in results] == [{"n": 1}, {"n": 2}]
    assert results[1].metrics == {"n": 2, "half": 0.5, "flag": True}
    assert type(results[1].metrics["n"]) is int and type(results[1].metrics["flag"]) is bool
    # the same sweep written with Python ints is the same runs: nothing left to do
    again = metalab.run(exp([1, 2]), tmp_path, executor="inline")
    assert again.status.skipped == 2


def test_bad_params_never_create_a_store(tmp_path):
    bad = metalab.Experiment(
        name="flaky",
        version="1",
        context={},
        operation=flaky,
        params=metalab.grid(x=[math.nan]),
        seeds=metalab.seeds(base=3),
    )
    with pytest.raises(metalab.FingerprintError):
        metalab.run(bad, tmp_path / "fresh", executor="inline")
    assert not (tmp_path / "fresh").exists()
