"""How pending runs become Dask tasks: adaptive sizing and static chunking."""

from __future__ import annotations

import re

import pytest

import metalab
from metalab.outcome import Outcome
from metalab.tasks import AdaptiveChunks, chunk_size_for, chunks


def _outcomes(indices, seconds):
    return [Outcome(i, f"id{i}", "completed", {"duration": seconds}) for i in indices]


def test_first_tasks_hold_one_run_then_grow_with_quick_runs():
    chunker = AdaptiveChunks(range(10_000), target_seconds=0.5, max_chunk=1000, overhead=0)
    first = chunker.take(workers=2)
    assert first == [0]
    chunker.observe(_outcomes(first, 0.001))
    assert chunker.size(workers=2) == 500  # 0.5 s / 1 ms
    assert chunker.take(workers=2) == list(range(1, 501))


def test_slow_runs_stay_one_per_task():
    chunker = AdaptiveChunks(range(100), target_seconds=0.5, overhead=0)
    chunker.observe(_outcomes(chunker.take(4), 3.0))
    assert chunker.size(workers=4) == 1


def test_tasks_never_exceed_max_chunk_and_shrink_at_the_end():
    chunker = AdaptiveChunks(range(5000), target_seconds=10, max_chunk=1000, overhead=0)
    chunker.observe(_outcomes(chunker.take(2), 1e-5))
    sizes = []
    while chunker:
        sizes.append(len(chunker.take(workers=2)))
    assert max(sizes) == 1000
    assert sizes[-3:] == sorted(sizes[-3:], reverse=True)
    assert sum(sizes) == 4999


def test_every_index_is_taken_once_in_order():
    pending = [1, 2, 3, 7, 8, 20, 21, 22, 23]
    chunker = AdaptiveChunks(pending, fixed=4)
    taken = []
    while chunker:
        group = chunker.take(workers=3)
        assert len(group) <= 4
        taken.extend(group)
    assert taken == pending


def test_static_chunking_for_to_delayed():
    assert chunk_size_for(10) == 1
    assert chunk_size_for(4500) == 3
    assert chunk_size_for(10, chunk_size=4) == 4
    assert chunks([0, 1, 2, 3, 4], 2) == [[0, 1], [2, 3], [4]]


# ---------------------------------------------------------------- outcomes on the wire
def _record(i):
    return {
        "run_id": f"id{i}",
        "index": i,
        "status": "completed",
        "duration": 0.25,
        "params": {"name": "é ü", "x": i},
        "metrics": {"loss": 1 / (i + 1)},
        "provenance": {"host": "h", "git": {"commit": None, "dirty": False}},
    }


def test_an_outcome_travels_as_its_record_encoding_and_decodes_equal():
    import pickle

    from metalab.record import encode_record

    record = _record(3)
    outcome = Outcome(3, "id3", "completed", record)
    back = pickle.loads(pickle.dumps(outcome))
    assert back._record is None and back._encoded == encode_record(record)  # not yet decoded
    assert back.duration == 0.25 and back.has_record  # readable without decoding
    assert back.record == record
    assert back == outcome
    # the bytes a store gave are what travels, not a second encoding
    given = Outcome(3, "id3", "completed", record, encoded=b'{"run_id": "id3"}')
    assert pickle.loads(pickle.dumps(given)).record == {"run_id": "id3"}
    # outcomes without a record stay without one
    busy = pickle.loads(pickle.dumps(Outcome(4, "id4", "busy")))
    assert (busy.state, busy.record, busy.has_record, busy.duration) == ("busy", None, False, None)


def test_a_task_s_outcomes_are_sent_by_dask_as_one_frame():
    from distributed.protocol import serialize

    from metalab.outcome import Outcomes

    outcomes = Outcomes(Outcome(i, f"id{i}", "completed", _record(i)) for i in range(200))
    header, frames = serialize(outcomes, iterate_collection=True)
    assert len(frames) == 1  # a plain list would be 200 frames, one serialization each
    assert header["serializer"] == "pickle"


