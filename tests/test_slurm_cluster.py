"""The SLURM building blocks against a real cluster: rendered scripts, arrays, squeue, sacct.

Start a local single-node cluster with `bash ci/start-slurm.sh`.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from metalab.executors.slurm.arrays import ArrayJob, dependency_option, plan_arrays
from metalab.executors.slurm.commands import (
    SubmissionError,
    TaskState,
    sacct,
    sbatch,
    scancel,
    squeue,
)
from metalab.executors.slurm.config import SlurmConfig
from metalab.executors.slurm.script import log_dir, render_script

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}

# Runs in place of the entry module: records the run index of its task, and how many tasks of
# the sweep were running when it started (each task holds a file in `running/` while it runs).
PAYLOAD = r"""
out=$1 offset=$2
run=$((offset + SLURM_ARRAY_TASK_ID))
touch "$out/running/$run"
ls "$out/running" | wc -l >> "$out/concurrency"
echo "task $SLURM_ARRAY_TASK_ID runs $run"
echo "$run" >> "$out/runs/$run"
sleep "${SLEEP:-1}"
rm "$out/running/$run"
if [ "$run" = "${FAIL_RUN:-none}" ]; then exit 3; fi
"""


def _submit(
    jobs: list[ArrayJob], config: SlurmConfig, root: Path, env: str = "", hold: bool = False
) -> list[str]:
    """Render and submit `jobs` in order, chaining each to the job it must wait for."""
    ids: list[str] = []
    for number, job in enumerate(jobs):
        command = ["bash", "-c", env + PAYLOAD, "payload", str(root / "out"), str(job.offset)]
        script = render_script(
            config, job, job_name="metalab-test", logs=log_dir(root), command=command
        )
        path = root / f"job-{number}.sh"
        path.write_text(script)
        extra = [dependency_option(ids[job.after])] if job.after is not None else []
        ids.append(sbatch(str(path), [*extra, *(["--hold"] if hold else [])]))
    return ids


def _wait(job_ids: Iterable[str], expected: int, timeout: float = 180) -> dict[str, TaskState]:
    """Poll squeue until `expected` tasks of `job_ids` have all finished."""
    deadline = time.monotonic() + timeout
    while True:
        states = squeue(job_ids)
        if len(states) >= expected and all(s.state in FINISHED for s in states.values()):
            return states
        if time.monotonic() > deadline:
            pytest.fail(f"array tasks not finished within {timeout} s: {states}")
        time.sleep(0.5)


@pytest.fixture
def root(tmp_path) -> Path:
    """A store-like directory whose path needs quoting, with the payload's output folders."""
    root = tmp_path / "store with space"
    for sub in ("out/running", "out/runs"):
        (root / sub).mkdir(parents=True)
    log_dir(root).mkdir(parents=True)
    return root


def _config(partition: str, **changes) -> SlurmConfig:
    return SlurmConfig(partition=partition, time="5", memory="100M", **changes)


def test_rendered_arrays_run_every_task_once_within_max_concurrent(slurm_cluster, root):
    pending = [0, 1, 2, 3, 5, 8, 9, 10, 11, 12, 20]
    config = _config(slurm_cluster, max_array_size=6, max_concurrent=3)
    jobs = plan_arrays(pending, max_array_size=6, max_concurrent=3)
    assert len(jobs) > 1 and jobs[1].after == 0  # chained shards, each throttled
    ids = _submit(jobs, config, root)
    states = _wait(ids, expected=len(pending))
    assert {s.state for s in states.values()} == {"COMPLETED"}

    out = root / "out"
    assert sorted(int(p.name) for p in (out / "runs").iterdir()) == pending
    assert all(p.read_text() == f"{p.name}\n" for p in (out / "runs").iterdir())
    assert max(int(n) for n in (out / "concurrency").read_text().split()) <= 3
    for job_id, job in zip(ids, jobs):
        for task in job.task_ids:
            log = log_dir(root) / f"{job_id}_{task}.out"
            assert log.read_text() == f"task {task} runs {job.offset + task}\n"
            assert (log_dir(root) / f"{job_id}_{task}.err").exists()


