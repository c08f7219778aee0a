"""The run ids of an experiment, computed once and kept in its store.

Every submission needs the run id of every run (to know which are done), and a run id is a
content hash: at a million runs, hashing them all takes seconds. So the ids are kept in the
store beside the experiments (`Store.save_experiment`, under a key derived from the
experiment's fingerprint, which covers everything that decides which runs exist), as 16 bytes
each. The kept ids are only a shortcut: they are used when their header, length and checksum
hold and a sample of them, recomputed, matches; otherwise they are computed again (and kept).
"""

from __future__ import annotations

import hashlib
import random
import struct

from ._identity import RUN_ID_LENGTH
from .contracts import Store
from .errors import StoreError
from .experiment import Experiment
from .run_ids import RunIds

_MAGIC = b"MLIDS1\n\x00"
_HEADER = struct.Struct("<8sQ32s")  # magic, how many ids, sha256 of the ids
SAMPLE = 16
"""Ids recomputed to check kept ones (besides the first and the last)."""
MIN_RUNS = 10_000
"""Below this many runs, hashing is quicker than a round trip to the store."""


def run_ids_of(experiment: Experiment, store: Store) -> RunIds:
    """The run id of every run of `experiment`, in index order: kept ones where they check
    out, else computed (and kept for the next submission, best effort)."""
    total = experiment.total_runs
    if total < MIN_RUNS:
        return experiment.packed_run_ids()
    key = _key(experiment)
    try:
        kept = _decoded(store.load_experiment(key), total)
    except StoreError:
        kept = None
    if kept is not None and _checks_out(experiment, kept):
        return kept
    ids = experiment.packed_run_ids()
    try:
        store.save_experiment(key, _encoded(ids))
    except StoreError:
        pass  # a store this user may not write: the ids are computed every time
    return ids


def _key(experiment: Experiment) -> str:
    """Where an experiment's ids are kept: a key no serialized experiment has."""
    return hashlib.sha256(b"run ids\n" + experiment.fingerprint.encode()).hexdigest()


def _encoded(ids: RunIds) -> bytes:
    body = ids.raw
    return _HEADER.pack(_MAGIC, len(ids), hashlib.sha256(body).digest()) + body


def _decoded(blob: bytes, total: int) -> RunIds | None:
    """The ids `blob` holds, or None when it is not `total` ids as `_encoded` writes them."""
    width = RUN_ID_LENGTH // 2
    if len(blob) != _HEADER.size + total * width:
        return None
    magic, count, digest = _HEADER.unpack_from(blob)
    body = memoryview(blob)[_HEADER.size :]
    if magic != _MAGIC or count != total or hashlib.sha256(body).digest() != digest:
        return None
    return RunIds(bytes(body))


def _checks_out(experiment: Experiment, ids: RunIds) -> bool:
    """Whether a sample of kept ids (the first, the last, and some between) are the ones the
    experiment has."""
    total = len(ids)
    sample = {0, total - 1, *random.sample(range(total), min(SAMPLE, total))}
    return all(experiment.run_id(i) == ids[i] for i in sample)
