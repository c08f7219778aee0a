"""Dask workers as SLURM jobs through dask-jobqueue, on the real local cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

import metalab

TESTS = Path(__file__).parent


def slurm_config(**options) -> metalab.SlurmConfig:
    options.setdefault("time", "10:00")
    options.setdefault("memory", "1G")
    return metalab.SlurmConfig(setup=[f"export PYTHONPATH={TESTS}"], **options)


def test_cluster_options_follow_the_config():
    executor = metalab.JobqueueExecutor(
        metalab.SlurmConfig(
            partition="gpu",
            time="2:00:00",
            cpus=4,
            memory="16G",
            gpus=1,
            account="lab",
            qos="high",
            modules=["cuda/12"],
            conda_env="ml",
            setup=["export X=1"],
            extra_directives=["--constraint=a100"],
        ),
        jobs=3,
        interface="lo",
    )
    kwargs = executor.cluster_kwargs()
    assert kwargs["cores"] == 4 and kwargs["memory"] == "16384MiB"
    assert kwargs["walltime"] == "02:00:00" or kwargs["walltime"] == "2:00:00"
    assert kwargs["queue"] == "gpu" and kwargs["account"] == "lab"
    assert set(kwargs["job_extra_directives"]) == {
        "--constraint=a100",
        "--qos=high",
        "--gres=gpu:1",
    }
    assert kwargs["job_script_prologue"] == [
        "module load cuda/12",
        'eval "$(conda shell.bash hook)"',
        "conda activate ml",
        "export X=1",
    ]
    # workers retire 10 minutes before the 2 h walltime, so a new job takes over in time
    lifetime = kwargs["worker_extra_args"][kwargs["worker_extra_args"].index("--lifetime") + 1]
    assert lifetime == f"{2 * 3600 - 600}s"
    assert kwargs["interface"] == "lo"


def test_prologue_quotes_module_and_environment_names_as_the_array_scripts_do():
    config = metalab.SlurmConfig(modules=["gcc/12 ; rm"], conda_env="my env")
    prologue = metalab.JobqueueExecutor(config, jobs=1).cluster_kwargs()["job_script_prologue"]
    assert prologue == [
        "module load 'gcc/12 ; rm'",
        'eval "$(conda shell.bash hook)"',
        "conda activate 'my env'",
    ]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"jobs": -1}, "jobs must be an integer >= 0"),
        ({"jobs": 2, "maximum_jobs": 1}, "maximum_jobs must be an integer >= jobs"),
        ({"processes": 0}, "processes must be an integer >= 1"),
        ({"jobs": 0}, "jobs=0 without maximum_jobs starts no worker job"),
        ({"jobs": 0, "maximum_jobs": 0}, "maximum_jobs must be an integer >= jobs"),
        ({"jobs": "2"}, r"jobs must be an integer >= 0, got '2'"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, match):
    with pytest.raises(metalab.ValidationError, match=match):
        metalab.JobqueueExecutor(metalab.SlurmConfig(), **kwargs)


@pytest.mark.slurm
@pytest.mark.slow
def test_sweep_on_jobqueue_workers(tmp_path, slurm_cluster):
    from slurm_ops import slurm_experiment

    executor = metalab.JobqueueExecutor(
        slurm_config(),
        jobs=2,
        interface="lo",
        local_directory=str(tmp_path / "dask"),
        log_directory=str(tmp_path / "logs"),
    )
    handle = metalab.run(slurm_experiment(n=20), tmp_path / "store", executor=executor)
    results = handle.result(timeout=300)
    assert len(results) == 20 and all(r.status == "completed" for r in results)
    assert [r.metrics["square"] for r in results] == [i * i for i in range(20)]
    # the runs ran inside SLURM jobs: their records carry the job ids
    jobs = {r.provenance["slurm"]["job_id"] for r in results}
    assert 1 <= len(jobs) <= 2
    assert handle.dashboard_link


@pytest.mark.slurm
@pytest.mark.slow
def test_adaptive_workers_start_from_none_and_the_dashboard_shows_the_sweep(
    tmp_path, slurm_cluster
):
    import urllib.request

    from slurm_ops import draw_experiment

    config = metalab.SlurmConfig(
        time="10:00",
        memory="1G",
        setup=[f"export PYTHONPATH={TESTS}", "export METALAB_TEST_SLEEP=0.3"],
    )
    executor = metalab.JobqueueExecutor(
        config,
        jobs=0,
        maximum_jobs=2,
        interface="lo",
        local_directory=str(tmp_path / "dask"),
        log_directory=str(tmp_path / "logs"),
    )
    handle = metalab.run(draw_experiment(cases=16), tmp_path / "store", executor=executor)
    link = handle.dashboard_link
    assert link and link.startswith("http://")
    page = link.rsplit("/", 1)[0] + "/metalab"
    with urllib.request.urlopen(page, timeout=60) as response:
        assert response.status == 200
        assert "Bokeh" in response.read().decode("utf-8")
    results = handle.result(timeout=300)
    assert [r.status for r in results] == ["completed"] * 16
    # workers came from SLURM jobs the cluster asked for as work appeared, at most two
    jobs = {r.provenance["slurm"]["job_id"] for r in results}
    assert 1 <= len(jobs) <= 2 and all(jobs)


@pytest.mark.slurm
@pytest.mark.slow
def test_users_own_slurm_cluster_through_dask_executor(tmp_path, slurm_cluster):
    from dask_jobqueue import SLURMCluster
    from slurm_ops import slurm_experiment

    with SLURMCluster(
        cores=1,
        memory="1GB",
        walltime="00:10:00",
        interface="lo",
        job_script_prologue=[f"export PYTHONPATH={TESTS}"],
        local_directory=str(tmp_path / "dask"),
        log_directory=str(tmp_path / "logs"),
    ) as cluster:
        cluster.scale(jobs=1)
        results = metalab.run(
            slurm_experiment(n=5), tmp_path / "store", executor=metalab.DaskExecutor(cluster)
        ).result(timeout=300)
    assert [r.status for r in results] == ["completed"] * 5
    assert all(r.provenance["slurm"]["job_id"] for r in results)


@pytest.mark.parametrize("time", ["1", "2", "3", "10", "30", "2:00:00", "1-00:00:00"])
def test_workers_retire_within_the_walltime_whatever_the_stagger(time):
    """A worker's lifetime is drawn from lifetime +- stagger: it must end after it starts
    and before SLURM's time limit kills it mid-run."""
    config = metalab.SlurmConfig(time=time)
    args = metalab.JobqueueExecutor(config).cluster_kwargs()["worker_extra_args"]
    lifetime = int(args[args.index("--lifetime") + 1].removesuffix("s"))
    stagger = int(args[args.index("--lifetime-stagger") + 1].removesuffix("s"))
    assert lifetime - stagger > 0 and lifetime + stagger < config.time_seconds
