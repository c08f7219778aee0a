"""Store locators: strings that name a store, and the factory that opens them."""

from __future__ import annotations

import os
from typing import Any

from ..errors import StoreError, ValidationError
from ..locators import KNOWN_SCHEMES, redact_password


def create_store(locator: Any, *, create: bool = True) -> Any:
    """Open the store named by `locator`: a path, a `file://` URI or a `postgresql://` URI.

    A store object is returned unchanged. With `create=False` a missing file store is an error.
    """
    if not isinstance(create, bool):
        raise ValidationError(f"create must be True or False, got {create!r}")
    if not isinstance(locator, (str, os.PathLike)):
        if hasattr(locator, "put_record"):
            return locator
        raise StoreError(
            f"store must be a path, a locator string or a store object, got {locator!r}"
        )
    text = os.fspath(locator)
    if text.startswith("fallback:"):
        from .fallback import FallbackStore

        return FallbackStore.open(text, create=create)
    if "://" not in text:
        from .file import FileStore

        return FileStore.open(text, create=create)
    scheme = text.split("://", 1)[0].lower()
    if scheme == "file":
        from ..locators import path_from_file_uri
        from .file import FileStore

        return FileStore.open(path_from_file_uri(text), create=create)
    if scheme in ("postgresql", "postgres"):
        try:
            from .postgres import PostgresStore  # type: ignore[import-not-found]
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("metalab"):
                raise StoreError(
                    "PostgreSQL stores are not available in this metalab build"
                ) from exc
            raise
        return PostgresStore.open(text, create=create)
    raise StoreError(
        f"unknown store scheme {scheme + '://'!r} in {text!r}; known schemes: "
        f"{', '.join(KNOWN_SCHEMES)} (or a plain filesystem path)"
    )


def to_locator(store: Any, *, include_password: bool = False) -> str:
    """Return the locator string that names `store`.

    A password in a `postgresql://` locator is left out unless `include_password=True`
    (a process that reopens the store then takes it from `PGPASSWORD` or `~/.pgpass`).
    """
    if isinstance(store, (str, os.PathLike)):
        text = os.fspath(store)
        locator = text if "://" in text else create_store(text, create=False).locator
    else:
        locator = getattr(store, "locator", None)
        if not isinstance(locator, str):
            raise StoreError(f"{store!r} has no locator; it cannot be reopened by workers")
        public = getattr(store, "public_locator", None)
        if not include_password and isinstance(public, str):
            return public
    return locator if include_password else redact_password(locator)
