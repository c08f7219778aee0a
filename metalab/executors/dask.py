"""`DaskExecutor`: runs sweeps on a Dask cluster, a local one by default.

`ThreadExecutor` and `ProcessExecutor` are presets: a local cluster of threads in this process,
or of worker processes.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import sys
import threading
from typing import Any

from .. import config
from ..errors import ExecutorError, ValidationError
from ..graph import AdaptiveChunks, run_chunk, task_prefix


def _require_distributed():
    from ..errors import require

    return require("distributed", "full", "running on Dask")


class DaskExecutor:
    """Run a sweep on Dask: a `distributed.Client`, a cluster, or a local cluster it starts.

    With nothing given it uses the active `distributed` client if there is one, else starts a
    `LocalCluster` (dashboard on 127.0.0.1) for the sweep and closes it afterwards.
    """

    synchronous = False

    def __init__(
        self,
        client_or_cluster: Any = None,
        *,
        n_workers: int | None = None,
        threads_per_worker: int | None = None,
        processes: bool = True,
        dashboard_address: str | None = None,
        chunk_size: int | None = None,
    ):
        for name, value in (("n_workers", n_workers), ("threads_per_worker", threads_per_worker)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValidationError(f"{name} must be a positive integer or None, got {value!r}")
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValidationError(
                f"chunk_size must be a positive integer or None, got {chunk_size!r}"
            )
        self.target = client_or_cluster
        self.cluster_options = {
            "n_workers": n_workers,
            "threads_per_worker": threads_per_worker,
            "processes": processes,
            "dashboard_address": dashboard_address,
        }
        self.chunk_size = chunk_size
        self._futures: list[Any] = []
        self._lock = threading.Lock()
        self._cancelled = False
        self._connections: dict[str, tuple[Any, list[Any]]] = {}
        self._keys = itertools.count()

    # ---------------------------------------------------------------- connection
    def _connect(self) -> tuple[Any, list[Any]]:
        """Return (client, things to close when done)."""
        distributed = _require_distributed()
        target = self.target
        if isinstance(target, distributed.Client):
            return target, []
        if target is not None:
            if not hasattr(target, "scheduler_address"):
                raise ValidationError(
                    f"DaskExecutor needs a distributed.Client or a Dask cluster, got {target!r}"
                )
            client = distributed.Client(target, set_as_default=False)
            return client, [client]
        try:
            return distributed.default_client(), []
        except ValueError:
            pass
        cluster = self._start_local_cluster(distributed)
        client = distributed.Client(cluster, set_as_default=False)
        return client, [client, cluster]

    def _start_local_cluster(self, distributed):
        options = {k: v for k, v in self.cluster_options.items() if v is not None}
        options.setdefault("dashboard_address", config.get("dask.dashboard-address"))
        if options.get("processes", True):
            options.setdefault("threads_per_worker", 1)
            options["host"] = "127.0.0.1"
        else:
            options.setdefault("n_workers", 1)  # threads in this process talk in-process
        with _main_module_not_rerun():
            return distributed.LocalCluster(silence_logs=logging.ERROR, **options)

    # ---------------------------------------------------------------- execution
    def open(self, plan: Any, sink: Any) -> None:
        """Connect (starting a local cluster if needed) before the sweep's thread starts."""
        client, owned = self._connect()
        self._cancelled = False
        self._connections[plan.job.session] = (client, owned)
        sink.dashboard_link = _dashboard(client)

    def close(self, plan: Any) -> None:
        """Close what `open` started for `plan`; idempotent."""
        _, owned = self._connections.pop(plan.job.session, (None, []))
        for item in owned:
            item.close()

    def execute(self, plan: Any, indices: list[int], sink: Any) -> None:
        """Submit `indices` as Dask tasks and report each task's outcomes as it finishes."""
        if plan.job.session not in self._connections:
            self.open(plan, sink)
        client, _ = self._connections[plan.job.session]
        self._run(client, plan, indices, sink)

    def _run(self, client, plan, indices, sink) -> None:
        """Keep a few tasks in flight, sized by `AdaptiveChunks`, until every index reported."""
        from distributed import as_completed

        chunker = AdaptiveChunks(
            indices,
            fixed=self.chunk_size or plan.job.options.get("chunk_size"),
            target_seconds=config.get("dask.target-task-seconds"),
            max_chunk=config.get("dask.max-chunk"),
        )
        prefix = task_prefix(plan.experiment.name)
        in_flight: dict[Any, list[int]] = {}
        finished = as_completed(loop=client.loop)

        def submit_more() -> None:
            workers = max(1, sum(client.nthreads().values()))
            limit = max(2 * workers, config.get("dask.min-in-flight"))
            while chunker and len(in_flight) < limit and not self._cancelled:
                group = chunker.take(workers)
                key = (prefix, plan.job.session, group[0], next(self._keys))
                future = client.submit(run_chunk, plan.job, group, key=key, pure=False)
                in_flight[future.key] = group
                with self._lock:
                    self._futures.append(future)
                finished.add(future)

        submit_more()
        for future in finished:
            group = in_flight.pop(future.key)
            if future.status == "finished":
                outcomes = future.result()
                chunker.observe(outcomes)
                sink.outcomes(outcomes)
            elif future.status == "error":
                error = future.exception()
                sink.lost(group, error, worker_died=_worker_died(error))
            # cancelled futures: the handle records their runs cancelled
            with self._lock:
                self._futures.remove(future)
            submit_more()

    def cancel(self) -> None:
        """Cancel tasks that have not finished; running runs see the store's cancel flag."""
        with self._lock:
            self._cancelled = True
            futures = list(self._futures)
        if futures:
            futures[0].client.cancel(futures)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r})"


