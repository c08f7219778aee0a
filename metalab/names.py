"""Did-you-mean hints for names a user typed: the known name closest to an unknown one."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, known: Iterable[str]) -> str:
    """Return `" (did you mean 'x'?)"` for the known name closest to `name`, or `""`."""
    match = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""
