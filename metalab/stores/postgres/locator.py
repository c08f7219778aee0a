"""`postgresql://` locators: the server a store reaches and metalab's options for it.

A locator is a libpq URI whose query may also carry metalab's own options (`OPTIONS`); every
other query parameter goes to libpq. Parsing validates both, so a bad option fails when the
store is opened, naming the option and the values it takes.
"""

from __future__ import annotations

import dataclasses
import functools
import getpass
import math
import os
import urllib.parse
from typing import Any

import psycopg

from ...errors import StoreError, ValidationError
from ...locators import redact_password

DEFAULT_SCHEMA = "metalab"
DEFAULT_MAX_ARTIFACT_BYTES = 64 * 2**20
DEFAULT_POOL_SIZE = 4
DEFAULT_CONNECT_TIMEOUT = 5
DEFAULT_RECONNECT_TIMEOUT = 30.0
"""Seconds a call keeps retrying, from its first failure, before its error is raised."""
MAX_RECONNECT_TIMEOUT = 86_400.0
MAX_ARTIFACT_BYTES_LIMIT = 2**30 - 1  # PostgreSQL's largest bytea value
SYNCHRONOUS_COMMIT_VALUES = ("on", "off", "local", "remote_write", "remote_apply")
OPTIONS = (
    "schema",
    "artifact_root",
    "max_artifact_bytes",
    "pool_size",
    "synchronous_commit",
    "reconnect_timeout",
)


class LocatorError(StoreError, ValidationError):
    """A `postgresql://` locator, or one of its options, is not valid; the message names it."""


@dataclasses.dataclass(frozen=True)
class PostgresLocation:
    """A parsed `postgresql://` locator: the server to reach and the store's options."""

    uri: str
    """The libpq URI without metalab's options (password included, when one was given)."""
    schema: str = DEFAULT_SCHEMA
    artifact_root: str | None = None
    max_artifact_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES
    pool_size: int = DEFAULT_POOL_SIZE
    synchronous_commit: str | None = None
    reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT
    """Seconds a call keeps retrying while the server cannot be reached (0: fail at once)."""

    @functools.cached_property
    def params(self) -> dict[str, str]:
        """The libpq connection parameters named by the URI."""
        return {k: str(v) for k, v in psycopg.conninfo.conninfo_to_dict(self.uri).items()}

    @functools.cached_property
    def conninfo(self) -> str:
        """The libpq connection string, with metalab's defaults for unset parameters."""
        defaults = {"connect_timeout": str(DEFAULT_CONNECT_TIMEOUT), "application_name": "metalab"}
        return psycopg.conninfo.make_conninfo("", **(defaults | self.params))

    @property
    def locator(self) -> str:
        """The locator that reopens this store anywhere, password included."""
        return self._with_options(self.uri)

    @property
    def public_locator(self) -> str:
        """The locator without its password: safe to print and log."""
        return self._with_options(redact_password(self.uri))

    def describe(self) -> str:
        """`host 'h', port 5432, database 'db', user 'u'`, with libpq's defaults filled in."""
        p, env = self.params, os.environ
        host = p.get("host") or p.get("hostaddr") or env.get("PGHOST") or "localhost"
        port = p.get("port") or env.get("PGPORT") or "5432"
        user = p.get("user") or env.get("PGUSER") or _login_name()
        database = p.get("dbname") or env.get("PGDATABASE") or user
        return f"host {host!r}, port {port}, database {database!r}, user {user!r}"

    def _with_options(self, uri: str) -> str:
        options: list[tuple[str, str]] = [("schema", self.schema)]
        if self.artifact_root is not None:
            options.append(("artifact_root", self.artifact_root))
        if self.max_artifact_bytes != DEFAULT_MAX_ARTIFACT_BYTES:
            options.append(("max_artifact_bytes", str(self.max_artifact_bytes)))
        if self.pool_size != DEFAULT_POOL_SIZE:
            options.append(("pool_size", str(self.pool_size)))
        if self.synchronous_commit is not None:
            options.append(("synchronous_commit", self.synchronous_commit))
        if self.reconnect_timeout != DEFAULT_RECONNECT_TIMEOUT:
            options.append(("reconnect_timeout", f"{self.reconnect_timeout:g}"))
        query = "&".join(f"{k}={urllib.parse.quote(v, safe='/:')}" for k, v in options)
        return f"{uri}{'&' if '?' in uri else '?'}{query}"


