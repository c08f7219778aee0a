"""The unprivileged OS account a PostgreSQL server runs as.

PostgreSQL refuses to run as root, so when metalab runs as root the server's programs run as
another account (`postgres` by default); otherwise they run as yourself.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass

from ..errors import ServiceError


@dataclass(frozen=True)
class ServerAccount:
    """The unprivileged OS account the server runs as."""

    name: str
    uid: int
    gid: int
    home: str
    groups: tuple[int, ...]

    @property
    def is_self(self) -> bool:
        """Whether this is the account metalab runs as (no switch needed)."""
        return self.uid == os.geteuid()


def server_account(name: str | None = None) -> ServerAccount:
    """Return the account to run the server as: `name`, else yourself, else (as root) `postgres`.

    Raises `ServiceError` for root (PostgreSQL refuses it), an unknown account, or another
    account when metalab is not root (it cannot switch).
    """
    name = name or _default_account_name()
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ServiceError(f"no OS user {name!r} to run the PostgreSQL server as") from None
    if entry.pw_uid == 0:
        raise ServiceError(
            "PostgreSQL refuses to run as root: name an unprivileged OS user with "
            "--os-user (os_user=...), e.g. postgres"
        )
    if entry.pw_uid != os.geteuid() and os.geteuid() != 0:
        raise ServiceError(
            f"only root can run the server as another OS user ({name!r}); leave --os-user "
            "out to run it as yourself"
        )
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return ServerAccount(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, groups)


def _default_account_name() -> str:
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    try:
        return pwd.getpwnam("postgres").pw_name
    except KeyError:
        raise ServiceError(
            "running as root, and there is no 'postgres' OS user to run the server as: "
            "name an unprivileged one with --os-user (os_user=...)"
        ) from None


def self_account() -> ServerAccount:
    """Return the account metalab runs as."""
    entry = pwd.getpwuid(os.geteuid())
    return ServerAccount(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, ())
