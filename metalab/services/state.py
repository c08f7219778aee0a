"""The state file of a PostgreSQL service: `service.json`, what runs where, and since when.

It lives in the service directory (`metalab.services.directory`) and says which server is the
service's: local or a SLURM job, its state, where clients connect, its pid and node. It never
holds the password: it names the password file (`metalab.services.passfile`). `discover` and
`status` read it; `start`, `stop` and the SLURM job on its node write it, atomically.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ServiceError
from .directory import write_private
from .passfile import read_password

RECORD_NAME = "service.json"
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
    """Return the current time as an ISO 8601 string in UTC, as records keep it."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def seconds_since(timestamp: str | None) -> float | None:
    """Return the seconds elapsed since an ISO 8601 `timestamp`, or `None` without one."""
    if not timestamp:
        return None
    return (datetime.now(UTC) - datetime.fromisoformat(timestamp)).total_seconds()


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


def update_job_record(
    directory: Path, job_id: str | None, **changes: object
) -> ServiceRecord | None:
    """Apply `changes` to the record on disk if it still names `job_id`; return it, or `None`.

    Not atomic with respect to other writers: callers hold the service lock, or are the one
    job the record names.
    """
    current = read_record(directory)
    if current is None or current.job_id != job_id:
        return None
    updated = current.replace(**changes)
    write_record(directory, updated)
    return updated


def mark_stopped(directory: Path, record: ServiceRecord) -> ServiceRecord:
    """Mark the state file `stopped` unless it names another job now; return it as it is.

    Idempotent: a stopped record keeps its stop time.
    """
    current = read_record(directory) or record
    if current.job_id != record.job_id:
        return current
    stopped = current.replace(state="stopped", pid=None, stopped_at=current.stopped_at or now())
    write_record(directory, stopped)
    return stopped
