"""The capture interface: what an operation records about its run.

Metrics stay in memory until the record is written; artifacts and log lines go to the store as
they are captured, so a run that fails or is interrupted keeps what it produced so far.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
from collections.abc import Mapping
from typing import Any

from .errors import ValidationError
from .serializers import Codec, get_codec, infer_codec

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_BAD_NAME = re.compile(r"[/\\\x00]")


def check_name(name: Any, what: str) -> str:
    """Return `name` if it can name a metric or artifact file; raise `ValidationError` otherwise."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationError(f"{what} name must be a non-empty string, got {name!r}")
    if _BAD_NAME.search(name) or ".." in name or name.startswith("."):
        raise ValidationError(
            f"{what} name {name!r} is not allowed: names may not contain path separators "
            "or '..', nor start with '.'"
        )
    if what == "artifact" and len(name.encode("utf-8")) > MAX_ARTIFACT_NAME_BYTES:
        raise ValidationError(
            f"artifact name {name[:20] + '...'!r} has {len(name.encode('utf-8'))} bytes; at "
            f"most {MAX_ARTIFACT_NAME_BYTES} are allowed (it names a file, with its extension)"
        )
    return name


MAX_ARTIFACT_NAME_BYTES = 200
"""Longest artifact name, in UTF-8 bytes: a file name holds 255, less the extension and the
temporary name it is written under first."""


def metric_value(name: str, value: Any) -> int | float | bool:
    """Return `value` as a Python number or bool; raise `ValidationError` naming the metric."""
    if type(value) in (bool, int, float):
        return value
    if type(value).__module__ == "numpy" and getattr(value, "shape", None) == ():
        item = value.item()
        if isinstance(item, (bool, int, float)):
            return item
    if isinstance(value, int):  # subclasses of the builtins (IntEnum, ...)
        return int(value)
    if isinstance(value, float):
        return float(value)
    raise ValidationError(
        f"metric {name!r} must be a number or bool (Python or NumPy scalar), got {value!r} "
        f"({type(value).__name__}); use capture.data() or capture.artifact() for other values"
    )


def _step_value(name: str, step: Any) -> int:
    if isinstance(step, bool):
        raise ValidationError(f"metric {name!r}: step must be an integer, got {step!r}")
    if isinstance(step, int):
        return step
    if type(step).__module__ == "numpy" and hasattr(step, "dtype") and step.dtype.kind in "iu":
        return int(step)
    if isinstance(step, float) and step.is_integer():
        return int(step)
    raise ValidationError(f"metric {name!r}: step must be an integer, got {step!r}")


