"""Artifacts of the PostgreSQL store kept as files under its `artifact_root`.

References have the form `artifacts/<run_id>/<name>`, whether the bytes are in the database
or under `artifact_root`. A directory serves one store: the first store opened with it
writes `ARTIFACT_MARKER` there, naming itself, and every other store refuses it.
"""

from __future__ import annotations

import json
import os

from ...errors import StoreError
from ..atomic import atomic_write

ARTIFACT_MARKER = "_metalab_artifacts.json"


def artifact_ref(run_id: str, filename: str) -> str:
    """Return the reference `artifacts/<run_id>/<filename>`; StoreError for a run id or
    name that cannot name a file."""
    return f"artifacts/{_component(run_id, 'run id')}/{_component(filename, 'artifact')}"


def parse_ref(ref: str) -> tuple[str, str]:
    """Return (run id, file name) of a reference; StoreError when it is none."""
    parts = ref.split("/") if isinstance(ref, str) else []
    if len(parts) != 3 or parts[0] != "artifacts" or any(p in ("", ".", "..") for p in parts):
        raise StoreError(
            f"artifact reference {ref!r} is not of the form 'artifacts/<run_id>/<name>'"
        )
    return parts[1], parts[2]


def write_file(root: str, run_id: str, filename: str, data: bytes) -> None:
    """Write an artifact under `root` atomically."""
    directory = os.path.join(root, "artifacts", run_id)
    os.makedirs(directory, exist_ok=True)
    atomic_write(os.path.join(directory, filename), data)


def read_file(root: str, ref: str) -> bytes | None:
    """Return the bytes of an artifact under `root`, or None when it has no such file."""
    try:
        with open(os.path.join(root, ref), "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def claim_root(root: str, store_id: str, shown: str) -> None:
    """Mark `root` as the directory of store `store_id` (shown as `shown`), or StoreError
    if it is another store's. Idempotent."""
    os.makedirs(root, exist_ok=True)
    marker = os.path.join(root, ARTIFACT_MARKER)
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"store_id": store_id, "store": shown}, fh)
    check_root(root, store_id, shown)


def check_root(root: str, store_id: str, shown: str) -> None:
    """StoreError unless `root` is marked as the directory of store `store_id` on this host."""
    marker = os.path.join(root, ARTIFACT_MARKER)
    try:
        with open(marker, encoding="utf-8") as fh:
            owner = json.load(fh)
    except FileNotFoundError:
        raise StoreError(
            f"artifact_root {root!r} of store {shown!r} has no {ARTIFACT_MARKER} on this host: "
            "it is not the directory the store was opened with; put artifact_root on a "
            "filesystem every worker sees"
        ) from None
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot read {marker!r}: {exc}") from exc
    if owner.get("store_id") != store_id:
        raise StoreError(
            f"artifact_root {root!r} holds the artifacts of another store "
            f"({owner.get('store')!r}); give each store its own artifact_root"
        )


def _component(name: str, what: str) -> str:
    if not name or name in (".", "..") or any(c in name for c in "/\\\x00"):
        raise StoreError(f"{what} name {name!r} cannot name a file")
    return name
