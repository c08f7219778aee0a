"""Run every benchmark, print one table and save it as JSON under `benchmarks/results/`.

    uv run --all-extras python benchmarks/run_all.py

Each benchmark also runs alone (`python benchmarks/bench_<name>.py`). Nothing here asserts on
time: targets are reported as met or not, and the exit status is 0 unless a benchmark breaks.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time

import bench_define
import bench_postgres
import bench_results
import bench_resume
import bench_throughput
from _common import format_table

import metalab
from metalab import provenance

BENCHMARKS = {
    # the sweeps of quick runs first: the 100,000-run stores that resume and results build
    # and delete leave file creation slower for a while on some filesystems
    "define": bench_define,
    "throughput": bench_throughput,
    "results": bench_results,
    "resume": bench_resume,
    "postgres": bench_postgres,
}
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def main() -> None:
    started = dt.datetime.now(dt.UTC)
    results = {}
    for name, module in BENCHMARKS.items():
        print(f"running {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        results[name] = module.run()
        print(f"  {name} took {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    print(format_table(results))

    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, started.strftime("%Y%m%dT%H%M%SZ") + ".json")
    machine = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "tmpdir": tempfile.gettempdir(),
        "metalab": metalab.__version__,
        "git": provenance.git_state(__file__),
    }
    with open(path, "w") as fh:
        report = {"started_at": started.isoformat(), "machine": machine, "results": results}
        json.dump(report, fh, indent=2)
        fh.write("\n")
    print(f"\nresults written to {os.path.relpath(path)}")


if __name__ == "__main__":
    main()
