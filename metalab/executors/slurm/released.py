"""What the release jobs of a sweep submitted: `<session>/released/batch-<k>.json`.

A release job (see `release`) never writes `submission.json`, which the submitting process may
be writing; it records here, after each sbatch and atomically, the job id of each array job
it submitted (`jobs`: position -> job id), the entries of jobs it planned itself (`entries`,
for a sweep sized by a pilot) and the id of the next release job (`release`).
`Submission.refresh` reads them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

RELEASED = "released"
"""The directory, in the sweep's session directory, of the release jobs' records."""


def record_path(session_dir: Path, batch: int) -> Path:
    """Return the record of the release job of `batch`."""
    return session_dir / RELEASED / f"batch-{batch}.json"


def read_record(session_dir: Path, batch: int) -> dict[str, Any]:
    """Return what the release job of `batch` submitted (`jobs`: position -> job id, and
    `release`: the next release job's id); empty when it has not run."""
    try:
        document = json.loads(record_path(session_dir, batch).read_text())
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def write_record(session_dir: Path, batch: int, document: dict[str, Any]) -> None:
    path = record_path(session_dir, batch)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document))
    os.replace(tmp, path)


def rest_batch(document: dict[str, Any]) -> int | None:
    """The batch whose release job plans the rest of a sweep sized by its pilot (the one
    after the pilot's own batches, noted when the sweep was planned), or None for a sweep
    planned whole."""
    sizing = document.get("sizing") or {}
    if sizing.get("from") != "pilot" or not sizing.get("rest"):
        return None
    return int(sizing.get("rest_batch", 1))
