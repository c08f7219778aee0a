"""The SLURM building blocks without a cluster: config, array plans, scripts, command parsing."""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from metalab.errors import ExecutorError, ValidationError
from metalab.executors.slurm import commands
from metalab.executors.slurm.arrays import (
    MAX_SPEC_CHARS,
    ArrayJob,
    apportion,
    array_specs,
    compact_ranges,
    dependency_option,
    format_ranges,
    plan_arrays,
    runs_from_env,
    shard_tasks,
    split_specs,
    task_runs,
)
from metalab.executors.slurm.commands import (
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
from metalab.executors.slurm.config import (
    SlurmConfig,
    format_memory,
    format_time,
    parse_memory,
    parse_time,
)
from metalab.executors.slurm.script import (
    ENTRY_MODULE,
    TASK_PROLOGUE,
    TASK_RUNNER,
    entry_command,
    job_directives,
    log_dir,
    render_job,
    render_script,
)

# ------------------------------------------------------------------------------------ config


def test_defaults_follow_the_spec():
    config = SlurmConfig()
    assert config.partition == "default" and config.partition_option is None
    assert (config.time, config.cpus, config.memory, config.gpus) == ("1:00:00", 1, "4G", 0)
    assert config.max_concurrent is None and config.max_array_size == 10000
    assert (config.modules, config.conda_env, config.setup) == ((), None, ())
    assert config.python == sys.executable
    assert (config.runs_per_task, config.retries, config.escalate) == (1, 0, {})
    assert config.retry_on_error is False
    assert config.account is None and config.qos is None and config.extra_directives == ()


def test_spec_examples_are_accepted():
    gpu = SlurmConfig(
        partition="gpu", time="2:00:00", cpus=4, memory="16G", gpus=1, max_concurrent=100
    )
    assert (gpu.time_seconds, gpu.memory_mb, gpu.partition_option) == (7200, 16384, "gpu")
    big = SlurmConfig(partition="cpu", time="1:00:00", max_array_size=10000, max_concurrent=500)
    assert big.max_concurrent == 500


def test_config_is_frozen_and_hashable_with_lists_stored_as_tuples():
    config = SlurmConfig(modules=["gcc", "cuda/12"], setup=["export A=1"])
    assert config.modules == ("gcc", "cuda/12") and config.setup == ("export A=1",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.cpus = 2  # type: ignore[misc]
    assert hash(config) == hash(SlurmConfig(modules=("gcc", "cuda/12"), setup=["export A=1"]))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 1800),
        ("90", 5400),
        ("5:30", 330),
        ("1:00:00", 3600),
        ("48:00:00", 172800),
        ("2-0", 172800),
        ("1-12", 129600),
        ("1-2:30", 95400),
        ("0-00:00:45", 45),
        (" 2:00:00 ", 7200),
    ],
)
def test_time_formats_of_slurm(text, seconds):
    assert parse_time(text) == seconds
    assert SlurmConfig(time=text).time_seconds == seconds


@pytest.mark.parametrize(
    "text", ["", "abc", "1:00:00:00", "-5", "1-", "1-2-3", "0", "0:00", "1-24", "1:60:00", "1.5"]
)
def test_bad_time_names_field_value_and_formats(text):
    with pytest.raises(ValidationError) as info:
        SlurmConfig(time=text)
    message = str(info.value)
    assert "SlurmConfig.time" in message and repr(text) in message
    assert "'HH:MM:SS'" in message and "'D-HH:MM:SS'" in message


def test_time_must_be_a_string():
    with pytest.raises(ValidationError, match=r"SlurmConfig\.time=90 "):
        SlurmConfig(time=90)  # type: ignore[arg-type]


def test_time_minutes_round_up_and_format_back():
    assert SlurmConfig(time="1:30").time_minutes == 2
    assert format_time(45) == "00:00:45"
    assert format_time(3600) == "01:00:00"
    assert format_time(129600) == "1-12:00:00"
    for text in ("30", "1-12", "2:03:04", "3-00:00:01"):
        assert parse_time(format_time(parse_time(text))) == parse_time(text)
    with pytest.raises(ValidationError):
        format_time(0)


@pytest.mark.parametrize(
    ("text", "megabytes"),
    [
        ("4G", 4096),
        ("16GB", 16384),
        ("16gb", 16384),
        ("8GiB", 8192),
        ("512M", 512),
        ("512MB", 512),
        ("1T", 1048576),
        ("4000", 4000),
        ("2048K", 2),
        ("1.5G", 1536),
        (4000, 4000),
    ],
)
def test_memory_sizes(text, megabytes):
    assert parse_memory(text) == megabytes
    assert SlurmConfig(memory=text).memory_mb == megabytes


@pytest.mark.parametrize("text", ["", "4X", "G", "-1G", "0", "0M", "4 G B", "lots", 1.5])
def test_bad_memory_names_field_value_and_units(text):
    with pytest.raises(ValidationError) as info:
        SlurmConfig(memory=text)  # type: ignore[arg-type]
    message = str(info.value)
    assert "SlurmConfig.memory" in message and repr(text) in message
    assert "K, M, G or T" in message and "'4G'" in message


