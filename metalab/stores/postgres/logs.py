"""A run's log in the PostgreSQL store: lines buffered and appended in chunks."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable

_LOG_FLUSH_SECONDS = 1.0
_LOG_FLUSH_BYTES = 64 * 1024


class RunLog(io.TextIOBase):
    """A run's log as a text file: lines are buffered and appended to the database in chunks.

    A line written a second or more after the last send goes at once, with any lines waiting
    before it; lines written sooner wait for that next send, or for `flush()`/`close()`. A
    chatty operation thus costs about one insert per second, not one per line.
    """

    def __init__(self, append: Callable[[bytes], None]):
        self._append = append
        self._buffer: list[bytes] = []
        self._size = 0
        self._flushed = -math.inf  # the first line goes at once

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.closed:
            raise ValueError("write to a closed run log")
        data = text.encode("utf-8")
        self._buffer.append(data)
        self._size += len(data)
        due = time.monotonic() - self._flushed >= _LOG_FLUSH_SECONDS
        if due or self._size >= _LOG_FLUSH_BYTES:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if self._buffer:
            chunk, self._buffer, self._size = b"".join(self._buffer), [], 0
            self._append(chunk)
        self._flushed = time.monotonic()
