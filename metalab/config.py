"""metalab's configuration: defaults from `metalab.yaml`, merged into `dask.config`.

Every setting is checked where it is read (`get`), and all of them where a sweep starts
(`check`): a value of the wrong kind is a `ValidationError` naming the setting, before any
run starts, not an error from deep inside a sweep that already ran part of its runs.
"""

from __future__ import annotations

import functools
import numbers
import os
from collections.abc import Callable
from typing import Any

from .errors import ValidationError


@functools.cache
def _load_defaults() -> None:
    import dask.config
    import yaml

    path = os.path.join(os.path.dirname(__file__), "metalab.yaml")
    with open(path) as fh:
        defaults = yaml.safe_load(fh)
    dask.config.update_defaults(defaults)


def get(key: str) -> Any:
    """Return the configured value of `metalab.<key>` (defaults loaded on first use);
    `ValidationError` when it is not a value the setting takes."""
    _load_defaults()
    import dask.config

    try:
        value = dask.config.get(f"metalab.{key}")
    except KeyError:
        # the defaults went, all or some of them: a `dask.config.set` block entered before
        # they were merged in has ended (taking the `metalab` settings it made, defaults
        # and all), or `dask.config.refresh()`. Merged in again: values set stay as set.
        _load_defaults.cache_clear()
        _load_defaults()
        value = dask.config.get(f"metalab.{key}")
    checked = _CHECKS.get(key)
    if checked is not None:
        accepts, expected = checked
        if not accepts(value):
            raise ValidationError(
                f"Dask setting metalab.{key} must be {expected}, got {value!r} (set in "
                "dask.config.set, a Dask YAML file or a DASK_METALAB__... environment variable)"
            )
    return value


def check() -> None:
    """Check every metalab setting (`ValidationError` for the first that is wrong)."""
    for key in _CHECKS:
        get(key)


def _whole(least: int) -> Callable[[Any], bool]:
    def accepts(value: Any) -> bool:
        return (
            isinstance(value, numbers.Integral)
            and not isinstance(value, bool)
            and (int(value) >= least)
        )

    return accepts


def _number_above_zero(value: Any) -> bool:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    return 0 < float(value) < float("inf")


def _duration(least_exclusive: bool) -> Callable[[Any], bool]:
    """Seconds as a number, or a duration Dask reads (`"5m"`, `"30s"`)."""

    def accepts(value: Any) -> bool:
        seconds = seconds_of(value)
        return seconds is not None and (seconds > 0 if least_exclusive else seconds >= 0)

    return accepts


def seconds_of(value: Any) -> float | None:
    """The seconds a duration setting holds (a number of seconds or a duration such as
    `"5m"`), or None when it holds none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        seconds = float(value)
    elif isinstance(value, str):
        from dask.utils import parse_timedelta

        try:
            seconds = float(parse_timedelta(value))
        except (TypeError, ValueError, KeyError):
            return None
    else:
        return None
    return seconds if seconds == seconds and seconds != float("inf") else None


def _address(value: Any) -> bool:
    return value is None or (isinstance(value, str) and bool(value.strip()))


_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "dask.dashboard-address": (_address, "an address such as '127.0.0.1:8787' (or None)"),
    "dask.local-cluster-idle-timeout": (
        _duration(False),
        "seconds >= 0: a number or a duration such as '5m' (0 closes the cluster when its "
        "sweep ends)",
    ),
    "dask.target-task-seconds": (_number_above_zero, "a number of seconds above 0"),
    "dask.max-chunk": (_whole(1), "a whole number of runs, at least 1"),
    "dask.min-in-flight": (_whole(1), "a whole number of tasks, at least 1"),
    "dask.single-task-limit": (_whole(0), "a whole number of runs, at least 0"),
    "dask.target-tasks": (_whole(1), "a whole number of tasks, at least 1"),
    "slurm.worker-start-timeout": (
        _duration(True),
        "seconds above 0: a number or a duration such as '10m'",
    ),
}
"""What each setting takes: a check of its value, and the words of the error."""
