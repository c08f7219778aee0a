"""Analysis at scale: a finished file store of N runs (default 1,000,000) read back.

A sweep of N trivial runs (`_ops.draw`: one metric) is run once into a file store with the
default executor (its time is reported for information, with the driver's peak memory while it
ran). Then, each in a fresh process, so that nothing is cached in memory:

* `metalab.load_results(store).to_dataframe()`: time and the process's peak memory growth
  over its state just before the call, beside the frame's own size;
* deciding that nothing is left: `metalab.run(exp, store)` on the finished sweep, until the
  handle reports `pending == 0`;
* `handle.result()` on that finished sweep: time and peak memory growth.

Floor, same run: the same DataFrame written once as a pickle, read in a fresh process (time
and peak memory growth).

    uv run --all-extras python benchmarks/bench_million.py [--runs 1000000] [--store DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _common import format_table, row

HERE = Path(__file__).resolve().parent

PROBE = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, {here!r})

    def peak_mb():
        # the process's high-water mark of resident memory (VmHWM, in kB)
        with open("/proc/self/status") as fh:
            line = next(l for l in fh if l.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024

    import pandas, pickle, metalab, _ops
    what, store, runs, frame_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    before = peak_mb()
    t0 = time.perf_counter()
    out = {{}}
    if what == "load":
        df = metalab.load_results(store).to_dataframe()
        out["rows"] = len(df)
        out["frame_mb"] = df.memory_usage(deep=True).sum() / 2**20
    elif what == "floor":
        with open(frame_file, "rb") as fh:
            df = pickle.load(fh)
        out["rows"] = len(df)
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
    out["seconds"] = time.perf_counter() - t0
    out["peak_growth_mb"] = peak_mb() - before
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


def probe(what: str, store: str, runs: int, frame_file: str) -> dict:
    script = PROBE.format(here=str(HERE))
    return _json_of([sys.executable, "-c", script, what, store, str(runs), frame_file])


def _json_of(argv: list[str]) -> dict:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:2]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_floor(store: str, frame_file: str) -> None:
    """The frame `load_results` gives, pickled once: what the floor reads back."""
    import metalab

    df = metalab.load_results(store).to_dataframe()
    with open(frame_file, "wb") as fh:
        pickle.dump(df, fh, protocol=pickle.HIGHEST_PROTOCOL)


def _timed(what: str, seconds: float, floor: float | None, target: float) -> dict:
    return row(
        what,
        seconds,
        ratio=None if floor is None else seconds / floor,
        ratio_is="time / floor",
        target=f"< {target:g} s",
        met=seconds < target,
    )


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000, help="runs (a multiple of 50)")
    parser.add_argument("--store", default=None, help="an existing store to reuse, or where")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="metalab-million-")
    store = args.store or os.path.join(work, "store")
    frame_file = os.path.join(work, "frame.pkl")
    rows = []
    if not Path(store, "_meta.json").exists():
        built = build(store, args.runs)
        rows.append(row("build: default executor (info)", built["seconds"], runs=args.runs))
        rows.append(row(f"driver peak memory while it ran: {built['peak_mb']:.0f} MB", 0.0))
    write_floor(store, frame_file)
    floor = probe("floor", store, args.runs, frame_file)
    loaded = probe("load", store, args.runs, frame_file)
    resumed = probe("resume", store, args.runs, frame_file)
    frame_mb = loaded["frame_mb"]
    rows += [
        row(
            f"floor: pickled frame read back (+{floor['peak_growth_mb']:.0f} MB)",
            floor["seconds"],
        ),
        _timed(
            f"load_results + to_dataframe (+{loaded['peak_growth_mb']:.0f} MB peak, frame "
            f"{frame_mb:.0f} MB: {loaded['peak_growth_mb'] / frame_mb:.1f}x)",
            loaded["seconds"],
            floor["seconds"],
            2.0,
        ),
        _timed("run(exp, store): deciding nothing is left", resumed["decided"], None, 3.0),
        _timed(
            f"handle.result() on the finished sweep (+{resumed['peak_growth_mb']:.0f} MB)",
            resumed["seconds"],
            floor["seconds"],
            3.0,
        ),
    ]
    results = {"million": rows}
    print(format_table(results))
    return results


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"{time.perf_counter() - t0:.0f} s in all")
