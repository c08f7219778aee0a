"""Native SLURM job arrays: configuration, array planning, script rendering, SLURM commands."""

from __future__ import annotations

from .arrays import (
    MAX_SPEC_CHARS,
    ArrayJob,
    Shard,
    array_specs,
    compact_ranges,
    dependency_option,
    format_ranges,
    plan_arrays,
    runs_from_env,
    shard_tasks,
    split_specs,
    task_id_from_env,
    task_runs,
)
from .causes import CAUSES
from .commands import (
    Accounting,
    AccountingRecord,
    SlurmCommandError,
    SubmissionError,
    TaskState,
    parse_task_key,
    sacct,
    sbatch,
    scancel,
    squeue,
)
from .config import SlurmConfig, format_memory, format_time, parse_memory, parse_time
from .executor import SlurmExecutor
from .limits import ClusterLimits, ClusterLimitWarning, read_limits
from .script import ENTRY_MODULE, entry_command, log_dir, render_script

__all__ = [
    "CAUSES",
    "ENTRY_MODULE",
    "MAX_SPEC_CHARS",
    "Accounting",
    "AccountingRecord",
    "ArrayJob",
    "ClusterLimitWarning",
    "ClusterLimits",
    "Shard",
    "SlurmCommandError",
    "SlurmConfig",
    "SlurmExecutor",
    "SubmissionError",
    "TaskState",
    "array_specs",
    "compact_ranges",
    "dependency_option",
    "entry_command",
    "format_memory",
    "format_ranges",
    "format_time",
    "log_dir",
    "parse_memory",
    "parse_task_key",
    "parse_time",
    "plan_arrays",
    "read_limits",
    "render_script",
    "runs_from_env",
    "sacct",
    "sbatch",
    "scancel",
    "shard_tasks",
    "split_specs",
    "squeue",
    "task_id_from_env",
    "task_runs",
]
