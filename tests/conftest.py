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


# --- real services -------------------------------------------------------------------------
# Tests that need PostgreSQL or SLURM take the fixtures below. When the service is absent they
# skip with the reason, except under METALAB_REQUIRE_SERVICES=1 (set by .ci/run), where they fail.

POSTGRES_URL = os.environ.get("METALAB_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def services_required() -> bool:
    """Whether a missing service must fail the test run rather than skip."""
    return os.environ.get("METALAB_REQUIRE_SERVICES", "") not in ("", "0")


def missing_service(reason: str):
    """Skip (or, when services are required, fail) the calling test because of `reason`."""
    if services_required():
        pytest.fail(f"{reason} (METALAB_REQUIRE_SERVICES=1: services must be present)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The URL of a reachable PostgreSQL database (`METALAB_TEST_POSTGRES` overrides it)."""
    try:
        import psycopg
    except ImportError:
        missing_service("psycopg is not installed (uv sync --extra postgres)")
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=5):
            pass
    except psycopg.OperationalError as exc:
        missing_service(f"no PostgreSQL server at {POSTGRES_URL}: {exc}".strip())
    return POSTGRES_URL


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """The name of the default partition of a reachable SLURM cluster."""
    import shutil
    import subprocess

    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        missing_service("SLURM is not installed (bash ci/start-slurm.sh starts a local cluster)")
    out = subprocess.run(["sinfo", "-h", "-o", "%P %t"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        missing_service(f"sinfo failed: {out.stderr.strip() or out.stdout.strip()}")
    for line in out.stdout.splitlines():
        partition, _, state = line.partition(" ")
        if partition.endswith("*") and state.strip() in ("idle", "mix", "alloc"):
            return partition.rstrip("*")
    missing_service(f"no default SLURM partition with a working node: {out.stdout.strip()!r}")
    raise AssertionError("unreachable")
