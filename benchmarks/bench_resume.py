"""Resume: how long `metalab.run` takes to find that a 100,000-run sweep has nothing left.

The store is built by actually running the sweep (grid gene=range(2000) x expr_val=range(50),
one replicate, operation `_ops.draw`) with the inline executor, the fastest on a small machine;
that takes a minute or two and is reported for information. Then, 5 times, a freshly defined
experiment is passed to `metalab.run(exp, store)` (default executor) and timed until the
returned handle reports `status.pending == 0` and `status.skipped == 100000`. Target: < 1 s.

The baseline is the irreducible work: listing the store's record files (`os.listdir` of
`runs/` and of its shard directories) plus 100,000 sha256 hashes of short strings. The ratio
is metalab's time over the baseline's. The breakdown times the parts of the plan on their
own: run id computation (`exp.prepare()` + `exp.run_ids()`), the store scan (`store.scan()`),
and the manifest (`exp.manifest()` + `store.write_manifest`); "other" is the rest of
`metalab.run`. Every figure is the best of 5.

    uv run --all-extras python benchmarks/bench_resume.py
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time

import _ops
from _common import best, format_table, row

import metalab
from metalab.stores.file import FileStore

AXES = {"gene": range(2000), "expr_val": range(50)}
REPEAT = 5
TARGET_SECONDS = 1.0


def experiment(axes=AXES) -> metalab.Experiment:
    """A fresh definition of the sweep, as a new driver process would make it."""
    return _ops.experiment("resume", **axes)


def build(path: str, axes=AXES) -> float:
    """Run the whole sweep into the store at `path` (inline); return the seconds it took."""
    t0 = time.perf_counter()
    handle = metalab.run(experiment(axes), path, executor="inline")
    elapsed = time.perf_counter() - t0
    if handle.status.completed != len(experiment(axes)):
        raise RuntimeError(f"the sweep did not complete: {handle.status}")
    return elapsed


def resume(path: str, axes=AXES) -> float:
    """Seconds from `metalab.run` to a handle that knows every run is done and skipped."""
    exp = experiment(axes)
    t0 = time.perf_counter()
    handle = metalab.run(exp, path)
    status = handle.status
    elapsed = time.perf_counter() - t0
    if status.pending != 0 or status.skipped != len(exp):
        handle.cancel()
        raise RuntimeError(f"expected every run skipped, got {status}")
    handle.wait()
    return elapsed


def breakdown(path: str, axes=AXES) -> dict[str, float]:
    """Time the parts of planning on their own."""
    exp, store = experiment(axes), FileStore.open(path)
    marks = [time.perf_counter()]
    exp.prepare()
    exp.run_ids()
    marks.append(time.perf_counter())
    store.scan()
    marks.append(time.perf_counter())
    store.write_manifest(exp.experiment_id, exp.manifest())
    marks.append(time.perf_counter())
    names = ("run ids: prepare + exp.run_ids()", "store.scan()", "manifest build + write")
    return {name: b - a for name, a, b in zip(names, marks, marks[1:])}


def baseline(path: str, n: int) -> float:
    """The irreducible work: list the record files and hash `n` short strings."""
    t0 = time.perf_counter()
    runs = os.path.join(path, "runs")
    for shard in os.listdir(runs):
        os.listdir(os.path.join(runs, shard))
    for i in range(n):
        hashlib.sha256(f"run-{i}".encode()).hexdigest()
    return time.perf_counter() - t0


def run(axes=AXES, repeat: int = REPEAT) -> list[dict]:
    """Build the store, measure resume, baseline and breakdown; return the table rows."""
    n = len(experiment(axes))
    with tempfile.TemporaryDirectory(prefix="metalab-bench-") as tmp:
        path = os.path.join(tmp, "store")
        built = build(path, axes)
        os.sync()  # flush the build's writes before measuring
        samples: dict[str, list[float]] = {"baseline": [], "resume": []}
        parts: dict[str, list[float]] = {}
        for _ in range(repeat):
            samples["baseline"].append(baseline(path, n))
            samples["resume"].append(resume(path, axes))
            for name, seconds in breakdown(path, axes).items():
                parts.setdefault(name, []).append(seconds)
    base, total = best(samples["baseline"]), best(samples["resume"])
    parts_best = {name: best(s) for name, s in parts.items()}
    parts_best["other (metalab.run - parts)"] = total - sum(parts_best.values())
    return [
        row(f"build: {n:,} runs, inline executor (info)", built, runs=n),
        row("baseline: list runs/*/ + sha256 x n", base, samples=samples["baseline"]),
        row(
            "metalab.run -> handle with pending == 0",
            total,
            ratio=total / base,
            ratio_is="time / baseline",
            target=f"< {TARGET_SECONDS:g} s",
            met=total < TARGET_SECONDS,
            samples=samples["resume"],
        ),
        *(
            row(
                f"  part: {name}",
                seconds,
                ratio=seconds / base,
                ratio_is="time / baseline",
                samples=parts.get(name),
            )
            for name, seconds in parts_best.items()
        ),
    ]


def main() -> None:
    print(format_table({"resume": run()}))


if __name__ == "__main__":
    main()
