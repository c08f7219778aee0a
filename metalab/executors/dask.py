"""`DaskExecutor`: runs sweeps on a Dask cluster, a local one by default.

`ThreadExecutor` and `ProcessExecutor` are presets: a local cluster of threads in this process,
or of worker processes.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from .. import config, registry
from ..contracts import ExecutorBase, Sink
from ..errors import ExecutorError, ValidationError
from ..sweep import Sweep
from ..tasks import AdaptiveChunks, check_chunk_size, run_chunk, task_prefix
from .local_clusters import _local, _require_distributed


class DaskExecutor(ExecutorBase):
    """Run a sweep on Dask: a `distributed.Client`, a cluster, or a local cluster it starts.

    With nothing given it uses the active `distributed` client if there is one, else a
    `LocalCluster` on 127.0.0.1: started by the first sweep, kept for the next sweeps in this
    process and closed after `metalab.dask.local-cluster-idle-timeout` idle seconds or at exit.
    Its scheduler, workers and dashboards listen on 127.0.0.1 only (the dashboard elsewhere
    only when `dashboard_address` says so).
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
            _check_count(name, value)
        if not isinstance(processes, bool):
            raise ValidationError(f"processes must be True or False, got {processes!r}")
        if dashboard_address is not None and not isinstance(dashboard_address, str):
            raise ValidationError(
                f"dashboard_address must be a string such as '127.0.0.1:8787' or None, "
                f"got {dashboard_address!r}"
            )
        _check_target(client_or_cluster)
        check_chunk_size(chunk_size)
        config.check()  # metalab's Dask settings (made by metalab.run() before any store)
        self.target = client_or_cluster
        self.cluster_options = {
            "n_workers": n_workers,
            "threads_per_worker": threads_per_worker,
            "processes": processes,
            "dashboard_address": dashboard_address,
        }
        self.chunk_size = chunk_size
        self._futures: dict[str, list[Any]] = {}  # per sweep (session): one executor may
        self._lock = threading.Lock()  # serve several sweeps at once
        self._cancelled: set[str] = set()
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
            client = distributed.Client(target, set_as_default=False)
            return client, [client]
        try:
            return distributed.default_client(), []
        except ValueError:
            pass
        return self._local_cluster()

    def _local_cluster(self) -> tuple[Any, list[Any]]:
        """A local cluster: the one kept from an earlier sweep with these options, or a new one."""
        options = {k: v for k, v in self.cluster_options.items() if v is not None}
        options.setdefault("dashboard_address", config.get("dask.dashboard-address"))
        if options.get("processes", True):
            options.setdefault("threads_per_worker", 1)
            options["host"] = "127.0.0.1"  # scheduler and workers, their HTTP servers too
        else:
            options.setdefault("n_workers", 1)  # threads in this process talk in-process
            # an in-process worker has no host to bind its HTTP server to: without an
            # address it would listen on every interface
            options["worker_dashboard_address"] = "127.0.0.1:0"
        return _local.acquire(options)

    def check_submission(self, experiment: Any, store: Any, pending: Sequence[int]) -> None:
        """Refuse a sweep while a metalab Dask setting is wrong (it may have changed since
        this executor was made)."""
        config.check()

    # ---------------------------------------------------------------- execution
    def open(self, sweep: Sweep, sink: Sink) -> None:
        """Connect (starting a local cluster if needed) before the sweep's thread starts."""
        client, owned = self._connect()
        self._cancelled.discard(sweep.session)
        self._connections[sweep.session] = (client, owned)
        dashboard = registry.dashboard()
        link = dashboard.link(client) if dashboard is not None else None
        page = bool(link) and dashboard is not None and dashboard.register(client, sweep)
        if page and dashboard is not None and link:
            link = dashboard.page_link(link)
        sink.dashboard(link, page)

    def close(self, sweep: Sweep) -> None:
        """Close what `open` started for `sweep`; idempotent."""
        client, owned = self._connections.pop(sweep.session, (None, []))
        dashboard = registry.dashboard()
        if client is not None and dashboard is not None:
            dashboard.unregister(client, sweep.session)
        for item in owned:
            item.close()

    def execute(self, sweep: Sweep, indices: Sequence[int], sink: Sink) -> None:
        """Submit `indices` as Dask tasks and report each task's outcomes as it finishes."""
        if sweep.session not in self._connections:
            self.open(sweep, sink)
        client, _ = self._connections[sweep.session]
        self._run(client, sweep, indices, sink)

    def _run(self, client: Any, sweep: Sweep, indices: Sequence[int], sink: Sink) -> None:
        """Keep a few tasks in flight, sized by `AdaptiveChunks`, until every index reported."""
        from distributed import as_completed

        chunker = AdaptiveChunks(
            indices,
            fixed=self.chunk_size or sweep.ref.options.chunk_size,
            target_seconds=config.get("dask.target-task-seconds"),
            max_chunk=config.get("dask.max-chunk"),
        )
        prefix = task_prefix(sweep.experiment.name)
        in_flight: dict[Any, list[int]] = {}
        finished = as_completed(loop=client.loop)

        session = sweep.session
        threads = {"n": 1, "at": -1.0}

        def worker_threads() -> int:
            # a scheduler round trip: asked at most once a second, not after every task
            now = time.monotonic()
            if now - threads["at"] >= 1.0:
                threads["n"], threads["at"] = max(1, sum(client.nthreads().values())), now
            return int(threads["n"])

        def submit_more() -> None:
            workers = worker_threads()
            limit = max(2 * workers, config.get("dask.min-in-flight"))
            while chunker and len(in_flight) < limit and session not in self._cancelled:
                group = chunker.take(workers)
                key = (prefix, session, group[0], next(self._keys))
                future = client.submit(run_chunk, sweep.ref, group, key=key, pure=False)
                in_flight[future.key] = group
                with self._lock:
                    self._futures.setdefault(session, []).append(future)
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
                self._futures[session].remove(future)
            submit_more()
        with self._lock:
            self._futures.pop(session, None)

    def cancel(self, session: str | None = None) -> None:
        """Cancel the tasks of sweep `session` (of every sweep, when None) that have not
        finished; their running runs see the store's cancel flag. Idempotent."""
        with self._lock:
            sessions = [session] if session is not None else list(self._futures)
            self._cancelled.update(sessions)
            futures = [f for s in sessions for f in self._futures.get(s, [])]
        if futures:
            futures[0].client.cancel(futures)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r})"


