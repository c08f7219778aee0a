"""The public store API: locators, the store classes, fallback and transfer."""

from typing import Any

from .contracts import Store
from .registry import open_store as create_store
from .registry import store_class
from .stores.fallback import FallbackStore
from .stores.file import FileStore
from .stores.locator import to_locator
from .stores.transfer import TransferReport, export_store, import_from_filestore, transfer

__all__ = [
    "FallbackStore",
    "FileStore",
    "Store",
    "TransferReport",
    "create_store",
    "export_store",
    "import_from_filestore",
    "to_locator",
    "transfer",
]


def __getattr__(name: str) -> Any:
    # PostgresStore imports psycopg: only when asked for, so `import metalab.store` stays light
    if name == "PostgresStore":
        return store_class("postgresql")
    raise AttributeError(f"module 'metalab.store' has no attribute {name!r}")
