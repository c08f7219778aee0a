"""metalab's configuration: defaults from `metalab.yaml`, merged into `dask.config`."""

from __future__ import annotations

import functools
import os
from typing import Any


@functools.cache
def _load_defaults() -> None:
    import dask.config
    import yaml

    path = os.path.join(os.path.dirname(__file__), "metalab.yaml")
    with open(path) as fh:
        defaults = yaml.safe_load(fh)
    dask.config.update_defaults(defaults)


def get(key: str) -> Any:
    """Return the configured value of `metalab.<key>` (defaults loaded on first use)."""
    _load_defaults()
    import dask.config

    try:
        return dask.config.get(f"metalab.{key}")
    except KeyError:
        # the defaults went, all or some of them: a `dask.config.set` block entered before
        # they were merged in has ended (taking the `metalab` settings it made, defaults
        # and all), or `dask.config.refresh()`. Merged in again: values set stay as set.
        _load_defaults.cache_clear()
        _load_defaults()
        return dask.config.get(f"metalab.{key}")
