"""`FakeSlurm`: SLURM's commands answered in this process, array tasks run as local processes.

    with FakeSlurm() as slurm:
        handle = metalab.run(exp, tmp_path / "store", executor=metalab.SlurmExecutor(config))
        handle.result()
    assert [call[0] for call in slurm.commands] == ["sbatch", "squeue", ...]

metalab runs `sbatch`, `squeue`, `sacct`, `scancel` and `scontrol` only through
`metalab.executors.slurm.commands.run_command`. Inside the `with` block that name answers
from a table of fake jobs: `sbatch` reads the script's `#SBATCH` directives and queues one
task per array task id; a scheduler thread starts queued tasks (`bash <script>` with
`SLURM_ARRAY_JOB_ID`, `SLURM_ARRAY_TASK_ID`, `SLURM_JOB_ID` and friends set, stdout and
stderr to the `--output`/`--error` files), honouring `--array=...%k` throttles,
`--dependency=afterany:...`, `--hold` and a cap on tasks running at once; `squeue`, `sacct`
and `scancel` read and change the table. Every command is recorded in `commands`. Inside a
task, SLURM's commands are stand-ins that fail, so nothing a fake task runs reaches a real
cluster.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..executors.slurm import commands as slurm_commands

ACTIVE = ("PENDING", "RUNNING")
_UNKNOWN_JOB = "slurm_load_jobs error: Invalid job id specified"
_DIRECTIVE_RE = re.compile(r"^#SBATCH\s+(.*)$")


@dataclass
class FakeTask:
    """One array task (or a whole job without `--array`) in the fake scheduler's table."""

    key: str
    job_id: str
    task_id: int | None
    own_id: str
    state: str = "PENDING"
    exit_code: str = "0:0"
    reason: str = "None"
    process: subprocess.Popen[bytes] | None = None
    started: float | None = None
    ended: float | None = None


@dataclass
class FakeJob:
    """A job `sbatch` accepted: its script, directives, and tasks by task key."""

    job_id: str
    script: str
    options: dict[str, str]
    cwd: str
    environment: dict[str, str]
    throttle: int | None
    after: list[str]
    held: bool
    tasks: dict[str, FakeTask] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.options.get("job-name", Path(self.script).name)


