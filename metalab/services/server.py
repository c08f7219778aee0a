"""Run a PostgreSQL server from the installed binaries, as an unprivileged OS user.

The one place the service manager runs PostgreSQL's programs (`initdb`, `pg_ctl`, `postgres`,
`pg_isready`). PostgreSQL refuses to run as root, so when metalab runs as root the programs run
as another account (`postgres` by default), through `subprocess`'s `user=`/`group=`.

A data directory set up here has two files metalab rewrites before every start: `metalab.conf`
(included at the end of `postgresql.conf`: address, port, no Unix socket) and `pg_hba.conf`
(one authentication method for every TCP client). The role's password is set in single-user
mode as a SCRAM verifier computed here, so the server never sees the password itself.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import hmac
import os
import pwd
import re
import secrets
import shlex
import signal
import socket
import stat
import struct
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ValidationError
from ..processes import alive
from .errors import PortInUseError, PostgresNotFoundError, ServiceError, ServiceTimeoutError
from .record import write_private

REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres", "pg_isready")
BIN_DIR_ENV = "METALAB_POSTGRES_BIN"
"""Environment variable naming the directory of the PostgreSQL binaries to use."""

DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
CONF_NAME = "metalab.conf"
LOG_NAME = "metalab-server.log"
COMMAND_TIMEOUT = 120.0
SCRAM_ITERATIONS = 4096

ALL_ADDRESSES = ("*", "0.0.0.0", "::", "")
"""Values of `host` meaning: listen on every address."""
_LOOPBACK = ("127.0.0.1", "::1", "localhost")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_SSL_REQUEST = struct.pack("!ii", 8, 80877103)


# ------------------------------------------------------------------------------- binaries


@dataclass(frozen=True)
class PostgresBinaries:
    """The directory holding `initdb`, `pg_ctl`, `postgres` and `pg_isready`."""

    bin_dir: str

    def __call__(self, name: str) -> str:
        """Return the path of program `name`."""
        return os.path.join(self.bin_dir, name)

    def major_version(self) -> str:
        """Return the server's major version (`"15"`) from `postgres --version`."""
        out = run([self("postgres"), "--version"]).stdout
        match = re.search(r"(\d+)(?:\.\d+)?", out)
        if match is None:
            raise ServiceError(f"cannot tell the version of {self('postgres')}: {out.strip()!r}")
        return match.group(1)


def find_binaries(bin_dir: str | os.PathLike[str] | None = None) -> PostgresBinaries:
    """Find the PostgreSQL server binaries: `bin_dir`, `$METALAB_POSTGRES_BIN`, else search.

    The search tries the directory of each `pg_ctl` on `PATH` (symlinks resolved), then
    `/usr/lib/postgresql/*/bin`, newest version first. Raises `PostgresNotFoundError` naming
    every place it looked and what was missing there.
    """
    chosen = os.fspath(bin_dir) if bin_dir else os.environ.get(BIN_DIR_ENV, "")
    candidates = [chosen] if chosen else _candidates()
    for candidate in candidates:
        if not _missing(candidate):
            return PostgresBinaries(os.path.abspath(candidate))
    raise PostgresNotFoundError(_not_found(candidates, chosen))


def _candidates() -> list[str]:
    found = []
    for directory in filter(None, os.environ.get("PATH", "").split(os.pathsep)):
        program = os.path.join(directory, "pg_ctl")
        if os.access(program, os.X_OK):
            found += [os.path.dirname(os.path.realpath(program)), directory]
    found += sorted(glob.glob(DEBIAN_BIN_GLOB), key=_version_key, reverse=True)
    return list(dict.fromkeys(found))


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", Path(path).parent.name))


def _missing(directory: str) -> list[str]:
    return [n for n in REQUIRED_BINARIES if not os.access(os.path.join(directory, n), os.X_OK)]


def _not_found(candidates: Sequence[str], chosen: str) -> str:
    found = "; ".join(f"{c} lacks {', '.join(_missing(c))}" for c in candidates)
    searched = f"the directory of each pg_ctl on PATH, then {DEBIAN_BIN_GLOB}"
    where = found if chosen else f"searched {searched}: {found or 'none exists'}"
    return (
        f"PostgreSQL server binaries not found: need {', '.join(REQUIRED_BINARIES)} in one "
        f"directory ({where}). Install the PostgreSQL server (Debian/Ubuntu: apt-get "
        f"install postgresql) or name its bin directory with --bin-dir or ${BIN_DIR_ENV}"
    )


