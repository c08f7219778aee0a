"""`DaskExecutor`: runs sweeps on a Dask cluster, a local one by default.

`ThreadExecutor` and `ProcessExecutor` are presets: a local cluster of threads in this process,
or of worker processes.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import itertools
import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from typing import Any

from .. import config, registry
from ..contracts import ExecutorBase, Sink
from ..errors import ExecutorError, ValidationError, require
from ..sweep import Sweep
from ..tasks import AdaptiveChunks, check_chunk_size, run_chunk, task_prefix
from .local_dashboard import start_alongside

logger = logging.getLogger("metalab")

START_GRACE_SECONDS = 5.0
"""How long a Ctrl-C while a local cluster starts waits for the start to finish, so that the
cluster closes cleanly (see `_LocalClusters._start`)."""


def _require_distributed():
    return require("distributed", "full", "running on Dask")


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


@contextlib.contextmanager
def _main_module_not_rerun():
    """Start worker processes without re-running the user's script in each of them.

    Worker processes are spawned; spawn re-executes `__main__` from its file so functions
    defined there can be found. metalab ships operations by value (cloudpickle), so workers
    do not need it, and a script without an `if __name__ == "__main__":` guard would
    otherwise start a sweep inside every worker. Only worker start-up is affected.
    """
    main = sys.modules.get("__main__")
    saved: dict[str, Any] = {
        k: main.__dict__[k] for k in ("__file__", "__spec__") if main and k in main.__dict__
    }
    try:
        if main is not None and "__file__" in saved:
            del main.__file__
            main.__spec__ = None
        yield
    finally:
        if main is not None:
            main.__dict__.update(saved)


class _Lease:
    """What `DaskExecutor.close` calls to hand a kept local cluster back, with the idle
    timeout in force when the sweep started (a `dask.config.set` block around
    `metalab.run()` has ended by the time the sweep does)."""

    def __init__(self, pool: _LocalClusters, key: tuple, idle_timeout: float):
        self._pool, self._key, self._timeout = pool, key, idle_timeout

    def close(self) -> None:
        self._pool.release(self._key, self._timeout)


class _LocalClusters:
    """The local clusters metalab started in this process, kept between sweeps.

    Starting a local cluster takes seconds (worker processes import Python, Dask and NumPy),
    which would dominate every short sweep and every call in a notebook. A cluster metalab
    started is therefore kept for the next `metalab.run` with the same options, and closed
    after `metalab.dask.local-cluster-idle-timeout` seconds without a sweep, or at exit
    (0 closes it as soon as its sweep ends). Before a kept cluster of worker processes is
    reused, its workers are restarted if a module of the user's own code changed on disk
    since the last sweep (or `sys.path` changed), so they never run a stale copy of the
    operation.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple, dict[str, Any]] = {}
        self._atexit = False

    def acquire(self, options: dict[str, Any]) -> tuple[Any, list[Any]]:
        distributed = _require_distributed()
        idle_timeout = _idle_timeout()  # as set now: the sweep's end may be outside a block
        key = tuple(sorted(options.items()))
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and not _alive(entry["client"], entry["cluster"]):
                self._entries.pop(key)
                _close_quietly(entry["client"], entry["cluster"])
                entry = None
            if entry is None:
                entry = self._start(distributed, key, options)
            else:
                if entry["timer"] is not None:
                    entry["timer"].cancel()
                    entry["timer"] = None
                stamps = _user_module_stamps()
                if options.get("processes", True) and entry["users"] == 0:
                    changed = sorted(
                        name
                        for name, stamp in stamps.items()
                        if entry["modules"].get(name, stamp) != stamp
                    )
                    if changed:
                        logger.info("restarting local workers: %s changed", ", ".join(changed))
                        if not _restart(entry["client"]):
                            # workers that do not come back: a new cluster instead
                            self._entries.pop(key)
                            _close_quietly(entry["client"], entry["cluster"])
                            entry = self._start(distributed, key, options)
                    entry["modules"] = stamps
                # while another sweep uses the workers they cannot restart: the change stays
                # pending (the old stamps are kept) until a sweep finds the cluster idle
            entry["users"] += 1
        return entry["client"], [_Lease(self, key, idle_timeout)]

    def _start(self, distributed: Any, key: tuple, options: dict[str, Any]) -> dict[str, Any]:
        """Start a cluster in a thread of its own while this one waits for it.

        A start cut short cannot be closed cleanly: its nannies are still starting, and
        distributed, at exit, reports every one of them that then failed. So a Ctrl-C while
        the cluster starts lets the start finish (for up to `START_GRACE_SECONDS`; a second
        Ctrl-C stops waiting), closes the cluster as any sweep's end does, and only then
        raises. A start that does not finish in time is cut short and closed as it stands.
        """
        from distributed.deploy.spec import SpecCluster

        earlier = set(SpecCluster._instances)
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def start() -> None:
            try:
                outcome["entry"] = self._start_cluster(distributed, key, options)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                outcome["error"] = exc
            finally:
                done.set()

        # an event, not `Thread.join`: a join cut short by Ctrl-C may take the thread for
        # ended (CPython gh-90882)
        threading.Thread(target=start, name="metalab-cluster-start", daemon=True).start()
        try:
            done.wait()
        except KeyboardInterrupt:
            with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: stop waiting
                done.wait(START_GRACE_SECONDS)
            entry = outcome.get("entry")
            if entry is not None:
                self._entries.pop(key, None)
                _close_quietly(entry["client"], entry["cluster"])
            else:
                # what was started is stopped here, so that distributed's own clean-up at
                # exit does not trip over workers half started
                for cluster in set(SpecCluster._instances) - earlier:
                    with contextlib.suppress(Exception):
                        cluster.close(timeout=5)
                    SpecCluster._instances.discard(cluster)
            raise
        if "error" in outcome:
            raise outcome["error"]
        return outcome["entry"]

    def _start_cluster(
        self, distributed: Any, key: tuple, options: dict[str, Any]
    ) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if options.get("processes", True):
            from .interrupt import PRELOAD, IgnoreInterrupt
            from .worker_logs import QuietClose

            # set up by each worker as it starts (and restarts): no round trip afterwards
            extra["plugins"] = (IgnoreInterrupt(), QuietClose())
            # ... and each worker process starts with Ctrl-C held back until then
            extra.update(_nanny_preloads(PRELOAD))
        # the dashboard is imported while the worker processes start, not before
        options, dashboard = start_alongside(options)
        import dask

        quiet = _quiet()  # read as the scheduler, nannies and workers are made
        if quiet and options.get("processes", True):
            # what each nanny hands to the worker processes it starts (and restarts): a copy,
            # since a nanny's copy of the settings shares their nested parts
            with dask.config.set(quiet):
                extra["config"] = {"distributed": copy.deepcopy(dask.config.get("distributed"))}
        with _main_module_not_rerun(), warnings.catch_warnings(), dask.config.set(quiet):
            # a kept cluster may hold the configured dashboard port: take another
            warnings.filterwarnings("ignore", "Port .* is already in use", UserWarning)
            cluster = distributed.LocalCluster(silence_logs=logging.ERROR, **options, **extra)
        if dashboard is not None:
            dashboard.connect(cluster)
        client = distributed.Client(cluster, set_as_default=False)
        entry = {"cluster": cluster, "client": client, "users": 0, "timer": None}
        entry["modules"] = _user_module_stamps()
        self._entries[key] = entry
        if not self._atexit:
            atexit.register(self.close_all)
            self._atexit = True
        return entry

    def release(self, key: tuple, timeout: float) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return
            entry["users"] -= 1
            if entry["users"] > 0:
                return
            if timeout <= 0:
                self._entries.pop(key)
            else:
                timer = threading.Timer(timeout, self._expire, (key, entry))
                timer.daemon = True
                entry["timer"] = timer
                timer.start()
                return
        _close_quietly(entry["client"], entry["cluster"])

    def _expire(self, key: tuple, entry: dict[str, Any]) -> None:
        with self._lock:
            if self._entries.get(key) is not entry or entry["users"] > 0:
                return
            self._entries.pop(key)
        _close_quietly(entry["client"], entry["cluster"])

    def close_all(self) -> None:
        """Close every kept cluster that no sweep is using (all of them at exit)."""
        with self._lock:
            idle = [k for k, e in self._entries.items() if e["users"] == 0]
            entries = [self._entries.pop(k) for k in idle]
        for entry in entries:
            if entry["timer"] is not None:
                entry["timer"].cancel()
            _close_quietly(entry["client"], entry["cluster"])


