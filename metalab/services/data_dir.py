"""A PostgreSQL data directory set up by metalab: created, initialised, configured.

A data directory set up here has two files metalab rewrites before every start: `metalab.conf`
(included at the end of `postgresql.conf`: address, port, no Unix socket) and `pg_hba.conf`
(one authentication method for every TCP client). The directory belongs to the server
account, mode 0700.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import ServiceError
from .account import ServerAccount
from .binaries import PostgresBinaries
from .directory import write_private
from .network import is_loopback, listen_setting
from .programs import check, run
from .roles import setup_role

CONF_NAME = "metalab.conf"


def prepare_data_dir(data_dir: Path, account: ServerAccount) -> None:
    """Create `data_dir` (mode 0700, owned by `account`) and check `account` can reach it.

    Raises `ServiceError` if a parent directory blocks the account, or if the data directory
    has another owner.
    """
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    blocked = _blocking_parent(data_dir.parent, account)
    if blocked is not None:
        raise ServiceError(
            f"the PostgreSQL server runs as OS user {account.name!r}, which cannot enter "
            f"{blocked} (mode {stat.S_IMODE(blocked.stat().st_mode):o}): choose a data "
            f"directory it can reach (--data-dir), or let it in (chmod o+x {blocked})"
        )
    if not data_dir.exists():
        data_dir.mkdir(mode=0o700)
        os.chown(data_dir, account.uid, account.gid)
    owner = data_dir.stat().st_uid
    if owner != account.uid:
        raise ServiceError(
            f"data directory {data_dir} belongs to uid {owner}, but the server runs as "
            f"{account.name!r} (uid {account.uid}): use --os-user or another --data-dir"
        )
    os.chmod(data_dir, 0o700)


def _blocking_parent(path: Path, account: ServerAccount) -> Path | None:
    """The first directory on the way to `path` that `account` may not pass through."""
    if account.is_self:
        return None
    for directory in [*reversed(path.parents), path]:
        info = directory.stat()
        if info.st_uid == account.uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in account.groups:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return directory
    return None


def init_data_dir(
    binaries: PostgresBinaries, data_dir: Path, account: ServerAccount, *, superuser: str
) -> bool:
    """Run `initdb` into `data_dir` unless it holds a cluster; return whether it ran.

    An existing cluster must have the binaries' major version. Raises `ServiceError` with
    initdb's output if it fails, or if `data_dir` holds other files.
    """
    version_file = data_dir / "PG_VERSION"
    if version_file.exists():
        _check_version(binaries, data_dir, version_file.read_text().strip())
        return False
    if any(data_dir.iterdir()):
        raise ServiceError(f"{data_dir} is neither empty nor a PostgreSQL data directory")
    argv = [binaries("initdb"), "-D", str(data_dir), "-U", superuser]
    argv += ["--auth=trust", "--no-locale", "--encoding=UTF8"]
    check(run(argv, account), f"initdb into {data_dir}")
    with open(data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
        conf.write(
            f"\n# Settings metalab writes before every start\ninclude_if_exists = '{CONF_NAME}'\n"
        )
    return True


def _check_version(binaries: PostgresBinaries, data_dir: Path, version: str) -> None:
    installed = binaries.major_version()
    if version != installed:
        raise ServiceError(
            f"data directory {data_dir} was created by PostgreSQL {version}, but the binaries "
            f"in {binaries.bin_dir} are PostgreSQL {installed}: name the right "
            "ones with --bin-dir, or use another --data-dir"
        )


def configure(data_dir: Path, account: ServerAccount, *, listen: str, port: int, auth: str) -> None:
    """Write `metalab.conf` (address, port, no Unix socket) and `pg_hba.conf` (`auth` for all).

    Clients are allowed from loopback addresses only, or from anywhere when the server
    listens on every address.
    """
    settings = [
        f"listen_addresses = '{listen_setting(listen)}'",
        f"port = {port}",
        "unix_socket_directories = ''",
        "password_encryption = 'scram-sha-256'",
    ]
    networks = ["127.0.0.1/32", "::1/128"]
    if not is_loopback(listen):
        networks += ["0.0.0.0/0", "::/0"]
    rules = [f"host all all {network} {auth}" for network in networks]
    header = "# Written by metalab before every start: edit postgresql.conf instead.\n"
    for name, lines in ((CONF_NAME, settings), ("pg_hba.conf", rules)):
        text = header + "\n".join(lines) + "\n"
        write_private(data_dir / name, text, uid=account.uid, gid=account.gid)


def prepare_cluster(
    binaries: PostgresBinaries,
    data_dir: Path,
    account: ServerAccount,
    *,
    listen: str,
    port: int,
    auth: str,
    role: str,
    database: str,
    password: str | None,
) -> bool:
    """Make `data_dir` ready to start: create, initialise, configure, create role and database.

    Returns whether `initdb` ran. Every step is idempotent; the server must be stopped.
    """
    prepare_data_dir(data_dir, account)
    initialised = init_data_dir(binaries, data_dir, account, superuser=role)
    configure(data_dir, account, listen=listen, port=port, auth=auth)
    setup_role(binaries, data_dir, account, role=role, database=database, password=password)
    return initialised
