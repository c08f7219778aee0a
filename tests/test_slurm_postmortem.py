"""An array task's Python killed by a signal, without a cluster: the cgroup memory counters, the
batch shell that forwards signals and waits for its child, and the post-mortem that records
why for the runs the task left (`metalab.executors.slurm.memory`, `script`, `postmortem`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import metalab
from metalab import claims
from metalab.executors.slurm import commands
from metalab.executors.slurm.config import SlurmConfig
from metalab.executors.slurm.ending import TaskEnding
from metalab.executors.slurm.memory import job_cgroups, oom_killed, oom_kills
from metalab.executors.slurm.postmortem import cause_of_death, note_reason, post_mortem
from metalab.executors.slurm.returns import read_ending, read_note, write_ending
from metalab.executors.slurm.script import TASK_PROLOGUE, TASK_RUNNER
from metalab.executors.slurm.states import census
from metalab.executors.slurm.submission import Submission

TESTS = Path(__file__).parent
V2_PATH = "/system.slice/slurmstepd.scope/job_42/step_batch/user/task_0"


# ------------------------------------------------------------------------ cgroup counters


def _v2_tree(root: Path, kills_at: str | None) -> None:
    """A cgroup v2 tree of job 42's batch step, counting an OOM kill at `kills_at` (a
    path) in it and in every cgroup above it, as the kernel's hierarchical counters do."""
    parts = V2_PATH.strip("/").split("/")
    for end in range(len(parts) + 1):
        path = "/" + "/".join(parts[:end])
        directory = root / path.lstrip("/")
        directory.mkdir(parents=True, exist_ok=True)
        counted = kills_at is not None and (kills_at + "/").startswith(path.rstrip("/") + "/")
        kills = 1 if counted else 0
        (directory / "memory.events").write_text(
            f"low 0\nhigh 0\nmax {kills}\noom {kills}\noom_kill {kills}\noom_group_kill 0\n"
        )


def test_cgroup_v2_counts_an_oom_kill_from_the_process_up_to_its_job(tmp_path):
    proc = tmp_path / "cgroup"
    proc.write_text(f"0::{V2_PATH}\n")
    mount = tmp_path / "fs"
    _v2_tree(mount, kills_at=V2_PATH)
    assert oom_killed({"SLURM_JOB_ID": "42"}, proc, mount)
    dirs = job_cgroups(proc.read_text(), mount, "42")
    assert dirs[0] == mount / V2_PATH.lstrip("/")
    assert dirs[-1].name == "job_42"  # never above the job's level
    # another job's process, or a path without the job's level, makes no claim
    assert not oom_killed({"SLURM_JOB_ID": "43"}, proc, mount)
    proc.write_text("0::/system.slice/slurmd.service\n")
    (mount / "system.slice" / "slurmd.service").mkdir(parents=True)
    (mount / "system.slice" / "slurmd.service" / "memory.events").write_text("oom_kill 5\n")
    assert not oom_killed({"SLURM_JOB_ID": "42"}, proc, mount)


def test_cgroup_v2_without_an_oom_kill_in_the_job_claims_none(tmp_path):
    proc = tmp_path / "cgroup"
    proc.write_text(f"0::{V2_PATH}\n")
    mount = tmp_path / "fs"
    _v2_tree(mount, kills_at=None)
    (mount / "memory.events").write_text("oom_kill 9\n")  # the host's, above the job
    assert not oom_killed({"SLURM_JOB_ID": "42"}, proc, mount)


