"""`SlurmConfig`: the resources and environment of the SLURM array tasks that run a sweep.

Every option is checked when the config is built, so a typo fails at once on the login node
instead of minutes later in the queue. Time limits and memory sizes are kept as the user wrote
them; `parse_time` / `format_time` and `parse_memory` / `format_memory` convert them.
"""

from __future__ import annotations

import dataclasses
import math
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ...errors import ValidationError

TIME_FORMATS = ("MM", "MM:SS", "HH:MM:SS", "D-HH", "D-HH:MM", "D-HH:MM:SS")
MEMORY_UNITS = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}
ESCALATE_KEYS = ("memory", "time")
RETRY_CAUSES = ("timeout", "out_of_memory", "preempted", "node_failure", "unknown", "error")
"""Keys of a `retries` mapping: the causes of a lost run a retry may fix, and `error` (the
operation raised). A cancellation is the user's doing and is never retried."""
INT_RETRY_CAUSES = ("timeout", "out_of_memory", "preempted", "node_failure")
"""The causes an integer `retries` covers (and `error` too, with `retry_on_error=True`)."""
ESCALATED_BY = {"timeout": "time", "out_of_memory": "memory"}
"""The one resource a retry after each cause grows (the others re-run as they were)."""
DEFAULT_PARTITION = "default"
AUTO = "auto"
"""`runs_per_task="auto"`: packs sized from measured run durations (see `sizing`)."""

# Options metalab sets itself in every script: an extra directive may not override them.
RESERVED_DIRECTIVES = (
    "array",
    "output",
    "error",
    "parsable",
    "wrap",
    "job-name",
    "signal",  # the time-limit warning a task's causes rely on
    "dependency",  # the lanes of a throttled sweep and the waits of retries
    "open-mode",
    "a",
    "o",
    "e",
    "J",
    "d",
)

# Options metalab renders from a SlurmConfig field (escalation grows some of them per attempt):
# an extra directive naming one is refused with the field to use instead.
FIELD_DIRECTIVES = {
    "partition": "partition",
    "p": "partition",
    "time": "time",
    "t": "time",
    "mem": "memory",
    "mem-per-cpu": "memory",
    "mem-per-gpu": "memory",
    "cpus-per-task": "cpus",
    "c": "cpus",
    "ntasks": "cpus",
    "n": "cpus",
    "gres": "gpus",
    "gpus": "gpus",
    "gpus-per-task": "gpus",
    "gpus-per-node": "gpus",
    "gpus-per-socket": "gpus",
    "G": "gpus",
    "requeue": "requeue",
    "no-requeue": "requeue",
    "account": "account",
    "A": "account",
    "qos": "qos",
    "q": "qos",
}

_TIME_HINT = (
    f"a SLURM time limit, one of {', '.join(repr(f) for f in TIME_FORMATS)} "
    "(e.g. '30', '2:00:00', '1-12:00:00'), greater than zero"
)
_MEMORY_HINT = (
    "a size with an optional unit K, M, G or T (e.g. '4G', '512M', '16GB', '1.5G'); "
    "a bare number is megabytes, as for sbatch --mem; greater than zero"
)
_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([KMGT])(?:I?B)?|MB|B)?\s*$", re.IGNORECASE)
_INT_RE = re.compile(r"^\d+$")


