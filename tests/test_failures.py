"""Failures outside the operation: every run still ends with one record and result() returns."""

from __future__ import annotations

import logging
import textwrap

import pytest
from distributed import LocalCluster
from sweeps import indexed_experiment

import metalab
from metalab import claims
from metalab.store import create_store


@metalab.operation
def ok(params, capture):
    capture.metric("i", params["i"])


def _exp(op=ok, n=3, name="fails", **kwargs):
    return indexed_experiment(op, n, name, **kwargs)


class BadMessage(Exception):
    def __str__(self):
        raise RuntimeError("no message for you")


@metalab.operation
def raises_unprintable(params):
    raise BadMessage()


def test_exception_with_a_broken_message_is_still_recorded(tmp_path):
    handle = metalab.run(_exp(raises_unprintable, n=1), tmp_path, executor="inline")
    with pytest.warns(metalab.RunsFailedWarning, match="BadMessage: <BadMessage whose message"):
        results = handle.result()
    assert results[0].status == "failed"
    assert "BadMessage" in results[0].error["type"]
    assert "could not be rendered" in results[0].error["message"]


def test_resource_hints_must_be_a_mapping():
    with pytest.raises(metalab.ValidationError, match=r"resource_hints.*\['gpu'\]"):
        _exp(metadata={"resource_hints": ["gpu"]})


def test_unreadable_record_is_run_again_and_named_when_loading(tmp_path):
    store = create_store(tmp_path)
    exp = _exp()
    metalab.run(exp, store, executor="inline").result()
    broken = store.record_path(exp.run_id(1))
    broken.with_suffix(".done").unlink()
    broken.write_text('{"format": "metalab.run/1", "run_')  # a write cut short
    with pytest.warns(metalab.errors.UnsafeStoreWarning, match=f"{exp.run_id(1)}.*damaged"):
        loaded = metalab.load_results(tmp_path)  # the other runs still load
    assert sorted(r.index for r in loaded) == [0, 2]
    with pytest.warns(metalab.errors.UnsafeStoreWarning, match="damaged"):
        results = metalab.run(exp, store, executor="inline").result()
    assert [r.status for r in results] == ["completed"] * 3
    assert len(metalab.load_results(tmp_path)) == 3


@pytest.mark.slow
def test_task_that_cannot_load_the_experiment_fails_its_runs_instead_of_looping(
    tmp_path, monkeypatch
):
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.ERROR,
    ) as cluster:
        # the module exists for the driver only: workers started before it was on sys.path
        module_dir = tmp_path / "driver_only"
        module_dir.mkdir()
        (module_dir / "driver_only_ops.py").write_text(
            textwrap.dedent(
                """
                import metalab

                @metalab.operation
                def op(params, capture):
                    capture.metric("i", params["i"])
                """
            )
        )
        monkeypatch.syspath_prepend(str(module_dir))
        import driver_only_ops

        handle = metalab.run(
            _exp(driver_only_ops.op, n=4, name="unimportable"),
            tmp_path / "store",
            executor=metalab.DaskExecutor(cluster),
        )
        with pytest.warns(metalab.RunsFailedWarning, match="4 of 4 runs.*ModuleNotFoundError"):
            results = handle.result(timeout=120)
    assert [r.status for r in results] == ["failed"] * 4
    assert {r.error["type"] for r in results} == {"ModuleNotFoundError"}
    assert "driver_only_ops" in results[0].error["message"]
    assert create_store(tmp_path / "store").claims() == {}


def test_duplicate_runs_are_warned_about(tmp_path):
    exp = metalab.Experiment(
        name="dups",
        version="1",
        context={},
        operation=ok,
        params=metalab.manual([{"i": 1}, {"i": 1}, {"i": 2}]),
        seeds=metalab.seeds(base=0),
    )
    with pytest.warns(metalab.MetalabWarning, match="1 of the 3 runs"):
        metalab.run(exp, tmp_path, executor="inline").result()


class ClosingFails(metalab.InlineExecutor):
    def close(self, plan):
        raise OSError("cluster went away while closing")


def test_an_executor_failing_to_close_is_reported_not_hung(tmp_path):
    handle = metalab.run(_exp(), tmp_path, executor=ClosingFails())
    assert handle.is_complete
    with pytest.raises(metalab.ExecutorError, match="went away while closing"):
        handle.result(timeout=10)


def test_run_arguments_are_checked(tmp_path):
    with pytest.raises(metalab.ValidationError, match=r"needs a metalab\.Experiment"):
        metalab.run(ok, tmp_path)
    with pytest.raises(metalab.ValidationError, match="chunk_size must be a positive integer"):
        metalab.run(_exp(), tmp_path, chunk_size=0)


def test_reconnect_names_a_module_it_cannot_import(tmp_path, monkeypatch):
    module_dir = tmp_path / "mods"
    module_dir.mkdir()
    (module_dir / "gone_ops.py").write_text(
        "import metalab\n\n@metalab.operation\ndef op(params):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(module_dir))
    import gone_ops

    metalab.run(_exp(gone_ops.op, n=1, name="gone"), tmp_path / "s", executor="inline").result()
    monkeypatch.delitem(__import__("sys").modules, "gone_ops")
    (module_dir / "gone_ops.py").unlink()
    with pytest.raises(metalab.StoreError, match="needs module 'gone_ops'"):
        metalab.reconnect(tmp_path / "s")


def test_release_keeps_a_claim_taken_over_by_someone_else(tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "LEASE_SECONDS", 0.0)  # every claim is past its lease
    store = create_store(tmp_path)
    assert store.claim("a1" * 16, claims.owner("mine"))
    path = store._layout.claim_path("a1" * 16)
    import os

    os.unlink(path)  # our lease lapsed and another host took the run over
    other = create_store(tmp_path)
    assert other.claim("a1" * 16, {"host": "elsewhere", "pid": 1, "start": 1, "session": "theirs"})
    store.release("a1" * 16)
    assert os.path.exists(path)
    other.release("a1" * 16)
    assert not os.path.exists(path)
