"""Artifact codecs: a media type, a file extension, `encode(value) -> bytes`, `decode(bytes)`.

`capture.artifact(name, value, kind=...)` picks a codec by kind, or infers one from the value.
Users add codecs with `register_codec`; theirs are tried before the built-in ones.
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import _trust
from .errors import ValidationError


@dataclass(frozen=True)
class Codec:
    """How one kind of artifact becomes bytes and back."""

    kind: str
    media_type: str
    extension: str
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]
    accepts: Callable[[Any], bool] | None = None
    """When given, the codec is chosen for values it accepts if no kind is named."""
    runs_code: bool = False
    """Whether decoding may run code the bytes hold (pickle): such artifacts are decoded
    only from bytes nobody but the user could have written, unless the caller trusts the
    store (`Run.artifact(name, trust=True)`)."""


def _json_default(value: Any) -> Any:
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json_encode(value: Any) -> bytes:
    return json.dumps(value, default=_json_default, ensure_ascii=False).encode("utf-8")


def _json_decode(data: bytes) -> Any:
    return json.loads(data.decode("utf-8"))


def _numpy_encode(value: Any) -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(value), allow_pickle=False)
    return buffer.getvalue()


def _numpy_decode(data: bytes) -> Any:
    import numpy as np

    return np.load(io.BytesIO(data), allow_pickle=False)


def _pickle_encode(value: Any) -> bytes:
    import cloudpickle

    return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _text_encode(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"text artifacts must be str, got {type(value).__name__}")
    return value.encode("utf-8")


def _bytes_encode(value: Any) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"bytes artifacts must be bytes, got {type(value).__name__}")
    return bytes(value)


def _png_encode(fig: Any) -> bytes:
    if not hasattr(fig, "savefig"):
        raise TypeError(f"a figure needs a savefig() method (matplotlib), got {type(fig).__name__}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def _is_ndarray(value: Any) -> bool:
    return (
        type(value).__module__ == "numpy"
        and type(value).__name__ == "ndarray"
        and (value.dtype.kind != "O")
    )


_BUILTIN = [
    Codec("json", "application/json", ".json", _json_encode, _json_decode),
    Codec(
        "numpy",
        "application/x-npy",
        ".npy",
        _numpy_encode,
        _numpy_decode,
        accepts=_is_ndarray,
    ),
    Codec(
        "pickle",
        "application/x-python-pickle",
        ".pkl",
        _pickle_encode,
        pickle.loads,
        runs_code=True,
    ),
    Codec(
        "text",
        "text/plain; charset=utf-8",
        ".txt",
        _text_encode,
        lambda data: data.decode("utf-8"),
        accepts=lambda v: isinstance(v, str),
    ),
    Codec(
        "bytes",
        "application/octet-stream",
        ".bin",
        _bytes_encode,
        bytes,
        accepts=lambda v: isinstance(v, (bytes, bytearray, memoryview)),
    ),
    Codec("png", "image/png", ".png", _png_encode, bytes, accepts=lambda v: hasattr(v, "savefig")),
]

_codecs: dict[str, Codec] = {c.kind: c for c in _BUILTIN}
_user_kinds: list[str] = []


def register_codec(codec: Codec, *, replace: bool = False) -> None:
    """Add `codec` so `capture.artifact(..., kind=codec.kind)` and loading use it.

    Registering a kind that exists raises `ValueError` unless `replace=True`. Codecs with an
    `accepts` predicate are tried, newest first, before the built-in inference.
    """
    if not isinstance(codec, Codec):
        raise TypeError(f"register_codec needs a metalab.Codec, got {codec!r}")
    if codec.kind in _codecs and not replace:
        raise ValueError(
            f"a codec for kind {codec.kind!r} exists; pass replace=True to override it"
        )
    _codecs[codec.kind] = codec
    if codec.kind in _user_kinds:
        _user_kinds.remove(codec.kind)
    _user_kinds.append(codec.kind)


def user_codecs() -> list[Codec]:
    """The codecs registered with `register_codec`, oldest first (they travel to workers)."""
    return [_codecs[kind] for kind in _user_kinds]


def ensure_registered(codecs: Sequence[Codec]) -> None:
    """Register codecs shipped from the driver that this process does not know yet."""
    for codec in codecs:
        if _codecs.get(codec.kind) is not codec and codec.kind not in _user_kinds:
            register_codec(codec, replace=True)


def get_codec(kind: str) -> Codec:
    """Return the codec registered for `kind`; raise `ValidationError` listing the known kinds."""
    try:
        return _codecs[kind]
    except (KeyError, TypeError):
        raise ValidationError(
            f"unknown artifact kind {kind!r}; known kinds: {', '.join(sorted(_codecs))}"
        ) from None


def _json_roundtrips(value: Any) -> bool:
    if not isinstance(value, (dict, list, tuple, int, float, bool, type(None))):
        return False
    try:
        _json_encode(value)
    except (TypeError, ValueError):
        return False
    return True


def infer_codec(value: Any) -> Codec:
    """Pick the codec for `value` when no kind is named (pickle when nothing else fits)."""
    for kind in reversed(_user_kinds):
        codec = _codecs[kind]
        if codec.accepts is not None and codec.accepts(value):
            return codec
    for kind in ("numpy", "text", "bytes"):
        codec = _codecs[kind]
        if codec.accepts and codec.accepts(value):
            return codec
    if _json_roundtrips(value):
        return _codecs["json"]
    if _codecs["png"].accepts(value):  # type: ignore[misc]
        return _codecs["png"]
    return _codecs["pickle"]


def decode_artifact(store: Any, descriptor: dict[str, Any], *, trust: bool = False) -> Any:
    """Load the artifact `descriptor` describes from `store`, decoded by its codec.

    A codec that runs code when decoding (`Codec.runs_code`, pickle) gets only bytes nobody
    but the user could have written; others raise `UntrustedDataError` unless `trust`."""
    ref, kind = descriptor["ref"], descriptor["kind"]
    if kind == "file":
        return store.read_artifact(ref)
    codec = get_codec(kind)
    if not codec.runs_code:
        return codec.decode(store.read_artifact(ref))
    opt_in = f"run.artifact({descriptor.get('name')!r}, trust=True)"
    return codec.decode(_trust.pickled_bytes(store, "artifact", ref, trust=trust, opt_in=opt_in))