@dataclass(frozen=True)
class SlurmConfig:
    """Resources, environment and retry policy of the array tasks that run a sweep.

    `partition="default"` (or `None`) leaves out `--partition`, so SLURM picks the cluster's
    default partition. `memory` is a size such as `"4G"`, `"16GB"` or `"4000"` (megabytes);
    `time` is a SLURM time limit such as `"1:00:00"` or `"1-12"`. `max_concurrent` caps the
    tasks of the whole sweep that run at once, across every array job it is split into;
    `max_array_size` is the most tasks one array job holds (keep it at most the cluster's
    `MaxArraySize`). Each task runs `runs_per_task` consecutive runs. A run whose task was
    lost (time limit, out of memory, node failure) is resubmitted up to `retries` times, with
    memory and time multiplied by the `escalate` factors at each attempt; with
    `retry_on_error=True`, runs whose operation raised are retried too. With
    `runs_per_task="auto"` a task runs as many runs as take about `task_minutes`, from
    measured durations (see `sizing`). `retries` may also
    be a count per cause (`{"timeout": 2, "preempted": 10}`). With `requeue=True` the tasks
    are submitted with `--requeue`: a preempted task runs again where it was.

    Invalid values raise `metalab.ValidationError` naming the option, the value and what is
    accepted. Lists are stored as tuples.
    """

    partition: str | None = DEFAULT_PARTITION
    time: str = "1:00:00"
    cpus: int = 1
    memory: str | int = "4G"
    gpus: int = 0
    max_concurrent: int | None = None
    max_array_size: int = 10000
    modules: Sequence[str] = ()
    conda_env: str | None = None
    setup: Sequence[str] = ()
    account: str | None = None
    qos: str | None = None
    extra_directives: Sequence[str] | Mapping[str, Any] = ()
    python: str = field(default_factory=lambda: sys.executable)
    runs_per_task: int | str = 1
    retries: int | Mapping[str, int] = field(default=0, hash=False)
    escalate: Mapping[str, float] = field(default_factory=dict, hash=False)
    retry_on_error: bool = False
    requeue: bool = False
    task_minutes: float = 10.0

    def __post_init__(self) -> None:
        parse_time(self.time, "time")
        parse_memory(self.memory, "memory")
        _check_count("cpus", self.cpus, minimum=1)
        _check_count("gpus", self.gpus, minimum=0)
        _check_count("max_array_size", self.max_array_size, minimum=1)
        if self.runs_per_task != AUTO:
            rpt = self.runs_per_task
            if isinstance(rpt, bool) or not isinstance(rpt, int) or rpt < 1:
                _invalid("runs_per_task", rpt, "a positive integer, or 'auto'")
        _check_minutes(self.task_minutes)
        object.__setattr__(self, "retries", _retry_policy(self.retries))
        if self.max_concurrent is not None:
            _check_count("max_concurrent", self.max_concurrent, minimum=1)
        for name in ("partition", "conda_env", "account", "qos"):
            _check_optional_text(name, getattr(self, name))
        _check_text("python", self.python)
        for name in ("retry_on_error", "requeue"):
            if not isinstance(getattr(self, name), bool):
                _invalid(name, getattr(self, name), "True or False")
        object.__setattr__(self, "modules", _text_tuple("modules", self.modules))
        object.__setattr__(self, "setup", _text_tuple("setup", self.setup))
        object.__setattr__(self, "extra_directives", _directives(self.extra_directives))
        object.__setattr__(self, "escalate", _escalation(self.escalate))

    @property
    def time_seconds(self) -> int:
        """The time limit in seconds."""
        return parse_time(self.time, "time")

    @property
    def time_minutes(self) -> int:
        """The time limit in whole minutes, rounded up (SLURM's own granularity)."""
        return math.ceil(self.time_seconds / 60)

    @property
    def memory_mb(self) -> int:
        """The memory per task in megabytes (1024-based, as SLURM counts)."""
        return parse_memory(self.memory, "memory")

    @property
    def partition_option(self) -> str | None:
        """The partition to ask for, or `None` to let SLURM use the default partition."""
        if self.partition in (None, DEFAULT_PARTITION):
            return None
        return self.partition

    def retries_for(self, cause: str) -> int:
        """Return how many times a run lost to `cause` (one of `RETRY_CAUSES`, or
        `cancelled`) is submitted again; each cause has its own count."""
        if isinstance(self.retries, int):
            if cause == "error":
                return self.retries if self.retry_on_error else 0
            return self.retries if cause in INT_RETRY_CAUSES else 0
        return int(self.retries.get(cause, 0))

    def grown(self, timeouts: int, out_of_memory: int) -> SlurmConfig:
        """Return the config for a retry after `timeouts` time-limit losses and
        `out_of_memory` memory losses: time grows once per timeout, memory once per
        out-of-memory, each by its `escalate` factor, rounded up."""
        memory, time = self.memory, self.time
        if "memory" in self.escalate and out_of_memory:
            factor = self.escalate["memory"] ** out_of_memory
            memory = format_memory(math.ceil(self.memory_mb * factor))
        if "time" in self.escalate and timeouts:
            time = format_time(math.ceil(self.time_seconds * self.escalate["time"] ** timeouts))
        if (memory, time) == (self.memory, self.time):
            return self
        return dataclasses.replace(self, memory=memory, time=time)

    def escalated(self, attempt: int) -> SlurmConfig:
        """Return the config for retry `attempt` (0 = first try), memory and time grown.

        Each escalated resource is multiplied by its `escalate` factor once per attempt and
        rounded up: with `{"memory": 2.0}`, attempt 2 asks for four times the memory.
        """
        _check_count("attempt", attempt, minimum=0)
        if attempt == 0 or not self.escalate:
            return self
        memory, time = self.memory, self.time
        if "memory" in self.escalate:
            memory = format_memory(math.ceil(self.memory_mb * self.escalate["memory"] ** attempt))
        if "time" in self.escalate:
            time = format_time(math.ceil(self.time_seconds * self.escalate["time"] ** attempt))
        return dataclasses.replace(self, memory=memory, time=time)


