"""Runs lost to SLURM without a cluster: causes, the retry policy per cause, the task's own
signal handling, walltime-aware packs and the runs a task gives back."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from sweeps import draw_experiment

import metalab
from metalab import execute
from metalab.errors import RunLost, ValidationError
from metalab.executors.slurm import commands
from metalab.executors.slurm.causes import ERROR_TYPES, cause_of_record, cause_of_state
from metalab.executors.slurm.config import SlurmConfig
from metalab.executors.slurm.ending import TaskEnding, cause_of_ending, restart_count
from metalab.executors.slurm.packs import Pack, margin, task_start
from metalab.executors.slurm.retries import split_errors
from metalab.executors.slurm.returns import read_note, remove_note, write_note
from metalab.executors.slurm.states import census
from metalab.executors.slurm.submission import Submission
from metalab.outcome import Outcome

TESTS = Path(__file__).parent

# ------------------------------------------------------------------------------ retry policy


def test_retries_take_a_count_per_cause():
    config = SlurmConfig(retries={"timeout": 2, "out_of_memory": 1, "preempted": 10})
    assert [config.retries_for(c) for c in ("timeout", "out_of_memory", "preempted")] == [2, 1, 10]
    assert config.retries_for("node_failure") == 0 and config.retries_for("error") == 0
    assert config.retries_for("cancelled") == 0


def test_an_integer_retries_covers_every_scheduler_cause_and_errors_only_when_asked():
    config = SlurmConfig(retries=3)
    for cause in ("timeout", "out_of_memory", "preempted", "node_failure"):
        assert config.retries_for(cause) == 3
    assert config.retries_for("cancelled") == 0 and config.retries_for("error") == 0
    assert SlurmConfig(retries=3, retry_on_error=True).retries_for("error") == 3


@pytest.mark.parametrize(
    ("retries", "named"),
    [
        ({"timout": 2}, "unknown cause 'timout'"),
        ({"cancelled": 1}, "a cancelled run is never retried"),
        ({"timeout": -1}, "bad count for 'timeout': -1"),
        ({"timeout": True}, "bad count for 'timeout': True"),
        ({"timeout": 1.5}, "bad count for 'timeout': 1.5"),
        (-1, "an integer >= 0"),
        ("2", "an integer >= 0"),
    ],
)
def test_a_bad_retry_policy_names_the_key_or_value(retries, named):
    with pytest.raises(ValidationError) as raised:
        SlurmConfig(retries=retries)
    message = str(raised.value)
    assert message.startswith(f"SlurmConfig.retries={retries!r} is not valid")
    assert named in message and "'out_of_memory'" in message


def test_time_grows_only_after_timeouts_and_memory_only_after_out_of_memory():
    config = SlurmConfig(memory="1G", time="10", escalate={"memory": 2.0, "time": 1.5})
    assert config.grown(0, 0) is config
    after_timeouts = config.grown(2, 0)
    assert (after_timeouts.time, after_timeouts.memory) == ("00:22:30", "1G")
    after_memory = config.grown(0, 1)
    assert (after_memory.time, after_memory.memory) == ("10", "2G")
    assert SlurmConfig(time="10").grown(3, 3).time == "10"  # nothing to escalate


# ------------------------------------------------------------------------------------ causes


@pytest.mark.parametrize(
    ("state", "cause"),
    [
        ("TIMEOUT", "timeout"),
        ("DEADLINE", "timeout"),
        ("OUT_OF_MEMORY", "out_of_memory"),
        ("PREEMPTED", "preempted"),
        ("NODE_FAIL", "node_failure"),
        ("BOOT_FAIL", "node_failure"),
        ("CANCELLED", "cancelled"),
        ("FAILED", "unknown"),
    ],
)
def test_each_final_state_has_its_cause(state, cause):
    assert cause_of_state(state) == cause


def test_the_cause_of_a_sigterm_comes_from_what_the_controller_says_then():
    assert cause_of_ending({"JobState": "COMPLETING", "Reason": "TimeLimit"}, 0, False) == "timeout"
    # `scontrol requeue` (or a preemption with --requeue) counts a restart before SIGTERM
    assert cause_of_ending({"JobState": "COMPLETING", "Restarts": "1"}, 0, False) == "preempted"
    assert cause_of_ending({"JobState": "COMPLETING", "Restarts": "1"}, 1, False) == "cancelled"
    assert cause_of_ending({"JobState": "PREEMPTED"}, 0, False) == "preempted"
    assert cause_of_ending({"JobState": "CANCELLED"}, 0, False) == "cancelled"
    assert cause_of_ending({}, 0, False) == "unknown"
    assert cause_of_ending({}, 0, True) == "timeout"  # warned of the limit, nothing else known
    assert restart_count({"SLURM_RESTART_COUNT": "2"}) == 2 and restart_count({}) == 0


@pytest.fixture
def trapped():
    """Restore this process's SIGTERM and SIGUSR1 handlers after a test traps them."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)
    execute._in_operation[0] = False


