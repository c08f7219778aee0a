"""The password file of a PostgreSQL service, in libpq's passfile format.

`pgpass` in the service directory holds one line, `*:*:*:user:password`, mode 0600. The
password is generated once and never printed; a locator points at the file with
`?passfile=...` instead of carrying the password, and libpq reads it on every host that
sees the file.
"""

from __future__ import annotations

import secrets
import stat
from pathlib import Path

from ..errors import ServiceError
from .directory import write_private

PASSWORD_NAME = "pgpass"


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
