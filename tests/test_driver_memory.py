"""A sweep's driver stays small: it keeps counts and one byte per run, never the runs'
outcomes or records; `result()` reads the runs back from the store."""

from __future__ import annotations

import gc
import io

import pytest
from sweeps import indexed_experiment, wait_for

import metalab
from metalab import run_ids
from metalab import sink as sink_module
from metalab.outcome import Outcome
from metalab.results.failures import failure_summary
from metalab.run_ids import RunIds


@metalab.operation
def square(params, capture):
    capture.metric("square", params["i"] ** 2)


@metalab.operation
def often_fails(params, capture):
    capture.metric("i", params["i"])
    if params["i"] % 3 == 0:
        raise ValueError(f"case {params['i'] % 4}")
    if params["i"] % 7 == 0:
        raise KeyError("missing")


def _live_outcomes() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, Outcome))


@pytest.mark.parametrize("executor", ["inline", "threads"])
def test_the_driver_keeps_no_outcome_per_run_and_result_reads_the_store(tmp_path, executor):
    runs = 3000
    before = _live_outcomes()
    handle = metalab.run(indexed_experiment(square, runs, "square"), tmp_path, executor=executor)
    assert handle.wait(300)
    assert handle.status.completed == runs
    # what reached the driver was counted and dropped: no outcome per run is held. The
    # outcomes of the last task may still be on their way out of the in-process worker's
    # memory, which Dask releases asynchronously, so they are given a moment to go
    wait_for(
        lambda: _live_outcomes() - before < runs // 10,
        timeout=10,
        what="the last task's outcomes to be released",
    )
    results = handle.result()
    loaded = metalab.load_results(tmp_path)
    assert [r.run_id for r in results] == handle.run_ids == [r.run_id for r in loaded]
    assert results.records == loaded.records
    assert [r.metrics["square"] for r in results] == [i * i for i in range(runs)]


def test_a_sweep_whose_failures_outnumber_those_kept_summarizes_them_all(tmp_path, monkeypatch):
    # past the records the sink keeps, the summary reads the failed runs from the store
    monkeypatch.setattr(sink_module, "KEPT_FAILURES", 5)
    runs = 60
    stream = io.StringIO()
    progress = metalab.Progress(title="Sweep", stream=stream, use_rich=False)
    handle = metalab.run(
        indexed_experiment(often_fails, runs, "often"),
        tmp_path,
        executor="inline",
        progress=progress,
    )
    loaded = metalab.load_results(tmp_path)
    expected = failure_summary(loaded.records, runs)
    assert expected is not None and expected.startswith("26 of 60 runs did not complete")
    assert "ValueError: case 0 (5 runs); ValueError: case 3 (5 runs)" in expected
    assert handle.failure_summary() == expected
    with pytest.warns(metalab.RunsFailedWarning) as caught:
        results = handle.result()
    assert str(caught[0].message) == expected
    assert stream.getvalue().splitlines()[-1] == f"Sweep: {expected}"
    assert len(results.failed) == 26


def test_few_failures_are_summarized_without_reading_the_store(tmp_path):
    handle = metalab.run(indexed_experiment(often_fails, 20, "few"), tmp_path, executor="inline")
    expected = failure_summary(metalab.load_results(tmp_path).records, 20)
    assert expected is not None and expected.startswith("9 of 20 runs did not complete")
    # the records the sink kept say what the store says
    handle.store.get_records = None
    assert handle.failure_summary() == expected


def test_run_ids_are_kept_compactly_and_read_like_a_list():
    ids = indexed_experiment(square, 50, "ids").run_ids()
    compact = RunIds.of(ids)
    assert isinstance(compact, RunIds)
    assert len(compact) == 50 and list(compact) == ids and compact == ids
    assert compact[0] == ids[0] and compact[-1] == ids[-1]
    assert list(compact[10:20]) == ids[10:20] and compact[::7] == ids[::7]
    assert compact.index(ids[33]) == 33 and ids[12] in compact
    assert "0" * 32 not in compact and "not an id" not in compact
    with pytest.raises(IndexError):
        compact[50]
    with pytest.raises(ValueError):
        compact.index("f" * 32)
    # ids made elsewhere are kept as given
    other = ["r0", "r1"]
    assert RunIds.of(other) is other
    upper = [ids[0].upper()]
    assert RunIds.of(upper) is upper


def test_packed_run_ids_are_the_run_ids():
    exp = indexed_experiment(square, 300, "square")
    packed = exp.packed_run_ids()
    assert isinstance(packed, RunIds)
    assert list(packed) == exp.run_ids()
    assert packed.raw == bytes.fromhex("".join(exp.run_ids()))


def test_repeated_ids_are_counted_exactly():
    ids = [f"{i:032x}" for i in range(1000)]
    assert run_ids.repeated(RunIds.of(ids)) == 0
    assert run_ids.repeated(RunIds.of([*ids, ids[5], ids[5], ids[999]])) == 3
    # ids that share their first 8 bytes but differ after are distinct
    twins = ["ab" * 8 + f"{i:016x}" for i in range(50)]
    assert run_ids.repeated(RunIds.of(twins)) == 0
    assert run_ids.repeated(RunIds.of([*twins, twins[7]])) == 1


@pytest.mark.parametrize("kind", ["bytes", "strings"])
@pytest.mark.parametrize("twins_done", [[4], [4, 6]], ids=["one-twin-done", "twins-done"])
def test_the_completed_mask_says_which_ids_are_done(kind, twins_done):
    ids = [f"{i * 7919:032x}" for i in range(2000)]
    # ids sharing their first half with a done one, differing after, are not done
    twins = ["cd" * 8 + f"{i:016x}" for i in range(10)]
    wanted = RunIds.of([*ids, *twins])
    # and one id the sweep does not have
    done_ids = ids[::3] + [twins[i] for i in twins_done] + ["ef" * 16]
    done = bytes.fromhex("".join(done_ids)) if kind == "bytes" else set(done_ids)
    mask = run_ids.completed_mask(wanted, done)
    assert mask.tolist() == [run_id in set(done_ids) for run_id in wanted]
    assert run_ids.completed_mask(wanted, b"" if kind == "bytes" else set()).sum() == 0