def _check_count(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValidationError(f"{name} must be a positive integer or None, got {value!r}")


def _check_target(target: Any) -> None:
    """Refuse, when the executor is made, what is neither a Client nor a Dask cluster."""
    if target is None or hasattr(target, "scheduler_address"):
        return  # a cluster
    if "distributed" in sys.modules and isinstance(target, sys.modules["distributed"].Client):
        return
    raise ValidationError(
        f"DaskExecutor needs a distributed.Client, a Dask cluster or None (a local cluster), "
        f"got {target!r} (for a scheduler's address, pass distributed.Client(address))"
    )


def _worker_died(error: BaseException) -> bool:
    from distributed import KilledWorker
    from distributed.comm.core import CommClosedError

    return isinstance(error, (KilledWorker, CommClosedError))


class ThreadExecutor(DaskExecutor):
    """A local Dask cluster of `max_workers` threads in this process."""

    def __init__(self, max_workers: int | None = None, **options: Any):
        _check_count("max_workers", max_workers)
        super().__init__(
            None, n_workers=1, threads_per_worker=max_workers, processes=False, **options
        )

    def _connect(self):
        _require_distributed()
        return self._local_cluster()


class ProcessExecutor(DaskExecutor):
    """A local Dask cluster of `max_workers` single-threaded worker processes."""

    def __init__(self, max_workers: int | None = None, **options: Any):
        _check_count("max_workers", max_workers)
        super().__init__(
            None, n_workers=max_workers, threads_per_worker=1, processes=True, **options
        )

    _connect = ThreadExecutor._connect


__all__ = ["DaskExecutor", "ExecutorError", "ProcessExecutor", "ThreadExecutor"]
