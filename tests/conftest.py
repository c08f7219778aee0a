"""Shared fixtures: temporary stores and working directories, and a Dask-client leak check."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
from service_checks import (
    POSTGRES_URL,
    fresh_schema,
    missing_service,
    with_options,
)

from metalab.registry import open_store

try:
    from metalab.stores.postgres import PostgresStore, parse_locator
except ImportError:  # the postgres_server fixture skips (or fails) every test with the reason
    PostgresStore = parse_locator = None  # type: ignore[assignment,misc]

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


@pytest.fixture
def postgres_locator(postgres_server) -> Iterator[str]:
    """The locator of a PostgreSQL store in a fresh schema (made when first opened), whose
    store is dropped after the test."""
    text = with_options(postgres_server, schema=fresh_schema())
    yield text
    PostgresStore(parse_locator(text)).drop()


@pytest.fixture
def postgres_store(postgres_locator):
    """A PostgreSQL store in a fresh schema, dropped after the test."""
    return open_store(postgres_locator)


CI_SLURM_MARKER = "# metalab-ci: single-node test cluster written by ci/start-slurm.sh"
"""The first line of the `slurm.conf` that `ci/start-slurm.sh` writes."""

CI_SLURM_LAYOUT = {"debug", "gpu", "cpu"}
"""The partitions of the cluster `ci/start-slurm.sh` starts (one node, one counted GPU)."""


def _slurm_conf_path() -> str:
    """The `slurm.conf` the SLURM commands on PATH read, as `scontrol show config` reports it."""
    import subprocess

    out = subprocess.run(
        ["scontrol", "show", "config"], capture_output=True, text=True, timeout=30
    ).stdout
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "SLURM_CONF":
            return value.strip()
    return os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf")


def started_by_ci(conf: str) -> bool:
    """Whether the cluster configured by `conf` is the test cluster that `ci/` starts."""
    try:
        with open(conf, encoding="utf-8", errors="replace") as fh:
            return any(line.rstrip("\n") == CI_SLURM_MARKER for line in fh)
    except OSError:
        return False


def foreign_clusters_allowed() -> bool:
    """Whether the user opted in to test jobs on a cluster that `ci/` did not start."""
    return os.environ.get("METALAB_TEST_SLURM", "") not in ("", "0")


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """The name of the default partition of a reachable SLURM cluster.

    Tests submit jobs only to the cluster `ci/start-slurm.sh` started, unless
    `METALAB_TEST_SLURM=1` allows another one.
    """
    import shutil
    import subprocess

    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        missing_service("SLURM is not installed (bash ci/start-slurm.sh starts a local cluster)")
    conf = _slurm_conf_path()
    if not started_by_ci(conf) and not foreign_clusters_allowed():
        missing_service(
            f"the SLURM cluster configured by {conf} was not started by ci/start-slurm.sh; "
            "the tests submit jobs to it only when METALAB_TEST_SLURM=1"
        )
    out = subprocess.run(["sinfo", "-h", "-o", "%P %t"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        missing_service(f"sinfo failed: {out.stderr.strip() or out.stdout.strip()}")
    for line in out.stdout.splitlines():
        partition, _, state = line.partition(" ")
        if partition.endswith("*") and state.strip() in ("idle", "mix", "alloc"):
            return partition.rstrip("*")
    missing_service(f"no default SLURM partition with a working node: {out.stdout.strip()!r}")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def slurm_test_layout(slurm_cluster) -> str:
    """The default partition of a cluster laid out as `ci/start-slurm.sh` lays it out.

    Tests that name the `gpu` or `cpu` partition, ask for a GPU or read `sacct` take this
    fixture: elsewhere they skip with the reason (or fail under METALAB_REQUIRE_SERVICES=1).
    """
    import subprocess

    out = subprocess.run(["sinfo", "-h", "-o", "%P %G"], capture_output=True, text=True, timeout=30)
    rows = dict(line.split(None, 1) for line in out.stdout.splitlines() if " " in line)
    partitions = {name.rstrip("*") for name in rows}
    gpus = rows.get("gpu", "")
    if not partitions >= CI_SLURM_LAYOUT or not gpus.startswith("gpu:1"):
        missing_service(
            "this test needs the test cluster's layout (partitions debug, gpu and cpu; one "
            f"gres gpu), as ci/start-slurm.sh starts it; sinfo shows {out.stdout.strip()!r}"
        )
    return slurm_cluster
