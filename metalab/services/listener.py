"""Which PostgreSQL server listens on a port of this machine, and whether metalab set it up.

`metalab postgres status` must tell a user whose service is down, or who has none, that some
other server answers where they might connect. The listening process is found through
`/proc` (Linux): its socket's inode in `/proc/net/tcp[6]`, the process holding that socket,
and its working directory, which a PostgreSQL server sets to its data directory. A data
directory that holds metalab's `metalab.conf` was set up by `metalab postgres start`.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from .data_dir import CONF_NAME

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp


@dataclass(frozen=True)
class Listener:
    """A server found listening on a port: its address, and what is known of its origin."""

    address: str
    """`host:port` where it answers."""
    data_dir: Path | None
    """Its data directory, when this process may look at the server's process."""

    @property
    def started_by_metalab(self) -> bool | None:
        """Whether its data directory is one metalab set up; None when that cannot be told."""
        if self.data_dir is None:
            return None
        return (self.data_dir / CONF_NAME).is_file()

    def describe(self) -> str:
        """Return one phrase saying who started the server and where it listens."""
        if self.started_by_metalab is None:
            who = "a PostgreSQL server that this service did not start"
        elif self.started_by_metalab:
            who = f"a PostgreSQL server that metalab started for another service ({self.data_dir})"
        else:
            who = f"a PostgreSQL server that metalab did not start ({self.data_dir})"
        return f"{who} is listening on {self.address}"


def listener(host: str, port: int) -> Listener:
    """Describe the server that answers at `host:port` (the caller checked that one does)."""
    pid = _listening_pid(port) if _is_local(host) else None
    return Listener(f"{host}:{port}", _working_directory(pid) if pid is not None else None)


def _is_local(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost", socket.gethostname())


def _listening_pid(port: int) -> int | None:
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and _holds_socket(entry.path, inodes):
            return int(entry.name)
    return None


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == _LISTEN and _port(fields[1]) == port:
                inodes.add(f"socket:[{fields[9]}]")
    return inodes


def _port(local_address: str) -> int:
    return int(local_address.rsplit(":", 1)[1], 16)


def _holds_socket(process: str, inodes: set[str]) -> bool:
    try:
        descriptors = os.scandir(f"{process}/fd")
    except OSError:  # another user's process, or gone
        return False
    with descriptors:
        for descriptor in descriptors:
            try:
                if os.readlink(descriptor.path) in inodes:
                    return True
            except OSError:
                continue
    return False


def _working_directory(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None