def one_line(exc: BaseException) -> str:
    """libpq's message on one line (it spans several, with tabs)."""
    return " ".join(str(exc).split())


def _login_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - only used to describe libpq's default user
        return "?"


def parse_locator(text: str) -> PostgresLocation:
    """Parse `postgresql://user[:password]@host[:port]/db?schema=...&artifact_root=...`.

    metalab's own options are `schema`, `artifact_root`, `max_artifact_bytes`, `pool_size`,
    `synchronous_commit` and `reconnect_timeout`; every other query parameter goes to libpq
    (`sslmode`, ...).
    Raises LocatorError (a StoreError and a ValidationError) naming the offending part.
    """
    if not isinstance(text, str):
        raise LocatorError(f"a PostgreSQL locator is a string, got {text!r}")
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in ("postgresql", "postgres"):
        raise LocatorError(f"{redact_password(text)!r} is not a postgresql:// locator")
    base, _, query = rest.partition("?")
    options: dict[str, str] = {}
    passed: list[str] = []
    for pair in filter(None, query.split("&")):
        name, _, value = pair.partition("=")
        key = urllib.parse.unquote(name)
        if key not in OPTIONS:
            passed.append(pair)
        elif key in options:
            raise LocatorError(f"option {key!r} is given twice in {redact_password(text)!r}")
        else:
            options[key] = urllib.parse.unquote(value)
    uri = f"postgresql://{base}" + (f"?{'&'.join(passed)}" if passed else "")
    location = PostgresLocation(uri, **_checked_options(options, text))
    try:
        params = location.params  # libpq validates the URI and its parameters here
    except psycopg.Error as exc:
        raise LocatorError(
            f"invalid PostgreSQL locator {redact_password(text)!r}: {one_line(exc)}. metalab's own "
            f"options are {', '.join(OPTIONS)}; other query parameters must be libpq connection "
            "parameters"
        ) from exc
    # ... but not the port, which only a connection reads (and no retry would fix)
    for port in str(params.get("port") or "").split(","):
        if port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise LocatorError(
                f"port {port!r} in {redact_password(text)!r} is not a port number (1 to 65535)"
            )
    return location


def _checked_options(options: dict[str, str], text: str) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    if "schema" in options:
        checked["schema"] = _check_schema(options["schema"])
    if "artifact_root" in options:
        if not options["artifact_root"]:
            raise LocatorError(f"artifact_root is empty in {redact_password(text)!r}")
        checked["artifact_root"] = os.path.abspath(os.path.expanduser(options["artifact_root"]))
    if "max_artifact_bytes" in options:
        checked["max_artifact_bytes"] = _int_option(
            "max_artifact_bytes", options["max_artifact_bytes"], 1, MAX_ARTIFACT_BYTES_LIMIT
        )
    if "pool_size" in options:
        checked["pool_size"] = _int_option("pool_size", options["pool_size"], 1, 100)
    if "synchronous_commit" in options:
        value = options["synchronous_commit"].lower()
        if value not in SYNCHRONOUS_COMMIT_VALUES:
            raise LocatorError(
                f"synchronous_commit={options['synchronous_commit']!r} is not valid; use one "
                f"of {', '.join(SYNCHRONOUS_COMMIT_VALUES)}"
            )
        checked["synchronous_commit"] = value
    if "reconnect_timeout" in options:
        checked["reconnect_timeout"] = _seconds_option(
            "reconnect_timeout", options["reconnect_timeout"], MAX_RECONNECT_TIMEOUT
        )
    return checked


def _check_schema(schema: str) -> str:
    if not schema or "\x00" in schema or len(schema.encode("utf-8")) > 63:
        raise LocatorError(
            f"schema name {schema!r} is not valid: it must be 1 to 63 bytes without NUL "
            "(PostgreSQL cuts longer names short, which could make two stores one)"
        )
    return schema


def _seconds_option(name: str, value: str, high: float) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0 <= number <= high:  # NaN fails too
        raise LocatorError(
            f"{name}={value!r} is not valid: use a number of seconds from 0 to {high:,g}"
        )
    return number


def _int_option(name: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise LocatorError(f"{name}={value!r} is not valid: use an integer from {low} to {high:,}")
    return number
