"""Operations the SLURM tests run in array tasks (importable there through PYTHONPATH)."""

from __future__ import annotations

import os
import time

import metalab

SLURM_ENV = (
    "SLURM_JOB_PARTITION",
    "SLURM_CPUS_PER_TASK",
    "SLURM_MEM_PER_NODE",
    "SLURM_GPUS_ON_NODE",
    "SLURM_JOB_GPUS",
    "CUDA_VISIBLE_DEVICES",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
)
"""What a run records of the allocation it ran in (as the data item `slurm`)."""


@metalab.operation
def square(params, runtime, capture):
    """`i * i`; sleeps `sleep` seconds when `i == sleep_on` (only in the first attempt if
    `only_first_attempt`)."""
    if params["i"] == params["sleep_on"] and (
        not params["only_first_attempt"] or runtime.attempt == 1
    ):
        time.sleep(params["sleep"])
    capture.metric("square", params["i"] ** 2)


@metalab.operation
def flaky(params, runtime, capture):
    """Raises in its first attempt when `i == fail_on`; otherwise sleeps `sleep` seconds."""
    if params["i"] == params["fail_on"] and runtime.attempt == 1:
        raise RuntimeError(f"run {params['i']} fails its first attempt")
    time.sleep(params["sleep"])
    capture.metric("square", params["i"] ** 2)


def flaky_experiment(n: int, fail_on: int, sleep: float) -> metalab.Experiment:
    return metalab.Experiment(
        name="flaky_sweep",
        version="1",
        context={},
        operation=flaky,
        params=metalab.grid(i=list(range(n)), fail_on=[fail_on], sleep=[sleep]),
        seeds=metalab.seeds(base=5),
    )


@metalab.operation
def draw(params, seeds, capture):
    """One draw from the run's NumPy stream (`x`), the sum of its integer params (`total`) and,
    as data, the SLURM allocation it ran in; sleeps `METALAB_TEST_SLEEP` seconds under SLURM, so
    tasks overlap without changing the runs' params (and ids)."""
    if os.environ.get("SLURM_JOB_ID"):
        time.sleep(float(os.environ.get("METALAB_TEST_SLEEP", "0")))
    capture.metric("x", float(seeds.numpy().random()))
    capture.metric("total", sum(v for v in params.values() if isinstance(v, int)))
    capture.data("slurm", {name: os.environ.get(name) for name in SLURM_ENV})


def slurm_experiment(
    n: int, sleep_on: int = -1, sleep: float = 0.0, only_first_attempt: bool = False
) -> metalab.Experiment:
    return metalab.Experiment(
        name="slurm_sweep",
        version="1",
        context={},
        operation=square,
        params=metalab.grid(
            i=list(range(n)),
            sleep_on=[sleep_on],
            sleep=[sleep],
            only_first_attempt=[only_first_attempt],
        ),
        seeds=metalab.seeds(base=5),
    )


def draw_experiment(cases: int, replicates: int = 1, name: str = "draws") -> metalab.Experiment:
    """`cases` x `replicates` runs of `draw`, each with its own seeds."""
    return metalab.Experiment(
        name=name,
        version="1",
        context={},
        operation=draw,
        params=metalab.grid(case=list(range(cases))),
        seeds=metalab.seeds(base=11, replicates=replicates),
    )


def large_sweep(genes: int = 2000, expr_vals: int = 50) -> metalab.Experiment:
    """The spec's `large_sweep`: genes x expression values x 3 replicates (300,000 runs)."""
    my_context: dict = {}
    return metalab.Experiment(
        name="large_sweep",
        version="0.1",
        context=my_context,
        operation=draw,
        params=metalab.grid(
            gene=list(range(genes)),
            expr_val=list(range(expr_vals)),
        ),
        seeds=metalab.seeds(base=42, replicates=3),
    )


@metalab.operation
def killed(params, runtime, capture):
    """Kills its own process with SIGKILL in its first attempt when `i == kill_on` (as the
    kernel's OOM killer would); otherwise `i * i`."""
    if params["i"] == params["kill_on"] and runtime.attempt == 1:
        capture.metric("before", 1.0)
        os.kill(os.getpid(), 9)
    capture.metric("square", params["i"] ** 2)


def killed_experiment(n: int, kill_on: int) -> metalab.Experiment:
    return metalab.Experiment(
        name="killed_sweep",
        version="1",
        context={},
        operation=killed,
        params=metalab.grid(i=list(range(n)), kill_on=[kill_on]),
        seeds=metalab.seeds(base=5),
    )


@metalab.operation
def hog(params, runtime, capture):
    """Fills `hog_mb` MB of memory (every page written) in its first attempt when
    `i == hog_on`, more than its task may use where SLURM confines memory: the kernel's OOM
    killer then kills the task's Python; otherwise `i * i`."""
    if params["i"] == params["hog_on"] and runtime.attempt == 1:
        block = b"\x01" * (params["hog_mb"] * 1024 * 1024)
        capture.metric("hogged", float(len(block)))
    capture.metric("square", params["i"] ** 2)


def hog_experiment(n: int, hog_on: int, hog_mb: int) -> metalab.Experiment:
    return metalab.Experiment(
        name="hog_sweep",
        version="1",
        context={},
        operation=hog,
        params=metalab.grid(i=list(range(n)), hog_on=[hog_on], hog_mb=[hog_mb]),
        seeds=metalab.seeds(base=5),
    )