@contextlib.contextmanager
def _main_module_not_rerun():
    """Start worker processes without re-running the user's script in each of them.

    Worker processes are spawned; spawn re-executes `__main__` from its file so functions
    defined there can be found. metalab ships operations by value (cloudpickle), so workers
    do not need it, and a script without an `if __name__ == "__main__":` guard would
    otherwise start a sweep inside every worker. Only worker start-up is affected.
    """
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if main and k in main.__dict__}
    try:
        if main is not None and "__file__" in saved:
            del main.__file__
            main.__spec__ = None
        yield
    finally:
        if main is not None:
            main.__dict__.update(saved)


def _worker_died(error: BaseException) -> bool:
    from distributed import KilledWorker
    from distributed.comm.core import CommClosedError

    return isinstance(error, (KilledWorker, CommClosedError))


def _dashboard(client: Any) -> str | None:
    try:
        return client.dashboard_link
    except Exception:  # noqa: BLE001 - a cluster without a dashboard is fine
        return None


class ThreadExecutor(DaskExecutor):
    """A local Dask cluster of `max_workers` threads in this process."""

    def __init__(self, max_workers: int | None = None, **options: Any):
        if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 1):
            raise ValidationError(f"max_workers must be a positive integer, got {max_workers!r}")
        super().__init__(
            None, n_workers=1, threads_per_worker=max_workers, processes=False, **options
        )

    def _connect(self):
        distributed = _require_distributed()
        cluster = self._start_local_cluster(distributed)
        client = distributed.Client(cluster, set_as_default=False)
        return client, [client, cluster]


class ProcessExecutor(DaskExecutor):
    """A local Dask cluster of `max_workers` single-threaded worker processes."""

    def __init__(self, max_workers: int | None = None, **options: Any):
        if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 1):
            raise ValidationError(f"max_workers must be a positive integer, got {max_workers!r}")
        super().__init__(
            None, n_workers=max_workers, threads_per_worker=1, processes=True, **options
        )

    _connect = ThreadExecutor._connect


__all__ = ["DaskExecutor", "ExecutorError", "ProcessExecutor", "ThreadExecutor"]