def test_memory_formats_for_sbatch():
    assert format_memory(4096) == "4G"
    assert format_memory(1536) == "1536M"
    assert parse_memory(format_memory(1536)) == 1536


@pytest.mark.parametrize(
    ("field", "value", "accepted"),
    [
        ("cpus", 0, "a positive integer"),
        ("cpus", 1.5, "a positive integer"),
        ("cpus", True, "a positive integer"),
        ("gpus", -1, "an integer >= 0"),
        ("max_concurrent", 0, "a positive integer"),
        ("max_array_size", 0, "a positive integer"),
        ("runs_per_task", 0, "a positive integer"),
        ("retries", -1, "an integer >= 0"),
        ("partition", "", "a non-empty string"),
        ("python", "", "a non-empty string"),
        ("retry_on_error", "yes", "True or False"),
        ("modules", "gcc", "a list of strings"),
        ("setup", ["ok", "two\nlines"], "each on one line"),
    ],
)
def test_bad_options_name_field_value_and_what_is_accepted(field, value, accepted):
    with pytest.raises(ValidationError) as info:
        SlurmConfig(**{field: value})
    message = str(info.value)
    assert f"SlurmConfig.{field}={value!r}" in message and accepted in message


def test_validation_error_is_a_value_error():
    with pytest.raises(ValueError):
        SlurmConfig(cpus=-2)


def test_escalate_accepts_memory_and_time_only():
    assert SlurmConfig(escalate={"memory": 2, "time": 1.5}).escalate == {
        "memory": 2.0,
        "time": 1.5,
    }
    with pytest.raises(ValidationError) as info:
        SlurmConfig(escalate={"cpus": 2.0})
    assert "unknown key 'cpus'" in str(info.value) and "'memory' or 'time'" in str(info.value)
    for factor in (0.5, 0, float("nan"), float("inf"), "2"):
        with pytest.raises(ValidationError, match="bad factor for 'memory'"):
            SlurmConfig(escalate={"memory": factor})
    with pytest.raises(ValidationError, match=r"SlurmConfig\.escalate"):
        SlurmConfig(escalate=[("memory", 2.0)])  # type: ignore[arg-type]


def test_escalated_grows_memory_and_time_per_attempt():
    config = SlurmConfig(memory="4G", time="1:00:00", escalate={"memory": 2.0, "time": 1.5})
    assert config.escalated(0) is config
    first = config.escalated(1)
    assert (first.memory, first.time) == ("8G", "01:30:00")
    second = config.escalated(2)
    assert (second.memory_mb, second.time_seconds) == (16384, 8100)
    assert second.cpus == config.cpus and second.escalate == config.escalate
    assert SlurmConfig(memory="3000", escalate={"memory": 1.5}).escalated(1).memory == "4500M"
    plain = SlurmConfig()
    assert plain.escalated(3) is plain
    with pytest.raises(ValidationError):
        config.escalated(-1)


def test_extra_directives_as_lines_or_a_dict():
    lines = SlurmConfig(extra_directives=["--constraint=v100", "#SBATCH --exclusive"])
    assert lines.extra_directives == ("--constraint=v100", "--exclusive")
    mapping = SlurmConfig(
        extra_directives={"constraint": "a100 & ib", "exclusive": None, "C": "x", "--nice": 5}
    )
    assert mapping.extra_directives == (
        "--constraint='a100 & ib'",
        "--exclusive",
        "-C x",
        "--nice=5",
    )


@pytest.mark.parametrize(
    "directives",
    [
        ["constraint=v100"],
        ["--array=0-3"],
        ["-o out.txt"],
        {"output": "x"},
        ["--signal=USR1@10"],  # the time-limit warning the tasks' causes rely on
        ["--dependency=afterok:1"],  # the lanes and retry waits
        ["-d afterok:1"],
        ["--job-name=a b"],
        ["--open-mode=truncate"],
    ],
)
def test_extra_directives_cannot_replace_what_metalab_sets(directives):
    with pytest.raises(ValidationError, match=r"SlurmConfig\.extra_directives") as info:
        SlurmConfig(extra_directives=directives)
    assert "--array, --output, --error, --job-name, --signal, --dependency" in str(info.value)


@pytest.mark.parametrize(
    ("directives", "field"),
    [
        (["--mem=4G"], "memory"),
        (["--time=1:00:00"], "time"),
        (["-t 30"], "time"),
        ({"partition": "gpu"}, "partition"),
        (["--cpus-per-task=4"], "cpus"),
        (["--gres=gpu:2"], "gpus"),
        (["-A lab"], "account"),
        (["--qos=long"], "qos"),
        (["--gpus-per-task=1"], "gpus"),
        (["--requeue"], "requeue"),
        (["--no-requeue"], "requeue"),
    ],
)
def test_extra_directives_name_the_field_that_sets_an_option(directives, field):
    # an extra --mem or --time would silently undo the escalation of retries
    with pytest.raises(ValidationError, match=rf"SlurmConfig\.{field}: set {field}="):
        SlurmConfig(extra_directives=directives)


