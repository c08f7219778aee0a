"""Runs lost to SLURM on the real single-node cluster (`bash ci/start-slurm.sh`): packs that
stop before their time limit and give their unstarted runs back, a running array task requeued
(as a preemption requeues it) that finishes its sweep with every run done once, and a task
over its memory killed by the kernel's OOM killer, whose run is retried with more memory.

The time-limit retry with escalated time is in `test_slurm_executor.py`. The cluster confines
each job to its `--mem` with SLURM's cgroup plugins (`TaskPlugin=task/cgroup`), so a run that
fills more memory than its task may use is OOM-killed, its task ends `OUT_OF_MEMORY`, and the
post-mortem reads the kill from the job's cgroup counters, even when the driver's `squeue` and
`sacct` answer nothing. Where `ci/start-slurm.sh` had to fall back to a configuration that
confines no memory, that test skips; the cause is also tested from a task whose operation
SIGKILLs its own Python (as the OOM killer does) and whose post-mortem reads a crafted cgroup
(`METALAB_JOB_CGROUP`), and from the scheduler's state in `test_slurm_units.py`."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import pytest
from service_checks import missing_service
from sweeps import checked_result, wait_for

import metalab
from metalab.executors.slurm.submission import task_ids

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TESTS = Path(__file__).parent
SETUP = [f"export PYTHONPATH={TESTS}"]


def executor(**options) -> metalab.SlurmExecutor:
    options.setdefault("memory", "500M")
    options.setdefault("setup", SETUP)
    return metalab.SlurmExecutor(metalab.SlurmConfig(**options), poll_interval=0.3)


@pytest.fixture
def store(tmp_path, slurm_cluster):
    return tmp_path / "store"


def _submission(store: Path) -> dict:
    (path,) = (store / "slurm").glob("*/submission.json")
    return json.loads(path.read_text())


def _records(store: Path) -> list[Path]:
    return list((store / "runs").glob("*/*.json")) if (store / "runs").exists() else []


def test_a_pack_that_cannot_fit_its_time_limit_completes_without_timeout(store):
    from slurm_ops import flaky_experiment

    # 3 runs of 20 s in one task of 1 minute: the task runs two, sees that a third would not
    # end 10 s before its limit, stops, and gives it back; a new task runs it
    exp = flaky_experiment(n=3, fail_on=-1, sleep=20)
    handle = metalab.run(exp, store, executor=executor(time="1", runs_per_task=3))
    results = checked_result(handle, timeout=300)
    assert [r.status for r in results] == ["completed"] * 3
    assert all(r.record["attempt"] == 1 for r in results)  # giving back is not an attempt
    assert all(r.error is None for r in results)
    submission = _submission(store)
    assert submission["tries"] == {}
    first, second = submission["jobs"]
    assert (first["array"], second["array"]) == ("0", "0")
    assert first["attempt"] == second["attempt"] == 1
    note = json.loads(
        (Path(submission["directory"]) / "returned" / f"{first['job_id']}_0.json").read_text()
    )
    assert note == {"runs": [2], "reason": "walltime"}
    log = (store / "slurm" / "logs" / f"{first['job_id']}_0.out").read_text()
    assert "run 2 would not finish in time" in log
    assert len(_records(store)) == 3  # each run recorded once


def test_a_requeued_running_task_finishes_its_sweep_with_each_run_done_once(store):
    from slurm_ops import slurm_experiment

    # run 1 sleeps in its first attempt only; the task is requeued while it sleeps
    exp = slurm_experiment(n=3, sleep_on=1, sleep=300, only_first_attempt=True)
    handle = metalab.run(exp, store, executor=executor(time="5", runs_per_task=3, requeue=True))
    submission = wait_for(lambda: (store / "slurm").exists() and _submission(store), 60)
    job_id = wait_for(lambda: _submission(store)["jobs"][0]["job_id"], 60)
    assert "#SBATCH --requeue" in Path(submission["jobs"][0]["script"]).read_text()
    claims = store / "claims"
    wait_for(lambda: len(_records(store)) == 1 and claims.exists() and any(claims.glob("*/*")), 120)
    run_0 = json.loads(_records(store)[0].read_text())
    subprocess.run(["scontrol", "requeue", f"{job_id}_0"], check=True, timeout=30)
    # SLURM holds a requeued batch job for a while before it may start again: release it
    # soon, though not within the second of the requeue (slurmd would refuse to start it:
    # "Job credential revoked")
    wait_for(lambda: _task_state(job_id) == "PENDING", 60)
    subprocess.run(
        ["scontrol", "update", f"JobId={job_id}_0", "StartTime=now+3"], check=True, timeout=30
    )
    results = checked_result(handle, timeout=240)
    by_index = {r.index: r for r in results}
    assert [by_index[i].status for i in range(3)] == ["completed"] * 3
    # run 0 completed before the requeue and was not run again; run 1 was cut and ran again
    assert by_index[0].record["started_at"] == run_0["started_at"]
    assert by_index[0].record["attempt"] == 1
    assert by_index[1].record["attempt"] == 2
    assert len(_records(store)) == 3
    # no job besides the requeued one: nothing was resubmitted
    assert [job["job_id"] for job in _submission(store)["jobs"]] == [job_id]
    log = (store / "slurm" / "logs" / f"{job_id}_0.out").read_text()
    assert "is being ended by SLURM: preempted" in log
    assert "'lost (preempted)': 1" in log
    # the run it did not start was left for its next life, not given back to the sweep
    assert "'left for the requeued task (preempted)': 1" in log


@pytest.mark.parametrize("oom", [False, True], ids=["sigkill", "sigkill-with-oom-counted"])
def test_a_task_killed_by_sigkill_ends_its_runs_with_a_cause_the_scheduler_forgot(
    store, tmp_path, monkeypatch, oom
):
    from slurm_ops import killed_experiment

    from metalab.executors.slurm import commands

    # the sweep's driver gets nothing from squeue or sacct, as when the controller forgot the
    # job (past MinJobAge) and there is no accounting: only the task's post-mortem says why
    monkeypatch.setattr(commands, "squeue", lambda ids: {})
    monkeypatch.setattr(commands, "sacct", lambda ids: commands.Accounting({}, available=False))
    cgroup = tmp_path / "job_cgroup"
    cgroup.mkdir()
    (cgroup / "memory.events").write_text(f"oom {int(oom)}\noom_kill {int(oom)}\n")
    options = {"retries": {"out_of_memory": 1}, "escalate": {"memory": 2.0}}
    setup = [*SETUP, f"export METALAB_JOB_CGROUP={cgroup}"]
    exp = killed_experiment(n=3, kill_on=1)  # run 1 SIGKILLs its Python in attempt 1
    handle = metalab.run(
        exp, store, executor=executor(runs_per_task=3, setup=setup, time="5", **options)
    )
    results = checked_result(handle, timeout=240)
    by_index = {r.index: r for r in results}
    submission = _submission(store)
    first = submission["jobs"][0]["job_id"]
    log = (store / "slurm" / "logs" / f"{first}_0.out").read_text()
    cause = "out_of_memory" if oom else "unknown"
    reason = "out_of_memory" if oom else "killed"
    assert (
        f"post-mortem of task {first}_0 (status 137): {{'cause': '{cause}', 'recorded': [1], "
        f"'returned': [2], 'reason': '{reason}'}}"
    ) in log
    # the run it had not started went back to the sweep, without counting an attempt
    assert by_index[2].status == "completed" and by_index[2].record["attempt"] == 1
    assert by_index[0].status == "completed" and by_index[0].record["attempt"] == 1
    if oom:  # retried once with twice the memory, and completed
        assert by_index[1].status == "completed" and by_index[1].record["attempt"] == 2
        assert submission["tries"] == {"1": {"out_of_memory": 1}}
        scripts = [Path(job["script"]).read_text() for job in submission["jobs"]]
        assert sum("#SBATCH --mem=1000M" in text for text in scripts) == 1
    else:  # no retries for an unknown cause: failed, and says why
        run = by_index[1]
        assert run.status == "failed" and run.record["attempt"] == 1
        assert (run.error["cause"], run.error["type"]) == ("unknown", "SlurmTaskFailed")
        assert "SIGKILL" in run.error["message"]
        assert submission["tries"] == {}
    assert len(_records(store)) == 3


def _task_state(job_id: str) -> str:
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", f"{job_id}_0", "-o", "%T"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    return out.strip()


def test_the_dry_run_reports_the_clusters_limits(store):
    from slurm_ops import slurm_experiment

    config = metalab.SlurmConfig(max_array_size=200000, setup=SETUP)
    with pytest.warns(metalab.MetalabWarning, match="the cluster's MaxArraySize is 100001"):
        dry = metalab.run(
            slurm_experiment(n=4), store, executor=metalab.SlurmExecutor(config), dry_run=True
        )
    limits = dry["limits"]
    # as ci/start-slurm.sh configures it; the user has no MaxSubmitJobs association limit
    assert (limits["max_array_size"], limits["max_job_count"]) == (100001, 2000000)
    assert "max_submit_jobs" not in limits
    assert dry["config"]["max_array_size"] == 100001
    assert dry["footprint"]["store"] == {"files": 8, "inodes": 16}


@pytest.fixture
def max_submit_jobs(slurm_test_layout):
    """The user may queue 4 jobs (the test cluster does not enforce association limits, so
    only metalab heeds it); restored afterwards."""
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout
    modify = ["sacctmgr", "-i", "modify", "user", "where", f"name={user.strip()}", "set"]
    subprocess.run([*modify, "MaxSubmitJobs=4"], check=True, capture_output=True, timeout=60)
    try:
        yield 4
    finally:
        subprocess.run([*modify, "MaxSubmitJobs=-1"], check=True, capture_output=True, timeout=60)


def _times(job_id: str) -> tuple[str, str]:
    out = subprocess.run(
        ["scontrol", "--oneliner", "show", "job", job_id],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    fields = dict(w.split("=", 1) for line in out.splitlines() for w in line.split() if "=" in w)
    return fields["SubmitTime"], fields["EndTime"]


def test_a_sweep_larger_than_the_queue_limit_is_released_in_batches(store, max_submit_jobs):
    from slurm_ops import slurm_experiment

    # 8 tasks, at most 3 queued at once (one queued job kept for the release job)
    with pytest.warns(metalab.MetalabWarning, match="MaxSubmitJobs is 4"):
        handle = metalab.run(slurm_experiment(n=8), store, executor=executor(time="5"))
    results = checked_result(handle, timeout=300)
    assert [r.status for r in results] == ["completed"] * 8
    assert len(_records(store)) == 8
    submission = _submission(store)
    assert submission["limits"]["max_submit_jobs"] == 4
    jobs = submission["jobs"]
    assert [(j["array"], j.get("batch")) for j in jobs] == [("0-2", 0), ("0-2", 1), ("0-1", 2)]
    assert all(j["state"] == "submitted" and j["job_id"] for j in jobs)
    assert sorted(submission["releases"]) == ["1", "2"]
    # each batch was submitted (by its release job) after the batch before it had ended
    for earlier, later in itertools.pairwise(jobs):
        submitted, _ = _times(later["job_id"])
        tasks = range(int(earlier["array"].split("-")[1]) + 1)
        assert all(submitted >= _times(f"{earlier['job_id']}_{t}")[1] for t in tasks)


def test_auto_packs_are_sized_by_a_pilot_of_the_first_runs(store):
    from slurm_ops import flaky_experiment

    # 20 runs of 1 s, tasks of about 6 s: a pilot of 8 runs, one per task, then the other 12
    # in packs of about 5, planned and submitted by a release job once the pilot has ended
    exp = flaky_experiment(n=20, fail_on=-1, sleep=1)
    ex = executor(time="5", runs_per_task="auto", task_minutes=0.1)
    results = checked_result(metalab.run(exp, store, executor=ex), timeout=300)
    assert [r.status for r in results] == ["completed"] * 20
    assert len(_records(store)) == 20
    submission = _submission(store)
    sizing = submission["sizing"]
    assert sizing["from"] == "pilot" and sizing["pilot"] == list(range(8))
    assert sizing["rest"] == [[8, 19]]
    pilot, *rest = submission["jobs"]
    assert (pilot["runs_per_task"], pilot["array"]) == (1, "0-7")
    (record,) = [
        json.loads(p.read_text()) for p in Path(submission["directory"]).glob("released/*")
    ]
    # the pilot's runs took at least their second of sleep (more on a loaded machine): the
    # packs are sized from what was measured, whatever it was
    from metalab.executors.slurm.sizing import pack_size

    assert record["seconds"] >= 1.0
    assert record["size"] == pack_size(record["seconds"], ex.config) >= 1
    assert {job["runs_per_task"] for job in rest} == {record["size"]}
    covered = {
        i
        for job in rest
        for first, last in job["task_ranges"]
        for t in range(first, last + 1)
        for i in range(
            job["offset"] + t * job["runs_per_task"], job["offset"] + (t + 1) * job["runs_per_task"]
        )
    }
    assert set(range(8, 20)) <= covered


def test_the_qos_submit_limit_per_user_is_read(slurm_test_layout):
    from metalab.executors.slurm.limits import read_limits

    qos = subprocess.run(
        ["sacctmgr", "--noheader", "--parsable2", "show", "qos", "format=Name"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()[0]
    modify = ["sacctmgr", "-i", "modify", "qos", "where", f"name={qos}", "set"]
    assert read_limits().max_submit_jobs is None
    subprocess.run([*modify, "MaxSubmitJobsPerUser=7"], check=True, capture_output=True, timeout=60)
    try:
        assert read_limits().max_submit_jobs == 7  # the default QOS of the user's association
        assert read_limits(qos).max_submit_jobs == 7  # named
        assert read_limits().as_dict()["max_submit_jobs"] == 7
    finally:
        subprocess.run(
            [*modify, "MaxSubmitJobsPerUser=-1"], check=True, capture_output=True, timeout=60
        )
    assert read_limits().max_submit_jobs is None


def test_the_rest_after_a_pilot_is_released_in_batches_under_the_queue_limit(
    store, max_submit_jobs
):
    from slurm_ops import flaky_experiment

    # at most 3 tasks queued (MaxSubmitJobs 4, one kept for the release job): the pilot's 8
    # tasks go in batches 0-2; the other 12 runs, in packs of 2 or 3 (tasks of about 3 s),
    # are more than 3 tasks, so the release job that plans them releases them in batches too
    exp = flaky_experiment(n=20, fail_on=-1, sleep=1)
    ex = executor(time="5", runs_per_task="auto", task_minutes=0.05)
    with pytest.warns(metalab.MetalabWarning, match="MaxSubmitJobs is 4"):
        handle = metalab.run(exp, store, executor=ex)
    results = checked_result(handle, timeout=600)
    assert [r.status for r in results] == ["completed"] * 20
    assert len(_records(store)) == 20
    submission = _submission(store)
    assert {job["batch"] for job in submission["jobs"] if job["position"] < 1_000_000} == {
        0,
        1,
        2,
    }
    released = Path(submission["directory"]) / "released"
    planned = json.loads((released / "batch-3.json").read_text())["entries"]
    rest_batches = sorted({entry["batch"] for entry in planned})
    assert len(rest_batches) > 1 and rest_batches[0] == 3
    for batch in rest_batches:  # each batch submitted by its own release job, within the room
        record = json.loads((released / f"batch-{batch}.json").read_text())
        mine = [e for e in planned if e["batch"] == batch]
        assert sorted(record["jobs"]) == sorted(str(e["position"]) for e in mine)
        assert sum(len(list(task_ids(e))) for e in mine) <= 3


MEMORY_NOTE = "# metalab-ci: memory not enforced:"
"""The line of the test cluster's `slurm.conf` saying why `ci/start-slurm.sh` fell back to a
configuration that confines no job to its memory (its cgroup plugins did not work here)."""

CI_MARKER = "# metalab-ci: single-node test cluster written by ci/start-slurm.sh"


def _slurm_config() -> dict[str, str]:
    """What `scontrol show config` says, key by key."""
    out = subprocess.run(
        ["scontrol", "show", "config"], capture_output=True, text=True, timeout=30
    ).stdout
    pairs = (line.partition("=") for line in out.splitlines())
    return {key.strip(): value.strip() for key, sep, value in pairs if sep}


@pytest.fixture
def memory_confined(slurm_cluster) -> None:
    """Skip unless the cluster confines each job to its `--mem` (`TaskPlugin=task/cgroup`,
    `ConstrainRAMSpace=yes`, memory a consumable resource), as `ci/start-slurm.sh` configures
    it. Under METALAB_REQUIRE_SERVICES=1 a test cluster that should confine memory and does
    not fails; one where the script had to fall back (it says why in `slurm.conf`), or a
    cluster it did not start, only skips."""
    config = _slurm_config()
    plugins = config.get("TaskPlugin", "")
    ram = config.get("ConstrainRAMSpace", "")
    select = config.get("SelectTypeParameters", "")
    if "task/cgroup" in plugins and ram == "yes" and "MEMORY" in select.upper():
        return
    what = (
        f"the SLURM cluster does not confine jobs to their memory (TaskPlugin={plugins}, "
        f"ConstrainRAMSpace={ram or 'unset'}, SelectTypeParameters={select})"
    )
    conf = Path(config.get("SLURM_CONF", "/etc/slurm/slurm.conf"))
    try:
        lines = conf.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    notes = [line[len(MEMORY_NOTE) :].strip() for line in lines if line.startswith(MEMORY_NOTE)]
    if notes:
        pytest.skip(f"{what}: ci/start-slurm.sh fell back on this machine: {notes[0]}")
    if CI_MARKER not in lines:
        pytest.skip(f"{what}, and {conf} was not written by ci/start-slurm.sh")
    missing_service(
        f"{what}, though ci/start-slurm.sh wrote {conf} and did not fall back "
        "(restart it: bash ci/stop-slurm.sh && bash ci/start-slurm.sh)"
    )


def _sacct_state(task: str) -> str:
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", task, "-o", "State"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    return out.strip()


@pytest.mark.parametrize("forgotten", [False, True], ids=["scheduler", "cgroup-counters"])
def test_a_task_over_its_memory_is_oom_killed_and_its_run_retried_with_more_memory(
    store, monkeypatch, memory_confined, forgotten
):
    from slurm_ops import hog_experiment

    from metalab.executors.slurm import commands, retries

    # no crafted counters: the post-mortem reads the job's own cgroup
    monkeypatch.delenv("METALAB_JOB_CGROUP", raising=False)
    if forgotten:  # the driver gets nothing from squeue or sacct (see the SIGKILL test)
        monkeypatch.setattr(commands, "squeue", lambda ids: {})
        monkeypatch.setattr(commands, "sacct", lambda ids: commands.Accounting({}, available=False))
    weighed: list[dict] = []  # the failed records the driver weighs for a retry
    cause_of_record = retries.cause_of_record

    def spy(record):
        weighed.append(record)
        return cause_of_record(record)

    monkeypatch.setattr(retries, "cause_of_record", spy)
    # run 1 fills 400 MB in its first attempt, in a task allowed 100 MB: the kernel kills it
    exp = hog_experiment(n=3, hog_on=1, hog_mb=400)
    options = {"retries": {"out_of_memory": 1}, "escalate": {"memory": 8.0}}
    handle = metalab.run(
        exp, store, executor=executor(runs_per_task=3, time="5", memory="100M", **options)
    )
    results = checked_result(handle, timeout=240)
    by_index = {r.index: r for r in results}
    assert [by_index[i].status for i in range(3)] == ["completed"] * 3
    assert [by_index[i].record["attempt"] for i in range(3)] == [1, 2, 1]
    # attempt 1 of run 1 was recorded lost to memory, then retried once with 8 x 100 MB
    lost = [r for r in weighed if r is not None and r["status"] == "failed"]
    assert lost and {r["run_id"] for r in lost} == {by_index[1].run_id}
    assert {(r["attempt"], r["error"]["type"], r["error"]["cause"]) for r in lost} == {
        (1, "SlurmOutOfMemory", "out_of_memory")
    }
    submission = _submission(store)
    assert submission["tries"] == {"1": {"out_of_memory": 1}}
    first, retry = submission["jobs"]
    assert "#SBATCH --mem=100M" in Path(first["script"]).read_text()
    assert "#SBATCH --mem=800M" in Path(retry["script"]).read_text()
    # the task's Python was SIGKILLed by the OOM killer; its post-mortem found the cause in
    # the job's cgroup counters, recorded run 1 and gave run 2 back
    log = (store / "slurm" / "logs" / f"{first['job_id']}_0.out").read_text()
    assert (
        f"post-mortem of task {first['job_id']}_0 (status 137): {{'cause': 'out_of_memory', "
        "'recorded': [1], 'returned': [2], 'reason': 'out_of_memory'}"
    ) in log
    # and the scheduler ended the task OUT_OF_MEMORY (sacct, read here, not by the driver)
    assert wait_for(lambda: _sacct_state(f"{first['job_id']}_0") == "OUT_OF_MEMORY", 60)
    assert len(_records(store)) == 3