QUIET_INTERVALS = {
    "distributed.admin.tick.interval": ("20ms", "200ms", "ms"),
    "distributed.admin.system-monitor.interval": ("500ms", "1s", "seconds"),
}
"""Dask's default, what metalab's local cluster uses: how often each of its servers (the
scheduler, each nanny and each worker) checks that its event loop is responsive, and samples
the CPU, memory and network use the dashboard plots. Dask's defaults keep an idle local
cluster of two workers busy for about 5% of a core (1.5% with these), and take that from the
runs while a sweep runs. (The third item: the unit Dask reads a bare number in.)"""


def _quiet() -> dict[str, str]:
    """The `QUIET_INTERVALS` of the settings left at Dask's default (a value the user set
    is kept)."""
    import dask
    from dask.utils import parse_timedelta

    return {
        key: quiet
        for key, (default, quiet, unit) in QUIET_INTERVALS.items()
        if parse_timedelta(dask.config.get(key, default=default), unit)
        == parse_timedelta(default, unit)
    }


def _nanny_preloads(preload: str) -> dict[str, Any]:
    """The `LocalCluster` options that run `preload` in each nanny after the nanny preloads
    of the user's Dask settings (`distributed.nanny.preload` and `preload-argv`)."""
    import dask

    configured = dask.config.get("distributed.nanny.preload", default=[]) or []
    preloads = [configured] if isinstance(configured, str) else list(configured)
    argv = list(dask.config.get("distributed.nanny.preload-argv", default=[]) or [])
    if argv and not isinstance(argv[0], str):  # a list of arguments per preload
        argv.append([])
    return {"preload_nanny": [*preloads, preload], "preload_nanny_argv": argv}


