"""`SlurmExecutor` on a real single-node SLURM cluster (`bash ci/start-slurm.sh`): the spec's
examples as written, sweeps as index-addressed job arrays, sharding and `max_concurrent` as the
scheduler runs them, packing, resume, lost tasks, retries with escalation, dry runs, reconnect.

The cluster has partitions `debug` (default), `gpu` and `cpu` and one GPU (a generic resource
with no device behind it), so the spec's `partition="gpu", gpus=1` sweep runs as written."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from sweeps import checked_result, wait_for

import metalab
from metalab.executors.slurm import commands
from metalab.stores.file import FileStore

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TESTS = Path(__file__).parent

# array tasks import the operations of this file's helpers module from tests/
SETUP = [f"export PYTHONPATH={TESTS}"]


def config(**options) -> metalab.SlurmConfig:
    options.setdefault("time", "5:00")
    options.setdefault("memory", "500M")
    options.setdefault("setup", SETUP)
    return metalab.SlurmConfig(**options)


def executor(**options) -> metalab.SlurmExecutor:
    return metalab.SlurmExecutor(config(**options), poll_interval=0.3)


@pytest.fixture
def store(tmp_path, slurm_cluster):
    return tmp_path / "store"


def submissions(store: Path) -> list[dict]:
    return [
        json.loads(p.read_text())
        for p in sorted((store / "slurm").glob("*/submission.json"), key=os.path.getmtime)
    ]


def test_sweep_runs_as_sharded_throttled_arrays(store):
    from slurm_ops import slurm_experiment

    exp = slurm_experiment(n=10)
    handle = metalab.run(
        exp,
        store,
        executor=executor(runs_per_task=2, max_array_size=2, max_concurrent=2),
    )
    results = handle.result(timeout=240)
    assert len(results) == 10 and all(r.status == "completed" for r in results)
    assert [r.metrics["square"] for r in results] == [i * i for i in range(10)]
    # every record names its array job, task and node
    slurm = [r.provenance["slurm"] for r in results]
    assert all(s["array_job_id"] and s["array_task_id"] is not None for s in slurm)
    assert all(s["node"] for s in slurm)
    # runs 2k and 2k+1 share a task; 5 tasks in shards of 2 tasks -> 3 array jobs
    (submission,) = submissions(store)
    assert [job["task_ranges"] for job in submission["jobs"]] == [[[0, 1]], [[0, 1]], [[0, 0]]]
    assert all(job["job_id"] for job in submission["jobs"])
    # scripts stay in the store, task logs land in the store as <job>_<task> files
    scripts = list((store / "slurm" / submission["session"]).glob("*.sh"))
    assert len(scripts) == 3
    logs = sorted(p.name for p in (store / "slurm" / "logs").glob("*.out"))
    assert len(logs) == 5
    # resubmitting a complete sweep returns at once and submits nothing
    again = metalab.run(exp, store, executor=executor())
    assert again.result(timeout=10) and again.status.skipped == 10
    assert len(submissions(store)) == 1


def test_resume_submits_only_missing_runs_as_a_compact_spec(store):
    from slurm_ops import slurm_experiment

    exp = slurm_experiment(n=12)
    metalab.run(exp, store, executor="inline").result()
    runs = store / "runs"
    opened = FileStore.open(store)
    for index in (3, 7, 8, 9, 10):
        record = opened.record_path(exp.run_id(index))
        record.unlink()
        record.with_suffix(".done").unlink()
    handle = metalab.run(exp, store, executor=executor(max_concurrent=4))
    assert handle.status.skipped == 7
    results = handle.result(timeout=240)
    assert len(results) == 12 and all(r.status == "completed" for r in results)
    (submission,) = submissions(store)
    assert [job["array"] for job in submission["jobs"]] == ["3,7-10%4"]
    # each run recorded exactly once
    assert len(list(runs.glob("*/*.json"))) == 12


def test_cancelled_task_is_recorded_failed_with_the_schedulers_reason(store, tmp_path):
    from slurm_ops import slurm_experiment

    # run 1 sleeps in its first attempt only, so the resumed attempt finishes
    exp = slurm_experiment(n=3, sleep_on=1, sleep=300, only_first_attempt=True)
    handle = metalab.run(exp, store, executor=executor())
    (submission,) = wait_for(lambda: submissions(store) or None, 60)
    job_id = submission["jobs"][0]["job_id"]
    wait_for(lambda: (store / "claims").exists() and list((store / "claims").glob("*/*")), 120)
    commands.scancel([f"{job_id}_1"])
    results = checked_result(handle, timeout=240)
    by_index = {r.index: r for r in results}
    assert by_index[0].status == "completed" and by_index[2].status == "completed"
    assert by_index[1].status == "failed"
    assert by_index[1].error["type"] == "SlurmCancelled"
    assert f"{job_id}_1" in by_index[1].error["message"]
    assert not [p for p in (store / "claims").rglob("*") if p.is_file()]
    # resume submits only the failed run, which runs again and completes
    again = metalab.run(exp, store, executor=executor())
    assert again.status.skipped == 2 and again.status.pending == 1
    (rerun,) = [r for r in checked_result(again, timeout=120) if r.index == 1]
    assert rerun.status == "completed" and rerun.record["attempt"] == 2
    assert rerun.run_id == by_index[1].run_id
    assert len(submissions(store)) == 2
    assert [job["array"] for job in submissions(store)[1]["jobs"]] == ["1"]
    assert len(list((store / "runs").glob("*/*.json"))) == 3  # each run recorded once


def test_timeout_is_recorded_as_such_and_retried_with_more_time_only(store):
    from slurm_ops import slurm_experiment

    # the first attempt outlives its 1-minute limit: the task traps SLURM's SIGTERM and
    # records the run with cause timeout; the retry gets 2 minutes (memory is not grown after
    # a timeout) and finishes
    exp = slurm_experiment(n=1, sleep_on=0, sleep=600, only_first_attempt=True)
    escalate = {"memory": 2.0, "time": 2.0}
    handle = metalab.run(
        exp, store, executor=executor(time="1", memory="500M", retries=1, escalate=escalate)
    )
    results = handle.result(timeout=400)
    (run,) = results
    assert run.status == "completed"
    assert run.record["attempt"] == 2
    (submission,) = submissions(store)
    assert [job["attempt"] for job in submission["jobs"]] == [1, 2]
    assert submission["tries"] == {"0": {"timeout": 1}}
    retry_script = Path(submission["jobs"][1]["script"]).read_text()
    assert "#SBATCH --time=00:02:00\n" in retry_script
    assert "#SBATCH --mem=500M\n" in retry_script
    first_script = Path(submission["jobs"][0]["script"]).read_text()
    assert "#SBATCH --time=1\n" in first_script  # as the user wrote it
    # the first task recorded its run lost to the time limit itself, before SIGKILL
    first_job = submission["jobs"][0]["job_id"]
    log = (store / "slurm" / "logs" / f"{first_job}_0.out").read_text()
    assert "is being ended by SLURM: timeout" in log
    assert "'lost (timeout)': 1" in log
    # the scheduler gave the retry what its script asked for
    retry_job = submission["jobs"][1]["job_id"]
    assert _requested(retry_job) == {"mem": "500M", "time": "00:02:00"}


def test_dry_run_writes_scripts_and_submits_nothing(store):
    from slurm_ops import slurm_experiment

    report = metalab.run(
        slurm_experiment(n=25),
        store,
        executor=executor(max_array_size=10, max_concurrent=4, cpus=2, time="30:00"),
        dry_run=True,
    )
    assert (report.total, report.done, report.to_submit) == (25, 0, 25)
    # 3 shards of at most 10 tasks, chained in one lane throttled at 4
    assert [(job["array"], job["offset"], job["after"]) for job in report.jobs] == [
        ("0-9%4", 0, None),
        ("0-9%4", 10, 0),
        ("0-4%4", 20, 1),
    ]
    assert report.core_hours_max == pytest.approx(25 * 2 * 0.5)
    text = str(report)
    assert "25 to submit" in text and "--array=" in text
    for job in report.jobs:
        assert Path(job["script"]).exists() and job["job_id"] is None
    assert not submissions(store)
    assert not (store / "runs").exists() or not list((store / "runs").iterdir())


def test_refused_sbatch_carries_command_and_stderr_and_leaves_nothing(store):
    from slurm_ops import slurm_experiment

    with pytest.raises(commands.SubmissionError) as raised:
        handle = metalab.run(
            slurm_experiment(n=3),
            store,
            executor=executor(partition="no_such_partition"),
        )
        handle.result(timeout=60)
    assert "sbatch" in " ".join(raised.value.command)
    assert "partition" in raised.value.stderr.lower()
    (submission,) = submissions(store)
    assert all(job["job_id"] is None for job in submission["jobs"])


def test_a_refused_later_shard_cancels_the_shards_already_submitted(store, monkeypatch):
    from slurm_ops import slurm_experiment

    real_sbatch, submitted = commands.sbatch, []

    def sbatch(script, extra=()):
        if submitted:  # the second shard is refused
            raise commands.SubmissionError(["sbatch", str(script)], 1, "QOSMaxSubmitJobPerUser")
        submitted.append(real_sbatch(script, extra))
        return submitted[-1]

    monkeypatch.setattr(commands, "sbatch", sbatch)
    exp = slurm_experiment(n=6, sleep_on=0, sleep=300)
    with pytest.raises(commands.SubmissionError, match="QOSMaxSubmitJobPerUser"):
        metalab.run(exp, store, executor=executor(max_array_size=3)).result(timeout=60)
    (submission,) = submissions(store)
    first, second = submission["jobs"]
    assert first["job_id"] == submitted[0]
    assert first["state"] == "cancelled after a failed submission"
    assert second["job_id"] is None
    # the scheduler runs nothing of it any more
    from metalab.executors.slurm.states import ACTIVE_STATES

    wait_for(
        lambda: (
            all(t.state not in ACTIVE_STATES for t in commands.squeue(submitted).values()) or None
        ),
        60,
    )


def test_status_right_after_reconnect_counts_the_records_already_stored(store, monkeypatch):
    from slurm_ops import slurm_experiment

    metalab.run(slurm_experiment(n=2), store, executor=executor()).result(timeout=120)
    scan = FileStore.scan

    def slow_scan(self):
        time.sleep(1)  # the follower's first scan takes a moment, as on a large store
        return scan(self)

    monkeypatch.setattr(FileStore, "scan", slow_scan)
    handle = metalab.reconnect(store)
    try:
        assert handle.status.completed == 2
    finally:
        handle.result(timeout=60)


def test_reconnect_after_the_submitting_process_is_gone(store, tmp_path):
    script = tmp_path / "submit.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(TESTS)!r})
            import metalab
            from slurm_ops import slurm_experiment
            cfg = metalab.SlurmConfig(setup={SETUP!r}, time="5:00", memory="500M")
            handle = metalab.run(slurm_experiment(n=6, sleep_on=-1, sleep=2), {str(store)!r},
                                 executor=metalab.SlurmExecutor(cfg))
            print("submitted", handle.status.total)
            """
        )
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "submitted 6" in out.stdout
    handle = metalab.reconnect(store)
    assert type(handle._driver.executor).__name__ == "SlurmExecutor"
    results = handle.result(timeout=240)
    assert len(results) == 6 and all(r.status == "completed" for r in results)
    assert handle.status.completed == 6


