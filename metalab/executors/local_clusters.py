"""The local Dask clusters metalab starts for its sweeps, kept between sweeps in a process.

`DaskExecutor` (and its presets `ThreadExecutor` and `ProcessExecutor`) given no cluster ask
`_local` for one: a cluster started with the same options before is reused, restarted when
the user's code changed on disk, and closed after an idle timeout or at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import logging
import os
import sys
import threading
import warnings
from typing import Any

from .. import config
from ..errors import require
from .local_dashboard import start_alongside

logger = logging.getLogger("metalab")

START_GRACE_SECONDS = 5.0
"""How long a Ctrl-C while a local cluster starts waits for the start to finish, so that the
cluster closes cleanly (see `_LocalClusters._start`)."""


def _require_distributed():
    return require("distributed", "full", "running on Dask")


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
        self._log_levels: dict[logging.Handler, int] | None = None
        """The levels of the log handlers before the first of the clusters alive started."""

    def note_log_levels(self) -> None:
        """Note the log handlers' levels, unless a cluster of this process holds them."""
        if self._log_levels is None or not self._entries:
            self._log_levels = {handler: handler.level for handler in _log_handlers()}

    def settle_log_levels(self, handlers: list[logging.StreamHandler]) -> None:
        """After a close: the levels noted before the first cluster started when no cluster
        is left, else ERROR (what the clusters alive hold)."""
        if self._entries:
            for handler in handlers:
                handler.setLevel(max(logging.ERROR, handler.level))
            return
        noted = self._log_levels or {}
        for handler in handlers:
            handler.setLevel(noted.get(handler, handler.level))

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
        self.note_log_levels()  # what the clusters' closes put back
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
    """Close a local cluster metalab started (and its client) without a word.

    Each local cluster holds the log handlers of distributed and bokeh at ERROR from its
    start to its close, then puts back the levels it found. A second cluster, started while
    the first held them, found ERROR and puts back nothing, so the first one's close let the
    second's close print its INFO lines (at exit, say). So every close is made with them
    held at ERROR, and the levels found before metalab's first cluster started come back
    once none is left."""
    handlers = _log_handlers()
    for handler in handlers:
        handler.setLevel(max(logging.ERROR, handler.level))
    try:
        for item in (client, cluster):
            try:
                item.close()
            except Exception:  # closing at exit or after a crash
                logger.debug("closing %r failed", item, exc_info=True)
    finally:
        _local.settle_log_levels(handlers)


_LOG_ROOTS = ("distributed", "bokeh")


def _log_handlers() -> list[logging.StreamHandler]:
    """The stream handlers a local cluster's `silence_logs` sets the level of."""
    return [
        handler
        for root in _LOG_ROOTS
        for handler in logging.getLogger(root).handlers
        if isinstance(handler, logging.StreamHandler)
    ]


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
