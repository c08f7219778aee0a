"""Derived metrics: on workers, client-side and on the fly; stored with their function and code
hash; never part of a run's identity; a failing function fails neither the run nor the others."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from sweeps import checked_result

import metalab
from metalab.errors import CodeChangedWarning, ValidationError
from metalab.types import Metric


@metalab.operation
def train(params, seeds, capture):
    rng = seeds.numpy()
    history = np.sort(rng.random(5))[::-1] * params["learning_rate"]
    capture.artifact("loss_history", history)
    capture.metric("score", float(history.sum()))


def make_experiment(version="1"):
    return metalab.Experiment(
        name="derive",
        version=version,
        context={},
        operation=train,
        params=metalab.grid(learning_rate=[0.01, 0.1]),
        seeds=metalab.seeds(base=7, replicates=2),
    )


def final_loss(run) -> dict[str, Metric]:
    loss_history = run.artifact("loss_history")
    return {"final_loss": float(loss_history[-1]), "best_loss": float(loss_history.min())}


def normalized_score(run) -> dict[str, Metric]:
    return {"normalized_score": run.metrics["score"] / run.params["learning_rate"]}


def broken(run):
    raise KeyError("no such artifact")


def not_a_mapping(run):
    return 3.0


def test_worker_side_derived_metrics_are_stored_and_reloaded(tmp_path):
    store = tmp_path / "store"
    handle = metalab.run(
        make_experiment(),
        store,
        executor="threads",
        derived_metrics=[final_loss, broken, normalized_score, not_a_mapping],
    )
    results = handle.result()
    assert len(results) == 4 and all(r.status == "completed" for r in results)
    for run in results:
        history = run.artifact("loss_history")
        assert run.derived["final_loss"] == pytest.approx(history[-1])
        assert run.derived["best_loss"] == pytest.approx(history.min())
        assert run.derived["normalized_score"] == pytest.approx(
            run.metrics["score"] / run.params["learning_rate"]
        )
        info = run.derived_info
        assert info["values"]["final_loss"]["function"] == f"{__name__}:final_loss"
        assert len(info["values"]["final_loss"]["code_hash"]) == 64
        # the failing functions are recorded per run and function
        assert info["errors"][f"{__name__}:broken"]["type"] == "KeyError"
        assert "must return a dict" in info["errors"][f"{__name__}:not_a_mapping"]["message"]

    reloaded = metalab.load_results(store)
    assert [r.derived for r in reloaded] == [r.derived for r in results]
    df = reloaded.to_dataframe(include_derived=True)
    assert {"derived_final_loss", "derived_best_loss", "derived_normalized_score"} <= set(
        df.columns
    )
    summary = df.groupby("param_learning_rate").agg(
        {"derived_final_loss": ["mean", "std"], "derived_normalized_score": "mean"}
    )
    assert list(summary.index) == [0.01, 0.1]


def test_derived_metrics_never_change_run_ids(tmp_path):
    plain = metalab.run(make_experiment(), tmp_path / "a", executor="inline").result()
    derived = metalab.run(
        make_experiment(), tmp_path / "b", executor="inline", derived_metrics=[final_loss]
    ).result()
    assert [r.run_id for r in plain] == [r.run_id for r in derived]
    # and re-running with derived metrics skips the completed runs
    again = metalab.run(
        make_experiment(), tmp_path / "a", executor="inline", derived_metrics=[final_loss]
    )
    assert again.result() and again.status.skipped == 4


def test_compute_derived_client_side_keeps_values_unless_overwrite(tmp_path):
    store = tmp_path / "store"
    metalab.run(make_experiment(), store, executor="inline").result()
    results = metalab.load_results(store)
    assert results[0].derived == {}
    assert results.compute_derived([final_loss, normalized_score]) is results
    first = [r.derived for r in metalab.load_results(store)]
    assert all(set(d) == {"final_loss", "best_loss", "normalized_score"} for d in first)

    # a stored value is kept: a different function under the same ref is not called
    def final_loss_v2(run):
        return {"final_loss": -1.0, "best_loss": -1.0}

    final_loss_v2.__qualname__ = "final_loss"
    final_loss_v2.__module__ = final_loss.__module__
    results = metalab.load_results(store)
    with pytest.warns(CodeChangedWarning, match="overwrite='changed'"):
        results.compute_derived([final_loss_v2])
    assert [r.derived["final_loss"] for r in metalab.load_results(store)] == [
        d["final_loss"] for d in first
    ]
    # overwrite="changed" recomputes values made by another definition, True recomputes all
    metalab.load_results(store).compute_derived([final_loss_v2], overwrite="changed")
    assert {r.derived["final_loss"] for r in metalab.load_results(store)} == {-1.0}
    metalab.load_results(store).compute_derived([final_loss], overwrite=True)
    assert [r.derived["final_loss"] for r in metalab.load_results(store)] == [
        d["final_loss"] for d in first
    ]
    # other functions' values were never touched
    assert [r.derived["normalized_score"] for r in metalab.load_results(store)] == [
        d["normalized_score"] for d in first
    ]


def test_on_the_fly_derived_metrics_are_not_persisted(tmp_path):
    store = tmp_path / "store"
    metalab.run(make_experiment(), store, executor="inline").result()
    results = metalab.load_results(store)
    df = results.to_dataframe(derived_metrics=[final_loss, broken])
    assert df["derived_final_loss"].notna().all()
    assert not any(c.startswith("derived_") and "broken" in c for c in df.columns)
    assert all(r.derived == {} for r in metalab.load_results(store))
    assert not list((store / "derived").rglob("*.json"))


def test_derived_functions_only_run_on_completed_runs(tmp_path):
    @metalab.operation
    def sometimes(params, capture):
        if params["x"] == 2:
            raise RuntimeError("bad x")
        capture.metric("y", params["x"])

    exp = metalab.Experiment(
        name="some",
        version="1",
        context={},
        operation=sometimes,
        params=metalab.grid(x=[1, 2]),
        seeds=metalab.seeds(base=0),
    )
    calls = []

    def twice(run):
        calls.append(run.run_id)
        return {"twice": run.metrics["y"] * 2}

    results = checked_result(metalab.run(exp, tmp_path, executor="inline", derived_metrics=[twice]))
    assert [r.status for r in results] == ["completed", "failed"]
    assert results[0].derived == {"twice": 2} and results[1].derived == {}
    assert len(calls) == 1
    results.compute_derived([twice])  # the failed run is left alone client-side too
    assert len(calls) == 1


def test_stored_document_names_function_and_hash(tmp_path):
    store = tmp_path / "store"
    metalab.run(make_experiment(), store, executor="inline", derived_metrics=[final_loss]).result()
    files = sorted((store / "derived").glob("*/*.json"))
    assert len(files) == 4
    document = json.loads(files[0].read_text())
    assert document["format"] == "metalab.derived/1"
    entry = document["values"]["final_loss"]
    assert set(entry) == {"value", "function", "code_hash", "computed_at"}


@pytest.mark.parametrize(
    "bad, match",
    [
        (final_loss, "must be a list of functions"),
        (["final_loss"], "'final_loss' is not callable"),
        ("final_loss", "must be a list of functions"),
    ],
)
def test_bad_derived_metrics_argument_is_a_clear_error(tmp_path, bad, match):
    with pytest.raises(ValidationError, match=match):
        metalab.run(make_experiment(), tmp_path / "s", executor="inline", derived_metrics=bad)
    assert not (tmp_path / "s").exists()
    results = metalab.run(make_experiment(), tmp_path / "t", executor="inline").result()
    with pytest.raises(ValidationError, match=match):
        results.compute_derived(bad)
    with pytest.raises(ValidationError, match="overwrite must be"):
        results.compute_derived([final_loss], overwrite="yes")


def test_derived_metrics_of_a_script_run_on_process_workers(tmp_path):
    """Functions defined in a user's script travel to worker processes by value."""
    import subprocess
    import sys

    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import metalab

            @metalab.operation
            def op(params, capture):
                capture.metric("y", params["x"] ** 2)

            def plus_one(run):
                return {{"y_plus_one": run.metrics["y"] + 1}}

            if __name__ == "__main__":
                exp = metalab.Experiment(name="s", version="1", context={{}}, operation=op,
                                         params=metalab.grid(x=[1, 2, 3]),
                                         seeds=metalab.seeds(base=0))
                handle = metalab.run(exp, {str(tmp_path / "store")!r},
                                     executor=metalab.ProcessExecutor(max_workers=2),
                                     derived_metrics=[plus_one])
                print(sorted(r.derived["y_plus_one"] for r in handle.result()))
            """
        )
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[2, 5, 10]"
