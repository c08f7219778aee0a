"""What an operation may learn about where it runs: scratch space, metadata, hints, cancellation."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import RunCancelled


class Runtime:
    """Per-run facts and services handed to operations that ask for `runtime`."""

    def __init__(
        self,
        *,
        run_id: str,
        index: int,
        experiment_id: str,
        metadata: Mapping[str, Any],
        resources: Mapping[str, Any],
        worker: str,
        attempt: int = 1,
        cancel_check: Callable[[], bool] | None = None,
    ):
        self.run_id = run_id
        self.index = index
        self.experiment_id = experiment_id
        self.metadata = MappingProxyType(dict(metadata))
        self.resources = MappingProxyType(dict(resources))
        self.worker = worker
        self.attempt = attempt
        self._cancel_check = cancel_check
        self._scratch: Path | None = None

    @property
    def scratch_dir(self) -> Path:
        """A private directory for this run's temporary files, removed when the run ends."""
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix=f"metalab-{self.run_id[:12]}-"))
        return self._scratch

    @property
    def cancelled(self) -> bool:
        """Whether cancellation of the sweep was asked; long operations should poll it."""
        return bool(self._cancel_check and self._cancel_check())

    def check_cancelled(self) -> None:
        """Raise `RunCancelled` if cancellation was asked (the run is recorded interrupted)."""
        if self.cancelled:
            raise RunCancelled(f"run {self.run_id} was cancelled")

    def cleanup(self) -> None:
        """Remove the scratch directory; idempotent."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __repr__(self) -> str:
        return f"Runtime(run_id={self.run_id!r}, index={self.index}, worker={self.worker!r})"