# -------------------------------------------------------------------------------- array specs


def test_compact_specs():
    assert format_ranges(compact_ranges([3, 7, 10, 11, 12, 20])) == "3,7,10-12,20"
    assert format_ranges(compact_ranges(range(100))) == "0-99"
    assert array_specs([3, 7, *range(10, 21)], throttle=4) == ["3,7,10-20%4"]
    assert array_specs([]) == []


@pytest.mark.parametrize("ids", [[3, 2], [1, 1], [-1, 2], [0.5]])
def test_task_ids_must_be_sorted_distinct_non_negative(ids):
    with pytest.raises(ValidationError, match="increasing order"):
        compact_ranges(ids)


def test_long_specs_are_split_under_slurms_length_limit():
    ids = list(range(0, 40000, 2))  # nothing to compact: about 110,000 characters
    specs = array_specs(ids, throttle=50)
    assert len(specs) > 20
    assert all(len(spec) <= MAX_SPEC_CHARS and spec.endswith("%50") for spec in specs)
    groups = split_specs(ids)
    assert [i for group in groups for i in group] == ids
    assert all(len(format_ranges(compact_ranges(g))) <= MAX_SPEC_CHARS for g in groups)


def test_split_fills_each_spec_up_to_the_limit():
    assert split_specs([1, 3, 5, 7], max_chars=3) == [(1, 3), (5, 7)]
    assert split_specs([1, 3, 5, 7], max_chars=7) == [(1, 3, 5, 7)]
    assert split_specs([*range(10), 20], max_chars=3) == [tuple(range(10)), (20,)]
    with pytest.raises(ValidationError, match="longer than 2 characters"):
        split_specs(list(range(10, 20)), max_chars=2)


# ---------------------------------------------------------------------------- tasks, shards


def test_shards_hold_max_array_size_tasks_with_offsets():
    shards = shard_tasks(range(25), runs_per_task=1, max_array_size=10)
    assert [(s.number, s.offset, s.task_ids) for s in shards] == [
        (0, 0, tuple(range(10))),
        (1, 10, tuple(range(10))),
        (2, 20, tuple(range(5))),
    ]


def test_shards_keep_task_ids_fixed_when_only_some_runs_are_pending():
    shards = shard_tasks([1, 2, 14, 15, 16, 61], runs_per_task=3, max_array_size=4)
    # tasks are 3 runs long; a shard holds 4 tasks, i.e. 12 runs
    assert [(s.number, s.offset, s.task_ids) for s in shards] == [
        (0, 0, (0,)),
        (1, 12, (0, 1)),
        (5, 60, (0,)),
    ]


def test_task_runs_from_task_id_offset_and_runs_per_task():
    assert task_runs(0, offset=0, runs_per_task=1, total=10) == range(0, 1)
    assert task_runs(7, offset=100, runs_per_task=1, total=1000) == range(107, 108)
    assert task_runs(2, offset=12, runs_per_task=3, total=100) == range(18, 21)
    assert task_runs(3, offset=0, runs_per_task=4, total=14) == range(12, 14)
    assert len(task_runs(9, offset=0, runs_per_task=4, total=14)) == 0
    with pytest.raises(ValidationError, match="runs_per_task"):
        task_runs(0, offset=0, runs_per_task=0, total=1)


def test_runs_from_the_environment_of_an_array_task():
    env = {"SLURM_ARRAY_TASK_ID": "5"}
    assert runs_from_env(offset=1000, runs_per_task=2, total=2000, environ=env) == range(1010, 1012)
    with pytest.raises(ExecutorError, match="not a SLURM array task"):
        runs_from_env(0, 1, 10, environ={})
    with pytest.raises(ExecutorError, match="not a non-negative integer"):
        runs_from_env(0, 1, 10, environ={"SLURM_ARRAY_TASK_ID": "x"})


def _covered_runs(jobs: list[ArrayJob], total: int) -> Counter[int]:
    return Counter(run for job in jobs for task in job.task_ids for run in job.runs(task, total))


def _max_concurrency(jobs: list[ArrayJob]) -> int:
    """Most tasks that can run at once: one job per lane, each capped by its throttle."""
    per_lane: dict[int, int] = {}
    for job in jobs:
        running = min(job.throttle or len(job.task_ids), len(job.task_ids))
        per_lane[job.lane] = max(per_lane.get(job.lane, 0), running)
    return sum(per_lane.values())


def test_unthrottled_plan_submits_independent_jobs():
    jobs = plan_arrays(range(25), max_array_size=10)
    assert [(j.offset, j.array, j.after) for j in jobs] == [
        (0, "0-9", None),
        (10, "0-9", None),
        (20, "0-4", None),
    ]


def test_sweep_within_max_concurrent_is_not_throttled():
    jobs = plan_arrays(range(25), max_array_size=10, max_concurrent=25)
    assert all(j.throttle is None and j.after is None for j in jobs)


