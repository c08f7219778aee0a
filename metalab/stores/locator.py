"""Naming a store by its locator (`to_locator`), and `create_store`, the former name of
`metalab.registry.open_store`."""

from __future__ import annotations

import os
from typing import Any

from ..contracts import Store
from ..errors import StoreError
from ..locators import path_from_file_uri, redact_password, scheme_of
from ..registry import open_store
from .file import FileStore


def create_store(locator: Any, *, create: bool = True) -> Store:
    """Open the store named by `locator`: a path, a locator or a store object, which is
    returned as it is (see `metalab.registry.open_store`, whose former name this is).

    Until `FileStore` satisfies `metalab.contracts.Store` itself, a file store object is
    passed through here and a `file://` URI opens the directory it names.
    """
    if isinstance(locator, FileStore):
        return locator  # type: ignore[return-value]
    if isinstance(locator, str) and "://" in locator and scheme_of(locator) == "file":
        locator = path_from_file_uri(locator)
    return open_store(locator, create=create)


def to_locator(store: Store | str | os.PathLike[str], *, include_password: bool = False) -> str:
    """Return the locator string that names `store` (a store, a locator or a path).

    A password in a `postgresql://` locator is left out unless `include_password=True`
    (a process that reopens the store then takes it from `PGPASSWORD` or `~/.pgpass`).
    StoreError for something that is no store, locator or path.
    """
    if isinstance(store, (str, os.PathLike)):
        text = os.fspath(store)
        locator = text if "://" in text else create_store(text, create=False).locator
    elif isinstance(store, (Store, FileStore)):
        locator = store.locator
    else:
        raise StoreError(f"{store!r} has no locator; it cannot be reopened by workers")
    # every store's public_locator is its locator without passwords; this reads it for
    # stores that do not declare it yet
    return locator if include_password else redact_password(locator)
