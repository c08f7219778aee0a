"""The dashboard's page of a large sweep: what its view holds and what a refresh costs.

A sweep of N runs (default 100,000; `_ops.three_metrics`: three metrics per run, grid
`gene=range(N // 50)` x `expr_val=range(50)`) is run once into a file store with the default
executor, or a store given with `--store` is used as it is when it holds that sweep. Then, in
a fresh process (a first refresh of another view made beforehand: the store's table is then
current, as a sweep's `result()` leaves it, and what a refresh imports is imported):

* the sweep's entry is made as a driver registers it (`register_sweep`'s `packed_ids` of the
  sweep's `RunIds`): the size of its run ids (what goes over the wire to the scheduler), beside
  the same ids as the frozenset of strings that earlier versions kept (tracemalloc);
* a `StoreView` of the entry is refreshed: the first refresh, then `--repeat` refreshes of the
  unchanged store (best kept), then one after 1% of the records were written again (the same
  content: the store's listing changes, so the table is checked again where it changed);
  its floor is a `load_table` after another 1% were written again the same way;
* what a new view of the entry holds once refreshed twice: Python allocations (tracemalloc,
  which numpy reports to) plus Arrow's allocations, after a garbage collection; measured
  apart from the times (tracemalloc slows what it traces).

Floors, same process: the store's `load_table` of the experiment (the one table read a refresh
makes), its time and the size of the table it returns (`Table.nbytes`). Ratios: refresh time /
load_table time, held memory / the table's size.

    uv run --all-extras python benchmarks/bench_dashboard.py [--runs 100000] [--store DIR]
        [--work DIR] [--repeat 3] [--keep]

`--runs 1000000` works (a build of several minutes). The store goes to a fresh directory
under `--work` (default: the temporary directory), removed at the end unless `--keep`; a store
named with `--store` is built there when it does not exist and is never removed. The
benchmark rewrites 1% of its records with their own content.
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
from pathlib import Path

from _common import format_table, row

HERE = Path(__file__).resolve().parent

BUILD = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, {here!r})
    import metalab, _ops
    if __name__ == "__main__":
        runs = int(sys.argv[2])
        exp = _ops.experiment_of(
            _ops.three_metrics, "dash", gene=range(runs // 50), expr_val=range(50)
        )
        t0 = time.perf_counter()
        handle = metalab.run(exp, sys.argv[1])
        handle.wait()
        assert handle.status.completed == runs, handle.status
        print(json.dumps({{"seconds": time.perf_counter() - t0}}))
    """
)

PROBE = textwrap.dedent(
    """
    import gc, json, sys, time, tracemalloc
    sys.path.insert(0, {here!r})
    import pyarrow as pa
    import metalab, _ops
    from metalab import dashboard
    from metalab.dashboard._registration import packed_ids
    from metalab.dashboard._view import StoreView
    from metalab.store import create_store

    store_path, runs, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    exp = _ops.experiment_of(
        _ops.three_metrics, "dash", gene=range(runs // 50), expr_val=range(50)
    )
    run_ids = exp.packed_run_ids()  # as a driver holds them
    store = create_store(store_path, create=False)
    out = {{}}

    def held():
        gc.collect()
        return tracemalloc.get_traced_memory()[0] + pa.total_allocated_bytes()

    # the table made current, and what a first refresh imports, imported
    warm = StoreView(dashboard.SweepEntry("dash:1", store.locator, runs, "warm"))
    warm.refresh(lambda locator: store)
    del warm
    floor = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        table = store.load_table("dash:1")
        floor.append(time.perf_counter() - t0)
        out["table_mb"] = table.nbytes / 2**20
        out["rows"] = table.num_rows
        del table
    out["load_table"] = min(floor)

    tracemalloc.start()
    base = held()
    strings = frozenset(run_ids)
    out["strings_mb"] = (held() - base) / 2**20
    del strings
    packed = packed_ids(run_ids)  # (the driver's own bytes: nothing allocated)
    entry = dashboard.SweepEntry("dash:1", store.locator, runs, "bench", run_ids=packed)
    out["entry_mb"] = len(packed) / 2**20

    tracemalloc.stop()

    view = StoreView(entry)
    t0 = time.perf_counter()
    view.refresh(lambda locator: store)
    out["first"] = time.perf_counter() - t0
    assert view.snapshot.error is None, view.snapshot.error
    steady = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        view.refresh(lambda locator: store)
        steady.append(time.perf_counter() - t0)
    out["steady"] = min(steady)
    out["counts"] = view.snapshot.counts
    out["sample"] = view.snapshot.sample.size
    del view

    # memory, measured apart: tracemalloc slows what it traces
    tracemalloc.start()
    base = held()
    view = StoreView(entry)
    for _ in range(2):
        view.refresh(lambda locator: store)
    out["held_mb"] = (held() - base) / 2**20
    out["peak_mb"] = (tracemalloc.get_traced_memory()[1] - base) / 2**20
    tracemalloc.stop()

    def rewrite(first):
        # 1% of the records written again, as they are: their directories change
        for record in [store.get_record(r) for r in run_ids[first :: 100]]:
            store.put_record(record)

    rewrite(0)
    t0 = time.perf_counter()
    store.load_table("dash:1")
    out["load_table_changed"] = time.perf_counter() - t0
    rewrite(1)
    t0 = time.perf_counter()
    view.refresh(lambda locator: store)
    out["changed"] = time.perf_counter() - t0
    print(json.dumps(out))
    """
)


