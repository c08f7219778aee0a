"""Arrow arrays made from Python values through their buffers.

`pyarrow.array()` imports pandas the first time it is given anything but an Arrow object (it
asks whether the values are a pandas Series), which costs a process about a third of a second:
more than reading a sweep's whole table. The runs table is built from Python lists and NumPy
arrays, so it is built here, buffer by buffer, and a sweep's `result()` never imports pandas;
the user's first `to_dataframe()` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np

_MAX_STRING_BYTES = 2**31 - 1
"""What 32-bit offsets address: larger text goes into a `large_string` array."""


def _pyarrow() -> Any:
    import pyarrow

    return pyarrow


def _validity(pa: Any, values: Sequence[Any]) -> tuple[Any, int]:
    """The validity bitmap of `values` (None where every value is present) and the count of
    missing ones."""
    nulls = values.count(None) if isinstance(values, list) else sum(v is None for v in values)
    if not nulls:
        return None, 0
    present = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
    return pa.py_buffer(np.packbits(present, bitorder="little").tobytes()), nulls


def numbers(values: Any, type_: Any) -> Any:
    """An array of fixed-width numbers of Arrow type `type_` (an integer or floating type)
    from a NumPy array, a range or a sequence of Python numbers (None for missing ones)."""
    pa = _pyarrow()
    dtype = np.dtype(type_.to_pandas_dtype())
    if isinstance(values, np.ndarray):
        data, validity, nulls = values.astype(dtype, copy=False), None, 0
    elif isinstance(values, range):
        data, validity, nulls = (
            np.arange(values.start, values.stop, values.step, dtype=dtype),
            None,
            0,
        )
    else:
        validity, nulls = _validity(pa, values)
        filled = values if not nulls else [0 if v is None else v for v in values]
        data = np.fromiter(filled, dtype=dtype, count=len(values))
    data = np.ascontiguousarray(data)
    return pa.Array.from_buffers(type_, len(data), [validity, pa.py_buffer(data)], null_count=nulls)


def strings(values: Sequence[str | None]) -> Any:
    """A UTF-8 string array from `values` (None for missing ones)."""
    pa = _pyarrow()
    validity, nulls = _validity(pa, values)
    texts = cast("Sequence[str]", values) if not nulls else ["" if v is None else v for v in values]
    joined = "".join(texts)
    if joined.isascii():  # a character a byte: the lengths are the strings' own
        data = joined.encode("ascii")
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    else:
        encoded = [text.encode() for text in texts]
        data = b"".join(encoded)
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    large = len(data) > _MAX_STRING_BYTES
    offsets = np.zeros(len(texts) + 1, dtype=np.int64 if large else np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.Array.from_buffers(
        pa.large_string() if large else pa.string(),
        len(texts),
        [validity, pa.py_buffer(offsets), pa.py_buffer(data)],
        null_count=nulls,
    )


def booleans(values: Any) -> Any:
    """A boolean array from a NumPy array or a sequence of bools (None for missing ones)."""
    pa = _pyarrow()
    if isinstance(values, np.ndarray):
        validity, nulls, flags = None, 0, values.astype(bool, copy=False)
    else:
        validity, nulls = _validity(pa, values)
        flags = np.fromiter((bool(v) for v in values), dtype=bool, count=len(values))
    bits = np.packbits(flags, bitorder="little").tobytes()
    return pa.Array.from_buffers(
        pa.bool_(), len(flags), [validity, pa.py_buffer(bits)], null_count=nulls
    )


def array(values: Any, type_: Any) -> Any:
    """An array of Arrow type `type_` from `values`, as `pyarrow.array(values, type_)` makes
    it for strings, booleans, fixed-width numbers and nulls (None for missing values; an int
    beyond the type's range raises `OverflowError`)."""
    pa = _pyarrow()
    if type_ == pa.string():
        return strings(values)
    if type_ == pa.bool_():
        return booleans(values)
    if type_ == pa.null():
        return pa.nulls(len(values))
    if pa.types.is_integer(type_) or pa.types.is_floating(type_):
        return numbers(values, type_)
    return pa.array(values, type=type_)