def test_cgroup_v1_reads_oom_control_then_failcnt(tmp_path):
    proc = tmp_path / "cgroup"
    proc.write_text(
        "9:name=systemd:/\n4:memory:/slurm/uid_0/job_42/step_batch/task_0\n3:cpuset:/slurm\n"
    )
    mount = tmp_path / "fs"
    task = mount / "memory" / "slurm" / "uid_0" / "job_42" / "step_batch" / "task_0"
    task.mkdir(parents=True)
    job = task.parent.parent
    (job / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    (task / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    env = {"SLURM_JOB_ID": "42"}
    assert not oom_killed(env, proc, mount)
    (job / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert oom_killed(env, proc, mount)
    assert oom_kills(job) == 2
    # an older kernel counts no `oom_kill`: how often the limit was hit stands for it
    (job / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\n")
    (job / "memory.failcnt").write_text("0\n")
    assert not oom_killed(env, proc, mount)
    (job / "memory.failcnt").write_text("3\n")
    assert oom_killed(env, proc, mount)


def test_missing_or_unreadable_counters_claim_no_oom_kill(tmp_path):
    mount = tmp_path / "fs"
    env = {"SLURM_JOB_ID": "42"}
    assert not oom_killed(env, tmp_path / "no-such-proc-file", mount)
    proc = tmp_path / "cgroup"
    proc.write_text(f"0::{V2_PATH}\n")
    assert not oom_killed(env, proc, mount)  # no cgroup filesystem there
    job = mount / "system.slice" / "slurmstepd.scope" / "job_42"
    (job / "memory.events").mkdir(parents=True)  # a file that cannot be read as one
    assert not oom_killed(env, proc, mount)
    assert oom_kills(job) is None
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / "memory.events").write_text("oom_kill many\n")
    assert oom_kills(tmp_path / "garbled") is None


def test_the_job_cgroup_override_is_read_instead(tmp_path):
    crafted = tmp_path / "job"
    crafted.mkdir()
    (crafted / "memory.events").write_text("oom 1\noom_kill 1\n")
    env = {"METALAB_JOB_CGROUP": str(crafted)}
    assert oom_killed(env, tmp_path / "no-such-proc-file", tmp_path)
    (crafted / "memory.events").write_text("oom 0\noom_kill 0\n")
    assert not oom_killed(env, tmp_path / "no-such-proc-file", tmp_path)


# ------------------------------------------------------------------------ causes of death


def test_the_cause_of_death_comes_from_memory_then_the_tasks_own_ending():
    def oom():
        return True

    def no_oom():
        return False

    assert cause_of_death(137, None, oom) == "out_of_memory"
    assert cause_of_death(137, ("timeout", False), oom) == "out_of_memory"
    assert cause_of_death(137, ("timeout", False), no_oom) == "timeout"
    assert cause_of_death(137, None, no_oom) == "unknown"
    assert cause_of_death(139, None, oom) == "unknown"  # a crash, not the OOM killer
    assert note_reason("out_of_memory", None) == "out_of_memory"
    assert note_reason("unknown", None) == "killed"
    assert note_reason("preempted", ("preempted", True)) == "requeued"
    assert note_reason("cancelled", ("cancelled", False)) is None


def test_a_task_notes_the_cause_it_found_once_even_when_sigterm_comes_twice(monkeypatch):
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    found = []
    try:
        ending = TaskEnding("7_1", deadline=0.0, on_cause=lambda *a: found.append(a)).install()
        os.kill(os.getpid(), signal.SIGTERM)  # from SLURM
        os.kill(os.getpid(), signal.SIGTERM)  # and forwarded by the batch shell
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
    assert found == [("timeout", False)] and ending.cause == "timeout"


# ------------------------------------------------------------------------ the batch shell


def _wrapper(tmp_path: Path, command: str) -> Path:
    """A script with the array task's prologue that runs `command` under `metalab_task`."""
    script = tmp_path / "task.sh"
    script.write_text("\n".join(["#!/bin/bash", "set -e", *TASK_PROLOGUE, command, ""]))
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    return script


def test_the_shell_ends_killed_by_the_signal_that_killed_its_child(tmp_path):
    child = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    script = _wrapper(tmp_path, f"{TASK_RUNNER} {sys.executable} -c '{child}'")
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert "post-mortem" not in done.stdout  # only an entry command gets one
    script = _wrapper(tmp_path, f"{TASK_RUNNER} {sys.executable} -c 'raise SystemExit(3)'")
    assert subprocess.run(["bash", str(script)], timeout=60).returncode == 3


def test_the_shell_forwards_usr1_and_term_and_waits_for_its_child(tmp_path):
    log, ready = tmp_path / "signals.log", tmp_path / "ready"
    child = tmp_path / "child.py"
    child.write_text(
        "import signal, sys, time\n"
        f"log = open({str(log)!r}, 'a', buffering=1)\n"
        "def note(signum, frame):\n"
        "    log.write(signal.Signals(signum).name + '\\n')\n"
        "    if signum == signal.SIGTERM:\n"
        "        time.sleep(1.0)  # still recording when the shell's wait returns early\n"
        "        log.write('exiting\\n')\n"
        "        sys.exit(7)\n"
        "signal.signal(signal.SIGUSR1, note)\n"
        "signal.signal(signal.SIGTERM, note)\n"
        f"open({str(ready)!r}, 'w').close()\n"
        "while True:\n"
        "    time.sleep(0.05)\n"
    )
    script = _wrapper(tmp_path, f"{TASK_RUNNER} {sys.executable} {child}")
    shell = subprocess.Popen(["bash", str(script)])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists()
        shell.send_signal(signal.SIGUSR1)  # as `--signal=B:USR1@60` sends it: to the shell
        time.sleep(0.3)
        shell.send_signal(signal.SIGUSR1)
        time.sleep(0.3)
        shell.send_signal(signal.SIGTERM)
        assert shell.wait(timeout=30) == 7  # the child's own status
    finally:
        if shell.poll() is None:
            shell.kill()
    assert log.read_text().splitlines() == ["SIGUSR1", "SIGUSR1", "SIGTERM", "exiting"]


def test_the_shell_ignores_the_warning_until_its_child_traps_it(tmp_path):
    child = 'import time; time.sleep(1.0); print("alive", flush=True)'
    script = _wrapper(tmp_path, f"{TASK_RUNNER} {sys.executable} -c '{child}'")
    shell = subprocess.Popen(["bash", str(script)], stdout=subprocess.PIPE, text=True)
    time.sleep(0.4)
    shell.send_signal(signal.SIGUSR1)  # before the task's Python traps it: ignored
    out, _ = shell.communicate(timeout=30)
    assert shell.returncode == 0 and out == "alive\n"


# ------------------------------------------------------------------------ the post-mortem


def _job_file(tmp_path: Path, exp) -> Path:
    """Plan `exp` on SLURM without submitting (a dry run writes the job file); return it."""
    from metalab.testing import FakeSlurm

    with FakeSlurm():
        dry = metalab.run(
            exp, tmp_path / "store", executor=metalab.SlurmExecutor(SlurmConfig()), dry_run=True
        )
    return Path(dry["directory"]) / "job.pkl"


def _run_task(tmp_path: Path, job: Path, cgroup: Path) -> subprocess.CompletedProcess:
    """Run array task 0 of `job` (3 runs) through the batch shell, as SLURM would."""
    argv = [sys.executable, "-m", "metalab.executors.slurm.entry", "--job", str(job)]
    argv += ["--offset", "0", "--runs-per-task", "3", "--total", "3"]
    script = _wrapper(tmp_path, " ".join([TASK_RUNNER, *argv]))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "SLURM_ARRAY_JOB_ID": "99",
        "SLURM_ARRAY_TASK_ID": "0",
        "METALAB_JOB_CGROUP": str(cgroup),
    }
    env.pop("SLURM_JOB_ID", None)
    return subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, text=True, timeout=120
    )


def _cgroup(tmp_path: Path, kills: int) -> Path:
    directory = tmp_path / "job_cgroup"
    directory.mkdir(exist_ok=True)
    (directory / "memory.events").write_text(f"oom {kills}\noom_kill {kills}\n")
    return directory


@pytest.mark.parametrize(
    ("kills", "cause", "kind", "reason"),
    [
        (1, "out_of_memory", "SlurmOutOfMemory", "out_of_memory"),
        (0, "unknown", "SlurmTaskFailed", "killed"),
    ],
)
def test_a_task_killed_mid_run_records_its_cause_and_gives_the_rest_back(
    tmp_path, monkeypatch, kills, cause, kind, reason
):
    from slurm_ops import killed_experiment

    job = _job_file(tmp_path, killed_experiment(n=3, kill_on=1))
    done = _run_task(tmp_path, job, _cgroup(tmp_path, kills))
    assert done.returncode == -signal.SIGKILL, done.stderr  # as SLURM saw it before
    assert f"post-mortem of task 99_0 (status 137): {{'cause': '{cause}'" in done.stdout
    by_index = {r.index: r for r in metalab.load_results(tmp_path / "store")}
    assert sorted(by_index) == [0, 1]
    assert by_index[0].status == "completed"
    lost = by_index[1]
    assert lost.status == "failed" and lost.record["attempt"] == 1
    assert (lost.error["cause"], lost.error["type"]) == (cause, kind)
    assert "SIGKILL" in lost.error["message"] and "99_0" in lost.error["message"]
    assert read_note(job.parent, "99_0") == ([2], reason)
    assert not claims_left(tmp_path / "store")
    # a post-mortem again changes nothing: the run has its record
    from metalab.executors.slurm import entry

    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "99")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
    monkeypatch.setenv("METALAB_JOB_CGROUP", str(_cgroup(tmp_path, kills)))
    argv = ["--job", str(job), "--offset", "0", "--runs-per-task", "3", "--total", "3"]
    assert entry.main([*argv, "--post-mortem", "137", "--child", "1"]) == 0
    assert [r.record for r in metalab.load_results(tmp_path / "store")][1] == lost.record
    assert read_note(job.parent, "99_0") == ([2], reason)


