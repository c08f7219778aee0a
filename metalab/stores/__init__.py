"""Stores: where run records, artifacts and logs live (files by default, PostgreSQL)."""

from ..locators import KNOWN_SCHEMES
from .base import Store
from .locator import create_store, to_locator

__all__ = ["KNOWN_SCHEMES", "Store", "create_store", "to_locator"]
