"""Experiments as files: timestamped manifests and the serialized experiment.

`experiments/<experiment_id>_<ts>.json` holds one manifest per submission, created once under
a name no other submission has; `experiments/blobs/<key>.pkl` holds the serialized experiment
workers rebuild runs from. A manifest is read only when its experiment id is the one its file
is named after and its name, version, session and key have their form (`metalab._trust`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Mapping
from typing import Any

from ... import _trust
from ...errors import StoreError
from ...record import encode_record
from ..atomic import NotAFile, atomic_write, create_once, read_bytes, remove_if_left, temporary
from .layout import Layout

_TS_FORMAT = "%Y%m%dT%H%M%S.%fZ"
_TS_LEN = len("20260101T000000.000000Z")


class ExperimentFiles:
    """The manifests and serialized experiments of one store."""

    def __init__(self, layout: Layout):
        self._layout = layout

    def write_manifest(self, experiment_id: str, manifest: Mapping[str, Any]) -> str:
        """Write a manifest under a unique timestamped name; never overwrites."""
        if not _trust.is_experiment_id(experiment_id):
            raise StoreError(
                f"{experiment_id!r} is not an experiment id (name:version): metalab makes no "
                "path of it"
            )
        data = encode_record(dict(manifest))
        directory = f"{self._layout.top}/experiments"
        tmp = f"{directory}/{temporary('manifest')}"
        try:
            atomic_write(tmp, data)
            try:
                stamp = _dt.datetime.now(_dt.UTC)
                while True:
                    path = f"{directory}/{experiment_id}_{stamp.strftime(_TS_FORMAT)}.json"
                    if create_once(tmp, path, data):
                        return path
                    stamp += _dt.timedelta(microseconds=1)
            finally:
                os.unlink(tmp)
        except OSError as exc:
            raise self._layout.write_failed(f"the manifest of {experiment_id!r}", exc) from exc

    def manifests(self, experiment_id: str | None = None) -> list[dict[str, Any]]:
        """Return manifests, oldest first, each with its file name under `_file`; skip with
        an `UnsafeStoreWarning` those that have not their form."""
        out = []
        directory = f"{self._layout.top}/experiments"
        for name in sorted(os.listdir(directory), key=lambda n: n[-_TS_LEN - 5 :]):
            if remove_if_left(directory, name) or not name.endswith(".json"):
                continue
            if name.startswith("."):
                continue
            exp_id = name[: -_TS_LEN - 6]
            if experiment_id is not None and exp_id != experiment_id:
                continue
            try:
                manifest = json.loads(read_bytes(f"{directory}/{name}") or b"")
            except NotAFile as exc:
                _trust.skipped(f"manifest {directory}/{name}", str(exc.strerror))
                continue
            except (OSError, ValueError, RecursionError):
                continue
            why = _manifest_problem(manifest, exp_id)
            if why is not None:
                _trust.skipped(f"manifest {directory}/{name}", why)
                continue
            manifest["_file"] = f"experiments/{name}"
            out.append(manifest)
        return out

    def blob_path(self, key: str) -> str:
        """The file of the serialized experiment `key`; `StoreError` for a key that has not
        its form."""
        return f"{self._layout.top}/experiments/blobs/{_trust.check_experiment_key(key)}.pkl"

    def save(self, key: str, blob: bytes) -> None:
        """Write the serialized experiment once; later calls with the same key do nothing,
        unless the file holds other bytes (damaged, or changed by someone), which are
        replaced."""
        path = self.blob_path(key)
        try:
            same = read_bytes(path) == blob
        except NotAFile:  # a link or a directory in its place: replaced by the file
            same = False
        if not same:
            try:
                atomic_write(path, blob)
            except OSError as exc:
                raise self._layout.write_failed(f"experiment {key!r}", exc) from exc

    def load(self, key: str) -> bytes:
        """Return the serialized experiment `key`; `StoreError` if it is missing."""
        try:
            data = read_bytes(self.blob_path(key))
        except NotAFile as exc:
            raise StoreError(
                f"store {str(self._layout.root)!r} holds no file for experiment {key!r}: "
                f"{exc.filename} {str(exc.strerror).removeprefix('it ')}"
            ) from None
        if data is None:
            raise StoreError(f"store {str(self._layout.root)!r} has no experiment {key!r}")
        return data


def _manifest_problem(manifest: Any, exp_id: str) -> str | None:
    """Why a manifest read from a file named after `exp_id` cannot be used, or None."""
    if isinstance(manifest, dict) and manifest.get("experiment_id") != exp_id:
        found = manifest.get("experiment_id")
        return f"its experiment id {found!r} is not {exp_id!r}, the one its file is named after"
    return _trust.manifest_problem(manifest)
