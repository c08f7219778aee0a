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
runs/s over the floor's; the target for the default executor and the pre-started cluster is
>= 0.5 on disk and >= 0.8 with the files in memory (`--dir /dev/shm`: the CPU cost alone).
A first sweep cannot meet it at this size: the cluster's start-up alone (about 2 s of
worker processes importing Python, Dask and NumPy) is several times the floor's whole time.

    uv run --all-extras python benchmarks/bench_throughput.py            # the benchmark
    uv run --all-extras python benchmarks/bench_throughput.py --profile  # where inline time goes

The floor rows also show plain Dask on the same pre-started cluster shape: `client.map` of
`_ops.plain_chunk` (the floor's loop, one atomic JSON file per run) over chunks of 500 runs,
what a Dask user writes instead of metalab.

`--cold` measures, each case in a fresh process (the imports made before the clock; compiled
modules cached as on a usual installation, see `--compile-every-import`), at
10,000 and at 1,000 runs: the one-core floor (one atomic JSON file per run), plain Dask
(`LocalCluster` 2x1 started and closed, `client.map` over chunks of 500) and metalab's
default executor (its local cluster started and closed), plus plain Dask with one task per
run for reference. Targets: metalab >= plain Dask at 10,000 runs, within 1.2x of its time at
1,000, and on disk >= the one-core floor at 10,000 runs. Two information rows end the
10,000-run script as one that then looks at its results does: plain Dask reads its files
into a pandas DataFrame, metalab calls `result().to_dataframe()`. `--dir /dev/shm` puts the
files in memory, so that the figures are CPU cost alone; `--repeat R` sets the rounds (3).

    uv run --all-extras python benchmarks/bench_throughput.py --cold --dir /dev/shm

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
"""Warm rows on disk: metalab's speed over the one-core floor's."""
TARGET_IN_MEMORY = 0.8
"""Warm rows with the files in memory (`--dir /dev/shm`): the CPU cost alone."""


def in_memory(directory: str | None) -> bool:
    """Whether `directory` is on a tmpfs (its files in memory)."""
    path = os.path.realpath(directory or tempfile.gettempdir())
    best, kind = "", ""
    try:
        with open("/proc/mounts") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 3 or len(parts[1]) < len(best):
                    continue
                if path == parts[1] or path.startswith(parts[1].rstrip("/") + "/"):
                    best, kind = parts[1], parts[2]
    except OSError:
        return False
    return kind == "tmpfs"


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


def two_workers() -> LocalCluster:
    """The cluster shape the warm rows use: 2 worker processes of 1 thread each."""
    return LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.ERROR,
    )


def prestarted(root: str, n: int) -> float:
    """Time `sweep` on a cluster started (and its workers warmed up) beforehand."""
    with two_workers() as cluster:
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


def plain_prestarted(root: str, n: int) -> float:
    """Time plain Dask (`client.map` of `_ops.plain_chunk` over chunks of `PLAIN_CHUNK`
    indices) on a cluster started (and its workers warmed up) beforehand."""
    with two_workers() as cluster, Client(cluster, set_as_default=False) as client:
        client.run(__import__, "_ops")
        t0 = time.perf_counter()
        chunks = [list(range(i, min(i + PLAIN_CHUNK, n))) for i in range(0, n, PLAIN_CHUNK)]
        futures = client.map(_ops.plain_chunk, [root] * len(chunks), chunks, pure=False)
        if sum(client.gather(futures)) != n:
            raise RuntimeError("plain Dask wrote fewer runs than asked")
        return time.perf_counter() - t0


