"""The one place metalab runs SLURM's commands: `sbatch`, `squeue`, `sacct`, `scancel`,
`scontrol` (a job's details, the cluster's limits) and `sacctmgr` (the user's limits).

Every call goes through `run_command`, a module-level name tests may replace (or they put
fake `sbatch`/`squeue` executables first on `PATH`). A command that fails raises
`SlurmCommandError` (an `ExecutorError`) carrying the command line, its exit code and its
stderr; a failed `sbatch` raises the subclass `SubmissionError`.

Job ids are strings (`"123"`); array tasks are keyed `"<array job id>_<task id>"`
(`"123_7"`), as `squeue` and `sacct` print them.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from ...errors import ExecutorError, ValidationError

COMMAND_TIMEOUT = 120.0
"""Seconds one SLURM command may take (a busy controller can be slow) before it fails."""

SQUEUE_FORMAT = "%i|%T|%r"
SACCT_FIELDS = "JobID,State,ExitCode,Reason"

# Messages meaning "no such job (any more)": not a failure when asking about or cancelling jobs.
_UNKNOWN_JOB = ("Invalid job id specified", "already completing or completed")
_ACCOUNTING_DISABLED = "accounting storage is disabled"
_JOB_ID_RE = re.compile(r"^\d+$")
_BRACKETS_RE = re.compile(r"^(\d+)_\[([0-9,\-]+)(?:%\d+)?\]$")


class SlurmCommandError(ExecutorError):
    """A SLURM command failed; `command`, `returncode` and `stderr` say how."""

    def __init__(self, command: Sequence[str], returncode: int | None, stderr: str) -> None:
        self.command = list(command)
        self.returncode = returncode
        self.stderr = stderr
        status = "timed out" if returncode is None else f"failed with exit code {returncode}"
        detail = stderr.strip() or "(no error output)"
        super().__init__(f"`{shlex.join(self.command)}` {status}: {detail}")


class SubmissionError(SlurmCommandError):
    """`sbatch` refused or failed to submit a job."""


class TaskState(NamedTuple):
    """What `squeue` says of one job or array task: its state and the reason it waits."""

    state: str
    reason: str


class AccountingRecord(NamedTuple):
    """What `sacct` says of one job or array task."""

    state: str
    exit_code: str
    reason: str


@dataclass(frozen=True)
class Accounting:
    """The result of `sacct`: records by task key, and whether accounting is enabled at all.

    When the cluster has no accounting storage (`available` is False) `records` is empty.
    """

    records: dict[str, AccountingRecord] = field(default_factory=dict)
    available: bool = True


Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run_subprocess(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run `argv`, capturing its text output; raise `SlurmCommandError` if it cannot run."""
    try:
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError as exc:
        raise SlurmCommandError(
            argv, 127, f"{argv[0]} not found on PATH: run this on a SLURM login node"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise SlurmCommandError(argv, None, f"no answer within {COMMAND_TIMEOUT:g} s") from exc


run_command: Runner = _run_subprocess
"""Runs one command; replace it (e.g. with `monkeypatch`) to fake SLURM in tests."""


def _call(
    argv: Sequence[str],
    *,
    error: type[SlurmCommandError] = SlurmCommandError,
    tolerate: Iterable[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Run a SLURM command; raise `error` if it fails for a reason other than `tolerate`."""
    result = run_command(argv)
    if result.returncode != 0 and not any(text in result.stderr for text in tolerate):
        raise error(argv, result.returncode, result.stderr or result.stdout)
    return result


def _ids(job_ids: Iterable[str | int]) -> list[str]:
    """Return job ids as strings, refusing anything that is not an id or an array task key."""
    ids = [str(job_id) for job_id in job_ids]
    for job_id in ids:
        if not re.match(r"^\d+(_\d+)?$", job_id):
            raise ValidationError(f"not a SLURM job id or array task key: {job_id!r}")
    return ids


# ----------------------------------------------------------------------------- the commands


def sbatch(script_path: str, extra_args: Sequence[str] = ()) -> str:
    """Submit the batch script at `script_path` and return the new job id.

    `extra_args` go before the script (e.g. a `--dependency=...`). Raises `SubmissionError`
    with sbatch's stderr when the submission is refused. Not idempotent: each call submits.
    """
    argv = ["sbatch", "--parsable", *extra_args, str(script_path)]
    result = _call(argv, error=SubmissionError)
    return parse_sbatch_output(argv, result.stdout)


def parse_sbatch_output(argv: Sequence[str], stdout: str) -> str:
    """Return the job id from `sbatch --parsable` output (`"123"` or `"123;cluster"`)."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    job_id = lines[-1].split(";")[0] if lines else ""
    if not _JOB_ID_RE.match(job_id):
        raise SubmissionError(argv, 0, f"unexpected sbatch output {stdout!r}")
    return job_id


def squeue(job_ids: Iterable[str | int]) -> dict[str, TaskState]:
    """Return the state and reason of every task of `job_ids` the controller knows, in one call.

    Array tasks are keyed `"123_7"` (pending ones too, one per task), other jobs `"123"`.
    Finished tasks are listed until the controller forgets them (`MinJobAge`); jobs it does
    not know at all are simply absent. Raises `SlurmCommandError` if squeue fails otherwise.
    """
    ids = _ids(job_ids)
    if not ids:
        return {}
    argv = ["squeue", "--noheader", "--states=all", "--array", "--jobs", ",".join(ids)]
    result = _call([*argv, f"--format={SQUEUE_FORMAT}"], tolerate=_UNKNOWN_JOB)
    return parse_squeue_output(result.stdout)


def parse_squeue_output(stdout: str) -> dict[str, TaskState]:
    """Parse `squeue -h -o '%i|%T|%r'` lines into `{task key: TaskState}`."""
    states: dict[str, TaskState] = {}
    for line in stdout.splitlines():
        key, sep, rest = line.strip().partition("|")
        if not sep:
            continue
        state, _, reason = rest.partition("|")
        states[key] = TaskState(state.strip(), reason.strip())
    return states


def sacct(job_ids: Iterable[str | int]) -> Accounting:
    """Return the accounting records of `job_ids`, one per array task, in one call.

    Records are eventually consistent: a task that just ended may be missing for a few
    seconds. States are single words (`"CANCELLED by 0"` becomes `"CANCELLED"`). Tasks not
    yet started appear as ranges in sacct and are expanded to one record per task. On a
    cluster without accounting storage, returns `Accounting({}, available=False)`.
    """
    ids = _ids(job_ids)
    if not ids:
        return Accounting()
    argv = ["sacct", "--allocations", "--noheader", "--parsable2", "--jobs", ",".join(ids)]
    result = _call([*argv, f"--format={SACCT_FIELDS}"], tolerate=(_ACCOUNTING_DISABLED,))
    if result.returncode != 0:
        return Accounting({}, available=False)
    return Accounting(parse_sacct_output(result.stdout))


def parse_sacct_output(stdout: str) -> dict[str, AccountingRecord]:
    """Parse `sacct -X -n -P -o JobID,State,ExitCode,Reason` lines into records by task key."""
    records: dict[str, AccountingRecord] = {}
    for line in stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 3 or not fields[0]:
            continue
        state = fields[1].split(" ")[0]
        record = AccountingRecord(state, fields[2], fields[3] if len(fields) > 3 else "")
        for key in _expand_key(fields[0]):
            records[key] = record
    return records


def _expand_key(key: str) -> list[str]:
    """Expand `"123_[2-4,9%2]"` to `["123_2", "123_3", "123_4", "123_9"]`; others unchanged."""
    match = _BRACKETS_RE.match(key)
    if match is None:
        return [key]
    job, spec = match.groups()
    keys = []
    for part in spec.split(","):
        first, _, last = part.partition("-")
        keys += [f"{job}_{task}" for task in range(int(first), int(last or first) + 1)]
    return keys


def scancel(job_ids: Iterable[str | int]) -> None:
    """Cancel jobs or array tasks (`"123"` or `"123_7"`). Idempotent: ended jobs are ignored."""
    ids = _ids(job_ids)
    if ids:
        _call(["scancel", *ids], tolerate=_UNKNOWN_JOB)


def show_config() -> dict[str, str]:
    """Return the controller's configuration (`scontrol show config`) as name -> value text.
    Raises `SlurmCommandError` if scontrol fails."""
    result = _call(["scontrol", "show", "config"])
    config: dict[str, str] = {}
    for line in result.stdout.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() and " " not in name.strip():
            config[name.strip()] = value.strip()
    return config


def max_submit_jobs(user: str, qos: str | None = None) -> int | None:
    """Return the fewest jobs `user` may have queued: `MaxSubmitJobs` of their associations
    and `MaxSubmitJobsPerUser` of the QOS their jobs run under (`qos`, else each
    association's default QOS), from `sacctmgr`; None when none sets one or the cluster keeps
    no accounting."""
    for name, value in (("user name", user), ("QOS name", qos)):
        if value is not None and not re.match(r"^[A-Za-z0-9._-]+$", value):
            raise ValidationError(f"not a {name}: {value!r}")
    assoc = ["sacctmgr", "--noheader", "--parsable2", "show", "assoc", "where", f"user={user}"]
    lines = _sacctmgr_lines([*assoc, "format=MaxSubmit,DefaultQOS,QOS"])
    if lines is None:
        return None  # no sacctmgr here: the limit is unknown
    limits = []
    qos_names = {qos} if qos else set()
    for line in lines:
        limit, default, allowed = ([*line.split("|"), "", ""])[:3]
        if limit.strip().isdigit():
            limits.append(int(limit))
        if not qos:
            qos_names.add(_default_qos(default.strip(), allowed.strip()))
    qos_names = {name for name in qos_names if re.match(r"^[A-Za-z0-9._-]+$", name)}
    for name in sorted(qos_names):
        show = ["sacctmgr", "--noheader", "--parsable2", "show", "qos", "where", f"name={name}"]
        for line in _sacctmgr_lines([*show, "format=MaxSubmitPU"]) or []:
            if line.strip().isdigit():
                limits.append(int(line))
    return min(limits) if limits else None


def _default_qos(default: str, allowed: str) -> str:
    """The QOS a job of an association runs under without `--qos`: its `DefaultQOS`, else
    its only QOS, else `normal` (SLURM's own default)."""
    if default:
        return default
    names = [name for name in allowed.split(",") if name]
    return names[0] if len(names) == 1 else "normal"


def _sacctmgr_lines(argv: list[str]) -> list[str] | None:
    """The lines sacctmgr prints, or None when it cannot answer."""
    try:
        result = run_command(argv)
    except SlurmCommandError:
        return None
    if result.returncode != 0:
        return None
    return [line for line in result.stdout.splitlines() if line.strip()]


def job_info(key: str) -> dict[str, str]:
    """Return what `scontrol show job` says of one job or array task (`"123_7"`): its
    `JobState`, `Reason`, `Restarts`, `StartTime`, `EndTime`, `TimeLimit`, ... as text; empty
    when the controller does not know it. Raises `SlurmCommandError` if scontrol fails
    otherwise."""
    (key,) = _ids([key])
    result = _call(["scontrol", "--oneliner", "show", "job", key], tolerate=_UNKNOWN_JOB)
    return parse_key_values(result.stdout.splitlines()[0] if result.stdout.strip() else "")


def parse_key_values(line: str) -> dict[str, str]:
    """Parse scontrol's `Key=Value Key=Value` output (values without spaces) into a dict."""
    pairs = (word.partition("=") for word in line.split())
    return {key: value for key, sep, value in pairs if sep}


def parse_task_key(key: str) -> tuple[str, int | None]:
    """Split a task key: `"123_7"` -> `("123", 7)`, `"123"` -> `("123", None)`."""
    job, sep, task = key.partition("_")
    if not _JOB_ID_RE.match(job) or (sep and not task.isdigit()):
        raise ValidationError(f"not a SLURM job id or array task key: {key!r}")
    return job, int(task) if sep else None
