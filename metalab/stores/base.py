"""`flush_journal(store)`: the former way to end a batch of records, for callers not changed
yet to call `Store.flush_journal()` (every store has it; see `metalab.contracts.Store`)."""

from __future__ import annotations

from ..contracts import Store


def flush_journal(store: Store) -> None:
    """End a batch of `put_record` calls; see `Store.flush_journal`. Idempotent."""
    store.flush_journal()
