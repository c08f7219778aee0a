"""The operation every benchmark runs, in a module Dask worker processes can import.

metalab sends an importable operation to workers as a `module:name` reference, so this module
must be importable there: the benchmark scripts are run as files, which puts `benchmarks/` at
the front of `sys.path`, and Dask's spawned worker processes inherit the parent's `sys.path`.
"""

from __future__ import annotations

import metalab


@metalab.operation
def draw(seeds, capture):
    """The trivial run: one draw from the run's NumPy stream, recorded as one metric."""
    capture.metric("x", float(seeds.numpy().random()))


@metalab.operation
def draw_per_case(params, seeds, capture):
    """A trivial run whose metric differs from case to case: one draw from a NumPy stream
    named after the case's params (with one replicate, every run of `draw` draws the same
    number, so a metric threshold would select all runs or none)."""
    name = f"{params['gene']}/{params['expr_val']}"
    capture.metric("x", float(seeds.numpy(name).random()))


@metalab.operation
def three_metrics(params, seeds, capture):
    """A trivial run with three metrics."""
    x = float(seeds.numpy().random())
    capture.log_metrics({"loss": x, "accuracy": 1 - x, "score": x * params["gene"]})


def experiment(name: str, replicates: int = 1, **axes) -> metalab.Experiment:
    """An experiment running `draw` over the grid `axes` x `replicates` seed replicates."""
    return experiment_of(draw, name, replicates, **axes)


def experiment_of(op, name: str, replicates: int = 1, **axes) -> metalab.Experiment:
    """An experiment running `op` over the grid `axes` x `replicates` seed replicates."""
    return metalab.Experiment(
        name=name,
        version="1",
        context={},
        operation=op,
        params=metalab.grid(**axes),
        seeds=metalab.seeds(base=0, replicates=replicates),
    )


def plain_chunk(root: str, indices: list[int]) -> int:
    """What a Dask user writes instead of metalab: for each index, one draw from a seeded
    NumPy generator and one JSON file written atomically (a temporary file, renamed)."""
    import json
    import os

    import numpy as np

    for i in indices:
        x = float(np.random.default_rng(i).random())
        path = os.path.join(root, f"{i}.json")
        with open(f"{path}.tmp", "w") as fh:
            fh.write(json.dumps({"index": i, "x": x}))
        os.replace(f"{path}.tmp", path)
    return len(indices)