def _json_of(argv: list[str]) -> dict:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:2]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def build(store: str, runs: int) -> dict:
    """Run the sweep into `store` in a fresh process; return its time."""
    return _json_of([sys.executable, "-c", BUILD.format(here=str(HERE)), store, str(runs)])


def measure(store: str, runs: int, repeat: int) -> dict:
    """Measure the view of the sweep in a fresh process; return what it reports."""
    script = PROBE.format(here=str(HERE))
    return _json_of([sys.executable, "-c", script, store, str(runs), str(repeat)])


def rows_of(m: dict, runs: int) -> list[dict]:
    """The results table's rows of one measurement."""
    floor, table_mb = m["load_table"], m["table_mb"]
    counts = ", ".join(f"{n:,} {status}" for status, n in sorted(m["counts"].items()))
    return [
        row(f"floor: store.load_table(experiment), {m['rows']:,} rows", floor, runs=runs),
        row(f"floor: that table's size, {table_mb:.1f} MB", None),
        row(
            f"entry: run ids packed, {m['entry_mb']:.1f} MB (as a frozenset of strings: "
            f"{m['strings_mb']:.1f} MB)",
            None,
            ratio=m["entry_mb"] / m["strings_mb"],
            ratio_is="packed / strings",
        ),
        row(
            f"view: first refresh ({counts}; {m['sample']:,} sampled)",
            m["first"],
            ratio=m["first"] / floor,
            ratio_is="time / load_table",
        ),
        row(
            "view: refresh, nothing changed",
            m["steady"],
            ratio=m["steady"] / floor,
            ratio_is="time / load_table",
        ),
        row(
            f"floor: load_table after {runs // 100:,} records were written again",
            m["load_table_changed"],
        ),
        row(
            f"view: refresh after {runs // 100:,} other records were written again",
            m["changed"],
            ratio=m["changed"] / m["load_table_changed"],
            ratio_is="time / load_table after writes",
        ),
        row(
            f"view: memory held after refreshes, {m['held_mb']:.1f} MB "
            f"(peak during them {m['peak_mb']:.0f} MB of Python objects)",
            None,
            ratio=m["held_mb"] / table_mb,
            ratio_is="held / table",
            target="<= 0.5x table",
            met=m["held_mb"] <= 0.5 * table_mb,
        ),
    ]


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000, help="runs (a multiple of 50)")
    parser.add_argument("--store", default=None, help="an existing store to reuse, or where")
    parser.add_argument("--work", default=None, help="directory for the store")
    parser.add_argument("--repeat", type=int, default=3, help="refreshes; the best counts")
    parser.add_argument("--keep", action="store_true", help="keep the store")
    args = parser.parse_args()
    if args.runs <= 0 or args.runs % 50:
        parser.error(f"--runs must be a positive multiple of 50, got {args.runs}")
    if args.repeat <= 0:
        parser.error(f"--repeat must be positive, got {args.repeat}")
    if args.work:
        os.makedirs(args.work, exist_ok=True)
    work = tempfile.mkdtemp(prefix="metalab-dashboard-", dir=args.work)
    store = args.store or os.path.join(work, "store")
    rows = []
    try:
        if not Path(store, "_meta.json").exists():
            built = build(store, args.runs)
            rows.append(row(f"build: {args.runs:,} runs (info)", built["seconds"], runs=args.runs))
        measured = measure(store, args.runs, args.repeat)
        print(f"  measured: {json.dumps(measured)}", file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)  # a store given with --store stays
    rows += rows_of(measured, args.runs)
    results = {"dashboard": rows}
    print(format_table(results))
    return results


if __name__ == "__main__":
    main()
