"""`JobqueueExecutor`: Dask workers started as SLURM jobs by `dask_jobqueue.SLURMCluster`.

The cluster is built from the same `SlurmConfig` as native job arrays: cores, memory, walltime,
partition, account, QOS, GPUs and extra directives become the worker jobs' `#SBATCH` lines;
modules, conda environment and setup lines their prologue. Workers retire gracefully a little
before the walltime (`--lifetime`, staggered) and the cluster keeps `jobs` worker jobs up
(`adapt` between the same bounds), so sweeps longer than one walltime keep going. The sweep
itself runs through `DaskExecutor`: task sizing, dashboard and resubmission of lost work.
"""

from __future__ import annotations

from typing import Any

from .. import config as metalab_config
from ..errors import ValidationError, require
from .dask import DaskExecutor
from .slurm.config import SlurmConfig, format_time
from .slurm.script import setup_lines

LIFETIME_MARGIN = 0.1
"""Share of the walltime (at least 2 and at most 10 minutes) a worker leaves before it."""


class JobqueueExecutor(DaskExecutor):
    """Run a sweep on Dask workers that are SLURM jobs (through dask-jobqueue).

    `jobs` worker jobs are kept running; with `maximum_jobs`, the cluster adapts between
    `jobs` and `maximum_jobs` to the work left. `cluster_options` go to
    `dask_jobqueue.SLURMCluster` as given (e.g. `interface="ib0"`, `local_directory=...`).
    The cluster is closed after the sweep.
    """

    def __init__(
        self,
        config: SlurmConfig | None = None,
        jobs: int = 1,
        *,
        maximum_jobs: int | None = None,
        processes: int = 1,
        chunk_size: int | None = None,
        **cluster_options: Any,
    ):
        config = SlurmConfig() if config is None else config
        if not isinstance(config, SlurmConfig):
            raise ValidationError(f"JobqueueExecutor needs a metalab.SlurmConfig, got {config!r}")
        for name, value, minimum in (("jobs", jobs, 0), ("processes", processes, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValidationError(f"{name} must be an integer >= {minimum}, got {value!r}")
        if maximum_jobs is not None and (
            isinstance(maximum_jobs, bool)
            or not isinstance(maximum_jobs, int)
            or maximum_jobs < max(jobs, 1)
        ):
            raise ValidationError(
                f"maximum_jobs must be an integer >= jobs ({jobs}) and >= 1, got {maximum_jobs!r}"
            )
        if jobs == 0 and maximum_jobs is None:
            raise ValidationError(
                "jobs=0 without maximum_jobs starts no worker job, so the sweep would never "
                "start: pass jobs >= 1, or maximum_jobs >= 1 to start jobs as work appears"
            )
        super().__init__(None, chunk_size=chunk_size)
        self.config = config
        self.jobs = jobs
        self.maximum_jobs = maximum_jobs
        self.processes = processes
        self.cluster_options = cluster_options

    def cluster_kwargs(self) -> dict[str, Any]:
        """The keyword arguments `dask_jobqueue.SLURMCluster` is built with."""
        config = self.config
        walltime = config.time_seconds
        # retire before the walltime, whatever the stagger draws: lifetime +- stagger stays
        # within (0, walltime), at half of it at most for short walltimes
        margin = min(max(int(walltime * LIFETIME_MARGIN), 120), 600, walltime // 2)
        lifetime = walltime - margin
        directives = list(config.extra_directives)
        if config.qos:
            directives.append(f"--qos={config.qos}")
        if config.gpus:
            directives.append(f"--gres=gpu:{config.gpus}")
        prologue = setup_lines(config)  # as in the array scripts: values quoted
        kwargs: dict[str, Any] = {
            "cores": config.cpus,
            "processes": self.processes,
            "memory": f"{config.memory_mb}MiB",
            "walltime": format_time(walltime),
            "queue": config.partition_option,
            "account": config.account,
            "job_extra_directives": directives,
            "job_script_prologue": prologue,
            "python": config.python,
            "worker_extra_args": [
                "--lifetime",
                f"{lifetime}s",
                "--lifetime-stagger",
                f"{min(60, margin // 2)}s",
            ],
        }
        kwargs.update(self.cluster_options)
        kwargs["scheduler_options"] = _scheduler_options(kwargs.get("scheduler_options"))
        return kwargs

    def _connect(self) -> tuple[Any, list[Any]]:
        """Start the worker jobs' cluster and connect to it; return (client, what to close).
        On failure the cluster is closed and the error raised."""
        require("dask_jobqueue", "slurm", "JobqueueExecutor")
        import distributed
        from dask_jobqueue import SLURMCluster

        cluster = SLURMCluster(**self.cluster_kwargs())
        try:
            cluster.adapt(minimum_jobs=self.jobs, maximum_jobs=self.maximum_jobs or self.jobs)
            client = distributed.Client(cluster, set_as_default=False)
            if self.jobs:
                client.wait_for_workers(1, timeout=_startup_timeout())
        except BaseException:
            cluster.close()
            raise
        return client, [client, cluster]

    def __repr__(self) -> str:
        return f"JobqueueExecutor({self.config!r}, jobs={self.jobs})"


def _scheduler_options(given: dict[str, Any] | None) -> dict[str, Any]:
    """The scheduler's options: the user's (or dask-jobqueue's configured ones), with the
    dashboard on metalab's dashboard address (127.0.0.1) unless they name one. The scheduler
    itself listens where dask-jobqueue puts it: workers on compute nodes must reach it."""
    import dask.config

    if given is None:
        given = dask.config.get("jobqueue.slurm.scheduler-options", default={}) or {}
    options = dict(given)
    options.setdefault("dashboard_address", metalab_config.get("dask.dashboard-address"))
    return options


def _startup_timeout() -> float:
    return float(metalab_config.seconds_of(metalab_config.get("slurm.worker-start-timeout")) or 0)