def claims_left(store: Path) -> list[Path]:
    return [p for p in (store / "claims").rglob("*") if p.is_file()] if store.exists() else []


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_sigkill_after_a_handled_sigterm_keeps_the_cause_the_task_found(tmp_path):
    import cloudpickle
    from slurm_ops import killed_experiment

    from metalab.execute import load_experiment, open_store

    job_path = _job_file(tmp_path, killed_experiment(n=3, kill_on=-1))
    session_dir = job_path.parent
    write_ending(session_dir, "99_0", "timeout", False)
    assert read_ending(session_dir, "99_0") == ("timeout", False)
    job = cloudpickle.loads(job_path.read_bytes())
    store = open_store(job.store)
    experiment = load_experiment(store, job.experiment_key)
    dead = {**claims.owner(job.session), "pid": _dead_pid(), "start": None}
    assert store.claim(experiment.run_spec(0).run_id, dead)
    done = post_mortem(job, range(3), "99_0", session_dir, 137, dead["pid"], lambda: False)
    assert done == {"cause": "timeout", "recorded": [0], "returned": [1, 2], "reason": "timeout"}
    (run,) = metalab.load_results(tmp_path / "store")
    assert (run.error["cause"], run.error["type"]) == ("timeout", "SlurmTimeout")
    assert "reached its time limit" in run.error["message"]
    assert read_note(session_dir, "99_0") == ([1, 2], "timeout")
    # a child SLURM's SIGTERM killed before it trapped it ran nothing: the scheduler says why
    nothing = post_mortem(job, range(3), "99_1", session_dir, 143, dead["pid"], lambda: True)
    assert nothing["cause"] is None and read_note(session_dir, "99_1") is None


def test_the_sweep_returns_runs_a_task_killed_for_memory_had_not_started(tmp_path, monkeypatch):
    directory = tmp_path / "session"
    directory.mkdir()
    entry = {"position": 0, "array": "0", "offset": 0, "runs_per_task": 3, "attempt": 1}
    entry["task_ranges"] = [[0, 0]]
    entry.update({"job_id": "77", "after": None, "shard": 0, "script": "x", "state": "submitted"})
    submission = Submission(directory / "submission.json", {"total": 3, "jobs": [entry]})
    from metalab.executors.slurm.returns import write_note

    write_note(directory, "77_0", [2], "out_of_memory")
    # the scheduler forgot the task: its note still says what became of its runs
    monkeypatch.setattr(commands, "squeue", lambda ids: {})
    monkeypatch.setattr(commands, "sacct", lambda ids: commands.Accounting({}, available=False))
    assert census(submission, {2}, tmp_path / "logs").returned == {2: "out_of_memory"}
