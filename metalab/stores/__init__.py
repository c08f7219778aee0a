"""Stores: where run records, artifacts and logs live (files by default, PostgreSQL).

The contract every store satisfies is `metalab.contracts.Store`; stores are opened from
their locators by `metalab.registry.open_store`.
"""

from ..contracts import Store
from ..locators import KNOWN_SCHEMES
from ..registry import open_store as create_store
from .locator import to_locator

__all__ = ["KNOWN_SCHEMES", "Store", "create_store", "to_locator"]