class FakeSlurm:
    """Answer SLURM's commands in this process and run array tasks locally; see the module doc.

    `max_running` caps the tasks running at once (the fake node's size); `accounting=False`
    makes `sacct` answer as on a cluster without accounting storage; `forget_after` (seconds)
    makes `squeue` stop listing finished tasks that long after they ended, as a controller's
    `MinJobAge` does, so callers must fall back to `sacct`. `environment` is added to every
    task's environment. `first_job_id` is the first job id handed out. `max_array_size` and
    `max_submit_jobs` are the limits `scontrol show config` and `sacctmgr` report (the fake
    does not enforce them).

    Not reentrant; use one per test. On leaving the block no queued task starts any more,
    running tasks get `grace` seconds to end (a task that wrote its last record is still
    exiting), then what still runs is killed and recorded CANCELLED.
    """

    def __init__(
        self,
        *,
        max_running: int = 4,
        accounting: bool = True,
        forget_after: float | None = None,
        environment: dict[str, str] | None = None,
        first_job_id: int = 1000,
        poll_interval: float = 0.02,
        grace: float = 10.0,
        max_array_size: int = 100001,
        max_submit_jobs: int | None = None,
    ) -> None:
        self.max_running = max_running
        self.max_array_size = max_array_size
        self.max_submit_jobs = max_submit_jobs
        self.accounting = accounting
        self.forget_after = forget_after
        self.environment = dict(environment or {})
        self.poll_interval = poll_interval
        self.grace = grace
        self._closing = False
        self.commands: list[list[str]] = []
        """Every command received, in order, as argv lists."""
        self.jobs: dict[str, FakeJob] = {}
        """Jobs by job id, in submission order."""
        self._ids = iter(range(first_job_id, 1 << 31))
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._saved: Any = None
        self._stubs: tempfile.TemporaryDirectory[str] | None = None

    # ---------------------------------------------------------------- the with block
    def __enter__(self) -> FakeSlurm:
        self._closing = False
        self._stubs = _command_stubs()
        self._saved = slurm_commands.run_command
        slurm_commands.run_command = self.run_command
        self._stop.clear()
        self._thread = threading.Thread(target=self._schedule, name="fake-slurm", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        slurm_commands.run_command = self._saved
        self._closing = True  # no task starts now; those running get `grace` s to end
        deadline = time.monotonic() + self.grace
        while "RUNNING" in self.states().values() and time.monotonic() < deadline:
            time.sleep(self.poll_interval)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            for task in self._tasks():
                if task.state == "RUNNING":
                    self._end(task, "CANCELLED", "0:15", kill=True)
                elif task.state == "PENDING":
                    task.state = "CANCELLED"
        if self._stubs is not None:
            self._stubs.cleanup()
            self._stubs = None

    # ---------------------------------------------------------------- what tests read
    def calls(self, name: str) -> list[list[str]]:
        """Return the argument lists (without the command name) of every `name` call."""
        with self._lock:
            return [list(argv[1:]) for argv in self.commands if argv and argv[0] == name]

    def states(self) -> dict[str, str]:
        """Return the state of every task by task key (`"1000_3"`)."""
        with self._lock:
            return {task.key: task.state for task in self._tasks()}

    def wait(self, timeout: float = 60.0) -> None:
        """Block until no task is queued or running; `TimeoutError` after `timeout` s."""
        deadline = time.monotonic() + timeout
        while any(state in ACTIVE for state in self.states().values()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"fake SLURM tasks still active after {timeout} s")
            time.sleep(self.poll_interval)

    def end_task(self, key: str, state: str = "NODE_FAIL") -> None:
        """End task `key` as the scheduler would (`TIMEOUT`, `OUT_OF_MEMORY`, `NODE_FAIL`,
        `PREEMPTED`...), killing its process if it runs."""
        with self._lock:
            task = self._task(key)
            if task is None:
                raise KeyError(f"no fake SLURM task {key!r}; known: {sorted(self.states())}")
            if task.state in ACTIVE:
                self._end(task, state, "0:9", kill=task.state == "RUNNING")

    # ---------------------------------------------------------------- the boundary
    def run_command(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """Answer one SLURM command line as the cluster would (the replaced boundary)."""
        argv = [str(a) for a in argv]
        with self._lock:
            self.commands.append(argv)
        handler = {
            "sbatch": self._sbatch,
            "squeue": self._squeue,
            "sacct": self._sacct,
            "scancel": self._scancel,
            "scontrol": self._scontrol,
            "sacctmgr": self._sacctmgr,
        }.get(Path(argv[0]).name if argv else "")
        if handler is None:
            return _done(argv, 127, stderr=f"{argv[0] if argv else ''}: not a SLURM command\n")
        return handler(argv)

    def _sbatch(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        script = argv[-1]
        try:
            text = Path(script).read_text()
        except OSError as exc:
            return _done(argv, 1, stderr=f"sbatch: error: Unable to open file {script}: {exc}\n")
        options = _directives(text)
        options.update(_options(argv[1:-1]))
        with self._lock:
            job_id = str(next(self._ids))
            array = options.get("array")
            throttle = None
            if array is not None:
                array, _, limit = array.partition("%")
                throttle = int(limit) if limit else None
            job = FakeJob(
                job_id=job_id,
                script=os.path.abspath(script),
                options=options,
                cwd=os.getcwd(),
                environment=dict(os.environ),
                throttle=throttle,
                after=_dependencies(options.get("dependency", "")),
                held="hold" in options,
            )
            for task_id in _array_ids(array) if array is not None else [None]:
                key = job_id if task_id is None else f"{job_id}_{task_id}"
                own = job_id if task_id is None else str(next(self._ids))
                job.tasks[key] = FakeTask(key, job_id, task_id, own)
            self.jobs[job_id] = job
        self._wake.set()
        parsable = "parsable" in options
        return _done(argv, 0, f"{job_id}\n" if parsable else f"Submitted batch job {job_id}\n")

    def _squeue(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        wanted = _value(argv, "--jobs")
        lines = []
        now = time.monotonic()
        with self._lock:
            for task in self._selected(wanted):
                if (
                    self.forget_after is not None
                    and task.ended is not None
                    and now - task.ended > self.forget_after
                ):
                    continue
                lines.append(f"{task.key}|{task.state}|{self._reason(task)}")
        if wanted and not lines:
            return _done(argv, 1, stderr=f"{_UNKNOWN_JOB}\n")
        return _done(argv, 0, stdout="".join(line + "\n" for line in lines))

    def _sacct(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        if not self.accounting:
            return _done(argv, 1, stderr="sacct: error: Slurm accounting storage is disabled\n")
        with self._lock:
            lines = [
                f"{t.key}|{t.state}|{t.exit_code}|{self._reason(t)}"
                for t in self._selected(_value(argv, "--jobs"))
            ]
        return _done(argv, 0, stdout="".join(line + "\n" for line in lines))

    def _scancel(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        ids = [a for a in argv[1:] if not a.startswith("-")]
        unknown = []
        with self._lock:
            for job_or_task in ids:
                tasks = list(self._selected(job_or_task))
                if not tasks:
                    unknown.append(job_or_task)
                for task in tasks:
                    if task.state in ACTIVE:
                        self._end(task, "CANCELLED", "0:15", kill=task.state == "RUNNING")
        if unknown:
            return _done(
                argv,
                1,
                stderr=f"scancel: error: Kill job error on job id {unknown[0]}: "
                "Invalid job id specified\n",
            )
        return _done(argv, 0)

    def _scontrol(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        words = argv[1:]
        if words[:2] == ["show", "config"]:
            return _done(argv, 0, stdout=self._config())
        if words[:1] == ["release"]:
            with self._lock:
                for job_id in ",".join(words[1:]).split(","):
                    if job_id in self.jobs:
                        self.jobs[job_id].held = False
            self._wake.set()
            return _done(argv, 0)
        if words[:1] == ["update"]:
            fields = dict(w.split("=", 1) for w in words[1:] if "=" in w)
            with self._lock:
                job = self.jobs.get(fields.get("JobId", fields.get("jobid", "")))
                if job is None:
                    return _done(argv, 1, stderr="scontrol: error: Invalid job id specified\n")
                if "ArrayTaskThrottle" in fields:
                    job.throttle = int(fields["ArrayTaskThrottle"]) or None
            self._wake.set()
            return _done(argv, 0)
        return _done(argv, 1, stderr=f"scontrol: FakeSlurm does not answer {shlex.join(words)}\n")

    def _sacctmgr(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        if not self.accounting:
            return _done(argv, 1, stderr="sacctmgr: error: accounting storage is disabled\n")
        limit = "" if self.max_submit_jobs is None else str(self.max_submit_jobs)
        return _done(argv, 0, stdout=f"{limit}\n")

    def _config(self) -> str:
        return (
            "Configuration data as of fake\n"
            "AccountingStorageType   = "
            + ("accounting_storage/slurmdbd\n" if self.accounting else "accounting_storage/none\n")
            + "ClusterName             = fake\n"
            f"MaxArraySize            = {self.max_array_size}\n"
            "MaxJobCount             = 10000\n"
            "MinJobAge               = "
            + (f"{self.forget_after:g} sec\n" if self.forget_after is not None else "300 sec\n")
            + "SLURM_CONF              = /dev/null\n"
            "SLURM_VERSION           = 23.02.0\n"
        )

    # ---------------------------------------------------------------- the scheduler
    def _schedule(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            with self._lock:
                self._reap()
                self._start_ready()

    def _reap(self) -> None:
        for task in self._tasks():
            if task.state == "RUNNING" and task.process is not None:
                code = task.process.poll()
                if code is not None:
                    state = "COMPLETED" if code == 0 else "FAILED"
                    self._end(task, state, f"{code}:0" if code >= 0 else f"0:{-code}")

    def _start_ready(self) -> None:
        if self._closing:
            return
        running = sum(1 for task in self._tasks() if task.state == "RUNNING")
        for job in self.jobs.values():
            if job.held or not self._dependencies_done(job):
                continue
            active = sum(1 for task in job.tasks.values() if task.state == "RUNNING")
            for task in job.tasks.values():
                if running >= self.max_running:
                    return
                if job.throttle is not None and active >= job.throttle:
                    break
                if task.state == "PENDING":
                    self._start(job, task)
                    running += 1
                    active += 1

    def _dependencies_done(self, job: FakeJob) -> bool:
        for job_id in job.after:
            other = self.jobs.get(job_id)
            if other is not None and any(t.state in ACTIVE for t in other.tasks.values()):
                return False
        return True

    def _start(self, job: FakeJob, task: FakeTask) -> None:
        env = {**job.environment, **self.environment, **self._slurm_environment(job, task)}
        # a task's own SLURM commands (a release job's sbatch) must not reach a real cluster
        if self._stubs is not None:
            env["PATH"] = os.pathsep.join([self._stubs.name, env.get("PATH", os.defpath)])
        out = _log_path(job.options.get("output", "slurm-%A_%a.out"), job, task)
        err = _log_path(job.options.get("error", job.options.get("output", "")), job, task)
        with contextlib.ExitStack() as files:
            stdout = files.enter_context(open(out, "ab"))
            stderr = files.enter_context(open(err, "ab")) if err and err != out else stdout
            task.process = subprocess.Popen(
                ["bash", job.script],
                cwd=job.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,  # scancel kills the task's whole process group
            )
        task.state, task.started = "RUNNING", time.monotonic()

    def _slurm_environment(self, job: FakeJob, task: FakeTask) -> dict[str, str]:
        env = {
            "SLURM_JOB_ID": task.own_id,
            "SLURM_JOB_NAME": job.name,
            "SLURM_JOB_PARTITION": job.options.get("partition", "fake"),
            "SLURM_CPUS_PER_TASK": job.options.get("cpus-per-task", "1"),
            "SLURM_SUBMIT_DIR": job.cwd,
            "SLURMD_NODENAME": "fake-node",
            "SLURM_JOB_NODELIST": "fake-node",
        }
        if task.task_id is not None:
            env["SLURM_ARRAY_JOB_ID"] = job.job_id
            env["SLURM_ARRAY_TASK_ID"] = str(task.task_id)
        return env

    def _end(self, task: FakeTask, state: str, exit_code: str, kill: bool = False) -> None:
        if kill and task.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(task.process.pid, signal.SIGKILL)
            task.process.wait()
        task.state, task.exit_code, task.ended = state, exit_code, time.monotonic()

    def _reason(self, task: FakeTask) -> str:
        if task.state != "PENDING":
            return "NonZeroExitCode" if task.state == "FAILED" else "None"
        job = self.jobs[task.job_id]
        if job.held:
            return "JobHeldUser"
        if not self._dependencies_done(job):
            return "Dependency"
        if job.throttle is not None:
            running = sum(1 for t in job.tasks.values() if t.state == "RUNNING")
            if running >= job.throttle:
                return "JobArrayTaskLimit"
        return "Resources"

    # ---------------------------------------------------------------- the table
    def _tasks(self) -> Iterator[FakeTask]:
        for job in list(self.jobs.values()):
            yield from job.tasks.values()

    def _task(self, key: str) -> FakeTask | None:
        job = self.jobs.get(key.partition("_")[0])
        return None if job is None else job.tasks.get(key)

    def _selected(self, ids: str) -> Iterator[FakeTask]:
        """Tasks named by a comma-separated list of job ids and task keys."""
        for name in filter(None, ids.split(",")):
            job = self.jobs.get(name.partition("_")[0])
            if job is None:
                continue
            if "_" in name:
                if name in job.tasks:
                    yield job.tasks[name]
            else:
                yield from job.tasks.values()


def _command_stubs() -> tempfile.TemporaryDirectory[str]:
    """A directory of `sbatch`, `squeue`, ... that fail, saying a fake task cannot use them."""
    stubs = tempfile.TemporaryDirectory(prefix="fake-slurm-")
    for name in ("sbatch", "squeue", "sacct", "scancel", "scontrol", "sacctmgr", "srun"):
        path = Path(stubs.name) / name
        path.write_text(
            f"#!/bin/sh\necho 'FakeSlurm: {name} is not available inside a fake task' >&2\nexit 1\n"
        )
        path.chmod(0o755)
    return stubs


def _done(argv: list[str], code: int, stdout: str = "", stderr: str = "") -> Any:
    return subprocess.CompletedProcess(argv, code, stdout, stderr)


def _options(args: Sequence[str]) -> dict[str, str]:
    """`--name=value` and `--flag` arguments as {name: value} ("" for a flag)."""
    out = {}
    for arg in args:
        if arg.startswith("--"):
            name, _, value = arg[2:].partition("=")
            out[name] = value
    return out


def _directives(script: str) -> dict[str, str]:
    """The `#SBATCH` options of a script, values unquoted as sbatch reads them."""
    words: list[str] = []
    for line in script.splitlines():
        match = _DIRECTIVE_RE.match(line.strip())
        if match:
            words += shlex.split(match.group(1))
    return _options(words)


def _value(argv: list[str], option: str) -> str:
    for k, arg in enumerate(argv):
        if arg == option and k + 1 < len(argv):
            return argv[k + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return ""


def _dependencies(spec: str) -> list[str]:
    """Job ids of `afterany:1:2,afterok:3` (every kind waits for the job to end)."""
    ids = []
    for part in filter(None, re.split(r"[,?]", spec)):
        ids += [job.partition("_")[0] for job in part.split(":")[1:]]
    return ids


def _array_ids(spec: str) -> list[int]:
    ids: list[int] = []
    for part in spec.split(","):
        first, _, last = part.partition("-")
        step = 1
        if ":" in last:
            last, _, by = last.partition(":")
            step = int(by)
        ids += range(int(first), int(last or first) + 1, step)
    return ids


def _log_path(pattern: str, job: FakeJob, task: FakeTask) -> str:
    if not pattern:
        return ""
    values = {
        "A": job.job_id,
        "a": "4294967294" if task.task_id is None else str(task.task_id),
        "j": task.own_id,
        "x": job.name,
        "%": "%",
    }
    path = re.sub(r"%([Aajx%])", lambda m: values[m.group(1)], pattern)
    return path if os.path.isabs(path) else os.path.join(job.cwd, path)
