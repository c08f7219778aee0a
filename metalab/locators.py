"""Store locators as text: their scheme, their passwords, and how to show them safely.

The one place that reads a locator's parts without opening it. Opening a locator is the
registry's job (`metalab.registry.open_store`); each store parses its own options.
"""

from __future__ import annotations

import urllib.parse

from .errors import StoreError

KNOWN_SCHEMES = ("file://", "postgresql://", "postgres://", "fallback:", "memory://")

Secret = tuple[str, str, str, str, str]
"""A libpq password-file line: (host, port, database, user, password)."""


def scheme_of(locator: str) -> str:
    """Return the scheme of `locator`: `file` for a plain path, `fallback` for a
    `fallback:` locator, else the lower-cased part before `://`."""
    if locator.startswith("fallback:"):
        return "fallback"
    if "://" not in locator:
        return "file"
    return locator.split("://", 1)[0].lower()


def redact_password(locator: str) -> str:
    """`locator` without a password: neither in its `user:password@` part nor as a
    `password=` query parameter (also inside a `fallback:` locator's parts)."""
    if locator.startswith("fallback:") and "?" in locator:
        head, query = locator.split("?", 1)
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        return head + "?" + urllib.parse.urlencode([(k, redact_password(v)) for k, v in pairs])
    head, sep, tail = locator.partition("://")
    if not sep:
        return locator
    cut = min((i for i in (tail.find("/"), tail.find("?")) if i >= 0), default=len(tail))
    netloc, rest = tail[:cut], tail[cut:]
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}@{host}"
    path, qmark, query = rest.partition("?")
    if qmark:
        kept = [
            p
            for p in query.split("&")
            if p and urllib.parse.unquote(p.split("=", 1)[0]) != "password"
        ]
        rest = path + ("?" + "&".join(kept) if kept else "")
    return f"{head}://{netloc}{rest}"


def split_secrets(locator: str) -> tuple[str, list[Secret]]:
    """(locator without passwords, [(host, port, database, user, password)]) of a
    `postgresql://` locator, or of the primary of a `fallback:` one."""
    if locator.startswith("fallback:"):
        query = urllib.parse.parse_qs(locator.split("?", 1)[1] if "?" in locator else "")
        found = []
        for key in ("primary", "fallback"):
            for value in query.get(key, []):
                public, secrets = split_secrets(value)
                query[key] = [public]
                found += secrets
        if not found:
            return locator, []
        flat = {k: v[0] for k, v in query.items()}
        return "fallback:?" + urllib.parse.urlencode(flat), found
    if not locator.startswith(("postgresql://", "postgres://")):
        return locator, []
    parts = urllib.parse.urlsplit(locator)
    password = parts.password
    query = urllib.parse.parse_qs(parts.query)
    if "password" in query:
        password = query["password"][-1]
    else:
        password = None if password is None else urllib.parse.unquote(password)
    if password is None:
        return locator, []
    user = query.get("user", [urllib.parse.unquote(parts.username or "*")])[-1]
    secret = (
        parts.hostname or "localhost",
        str(parts.port or 5432),
        parts.path.lstrip("/") or "*",
        user,
        password,
    )
    return redact_password(locator), [secret]


def without_reconnect_wait(locator: str) -> str:
    """`locator`, set to fail at once while its server cannot be reached, unless it says how
    long to wait: a `postgresql://` locator without `reconnect_timeout` gets
    `reconnect_timeout=0`; every other locator is returned unchanged."""
    scheme, sep, rest = locator.partition("://")
    if not sep or scheme.lower() not in ("postgresql", "postgres"):
        return locator
    query = rest.partition("?")[2]
    names = {urllib.parse.unquote(pair.split("=", 1)[0]) for pair in query.split("&") if pair}
    if "reconnect_timeout" in names:
        return locator
    return f"{locator}{'&' if '?' in locator else '?'}reconnect_timeout=0"


def path_from_file_uri(uri: str) -> str:
    """Return the filesystem path of a `file://` URI."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.netloc not in ("", "localhost"):
        raise StoreError(
            f"file URI {uri!r} names host {parsed.netloc!r}; use file:///absolute/path"
        )
    return urllib.parse.unquote(parsed.path)