# ------------------------------------------------------------------------------- time limits


def parse_time(value: object, name: str = "time") -> int:
    """Return a SLURM time limit in seconds; raise `ValidationError` naming `name` if invalid.

    Accepts "MM", "MM:SS", "HH:MM:SS", "D-HH", "D-HH:MM" and "D-HH:MM:SS". The leading field
    may be any size (`"90"` is 90 minutes); later minute and second fields must be below 60
    and an hour field after a day count below 24.
    """
    if not isinstance(value, str):
        _invalid(name, value, _TIME_HINT)
    days, dash, clock = value.strip().rpartition("-")
    parts = clock.split(":")
    if not all(_INT_RE.match(p) for p in [*parts, *([days] if dash else [])]):
        _invalid(name, value, _TIME_HINT)
    seconds = _clock_seconds([int(p) for p in parts], with_days=bool(dash))
    if seconds is None:
        _invalid(name, value, _TIME_HINT)
    total = (int(days) if dash else 0) * 86400 + seconds
    if total <= 0:
        _invalid(name, value, _TIME_HINT)
    return total


def _clock_seconds(parts: list[int], *, with_days: bool) -> int | None:
    """Seconds of the clock part of a time limit, or `None` when its shape or ranges are off."""
    if with_days:
        if len(parts) > 3 or parts[0] >= 24 or any(p >= 60 for p in parts[1:]):
            return None
        hours, minutes, seconds = [*parts, 0, 0][:3]
        return hours * 3600 + minutes * 60 + seconds
    if any(p >= 60 for p in parts[1:]):
        return None
    if len(parts) == 1:
        return parts[0] * 60
    if len(parts) == 2:
        return parts[0] * 60 + parts[1]
    if len(parts) == 3:
        return parts[0] * 3600 + parts[1] * 60 + parts[2]
    return None


def format_time(seconds: int) -> str:
    """Format a positive number of seconds as a SLURM time limit ("HH:MM:SS" or "D-HH:MM:SS")."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
        _invalid("seconds", seconds, "a positive whole number of seconds")
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{clock}" if days else clock


# ------------------------------------------------------------------------------------ memory


def parse_memory(value: object, name: str = "memory") -> int:
    """Return a memory size in megabytes (rounded up); raise `ValidationError` if invalid.

    Accepts a number with an optional unit K, M, G or T, optionally followed by "B" or "iB"
    (`"4G"`, `"16GB"`, `"512M"`, `"1.5G"`); units are 1024-based as in SLURM, and a bare
    number is megabytes. An `int` is taken as megabytes too.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    match = _MEMORY_RE.match(value) if isinstance(value, str) else None
    if match is None:
        _invalid(name, value, _MEMORY_HINT)
    number, unit = match.groups()
    megabytes = math.ceil(float(number) * MEMORY_UNITS[(unit or "M").upper()])
    if megabytes <= 0:
        _invalid(name, value, _MEMORY_HINT)
    return megabytes


def format_memory(megabytes: int) -> str:
    """Format megabytes for `sbatch --mem`: whole gigabytes as "16G", anything else as "1536M"."""
    if isinstance(megabytes, bool) or not isinstance(megabytes, int) or megabytes <= 0:
        _invalid("megabytes", megabytes, "a positive whole number of megabytes")
    if megabytes % 1024 == 0:
        return f"{megabytes // 1024}G"
    return f"{megabytes}M"


# ------------------------------------------------------------------------------- validation


