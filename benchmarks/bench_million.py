"""Analysis at scale: a finished file store of N runs (default 1,000,000) read back.

A sweep of N trivial runs (`_ops.draw`: one metric; grid `gene=range(N // 50)` x
`expr_val=range(50)`) is run once into a file store with the default executor. Its time is
reported for information, with the driver's peak memory while it ran (VmHWM of the driver
process; target <= 300 MB). Then, each in a fresh process, so that nothing is cached in the
process (the pages of the files may be in the OS cache: every round reads the same files):

* `metalab.load_results(store).to_dataframe()`: time, and the process's peak memory growth
  over its state just before the call, beside the frame's own size
  (`df.memory_usage(deep=True).sum()`; target at 1,000,000 runs: growth <= 3x the frame).
  When the sweep was just built, the first load makes the store's table from the writers'
  journals: it is reported on a row of its own, and the best of the rounds is the load of
  a store whose table is current;
* deciding that nothing is left: `metalab.run(exp, store)` on the finished sweep, until the
  handle reports `pending == 0`;
* `handle.result()` on that finished sweep: time and peak memory growth.

Floors, same run, each in a fresh process: the DataFrame `load_results` gave, written once
as a pickle and once as a Parquet file (pyarrow), read back (time and peak memory growth);
for deciding, listing the store's `runs/` shard directories plus N sha256 hashes of short
strings (the floor of `bench_resume.py`). pandas and pyarrow are imported before the clock
starts in every probe, as in a notebook where they already are.

Targets: load < 2 s at 1,000,000 runs and < 0.25 s at 100,000; deciding < 3 s and result()
< 3 s at 1,000,000. Other sizes are measured without targets. `--repeat R` measures R
interleaved rounds and keeps the best of each.

    uv run --all-extras python benchmarks/bench_million.py [--runs 1000000] [--store DIR]
        [--work DIR] [--repeat 1] [--keep]

The store and the floor files go to a fresh directory under `--work` (default: the temporary
directory), removed at the end unless `--keep`. A store named with `--store` is never
removed: it is built there when it does not exist, and used as it is when it holds a sweep
(of `--runs` runs of this experiment). `run(exp, store)` writes a manifest into it, so do not
point `--store` at a store that must stay unchanged (copy it first).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _common import format_table, row

HERE = Path(__file__).resolve().parent
LOAD_TARGETS = {1_000_000: 2.0, 100_000: 0.25}
"""Seconds `load_results(store).to_dataframe()` must stay under, per number of runs."""
DECIDE_TARGETS = {1_000_000: 3.0}
RESULT_TARGETS = {1_000_000: 3.0}
MEMORY_TARGETS = {1_000_000: 3.0}
"""Peak memory growth of the load, in multiples of the frame's own size, per number of runs
(at smaller sizes the fixed cost of reading Parquet dominates: measured without a target)."""
DRIVER_TARGET_MB = 300.0

PROBE = textwrap.dedent(
    """
    import hashlib, json, os, sys, time
    sys.path.insert(0, {here!r})

    def peak_mb():
        # the process's high-water mark of resident memory (VmHWM, in kB)
        with open("/proc/self/status") as fh:
            line = next(l for l in fh if l.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024

    import pandas, pyarrow, pyarrow.parquet, pyarrow.compute, pickle, metalab, _ops
    what, store, runs, floor_dir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    before = peak_mb()
    t0 = time.perf_counter()
    out = {{}}
    if what == "load":
        df = metalab.load_results(store).to_dataframe()
        out["seconds"] = time.perf_counter() - t0
        out["peak_growth_mb"] = peak_mb() - before
        out["rows"] = len(df)
        out["frame_mb"] = df.memory_usage(deep=True).sum() / 2**20
        if not os.path.exists(os.path.join(floor_dir, "frame.pkl")):
            with open(os.path.join(floor_dir, "frame.pkl"), "wb") as fh:
                pickle.dump(df, fh, protocol=pickle.HIGHEST_PROTOCOL)
            df.to_parquet(os.path.join(floor_dir, "frame.parquet"))
    elif what == "pickle":
        with open(os.path.join(floor_dir, "frame.pkl"), "rb") as fh:
            df = pickle.load(fh)
        out["rows"] = len(df)
    elif what == "parquet":
        df = pandas.read_parquet(os.path.join(floor_dir, "frame.parquet"))
        out["rows"] = len(df)
    elif what == "listing":
        runs_dir = os.path.join(store, "runs")
        shards = [os.path.join(runs_dir, shard) for shard in os.listdir(runs_dir)]
        names = [name for shard in shards for name in os.listdir(shard)]
        digests = [hashlib.sha256(f"million:1:{{i}}".encode()).hexdigest() for i in range(runs)]
        out["rows"] = len(names) // 2
    elif what == "resume":
        exp = _ops.experiment("million", gene=range(runs // 50), expr_val=range(50))
        handle = metalab.run(exp, store)
        while handle.status.pending:
            time.sleep(0.01)
        out["decided"] = time.perf_counter() - t0
        out["skipped"] = handle.status.skipped
        before = peak_mb()
        t0 = time.perf_counter()
        out["rows"] = len(handle.result())
    out.setdefault("seconds", time.perf_counter() - t0)
    out.setdefault("peak_growth_mb", peak_mb() - before)
    print(json.dumps(out))
    """
)


def build(store: str, runs: int) -> dict:
    """Run the sweep in a fresh process; return its time and the driver's peak memory."""
    script = textwrap.dedent(
        f"""
        import sys, time, json
        sys.path.insert(0, {str(HERE)!r})
        import metalab, _ops
        if __name__ == "__main__":
            exp = _ops.experiment("million", gene=range({runs} // 50), expr_val=range(50))
            t0 = time.perf_counter()
            handle = metalab.run(exp, {store!r})
            handle.wait()
            seconds = time.perf_counter() - t0
            assert handle.status.completed == {runs}, handle.status
            with open("/proc/self/status") as fh:
                hwm = next(line for line in fh if line.startswith("VmHWM:"))
            peak = int(hwm.split()[1]) / 1024
            print(json.dumps({{"seconds": seconds, "peak_mb": peak}}))
        """
    )
    return _json_of([sys.executable, "-c", script])


def probe(what: str, store: str, runs: int, floor_dir: str) -> dict:
    """Measure `what` in a fresh process; return what it reports."""
    script = PROBE.format(here=str(HERE))
    return _json_of([sys.executable, "-c", script, what, store, str(runs), floor_dir])


def _json_of(argv: list[str]) -> dict:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:2]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _timed(what: str, seconds: float, floor: float, floor_is: str, target: float | None) -> dict:
    return row(
        what,
        seconds,
        ratio=seconds / floor,
        ratio_is=f"time / {floor_is}",
        target="" if target is None else f"< {target:g} s",
        met=None if target is None else seconds < target,
    )


def _versus(floor_is: str, seconds: float, floor: float) -> dict:
    return row(
        f"  the same, against the {floor_is}",
        seconds,
        ratio=seconds / floor,
        ratio_is=f"time / {floor_is}",
    )


def measure(store: str, runs: int, floor_dir: str, repeat: int) -> dict[str, list[dict]]:
    """`repeat` interleaved rounds of every probe (the first load also writes the floors)."""
    samples: dict[str, list[dict]] = {}
    for _ in range(repeat):
        for what in ("load", "pickle", "parquet", "listing", "resume"):
            measured = probe(what, store, runs, floor_dir)
            print(f"  {what}: {json.dumps(measured)}", file=sys.stderr, flush=True)
            samples.setdefault(what, []).append(measured)
    return samples


def _best(samples: list[dict], key: str = "seconds") -> dict:
    return min(samples, key=lambda s: s[key])


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000, help="runs (a multiple of 50)")
    parser.add_argument("--store", default=None, help="an existing store to reuse, or where")
    parser.add_argument("--work", default=None, help="directory for the store and floor files")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; the best counts")
    parser.add_argument("--keep", action="store_true", help="keep the store and floor files")
    args = parser.parse_args()
    if args.runs <= 0 or args.runs % 50:
        parser.error(f"--runs must be a positive multiple of 50, got {args.runs}")
    if args.work:
        os.makedirs(args.work, exist_ok=True)
    work = tempfile.mkdtemp(prefix="metalab-million-", dir=args.work)
    store = args.store or os.path.join(work, "store")
    rows = []
    built = None
    try:
        if not Path(store, "_meta.json").exists():
            built = build(store, args.runs)
            print(f"  build: {json.dumps(built)}", file=sys.stderr, flush=True)
        samples = measure(store, args.runs, work, args.repeat)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)  # a store given with --store stays
    if built is not None:
        rows.append(
            row(
                f"build: {args.runs:,} runs, default executor (info)",
                built["seconds"],
                runs=args.runs,
            )
        )
        rows.append(
            row(
                f"driver peak memory (VmHWM) during the sweep: {built['peak_mb']:.0f} MB",
                None,
                target=f"<= {DRIVER_TARGET_MB:g} MB",
                met=built["peak_mb"] <= DRIVER_TARGET_MB,
            )
        )
    pickled, parquet = _best(samples["pickle"]), _best(samples["parquet"])
    listing, loaded = _best(samples["listing"]), _best(samples["load"])
    resumed = _best(samples["resume"], "decided")
    result = _best(samples["resume"])
    frame_mb = loaded["frame_mb"]
    growth = min(s["peak_growth_mb"] for s in samples["load"])
    memory_target = MEMORY_TARGETS.get(args.runs)
    if built is not None:
        # the first load after a sweep makes the table, from the writers' journals
        first = samples["load"][0]
        rows.append(
            row(
                f"first load after the sweep, making the table (info; +"
                f"{first['peak_growth_mb']:.0f} MB)",
                first["seconds"],
                ratio=first["peak_growth_mb"] / frame_mb,
                ratio_is="growth / frame",
            )
        )
    rows += [
        row(
            f"floor: pickled frame read back (+{pickled['peak_growth_mb']:.0f} MB)",
            pickled["seconds"],
        ),
        row(
            f"floor: Parquet file read back (+{parquet['peak_growth_mb']:.0f} MB)",
            parquet["seconds"],
        ),
        _timed(
            f"load_results + to_dataframe: {loaded['rows']:,} rows",
            loaded["seconds"],
            pickled["seconds"],
            "pickle floor",
            LOAD_TARGETS.get(args.runs),
        ),
        _versus("Parquet floor", loaded["seconds"], parquet["seconds"]),
        row(
            f"  peak memory growth {growth:.0f} MB, frame {frame_mb:.0f} MB",
            None,
            ratio=growth / frame_mb,
            ratio_is="growth / frame",
            target="" if memory_target is None else f"<= {memory_target:g}x frame",
            met=None if memory_target is None else growth <= memory_target * frame_mb,
        ),
        row("floor: list runs/ shards + sha256 x n", listing["seconds"]),
        _timed(
            f"run(exp, store): deciding nothing is left ({resumed['skipped']:,} skipped)",
            resumed["decided"],
            listing["seconds"],
            "listing floor",
            DECIDE_TARGETS.get(args.runs),
        ),
        _timed(
            f"handle.result() on the finished sweep (+{result['peak_growth_mb']:.0f} MB)",
            result["seconds"],
            pickled["seconds"],
            "pickle floor",
            RESULT_TARGETS.get(args.runs),
        ),
        _versus("Parquet floor", result["seconds"], parquet["seconds"]),
    ]
    results = {"million": rows}
    print(format_table(results))
    return results


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"{time.perf_counter() - t0:.0f} s in all")
