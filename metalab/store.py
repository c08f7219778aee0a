"""The public store API: locators, the store classes, fallback and transfer."""

from .stores.base import Store
from .stores.fallback import FallbackStore
from .stores.file import FileStore
from .stores.locator import create_store, to_locator
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


def __getattr__(name: str):
    if name == "PostgresStore":
        from .stores.postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module 'metalab.store' has no attribute {name!r}")
