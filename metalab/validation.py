"""Checks of the arguments users pass to `run`, `to_delayed`, `load_results` and `reconnect`,
made before anything is opened or written; each error says what was expected."""

from __future__ import annotations

import os
from typing import Any

from .contracts import Store
from .errors import ValidationError


def check_flag(name: str, value: Any) -> None:
    """Raise `ValidationError` unless `value` is True or False (`"no"` is not False)."""
    if not isinstance(value, bool):
        raise ValidationError(f"{name} must be True or False, got {value!r}")


def check_store(store: Any, *, optional: bool = False) -> None:
    """Raise `ValidationError` unless `store` is a path, a locator string or a store object
    (or None, when `optional`)."""
    if (store is None and optional) or isinstance(store, (str, os.PathLike)):
        if isinstance(store, str) and not store.strip():
            raise ValidationError("store must be a path or a locator, got an empty string")
        return
    if not isinstance(store, Store):
        raise ValidationError(
            "store must be a path, a locator string ('file://...', 'postgresql://...') or a "
            "store object satisfying metalab.contracts.Store"
            f"{', or None for ./runs/<name>' if optional else ''}; got {store!r}"
        )


def check_experiment_id(experiment: Any) -> None:
    """Raise `ValidationError` unless `experiment` is None or an experiment name or
    `name:version`."""
    if experiment is not None and (not isinstance(experiment, str) or not experiment.strip()):
        raise ValidationError(
            "experiment must be an experiment's name or 'name:version' (a string), or None "
            f"for every experiment in the store; got {experiment!r}"
        )