def run(n: int = N_RUNS, repeat: int = REPEAT, directory: str | None = None) -> list[dict]:
    """Measure the floor, plain Dask and the metalab figures; return the table rows."""
    cases = {  # each takes a fresh temporary directory and returns the seconds it measured
        "floor": lambda root: clock(floor, root, n),
        "plain": lambda root: plain_prestarted(root, n),
        "default": lambda root: clock(sweep, root, n),
        "first": lambda root: first_sweep(root, n),
        "prestarted": lambda root: prestarted(root, n),
        "inline": lambda root: clock(sweep, root, n, "inline"),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    # Files are deleted only at the end and dirty data is flushed before each measurement, so
    # one measurement's deletions and writeback do not slow the file creations of the next.
    with tempfile.TemporaryDirectory(prefix="metalab-bench-", dir=directory) as tmp:
        sweep(os.path.join(tmp, "warm-up"), 10)  # starts the cluster the default rows reuse
        for r in range(repeat):
            for name, case in cases.items():
                root = os.path.join(tmp, f"{name}-{r}")
                os.mkdir(root)
                os.sync()
                samples[name].append(case(root))
    base = best(samples["floor"])
    goal = TARGET_IN_MEMORY if in_memory(directory) else TARGET

    def metalab_row(label: str, name: str, target: bool) -> dict:
        ratio = base / best(samples[name])
        return row(
            label,
            best(samples[name]),
            runs=n,
            ratio=ratio,
            ratio_is="speed / floor",
            target=f">= {goal}" if target else "",
            met=ratio >= goal if target else None,
            samples=samples[name],
        )

    return [
        row("floor: numpy draw + json file (baseline)", base, runs=n, samples=samples["floor"]),
        metalab_row(
            f"plain Dask, pre-started LocalCluster 2x1, chunks of {PLAIN_CHUNK} (info)",
            "plain",
            False,
        ),
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


# ---------------------------------------------------------------- cold: fresh processes
PLAIN_CHUNK = 500
"""Runs per task of the plain Dask baseline (`client.map` over chunks of run indices)."""
COLD_SIZES = (10_000, 1_000)
COLD = """
import json, logging, os, sys, time
sys.path.insert(0, {here!r})
case, n, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
import numpy, _ops, dask, distributed, metalab
from distributed import Client, LocalCluster

if __name__ == "__main__":
    t0 = time.perf_counter()
    if case == "floor":
        _ops.plain_chunk(root, list(range(n)))
    elif case in ("plain", "plain-per-run", "plain-frame"):
        size = 1 if case == "plain-per-run" else {chunk}
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR) as cluster:
            with Client(cluster) as client:
                chunks = [list(range(i, min(i + size, n))) for i in range(0, n, size)]
                futures = client.map(_ops.plain_chunk, [root] * len(chunks), chunks, pure=False)
                assert sum(client.gather(futures)) == n
        if case == "plain-frame":  # what the user then reads: every file, into a DataFrame
            import pandas
            rows = []
            for name in os.listdir(root):
                if name.endswith(".json"):
                    with open(os.path.join(root, name)) as fh:
                        rows.append(json.load(fh))
            assert len(pandas.DataFrame(rows).sort_values("index")) == n
    else:
        with dask.config.set({{"metalab.dask.local-cluster-idle-timeout": 0}}):
            handle = metalab.run(_ops.experiment("cold", i=range(n)), os.path.join(root, "store"))
            results = handle.result()
        assert handle.status.completed == n, handle.status
        if case == "metalab-frame":
            assert len(results.to_dataframe()) == n
    print(json.dumps({{"seconds": time.perf_counter() - t0}}))
"""


def cold_case(case: str, n: int, root: str) -> float:
    """Seconds `case` takes for `n` runs in a fresh Python process, cluster start and shutdown
    included (the imports of NumPy, Dask, distributed and metalab are made before the clock
    starts, in every case)."""
    import subprocess
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    script = COLD.format(here=here, chunk=PLAIN_CHUNK)
    done = subprocess.run(
        [sys.executable, "-c", script, case, str(n), root],
        capture_output=True,
        text=True,
        check=False,
        env=_cold_environment(),
    )
    if done.returncode != 0:
        raise RuntimeError(f"cold {case} of {n} runs failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


BYTECODE: dict[str, str | None] = {"cache": None}
"""Where the cold cases' processes keep compiled modules (None: they compile every import)."""


def _cold_environment() -> dict[str, str]:
    """The environment of a cold case's process and its workers: with a bytecode cache of
    the benchmark's own (`PYTHONPYCACHEPREFIX`), as on an installation where modules are
    compiled once, even where `PYTHONDONTWRITEBYTECODE` is set (`--compile-every-import`
    keeps the environment as it is)."""
    env = dict(os.environ)
    if BYTECODE["cache"] is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = BYTECODE["cache"]
    return env


def cold(directory: str | None, repeat: int = REPEAT) -> list[dict]:
    """Each case in fresh processes, `repeat` interleaved rounds, the fastest kept: the
    one-core floor, plain Dask over chunks and one task per run, and metalab's default
    executor, at each of `COLD_SIZES` runs; files under `directory` (`/dev/shm` measures the
    CPU cost alone)."""
    cases = ("floor", "plain", "metalab")
    memory = in_memory(directory)
    rows = []
    with tempfile.TemporaryDirectory(prefix="metalab-cold-", dir=directory) as tmp:
        # not timed: fills the bytecode cache, as a first run of a script does
        for name in (*cases, "plain-frame", "metalab-frame"):
            warm = os.path.join(tmp, f"warm-{name}")
            os.mkdir(warm)
            cold_case(name, 100, warm)
        for n in COLD_SIZES:
            floor_s, plain_s, ours = _best_of_rounds(tmp, cases, n, repeat)
            rows += [
                row(f"{n:,} runs: floor, one core, atomic JSON per run", floor_s, runs=n),
                row(
                    f"{n:,} runs: plain Dask, LocalCluster 2x1, client.map over chunks of "
                    f"{PLAIN_CHUNK}, cluster start included",
                    plain_s,
                    runs=n,
                    ratio=floor_s / plain_s,
                    ratio_is="speed / floor",
                ),
                row(
                    f"{n:,} runs: metalab, default executor, cluster start included",
                    ours,
                    runs=n,
                    ratio=plain_s / ours,
                    ratio_is="speed / plain Dask",
                    target=">= 1" if n >= 10_000 else ">= 0.833",
                    met=plain_s / ours >= (1 if n >= 10_000 else 1 / 1.2),
                ),
                row(
                    "  the same against the floor",
                    ours,
                    ratio=floor_s / ours,
                    ratio_is="speed / floor",
                    target="" if memory or n < 10_000 else ">= 1",
                    met=None if memory or n < 10_000 else floor_s / ours >= 1,
                ),
            ]
        rows += _ending_with_a_frame(tmp, repeat)
        one = os.path.join(tmp, "plain-per-run")
        os.mkdir(one)
        per_run = cold_case("plain-per-run", 1_000, one)
        rows.append(row("1,000 runs: plain Dask, one task per run (info)", per_run, runs=1_000))
    return rows


def _best_of_rounds(tmp: str, cases: tuple[str, ...], n: int, repeat: int) -> list[float]:
    """The fastest time of each of `cases` at `n` runs, over `repeat` interleaved rounds of
    fresh processes, each with a new directory under `tmp`."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(repeat):
        for name in cases:
            root = os.path.join(tmp, f"{name}-{n}-{r}")
            os.mkdir(root)
            os.sync()
            samples[name].append(cold_case(name, n, root))
    return [best(samples[name]) for name in cases]


def _ending_with_a_frame(tmp: str, repeat: int) -> list[dict]:
    """The 10,000-run cold cases as a script that then looks at its results ends: plain Dask
    with its JSON files read into a pandas DataFrame, metalab with `result().to_dataframe()`
    (pandas imported on the clock in both). Information beside the targets, which stop at
    the runs done."""
    n = COLD_SIZES[0]
    plain_s, ours = _best_of_rounds(tmp, ("plain-frame", "metalab-frame"), n, repeat)
    return [
        row(f"{n:,} runs to a DataFrame: plain Dask, its files read (info)", plain_s, runs=n),
        row(
            f"{n:,} runs to a DataFrame: metalab, result().to_dataframe() (info)",
            ours,
            runs=n,
            ratio=plain_s / ours,
            ratio_is="speed / plain Dask",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", action="store_true", help="profile the inline sweep")
    parser.add_argument("--top", type=int, default=10, help="functions to list with --profile")
    parser.add_argument(
        "--cold", action="store_true", help="fresh processes: metalab against plain Dask"
    )
    parser.add_argument("--dir", default=None, help="where files go (e.g. /dev/shm)")
    parser.add_argument("--repeat", type=int, default=REPEAT, help="rounds; the best counts")
    parser.add_argument(
        "--compile-every-import",
        action="store_true",
        help="--cold: no bytecode cache of the benchmark's own (as PYTHONDONTWRITEBYTECODE=1 "
        "without compiled modules in the installation)",
    )
    args = parser.parse_args()
    if args.cold:
        with tempfile.TemporaryDirectory(prefix="metalab-pycache-") as cache:
            BYTECODE["cache"] = None if args.compile_every_import else cache
            print(format_table({"cold": cold(args.dir, args.repeat)}))
        return
    if not args.profile:
        print(format_table({"throughput": run(directory=args.dir, repeat=args.repeat)}))
        return
    print(f"cProfile, inline executor, {N_RUNS} runs: metalab functions by cumulative time")
    print(f"{'us/run':>9} {'calls/run':>9}  function")
    for per_run, calls, where in profile(top=args.top):
        print(f"{per_run:9.1f} {calls:9.2f}  {where}")


if __name__ == "__main__":
    main()