# ------------------------------------------------------------------------------- OS account


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


def _environment(account: ServerAccount) -> dict[str, str]:
    """A clean environment: no PG* variables of the caller leak into the server's programs."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": account.home,
        "USER": account.name,
        "LOGNAME": account.name,
        "LC_ALL": "C",
    }
    if "TZ" in os.environ:
        env["TZ"] = os.environ["TZ"]
    return env


@dataclass(frozen=True)
class _Switch:
    """`subprocess` arguments that run a program as another account (all `None`: as yourself)."""

    user: int | None = None
    group: int | None = None
    extra_groups: list[int] | None = None


def _switch(account: ServerAccount | None) -> _Switch:
    if account is None or account.is_self:
        return _Switch()
    return _Switch(account.uid, account.gid, list(account.groups))


def run(
    argv: Sequence[str],
    account: ServerAccount | None = None,
    *,
    input: str | None = None,
    timeout: float = COMMAND_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` (as `account`, if given), capturing its output; never raises on exit codes.

    Raises `ServiceError` if it cannot be started or takes longer than `timeout` seconds.
    """
    switch = _switch(account)
    try:
        return subprocess.run(
            list(argv),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd="/",
            env=_environment(account or _self_account()),
            user=switch.user,
            group=switch.group,
            extra_groups=switch.extra_groups,
        )
    except subprocess.TimeoutExpired as exc:
        raise ServiceTimeoutError(
            f"`{shlex.join(argv)}` did not finish within {timeout:g} s"
        ) from exc
    except OSError as exc:
        raise ServiceError(f"cannot run `{shlex.join(argv)}`: {exc}") from exc


def _self_account() -> ServerAccount:
    entry = pwd.getpwuid(os.geteuid())
    return ServerAccount(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, ())


def _check(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip() or "(no output)"
        raise ServiceError(f"{what} failed (exit code {result.returncode}): {output}")


# --------------------------------------------------------------------------- data directory


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
    _check(run(argv, account), f"initdb into {data_dir}")
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


def listen_setting(host: str) -> str:
    """The `listen_addresses` value for `host`: `*` for every address."""
    return "*" if host in ALL_ADDRESSES else host


def is_loopback(host: str) -> bool:
    """Whether the server listening on `host` can only be reached from this machine."""
    return host in _LOOPBACK or host.startswith("127.")


def check_identifier(kind: str, value: str) -> str:
    """Return `value` if it is a plain SQL identifier; raise `ValidationError` otherwise."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ValidationError(
            f"{kind}={value!r} is not valid: expected letters, digits and underscores, "
            "not starting with a digit, at most 63 characters"
        )
    return value


def setup_role(
    binaries: PostgresBinaries,
    data_dir: Path,
    account: ServerAccount,
    *,
    role: str,
    database: str,
    password: str | None,
) -> None:
    """Create `role` (login, with `password` or none) and `database` it owns; idempotent.

    Runs in single-user mode, so the server must be stopped. Raises `ServiceError` with the
    server's error lines if a statement fails.
    """
    secret = "NULL" if password is None else f"'{scram_verifier(password)}'"
    statements = [
        f"DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') "
        f'THEN CREATE ROLE "{role}" LOGIN; END IF; END$$',
        f'ALTER ROLE "{role}" LOGIN PASSWORD {secret}',
        f'CREATE DATABASE "{database}" OWNER "{role}"',
    ]
    argv = [binaries("postgres"), "--single", "-D", str(data_dir), "postgres"]
    result = run(argv, account, input="\n".join(statements) + "\n")
    tolerated = f'database "{database}" already exists'
    errors = [
        line.strip()
        for line in result.stderr.splitlines()
        if ("ERROR:" in line or "FATAL:" in line) and tolerated not in line
    ]
    if result.returncode != 0 or errors:
        detail = "; ".join(errors) or result.stderr.strip() or "(no output)"
        raise ServiceError(f"cannot create role {role!r} and database {database!r}: {detail}")


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


def scram_verifier(password: str, *, iterations: int = SCRAM_ITERATIONS) -> str:
    """Return the SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677)."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    b64 = [base64.b64encode(part).decode("ascii") for part in (salt, stored_key, server_key)]
    return f"SCRAM-SHA-256${iterations}:{b64[0]}${b64[1]}:{b64[2]}"


