"""Canonical JSON and content hashes: the one definition of identity (DESIGN invariant 2)."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from .errors import FingerprintError

_encoder = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


IDENTIFIES = "NaN and infinite values cannot identify a run"
"""Why `normalize` refuses NaN and infinities in what identifies a run."""


def normalize(value: Any, where: str, why: str = IDENTIFIES) -> Any:
    """Return `value` as plain JSON types, or raise `FingerprintError` naming `where`.

    NumPy scalars become the equal Python number, tuples become lists, mapping keys must be
    strings. NaN and infinities are rejected, for the reason `why` (by default: they have
    no stable identity).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FingerprintError(
                f"{where} is {value!r}: {why}; use a finite number, a string or None"
            )
        return float(value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise FingerprintError(
                    f"{where} has key {key!r} of type {type(key).__name__}: keys must be strings"
                )
            out[key] = normalize(item, f"{where}[{key!r}]", why)
        return out
    if isinstance(value, (list, tuple)):
        return [normalize(item, f"{where}[{i}]", why) for i, item in enumerate(value)]
    scalar = _numpy_scalar(value)
    if scalar is not _NOT_NUMPY:
        return normalize(scalar, where, why)
    raise FingerprintError(
        f"{where} is {value!r} of type {type(value).__name__}: expected a JSON value "
        "(str, int, float, bool, None, or lists and dicts of them)"
    )


_NOT_NUMPY = object()


def _numpy_scalar(value: Any) -> Any:
    module = type(value).__module__
    if module != "numpy" or not hasattr(value, "item"):
        return _NOT_NUMPY
    if getattr(value, "shape", None) not in ((), None):
        return _NOT_NUMPY
    import numpy as np

    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.str_):
        return str(value)
    return _NOT_NUMPY


def normalize_and_encode(values: list, where: str) -> tuple[list, list[str]]:
    """`[normalize(v, where) for v in values]` and the canonical JSON of each, with a quick
    path for plain ints and strings (most parameter values)."""
    normalized: list = []
    encoded: list[str] = []
    for value in values:
        kind = type(value)
        if kind is int:
            normalized.append(value)
            encoded.append(int.__repr__(value))  # canonical JSON of an int: its digits
            continue
        if kind is not str:
            value = normalize(value, where)
        normalized.append(value)
        encoded.append(canonical_json(value))
    return normalized, encoded


def run_id_maker(experiment_id: str, context_fp: str) -> Any:
    """A function `(params_fp, seed_fp) -> run id` equal to `run_id_from` for this experiment
    and context, hashing their common prefix once."""
    prefix = hashlib.sha256(_run_id_prefix(experiment_id, context_fp).encode())

    def make(params_fp: str, seed_fp: str) -> str:
        h = prefix.copy()
        h.update(f"{params_fp}\n{seed_fp}".encode())
        return h.hexdigest()[:RUN_ID_LENGTH]

    return make


def run_digest_maker(experiment_id: str, context_fp: str) -> Any:
    """Like `run_id_maker`, but a run id comes as its 16 bytes (`bytes.fromhex` of the id)."""
    prefix = hashlib.sha256(_run_id_prefix(experiment_id, context_fp).encode())
    width = RUN_ID_LENGTH // 2

    def make(params_fp: str, seed_fp: str) -> bytes:
        h = prefix.copy()
        h.update(f"{params_fp}\n{seed_fp}".encode())
        return h.digest()[:width]

    return make


def canonical_json(value: Any) -> str:
    """Encode already-normalized `value` as canonical JSON (sorted keys, no spaces)."""
    return _encoder.encode(value)


def sha256_hex(text: str) -> str:
    """Return the hex sha256 of `text` encoded as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fingerprint(value: Any, where: str) -> str:
    """Return the content hash of `value` after normalizing it."""
    return sha256_hex(canonical_json(normalize(value, where)))


RUN_ID_LENGTH = 32


def run_id_from(experiment_id: str, context_fp: str, params_fp: str, seed_fp: str) -> str:
    """Combine the four fingerprints into a run id (128 bits of sha256, hex)."""
    material = f"{_run_id_prefix(experiment_id, context_fp)}{params_fp}\n{seed_fp}"
    return sha256_hex(material)[:RUN_ID_LENGTH]


def _run_id_prefix(experiment_id: str, context_fp: str) -> str:
    """What a run id hashes before the params and seed fingerprints."""
    return f"metalab.run/1\n{experiment_id}\n{context_fp}\n"