class Capture:
    """Record metrics, data, artifacts, figures, files and log lines for one run."""

    def __init__(self, run_id: str, store: Any, worker: str = ""):
        self._run_id = run_id
        self._store = store
        self._worker = worker
        self.metrics: dict[str, int | float | bool] = {}
        self.series: dict[str, dict[str, list]] = {}
        self.artifacts: dict[str, dict[str, Any]] = {}
        self._log: Any = None

    # ---------------------------------------------------------------- metrics
    def metric(self, name: str, value: Any, step: int | None = None) -> None:
        """Record a scalar metric; with `step`, append to the metric's series instead."""
        check_name(name, "metric")
        value = metric_value(name, value)
        if step is None:
            self.metrics[name] = value
            return
        series = self.series.setdefault(name, {"steps": [], "values": []})
        series["steps"].append(_step_value(name, step))
        series["values"].append(value)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Record several metrics at once (all at `step` when given)."""
        if not isinstance(metrics, Mapping):
            raise ValidationError(f"log_metrics needs a dict of name -> value, got {metrics!r}")
        checked = {name: metric_value(check_name(name, "metric"), v) for name, v in metrics.items()}
        for name, value in checked.items():
            self.metric(name, value, step=step)

    # ---------------------------------------------------------------- payloads
    def data(self, name: str, value: Any) -> None:
        """Store structured data: JSON-able values as JSON, NumPy arrays as .npy."""
        if _is_array(value) and value.dtype.kind == "O":
            raise ValidationError(
                f"data {name!r} is an array of Python objects, which cannot be stored as data; "
                f"use capture.artifact({name!r}, value, kind='pickle')"
            )
        codec = get_codec("numpy") if _is_array(value) else get_codec("json")
        if codec.kind == "json":
            try:
                payload = codec.encode(value)
            except (TypeError, ValueError) as exc:
                raise ValidationError(
                    f"data {name!r} is not JSON-serializable or an array ({exc}); use "
                    f"capture.artifact({name!r}, value, kind='pickle') for arbitrary objects"
                ) from exc
            self._store_payload(name, codec, payload, role="data")
            return
        self._store_payload(name, codec, codec.encode(value), role="data")

    def artifact(
        self, name: str, value: Any, kind: str | None = None, *, format: str | None = None
    ) -> None:
        """Store `value` as an artifact with the codec of `kind` (inferred when omitted)."""
        if format is not None:
            if kind is not None and kind != format:
                raise ValidationError(
                    f"artifact {name!r}: kind={kind!r} and format={format!r} disagree"
                )
            kind = format
        codec = infer_codec(value) if kind is None else get_codec(kind)
        try:
            payload = codec.encode(value)
        except Exception as exc:
            raise ValidationError(
                f"artifact {name!r} could not be encoded as {codec.kind!r}: {exc}"
            ) from exc
        self._store_payload(name, codec, payload, role="artifact")

    def figure(self, name: str, fig: Any, **savefig: Any) -> None:
        """Store a matplotlib figure as PNG."""
        codec = get_codec("png")
        if not hasattr(fig, "savefig"):
            raise ValidationError(
                f"figure {name!r} needs a matplotlib figure, got {type(fig).__name__}"
            )
        import io

        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", **({"bbox_inches": "tight"} | savefig))
        self._store_payload(name, codec, buffer.getvalue(), role="figure")

    def file(self, name: str, path: str | os.PathLike, media_type: str | None = None) -> None:
        """Copy the file at `path` into the store as artifact `name`."""
        import mimetypes

        path = os.fspath(path)
        try:
            with open(path, "rb") as fh:
                payload = fh.read()
        except OSError as exc:
            raise ValidationError(f"file artifact {name!r}: cannot read {path!r}: {exc}") from exc
        ext = os.path.splitext(path)[1] or ".bin"
        guessed = media_type or mimetypes.guess_type(path)[0] or "application/octet-stream"
        codec = Codec("file", guessed, ext, bytes, bytes)
        self._store_payload(name, codec, payload, role="file", filename=os.path.basename(path))

    def _store_payload(
        self, name: str, codec: Codec, payload: bytes, *, role: str, filename: str | None = None
    ) -> None:
        check_name(name, "artifact")
        ref = self._store.put_artifact(self._run_id, name + codec.extension, payload)
        descriptor = {
            "name": name,
            "kind": codec.kind,
            "media_type": codec.media_type,
            "ref": ref,
            "size": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
            "role": role,
        }
        if filename:
            descriptor["filename"] = filename
        self.artifacts[name] = descriptor

    # ---------------------------------------------------------------- logs
    def log(self, message: Any, level: str = "info") -> None:
        """Append a timestamped line to the run's log file."""
        if level not in LOG_LEVELS:
            raise ValidationError(
                f"log level must be one of {', '.join(LOG_LEVELS)}; got {level!r}"
            )
        if self._log is None:
            self._log = self._store.open_log(self._run_id)
        stamp = _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")
        text = str(message).replace("\n", "\n    ")
        self._log.write(f"{stamp} {level.upper():<8} [{self._worker}] {text}\n")

    def close(self) -> None:
        """Flush and close the log; idempotent."""
        if self._log is not None:
            self._log.close()
            self._log = None

    def summary(self) -> dict[str, Any]:
        """The parts of the record this capture contributes, as they are now (copies: a
        capture used after its run ended, by a callback kept from it say, changes no record)."""
        return {
            "metrics": dict(self.metrics),
            "series": {
                name: {"steps": list(s["steps"]), "values": list(s["values"])}
                for name, s in self.series.items()
            },
            "artifacts": [dict(a) for a in self.artifacts.values()],
        }

    def __repr__(self) -> str:
        return (
            f"Capture(run_id={self._run_id!r}, metrics={len(self.metrics)}, "
            f"artifacts={len(self.artifacts)})"
        )


def _is_array(value: Any) -> bool:
    return type(value).__module__ == "numpy" and type(value).__name__ == "ndarray"
