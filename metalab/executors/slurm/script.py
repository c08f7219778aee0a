"""Render sbatch scripts: the array jobs' scripts, and any other job metalab submits.

The script holds the `#SBATCH` directives from a `SlurmConfig` and an `ArrayJob`, the user's
environment setup (modules, conda, setup lines) and, last, the command each array task runs:
by default `python -m metalab.executors.slurm.entry ...`, which finds its runs from
`SLURM_ARRAY_TASK_ID` and the run offset of its shard. Every value is shell-quoted; sbatch
reads quoted `#SBATCH` values the same way the shell does.

An array task's shell stays the parent of that command (`metalab_task`, see `TASK_PROLOGUE`):
it forwards the signals the task relies on, waits for it, and when it died by a signal (a
SIGKILL from the OOM killer, say) runs the post-mortem that records why (`postmortem`), then
ends as the command did (killed by the same signal, or with its exit status), so the
scheduler sees the task end as before.

`render_job` renders any job this way: the PostgreSQL service's job script comes from it too,
so every sbatch script metalab writes reads the same `SlurmConfig` the same way.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path

from ...errors import ValidationError
from .arrays import ArrayJob
from .config import SlurmConfig, format_memory

ENTRY_MODULE = "metalab.executors.slurm.entry"
"""The module an array task runs (`python -m ENTRY_MODULE ...`)."""

LOG_SUBDIR = Path("slurm") / "logs"
"""Where, under a store's root directory, the array tasks' stdout and stderr files go."""

LOG_PATTERN = "%A_%a"
"""Log file stem: array job id and array task id, as sbatch expands them."""

WARNING_SECONDS = 60
"""How long before its time limit SLURM warns an array task (`--signal=B:USR1@60`); SLURM may
warn up to a minute earlier. The task only notes the warning (see `ending`)."""

FORWARDED = ("USR1", "TERM")
"""The signals an array task's shell passes on to the task: SLURM's time-limit warning, which
`--signal=B:` sends to the shell only, and the SIGTERM that ends a task (time limit,
cancellation, preemption or requeue; SLURM may also send it to the task itself)."""

TASK_RUNNER = "metalab_task"
"""The shell function an array task's command runs under (defined in `TASK_PROLOGUE`)."""

TASK_PROLOGUE = (
    'export METALAB_TASK_START="$(date +%s)"',
    "trap '' USR1",
    f"{TASK_RUNNER}() {{",
    '    "$@" &',
    "    metalab_child=$!",
    *(
        f"    trap 'metalab_forwarded=1; kill -{name} \"$metalab_child\" 2>/dev/null || :' {name}"
        for name in FORWARDED
    ),
    "    while :; do",
    "        metalab_forwarded=0",
    '        wait "$metalab_child" && metalab_status=0 || metalab_status=$?',
    '        [ "$metalab_forwarded" = 1 ] || break',
    "    done",
    f"    trap '' {' '.join(FORWARDED)}",
    '    if [ "$metalab_status" -gt 128 ] && [ "${2:-}" = -m ] && [ "${3:-}" = '
    + ENTRY_MODULE
    + " ]; then",
    '        "$@" --post-mortem "$metalab_status" --child "$metalab_child" || true',
    "    fi",
    f"    trap - {' '.join(FORWARDED)}",
    '    if [ "$metalab_status" -gt 128 ]; then',
    '        kill -$((metalab_status - 128)) "$$" 2>/dev/null || true',
    "    fi",
    '    exit "$metalab_status"',
    "}",
)
"""First lines of an array task: note its start (its pack's clock), ignore the time-limit
warning until the task's Python traps it (the task starts with it ignored), and define
`metalab_task COMMAND...`: run the command as a child, forward `FORWARDED` to it, wait until
it is gone (`wait` returns early when a trapped signal arrives), run the post-mortem of an
entry command that died by a signal, then end as the child did."""


def log_dir(store_root: str | os.PathLike[str]) -> Path:
    """Return the directory of the array tasks' log files for a store rooted at `store_root`."""
    return Path(store_root) / LOG_SUBDIR


def entry_command(
    python: str,
    *,
    job_file: str,
    offset: int,
    runs_per_task: int,
    total: int,
    attempt: int = 1,
    time_limit: int = 0,
) -> list[str]:
    """Return the command line an array task runs: the entry module with its arguments.

    `job_file` holds the sweep's job description (store locator, experiment key, session and
    options), written once by the submitting process; `offset` is the run index of array
    task id 0 of the shard; `total` the number of runs of the sweep; `time_limit` the task's
    time limit in seconds (0 leaves it out: a pack then starts every run).
    """
    return [
        python,
        "-m",
        ENTRY_MODULE,
        "--job",
        job_file,
        "--offset",
        str(offset),
        "--runs-per-task",
        str(runs_per_task),
        "--total",
        str(total),
        "--attempt",
        str(attempt),
        *(["--time-limit", str(time_limit)] if time_limit else []),
    ]


