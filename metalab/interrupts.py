"""What Ctrl-C does to a sweep: one line saying what was recorded, then exit status 130."""

from __future__ import annotations

import sys
from typing import NoReturn

from .errors import SweepInterrupted


def stop_after_interrupt(line: str) -> NoReturn:
    """End a Ctrl-C'd call with `line`: in a script, printed, then `SweepInterrupted` (exit
    status 130, no traceback); in a REPL or notebook, a `KeyboardInterrupt` saying it."""
    if _interactive():
        raise InterruptedHere(line) from None
    print(line, file=sys.stderr, flush=True)
    raise SweepInterrupted(line) from None


class InterruptedHere(KeyboardInterrupt):
    """The `KeyboardInterrupt` an interactive session gets: IPython and Jupyter show its one
    line, not a traceback through metalab's own frames."""

    def _render_traceback_(self) -> list[str]:
        return [f"KeyboardInterrupt: {self}"]


def interrupted_while_starting(experiment_id: str) -> NoReturn:
    """Stop a sweep Ctrl-C'd before any of its runs was handed to an executor."""
    stop_after_interrupt(
        f"metalab: {experiment_id} interrupted while starting: no run was started. Run the "
        "same metalab.run(...) again to start it."
    )


def _interactive() -> bool:
    """Whether this is an interactive session (a REPL, IPython, Jupyter), which Ctrl-C must
    not end."""
    if hasattr(sys, "ps1") or sys.flags.interactive:
        return True
    ipython = sys.modules.get("IPython")
    return ipython is not None and ipython.get_ipython() is not None