def _check_minutes(value: object) -> None:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not 0 < value < math.inf:  # type: ignore[operator]
        _invalid("task_minutes", value, "a positive number of minutes")


def _invalid(name: str, value: object, accepted: str) -> NoReturn:
    """Raise the `ValidationError` for option `name`: its value and what is accepted."""
    raise ValidationError(f"SlurmConfig.{name}={value!r} is not valid: expected {accepted}")


def _check_count(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        _invalid(name, value, kind)


def _check_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip() or "\n" in value or "\0" in value:
        _invalid(name, value, "a non-empty string on one line")


def _check_optional_text(name: str, value: object) -> None:
    if value is not None:
        _check_text(name, value)


def _text_tuple(name: str, values: object) -> tuple[str, ...]:
    """Return `values` (a list of one-line strings) as a tuple."""
    if isinstance(values, str) or not isinstance(values, Sequence):
        _invalid(name, values, "a list of strings")
    for item in values:
        if not isinstance(item, str) or "\n" in item or "\0" in item:
            _invalid(name, values, "a list of strings, each on one line")
    return tuple(values)


def _directives(given: object) -> tuple[str, ...]:
    """Normalise extra directives (a list of lines or a dict of options) to option strings."""
    values = given
    if isinstance(given, Mapping):
        values = [_directive_from_item(str(key), value) for key, value in given.items()]
    lines = _text_tuple("extra_directives", values)
    options = tuple(line.strip().removeprefix("#SBATCH").strip() for line in lines)
    for option in options:
        _check_directive(option, given)
    return options


def _directive_from_item(key: str, value: Any) -> str:
    """Turn one `{option: value}` item into an option: `--key=value`, or `--key` for True/None."""
    key = key.lstrip("-")
    dash = "-" if len(key) == 1 else "--"
    if value is None or value is True:
        return f"{dash}{key}"
    separator = " " if len(key) == 1 else "="
    return f"{dash}{key}{separator}{shlex.quote(str(value))}"


def _check_directive(option: str, given: object) -> None:
    hint = (
        "sbatch options such as '--constraint=v100' or {'constraint': 'v100'}; metalab sets "
        "--array, --output, --error, --job-name, --signal, --dependency and --open-mode itself"
    )
    if not option.startswith("-"):
        _invalid("extra_directives", given, hint)
    name = re.split(r"[=\s]", option.lstrip("-"), maxsplit=1)[0]
    if name in RESERVED_DIRECTIVES:
        _invalid("extra_directives", given, hint)
    if name in FIELD_DIRECTIVES:
        field_name = FIELD_DIRECTIVES[name]
        _invalid(
            "extra_directives",
            given,
            f"{hint}; {option.split('=')[0].split()[0]!r} comes from SlurmConfig.{field_name}: "
            f"set {field_name}=... instead (retries grow memory and time from those fields)",
        )


def _retry_policy(values: object) -> int | dict[str, int]:
    """Check `retries`: a count for every cause, or a count per cause."""
    hint = (
        f"an integer >= 0, or a dict from causes ({', '.join(map(repr, RETRY_CAUSES))}) to "
        "integers >= 0"
    )
    if isinstance(values, int) and not isinstance(values, bool) and values >= 0:
        return values
    if not isinstance(values, Mapping):
        _invalid("retries", values, hint)
    for key, count in values.items():
        if key == "cancelled":
            _invalid("retries", values, f"{hint} (a cancelled run is never retried)")
        if key not in RETRY_CAUSES:
            _invalid("retries", values, f"{hint} (unknown cause {key!r})")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            _invalid("retries", values, f"{hint} (bad count for {key!r}: {count!r})")
    return dict(values)


def _escalation(values: object) -> dict[str, float]:
    """Check the `escalate` factors: known resources, each a number >= 1."""
    hint = f"a dict from {' or '.join(map(repr, ESCALATE_KEYS))} to a factor >= 1"
    if not isinstance(values, Mapping):
        _invalid("escalate", values, hint)
    for key, factor in values.items():
        if key not in ESCALATE_KEYS:
            _invalid("escalate", values, f"{hint} (unknown key {key!r})")
        number = isinstance(factor, int | float) and not isinstance(factor, bool)
        if not number or not (1 <= factor < math.inf):
            _invalid("escalate", values, f"{hint} (bad factor for {key!r})")
    return {key: float(factor) for key, factor in values.items()}
