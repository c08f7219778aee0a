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
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import IO, Any

from ..contracts import StoreDefaults
from ..errors import StoreError, StoreUnavailableError, ValidationError
from .base import flush_journal

logger = logging.getLogger("metalab")

SCHEME = "fallback"
DEFAULT_RETRY_AFTER = 30.0
LOCATOR_OPTIONS = ("primary", "fallback", "write_to_both", "retry_after")
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


def unavailable(exc: BaseException) -> bool:
    """Whether `exc` means a store cannot be reached (rather than a bad request)."""
    if isinstance(exc, StoreUnavailableError | ConnectionError | TimeoutError):
        return True
    return any(
        cls.__name__ in ("OperationalError", "InterfaceError", "PoolTimeout")
        for cls in type(exc).__mro__
    )


class FallbackStore(StoreDefaults):
    """A primary store with a fallback for the times it cannot be reached; see the module doc."""

    scheme = SCHEME

    def __init__(
        self,
        primary: Any,
        fallback: Any,
        write_to_both: bool = False,
        *,
        retry_after: float = DEFAULT_RETRY_AFTER,
    ):
        from .locator import create_store

        _check_arguments(primary, fallback, write_to_both, retry_after)
        self._given_primary = primary
        primary = _without_reconnect_wait(primary)
        self.fallback = create_store(fallback)
        self.write_to_both = write_to_both
        self.retry_after = float(retry_after)
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._claimed: dict[str, Any] = {}
        try:
            self.primary = create_store(primary)
        except StoreError as exc:
            if not unavailable(exc) or not isinstance(primary, str):
                raise
            self.primary = _Unopened(primary, exc)
            self._mark_down(exc)

    # ---------------------------------------------------------------- identity
    @property
    def locator(self) -> str:
        """`fallback:?primary=<locator>&fallback=<locator>[&write_to_both=1][&retry_after=s]`."""
        query = {"primary": self.primary.locator, "fallback": self.fallback.locator}
        if self.write_to_both:
            query["write_to_both"] = "1"
        if self.retry_after != DEFAULT_RETRY_AFTER:
            query["retry_after"] = f"{self.retry_after:g}"
        return f"{SCHEME}:?{urllib.parse.urlencode(query)}"

    @classmethod
    def open(cls, locator: str, *, create: bool = True) -> FallbackStore:
        """Open a `fallback:?primary=...&fallback=...` locator; a ValidationError names an
        option that is unknown, given twice or not valid."""
        from ..locators import redact_password

        query = urllib.parse.parse_qs(locator.split("?", 1)[1] if "?" in locator else "")
        shown = redact_password(locator)
        unknown = sorted(set(query) - set(LOCATOR_OPTIONS))
        if unknown:
            raise ValidationError(
                f"unknown option {unknown[0]!r} in fallback locator {shown!r}; the options are "
                f"{', '.join(LOCATOR_OPTIONS)}"
            )
        given_once = all(len(values) == 1 for values in query.values())
        if not given_once or not {"primary", "fallback"} <= set(query):
            raise StoreError(
                f"a fallback locator needs one primary= and one fallback= locator, got {shown!r}"
            )
        both = query.get("write_to_both", ["0"])[0].lower()
        if both not in _TRUE + _FALSE:
            raise ValidationError(
                f"write_to_both={both!r} in fallback locator {shown!r} is not valid: use one of "
                f"{', '.join(_TRUE + _FALSE)}"
            )
        retry_after = _seconds(query.get("retry_after", [str(DEFAULT_RETRY_AFTER)])[0])
        return cls(
            query["primary"][0],
            query["fallback"][0],
            write_to_both=both in _TRUE,
            retry_after=retry_after,
        )

    def __repr__(self) -> str:
        from ..locators import redact_password

        return (
            f"FallbackStore({redact_password(self.primary.locator)!r}, {self.fallback.locator!r})"
        )

    # ---------------------------------------------------------------- routing
    def _primary_up(self) -> bool:
        return time.monotonic() >= self._down_until

    def _mark_down(self, exc: BaseException) -> None:
        with self._lock:
            first = self._primary_up()
            self._down_until = time.monotonic() + self.retry_after
        if first:
            from ..locators import redact_password

            logger.warning(
                "primary store unavailable (%s); writing to the fallback %s for %.0f s",
                exc,
                redact_password(self.fallback.locator),
                self.retry_after,
            )

    def _write(self, name: str, *args: Any) -> Any:
        """Call `name` on the primary, or on the fallback while the primary is down."""
        if self.write_to_both:
            result = getattr(self.fallback, name)(*args)
            if self._primary_up():
                try:
                    return getattr(self.primary, name)(*args)
                except Exception as exc:
                    if not unavailable(exc):
                        raise
                    self._mark_down(exc)
            return result
        if self._primary_up():
            try:
                return getattr(self.primary, name)(*args)
            except Exception as exc:
                if not unavailable(exc):
                    raise
                self._mark_down(exc)
        return getattr(self.fallback, name)(*args)

    def _stores(self) -> list[Any]:
        """The stores to read from: the primary when it is up, then the fallback."""
        if not self._primary_up():
            return [self.fallback]
        return [self.primary, self.fallback]

    def _read(self, name: str, *args: Any) -> list[Any]:
        """Call `name` on each readable store; a primary that fails to answer is skipped.
        Iterators are read to the end here, so a failure while reading counts too."""
        out = []
        for store in self._stores():
            try:
                result = getattr(store, name)(*args)
                if isinstance(result, Iterator):
                    result = list(result)
                out.append(result)
            except Exception as exc:
                if store is self.fallback or not unavailable(exc):
                    raise
                self._mark_down(exc)
        return out

    # ---------------------------------------------------------------- experiments
    def write_manifest(self, experiment_id: str, manifest: dict[str, Any]) -> str:
        return self._write("write_manifest", experiment_id, manifest)

    def manifests(self, experiment_id: str | None = None) -> list[dict[str, Any]]:
        seen: dict[tuple, dict[str, Any]] = {}
        for found in self._read("manifests", experiment_id):
            for manifest in found:
                key = (
                    manifest.get("experiment_id"),
                    manifest.get("session"),
                    manifest.get("submitted_at"),
                )
                seen.setdefault(key, manifest)
        return sorted(seen.values(), key=lambda m: m.get("submitted_at", ""))

    def save_experiment(self, key: str, blob: bytes) -> None:
        # both: a worker must find the experiment whichever store it reaches
        self.fallback.save_experiment(key, blob)
        if self._primary_up():
            try:
                self.primary.save_experiment(key, blob)
            except Exception as exc:
                if not unavailable(exc):
                    raise
                self._mark_down(exc)

    def load_experiment(self, key: str) -> bytes:
        for store in self._stores():
            try:
                return store.load_experiment(key)
            except Exception as exc:
                if store is self.fallback or not (unavailable(exc) or isinstance(exc, StoreError)):
                    raise
                if unavailable(exc):
                    self._mark_down(exc)
        raise StoreError(f"no experiment {key!r} in {self!r}")  # pragma: no cover

    def read_pickled(self, kind: str, key: str) -> tuple[bytes, str | None]:
        """Read as `load_experiment` and `read_artifact` do: the first store that has it."""
        errors = []
        for store in self._stores():
            try:
                return store.read_pickled(kind, key)
            except Exception as exc:
                if not (isinstance(exc, StoreError) or unavailable(exc)):
                    raise
                if unavailable(exc):
                    self._mark_down(exc)
                errors.append(exc)
        raise StoreError(f"{kind} {key!r} is in neither store: {errors[-1]}")

    # ---------------------------------------------------------------- records
    def scan(self) -> tuple[set[str], set[str]]:
        final: set[str] = set()
        done: set[str] = set()
        for f, d in self._read("scan"):
            final |= f
            done |= d
        return final, done

    def put_record(self, record: dict[str, Any]) -> None:
        self._write("put_record", record)

    def flush_journal(self) -> None:
        """Let a file store among the two journal what it was given (see `FileStore`)."""
        for store in (self.primary, self.fallback):
            flush_journal(store)

    def get_record(self, run_id: str) -> dict[str, Any] | None:
        found = [r for r in self._read("get_record", run_id) if r is not None]
        return _newest(found)

    def get_records(self, run_ids: Iterable[str]) -> Iterator[dict[str, Any]]:
        for run_id in run_ids:
            record = self.get_record(run_id)
            if record is not None:
                yield record

    def iter_records(self, experiment_id: str | None = None) -> Iterator[dict[str, Any]]:
        merged: dict[str, dict[str, Any]] = {}
        for records in self._read("iter_records", experiment_id):
            for record in records:
                current = merged.get(record["run_id"])
                if current is None or _newest([current, record]) is record:
                    merged[record["run_id"]] = record
        yield from merged.values()

    # ---------------------------------------------------------------- artifacts, logs, derived
    def put_artifact(self, run_id: str, filename: str, data: bytes) -> str:
        return self._write("put_artifact", run_id, filename, data)

    def read_artifact(self, ref: str) -> bytes:
        errors = []
        for store in self._stores():
            try:
                return store.read_artifact(ref)
            except Exception as exc:
                if not (isinstance(exc, StoreError) or unavailable(exc)):
                    raise
                errors.append(exc)
        raise StoreError(f"artifact {ref!r} is in neither store: {errors[-1]}")

    def open_log(self, run_id: str) -> IO[str]:
        """A log whose lines follow the writes: to the primary while it answers, to the
        fallback (with the lines written so far) from the moment it does not, to both with
        `write_to_both`."""
        return _FallbackLog(self, run_id)  # type: ignore[return-value]

    def put_log(self, run_id: str, text: str) -> None:
        self._write("put_log", run_id, text)

    def read_log(self, run_id: str) -> str:
        return "".join(self._read("read_log", run_id)[:1]) or "".join(
            self._read("read_log", run_id)[1:]
        )

    def put_derived(self, run_id: str, values: dict[str, Any]) -> None:
        self._write("put_derived", run_id, values)

    def get_derived(self, run_id: str) -> dict[str, Any]:
        for document in self._read("get_derived", run_id):
            if document:
                return document
        return {}

    # ---------------------------------------------------------------- claims and control
    def claim(self, run_id: str, owner: dict[str, Any]) -> bool:
        store = self.primary if self._primary_up() else self.fallback
        try:
            claimed = store.claim(run_id, owner)
        except Exception as exc:
            if store is self.fallback or not unavailable(exc):
                raise
            self._mark_down(exc)
            store = self.fallback
            claimed = store.claim(run_id, owner)
        if claimed:
            self._claimed[run_id] = store
        return claimed

    def claim_owner(self, run_id: str) -> dict[str, Any] | None:
        for owner in self._read("claim_owner", run_id):
            if owner is not None:
                return owner
        return None

    def release(self, run_id: str) -> None:
        store = self._claimed.pop(run_id, None)
        if store is None:
            return
        try:
            store.release(run_id)
        except Exception as exc:
            if not unavailable(exc):
                raise
            self._mark_down(exc)  # the claim lapses with its lease

    def claims(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for found in self._read("claims"):
            out.update(found)
        return out

    def request_cancel(self, session: str) -> None:
        self.fallback.request_cancel(session)
        if self._primary_up():
            try:
                self.primary.request_cancel(session)
            except Exception as exc:
                if not unavailable(exc):
                    raise
                self._mark_down(exc)

    def cancel_requested(self, session: str) -> bool:
        return any(self._read("cancel_requested", session))

    # ---------------------------------------------------------------- sync
    def _syncing_primary(self) -> Any:
        """The primary as `sync` writes to it: as it was given, so that a PostgreSQL primary
        waits for its server as it does outside a FallbackStore."""
        from .locator import create_store

        given = self._given_primary
        return create_store(given) if isinstance(given, str | os.PathLike) else given

    def sync(self, experiment_id: str | None = None) -> Any:
        """Copy every run the fallback holds into the primary (idempotent); return the report.

        Run after the primary is back. Records already in the primary are kept when they
        are the same or newer. The primary is written as when it is used alone (a PostgreSQL
        primary given as a locator retries for its `reconnect_timeout`). Raises
        `StoreUnavailableError` if the primary is still down.
        """
        from .transfer import TransferReport, _copy_run, _matches

        if isinstance(self.primary, _Unopened):
            self.primary = self.primary.reopen()
        primary = self._syncing_primary()
        report = TransferReport(_public(self.fallback), _public(primary))
        reader = _Reader(self.fallback, primary)

        manifests = [
            m for m in self.fallback.manifests() if _matches(m.get("experiment_id"), experiment_id)
        ]
        if experiment_id is not None and not manifests:
            held = sorted({str(m.get("experiment_id")) for m in self.fallback.manifests()})
            raise ValidationError(
                f"the fallback {_public(self.fallback)} holds no experiment "
                f"{experiment_id!r}; it holds: {', '.join(held) or 'nothing'}"
            )
        for manifest in manifests:
            clean = {k: v for k, v in manifest.items() if not k.startswith("_")}
            key = clean.get("experiment_key")
            if key:
                primary.save_experiment(key, self.fallback.load_experiment(key))
            known = {
                (m.get("experiment_id"), m.get("session"), m.get("submitted_at"))
                for m in primary.manifests(clean.get("experiment_id"))
            }
            if (
                clean.get("experiment_id"),
                clean.get("session"),
                clean.get("submitted_at"),
            ) not in known:
                primary.write_manifest(clean["experiment_id"], clean)
                report.manifests += 1
        for record in self.fallback.iter_records():
            if not _matches(record.get("experiment_id"), experiment_id):
                continue
            _copy_run(reader, primary, record, report)
            report.experiments = sorted({*report.experiments, record["experiment_id"]})
        with self._lock:
            self._down_until = 0.0
        return report


def _without_reconnect_wait(primary: Any) -> Any:
    """The primary, as a locator that does not wait for its server to come back when it is
    a PostgreSQL store (given as a locator or as a store) whose locator sets no
    `reconnect_timeout`; otherwise unchanged."""
    from ..locators import without_reconnect_wait

    if isinstance(primary, str | os.PathLike):
        return without_reconnect_wait(os.fspath(primary))
    locator = primary.locator
    fast = without_reconnect_wait(locator)
    return primary if fast == locator else fast


def _check_arguments(primary: Any, fallback: Any, write_to_both: Any, retry_after: Any) -> None:
    """Refuse arguments `FallbackStore` cannot work with, before anything is opened."""
    if not isinstance(write_to_both, bool):
        raise ValidationError(f"write_to_both must be True or False, got {write_to_both!r}")
    if (
        isinstance(retry_after, bool)
        or not isinstance(retry_after, int | float)
        or not math.isfinite(retry_after)
        or retry_after < 0
    ):
        raise ValidationError(
            f"retry_after={retry_after!r} is not valid: expected the seconds to write to the "
            "fallback before trying the primary again, a finite number >= 0"
        )
    for name, store in (("primary", primary), ("fallback", fallback)):
        if store is None or isinstance(store, bool | int | float | bytes):
            raise ValidationError(
                f"{name}={store!r} is not valid: expected a path, a locator string or a store"
            )
    if _same_store(primary, fallback):
        raise ValidationError(
            f"primary and fallback are the same store ({_shown(primary)}): the fallback must "
            "be another store, one that stays reachable when the primary does not"
        )


def _same_store(primary: Any, fallback: Any) -> bool:
    if not isinstance(primary, str | os.PathLike) or not isinstance(fallback, str | os.PathLike):
        return primary is fallback
    return _normalized(primary) == _normalized(fallback)


def _normalized(locator: str | os.PathLike[str]) -> str:
    text = os.fspath(locator)
    if text.startswith("file://"):
        from ..locators import path_from_file_uri

        text = os.fspath(path_from_file_uri(text))
    elif "://" in text or text.startswith(f"{SCHEME}:"):
        return text
    return os.path.realpath(os.path.expanduser(text))


def _shown(store: Any) -> str:
    from ..locators import redact_password

    if isinstance(store, str | os.PathLike):
        return repr(redact_password(os.fspath(store)))
    return repr(store)


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValidationError(
            f"retry_after={text!r} in a fallback locator is not valid: expected seconds, "
            "a finite number >= 0"
        ) from None


class _FallbackLog:
    """The log handle `FallbackStore.open_log` returns; see there."""

    def __init__(self, store: FallbackStore, run_id: str):
        self._store, self._run_id = store, run_id
        self._handles: dict[int, Any] = {}
        self._lines: list[str] = []

    def _targets(self) -> list[Any]:
        store = self._store
        if store.write_to_both:
            return [store.fallback, store.primary] if store._primary_up() else [store.fallback]
        return [store.primary] if store._primary_up() else [store.fallback]

    def _handle(self, target: Any) -> Any:
        handle = self._handles.get(id(target))
        if handle is None:
            handle = self._handles[id(target)] = target.open_log(self._run_id)
            if target is self._store.fallback and self._lines and not self._store.write_to_both:
                handle.write("".join(self._lines))  # what went to the primary until now
        return handle

    def _each(self, action: Any) -> None:
        store = self._store
        for target in self._targets():
            try:
                action(self._handle(target))
            except Exception as exc:
                if target is store.fallback or not unavailable(exc):
                    raise
                store._mark_down(exc)
                self._handles.pop(id(target), None)
                if not store.write_to_both:
                    action(self._handle(store.fallback))

    def write(self, text: str) -> int:
        self._each(lambda handle: handle.write(text))
        self._lines.append(text)
        return len(text)

    def flush(self) -> None:
        self._each(lambda handle: handle.flush())

    def close(self) -> None:
        handles, self._handles = list(self._handles.values()), {}
        errors = []
        for handle in handles:
            try:
                handle.close()
            except Exception as exc:
                if not unavailable(exc):
                    raise
                errors.append(exc)
                self._store._mark_down(exc)
        if errors and not self._store.write_to_both:
            # the primary went away with lines unsent: the fallback gets the whole log
            fallback = self._store.fallback.open_log(self._run_id)
            try:
                fallback.write("".join(self._lines))
            finally:
                fallback.close()


class _Reader:
    """The fallback as a transfer source, finding artifacts written to either store."""

    def __init__(self, fallback: Any, primary: Any):
        self._fallback, self._primary = fallback, primary

    def read_artifact(self, ref: str) -> bytes:
        try:
            return self._fallback.read_artifact(ref)
        except StoreError:
            return self._primary.read_artifact(ref)

    def read_log(self, run_id: str) -> str:
        return self._fallback.read_log(run_id)

    def get_derived(self, run_id: str) -> dict[str, Any]:
        return self._fallback.get_derived(run_id)


class _Unopened:
    """A primary that could not be opened yet: every call says it is unavailable."""

    def __init__(self, locator: str, error: BaseException):
        self.locator = locator
        self._error = error

    def reopen(self) -> Any:
        from .locator import create_store

        return create_store(self.locator)

    def __getattr__(self, name: str) -> Any:
        def unavailable_call(*args: Any, **kwargs: Any) -> Any:
            raise StoreUnavailableError(str(self._error))

        return unavailable_call


def _newest(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The record finished last (a completed one wins a tie)."""
    if not records:
        return None
    return max(
        records,
        key=lambda r: (r.get("finished_at") or "", r.get("status") == "completed"),
    )


def _public(store: Any) -> str:
    from .locator import to_locator

    return to_locator(store)
