"""Store locators: strings that name a store, and the factory that opens them."""

from __future__ import annotations

import os
from typing import Any

from ..errors import StoreError

KNOWN_SCHEMES = ("file://", "postgresql://", "postgres://")


def create_store(locator: Any, *, create: bool = True) -> Any:
    """Open the store named by `locator`: a path, a `file://` URI or a `postgresql://` URI.

    A store object is returned unchanged. With `create=False` a missing file store is an error.
    """
    if not isinstance(locator, (str, os.PathLike)):
        if hasattr(locator, "put_record"):
            return locator
        raise StoreError(
            f"store must be a path, a locator string or a store object, got {locator!r}"
        )
    text = os.fspath(locator)
    if "://" not in text:
        from .file import FileStore

        return FileStore.open(text, create=create)
    scheme = text.split("://", 1)[0].lower()
    if scheme == "file":
        from .file import FileStore, path_from_file_uri

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


def to_locator(store: Any) -> str:
    """Return the locator string that reopens `store` in another process."""
    if isinstance(store, (str, os.PathLike)):
        return create_store(store, create=False).locator
    locator = getattr(store, "locator", None)
    if not isinstance(locator, str):
        raise StoreError(f"{store!r} has no locator; it cannot be reopened by workers")
    return locator