def _requested(job_id: str) -> dict[str, str]:
    """The memory and time limit the controller granted `job_id` (it keeps ended jobs for
    MinJobAge; sacct may lag behind)."""
    out = subprocess.run(
        ["scontrol", "--oneliner", "show", "job", job_id],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    fields = dict(item.split("=", 1) for item in out.split() if "=" in item)
    return {"mem": fields["MinMemoryNode"], "time": fields["TimeLimit"]}


# ------------------------------------------------------------------- the spec, as written


def test_spec_gpu_sweep_as_written_then_reconnect(tmp_path, slurm_test_layout, monkeypatch, capsys):
    from slurm_ops import draw_experiment

    # the config below is the spec's, unchanged: tasks find the test operations through the
    # environment sbatch passes on, not through a setup line
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    exp = draw_experiment(cases=3)
    store = str(tmp_path / "my_exp")

    handle = metalab.run(
        exp,
        store=store,  # Shared filesystem path
        executor=metalab.SlurmExecutor(
            metalab.SlurmConfig(
                partition="gpu",
                time="2:00:00",
                cpus=4,
                memory="16G",
                gpus=1,
                max_concurrent=100,  # Limit concurrent tasks
            )
        ),
        progress=True,  # Watch job progress
    )

    # In a new session, reconnect to watch progress
    watching = metalab.reconnect(store, progress=True)
    # Or just check status
    checking = metalab.reconnect(store)
    print(checking.status)  # RunStatus(total=100, completed=45, ...)

    # Block until all jobs complete (shows live progress)
    results = handle.result()
    assert [r.status for r in results] == ["completed"] * 3
    assert [r.index for r in watching.result()] == [0, 1, 2]
    checking.result()

    out, err = capsys.readouterr()
    status = re.fullmatch(r"RunStatus\(total=3, completed=(\d+), .*\)\n", out)
    assert status and int(status.group(1)) <= 3, out
    assert err.count("draws:1: 3 runs") == 2, err  # the progress of run and reconnect
    assert checking.status.completed == watching.status.completed == 3

    # every task got the allocation the spec asks for: the gpu partition, 4 CPUs, 16 GB, 1 GPU
    for run in results:
        env = run.artifact("slurm")
        assert env["SLURM_JOB_PARTITION"] == "gpu"
        assert env["SLURM_CPUS_PER_TASK"] == "4"
        assert env["SLURM_MEM_PER_NODE"] == "16384"
        assert env["SLURM_GPUS_ON_NODE"] == "1" and env["CUDA_VISIBLE_DEVICES"] == "0"
    # the node has one GPU: the tasks ran one after another
    spans = sorted((_when(r.record["started_at"]), _when(r.record["finished_at"])) for r in results)
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))
    (submission,) = submissions(Path(store))
    (job,) = submission["jobs"]
    assert job["array"] == "0-2"  # 3 tasks, fewer than max_concurrent: no throttle needed
    script = Path(job["script"]).read_text()
    for directive in ("--partition=gpu", "--time=2:00:00", "--cpus-per-task=4", "--mem=16G"):
        assert f"#SBATCH {directive}\n" in script
    assert "#SBATCH --gres=gpu:1\n" in script


