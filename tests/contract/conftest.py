"""The contract suite's stores and executors: every test runs against each combination.

Stores: `file`, `postgres` (a fresh schema per test), `fallback` (that PostgreSQL schema as
primary, a directory as fallback). Executors: `inline`, `threads`, `processes`, `dask` (the
default local cluster, `executor=None`), `client` (the user's own `distributed.Client`, one
for the session), `slurm` (native arrays on the test cluster) and `jobqueue` (dask-jobqueue
workers on it). Missing services skip, or fail under `METALAB_REQUIRE_SERVICES=1`.
"""

from __future__ import annotations

import pytest
from contract_stores import STORES, make_store, two_worker_cluster

SLOW = pytest.mark.slow
EXECUTORS = [
    pytest.param("inline", id="inline"),
    pytest.param("threads", id="threads"),
    pytest.param("processes", id="processes", marks=SLOW),
    pytest.param("dask", id="dask", marks=SLOW),
    pytest.param("client", id="client", marks=SLOW),
    pytest.param("slurm", id="slurm", marks=[pytest.mark.slurm, SLOW]),
    pytest.param("jobqueue", id="jobqueue", marks=[pytest.mark.slurm, SLOW]),
]


@pytest.fixture(params=STORES)
def store(request, tmp_path):
    """The locator of a store that does not exist yet."""
    locator, cleanup = make_store(request.param, request, tmp_path)
    yield locator
    if cleanup is not None:
        cleanup()


@pytest.fixture(scope="session")
def dask_scheduler():
    """The address of the user's own Dask cluster, shared by the whole session."""
    with two_worker_cluster() as cluster:
        yield cluster.scheduler_address


@pytest.fixture(params=EXECUTORS)
def executor_kind(request, tmp_path):
    """(executor kind, its JSON setting): `contract_ops.make_executor` builds it, here or
    in a driver subprocess."""
    kind = request.param
    setting: dict[str, str] = {"work_dir": str(tmp_path / "work")}
    if kind == "client":
        setting["scheduler"] = request.getfixturevalue("dask_scheduler")
    if kind in ("slurm", "jobqueue"):
        setting["partition"] = request.getfixturevalue("slurm_cluster")
    return kind, setting
