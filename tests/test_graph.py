"""How pending runs become Dask tasks: adaptive sizing and static chunking."""

from __future__ import annotations

from metalab.execute import Outcome
from metalab.graph import AdaptiveChunks, chunk_size_for, chunks


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