def test_squeue_sees_every_task_of_several_arrays_and_scancel_stops_them(slurm_cluster, root):
    config = _config(slurm_cluster)
    jobs = plan_arrays(range(8), max_array_size=4)
    ids = _submit(jobs, config, root, hold=True)
    states = squeue(ids)
    assert sorted(states) == sorted(f"{i}_{t}" for i in ids for t in range(4))
    assert {s.state for s in states.values()} == {"PENDING"}
    assert {s.reason for s in states.values()} == {"JobHeldUser"}

    scancel(ids)
    states = _wait(ids, expected=8, timeout=60)
    assert {s.state for s in states.values()} == {"CANCELLED"}
    scancel(ids)  # cancelling ended jobs is not an error
    assert not any((root / "out" / "runs").iterdir())


def _wait_state(job_id: str, key: str, state: str, timeout: float = 60) -> None:
    """Poll squeue until task `key` of `job_id` is in `state`."""
    deadline = time.monotonic() + timeout
    while squeue([job_id]).get(key, TaskState("", "")).state != state:
        if time.monotonic() > deadline:
            pytest.fail(f"{key} not {state} within {timeout} s: {squeue([job_id])}")
        time.sleep(0.2)


def test_scancel_stops_one_running_task_then_the_whole_array(slurm_cluster, root):
    jobs = plan_arrays(range(2), max_array_size=10)
    [job_id] = _submit(jobs, _config(slurm_cluster), root, env="SLEEP=120\n")
    _wait_state(job_id, f"{job_id}_0", "RUNNING")
    _wait_state(job_id, f"{job_id}_1", "RUNNING")
    scancel([f"{job_id}_1"])
    _wait_state(job_id, f"{job_id}_1", "CANCELLED")
    assert squeue([job_id])[f"{job_id}_0"].state == "RUNNING"
    scancel([job_id])
    states = _wait([job_id], expected=2, timeout=60)
    assert {s.state for s in states.values()} == {"CANCELLED"}


def test_sacct_reports_completed_and_failed_tasks(slurm_cluster, root):
    jobs = plan_arrays(range(4), max_array_size=10)
    ids = _submit(jobs, _config(slurm_cluster), root, env="SLEEP=0 FAIL_RUN=2\n")
    squeue_states = _wait(ids, expected=4)
    assert squeue_states[f"{ids[0]}_2"] == TaskState("FAILED", "NonZeroExitCode")

    deadline = time.monotonic() + 60  # sacct is eventually consistent
    accounting = sacct(ids)
    while accounting.available and len(accounting.records) < 4:
        if time.monotonic() > deadline:
            pytest.fail(f"sacct lists only {accounting.records} after 60 s")
        time.sleep(0.5)
        accounting = sacct(ids)
    if not accounting.available:
        pytest.skip("the cluster has no accounting storage (sacct is disabled)")
    records = accounting.records
    assert records[f"{ids[0]}_2"].state == "FAILED"
    assert records[f"{ids[0]}_2"].exit_code == "3:0"
    assert {records[f"{ids[0]}_{t}"].state for t in (0, 1, 3)} == {"COMPLETED"}


def test_a_refused_submission_names_the_command_and_slurms_error(slurm_cluster, root):
    config = _config("no-such-partition")
    with pytest.raises(SubmissionError) as info:
        _submit(plan_arrays(range(1)), config, root)
    assert info.value.command[0] == "sbatch"
    assert "invalid partition" in info.value.stderr.lower()
    assert "invalid partition" in str(info.value).lower()


def test_the_test_cluster_has_gpu_and_cpu_partitions_and_one_gpu(slurm_test_layout, root):
    out = subprocess.run(
        ["sinfo", "-h", "-o", "%P %G %m"], capture_output=True, text=True, check=True
    ).stdout
    rows = {line.split()[0].rstrip("*"): line.split()[1:] for line in out.splitlines()}
    assert {"gpu", "cpu"} <= set(rows), out
    assert rows["gpu"][0].startswith("gpu:1"), out
    assert int(rows["gpu"][1]) >= 16 * 1024, out  # room for --mem=16G
    # a task asking for the GPU and 16 GB in the gpu partition runs and sees its GPU
    config = SlurmConfig(partition="gpu", time="5", memory="16G", gpus=1)
    env = 'echo "gpus=$SLURM_GPUS_ON_NODE cuda=$CUDA_VISIBLE_DEVICES"\nSLEEP=0\n'
    ids = _submit(plan_arrays(range(1)), config, root, env=env)
    states = _wait(ids, expected=1, timeout=60)
    assert {s.state for s in states.values()} == {"COMPLETED"}
    log = (log_dir(root) / f"{ids[0]}_0.out").read_text()
    assert log.startswith("gpus=1 cuda=0\n"), log
