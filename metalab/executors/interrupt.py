"""`IgnoreInterrupt`: the worker processes of a local cluster leave Ctrl-C to the driver.

Ctrl-C in a terminal reaches every process of its foreground group, a local cluster's worker
processes too. The driver stops the sweep (recording the runs that did not run) and closes
its workers; without this plugin each worker would also print a KeyboardInterrupt traceback.
Imported only where a local cluster is started, as it imports `distributed`.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin


class IgnoreInterrupt(WorkerPlugin):
    """Make the worker's process ignore SIGINT (set up again on every restarted worker)."""

    name = "metalab-ignore-interrupt"
    idempotent = True

    def setup(self, worker: Any) -> None:
        """Ignore SIGINT in this worker process (only its main thread may set handlers)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
