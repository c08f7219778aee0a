"""Passwords of a sweep's store, kept out of the store and out of the job file.

A `postgresql://` locator may carry a password. The job file the array tasks read gets the
locator without it; the password goes to a libpq password file (mode 0600) in
`~/.metalab/pgpass/<session>`, outside every store, which each task's script names in
`PGPASSFILE`. The file goes when the sweep's every run has its record.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from pathlib import Path
from typing import Any

from ...locators import Secret, split_secrets
from .config import SlurmConfig


def directory() -> Path:
    """Return where the password files are: `~/.metalab/pgpass`."""
    return Path.home() / ".metalab" / "pgpass"


def without_secrets(job: Any) -> tuple[Any, list[Secret]]:
    """Return the job description `job` with a store locator free of passwords, and the
    passwords it held."""
    if not isinstance(job.store, str):
        return job, []
    public, secrets = split_secrets(job.store)
    if not secrets:
        return job, []
    return dataclasses.replace(job, store=public), secrets


def write(session: str, secrets: list[Secret]) -> Path:
    """Write the password file of sweep `session` (0600, in a 0700 directory); return it.
    Idempotent: a second call replaces the file."""
    folder = directory()
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    path = folder / session
    lines = "".join(":".join(_escape(v) for v in secret) + "\n" for secret in secrets)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(lines)
    os.chmod(path, 0o600)
    return path


def existing(session: str) -> Path | None:
    """Return the password file of sweep `session` when there is one."""
    path = directory() / session
    return path if path.is_file() else None


def exported(config: SlurmConfig, passfile: Path | None) -> SlurmConfig:
    """Return `config`, its tasks set to find passwords in `passfile` (when there is one)."""
    if passfile is None:
        return config
    setup = (f"export PGPASSFILE={shlex.quote(str(passfile))}", *config.setup)
    return dataclasses.replace(config, setup=setup)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")
