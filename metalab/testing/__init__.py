"""Test doubles for users' own tests: an in-memory store and a fake SLURM.

- `MemoryStore` (`memory://<name>`): a complete store held in this process, for fast tests
  with the `inline` and `threads` executors.
- `FakeSlurm`: replaces the SLURM commands at metalab's one subprocess boundary and runs
  submitted array tasks as local processes, so `SlurmExecutor` sweeps run without a cluster.

See `docs/testing.md`.
"""

from __future__ import annotations

from .memory import MemoryStore
from .slurm import FakeJob, FakeSlurm

__all__ = ["FakeJob", "FakeSlurm", "MemoryStore"]
