"""`run`, `to_delayed` and `reconnect`: the entry points that start or follow a sweep.

Each checks its arguments, opens the store and finds the executor through the registry,
submits the sweep (`metalab.submission`) and hands it to a `Driver` behind a `RunHandle`.
"""

from __future__ import annotations

import multiprocessing
from array import array
from typing import Any, cast

from . import config, registry
from ._trust import pickled_bytes, usable_manifests
from .contracts import Store
from .derived import check_functions
from .driver import Driver
from .dry_run import DryRun
from .errors import StoreError, ValidationError
from .experiment import Experiment
from .following import StoreFollower
from .handle import RunHandle
from .interrupts import interrupted_while_starting
from .progress import make_progress
from .recording import recorded_outcomes
from .submission import open_store, prepare_sweep
from .sweep import RunOptions, Sweep, SweepRef
from .tasks import build_tasks, check_chunk_size, chunk_size_for, chunks
from .validation import check_experiment_id, check_flag, check_store


def run(
    experiment: Experiment,
    store: Any = None,
    executor: Any = None,
    *,
    resume: bool = True,
    progress: Any = False,
    chunk_size: int | None = None,
    derived_metrics: Any = None,
    dry_run: bool = False,
) -> RunHandle | DryRun:
    """Run every pending run of `experiment`; return a `RunHandle` at once.

    `store` is a path, a `file://` or `postgresql://` locator, or a store object (default
    `./runs/<name>`). `executor` is a `DaskExecutor` (the default: a local Dask cluster, or the
    active `distributed` client), a `distributed.Client`, or any metalab executor. With
    `resume=True` completed runs in the store are skipped. `derived_metrics` are functions
    of a run computed on the worker right after each completed run (see `metalab.derived`).
    With `dry_run=True` nothing runs: a `DryRun` report says how many runs are done and
    how many would be submitted (for SLURM: the array jobs, their specs and the core-hours,
    with the scripts written for inspection).
    """
    if not isinstance(experiment, Experiment):
        raise ValidationError(
            f"metalab.run() needs a metalab.Experiment as its first argument, got {experiment!r}"
        )
    if _in_worker_bootstrap():
        return _inert_handle(experiment)
    check_store(store, optional=True)
    check_flag("resume", resume)
    check_flag("dry_run", dry_run)
    check_chunk_size(chunk_size)
    derived = check_functions(derived_metrics)
    shown = make_progress(progress, experiment)
    resolved = registry.resolve_executor(executor)
    try:
        experiment.prepare()  # bad params or missing files fail before a store is created
        store = open_store(store, experiment)
        sweep = prepare_sweep(
            experiment,
            store,
            resume=resume,
            chunk_size=chunk_size,
            derived=derived,
            executor_name=type(resolved).__name__,
            dry_run=dry_run,
            executor_details=resolved.manifest_details(),
            check=resolved.check_submission,
            outcome_metrics=shown.metric_names if shown is not None else (),
        )
    except KeyboardInterrupt:
        interrupted_while_starting(experiment.experiment_id)
    if dry_run:
        return DryRun(
            {
                "experiment_id": experiment.experiment_id,
                "executor": type(resolved).__name__,
                "total": len(sweep.run_ids),
                "done": sweep.skipped,
                "to_submit": len(sweep.pending),
                **resolved.describe(sweep),
            }
        )
    handle = RunHandle(Driver(sweep, resolved), shown)
    handle.start()
    return handle


def _in_worker_bootstrap() -> bool:
    """Whether this call comes from a user's script being re-run as `__mp_main__` while a
    spawned process (a Dask worker restarted after a crash) starts up.

    A script without an `if __name__ == "__main__":` guard calls `metalab.run()` again there;
    starting a sweep would fail the worker's start-up, so the call does nothing instead.
    """
    return bool(getattr(multiprocessing.current_process(), "_inheriting", False))


def _inert_handle(experiment: Experiment) -> RunHandle:
    # no store was opened: the handle is finished before anything could reach one
    sweep = Sweep(experiment, cast(Store, None), SweepRef(None, "", ""), [], [], 0)
    driver = Driver(sweep, StoreFollower())
    driver.finish_empty()
    return RunHandle(driver)