def test_small_max_concurrent_chains_jobs_in_one_lane():
    jobs = plan_arrays(range(25), max_array_size=10, max_concurrent=4)
    assert [(j.array, j.lane, j.after) for j in jobs] == [
        ("0-9%4", 0, None),
        ("0-9%4", 0, 0),
        ("0-4%4", 0, 1),
    ]
    assert dependency_option("123") == "--dependency=afterany:123"
    assert dependency_option("123", "130") == "--dependency=afterany:123:130"
    with pytest.raises(ValueError):
        dependency_option()


def test_lanes_share_max_concurrent_in_proportion_to_their_tasks():
    jobs = plan_arrays(range(300_000), max_array_size=10_000, max_concurrent=500)
    assert len(jobs) == 30 and {j.after for j in jobs} == {None}
    assert sum(j.throttle or 0 for j in jobs) == 500
    assert {j.throttle for j in jobs} <= {16, 17}


@pytest.mark.parametrize(
    ("pending", "runs_per_task", "size", "limit"),
    [
        (range(1000), 1, 100, 50),
        (range(1000), 1, 100, 7),
        (range(0, 50_000, 3), 1, 5000, 64),
        (range(0, 50_000, 3), 4, 1000, 100),
        ([*range(10), *range(5000, 5003), 99_999], 2, 1000, 9),
        (range(0, 100_000, 2), 1, 100_000, 3),
    ],
)
def test_plans_cover_every_pending_run_once_and_respect_max_concurrent(
    pending, runs_per_task, size, limit
):
    total = 100_000
    jobs = plan_arrays(
        pending, runs_per_task=runs_per_task, max_array_size=size, max_concurrent=limit
    )
    covered = _covered_runs(jobs, total)
    assert set(pending) <= set(covered)
    tasks = Counter((j.offset, t) for j in jobs for t in j.task_ids)
    assert max(tasks.values()) == 1  # no task submitted twice
    assert all(max(j.task_ids) < size for j in jobs)
    assert all(len(j.array) <= MAX_SPEC_CHARS for j in jobs)
    assert _max_concurrency(jobs) <= limit
    for position, job in enumerate(jobs):
        if job.after is not None:
            assert job.after < position and jobs[job.after].lane == job.lane


def test_apportion_gives_at_least_one_each_and_sums_to_total():
    assert apportion(10, [1, 1]) == [5, 5]
    assert apportion(4, [10, 10, 5]) == [2, 1, 1]
    assert apportion(3, [100, 1, 1]) == [1, 1, 1]
    assert sum(apportion(500, [7, 13, 29, 1])) == 500
    with pytest.raises(ValidationError):
        apportion(2, [1, 1, 1])


# ---------------------------------------------------------------------------------- scripts

REFERENCES = Path(__file__).parent / "data" / "slurm"
"""Saved sbatch scripts the renderer must reproduce byte for byte (`<name>.sh`)."""

JOB_FILE = "/scratch/runs/my exp/slurm/3f2a9c1e/job.pkl"
STORE_ROOT = "/scratch/runs/my exp"


def _full_config() -> SlurmConfig:
    return SlurmConfig(
        partition="gpu",
        time="2:00:00",
        cpus=4,
        memory="16GB",
        gpus=1,
        account="lab",
        qos="high",
        modules=["gcc/12", "cuda 12"],
        conda_env="ml",
        setup=["export OMP_NUM_THREADS=4"],
        extra_directives=["--constraint=v100", "--exclusive"],
        python="/opt/py/bin/python",
        runs_per_task=2,
    )


def _job(**changes) -> ArrayJob:
    fields = dict(
        shard=1,
        offset=20000,
        runs_per_task=2,
        task_ids=(*range(10), 20),
        throttle=5,
        lane=0,
        after=None,
    )
    return ArrayJob(**{**fields, **changes})


def _render(config: SlurmConfig, job: ArrayJob, job_file: str = JOB_FILE) -> str:
    command = entry_command(
        config.python,
        job_file=job_file,
        offset=job.offset,
        runs_per_task=job.runs_per_task,
        total=40000,
    )
    logs = log_dir(STORE_ROOT)
    return render_script(config, job, job_name="metalab-sweep", logs=logs, command=command)


def _reference_cases() -> dict[str, tuple[SlurmConfig, ArrayJob]]:
    """Each reference script's config and array job. `python` is set in all of them, so no
    reference depends on the interpreter running the tests."""
    return {
        # every option set, a throttled spec with a gap, packed runs in a later shard
        "full": (_full_config(), _job()),
        # only defaults: no partition, GPU, account, QOS, modules, conda or setup lines
        "minimal": (
            SlurmConfig(python="/opt/py/bin/python"),
            ArrayJob(
                shard=0,
                offset=0,
                runs_per_task=1,
                task_ids=tuple(range(10)),
                throttle=None,
                lane=0,
                after=None,
            ),
        ),
        # the spec's GPU example
        "spec_gpu": (
            SlurmConfig(
                partition="gpu",
                time="2:00:00",
                cpus=4,
                memory="16G",
                gpus=1,
                max_concurrent=100,
                python="/opt/py/bin/python",
            ),
            ArrayJob(
                shard=1,
                offset=10000,
                runs_per_task=1,
                task_ids=tuple(range(10000)),
                throttle=50,
                lane=1,
                after=None,
            ),
        ),
    }


