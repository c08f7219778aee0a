"""Addresses and ports of a PostgreSQL server: what it listens on, and whether it answers.

Needs no PostgreSQL programs, so it works on a login node without them.
"""

from __future__ import annotations

import socket
import struct

from ..errors import PortInUseError

ALL_ADDRESSES = ("*", "0.0.0.0", "::", "")
"""Values of `host` meaning: listen on every address."""
_LOOPBACK = ("127.0.0.1", "::1", "localhost")
_SSL_REQUEST = struct.pack("!ii", 8, 80877103)


def listen_setting(host: str) -> str:
    """Return the `listen_addresses` value for `host`: `*` for every address."""
    return "*" if host in ALL_ADDRESSES else host


def is_loopback(host: str) -> bool:
    """Return whether the server listening on `host` can only be reached from this machine."""
    return host in _LOOPBACK or host.startswith("127.")


def free_port(host: str) -> int:
    """Return a TCP port nobody listens on at `host` now (the kernel's choice)."""
    family, address = _bind_address(host)
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def check_port_free(host: str, port: int) -> None:
    """Raise `PortInUseError` naming `port` if a server could not listen on it at `host`."""
    family, address = _bind_address(host)
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # as the server does: a port held only by closed connections (TIME_WAIT) is free
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            raise PortInUseError(host, port) from exc


def _bind_address(host: str) -> tuple[socket.AddressFamily, str]:
    if host in ALL_ADDRESSES:
        return socket.AF_INET, ""
    if host == "localhost":
        return socket.AF_INET, "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return family, host


def answers(host: str, port: int, *, timeout: float = 3.0) -> bool:
    """Return whether a PostgreSQL server answers at `host:port` (no login, nothing logged).

    Sends the protocol's SSL request and expects PostgreSQL's one-byte answer; needs no
    PostgreSQL programs, so it works on a login node without them.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(_SSL_REQUEST)
            return sock.recv(1) in (b"S", b"N")
    except OSError:
        return False
