"""The service record (`service.json`) and the password file of a PostgreSQL service.

Both live in the service directory: `{store}/services/postgres/` for a service that belongs to
a file store, `$XDG_STATE_HOME/metalab/postgres/` (default `~/.local/state/...`) otherwise.
Both are written atomically with mode 0600. The record never holds the password: it names the
password file, which is in libpq's passfile format (`*:*:*:user:password`), so a locator can
point at it with `?passfile=...` instead of carrying the password.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import secrets
import stat
import tempfile
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ValidationError
from .errors import ServiceError

RECORD_NAME = "service.json"
PASSWORD_NAME = "pgpass"
LOCK_NAME = ".lock"
SERVICES_SUBDIR = Path("services") / "postgres"
RECORD_VERSION = 1

KINDS = ("local", "slurm")
STATES = ("pending", "starting", "running", "stopped", "failed")
"""A record's life: a SLURM job is `pending`, then `starting` on its node; a server that
answers is `running`; `stopped` once stopped; `failed` if it could not start."""

ACTIVE_STATES = ("pending", "starting", "running")


@dataclass(frozen=True)
class ServiceRecord:
    """What `service.json` says of one PostgreSQL service; never holds the password.

    `host` and `port` are where clients connect (unset while a SLURM job waits), `pid` the
    postmaster's process id on `node` (the host it runs on), `job_id` the SLURM job (SLURM
    services only). Times are ISO 8601 in UTC.
    """

    kind: str
    state: str
    user: str
    database: str
    auth: str
    data_dir: str
    host: str | None = None
    port: int | None = None
    password_file: str | None = None
    os_user: str | None = None
    bin_dir: str | None = None
    pid: int | None = None
    node: str | None = None
    job_id: str | None = None
    log_file: str | None = None
    started_at: str | None = None
    stopped_at: str | None = None
    error: str | None = None
    version: int = RECORD_VERSION

    def replace(self, **changes: Any) -> ServiceRecord:
        """Return a copy with `changes` applied."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Return the record as the JSON object written to `service.json`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServiceRecord:
        """Build a record from `service.json`'s object; unknown keys are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def locator(self, *, inline_password: bool = False) -> str:
        """Return the `postgresql://` locator of the service.

        By default a password is referenced as `?passfile=<password file>`, which libpq reads
        on every host that sees the file; with `inline_password=True` the password itself is in
        the locator (read from the password file; keep such a locator out of files and logs).
        Raises `ServiceError` if the service has no address yet.
        """
        if self.host is None or self.port is None:
            raise ServiceError(f"the {self.kind} PostgreSQL service is {self.state}: no address")
        user = urllib.parse.quote(self.user, safe="")
        base = f"{_url_host(self.host)}:{self.port}/{urllib.parse.quote(self.database, safe='')}"
        if self.password_file is None:
            return f"postgresql://{user}@{base}"
        if inline_password:
            password = urllib.parse.quote(read_password(Path(self.password_file)), safe="")
            return f"postgresql://{user}:{password}@{base}"
        passfile = urllib.parse.quote(self.password_file, safe="/")
        return f"postgresql://{user}@{base}?passfile={passfile}"

    @property
    def public_locator(self) -> str:
        """The locator without any mention of the password: for messages."""
        if self.host is None or self.port is None:
            return "(no address yet)"
        return f"postgresql://{self.user}@{_url_host(self.host)}:{self.port}/{self.database}"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def now() -> str:
    """The current time as an ISO 8601 string in UTC, as records keep it."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def seconds_since(timestamp: str | None) -> float | None:
    """Seconds elapsed since an ISO 8601 `timestamp`, or `None` without one."""
    if not timestamp:
        return None
    return (datetime.now(UTC) - datetime.fromisoformat(timestamp)).total_seconds()


# ------------------------------------------------------------------------- service directory