def _when(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp()


LARGE_CONFIG = dict(
    partition="cpu",
    time="1:00:00",
    max_array_size=10000,  # Auto-shard into chunks of 10k
    max_concurrent=500,  # Run up to 500 tasks at once
)


def test_spec_large_sweep_plans_30_throttled_shards(tmp_path, slurm_cluster):
    from slurm_ops import large_sweep

    exp = large_sweep()  # 300,000 total runs
    assert len(exp) == 300_000
    report = metalab.run(
        exp,
        store=str(tmp_path / "large_sweep"),
        executor=metalab.SlurmExecutor(metalab.SlurmConfig(**LARGE_CONFIG)),
        dry_run=True,
    )
    assert (report.total, report.done, report.to_submit) == (300_000, 0, 300_000)
    assert report.tasks == 300_000 and report.core_hours_max == pytest.approx(300_000)
    jobs = report.jobs
    assert len(jobs) == 30
    assert [job["shard"] for job in jobs] == list(range(30))
    assert [job["offset"] for job in jobs] == [10_000 * s for s in range(30)]
    # 30 lanes of one job each (no chains), throttles of 16 or 17 sharing the 500
    assert all(job["after"] is None for job in jobs)
    specs = [re.fullmatch(r"0-9999%(\d+)", job["array"]) for job in jobs]
    assert all(specs), [job["array"] for job in jobs]
    throttles = [int(spec.group(1)) for spec in specs if spec]
    assert sum(throttles) <= 500 and set(throttles) <= {16, 17}
    for job in jobs:
        script = Path(job["script"]).read_text()
        assert "#SBATCH --partition=cpu\n" in script and "#SBATCH --time=1:00:00\n" in script
        assert f"#SBATCH --array={job['array']}\n" in script
        assert f" --offset {job['offset']} --runs-per-task 1 --total 300000 " in script
        assert job["job_id"] is None
    assert "300000 to submit" in str(report) and "30 array job(s)" in str(report)
    assert not submissions(tmp_path / "large_sweep")


REDUCED_GENES = 4
"""The reduced `large_sweep`: 4 genes x 5 expression values x 3 replicates = 60 runs (one
array task each, the spec's config unchanged)."""


def test_spec_large_sweep_config_runs_a_reduced_sweep(tmp_path, slurm_test_layout, monkeypatch):
    from slurm_ops import large_sweep

    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    exp = large_sweep(genes=REDUCED_GENES, expr_vals=5)
    store = tmp_path / "large_sweep"
    handle = metalab.run(
        exp,
        store=str(store),
        executor=metalab.SlurmExecutor(metalab.SlurmConfig(**LARGE_CONFIG)),
    )
    results = handle.result()
    total = REDUCED_GENES * 5 * 3
    assert len(results) == total and all(r.status == "completed" for r in results)
    assert {r.artifact("slurm")["SLURM_JOB_PARTITION"] for r in results[:3]} == {"cpu"}
    assert [r.metrics["total"] for r in results[:: 3 * 5]] == list(range(REDUCED_GENES))
    (submission,) = submissions(store)
    (job,) = submission["jobs"]
    assert job["array"] == f"0-{total - 1}"  # fewer tasks than max_concurrent: unthrottled
    assert handle.status.completed == total


# ---------------------------------------------------------------- the executor's guarantees


def test_sweep_matches_the_inline_executor(tmp_path, slurm_cluster):
    from slurm_ops import draw_experiment

    exp = draw_experiment(cases=3, replicates=3)
    on_slurm = metalab.run(exp, tmp_path / "slurm", executor=executor()).result(timeout=240)
    inline = metalab.run(draw_experiment(cases=3, replicates=3), tmp_path / "inline", "inline")
    inline_results = inline.result()
    assert len(on_slurm) == len(inline_results) == 9
    assert [r.run_id for r in on_slurm] == [r.run_id for r in inline_results]
    assert [r.metrics for r in on_slurm] == [r.metrics for r in inline_results]
    assert len({r.metrics["x"] for r in on_slurm}) > 1  # the draws come from the runs' seeds
    assert all(r.provenance["slurm"]["array_job_id"] for r in on_slurm)
    assert not any(r.provenance.get("slurm") for r in inline_results)


class RunningTasks:
    """Poll squeue in a thread: which array tasks run, sample after sample."""

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.samples: list[set[tuple[str, str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(
                ["squeue", "-h", "-r", "-t", "RUNNING", "-o", "%F %i"],
                capture_output=True,
                text=True,
            ).stdout
            self.samples.append({tuple(line.split()) for line in out.splitlines() if line})
            self._stop.wait(self.interval)

    def running(self, job_ids: set[str]) -> list[set[str]]:
        """Per sample, the running tasks of `job_ids` (array job ids)."""
        return [{task for job, task in sample if job in job_ids} for sample in self.samples]

    @contextlib.contextmanager
    def watching(self):
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


def test_shards_and_max_concurrent_as_the_scheduler_runs_them(store):
    from slurm_ops import draw_experiment

    exp = draw_experiment(cases=10)
    slow = executor(
        max_array_size=4, max_concurrent=2, setup=[*SETUP, "export METALAB_TEST_SLEEP=1"]
    )
    with RunningTasks().watching() as watch:
        results = metalab.run(exp, store, executor=slow).result(timeout=240)
    assert [r.status for r in results] == ["completed"] * 10
    (submission,) = submissions(store)
    jobs = submission["jobs"]
    # 10 tasks in shards of 4: 3 array jobs, chained in one lane, throttled at 2 (the last
    # one has only 2 tasks)
    assert [(job["array"], job["offset"], job["after"]) for job in jobs] == [
        ("0-3%2", 0, None),
        ("0-3%2", 4, 0),
        ("0-1", 8, 1),
    ]
    ids = {job["job_id"] for job in jobs}
    running = watch.running(ids)
    seen = set().union(*running)
    assert len(seen) == 10  # the poll saw every task run...
    assert max(len(tasks) for tasks in running) == 2  # ...two at a time, never more
    # the records agree: at no time did more than 2 runs overlap
    spans = [(_when(r.record["started_at"]), _when(r.record["finished_at"])) for r in results]
    assert max(sum(s <= t < e for s, e in spans) for t, _ in spans) <= 2


def test_retries_wait_for_the_running_jobs_so_max_concurrent_holds(store):
    from slurm_ops import flaky_experiment

    # run 0 raises at once in its first attempt while the other tasks sleep; its retry
    # (retry_on_error) must not run beside the two tasks the limit already lets run
    exp = flaky_experiment(n=4, fail_on=0, sleep=6)
    ex = executor(max_concurrent=2, retries=1, retry_on_error=True)
    with RunningTasks().watching() as watch:
        results = metalab.run(exp, store, executor=ex).result(timeout=240)
    assert [r.status for r in results] == ["completed"] * 4
    assert [r.record["attempt"] for r in results] == [2, 1, 1, 1]
    (submission,) = submissions(store)
    first, retry = submission["jobs"]
    assert (first["array"], retry["array"], retry["attempt"]) == ("0-3%2", "0", 2)
    assert retry["waits_for"] == [first["position"]]
    ids = {first["job_id"], retry["job_id"]}
    assert max(len(tasks) for tasks in watch.running(ids)) <= 2
    spans = [(_when(r.record["started_at"]), _when(r.record["finished_at"])) for r in results]
    assert max(sum(s <= t < e for s, e in spans) for t, _ in spans) <= 2
    # the retry ran after every task of the first job had ended
    assert spans[0][0] >= max(end for _, end in spans[1:])


def test_submitting_again_while_the_first_submission_runs_is_refused(store):
    from slurm_ops import slurm_experiment

    exp = slurm_experiment(n=3, sleep_on=0, sleep=300)
    handle = metalab.run(exp, store, executor=executor(max_concurrent=2))
    (submission,) = wait_for(lambda: submissions(store) or None, 60)
    job_id = submission["jobs"][0]["job_id"]
    manifests = sorted((store / "experiments").glob("*_*.json"))
    try:
        with pytest.raises(metalab.ExecutorError, match="reconnect") as refused:
            metalab.run(exp, store, executor=executor(max_concurrent=2))
        message = str(refused.value)
        assert exp.experiment_id in message and job_id in message
        assert "queued or running" in message and "max_concurrent" in message
        # nothing was submitted, and reconnect still finds the running sweep
        assert len(submissions(store)) == 1
        assert sorted((store / "experiments").glob("*_*.json")) == manifests
        follower = metalab.reconnect(store)
        assert follower._sweep.session == handle._sweep.session
    finally:
        handle.cancel()
        cancelled = {r.index: r.status for r in checked_result(handle, timeout=120)}
    assert cancelled[0] in ("cancelled", "interrupted", "failed")
    checked_result(follower, timeout=120)
    # once it is cancelled, running again submits what is missing
    again = metalab.run(exp, store, executor=executor(max_concurrent=2))
    assert again.status.pending >= 1
    again.cancel()
    checked_result(again, timeout=120)


def test_packed_tasks_write_one_record_per_run(store):
    from slurm_ops import draw_experiment

    exp = draw_experiment(cases=23)
    results = metalab.run(exp, store, executor=executor(runs_per_task=5)).result(timeout=240)
    assert [r.index for r in results] == list(range(23))
    assert all(r.status == "completed" for r in results)
    assert sorted(r.run_id for r in results) == sorted(exp.run_id(i) for i in range(23))
    assert len(list((store / "runs").glob("*/*.json"))) == 23
    assert len(metalab.load_results(store)) == 23
    # run i ran in task i // 5 of the one array job; 5 tasks, the last one with 3 runs
    (submission,) = submissions(store)
    (job,) = submission["jobs"]
    assert job["array"] == "0-4"
    for run in results:
        slurm = run.provenance["slurm"]
        assert slurm["array_job_id"] == job["job_id"]
        assert int(slurm["array_task_id"]) == run.index // 5
    logs = store / "slurm" / "logs"
    for task in range(5):
        first, last = 5 * task, min(5 * task + 4, 22)
        log = (logs / f"{job['job_id']}_{task}.out").read_text()
        assert re.search(rf"^metalab: runs {first}\.\.{last} of \S+ \(attempt 1\)$", log, re.M)
        assert f"metalab: done: {{'completed': {last - first + 1}}}" in log


def test_one_executor_serves_several_sweeps(store):
    from slurm_ops import slurm_experiment

    ex = executor()
    first = metalab.run(slurm_experiment(n=2), store, executor=ex).result(timeout=120)
    second = metalab.run(slurm_experiment(n=3), store, executor=ex).result(timeout=120)
    assert [r.status for r in first] == ["completed"] * 2
    assert [r.status for r in second] == ["completed"] * 3
    assert len(submissions(store)) == 2


@pytest.mark.postgres
def test_reconnect_to_a_sweep_in_a_postgres_store(tmp_path, slurm_cluster, postgres_server):
    """A database store keeps its scripts and logs in work_dir; reconnect finds them there
    from the manifest and follows the array jobs, not just the store."""
    import uuid

    locator = f"{postgres_server}?schema=slurm_{uuid.uuid4().hex[:10]}"
    work = tmp_path / "work"
    script = tmp_path / "submit.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(TESTS)!r})
            import metalab
            from slurm_ops import slurm_experiment
            cfg = metalab.SlurmConfig(setup={SETUP!r}, time="5:00", memory="500M")
            ex = metalab.SlurmExecutor(cfg, work_dir={str(work)!r})
            handle = metalab.run(slurm_experiment(n=4, sleep_on=-1, sleep=1), {locator!r},
                                 executor=ex)
            print("submitted", handle.status.total)
            """
        )
    )
    try:
        out = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        handle = metalab.reconnect(locator)
        assert type(handle._driver.executor).__name__ == "SlurmExecutor"
        results = handle.result(timeout=240)
        assert [r.status for r in results] == ["completed"] * 4
        assert list((work / "slurm" / "logs").glob("*.out"))
    finally:
        from metalab.stores.postgres import PostgresStore, parse_locator

        PostgresStore(parse_locator(locator)).drop()


def test_progress_names_the_array_jobs_and_splits_queued_from_started(store):
    import io

    from slurm_ops import flaky_experiment

    exp = flaky_experiment(n=4, fail_on=-1, sleep=2)
    stream = io.StringIO()
    progress = metalab.Progress(stream=stream, use_rich=False, interval=0.2)
    handle = metalab.run(exp, store, executor=executor(max_concurrent=1), progress=progress)
    results = handle.result(timeout=240)
    assert [r.status for r in results] == ["completed"] * 4
    (submission,) = submissions(store)
    (job_id,) = [job["job_id"] for job in submission["jobs"]]
    lines = stream.getvalue().splitlines()
    assert lines[0] == f"{exp.experiment_id}: 4 runs, SLURM jobs {job_id}", lines
    # one task runs at a time: while the first runs, the other three wait in the queue
    split = [re.search(r"queued (\d+) \| started (\d+)", line) for line in lines[1:-1]]
    assert any(m and int(m.group(1)) >= 2 for m in split), lines
    assert "queued" not in lines[-1] and lines[-1].startswith(f"{exp.experiment_id}: 4/4"), lines
