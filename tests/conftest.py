"""Shared fixtures: temporary stores and working directories, and a Dask-client leak check."""

from __future__ import annotations

import os
import sys

import pytest

# Figures are drawn off-screen, in this process and in any subprocess a test starts.
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def store_path(tmp_path):
    """A store directory that does not exist yet."""
    return tmp_path / "store"


@pytest.fixture
def chdir_tmp(tmp_path, monkeypatch):
    """Run the test in `tmp_path`, so default `./runs/<name>` stores land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def _no_default_dask_client():
    """Fail a test that leaves a `distributed` client installed as the default."""
    yield
    if "distributed" not in sys.modules:
        return
    from distributed import default_client

    try:
        client = default_client()
    except ValueError:
        return
    client.close()
    pytest.fail(f"the test left {client!r} as the default Dask client")
