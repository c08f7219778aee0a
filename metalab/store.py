"""The public store API: `create_store`, `to_locator`, and the store classes."""

from .stores.base import Store
from .stores.file import FileStore
from .stores.locator import create_store, to_locator

__all__ = ["FileStore", "Store", "create_store", "to_locator"]
