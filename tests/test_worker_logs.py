"""A local cluster's worker that closes while its heartbeat is on the wire does not log that
heartbeat's failure as an error (it would print a traceback after a sweep ended as planned);
the same failure while the worker runs is still logged."""

from __future__ import annotations

import asyncio
import logging

import pytest

pytest.importorskip("distributed")

from distributed import Scheduler, Worker

from metalab.executors.worker_logs import HEARTBEAT_FAILED, WORKER_LOGGER, QuietClose


class _Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def _heartbeat_on_the_wire(plugins: list, close: bool) -> list[str]:
    """Start a heartbeat the scheduler answers late; close the worker meanwhile, or cut the
    worker's connections while it runs; return what the worker's logger emitted."""
    handler = _Messages()
    logger = logging.getLogger(WORKER_LOGGER)
    logger.addHandler(handler)
    try:
        async with Scheduler(dashboard_address=":0") as scheduler:
            answer = scheduler.handlers["heartbeat_worker"]

            async def late(**kwargs):
                await asyncio.sleep(2)
                return answer(**kwargs)

            scheduler.handlers["heartbeat_worker"] = late
            async with Worker(scheduler.address, plugins=plugins, dashboard=False) as worker:
                heartbeat = asyncio.create_task(worker.heartbeat())
                await asyncio.sleep(0.3)
                if close:
                    await worker.close()
                else:
                    await worker.rpc.close()  # the connection dies under a running worker
                await heartbeat
                assert close or worker.status.name == "running"
    finally:
        logger.removeHandler(handler)
    return handler.messages


def test_a_closing_worker_does_not_log_the_heartbeat_its_close_cut():
    assert HEARTBEAT_FAILED in asyncio.run(_heartbeat_on_the_wire([], close=True))
    assert HEARTBEAT_FAILED not in asyncio.run(_heartbeat_on_the_wire([QuietClose()], close=True))


def test_a_running_worker_still_logs_a_failed_heartbeat():
    assert HEARTBEAT_FAILED in asyncio.run(_heartbeat_on_the_wire([QuietClose()], close=False))