# --------------------------------------------------------------------------- start and stop


def start(
    binaries: PostgresBinaries,
    data_dir: Path,
    account: ServerAccount,
    *,
    listen: str,
    port: int,
    timeout: float,
) -> int:
    """Start the server in the background with `pg_ctl` and wait until it runs; return its pid.

    Raises `PortInUseError` if the port was taken meanwhile, `ServiceError` with the end of
    the server log otherwise.
    """
    log = data_dir / LOG_NAME
    argv = [binaries("pg_ctl"), "-D", str(data_dir), "-l", str(log), "-w"]
    result = run([*argv, "-t", str(max(1, round(timeout))), "start"], account, timeout=timeout + 30)
    if result.returncode != 0:
        tail = log_tail(log)
        if "Address already in use" in tail:
            raise PortInUseError(listen, port)
        raise ServiceError(f"pg_ctl could not start the server in {data_dir}: {tail}")
    pid = postmaster_pid(data_dir)
    if pid is None:
        raise ServiceError(
            f"the server in {data_dir} stopped right after starting: {log_tail(log)}"
        )
    return pid


def stop(
    binaries: PostgresBinaries, data_dir: Path, account: ServerAccount, *, timeout: float
) -> bool:
    """Stop the server of `data_dir` with `pg_ctl stop -m fast`; return whether one ran.

    Idempotent. Raises `ServiceError` if it does not stop within `timeout` seconds.
    """
    if postmaster_pid(data_dir) is None:
        return False
    argv = [binaries("pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w"]
    result = run([*argv, "-t", str(max(1, round(timeout))), "stop"], account, timeout=timeout + 30)
    if result.returncode != 0 and postmaster_pid(data_dir) is not None:
        _check(result, f"pg_ctl stop of the server in {data_dir}")
    return True


def spawn(
    binaries: PostgresBinaries, data_dir: Path, account: ServerAccount
) -> subprocess.Popen[bytes]:
    """Run the server in the foreground, as a child process whose output is this process's."""
    switch = _switch(account)
    try:
        return subprocess.Popen(
            [binaries("postgres"), "-D", str(data_dir)],
            stdin=subprocess.DEVNULL,
            cwd="/",
            env=_environment(account),
            user=switch.user,
            group=switch.group,
            extra_groups=switch.extra_groups,
        )
    except OSError as exc:
        raise ServiceError(f"cannot start {binaries('postgres')}: {exc}") from exc


def postmaster_pid(data_dir: Path) -> int | None:
    """The pid of the server running on `data_dir`, or `None` if none runs."""
    try:
        first = (data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        pid = int(first.strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (see `metalab.processes`)."""
    return alive(pid) is not False


def interrupt(process: subprocess.Popen[bytes]) -> None:
    """Ask a foreground server for a fast shutdown (SIGINT); nothing if it has ended."""
    if process.poll() is None:
        try:
            process.send_signal(signal.SIGINT)
        except ProcessLookupError:
            pass


def log_tail(path: Path, lines: int = 15) -> str:
    """The last `lines` lines of a log file, or a note that there is none."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.strip().splitlines()[-lines:]) or f"(empty log {path})"


# ------------------------------------------------------------------------------- the network


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
    """Whether a PostgreSQL server answers at `host:port` (no login, nothing logged).

    Sends the protocol's SSL request and expects PostgreSQL's one-byte answer; needs no
    PostgreSQL programs, so it works on a login node without them.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(_SSL_REQUEST)
            return sock.recv(1) in (b"S", b"N")
    except OSError:
        return False


def ready(binaries: PostgresBinaries, host: str, port: int, *, user: str, database: str) -> bool:
    """Whether the server at `host:port` accepts connections (`pg_isready`)."""
    target = "127.0.0.1" if host in ALL_ADDRESSES else host
    argv = [binaries("pg_isready"), "-h", target, "-p", str(port), "-t", "3"]
    return run([*argv, "-U", user, "-d", database, "-q"], timeout=30).returncode == 0


def wait_ready(
    binaries: PostgresBinaries,
    host: str,
    port: int,
    *,
    user: str,
    database: str,
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
) -> bool:
    """Wait until `pg_isready` succeeds; `False` if `process` ends or `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready(binaries, host, port, user=user, database=database):
            return True
        if process is not None and process.poll() is not None:
            return False
        time.sleep(0.25)
    return False
