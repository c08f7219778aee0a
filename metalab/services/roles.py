"""The role and database clients log in as, created in a stopped server's data directory.

The role's password is set in single-user mode as a SCRAM verifier computed here, so the
server never sees the password itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from pathlib import Path

from ..errors import ServiceError, ValidationError
from .account import ServerAccount
from .binaries import PostgresBinaries
from .programs import run

SCRAM_ITERATIONS = 4096
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


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


def scram_verifier(password: str, *, iterations: int = SCRAM_ITERATIONS) -> str:
    """Return the SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677)."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    b64 = [base64.b64encode(part).decode("ascii") for part in (salt, stored_key, server_key)]
    return f"SCRAM-SHA-256${iterations}:{b64[0]}${b64[1]}:{b64[2]}"
