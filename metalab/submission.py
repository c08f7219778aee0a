"""Submitting a sweep: fingerprint the experiment, store it once, work out which runs are
left, and write the submission's manifest.

Resume is this and nothing more: compute every run id, ask the store (one scan) which are
complete, and hand only the rest to the executor (DESIGN invariant 4).
"""

from __future__ import annotations

import secrets
import warnings
from array import array
from collections.abc import Callable, Sequence
from typing import Any, cast

from . import execute, provenance, registry
from ._trust import experiment_key
from .contracts import Store, TableStore
from .errors import CodeChangedWarning, MetalabWarning, ValidationError
from .experiment import Experiment
from .record import utc_now
from .run_id_cache import run_ids_of
from .run_ids import RunIds, completed_mask
from .run_ids import repeated as count_repeated
from .serializers import user_codecs
from .sweep import RunOptions, Sweep, SweepRef


def default_store_path(experiment: Experiment) -> str:
    """`./runs/<experiment name>`: where `run()` writes when no store is given."""
    return f"./runs/{experiment.name}"


def open_store(store: Any, experiment: Experiment | None = None) -> Store:
    """Open `store` (path, locator or object), or the default store of `experiment`."""
    if store is None:
        if experiment is None:
            raise ValidationError("a store is needed: pass a path or a locator")
        store = default_store_path(experiment)
    return registry.open_store(store)


def prepare_sweep(
    experiment: Experiment,
    store: Store,
    *,
    resume: bool = True,
    chunk_size: int | None = None,
    derived: Sequence[Callable[..., Any]] = (),
    executor_name: str = "",
    dry_run: bool = False,
    executor_details: dict[str, Any] | None = None,
    check: Callable[[Experiment, Store, Sequence[int]], None] | None = None,
    outcome_metrics: Sequence[str] = (),
) -> Sweep:
    """Fingerprint the experiment, store it once, and work out which runs are left.

    `check(experiment, store, pending)`, when given, may refuse the sweep by raising, before
    its manifest is written (an executor's `check_submission`). `outcome_metrics` are the
    metrics completed runs' outcomes carry back to the driver (what a progress display
    shows)."""
    if not isinstance(experiment, Experiment):
        raise ValidationError(f"expected a metalab.Experiment, got {experiment!r}")
    experiment.prepare()
    source = provenance.source_file(experiment.operation.func)
    git_state = provenance.git_state_soon(source) if source else lambda: None
    blob = _serialize(experiment)
    key = experiment_key(blob)
    store.save_experiment(key, blob)
    execute.remember_experiment(store.locator, key, experiment)

    # kept in the store (hashed once per experiment); 16 bytes a run, not a string
    run_ids = run_ids_of(experiment, store)
    _warn_duplicates(experiment, run_ids)
    done = completed_mask(run_ids, _completed(store)) if resume else None
    pending = _pending(done, len(run_ids))
    skipped = len(run_ids) - len(pending)
    if done is not None and skipped:
        _warn_changed_code(experiment, store, run_ids, done)
    del done

    if check is not None and not dry_run:
        check(experiment, store, pending)

    git = git_state()
    options = RunOptions(
        resume=resume,
        git=git,
        codecs=tuple(user_codecs()),
        derived=tuple(derived),
        chunk_size=chunk_size,
        completed_records=not store.capabilities.columnar,
        outcome_metrics=tuple(outcome_metrics),
    )
    ref = SweepRef(
        store=store.locator, experiment_key=key, session=secrets.token_hex(8), options=options
    )

    manifest = experiment.manifest()
    manifest.update(
        experiment_key=key,
        session=ref.session,
        submitted_at=utc_now(),
        resume=resume,
        pending=len(pending),
        skipped=skipped,
        executor=executor_name,
        executor_details=executor_details or {},
        provenance={"git": git, **provenance.environment()},
    )
    if not dry_run:
        store.write_manifest(experiment.experiment_id, manifest)
    return Sweep(experiment, store, ref, run_ids, pending, skipped, manifest)


def _completed(store: Store) -> bytes | set[str]:
    """The run ids of the store's completed records: as 16 bytes each from a store that
    keeps a table (no string per run), else from `Store.scan`."""
    if store.capabilities.table:
        return cast(TableStore, store).completed_run_ids()
    return store.scan()[1]


def _pending(done: Any, total: int) -> Sequence[int]:
    """The indices of the runs not `done` (a numpy bool mask, or None: none done), ascending:
    a `range` when that is all of them, else an `array` (8 bytes an index where a list of
    ints takes about 40)."""
    if done is None or not done.any():
        return range(total)
    import numpy as np

    pending = array("q")
    pending.frombytes(np.flatnonzero(~done).astype(np.int64, copy=False).tobytes())
    return pending


def _warn_duplicates(experiment: Experiment, run_ids: RunIds) -> None:
    repeated = count_repeated(run_ids)
    if repeated:
        warnings.warn(
            MetalabWarning(
                f"{repeated} of the {len(run_ids)} runs of {experiment.experiment_id!r} repeat "
                "another run exactly (same params and seed replicate): each distinct run is "
                "executed and stored once. Remove duplicate parameter cases to silence this."
            ),
            stacklevel=4,
        )


def _serialize(experiment: Experiment) -> bytes:
    import cloudpickle

    try:
        return cloudpickle.dumps(experiment)
    except Exception as exc:
        raise ValidationError(
            f"experiment {experiment.experiment_id!r} cannot be serialized for workers "
            f"({type(exc).__name__}: {exc}). The operation, context and params travel to "
            "workers by pickle: create unpicklable objects (locks, connections, open files) "
            "inside the operation instead of referring to module-level ones."
        ) from exc


def _warn_changed_code(experiment: Experiment, store: Store, run_ids: RunIds, done: Any) -> None:
    code_hash = experiment.operation.code_hash
    earlier = store.manifests(experiment.experiment_id)
    # the latest submission's source is what the store was last warned about
    if not earlier or earlier[-1].get("operation", {}).get("code_hash") == code_hash:
        return
    import numpy as np

    completed = (run_ids[int(i)] for i in np.flatnonzero(done))
    changed = sum(
        1
        for record in store.get_records(completed)
        if record.get("provenance", {}).get("code_hash") != code_hash
    )
    if changed:
        warnings.warn(
            CodeChangedWarning(
                f"{changed} completed run(s) of {experiment.experiment_id!r} in this store were "
                f"made by a different source of operation {experiment.operation.name!r}; they are "
                "kept and skipped. Bump the experiment's version to re-run them."
            ),
            stacklevel=4,
        )
