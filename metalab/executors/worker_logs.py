"""The workers of a local cluster do not log, as an error, a heartbeat their own close cut.

A worker that closes while its heartbeat to the scheduler is on the wire closes its
connections, which ends that heartbeat with `CommClosedError`; distributed then logs "Failed
to communicate with scheduler during heartbeat." at ERROR level, with a traceback of some
thirty lines. At the end of a sweep, or after Ctrl-C and metalab's one line, the user would
read a traceback for a close that went as planned. `QuietClose` drops that one message while
its worker is closing or closed; the same failure while the worker runs is still logged.

Imported only where a local cluster is started, as it imports `distributed`.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from distributed.core import Status
from distributed.diagnostics.plugin import WorkerPlugin

HEARTBEAT_FAILED = "Failed to communicate with scheduler during heartbeat."
"""The message distributed's worker logs when a heartbeat fails (`Worker.heartbeat`)."""

WORKER_LOGGER = "distributed.worker"

_CLOSING = frozenset({Status.closing, Status.closed})


class _HeartbeatCutByClose(logging.Filter):
    """Drop the failed-heartbeat message while `worker` closes."""

    def __init__(self, worker: Any):
        super().__init__()
        self._worker = weakref.ref(worker)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != HEARTBEAT_FAILED:
            return True
        worker = self._worker()
        return worker is None or worker.status not in _CLOSING


class QuietClose(WorkerPlugin):
    """Keep a closing worker's cut heartbeat out of the logs (set up on every worker process,
    restarted ones too: one worker per process, so the filter knows whose message it is).

    The filter stays on when the worker's plugins are torn down, which its close does before
    it closes its connections; it lets everything through once its worker is gone."""

    name = "metalab-quiet-close"
    idempotent = True

    def setup(self, worker: Any) -> None:
        """Filter the worker's logger for `worker`, instead of a closed worker's filter."""
        logger = logging.getLogger(WORKER_LOGGER)
        for old in [f for f in logger.filters if isinstance(f, _HeartbeatCutByClose)]:
            logger.removeFilter(old)
        logger.addFilter(_HeartbeatCutByClose(worker))
