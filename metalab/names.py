"""Did-you-mean hints for names a user typed: the known name closest to an unknown one."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, known: Iterable[str]) -> str:
    """Return `" (did you mean 'x'?)"` for the known name closest to `name`, or `""` (also
    for a `name` that is no string)."""
    if not isinstance(name, str):
        return ""
    match = difflib.get_close_matches(name, [k for k in known if isinstance(k, str)], n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""
