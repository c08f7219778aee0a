"""`FallbackStore`: write to a primary store, and to a fallback while the primary is down.

    primary = create_store("postgresql://localhost/db")
    fallback = create_store("./runs/backup")
    store = FallbackStore(primary, fallback, write_to_both=False)
    handle = metalab.run(exp, store=store)
    ...
    store.sync()   # later: copy what went to the fallback into the primary

Every write goes to the primary; when it fails because the primary cannot be reached
(`StoreUnavailableError`, or a connection error from its driver), that write and the writes
of the next `retry_after` seconds go to the fallback, so nothing is lost while the primary is
down. With `write_to_both=True` every write also goes to the fallback (a live backup). Reads
merge both stores: a run recorded in both is read from the newer record.

A PostgreSQL primary (a locator or a store) is used without waiting for its server to come
back (with `reconnect_timeout=0`, unless its locator sets another value): while it cannot be
reached, writes go to the fallback at once. `sync()` uses the primary as it was given.

The store travels to workers as a `fallback:?primary=...&fallback=...` locator.

The modules: `store` (`FallbackStore`), `routing` (which store a call goes to, and the
primary's outage), `log` (a run's log that follows the writes), `sync` (copying the
fallback into the primary) and `locator` (`fallback:` locators and arguments).
"""

from .store import FallbackStore

__all__ = ["FallbackStore"]