@pytest.mark.parametrize("name", ["full", "minimal", "spec_gpu"])
def test_rendered_script_matches_the_reference(name):
    config, job = _reference_cases()[name]
    reference = REFERENCES / f"{name}.sh"
    assert _render(config, job) == reference.read_text(), f"differs from {reference}"
    result = subprocess.run(["bash", "-n", str(reference)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_reference_script_is_checked():
    assert sorted(p.stem for p in REFERENCES.glob("*.sh")) == sorted(_reference_cases())
    assert ENTRY_MODULE == "metalab.executors.slurm.entry"


def test_rendered_script_is_valid_bash(tmp_path):
    path = tmp_path / "job.sh"
    path.write_text(_render(_full_config(), _job()))
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_minimal_script_leaves_out_what_is_not_set():
    script = _render(SlurmConfig(), _job(throttle=None))
    assert script.startswith("#!/bin/bash\n")
    for absent in ("--partition", "--gres", "--account", "--qos", "module", "conda"):
        assert absent not in script
    assert "#SBATCH --array=0-9,20\n" in script and "#SBATCH --mem=4G\n" in script


def test_every_value_is_quoted(tmp_path):
    tricky = 'file:///tmp/it\'s $HOME `x` "y"; rm -rf /'
    config = SlurmConfig(python="/opt/my python/bin/python3", conda_env="env with space")
    script = _render(config, _job(), job_file=tricky)
    path = tmp_path / "job.sh"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    exec_line = next(line for line in script.splitlines() if line.startswith(f"{TASK_RUNNER} "))
    argv = shlex.split(exec_line)[1:]
    assert argv[0] == "/opt/my python/bin/python3"
    assert argv[argv.index("--job") + 1] == tricky
    assert "conda activate 'env with space'" in script


def test_a_command_argument_may_span_lines(tmp_path):
    payload = 'echo "$1"\necho done'
    script = render_script(
        SlurmConfig(), _job(), job_name="a", logs="/tmp", command=["bash", "-c", payload, "x"]
    )
    path = tmp_path / "job.sh"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    assert script.endswith(f"{TASK_RUNNER} bash -c 'echo \"$1\"\necho done' x\n")


def test_values_spanning_lines_are_refused():
    with pytest.raises(ValidationError, match="spans lines"):
        render_script(SlurmConfig(), _job(), job_name="a\nb", logs="/tmp", command=["true"])
    with pytest.raises(ValidationError, match="not a command"):
        render_script(SlurmConfig(), _job(), job_name="a", logs="/tmp", command=[])


def test_an_array_script_is_a_job_script_with_an_array_and_per_task_logs():
    config, job = _reference_cases()["full"]
    command = ["/opt/py/bin/python", "-c", "pass"]
    array = render_script(config, job, job_name="j", logs="/logs", command=command)
    plain = render_job(config, job_name="j", command=command, output="/logs/%A_%a.out")
    added = {
        "#SBATCH --array=0-9,20%5",
        "#SBATCH --error=/logs/%A_%a.err",
        "#SBATCH --signal=B:USR1@60",  # the time-limit warning the task traps
        "#SBATCH --no-requeue",  # a preempted task ends; its runs are submitted again
        *TASK_PROLOGUE,
    }
    *lines, last = [line for line in array.splitlines() if line not in added]
    *plain_lines, plain_last = plain.splitlines()
    assert lines == plain_lines
    assert last == f"{TASK_RUNNER} /opt/py/bin/python -c pass"  # the shell stays the parent
    assert plain_last == "exec /opt/py/bin/python -c pass"


def test_a_job_without_error_file_or_array_leaves_them_out():
    options = job_directives(SlurmConfig(gpus=2), job_name="db", output="/s/slurm-%j.out")
    assert options[0] == "--job-name=db" and "--gres=gpu:2" in options
    assert options[-1] == "--output=/s/slurm-%j.out"
    assert not any(option.startswith(("--array", "--error")) for option in options)
    with pytest.raises(ValidationError, match="spans lines"):
        job_directives(SlurmConfig(), job_name="db", output="/s/a\nb")


# ----------------------------------------------------------------- commands, with fake SLURM


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """Put fake SLURM executables first on PATH; each logs its argv and answers from files.

    `fake_slurm(name, stdout="", stderr="", code=0)` sets what `name` answers; the returned
    object's `calls(name)` lists the argv of each call.
    """
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")

    class Fake:
        def __call__(self, name: str, stdout: str = "", stderr: str = "", code: int = 0) -> None:
            (bin_dir / f"{name}.stdout").write_text(stdout)
            (bin_dir / f"{name}.stderr").write_text(stderr)
            script = bin_dir / name
            script.write_text(
                "#!/bin/bash\n"
                f'printf "%s\\n" "$*" >> "{bin_dir}/{name}.calls"\n'
                f'cat "{bin_dir}/{name}.stdout"\n'
                f'cat "{bin_dir}/{name}.stderr" >&2\n'
                f"exit {code}\n"
            )
            script.chmod(0o755)

        def calls(self, name: str) -> list[list[str]]:
            path = bin_dir / f"{name}.calls"
            if not path.exists():
                return []
            return [line.split(" ") for line in path.read_text().splitlines()]

    return Fake()


def test_sbatch_returns_the_job_id(fake_slurm):
    fake_slurm("sbatch", stdout="4242;cluster\n")
    assert sbatch("/tmp/job.sh", ["--dependency=afterany:41"]) == "4242"
    assert fake_slurm.calls("sbatch") == [["--parsable", "--dependency=afterany:41", "/tmp/job.sh"]]


def test_a_refused_submission_carries_command_and_stderr(fake_slurm):
    stderr = "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
    fake_slurm("sbatch", stderr=stderr, code=1)
    with pytest.raises(SubmissionError) as info:
        sbatch("/tmp/job.sh")
    error = info.value
    assert isinstance(error, SlurmCommandError) and isinstance(error, ExecutorError)
    assert error.command == ["sbatch", "--parsable", "/tmp/job.sh"]
    assert error.returncode == 1 and error.stderr == stderr
    assert "`sbatch --parsable /tmp/job.sh` failed with exit code 1" in str(error)
    assert "Invalid partition name specified" in str(error)


def test_unexpected_sbatch_output_is_a_submission_error(fake_slurm):
    fake_slurm("sbatch", stdout="Submitted batch job 12\n")
    with pytest.raises(SubmissionError, match="unexpected sbatch output"):
        sbatch("/tmp/job.sh")


def test_squeue_asks_about_all_jobs_in_one_call(fake_slurm):
    fake_slurm(
        "squeue",
        stdout="12_0|RUNNING|None\n12_1|PENDING|JobArrayTaskLimit\n13|COMPLETED|None\n"
        "14_3|PENDING|Dependency\n",
    )
    states = squeue(["12", 13, "14"])
    assert states == {
        "12_0": TaskState("RUNNING", "None"),
        "12_1": TaskState("PENDING", "JobArrayTaskLimit"),
        "13": TaskState("COMPLETED", "None"),
        "14_3": TaskState("PENDING", "Dependency"),
    }
    [call] = fake_slurm.calls("squeue")
    assert call == [
        "--noheader",
        "--states=all",
        "--array",
        "--jobs",
        "12,13,14",
        "--format=%i|%T|%r",
    ]
    assert squeue([]) == {}
    assert len(fake_slurm.calls("squeue")) == 1


def test_squeue_of_forgotten_jobs_is_empty_but_other_failures_raise(fake_slurm):
    fake_slurm("squeue", stderr="slurm_load_jobs error: Invalid job id specified\n", code=1)
    assert squeue(["99"]) == {}
    fake_slurm(
        "squeue", stderr="slurm_load_jobs error: Unable to contact slurm controller\n", code=1
    )
    with pytest.raises(SlurmCommandError, match="Unable to contact slurm controller") as info:
        squeue(["99"])
    assert info.value.command[0] == "squeue"


def test_sacct_records_with_pending_ranges_expanded(fake_slurm):
    fake_slurm(
        "sacct",
        stdout="30|CANCELLED by 0|0:0|None\n32_0|COMPLETED|0:0|None\n32_1|FAILED|3:0|None\n"
        "32_[2-4,7%2]|PENDING|0:0|JobArrayTaskLimit\n",
    )
    accounting = sacct(["30", "32"])
    assert accounting.available
    records = accounting.records
    assert records["30"] == AccountingRecord("CANCELLED", "0:0", "None")
    assert records["32_1"] == AccountingRecord("FAILED", "3:0", "None")
    assert sorted(k for k, r in records.items() if r.state == "PENDING") == [
        "32_2",
        "32_3",
        "32_4",
        "32_7",
    ]
    [call] = fake_slurm.calls("sacct")
    assert "--allocations" in call and "--parsable2" in call and "30,32" in call


def test_sacct_without_accounting_storage_is_empty_and_says_so(fake_slurm):
    fake_slurm("sacct", stderr="Slurm accounting storage is disabled\n", code=1)
    accounting = sacct(["1"])
    assert accounting.records == {} and accounting.available is False


def test_scancel_is_one_call_and_ignores_ended_jobs(fake_slurm):
    fake_slurm(
        "scancel",
        stderr="scancel: error: Kill job error on job id 5: Invalid job id specified\n",
        code=1,
    )
    scancel(["5", "6_2"])
    scancel([])
    assert fake_slurm.calls("scancel") == [["5", "6_2"]]
    fake_slurm("scancel", stderr="scancel: error: Access/permission denied\n", code=1)
    with pytest.raises(SlurmCommandError, match="permission denied"):
        scancel(["5"])


def test_job_ids_are_checked_before_any_command_runs(fake_slurm):
    fake_slurm("scancel")
    with pytest.raises(ValidationError, match="not a SLURM job id"):
        scancel(["5; rm -rf /"])
    assert fake_slurm.calls("scancel") == []


def test_missing_slurm_commands_say_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SlurmCommandError, match="sbatch not found on PATH") as info:
        sbatch("/tmp/job.sh")
    assert info.value.returncode == 127


def test_the_runner_can_be_replaced(monkeypatch):
    seen = []

    def runner(argv):
        seen.append(list(argv))
        return subprocess.CompletedProcess(argv, 0, "77\n", "")

    monkeypatch.setattr(commands, "run_command", runner)
    assert sbatch("job.sh") == "77"
    assert seen == [["sbatch", "--parsable", "job.sh"]]


def test_task_keys():
    assert parse_task_key("123_7") == ("123", 7)
    assert parse_task_key("123") == ("123", None)
    for bad in ("x", "123_", "123_[1-3]"):
        with pytest.raises(ValidationError):
            parse_task_key(bad)


# ------------------------------------------------ a second submission while the first runs


def _earlier_submission(root, experiment_id: str, job_id: str = "700") -> None:
    """`submission.json` of an earlier sweep: 6 runs as one array job of 3 tasks x 2 runs."""
    import json

    directory = root / "slurm" / "s-earlier"
    directory.mkdir(parents=True)
    entry = {
        "job_id": job_id,
        "state": "submitted",
        "offset": 0,
        "runs_per_task": 2,
        "task_ranges": [[0, 2]],
    }
    submission = {"experiment_id": experiment_id, "session": "s-earlier", "total": 6}
    (directory / "submission.json").write_text(json.dumps({**submission, "jobs": [entry]}))


class _Runs:
    """An experiment of runs `r0`, `r1`, ... and a store holding the records given."""

    def __init__(self, experiment_id: str, records: dict[int, dict] | None = None):
        from types import SimpleNamespace

        self.experiment_id = experiment_id
        self._spec = lambda i: SimpleNamespace(run_id=f"r{i}")
        self.records = {f"r{i}": {"run_id": f"r{i}", **r} for i, r in (records or {}).items()}

    def run_spec(self, index: int):
        return self._spec(index)

    def get_records(self, run_ids):
        return (self.records[r] for r in run_ids if r in self.records)


FAILED_EARLIER = {"status": "failed", "attempt": 1, "provenance": {"session": "s-earlier"}}


@pytest.mark.parametrize(
    ("squeue", "pending", "records", "refused"),
    [
        ("700_1|RUNNING|None\n", [2, 3], {}, True),  # task 1 runs runs 2 and 3, still wanted
        ("700_1|RUNNING|None\n", [4, 5], {}, False),  # task 1's runs are recorded: it is ending
        # runs 2 and 3 failed and are recorded by that sweep: task 1 is only exiting
        ("700_1|RUNNING|None\n", [2, 3], {2: FAILED_EARLIER, 3: FAILED_EARLIER}, False),
        # one of them recorded by another sweep: task 1 may still run the other
        ("700_1|RUNNING|None\n", [2, 3], {2: FAILED_EARLIER}, True),
        ("700_2|PENDING|JobArrayTaskLimit\n", [5], {}, True),
        ("700_[1-2]|PENDING|JobArrayTaskLimit\n", [0], {}, True),  # unexpanded: assume the worst
        ("700_1|COMPLETING|None\n", [2], {}, False),
        ("700_1|CANCELLED|None\n", [2], {}, False),
        ("", [2], {}, False),  # forgotten by the controller
    ],
)
def test_a_second_submission_is_refused_while_the_first_runs_its_runs(
    fake_slurm, tmp_path, squeue, pending, records, refused
):
    from metalab.executors.slurm import SlurmExecutor

    _earlier_submission(tmp_path, "sweep:1")
    fake_slurm("squeue", stdout=squeue)
    experiment = store = _Runs("sweep:1", records)
    executor = SlurmExecutor(SlurmConfig(), work_dir=tmp_path)
    if refused:
        with pytest.raises(ExecutorError, match=r"sweep:1 already has SLURM jobs .* jobs 700\)"):
            executor.check_submission(experiment, store, pending)
    else:
        executor.check_submission(experiment, store, pending)
    # one squeue call about the earlier jobs, none when the records settle it; none for
    # another experiment or nothing to do
    asked = [] if len(records) == len(pending) else ["700"]
    assert [c[c.index("--jobs") + 1] for c in fake_slurm.calls("squeue")] == asked
    executor.check_submission(_Runs("other:1"), store, pending)
    executor.check_submission(experiment, store, [])
    assert len(fake_slurm.calls("squeue")) == len(asked)


# ------------------------------------------------------------- the executor's contract hooks


def _plan(session: str = "s-earlier", store=None, locator=None, total: int = 6):
    from types import SimpleNamespace

    from metalab.sweep import SweepRef

    no_directory = SimpleNamespace(  # a database store, say
        work_directory=lambda: None, footprint=lambda runs: {}
    )
    return SimpleNamespace(
        experiment=SimpleNamespace(experiment_id="sweep:1", name="sweep"),
        store=no_directory if store is None else store,
        ref=SweepRef(store=locator, experiment_key="key", session=session),
        session=session,
        run_ids=[f"r{i}" for i in range(total)],
        pending=list(range(total)),
        skipped=0,
    )


def test_slurm_executor_is_an_executor():
    from metalab.contracts import Executor
    from metalab.executors.slurm import SlurmExecutor

    assert isinstance(SlurmExecutor(SlurmConfig()), Executor)


def test_jobqueue_executor_is_an_executor():
    from metalab.contracts import Executor
    from metalab.executors.jobqueue import JobqueueExecutor

    assert isinstance(JobqueueExecutor(SlurmConfig()), Executor)


def test_follower_follows_the_submission_the_manifest_points_to(tmp_path):
    import json

    from metalab.executors.slurm import SlurmExecutor
    from metalab.executors.slurm.submission import config_document

    _earlier_submission(tmp_path, "sweep:1")
    path = tmp_path / "slurm" / "s-earlier" / "submission.json"
    config = SlurmConfig(memory="2G", retries=2, escalate={"memory": 2}, setup=["export X=1"])
    document = json.loads(path.read_text())
    path.write_text(
        json.dumps({**document, "config": config_document(config), "attempts": {"3": 2}})
    )
    manifest = {"session": "s-earlier", "executor_details": {"work_dir": str(tmp_path)}}

    follower = SlurmExecutor.follower(_plan(), manifest)
    assert isinstance(follower, SlurmExecutor)
    assert follower.config == config and follower.work_dir == tmp_path
    assert follower.min_attempts(_plan()) == {3: 2}
    assert follower.min_attempts(_plan("another")) == {}
    # no record of that sweep, or no directory to look in: the store alone is watched
    assert SlurmExecutor.follower(_plan("another"), manifest) is None
    assert SlurmExecutor.follower(_plan(), {"session": "s-earlier"}) is None


def test_cancel_cancels_the_jobs_of_the_named_sweep_only(fake_slurm, tmp_path):
    from metalab.executors.slurm import SlurmExecutor

    _earlier_submission(tmp_path, "sweep:1")
    manifest = {"executor_details": {"work_dir": str(tmp_path)}}
    follower = SlurmExecutor.follower(_plan(), manifest)
    assert follower is not None
    fake_slurm("scancel")
    follower.cancel("another")
    assert fake_slurm.calls("scancel") == []
    follower.cancel("s-earlier")
    follower.cancel("s-earlier")
    assert fake_slurm.calls("scancel") == [["700"], ["700"]]


def test_the_config_in_the_submission_record_rebuilds_the_config():
    import json

    from metalab.executors.slurm.submission import config_document

    config = SlurmConfig(
        modules=["gcc"], extra_directives={"constraint": "v100"}, escalate={"time": 1.5}
    )
    document = json.loads(json.dumps(config_document(config)))
    assert document["modules"] == ["gcc"] and document["escalate"] == {"time": 1.5}
    assert SlurmConfig(**document) == config


def test_a_password_in_the_locator_stays_out_of_the_job_file_and_scripts(tmp_path, monkeypatch):
    import cloudpickle

    from metalab.executors.slurm import SlurmExecutor

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    locator = "postgresql://lab:s3cret@db.example:5433/runs?schema=x"
    plan = _plan("s-secret", locator=locator)
    described = SlurmExecutor(SlurmConfig(), work_dir=tmp_path / "work").describe(plan)

    directory = Path(described["directory"])
    job = cloudpickle.loads((directory / "job.pkl").read_bytes())
    assert job.store == "postgresql://lab@db.example:5433/runs?schema=x"
    passfile = tmp_path / "home" / ".metalab" / "pgpass" / "s-secret"
    assert passfile.read_text() == "db.example:5433:runs:lab:s3cret\n"
    assert oct(passfile.stat().st_mode & 0o777) == "0o600"
    (entry,) = described["jobs"]
    script = Path(entry["script"]).read_text()
    assert f"export PGPASSFILE={passfile}" in script and "s3cret" not in script
    assert described["to_submit"] == 6 and described["tasks"] == 6


@pytest.mark.parametrize("requeue", [False, True])
def test_tasks_are_requeued_by_slurm_only_with_requeue(requeue):
    """A cluster may requeue every job by default (JobRequeue=1): without `requeue`, the
    script says --no-requeue, so a preempted task ends and its runs are submitted again."""
    script = _render(SlurmConfig(requeue=requeue), _job())
    assert ("#SBATCH --requeue\n" in script) is requeue
    assert ("#SBATCH --no-requeue\n" in script) is not requeue
