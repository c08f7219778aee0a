"""Results: loading a 100,000-run store into a DataFrame, and what a progress display costs.

load: a 100,000-run sweep (grid gene=range(2000) x expr_val=range(50), operation
`_ops.three_metrics`: three metrics per run) is run once into a store with the default executor
(a local Dask cluster; reported for information). Then
`metalab.load_results(store).to_dataframe()` is timed three ways, best of 3 each:

* after the sweep: the store as the sweep left it, with its workers' journals
  (`cache/journal/`, restored before each sample). Target: < 2 s;
* without journals (info): `cache/` deleted before each sample, as for a store written by
  an older metalab: every record file is read and parsed; the load then writes a snapshot;
* again: the next load of the unchanged store, from that snapshot. Target: < 2 s.

Baseline, same run: a plain loop that reads and `json.loads` every record file of the store,
then builds a `pandas.DataFrame` from one flat dict per run (no framework, no cache).

progress: 10,000 trivial runs (`_ops.draw`) with the default executor (its local cluster
started once beforehand), without a progress display and with one (plain text, and rich),
written to an in-memory stream. Rounds are interleaved, best of 3 each. Target: the display
costs <= 5% (ratio of times <= 1.05).

    uv run --all-extras python benchmarks/bench_results.py
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import time

import _ops
import pandas as pd
from _common import best, format_table, row

import metalab

AXES = {"gene": range(2000), "expr_val": range(50)}
REPEAT = 3
LOAD_TARGET = 2.0
PROGRESS_TARGET = 1.05
PROGRESS_RUNS = 10_000


def build(path: str) -> float:
    t0 = time.perf_counter()
    exp = _ops.experiment_of(_ops.three_metrics, "results", **AXES)
    handle = metalab.run(exp, path)
    handle.result()
    if handle.status.completed != len(exp):
        raise RuntimeError(f"the sweep did not complete: {handle.status}")
    return time.perf_counter() - t0


def load(path: str) -> float:
    t0 = time.perf_counter()
    df = metalab.load_results(path).to_dataframe()
    elapsed = time.perf_counter() - t0
    if len(df) != 100_000 or "loss" not in df.columns:
        raise RuntimeError(f"unexpected frame: {df.shape}")
    return elapsed


def baseline(path: str) -> float:
    """Read every record file and build a DataFrame of flat dicts: the work with no framework."""
    t0 = time.perf_counter()
    runs = os.path.join(path, "runs")
    rows = []
    for shard in os.listdir(runs):
        for name in os.listdir(os.path.join(runs, shard)):
            if not name.endswith(".json"):
                continue
            with open(os.path.join(runs, shard, name), "rb") as fh:
                record = json.loads(fh.read())
            flat = {"run_id": record["run_id"], "status": record["status"]}
            flat.update({f"param_{k}": v for k, v in record["params"].items()})
            flat.update(record["metrics"])
            rows.append(flat)
    pd.DataFrame(rows)
    return time.perf_counter() - t0


def sweep(root: str, progress) -> float:
    exp = _ops.experiment("progress", i=range(PROGRESS_RUNS))
    t0 = time.perf_counter()
    handle = metalab.run(exp, root, progress=progress)
    handle.result()
    elapsed = time.perf_counter() - t0
    if handle.status.completed != PROGRESS_RUNS:
        raise RuntimeError(f"unexpected status {handle.status}")
    return elapsed


def run() -> list[dict]:
    """The progress rounds first: deleting the 100,000-run store afterwards slows file
    creation on some filesystems for a minute or more, which would skew them."""
    rows = []
    cases = {
        "off": lambda: False,
        "plain": lambda: metalab.Progress(stream=io.StringIO(), use_rich=False),
        "rich": lambda: metalab.Progress(stream=io.StringIO(), use_rich=True),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    with tempfile.TemporaryDirectory(prefix="metalab-bench-") as tmp:
        sweep(os.path.join(tmp, "warm-up"), False)  # starts the local cluster the rounds reuse
        for r in range(REPEAT):
            for name, make in cases.items():
                samples[name].append(sweep(os.path.join(tmp, f"{name}-{r}"), make()))
    off = best(samples["off"])
    rows.append(
        row("10,000 runs, no progress (baseline)", off, runs=PROGRESS_RUNS, samples=samples["off"])
    )
    for name in ("plain", "rich"):
        ratio = best(samples[name]) / off
        rows.append(
            row(
                f"10,000 runs, progress={name}",
                best(samples[name]),
                runs=PROGRESS_RUNS,
                ratio=ratio,
                ratio_is="time / no progress",
                target=f"<= {PROGRESS_TARGET:g}",
                met=ratio <= PROGRESS_TARGET,
                samples=samples[name],
            )
        )

    with tempfile.TemporaryDirectory(prefix="metalab-bench-") as tmp:
        store = os.path.join(tmp, "store")
        built = build(store)
        rows.append(row("build: 100,000 runs, default executor (info)", built, runs=100_000))
        journals = os.path.join(store, "cache", "journal")
        kept = os.path.join(tmp, "journals-after-the-sweep")
        shutil.copytree(journals, kept)
        afters, colds, bases = [], [], []
        for _ in range(REPEAT):
            shutil.rmtree(journals)
            shutil.copytree(kept, journals)
            afters.append(load(store))
            bases.append(baseline(store))
            shutil.rmtree(os.path.join(store, "cache"))
            colds.append(load(store))
        agains = [load(store) for _ in range(REPEAT)]
        base = best(bases)
        rows.append(row("baseline: read + json.loads + DataFrame", base, samples=bases))
        for name, samples, target in (
            ("after the sweep (workers' journals)", afters, True),
            ("without journals (info)", colds, False),
            ("again (snapshot)", agains, True),
        ):
            rows.append(
                row(
                    f"load_results + to_dataframe, {name}",
                    best(samples),
                    ratio=best(samples) / base,
                    ratio_is="time / baseline",
                    target=f"< {LOAD_TARGET:g} s" if target else "",
                    met=best(samples) < LOAD_TARGET if target else None,
                    samples=samples,
                )
            )

    return rows


def main() -> None:
    print(format_table({"results": run()}))


if __name__ == "__main__":
    main()
