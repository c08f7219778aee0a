"""Define: a 300,000-run sweep is defined and its last run read in O(1), without materializing.

Measured: build the `Experiment` (grid gene=range(2000) x expr_val=range(50), seeds with
replicates=3) and read run 299,999's params, seed bundle and run id. Target: < 50 ms.

The baseline is what any definition of those axes must do: build `list(range(2000))` and
`list(range(50))`, put them in a dict and look one up. The ratio is metalab's time over the
baseline's. Each is repeated 20 times (alternating) and the median kept, because these
durations are short enough for the minimum to be a lucky outlier.

    uv run --all-extras python benchmarks/bench_define.py
"""

from __future__ import annotations

import time

import _ops
from _common import format_table, median, row

import metalab

REPEAT = 20
TARGET_SECONDS = 0.050
LAST = 299_999


def define_and_read() -> tuple:
    """Define the sweep and read the params, seed bundle and run id of its last run."""
    exp = metalab.Experiment(
        name="define",
        version="1",
        context={},
        operation=_ops.draw,
        params=metalab.grid(gene=range(2000), expr_val=range(50)),
        seeds=metalab.seeds(base=0, replicates=3),
    )
    return exp.params_at(LAST), exp.seeds_at(LAST), exp.run_id(LAST)


def baseline() -> list:
    """Build the two axes as lists and do one dict lookup."""
    axes = {"gene": list(range(2000)), "expr_val": list(range(50))}
    return axes["gene"]


def run(repeat: int = REPEAT) -> list[dict]:
    """Measure defining the sweep against the baseline; return the table rows."""
    params, bundle, run_id = define_and_read()
    if params != {"gene": 1999, "expr_val": 49} or bundle.spawn_key != (0, 2) or len(run_id) != 32:
        raise RuntimeError(f"unexpected run {LAST}: {params}, {bundle}, {run_id}")
    samples: dict[str, list[float]] = {"baseline": [], "define": []}
    for _ in range(repeat):
        for name, fn in (("baseline", baseline), ("define", define_and_read)):
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    base, define = median(samples["baseline"]), median(samples["define"])
    return [
        row("baseline: 2 lists + dict lookup", base, samples=samples["baseline"]),
        row(
            "define 300,000-run sweep + read run 299,999",
            define,
            ratio=define / base,
            ratio_is="time / baseline",
            target=f"< {TARGET_SECONDS * 1e3:g} ms",
            met=define < TARGET_SECONDS,
            samples=samples["define"],
        ),
    ]


def main() -> None:
    print(format_table({"define": run()}))


if __name__ == "__main__":
    main()