def test_sigterm_during_an_operation_raises_run_lost_with_the_cause(trapped, monkeypatch):
    asked = []
    monkeypatch.setattr(
        commands, "job_info", lambda key: asked.append(key) or {"JobState": "CANCELLED"}
    )
    ending = TaskEnding("12_3", deadline=float("inf")).install()
    execute._in_operation[0] = True
    with pytest.raises(RunLost) as raised:
        os.kill(os.getpid(), signal.SIGTERM)
    assert (raised.value.cause, raised.value.error_type) == ("cancelled", "SlurmCancelled")
    assert "12_3 was cancelled" in str(raised.value)
    assert asked == ["12_3"] and ending.cause == "cancelled"


def test_sigterm_between_runs_only_notes_the_cause_and_the_warning_is_noted(trapped):
    ending = TaskEnding("12_3", deadline=0.0).install()  # past its limit: no scontrol needed
    os.kill(os.getpid(), signal.SIGUSR1)
    assert ending.warned and ending.cause is None
    os.kill(os.getpid(), signal.SIGTERM)  # no operation running: nothing raised
    assert ending.cause == "timeout"


@metalab.operation
def _cut(params, capture):
    capture.metric("before", 1.0)
    raise RunLost(ERROR_TYPES["timeout"], "the task reached its time limit", "timeout")


def test_a_run_lost_is_recorded_failed_with_its_cause_and_partial_metrics_then_stops(tmp_path):
    exp = metalab.Experiment(
        name="cut",
        version="1",
        context={},
        operation=_cut,
        params=metalab.grid(i=[0, 1]),
        seeds=metalab.seeds(base=1),
    )
    with pytest.raises(metalab.ExecutorError) as raised:  # only an array task raises it
        metalab.run(exp, tmp_path / "store", executor="inline").result()
    assert isinstance(raised.value.__cause__, RunLost)
    results = metalab.load_results(tmp_path / "store")
    (run,) = results  # the task stopped: the second run never started
    assert run.status == "failed" and run.metrics == {"before": 1.0}
    assert run.error["type"] == "SlurmTimeout" and run.error["cause"] == "timeout"
    frame = results.to_dataframe()
    assert frame["cause"].tolist() == ["timeout"]
    assert cause_of_record(run.record) == "timeout"


def _store_with_a_lost_run(store: Path) -> None:
    """A store whose one run of experiment `cut:1` was lost to a timeout."""
    exp = metalab.Experiment(
        name="cut",
        version="1",
        context={},
        operation=_cut,
        params=metalab.grid(i=[0]),
        seeds=metalab.seeds(base=1),
    )
    with pytest.raises(metalab.ExecutorError):
        metalab.run(exp, store, executor="inline").result()