def service_dir(store: str | os.PathLike[str] | None = None) -> Path:
    """Return the service directory: `{store}/services/postgres`, or the user's state dir.

    `store` is a file-store directory (a path or a `file://` URI); a `postgresql://` locator
    raises `ValidationError`. Without a store: `$XDG_STATE_HOME/metalab/postgres`, by default
    `~/.local/state/metalab/postgres`. Nothing is created.
    """
    if store is None:
        return state_home() / "metalab" / "postgres"
    text = os.fspath(store)
    if text.startswith("file://"):
        from ..locators import path_from_file_uri

        text = path_from_file_uri(text)
    elif "://" in text:
        raise ValidationError(
            f"store={text!r} is not valid: expected a file-store directory (a path or a "
            "file:// URI), where the service record is kept"
        )
    return Path(text).absolute() / SERVICES_SUBDIR


def state_home(home: str | None = None) -> Path:
    """The XDG state directory: `$XDG_STATE_HOME`, or `<home>/.local/state`.

    `home` is another user's home directory; `$XDG_STATE_HOME` only counts for this user.
    """
    if home is None:
        configured = os.environ.get("XDG_STATE_HOME", "")
        if os.path.isabs(configured):
            return Path(configured)
        home = os.path.expanduser("~")
    return Path(home) / ".local" / "state"


def ensure_dir(path: Path, *, traversable: bool = False) -> None:
    """Create the service directory `path` (parents as usual), mode 0700.

    With `traversable`, others may pass through (0711) but not list it: an unprivileged
    server account then reaches a data directory inside. Files here are 0600 either way.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
    if traversable and path.stat().st_uid == os.geteuid():
        os.chmod(path, stat.S_IMODE(path.stat().st_mode) | 0o711)


@contextlib.contextmanager
def service_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on the service directory (one start or stop at a time)."""
    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ServiceError(f"cannot lock the service directory {directory}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------- the record


def read_record(directory: Path) -> ServiceRecord | None:
    """Return the record in `directory`, or `None` if there is none.

    Raises `ServiceError` naming the file if it is not a service record.
    """
    path = directory / RECORD_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ServiceRecord.from_dict(data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise ServiceError(f"cannot read the service record {path}: {exc}") from exc


def write_record(directory: Path, record: ServiceRecord) -> None:
    """Write `record` to `directory/service.json` atomically, mode 0600."""
    text = json.dumps(record.to_dict(), indent=2, sort_keys=True) + "\n"
    write_private(directory / RECORD_NAME, text)


def write_private(path: Path, text: str, *, uid: int | None = None, gid: int | None = None) -> None:
    """Write `text` to `path` atomically (temp file then `os.replace`), mode 0600.

    With `uid`/`gid`, the file is handed to that owner before it appears under its name.
    """
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            if uid is not None:
                os.fchown(handle.fileno(), uid, -1 if gid is None else gid)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


# ---------------------------------------------------------------------------- the password


def ensure_password_file(directory: Path, user: str) -> Path:
    """Return the password file of `directory`, creating it with a new password if needed.

    The file is libpq's passfile format (`*:*:*:user:password`), mode 0600. An existing
    password is kept (rewritten only if the user changed or the mode was too open).
    """
    path = directory / PASSWORD_NAME
    password = read_password(path) if path.exists() else secrets.token_urlsafe(32)
    line = f"*:*:*:{_escape(user)}:{_escape(password)}\n"
    current = path.read_text(encoding="utf-8") if path.exists() else None
    if current != line or stat.S_IMODE(path.stat().st_mode) != 0o600:
        write_private(path, line)
    return path


def read_password(path: Path) -> str:
    """Return the password of the first entry of the passfile at `path`.

    Raises `ServiceError` naming the file if it cannot be read or holds no entry.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ServiceError(f"cannot read the password file {path}: {exc}") from exc
    for line in lines:
        fields = _split_passfile_line(line)
        if len(fields) == 5:
            return fields[4]
    raise ServiceError(f"the password file {path} holds no `host:port:db:user:password` line")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _split_passfile_line(line: str) -> list[str]:
    """Split a passfile line on unescaped colons, unescaping `\\:` and `\\\\`."""
    if not line.strip() or line.lstrip().startswith("#"):
        return []
    fields: list[str] = []
    current, chars = "", iter(line)
    for char in chars:
        if char == "\\":
            current += next(chars, "")
        elif char == ":" and len(fields) < 4:
            fields.append(current)
            current = ""
        else:
            current += char
    return [*fields, current]
