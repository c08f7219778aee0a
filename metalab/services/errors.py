"""Errors of the service manager: all `metalab.MetalabError`s, each naming what went wrong."""

from __future__ import annotations

from ..errors import MetalabError


class ServiceError(MetalabError):
    """A service could not be started, stopped or inspected; the message says why."""


class PostgresNotFoundError(ServiceError, FileNotFoundError):
    """The PostgreSQL server binaries are missing; the message names where metalab looked."""


class PortInUseError(ServiceError):
    """The port asked for is taken; `host` and `port` name it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        super().__init__(
            f"port {port} on {host} is already in use: choose another one with --port "
            "(port=...), or leave it out to get a free port"
        )


class ServiceTimeoutError(ServiceError, TimeoutError):
    """A service did not start or stop within the time allowed."""