def _restart(client: Any) -> bool:
    """Restart the workers of a kept cluster (without re-running the user's script in
    them); False when they do not come back in time."""
    try:
        with _main_module_not_rerun():
            client.restart(timeout=60)
    except Exception:  # noqa: BLE001 - whatever failed, a new cluster replaces it
        logger.warning("local workers did not restart in time; starting a new cluster")
        return False
    return True


def _idle_timeout() -> float:
    return float(config.seconds_of(config.get("dask.local-cluster-idle-timeout")) or 0.0)


def _alive(client: Any, cluster: Any) -> bool:
    return getattr(client, "status", "") == "running" and "running" in str(
        getattr(cluster, "status", "")
    )


def _close_quietly(client: Any, cluster: Any) -> None:
    for item in (client, cluster):
        try:
            item.close()
        except Exception:  # closing at exit or after a crash
            logger.debug("closing %r failed", item, exc_info=True)


def _user_module_stamps() -> dict[str, Any]:
    """(mtime, size) of the source file of every imported module outside the installation,
    and `sys.path` (restarted workers are spawned with the current one)."""
    import sysconfig

    installed = tuple(
        {os.path.realpath(p) for k, p in sysconfig.get_paths().items() if k.endswith("lib")}
        | {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}
    )
    stamps: dict[str, Any] = {"sys.path": tuple(sys.path)}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path or not path.endswith(".py") or path.startswith(installed):
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        stamps[name] = (st.st_mtime_ns, st.st_size)
    return stamps


_local = _LocalClusters()


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
