"""Throughput: 10,000 trivial runs into a fresh file store, against a no-framework floor.

The floor is the same sweep without metalab: for each index `i`, one draw from
`numpy.random.default_rng(i)` and one JSON file written (`json.dumps` + `open`/`write`).
metalab runs `_ops.draw` (one draw from `seeds.numpy()`, one `capture.metric`) three ways:

* default executor, end to end: `metalab.run(exp, store).result()` as a script or notebook
  calls it after its first sweep: metalab keeps the local Dask cluster it started for the
  next sweeps of the process, so the start-up is paid once (a small sweep before the rounds
  starts it);
* default executor, first sweep of a process: the same, including the start-up and
  shutdown of the local cluster (`metalab.dask.local-cluster-idle-timeout` set to 0);
* a pre-started `distributed.LocalCluster` (2 worker processes x 1 thread, already importing
  `_ops`) passed as `metalab.DaskExecutor(cluster)`: start-up excluded;
* `executor="inline"` (every run in this process), for reference.

Each is measured 3 times, the rounds interleaved, and the fastest kept. The ratio is metalab's
runs/s over the floor's; the target is >= 0.5 for the default executor and the pre-started
cluster. A first sweep cannot meet it at this size: the cluster's start-up alone (about 2 s of
worker processes importing Python, Dask and NumPy) is several times the floor's whole time.

    uv run --all-extras python benchmarks/bench_throughput.py            # the benchmark
    uv run --all-extras python benchmarks/bench_throughput.py --profile  # where inline time goes

`--profile` runs the inline sweep once under cProfile and prints the `--top` (10) metalab
functions with the largest cumulative time, per run (cProfile's overhead inflates them all).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import os
import pstats
import tempfile
import time

import _ops
import dask
import numpy as np
from _common import best, format_table, row
from distributed import Client, LocalCluster

import metalab

N_RUNS = 10_000
REPEAT = 3
TARGET = 0.5


def floor(root: str, n: int) -> None:
    """The no-framework floor: one seeded draw and one JSON file per run."""
    for i in range(n):
        x = float(np.random.default_rng(i).random())
        with open(os.path.join(root, f"{i}.json"), "w") as fh:
            fh.write(json.dumps({"index": i, "x": x}))


def sweep(root: str, n: int, executor=None) -> None:
    """`metalab.run(...).result()` of an `n`-run sweep into a fresh store under `root`."""
    handle = metalab.run(_ops.experiment("throughput", i=range(n)), f"{root}/store", executor)
    handle.result()
    if handle.status.completed != n:
        raise RuntimeError(f"expected {n} completed runs, got {handle.status}")


def prestarted(root: str, n: int) -> float:
    """Time `sweep` on a cluster started (and its workers warmed up) beforehand."""
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.ERROR,
    ) as cluster:
        with Client(cluster, set_as_default=False) as client:
            client.run(__import__, "_ops")  # fails here if workers cannot import the operation
        t0 = time.perf_counter()
        sweep(root, n, metalab.DaskExecutor(cluster))
        return time.perf_counter() - t0


def first_sweep(root: str, n: int) -> float:
    """Time `sweep` on a local cluster started and closed for it, as a process's first sweep.

    The executor is the default one with the dashboard on another port, which keys a cluster
    of its own rather than the kept one the default rows reuse.
    """
    executor = metalab.DaskExecutor(dashboard_address="127.0.0.1:0")
    with dask.config.set({"metalab.dask.local-cluster-idle-timeout": 0}):
        return clock(sweep, root, n, executor)


def clock(fn, *args) -> float:
    """Seconds `fn(*args)` takes."""
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def run(n: int = N_RUNS, repeat: int = REPEAT) -> list[dict]:
    """Measure the floor and the three metalab figures; return the table rows."""
    cases = {  # each takes a fresh temporary directory and returns the seconds it measured
        "floor": lambda root: clock(floor, root, n),
        "default": lambda root: clock(sweep, root, n),
        "first": lambda root: first_sweep(root, n),
        "prestarted": lambda root: prestarted(root, n),
        "inline": lambda root: clock(sweep, root, n, "inline"),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    # Files are deleted only at the end and dirty data is flushed before each measurement, so
    # one measurement's deletions and writeback do not slow the file creations of the next.
    with tempfile.TemporaryDirectory(prefix="metalab-bench-") as tmp:
        sweep(os.path.join(tmp, "warm-up"), 10)  # starts the cluster the default rows reuse
        for r in range(repeat):
            for name, case in cases.items():
                root = os.path.join(tmp, f"{name}-{r}")
                os.mkdir(root)
                os.sync()
                samples[name].append(case(root))
    base = best(samples["floor"])

    def metalab_row(label: str, name: str, target: bool) -> dict:
        ratio = base / best(samples[name])
        return row(
            label,
            best(samples[name]),
            runs=n,
            ratio=ratio,
            ratio_is="speed / floor",
            target=f">= {TARGET}" if target else "",
            met=ratio >= TARGET if target else None,
            samples=samples[name],
        )

    return [
        row("floor: numpy draw + json file (baseline)", base, runs=n, samples=samples["floor"]),
        metalab_row("metalab, default executor, end to end", "default", True),
        metalab_row("metalab, default executor, first sweep (info)", "first", False),
        metalab_row("metalab, pre-started LocalCluster 2x1", "prestarted", True),
        metalab_row("metalab, inline executor (reference)", "inline", False),
    ]


def profile(n: int = N_RUNS, top: int = 10) -> list[tuple[float, float, str]]:
    """Profile the inline sweep; return (us per run, calls per run, function) of the `top`
    metalab functions by cumulative time."""
    with tempfile.TemporaryDirectory(prefix="metalab-bench-") as root:
        profiler = cProfile.Profile()
        profiler.runcall(sweep, root, n, "inline")
    package = os.path.dirname(metalab.__file__)
    found = [
        (ct / n * 1e6, nc / n, f"{os.path.relpath(file, os.path.dirname(package))}:{line} {func}")
        for (file, line, func), (_, nc, _, ct, _) in pstats.Stats(profiler).stats.items()
        if file.startswith(package)
    ]
    return sorted(found, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", action="store_true", help="profile the inline sweep")
    parser.add_argument("--top", type=int, default=10, help="functions to list with --profile")
    args = parser.parse_args()
    if not args.profile:
        print(format_table({"throughput": run()}))
        return
    print(f"cProfile, inline executor, {N_RUNS} runs: metalab functions by cumulative time")
    print(f"{'us/run':>9} {'calls/run':>9}  function")
    for per_run, calls, where in profile(top=args.top):
        print(f"{per_run:9.1f} {calls:9.2f}  {where}")


if __name__ == "__main__":
    main()
