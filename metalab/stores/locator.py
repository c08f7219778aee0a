"""Naming a store by its locator: `to_locator`."""

from __future__ import annotations

import os

from ..contracts import Store
from ..errors import StoreError
from ..locators import redact_password
from ..registry import open_store
from ..registry import open_store as create_store

__all__ = ["create_store", "to_locator"]


def to_locator(store: Store | str | os.PathLike[str], *, include_password: bool = False) -> str:
    """Return the locator string that names `store` (a store, a locator or a path).

    A password in a `postgresql://` locator is left out unless `include_password=True`
    (a process that reopens the store then takes it from `PGPASSWORD` or `~/.pgpass`).
    StoreError for something that is no store, locator or path.
    """
    if isinstance(store, (str, os.PathLike)):
        text = os.fspath(store)
        locator = text if "://" in text else open_store(text, create=False).locator
        return locator if include_password else redact_password(locator)
    if isinstance(store, Store):
        return store.locator if include_password else redact_password(store.public_locator)
    raise StoreError(f"{store!r} has no locator; it cannot be reopened by workers")
