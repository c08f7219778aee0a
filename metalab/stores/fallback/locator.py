"""`fallback:?primary=<locator>&fallback=<locator>[&write_to_both=1][&retry_after=s]`
locators, and the arguments a `FallbackStore` accepts."""

from __future__ import annotations

import math
import os
import urllib.parse
from dataclasses import dataclass
from typing import Any

from ...contracts import Store
from ...errors import StoreError, ValidationError
from ...locators import path_from_file_uri, redact_password, without_reconnect_wait

SCHEME = "fallback"
DEFAULT_RETRY_AFTER = 30.0
LOCATOR_OPTIONS = ("primary", "fallback", "write_to_both", "retry_after")
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


@dataclass(frozen=True)
class FallbackLocation:
    """What a `fallback:` locator names."""

    primary: str
    fallback: str
    write_to_both: bool = False
    retry_after: float = DEFAULT_RETRY_AFTER

    @property
    def locator(self) -> str:
        """The `fallback:` locator naming these stores and options."""
        query = {"primary": self.primary, "fallback": self.fallback}
        if self.write_to_both:
            query["write_to_both"] = "1"
        if self.retry_after != DEFAULT_RETRY_AFTER:
            query["retry_after"] = f"{self.retry_after:g}"
        return f"{SCHEME}:?{urllib.parse.urlencode(query)}"


def parse_locator(locator: str) -> FallbackLocation:
    """Parse a `fallback:?primary=...&fallback=...` locator; a ValidationError names an
    option that is unknown or not valid, a StoreError a store given twice or not at all."""
    query = urllib.parse.parse_qs(locator.split("?", 1)[1] if "?" in locator else "")
    shown = redact_password(locator)
    unknown = sorted(set(query) - set(LOCATOR_OPTIONS))
    if unknown:
        raise ValidationError(
            f"unknown option {unknown[0]!r} in fallback locator {shown!r}; the options are "
            f"{', '.join(LOCATOR_OPTIONS)}"
        )
    given_once = all(len(values) == 1 for values in query.values())
    if not given_once or not {"primary", "fallback"} <= set(query):
        raise StoreError(
            f"a fallback locator needs one primary= and one fallback= locator, got {shown!r}"
        )
    both = query.get("write_to_both", ["0"])[0].lower()
    if both not in _TRUE + _FALSE:
        raise ValidationError(
            f"write_to_both={both!r} in fallback locator {shown!r} is not valid: use one of "
            f"{', '.join(_TRUE + _FALSE)}"
        )
    return FallbackLocation(
        query["primary"][0],
        query["fallback"][0],
        write_to_both=both in _TRUE,
        retry_after=_seconds(query.get("retry_after", [str(DEFAULT_RETRY_AFTER)])[0]),
    )


def without_reconnect_wait_of(primary: Store | str | os.PathLike[str]) -> Store | str:
    """The primary, as a locator that does not wait for its server to come back when it is
    a PostgreSQL store (given as a locator or as a store) whose locator sets no
    `reconnect_timeout`; otherwise unchanged (a path as a string)."""
    if isinstance(primary, str | os.PathLike):
        return without_reconnect_wait(os.fspath(primary))
    locator = primary.locator
    fast = without_reconnect_wait(locator)
    return primary if fast == locator else fast


def check_arguments(primary: Any, fallback: Any, write_to_both: Any, retry_after: Any) -> None:
    """Refuse arguments `FallbackStore` cannot work with, before anything is opened."""
    if not isinstance(write_to_both, bool):
        raise ValidationError(f"write_to_both must be True or False, got {write_to_both!r}")
    if (
        isinstance(retry_after, bool)
        or not isinstance(retry_after, int | float)
        or not math.isfinite(retry_after)
        or retry_after < 0
    ):
        raise ValidationError(
            f"retry_after={retry_after!r} is not valid: expected the seconds to write to the "
            "fallback before trying the primary again, a finite number >= 0"
        )
    for name, store in (("primary", primary), ("fallback", fallback)):
        if store is None or isinstance(store, bool | int | float | bytes):
            raise ValidationError(
                f"{name}={store!r} is not valid: expected a path, a locator string or a store"
            )
    if _same_store(primary, fallback):
        raise ValidationError(
            f"primary and fallback are the same store ({_shown(primary)}): the fallback must "
            "be another store, one that stays reachable when the primary does not"
        )


def _same_store(primary: Any, fallback: Any) -> bool:
    if not isinstance(primary, str | os.PathLike) or not isinstance(fallback, str | os.PathLike):
        return primary is fallback
    return _normalized(primary) == _normalized(fallback)


def _normalized(locator: str | os.PathLike[str]) -> str:
    text = os.fspath(locator)
    if text.startswith("file://"):
        text = os.fspath(path_from_file_uri(text))
    elif "://" in text or text.startswith(f"{SCHEME}:"):
        return text
    return os.path.realpath(os.path.expanduser(text))


def _shown(store: Any) -> str:
    if isinstance(store, str | os.PathLike):
        return repr(redact_password(os.fspath(store)))
    return repr(store)


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValidationError(
            f"retry_after={text!r} in a fallback locator is not valid: expected seconds, "
            "a finite number >= 0"
        ) from None
