"""Every server metalab starts listens on 127.0.0.1 only, unless the user names an address."""

from __future__ import annotations

import dask
import psutil
import pytest
from sweeps import draw_experiment

import metalab
from metalab.executors.local_clusters import _local


def _listening(process: psutil.Process) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket of `process` and its children."""
    found = set()
    for proc in [process, *process.children(recursive=True)]:
        try:
            connections = proc.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        found |= {(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN}
    return found


@pytest.mark.slow
@pytest.mark.parametrize(
    "make_executor",
    [
        lambda: metalab.ThreadExecutor(max_workers=2),
        lambda: metalab.ProcessExecutor(max_workers=1),
        lambda: metalab.DaskExecutor(),
    ],
    ids=["threads", "processes", "default-local-cluster"],
)
def test_local_clusters_listen_on_loopback_only(tmp_path, make_executor):
    _local.close_all()  # a cluster kept from an earlier test would be reused
    before = _listening(psutil.Process())
    handle = metalab.run(draw_experiment(), tmp_path / "store", executor=make_executor())
    handle.result(timeout=120)
    # the cluster is kept after the sweep: its scheduler, workers and dashboards still listen
    started = _listening(psutil.Process()) - before
    assert started, "the local cluster opened no listening socket"
    assert {address for address, _ in started} == {"127.0.0.1"}, started
    link = handle.dashboard_link
    assert link is not None and link.startswith("http://127.0.0.1:")


def test_jobqueue_dashboard_defaults_to_loopback():
    kwargs = metalab.JobqueueExecutor(metalab.SlurmConfig(), jobs=1).cluster_kwargs()
    assert kwargs["scheduler_options"]["dashboard_address"] == "127.0.0.1:8787"
    mine = metalab.JobqueueExecutor(
        metalab.SlurmConfig(), jobs=1, scheduler_options={"dashboard_address": ":9999"}
    ).cluster_kwargs()
    assert mine["scheduler_options"] == {"dashboard_address": ":9999"}


@pytest.mark.slow
def test_jobqueue_cluster_dashboard_listens_on_loopback():
    pytest.importorskip("dask_jobqueue")
    from dask_jobqueue import SLURMCluster

    before = _listening(psutil.Process())
    with dask.config.set({"metalab.dask.dashboard-address": "127.0.0.1:0"}):
        kwargs = metalab.JobqueueExecutor(metalab.SlurmConfig(), jobs=1).cluster_kwargs()
    with SLURMCluster(**kwargs) as cluster:  # no worker job is submitted before scaling
        dashboard = cluster.scheduler.http_server.port
        started = _listening(psutil.Process()) - before
    assert ("127.0.0.1", dashboard) in started
    assert not any(port == dashboard and address != "127.0.0.1" for address, port in started)
