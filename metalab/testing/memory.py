"""`MemoryStore`: a complete store held in this process's memory, for tests.

    store = MemoryStore.open("memory://unit", create=True)
    metalab.run(experiment, "memory://unit", executor="inline").result()
    metalab.load_results("memory://unit")

Stores live in a process-wide table keyed by name: every `memory://<name>` opened in this
process is the same object, so the driver, its threads and `load_results` all see the same
records. Another process (a Dask worker process, a SLURM task, a driver started with
`subprocess`) cannot reach it: opening the locator there fails with a `StoreError`.
"""

from __future__ import annotations

import copy
import io
import json
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any, cast

from .. import _trust, claims
from ..contracts import StoreDefaults
from ..errors import StoreError
from ..record import decode_record, encode_record

SCHEME = "memory"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

_table: dict[str, MemoryStore] = {}
_table_lock = threading.Lock()
_unnamed = iter(range(1, 1 << 62))


class MemoryStore(StoreDefaults):
    """A store in this process's memory, named `memory://<name>`; see the module doc.

    It keeps every part of the `metalab.contracts.Store` contract: records replaced
    atomically (a reader sees the old record or the new one), `get_records` in the order
    asked, `iter_records` by experiment id then run index, claims with owners whose liveness
    follows `metalab._claims.is_alive`, cancellation flags, manifests, experiments,
    artifacts, logs and derived metrics. Values are copied in and out, as a store that
    serializes them would.

    Worker processes cannot share it: use it with the `inline` and `threads` executors (or
    a `DaskExecutor` on in-process threads). The `processes` executor, a local Dask cluster
    of processes, SLURM arrays and dask-jobqueue workers need a file or PostgreSQL store.
    """

    def __init__(self, name: str | None = None) -> None:
        if name is None:
            name = f"unnamed-{next(_unnamed)}"
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise StoreError(
                f"a memory store name is 1 to 128 letters, digits, '_', '.' or '-' "
                f"(not starting with a symbol); got {name!r}"
            )
        self.name = name
        self._lock = threading.RLock()
        self._manifests: list[tuple[str, dict[str, Any]]] = []
        self._experiments: dict[str, bytes] = {}
        self._records: dict[str, bytes] = {}
        self._completed: set[str] = set()
        self._artifacts: dict[str, bytes] = {}
        self._logs: dict[str, list[str]] = {}
        self._claims: dict[str, _Claim] = {}
        self._cancelled: set[str] = set()
        self._derived: dict[str, bytes] = {}
        with _table_lock:
            if name in _table:
                raise StoreError(
                    f"memory://{name} exists in this process already: open it with "
                    f"MemoryStore.open('memory://{name}')"
                )
            _table[name] = self

    # ---------------------------------------------------------------- opening
    @classmethod
    def open(cls, locator: str, *, create: bool = True) -> MemoryStore:
        """Return the store `memory://<name>` of this process, made if `create` (else a
        `StoreError` when it does not exist, as in any other process than its own).
        Idempotent: the same name gives the same object."""
        name = _name_of(locator)
        with _table_lock:
            found = _table.get(name)
        if found is not None:
            return found
        if not create:
            raise StoreError(
                f"memory://{name} does not exist in this process. A MemoryStore lives in "
                "the process that made it: worker processes (the processes executor, a "
                "local Dask cluster of processes, SLURM tasks) cannot open it; use a file "
                "or PostgreSQL store there"
            )
        try:
            return cls(name)
        except StoreError:  # made by another thread meanwhile
            with _table_lock:
                return _table[name]

    @classmethod
    def named(cls) -> list[str]:
        """Return the names of the memory stores of this process."""
        with _table_lock:
            return sorted(_table)

    def drop(self) -> None:
        """Forget this store: its locator no longer opens it (a new, empty store then).
        Idempotent."""
        with _table_lock:
            if _table.get(self.name) is self:
                del _table[self.name]

    def __reduce__(self) -> tuple[Any, tuple[str, bool]]:
        # a copy in this process is the store itself; elsewhere it fails to open, loudly
        return (_reopen, (self.locator, False))

    @property
    def locator(self) -> str:
        """`memory://<name>`."""
        return f"{SCHEME}://{self.name}"

    def __repr__(self) -> str:
        return f"MemoryStore({self.locator!r})"

    # ---------------------------------------------------------------- experiments
    def write_manifest(self, experiment_id: str, manifest: Mapping[str, Any]) -> str:
        """Add a manifest (never replaces one); return its name."""
        if not _trust.is_experiment_id(experiment_id):
            raise StoreError(f"{experiment_id!r} is not an experiment id (name:version)")
        document = _copied(dict(manifest))
        with self._lock:
            name = f"experiments/{experiment_id}_{len(self._manifests):06d}"
            self._manifests.append((experiment_id, {**document, "_file": name}))
        return name

    def manifests(self, experiment_id: str | None = None) -> list[dict[str, Any]]:
        """Return the manifests (of one experiment or all), oldest first."""
        with self._lock:
            kept = [m for e, m in self._manifests if experiment_id in (None, e)]
        return [copy.deepcopy(m) for m in kept]

    def save_experiment(self, key: str, blob: bytes) -> None:
        """Keep the serialized experiment under `key`; idempotent."""
        _trust.check_experiment_key(key)
        with self._lock:
            self._experiments[key] = bytes(blob)

    def load_experiment(self, key: str) -> bytes:
        """Return the serialized experiment `key`; `StoreError` when absent."""
        with self._lock:
            blob = self._experiments.get(key)
        if blob is None:
            raise StoreError(f"{self.locator} has no experiment {key!r}")
        return blob

    def read_pickled(self, kind: str, key: str) -> tuple[bytes, str | None]:
        """Return the experiment (`kind` "experiment") or artifact bytes; only this process
        could have written them, so nobody else is to blame (None)."""
        if kind == "experiment":
            return self.load_experiment(key), None
        return self.read_artifact(key), None

    # ---------------------------------------------------------------- records
    def scan(self) -> tuple[set[str], set[str]]:
        """Return (run ids with a final record, run ids completed)."""
        with self._lock:
            return set(self._records), set(self._completed)

    def put_record(self, record: dict[str, Any]) -> bytes:
        """Replace the run's record atomically; return its JSON encoding. Idempotent."""
        run_id = _trust.check_run_id(record["run_id"])
        data = encode_record(record)
        with self._lock:
            self._records[run_id] = data
            if record["status"] == "completed":
                self._completed.add(run_id)
            else:
                self._completed.discard(run_id)
        return data

    def get_record(self, run_id: str) -> dict[str, Any] | None:
        """Return the record of `run_id`, or None."""
        with self._lock:
            data = self._records.get(run_id)
        return None if data is None else decode_record(data)

    def get_records(self, run_ids: Iterable[str]) -> Iterator[dict[str, Any]]:
        """Yield the existing records of `run_ids`, in the order given."""
        for run_id in run_ids:
            record = self.get_record(run_id)
            if record is not None:
                yield record

    def iter_records(self, experiment_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Yield every record (of one experiment, or all) by experiment id, then index."""
        with self._lock:
            records = [decode_record(data) for data in self._records.values()]
        records.sort(key=_order)
        for record in records:
            if experiment_id is None or record.get("experiment_id") == experiment_id:
                yield record

    # ---------------------------------------------------------------- artifacts and logs
    def put_artifact(self, run_id: str, filename: str, data: bytes) -> str:
        """Keep artifact bytes; return the reference `artifacts/<run_id>/<filename>`."""
        _trust.check_run_id(run_id)
        if not _trust.is_file_name(filename):
            raise StoreError(f"artifact file name {filename!r} of run {run_id} is not a name")
        ref = f"artifacts/{run_id}/{filename}"
        with self._lock:
            self._artifacts[ref] = bytes(data)
        return ref

    def read_artifact(self, ref: str) -> bytes:
        """Return the bytes behind `ref`; `StoreError` when there are none."""
        with self._lock:
            data = self._artifacts.get(ref)
        if data is None:
            raise StoreError(f"artifact {ref!r} is missing from {self.locator}")
        return data

    def open_log(self, run_id: str) -> IO[str]:
        """Open the run's log for appending (lines of earlier attempts stay)."""
        _trust.check_run_id(run_id)
        with self._lock:
            lines = self._logs.setdefault(run_id, [])
        return cast(IO[str], _Log(lines, self._lock))

    def put_log(self, run_id: str, text: str) -> None:
        """Replace the run's log with `text`; idempotent."""
        with self._lock:
            self._logs[run_id] = [text]

    def read_log(self, run_id: str) -> str:
        """Return the run's log ("" when it logged nothing)."""
        with self._lock:
            return "".join(self._logs.get(run_id, ()))

    # ---------------------------------------------------------------- claims
    def claim(self, run_id: str, owner: dict[str, Any]) -> bool:
        """Claim `run_id` for `owner`; False while another live owner holds it (a dead
        owner's claim is taken over). The claiming thread holds it until `release`."""
        claim = _Claim(copy.deepcopy(owner), threading.get_ident())
        with self._lock:
            current = self._claims.get(run_id)
            if current is not None and current.alive():
                return False
            self._claims[run_id] = claim
        claims.heartbeat.hold(self._heartbeat_key(run_id), claim.beat)
        return True

    def claim_owner(self, run_id: str) -> dict[str, Any] | None:
        """Return the owner of the claim on `run_id` (alive or dead), or None."""
        with self._lock:
            current = self._claims.get(run_id)
        return None if current is None else copy.deepcopy(current.owner)

    def release(self, run_id: str) -> None:
        """Give up the claim this thread holds on `run_id`; idempotent."""
        with self._lock:
            current = self._claims.get(run_id)
            if current is None or current.thread != threading.get_ident():
                return
            del self._claims[run_id]
        claims.heartbeat.release(self._heartbeat_key(run_id))

    def claims(self) -> dict[str, dict[str, Any]]:
        """Return the live claims (run id -> owner), forgetting those of dead owners."""
        with self._lock:
            for run_id in [r for r, c in self._claims.items() if not c.alive()]:
                del self._claims[run_id]
            return {run_id: copy.deepcopy(c.owner) for run_id, c in self._claims.items()}

    def _heartbeat_key(self, run_id: str) -> str:
        return f"{self.locator}#claim/{run_id}"

    # ---------------------------------------------------------------- control
    def request_cancel(self, session: str) -> None:
        """Ask every run of `session` to stop; idempotent."""
        with self._lock:
            self._cancelled.add(session)

    def cancel_requested(self, session: str) -> bool:
        """Return whether `request_cancel(session)` was called."""
        with self._lock:
            return session in self._cancelled

    # ---------------------------------------------------------------- derived metrics
    def put_derived(self, run_id: str, values: Mapping[str, Any]) -> None:
        """Replace the run's derived metrics document atomically; idempotent."""
        data = json.dumps(dict(values), sort_keys=True).encode()
        with self._lock:
            self._derived[run_id] = data

    def get_derived(self, run_id: str) -> dict[str, Any]:
        """Return the run's derived metrics document ({} when none)."""
        with self._lock:
            data = self._derived.get(run_id)
        return {} if data is None else json.loads(data)


class _Claim:
    """Who holds a claim, the thread that took it, and when it last gave a sign of life."""

    def __init__(self, owner: dict[str, Any], thread: int) -> None:
        self.owner = owner
        self.thread = thread
        self.beaten = time.monotonic()

    def beat(self) -> None:
        self.beaten = time.monotonic()

    def alive(self) -> bool:
        return claims.is_alive(self.owner, time.monotonic() - self.beaten)


class _Log(io.TextIOBase):
    """A run's log as a writable text file whose lines go into the store at once."""

    def __init__(self, lines: list[str], lock: threading.RLock) -> None:
        self._lines = lines
        self._lock = lock

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed log")
        with self._lock:
            self._lines.append(str(text))
        return len(text)


def _name_of(locator: str) -> str:
    if not isinstance(locator, str) or not locator.startswith(f"{SCHEME}://"):
        raise StoreError(f"a memory store locator is memory://<name>; got {locator!r}")
    return locator[len(SCHEME) + 3 :]


def _reopen(locator: str, create: bool) -> MemoryStore:
    return MemoryStore.open(locator, create=create)


def _copied(document: dict[str, Any]) -> dict[str, Any]:
    """A JSON copy, as a store that writes JSON keeps it (StoreError if it is no JSON)."""
    try:
        return json.loads(json.dumps(document, default=str))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"manifest is not JSON: {exc}") from exc


def _order(record: dict[str, Any]) -> tuple[str, int, str]:
    index = record.get("index")
    return (
        str(record.get("experiment_id", "")),
        index if type(index) is int else 0,
        str(record.get("run_id", "")),
    )