def test_results_of_a_sweep_decode_records_when_first_read():
    import pickle

    from metalab.results import Results

    sent = [
        pickle.loads(pickle.dumps(Outcome(i, f"id{i}", "completed", _record(i)))) for i in range(5)
    ]
    results = Results([*sent, _record(5)], store=None)
    assert len(results) == 6
    assert all(o._record is None for o in sent)  # len() decoded nothing
    assert [r["index"] for r in results.records] == list(range(6))
    assert results[2].params == {"name": "é ü", "x": 2}


def _noop():
    return None


@pytest.mark.parametrize("bad", ["3", 2.5, 0, -1, True])
def test_to_delayed_refuses_a_bad_chunk_size_before_writing_anything(tmp_path, bad):
    exp = metalab.Experiment(
        name="chunks",
        version="1",
        context={},
        operation=_noop,
        params=metalab.grid(i=[1, 2, 3]),
        seeds=metalab.seeds(base=0),
    )
    store = tmp_path / "store"
    with pytest.raises(metalab.ValidationError, match=re.escape(f"got {bad!r}")):
        metalab.to_delayed(exp, store, chunk_size=bad)
    assert not store.exists()
    with pytest.raises(metalab.ValidationError, match="chunk_size must be a positive integer"):
        metalab.DaskExecutor(chunk_size=bad)


# ---------------------------------------------------------------- what travels back
@metalab.operation
def _odd_fails(params, capture):
    capture.metric("x", params["i"])
    if params["i"] % 2:
        raise ValueError(f"odd {params['i']}")


@metalab.operation
def _two_metrics(params, capture):
    capture.log_metrics({"loss": params["i"] / 2, "accuracy": 1.0})


def _sweep_of(store, name):
    from metalab.submission import prepare_sweep

    exp = metalab.Experiment(
        name=name,
        version="1",
        context={},
        operation=_odd_fails,
        params=metalab.grid(i=range(6)),
        seeds=metalab.seeds(base=0),
    )
    return prepare_sweep(exp, store)


def test_completed_runs_travel_back_without_their_records_to_a_columnar_store(tmp_path):
    from metalab.execute import run_indices
    from metalab.stores.file import FileStore

    sweep = _sweep_of(FileStore.open(tmp_path / "store"), "lean")
    assert sweep.ref.options.completed_records is False
    outcomes = run_indices(sweep.ref, range(6))
    completed = [o for o in outcomes if o.state == "completed"]
    failed = [o for o in outcomes if o.state == "failed"]
    assert [o.index for o in completed] == [0, 2, 4] and [o.index for o in failed] == [1, 3, 5]
    # the driver learns index, state and duration; the record stays in the store
    assert all(not o.has_record and o.duration > 0 for o in completed)
    assert all(o.record["error"]["message"] == f"odd {o.index}" for o in failed)
    # and so on the wire
    import pickle

    again = pickle.loads(pickle.dumps(outcomes))
    assert [(o.index, o.state, o.has_record) for o in again] == [
        (o.index, o.state, o.has_record) for o in outcomes
    ]
    assert metalab.load_results(tmp_path / "store")[0].metrics == {"x": 0}


def test_completed_runs_carry_back_the_metrics_a_progress_display_shows(tmp_path):
    import pickle

    from metalab.execute import run_indices
    from metalab.stores.file import FileStore
    from metalab.submission import prepare_sweep

    exp = metalab.Experiment(
        name="shown",
        version="1",
        context={},
        operation=_two_metrics,
        params=metalab.grid(i=range(4)),
        seeds=metalab.seeds(base=0),
    )
    sweep = prepare_sweep(exp, FileStore.open(tmp_path / "store"), outcome_metrics=["loss"])
    outcomes = pickle.loads(pickle.dumps(run_indices(sweep.ref, range(4))))
    assert all(not o.has_record for o in outcomes)
    assert [o.metrics for o in outcomes] == [{"loss": i / 2} for i in range(4)]


def test_completed_runs_travel_back_with_their_records_to_a_store_without_columns(tmp_path):
    from metalab.execute import run_indices
    from metalab.testing import MemoryStore

    store = MemoryStore()
    assert not store.capabilities.columnar
    sweep = _sweep_of(store, "kept")
    assert sweep.ref.options.completed_records is True
    outcomes = run_indices(sweep.ref, range(6))
    assert all(o.has_record for o in outcomes)
    assert [o.record["metrics"]["x"] for o in outcomes if o.state == "completed"] == [0, 2, 4]