def test_status_and_the_report_name_the_causes(tmp_path):
    import subprocess
    import sys

    _store_with_a_lost_run(tmp_path / "store")
    out = subprocess.run(
        [sys.executable, "-m", "metalab", "status", str(tmp_path / "store")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "cut:1: lost to the scheduler: timeout 1" in out.stdout.splitlines()
    page = metalab.load_results(tmp_path / "store").report(tmp_path / "report.html")
    assert "failed 1; cause timeout 1" in Path(page).read_text()


def test_the_cause_column_is_empty_for_runs_not_lost(tmp_path):
    from sweeps import draw_experiment

    metalab.run(draw_experiment(), tmp_path / "s", executor="inline").result()
    frame = metalab.load_results(tmp_path / "s").to_dataframe()
    assert frame["cause"].isna().all()
    assert "cause" in metalab.load_results(tmp_path / "s").to_arrow().column_names


# ------------------------------------------------------------------------------------ packs


def test_a_pack_starts_a_run_only_if_it_should_end_before_the_limit_less_a_margin():
    pack = Pack.of_task(start=1000.0, time_limit=60)
    assert pack.deadline == 1060.0 and pack.margin == margin(60) == 10.0
    assert pack.fits(now=1000.0)  # the first run always starts
    pack.finished(22.0)
    assert pack.fits(now=1023.0)  # 1023 + 22 <= 1050
    pack.finished(22.0)
    assert not pack.fits(now=1045.0)
    # an earlier attempt that took longer is the better estimate
    assert not Pack(1060.0, 10.0, [5.0]).fits(earlier=30.0, now=1025.0)
    assert Pack(1060.0, 10.0, [5.0]).fits(now=1025.0)
    assert Pack.of_task(start=0.0, time_limit=0).fits(now=1e12)  # no known limit
    assert margin(7200) == 360.0
    assert task_start({"METALAB_TASK_START": "123"}) == 123.0
    assert task_start({}, now=5.0) == 5.0


# ------------------------------------------------------------------------ runs given back


def _submission(tmp_path: Path, **document) -> Submission:
    directory = tmp_path / "slurm" / "s1"
    directory.mkdir(parents=True)
    entry = {
        "position": 0,
        "shard": 0,
        "offset": 0,
        "runs_per_task": 3,
        "array": "0",
        "task_ranges": [[0, 0]],
        "after": None,
        "lane": 0,
        "attempt": 1,
        "script": "x.sh",
        "job_id": "77",
        "state": "submitted",
    }
    return Submission(directory / "submission.json", {"total": 3, "jobs": [entry], **document})


def test_runs_a_task_gave_back_are_returned_not_lost(tmp_path, monkeypatch):
    submission = _submission(tmp_path)
    directory = submission.path.parent
    write_note(directory, "77_0", [2], "walltime")
    assert read_note(directory, "77_0") == ([2], "walltime")
    monkeypatch.setattr(
        commands, "squeue", lambda ids: {"77_0": commands.TaskState("COMPLETED", "")}
    )
    found = census(submission, {2}, tmp_path / "logs")
    assert found.returned == {2: "walltime"} and not found.lost
    # a task that timed out between runs gave the rest back; the one it was running is lost
    write_note(directory, "77_0", [2], "timeout")
    monkeypatch.setattr(commands, "squeue", lambda ids: {"77_0": commands.TaskState("TIMEOUT", "")})
    found = census(submission, {1, 2}, tmp_path / "logs")
    assert found.returned == {2: "timeout"}
    assert found.lost[1].cause == "timeout" and found.lost[1].kind == "SlurmTimeout"
    # the scheduler forgot the task: its note still says what became of its runs
    monkeypatch.setattr(commands, "squeue", lambda ids: {})
    monkeypatch.setattr(commands, "sacct", lambda ids: commands.Accounting({}, available=False))
    assert census(submission, {2}, tmp_path / "logs").returned == {2: "timeout"}
    # a requeued task runs them itself
    monkeypatch.setattr(commands, "squeue", lambda ids: {"77_0": commands.TaskState("PENDING", "")})
    found = census(submission, {2}, tmp_path / "logs")
    assert not found.returned and found.queued == 1
    remove_note(directory, "77_0")
    assert read_note(directory, "77_0") is None


def _failed(index: int, attempt: int, error: dict) -> Outcome:
    record = {"status": "failed", "attempt": attempt, "error": error}
    return Outcome(index, f"r{index}", "failed", record)


def test_each_cause_spends_its_own_retries(tmp_path):
    config = SlurmConfig(retries={"timeout": 1, "preempted": 2})
    submission = _submission(tmp_path)
    timeout = {"type": "SlurmTimeout", "cause": "timeout"}
    preempted = {"type": "SlurmPreempted", "cause": "preempted"}
    final, again = split_errors([_failed(0, 1, preempted)], submission, config)
    assert (final, again) == ([], [0])
    final, again = split_errors([_failed(0, 2, preempted)], submission, config)
    assert again == [0]
    final, again = split_errors([_failed(0, 3, timeout)], submission, config)
    assert again == [0]  # preemptions did not spend the retry meant for a timeout
    assert submission.tries(0) == {"preempted": 2, "timeout": 1} and submission.attempt(0) == 4
    final, again = split_errors([_failed(0, 4, timeout)], submission, config)
    assert again == [] and [o.index for o in final] == [0]
    # an operation's error is final without `error` retries
    final, again = split_errors([_failed(1, 1, {"type": "ValueError"})], submission, config)
    assert again == [] and len(final) == 1


def test_a_preempted_run_of_a_requeued_task_waits_for_the_task(tmp_path):
    config = SlurmConfig(retries={"preempted": 3}, requeue=True)
    outcome = _failed(0, 1, {"type": "SlurmPreempted", "cause": "preempted"})
    assert split_errors([outcome], _submission(tmp_path), config) == ([], [])


# ------------------------------------------------------------------------- cluster limits


def test_the_dry_run_shows_the_limits_and_shards_below_max_array_size(tmp_path):
    from sweeps import draw_experiment

    from metalab.executors.slurm.limits import ClusterLimitWarning
    from metalab.testing import FakeSlurm

    config = SlurmConfig(max_array_size=10, setup=[f"export PYTHONPATH={TESTS}"])
    with (
        FakeSlurm(max_array_size=4, max_submit_jobs=8) as slurm,
        pytest.warns(ClusterLimitWarning) as warned,
    ):
        dry = metalab.run(
            draw_experiment(),
            tmp_path / "s",
            executor=metalab.SlurmExecutor(config),
            dry_run=True,
        )
    assert dry["limits"] == {"max_array_size": 4, "max_job_count": 10000, "max_submit_jobs": 8}
    messages = [str(w.message) for w in warned]
    assert "SlurmConfig.max_array_size=10 lowered to 4: the cluster's MaxArraySize is 4" in messages
    assert any("12 array tasks but the cluster's MaxSubmitJobs is 8" in m for m in messages)
    assert [job["array"] for job in dry["jobs"]] == ["0-3", "0-3", "0-3"]
    # 12 tasks, at most 7 queued at once: released in batches
    assert [(job["batch"], job["state"]) for job in dry["jobs"]] == [
        (0, "planned"),
        (1, "deferred"),
        (2, "deferred"),
    ]
    assert dry["config"]["max_array_size"] == 4
    assert not slurm.calls("sbatch")
    # 3 scripts, 2 logs per task, the job file and the submission record; 2 files per run
    assert dry["footprint"]["work_directory"] == {"files": 3 + 24 + 2, "inodes": 30}
    assert dry["footprint"]["store"] == {"files": 24, "inodes": 48}
    assert dry["footprint"]["files"] == 53
    text = str(dry)
    assert "cluster limits: max_array_size 4" in text and "creates about 53 files" in text


def test_limits_are_unknown_without_scontrol(monkeypatch):
    from metalab.executors.slurm.limits import ClusterLimits, read_limits

    def failing(argv):
        raise commands.SlurmCommandError(argv, 127, "scontrol not found")

    monkeypatch.setattr(commands, "run_command", failing)
    assert read_limits() == ClusterLimits() and ClusterLimits().as_dict() == {}


def test_batches_hold_at_most_the_room_and_refresh_reads_what_release_jobs_submitted(tmp_path):
    from metalab.executors.slurm.arrays import plan_arrays
    from metalab.executors.slurm.limits import batches
    from metalab.executors.slurm.released import record_path

    jobs = plan_arrays(range(8), max_array_size=3)
    assert batches(jobs, 3) == [0, 1, 2] and batches(jobs, 6) == [0, 0, 1]
    assert batches(jobs, 100) == [0, 0, 0]
    submission = _submission(tmp_path)
    entry = dict(submission.jobs[0], position=1, job_id=None, state="deferred", batch=1)
    submission.jobs.append(entry)
    assert not submission.refresh() and submission.job_ids() == ["77"]
    record = record_path(submission.path.parent, 1)
    record.parent.mkdir()
    record.write_text('{"jobs": {"1": "91"}, "release": "92"}')
    assert submission.refresh()
    assert submission.job_ids() == ["77", "91"] and submission.release_ids() == ["92"]
    assert submission.jobs[1]["state"] == "submitted"


def test_refresh_notes_a_release_job_submitted_after_its_batch_was_read(tmp_path):
    """A release job writes its record once its batch is submitted and again once it has
    submitted the next release job: a refresh between the two must not lose that job (a
    cancelled sweep would leave it to submit the next batch)."""
    from metalab.executors.slurm.released import record_path

    submission = _submission(tmp_path)
    for batch in (1, 2):
        entry = dict(submission.jobs[0], position=batch, job_id=None, state="deferred")
        submission.jobs.append({**entry, "batch": batch})
    submission.document["releases"] = {"1": "90"}
    record = record_path(submission.path.parent, 1)
    record.parent.mkdir()
    record.write_text('{"jobs": {"1": "91"}, "release": null}')
    assert submission.refresh()
    assert submission.job_ids() == ["77", "91"] and submission.release_ids() == ["90"]
    assert not submission.refresh()
    record.write_text('{"jobs": {"1": "91"}, "release": "92"}')
    assert submission.refresh()
    assert submission.release_ids() == ["90", "92"]
    assert not submission.refresh()  # nothing new: read again, noted once


# ------------------------------------------------------------------------------ auto packs


def test_pack_size_is_about_task_minutes_and_fits_the_time_limit():
    from metalab.executors.slurm.sizing import pack_size, sample

    assert pack_size(30.0, SlurmConfig(time="2:00:00", task_minutes=10)) == 20
    assert pack_size(30.0, SlurmConfig(time="5", task_minutes=10)) == 9  # (300 - 15) // 30
    assert pack_size(3600.0, SlurmConfig(time="30", task_minutes=10)) == 1
    assert sample(5) == [0, 1, 2, 3, 4] and len(sample(1000)) == 64
    with pytest.raises(
        ValidationError, match=r"runs_per_task='Auto'.*a positive integer, or 'auto'"
    ):
        SlurmConfig(runs_per_task="Auto")
    with pytest.raises(ValidationError, match="task_minutes=0 is not valid"):
        SlurmConfig(task_minutes=0)


def test_auto_packs_are_sized_from_durations_already_in_the_store(tmp_path):
    from slurm_ops import flaky_experiment

    from metalab.executors.slurm.sizing import pack_size
    from metalab.testing import FakeSlurm

    exp = flaky_experiment(n=6, fail_on=-1, sleep=0.2)
    metalab.run(exp, tmp_path / "s", executor="inline").result()
    config = SlurmConfig(runs_per_task="auto", task_minutes=0.05, time="5")
    with FakeSlurm():
        dry = metalab.run(exp, tmp_path / "s", executor=metalab.SlurmExecutor(config), dry_run=True)
    sizing = dry["sizing"]
    assert sizing["from"] == "store" and sizing["runs"] == 6 and sizing["seconds"] >= 0.2
    assert sizing["size"] == pack_size(sizing["seconds"], config) == dry["runs_per_task"]
    assert dry["config"]["runs_per_task"] == sizing["size"]


# --------------------------------------------------------------------- scheduler calls


def test_following_a_sweep_asks_squeue_once_per_poll_and_sacct_only_for_lost_tasks(
    tmp_path, monkeypatch
):
    from slurm_ops import flaky_experiment

    from metalab.executors.slurm.executor import SlurmExecutor
    from metalab.testing import FakeSlurm

    polls: list[int] = []  # squeue calls in each poll
    poll = SlurmExecutor._poll

    def counted(self, *args):
        before = len(slurm.calls("squeue"))
        try:
            return poll(self, *args)
        finally:
            polls.append(len(slurm.calls("squeue")) - before)

    monkeypatch.setattr(SlurmExecutor, "_poll", counted)
    # run 3 raises in its first attempt: its retry waits for the jobs still queued
    config = SlurmConfig(
        max_concurrent=2, retries=1, retry_on_error=True, setup=[f"export PYTHONPATH={TESTS}"]
    )
    executor = SlurmExecutor(config, poll_interval=0.1)
    with FakeSlurm(max_running=2) as slurm:
        handle = metalab.run(
            flaky_experiment(8, fail_on=3, sleep=0.2), tmp_path / "s", executor=executor
        )
        results = handle.result(timeout=120)
    assert [r.status for r in results] == ["completed"] * 8 and results[3].record["attempt"] == 2
    assert len(slurm.calls("sbatch")) == 2
    assert polls and max(polls) == 1
    assert slurm.calls("sacct") == []  # every task wrote its records


def test_a_new_submission_waits_for_an_earlier_one_whose_release_job_is_queued(
    tmp_path, monkeypatch
):
    from types import SimpleNamespace

    from metalab.executors.slurm.executor import SlurmExecutor

    earlier = _submission(tmp_path, experiment_id="sweep:1", releases={"1": "555"})
    earlier.save()
    asked = []

    def squeue(ids):
        asked.append(list(ids))
        return {"555": commands.TaskState("PENDING", "Dependency")}

    monkeypatch.setattr(commands, "squeue", squeue)
    executor = SlurmExecutor(SlurmConfig(), work_dir=tmp_path)
    experiment = SimpleNamespace(experiment_id="sweep:1")
    with pytest.raises(metalab.ExecutorError, match="jobs 555"):
        executor.check_submission(experiment, SimpleNamespace(), [5])  # type: ignore[arg-type]
    assert asked == [["555"]]
    monkeypatch.setattr(commands, "squeue", lambda ids: {})  # the release job has ended
    executor.check_submission(experiment, SimpleNamespace(), [5])  # type: ignore[arg-type]


# ------------------------------------------------------------------ the task, in-process


def _job_file(tmp_path: Path, exp) -> Path:
    """Plan `exp` on SLURM without submitting (a dry run writes the job file); return it."""
    from metalab.testing import FakeSlurm

    with FakeSlurm():
        dry = metalab.run(
            exp, tmp_path / "store", executor=metalab.SlurmExecutor(SlurmConfig()), dry_run=True
        )
    return Path(dry["directory"]) / "job.pkl"


def _task_env(monkeypatch, start: float) -> None:
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "99")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
    monkeypatch.setenv("METALAB_TASK_START", str(start))


def test_a_pack_stops_before_a_run_that_would_not_end_in_time(tmp_path, monkeypatch, trapped):
    import time

    from slurm_ops import flaky_experiment

    from metalab.executors.slurm import entry

    job = _job_file(tmp_path, flaky_experiment(n=3, fail_on=-1, sleep=0.5))
    # a 60 s limit whose margin (10 s) leaves 1 s: the first run starts, the second would not
    # end in time
    _task_env(monkeypatch, start=time.time() - 49)
    argv = ["--job", str(job), "--offset", "0", "--runs-per-task", "3", "--total", "3"]
    assert entry.main([*argv, "--time-limit", "60"]) == 0
    results = metalab.load_results(tmp_path / "store")
    assert [r.index for r in results] == [0] and results[0].status == "completed"
    assert read_note(job.parent, "99_0") == ([1, 2], "walltime")


def test_sigterm_mid_run_records_the_cause_and_gives_nothing_back_when_cancelled(
    tmp_path, monkeypatch, trapped
):
    import threading
    import time

    from slurm_ops import flaky_experiment

    from metalab.executors.slurm import entry

    job = _job_file(tmp_path, flaky_experiment(n=2, fail_on=-1, sleep=30))
    _task_env(monkeypatch, start=time.time())
    monkeypatch.setattr(commands, "job_info", lambda key: {"JobState": "CANCELLED"})
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
    argv = ["--job", str(job), "--offset", "0", "--runs-per-task", "2", "--total", "2"]
    assert entry.main([*argv, "--time-limit", "3600"]) == 0
    (run,) = metalab.load_results(tmp_path / "store")
    assert run.status == "failed" and run.error["cause"] == "cancelled"
    assert run.error["type"] == "SlurmCancelled" and run.duration < 30
    assert read_note(job.parent, "99_0") is None  # a cancelled task's runs are not returned


def test_a_run_cut_by_the_time_limit_is_recorded_timeout_and_the_rest_given_back(
    tmp_path, monkeypatch, trapped
):
    import threading
    import time

    from slurm_ops import flaky_experiment

    from metalab.executors.slurm import entry

    job = _job_file(tmp_path, flaky_experiment(n=3, fail_on=-1, sleep=30))
    _task_env(monkeypatch, start=time.time() - 49.5)
    monkeypatch.setattr(commands, "job_info", lambda key: {"Reason": "TimeLimit"})
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
    argv = ["--job", str(job), "--offset", "0", "--runs-per-task", "3", "--total", "3"]
    assert entry.main([*argv, "--time-limit", "60"]) == 0
    (run,) = metalab.load_results(tmp_path / "store")
    assert (run.index, run.status, run.error["cause"]) == (0, "failed", "timeout")
    assert read_note(job.parent, "99_0") == ([1, 2], "timeout")


def test_a_release_job_submits_nothing_once_the_sweep_was_cancelled(tmp_path, monkeypatch):
    import json

    from slurm_ops import flaky_experiment

    from metalab.executors.slurm.release import release
    from metalab.stores.file import FileStore

    job = _job_file(tmp_path, flaky_experiment(n=4, fail_on=-1, sleep=0))
    document = {
        "session": job.parent.name,
        "root": str(tmp_path / "store"),
        "config": {},
        "jobs": [{"position": 1, "batch": 1, "after": None, "script": "x.sh"}],
    }
    path = job.parent / "submission.json"
    path.write_text(json.dumps(document))
    FileStore.open(tmp_path / "store").request_cancel(job.parent.name)
    monkeypatch.setattr(commands, "sbatch", lambda *a: pytest.fail("submitted after a cancel"))
    assert release(path, 1)["cancelled"] is True


def test_a_fake_task_cannot_reach_a_real_cluster(tmp_path):
    from metalab.testing import FakeSlurm

    script = tmp_path / "job.sh"
    script.write_text(
        "#!/bin/bash\n#SBATCH --array=0\n"
        f"#SBATCH --output={tmp_path}/%A_%a.out\n"
        'sbatch --version; echo "sbatch exit $?"\n'
    )
    with FakeSlurm() as slurm:
        commands.sbatch(str(script))
        slurm.wait()
    (log,) = tmp_path.glob("*_0.out")
    assert "FakeSlurm: sbatch is not available inside a fake task" in log.read_text()
    assert "sbatch exit 1" in log.read_text()


def test_an_ambiguous_answer_is_asked_again_until_the_requeue_shows(trapped, monkeypatch):
    from metalab.executors.slurm import ending as ending_module

    answers = iter(
        [
            {"JobState": "COMPLETING", "Restarts": "0"},  # the requeue not counted yet
            {},  # the controller briefly does not answer
            {"JobState": "PENDING", "Restarts": "1", "Reason": "BeginTime"},
        ]
    )
    asked = []
    monkeypatch.setattr(commands, "job_info", lambda key: asked.append(key) or next(answers))
    monkeypatch.setattr(ending_module, "ASK_AGAIN_SECONDS", 0.01)
    ending = TaskEnding("12_3", deadline=float("inf")).install()
    os.kill(os.getpid(), signal.SIGTERM)
    assert ending.cause == "preempted" and len(asked) == 3
    # an answer that stays ambiguous is taken once the settling time is over
    monkeypatch.setattr(commands, "job_info", lambda key: {"JobState": "COMPLETING"})
    monkeypatch.setattr(ending_module, "SETTLE_SECONDS", 0.05)
    assert TaskEnding("12_4", deadline=float("inf")).find_cause() == "cancelled"
    assert cause_of_ending({"JobState": "REQUEUE_HOLD"}, 0, False) == "preempted"


def test_a_task_knows_when_slurm_requeues_it(monkeypatch):
    answers = {
        "requeued": {"JobState": "PENDING", "Restarts": "2"},
        "held": {"JobState": "REQUEUE_HOLD", "Restarts": "1"},
        "preempted and cancelled": {"JobState": "PREEMPTED", "Restarts": "1"},
        "cancelled": {"JobState": "CANCELLED", "Restarts": "1"},
    }
    found = {}
    for name, info in answers.items():
        monkeypatch.setattr(commands, "job_info", lambda key, info=info: info)
        ending = TaskEnding("12_3", deadline=float("inf"), restarts=1)
        found[name] = (ending.find_cause(), ending.requeued)
    assert found == {
        "requeued": ("preempted", True),
        "held": ("preempted", True),
        "preempted and cancelled": ("preempted", False),
        "cancelled": ("cancelled", False),
    }


def test_status_without_pandas_counts_as_with_it(tmp_path):
    # the base install (no pandas, no pyarrow): the counts come from the records
    import subprocess
    import sys

    _store_with_a_lost_run(tmp_path / "store")
    metalab.run(
        draw_experiment("fine", replicates=1), tmp_path / "store", executor="inline"
    ).result()
    blocked = (
        "import sys; sys.modules['pandas'] = sys.modules['pyarrow'] = None; "
        "from metalab.cli import main; main()"
    )
    outputs = []
    for command in ([sys.executable, "-m", "metalab"], [sys.executable, "-c", blocked]):
        out = subprocess.run(
            [*command, "status", str(tmp_path / "store")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        outputs.append(out.stdout)
    assert outputs[1] == outputs[0]
    lines = outputs[1].splitlines()
    assert "cut:1: lost to the scheduler: timeout 1" in lines
    assert next(line for line in lines if line.startswith("fine:1")).split() == [
        "fine:1",
        "6",
        "6",
        "0",
        "0",
        "0",
        "0",
    ]