def to_delayed(
    experiment: Experiment, store: Any = None, *, resume: bool = True, chunk_size: int | None = None
) -> list[Any]:
    """Return the sweep's pending runs as `dask.delayed` tasks to compute with any scheduler.

    Each task returns a list of outcomes; the records land in the store either way.
    """
    if not isinstance(experiment, Experiment):
        raise ValidationError(f"to_delayed() needs a metalab.Experiment, got {experiment!r}")
    check_store(store, optional=True)
    check_flag("resume", resume)
    check_chunk_size(chunk_size)
    config.check()  # metalab's Dask settings, before a store is made
    experiment.prepare()
    store = open_store(store, experiment)
    sweep = prepare_sweep(experiment, store, resume=resume, executor_name="to_delayed")
    if not sweep.pending:
        return []
    groups = chunks(sweep.pending, chunk_size_for(len(sweep.pending), chunk_size))
    return build_tasks(sweep.ref, experiment.name, groups)


def reconnect(
    store: Any, experiment: str | None = None, *, progress: Any = False, trust: bool = False
) -> RunHandle:
    """Return a handle on the latest sweep submitted to `store`, from any process.

    `experiment` picks one experiment (name or `name:version`) when the store holds several.
    The handle reads progress from the store; `result()` waits for every run's record.
    The sweep's experiment is unpickled from the store only when nobody but you could have
    written it; `trust=True` loads it from a store you trust whoever wrote
    (`UntrustedDataError` otherwise).
    """
    check_store(store)
    check_experiment_id(experiment)
    check_flag("trust", trust)
    shown = make_progress(progress, None)
    opened = registry.open_store(store, create=False)
    manifest = _latest_manifest(opened, experiment)
    exp = _load_submitted(opened, manifest, trust)
    ref = SweepRef(
        store=opened.locator,
        experiment_key=manifest["experiment_key"],
        session=manifest["session"],
        options=RunOptions(resume=manifest.get("resume", True)),
    )
    run_ids = exp.run_ids()
    sweep = Sweep(exp, opened, ref, run_ids, range(len(run_ids)), 0, manifest)
    submitted_with = registry.executor_class(manifest.get("executor", ""))
    follower = submitted_with.follower(sweep, manifest) if submitted_with is not None else None
    executor = follower or StoreFollower()
    # status is right from the first look, not after a poll; the driver watches the rest
    found = recorded_outcomes(
        opened, run_ids, range(len(run_ids)), ref.session, executor.min_attempts(sweep)
    )
    if found:
        recorded = {outcome.index for outcome in found}
        left = (i for i in range(len(run_ids)) if i not in recorded)
        sweep.pending = array("q", left)  # 8 bytes a run to watch, as `Sweep` keeps them
    driver = Driver(sweep, executor)
    if found:
        driver.sink.outcomes(found)
    handle = RunHandle(driver, shown)
    handle.start()  # a sweep that had ended is complete when this returns
    return handle


def _load_submitted(store: Store, manifest: dict[str, Any], trust: bool) -> Experiment:
    import cloudpickle

    key = manifest["experiment_key"]
    opt_in = "metalab.reconnect(store, trust=True)"
    try:
        return cloudpickle.loads(
            pickled_bytes(store, "experiment", key, trust=trust, opt_in=opt_in)
        )
    except ImportError as exc:
        raise StoreError(
            f"cannot rebuild experiment {manifest['experiment_id']!r} from {store!r}: its "
            f"operation {manifest['operation']['ref']!r} needs module {exc.name!r}, which "
            "this Python cannot import (run from the directory or environment that submitted "
            "it, or add it to PYTHONPATH)"
        ) from exc


def _latest_manifest(store: Store, experiment: str | None) -> dict[str, Any]:
    manifests = [
        m
        for m in usable_manifests(store.manifests(), store)
        if experiment is None or experiment in (m.get("experiment_id"), m.get("name"))
    ]
    if not manifests:
        target = f"experiment {experiment!r}" if experiment else "any experiment"
        raise ValidationError(f"store {store!r} holds no submission of {target}")
    ids = sorted({m["experiment_id"] for m in manifests})
    if len(ids) > 1:
        raise ValidationError(
            f"store {store!r} holds several experiments ({', '.join(ids)}); "
            "pass experiment= to choose one"
        )
    return max(manifests, key=lambda m: m.get("submitted_at", ""))
