"""The worker processes of a local cluster leave Ctrl-C to the driver.

Ctrl-C in a terminal reaches every process of its foreground group, a local cluster's worker
processes too. The driver stops the sweep (recording the runs that did not run) and closes
its workers; a worker must not also print a KeyboardInterrupt traceback, whether the Ctrl-C
comes while it runs or while it still starts (importing distributed takes it half a second).

So each nanny, as it starts (`dask_setup`, a nanny preload, on the thread of the driver's
event loop), blocks SIGINT in that thread: the worker processes it starts, then and after a
restart, inherit the blocked signal from their first instruction, and a Ctrl-C meanwhile
waits. `IgnoreInterrupt` then makes the worker ignore SIGINT, which discards a Ctrl-C that
waited, and unblocks it. The driver's main thread, where Python handles signals, never
blocks it. Imported only where a local cluster is started, as it imports `distributed`.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

_MASKS = hasattr(signal, "pthread_sigmask")
"""Whether threads have signal masks here (not on Windows, where a worker's start is left as
it is)."""


class IgnoreInterrupt(WorkerPlugin):
    """Make the worker's process ignore SIGINT (set up again on every restarted worker)."""

    name = "metalab-ignore-interrupt"
    idempotent = True

    def setup(self, worker: Any) -> None:
        """Ignore SIGINT in this worker process (only its main thread may set handlers),
        then unblock it there (see `dask_setup`)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            if _MASKS:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


PRELOAD = __name__
"""This module as a nanny preload (`LocalCluster(preload_nanny=[PRELOAD])`)."""


def dask_setup(nanny: Any) -> None:
    """Block SIGINT in the thread that runs `nanny` (the driver's event loop) before it starts
    its worker process, so that the process starts with SIGINT blocked.

    multiprocessing's resource tracker, started by the first queue a nanny makes, unblocks
    SIGINT in the thread that starts it: it is started first."""
    if not _MASKS:
        return
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