def render_script(
    config: SlurmConfig,
    job: ArrayJob,
    *,
    job_name: str,
    logs: str | os.PathLike[str],
    command: Sequence[str],
) -> str:
    """Return the text of the sbatch script that runs `command` in every task of `job`.

    `logs` is the directory of the `<array job id>_<task id>.out` / `.err` files; `command` is
    usually `entry_command(...)`. Raises `ValidationError` if a directive or setup value spans
    several lines.
    """
    logs = os.fspath(logs)
    return render_job(
        config,
        job_name=job_name,
        command=command,
        output=os.path.join(logs, f"{LOG_PATTERN}.out"),
        error=os.path.join(logs, f"{LOG_PATTERN}.err"),
        array=job.array,
        task_options=[
            f"--signal=B:USR1@{WARNING_SECONDS}",
            # without `requeue`, a preempted task ends and its runs are submitted again
            # (`retries`): a cluster that requeues by default (JobRequeue=1) must not as well
            *(["--requeue", "--open-mode=append"] if config.requeue else ["--no-requeue"]),
        ],
        prologue=TASK_PROLOGUE,
        runner=TASK_RUNNER,
    )


def render_job(
    config: SlurmConfig,
    *,
    job_name: str,
    command: Sequence[str],
    output: str,
    error: str | None = None,
    array: str | None = None,
    task_options: Sequence[str] = (),
    prologue: Sequence[str] = (),
    runner: str = "exec",
) -> str:
    """Return the text of an sbatch script that runs `command` with `config`'s resources.

    The script holds the `#SBATCH` directives (`job_directives`, then `task_options`), the
    `prologue` lines, the environment setup (`setup_lines`) and `<runner> command` (`exec`
    by default: the command replaces the shell; an array task's shell stays its parent, see
    `TASK_RUNNER`). `output` (and `error`, else stderr joins stdout) are sbatch's file
    patterns; `array` an `--array` spec. Raises `ValidationError` if a value spans several
    lines or `command` is empty.
    """
    options = job_directives(config, job_name=job_name, output=output, error=error, array=array)
    lines = [
        "#!/bin/bash",
        *(f"#SBATCH {option}" for option in options),
        *(f"#SBATCH {_one_line(option)}" for option in task_options),
        "",
        "set -e",
        *prologue,
        "export PYTHONUNBUFFERED=1",
        *setup_lines(config),
        f"{runner} {_join(command)}",
        "",
    ]
    return "\n".join(lines)


def job_directives(
    config: SlurmConfig,
    *,
    job_name: str,
    output: str,
    error: str | None = None,
    array: str | None = None,
) -> list[str]:
    """Return a job's sbatch options, values quoted, without the `#SBATCH` prefix.

    Resources, account and QOS come from `config`, its extra directives last; options left
    unset (`None`) are left out. Raises `ValidationError` if a value spans several lines.
    """
    options = [
        ("--job-name", job_name),
        ("--partition", config.partition_option),
        ("--time", config.time),
        ("--ntasks", "1"),
        ("--cpus-per-task", str(config.cpus)),
        ("--mem", format_memory(config.memory_mb)),
        ("--gres", f"gpu:{config.gpus}" if config.gpus else None),
        ("--account", config.account),
        ("--qos", config.qos),
        ("--array", array),
        ("--output", output),
        ("--error", error),
    ]
    rendered = [f"{name}={_quote(value)}" for name, value in options if value is not None]
    return rendered + [_one_line(option) for option in config.extra_directives]


def setup_lines(config: SlurmConfig) -> list[str]:
    """Return the shell lines that prepare a task's environment: modules, conda, setup."""
    lines = [f"module load {_quote(module)}" for module in config.modules]
    if config.conda_env is not None:
        lines += [
            'eval "$(conda shell.bash hook)"',
            f"conda activate {_quote(config.conda_env)}",
        ]
    return lines + [_one_line(line) for line in config.setup]


def _quote(value: str) -> str:
    return shlex.quote(_one_line(value))


def _join(command: Sequence[str]) -> str:
    """Quote a command line; an argument may span lines, bash reads it back whole."""
    if not command or any("\0" in part for part in command):
        raise ValidationError(f"not a command an array task can run: {list(command)!r}")
    return " ".join(shlex.quote(part) for part in command)


def _one_line(value: str) -> str:
    if "\n" in value or "\r" in value or "\0" in value:
        raise ValidationError(f"{value!r} cannot go into an sbatch script: it spans lines")
    return value
