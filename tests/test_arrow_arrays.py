"""Arrow arrays made through their buffers equal what `pyarrow.array` makes, and a sweep's
`result()` builds its table without importing pandas."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pytest

from metalab import arrow_arrays

CASES = [
    ([], pa.string()),
    (["a", "bc", "", "é✓", None, "z"], pa.string()),
    ([None, None], pa.string()),
    ([1, -2, None, 2**62], pa.int64()),
    ([0, 2**63 + 5, None], pa.uint64()),
    ([1.5, None, float("nan"), float("inf"), 3], pa.float64()),
    ([True, False, None, True, True, False, True, False, True], pa.bool_()),
    ([None, None, None], pa.null()),
]


@pytest.mark.parametrize(("values", "type_"), CASES)
def test_arrays_equal_what_pyarrow_makes(values, type_):
    made = arrow_arrays.array(values, type_)
    expected = pa.array(values, type=type_)
    made.validate(full=True)
    assert made.type == expected.type
    assert made.null_count == expected.null_count
    # NaN is not equal to itself: compared as Python values, NaN by its text
    assert [repr(v) for v in made.to_pylist()] == [repr(v) for v in expected.to_pylist()]


def test_numbers_from_numpy_and_ranges():
    assert arrow_arrays.numbers(np.arange(5), pa.int64()).to_pylist() == [0, 1, 2, 3, 4]
    assert arrow_arrays.numbers(range(3, 12, 4), pa.int64()).to_pylist() == [3, 7, 11]
    assert arrow_arrays.booleans(np.array([True, False])).to_pylist() == [True, False]


def test_an_int_beyond_the_type_raises_overflow():
    with pytest.raises(OverflowError):
        arrow_arrays.array([2**70], pa.int64())


def test_a_sweeps_result_does_not_import_pandas(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        import metalab

        @metalab.operation
        def op(params, capture):
            capture.metric("x", params["i"] * 0.5)
            capture.log_metrics({{"step_loss": 1.0}}, step=0)

        exp = metalab.Experiment(
            name="no-pandas", version="1", context={{}}, operation=op,
            params=metalab.grid(i=range(30), label=["a", "é"]),
            seeds=metalab.seeds(base=0, replicates=2),
        )
        results = metalab.run(exp, {str(tmp_path / "store")!r}, executor="inline").result()
        assert len(results) == 120, len(results)
        again = metalab.run(exp, {str(tmp_path / "store")!r}, executor="inline").result()
        assert len(again) == 120
        print("pandas" in sys.modules)
        frame = results.to_dataframe()
        assert sorted(frame["x"].tolist()) == sorted(i * 0.5 for i in range(30) for _ in range(4))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False"]
