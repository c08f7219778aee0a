"""A reproducible fault campaign: kills, a PostgreSQL restart, crafted stores, bad inputs.

    uv run --all-extras python benchmarks/fault_campaign.py [--seed 0] [--kills 20] ...

Cases (each counted as trials, survived or rejected, and failures):

* driver kills: a subprocess runs a sweep on the default executor (a local Dask cluster) into a
  fresh file store; the campaign sends SIGKILL (or SIGINT, as Ctrl-C does) to the driver's
  process group at a moment a seeded RNG picks, then resumes with fresh subprocesses until the
  sweep is done, and checks the store: one completed record per run id, named after it, with
  the expected index and attempt, a `.done` marker each, no claim and no temporary file left;
* worker kills: SIGKILL to one Dask worker process (a child of the driver) mid-sweep; the same
  driver must finish the sweep, each run recorded once;
* a PostgreSQL restart mid-sweep (`pg_ctlcluster ... stop`, 2 s, `start`) once about 30% of
  the runs are recorded; the sweep must finish with each run recorded once (`--no-postgres`
  leaves it out);
* crafted file stores (a run id that climbs out of the store, mismatching ids, an empty
  `_meta.json`, an empty claim, torn JSON, ...): `load_results`, `compute_derived`, a resume
  and `metalab store export` must neither fail nor write outside the store;
* bad inputs to the public API: each must raise `ValidationError` (or the documented error)
  at once, with nothing written.

The exit status is 1 when any invariant broke. The script also runs the sweep of a driver when
called with `--driver SPEC` (what the campaign starts in its subprocesses).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import faulthandler
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import metalab
from metalab import claims

RUN_ID_LENGTH = 32
EXPERIMENT = "campaign"


# ---------------------------------------------------------------- the sweep under test
@metalab.operation
def nap(params, context, capture):
    """Note the execution (one appended line), sleep a few ms, record one metric."""
    with open(context["executions"], "a") as fh:
        fh.write(f"{params['i']}\n")
    time.sleep(context["sleep"])
    capture.metric("i", params["i"])


def campaign_experiment(runs: int, sleep: float, executions: str) -> metalab.Experiment:
    """`runs` runs of `nap`, one per index; `executions` is the file each execution notes."""
    return metalab.Experiment(
        name=EXPERIMENT,
        version="1",
        context={"sleep": sleep, "executions": executions},
        operation=nap,
        params=metalab.grid(i=range(runs)),
        seeds=metalab.seeds(base=0),
    )


def driver(spec: dict[str, Any]) -> int:
    """Run the sweep `spec` describes to its end (what a campaign subprocess does)."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    exp = campaign_experiment(spec["runs"], spec["sleep"], spec["executions"])
    results = metalab.run(exp, spec["store"]).result()
    statuses: dict[str, int] = {}
    for run in results:
        statuses[run.status] = statuses.get(run.status, 0) + 1
    print(json.dumps({"statuses": statuses}), flush=True)
    return 0 if statuses.get("completed", 0) == spec["runs"] else 3


# ---------------------------------------------------------------- processes
def become_subreaper() -> None:
    """Adopt the processes orphaned by a kill (the driver's workers), as an init does, so
    killed ones do not linger as zombies (whose pids still look alive) when this machine's
    init does not reap them."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def reap_orphans(own: set[int]) -> None:
    """Collect the exit status of adopted children that ended (not of our own Popens)."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in own:
            continue
        stat = _proc_stat(int(entry))
        if stat is not None and stat[1] == me and stat[0] == "Z":
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(int(entry), os.WNOHANG)


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgid) of `pid`, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    return fields[0].decode(), int(fields[1]), int(fields[2])


def group_members(pgid: int) -> list[int]:
    """Processes of process group `pgid`, zombies included (a zombie's pid still looks
    alive to whoever checks whether a claim's owner runs)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None and stat[2] == pgid:
                members.append(int(entry))
    return members


def worker_processes(parent: int) -> list[int]:
    """The Dask worker processes a driver spawned (its multiprocessing spawn children)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _proc_stat(int(entry))
        if stat is None or stat[1] != parent or stat[0] == "Z":
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if b"multiprocessing.spawn" in cmdline:
            found.append(int(entry))
    return sorted(found)


class Driver:
    """A driver subprocess in a process group of its own (as a shell starts a command)."""

    def __init__(self, spec: dict[str, Any], log_dir: Path, tag: str, adopted: set[int]):
        self.stdout_path = log_dir / f"{tag}.out"
        self.stderr_path = log_dir / f"{tag}.err"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--driver", json.dumps(spec)],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=log_dir,
            )
        self.pgid = self.proc.pid
        self.started = time.monotonic()
        adopted.add(self.proc.pid)
        self._own = adopted

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signum)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill_all(self) -> None:
        """SIGKILL the whole group and wait until none of it is left, reaped zombies too."""
        self.signal_group(signal.SIGKILL)
        self.proc.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            reap_orphans(self._own)
            if not group_members(self.pgid):
                return
            time.sleep(0.05)
        print(f"processes of group {self.pgid} left: {group_members(self.pgid)}", file=sys.stderr)

    def hung(self, store: Path | None) -> str:
        """Describe a driver that does not end: its threads' stacks go to the campaign's
        stderr, the store's records and claims (with whether each owner runs) are returned."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGUSR1)  # faulthandler: every thread's stack
        time.sleep(1.0)
        stacks = self.stderr_path.read_text(errors="replace").splitlines()
        print(f"--- stacks of the driver {self.proc.pid} that did not end:", file=sys.stderr)
        print("\n".join(stacks[-60:]), file=sys.stderr)
        if store is None:
            return ""
        owners = []
        for path in (store / "claims").rglob("*.claim"):
            try:
                owner = json.loads(path.read_bytes())
                pid = owner.get("pid") if isinstance(owner, dict) else None
            except (OSError, ValueError):
                pid = None
            stat = _proc_stat(pid) if isinstance(pid, int) else None
            state = "gone" if stat is None else f"state {stat[0]}"
            owners.append(f"pid {pid} {state}")
        return f"{count_records(store)} records, claims: {', '.join(owners) or 'none'}"

    def stderr_lines(self) -> list[str]:
        text = self.stderr_path.read_text(errors="replace")
        return [line for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------- file store checks
def count_records(root: Path) -> int:
    """Record files in a (version 2) file store's `runs/` now."""
    total = 0
    try:
        shards = os.listdir(root / "runs")
    except FileNotFoundError:
        return 0
    for shard in shards:
        with contextlib.suppress(OSError):
            total += sum(1 for n in os.listdir(root / "runs" / shard) if n.endswith(".json"))
    return total


def verify_file_store(root: Path, expected: dict[str, int], max_attempt: int) -> list[str]:
    """What breaks "each run recorded exactly once, completed, nothing left over" in `root`."""
    problems: list[str] = []
    records: dict[str, list[Path]] = {}
    markers: set[str] = set()
    for path in (root / "runs").rglob("*"):
        if path.is_dir():
            continue
        name = path.name
        if name.endswith(".tmp"):
            problems.append(f"temporary file left: {path.relative_to(root)}")
        elif name.endswith(".json"):
            records.setdefault(name[: -len(".json")], []).append(path)
        elif name.endswith(".done"):
            markers.add(name[: -len(".done")])
    for path in (root / "claims").rglob("*"):
        if not path.is_dir() and not path.name.endswith(".tmp"):  # those are counted below
            problems.append(f"claim file left: {path.relative_to(root)}")
    for path in root.rglob("*.tmp"):
        if "runs" not in path.relative_to(root).parts[:1]:
            problems.append(f"temporary file left: {path.relative_to(root)}")
    for run_id in sorted(set(records) - set(expected)):
        problems.append(f"record of an unknown run id: {run_id}")
    for run_id, index in expected.items():
        paths = records.get(run_id, [])
        if len(paths) != 1:
            problems.append(f"run {index} ({run_id}): {len(paths)} record files")
            continue
        try:
            record = json.loads(paths[0].read_bytes())
        except (OSError, ValueError) as exc:
            problems.append(f"run {index}: unreadable record ({exc})")
            continue
        wrong = []
        if record.get("run_id") != run_id:
            wrong.append(f"run_id {record.get('run_id')!r}")
        if record.get("index") != index:
            wrong.append(f"index {record.get('index')!r}")
        if record.get("experiment_id") != f"{EXPERIMENT}:1":
            wrong.append(f"experiment_id {record.get('experiment_id')!r}")
        if record.get("status") != "completed":
            wrong.append(f"status {record.get('status')!r}")
        attempt = record.get("attempt")
        if not isinstance(attempt, int) or not 1 <= attempt <= max_attempt:
            wrong.append(f"attempt {attempt!r} (expected 1..{max_attempt})")
        if paths[0].parent.name != run_id[:2]:
            wrong.append(f"in shard {paths[0].parent.name}")
        if run_id not in markers:
            wrong.append("no .done marker")
        if wrong:
            problems.append(f"run {index} ({run_id}): {', '.join(wrong)}")
    return problems


def executions(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    except FileNotFoundError:
        return 0


# ---------------------------------------------------------------- results
@dataclass
class Case:
    """One row of the table."""

    name: str
    trials: int = 0
    survived: int = 0
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counted_as: str = "survived"

    def fail(self, trial: str, problems: list[str]) -> None:
        shown = [p if len(p) <= 240 else p[:237] + "..." for p in problems[:5]]
        if len(problems) > 5:
            shown.append(f"... {len(problems) - 5} more")
        self.failures.append(f"{trial}: " + "; ".join(shown))


def format_table(cases: list[Case]) -> str:
    header = ("case", "trials", "survived/rejected", "failures", "notes")
    lines = [header]
    for case in cases:
        lines.append(
            (
                case.name,
                str(case.trials),
                f"{case.survived} {case.counted_as}",
                str(len(case.failures)),
                "; ".join(case.notes),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    text = []
    for line in lines:
        cells = [cell.ljust(w) for cell, w in zip(line, widths)] + [line[-1]]
        text.append("  ".join(cells).rstrip())
    text.insert(1, "  ".join("-" * w for w in widths) + "  -----")
    return "\n".join(text)


# ---------------------------------------------------------------- driver kills
@dataclass
class Settings:
    runs: int
    sleep: float
    timeout: float
    work: Path
    rng: random.Random
    adopted: set[int] = field(default_factory=set)
    startup: float = 4.0  # seconds until a driver's first record, measured by calibrate()
    strict_ctrl_c: bool = False  # Ctrl-C must exit 130 with one line on stderr


def new_trial(settings: Settings, tag: str) -> tuple[dict[str, Any], dict[str, int], Path]:
    """A fresh store for one trial: the driver's spec, the expected run ids, the trial dir."""
    trial = settings.work / tag
    trial.mkdir(parents=True)
    spec = {
        "store": str(trial / "store"),
        "runs": settings.runs,
        "sleep": settings.sleep,
        "executions": str(trial / "executions.txt"),
    }
    exp = campaign_experiment(settings.runs, settings.sleep, spec["executions"])
    expected = {run_id: i for i, run_id in enumerate(exp.run_ids())}
    return spec, expected, trial


def resume_until_done(
    settings: Settings, spec: dict[str, Any], trial: Path, tag: str, attempts: int = 3
) -> list[str]:
    """Start fresh drivers until one ends the sweep; problems if none does."""
    problems = []
    for n in range(attempts):
        resumed = Driver(spec, trial, f"{tag}-resume{n}", settings.adopted)
        status = resumed.wait(settings.timeout)
        if status is None:
            state = resumed.hung(Path(spec["store"]) if "://" not in spec["store"] else None)
            resumed.kill_all()
            problems.append(f"resume {n} did not end within {settings.timeout:.0f} s ({state})")
            continue
        resumed.kill_all()  # nothing of it may be left when the store is checked
        if status == 0:
            return problems
        problems.append(f"resume {n} exited with {status}: {tail(resumed)}")
    return [*problems, "the sweep was not done after the resumes"]


def tail(drv: Driver) -> str:
    lines = drv.stderr_lines()
    return lines[-1][:200] if lines else "(no stderr)"


def calibrate(settings: Settings, case: Case) -> None:
    """One uninterrupted sweep: it must pass the checks, and it times a driver's start-up."""
    spec, expected, trial = new_trial(settings, "calibration")
    drv = Driver(spec, trial, "driver", settings.adopted)
    first = None
    while drv.proc.poll() is None:
        if first is None and count_records(Path(spec["store"])):
            first = time.monotonic() - drv.started
        if time.monotonic() - drv.started > settings.timeout:
            drv.kill_all()
            break
        time.sleep(0.02)
    total = time.monotonic() - drv.started
    status = drv.proc.returncode
    drv.kill_all()
    settings.startup = first if first is not None else total
    case.trials += 1
    problems = [] if status == 0 else [f"driver exited with {status}: {tail(drv)}"]
    problems += verify_file_store(Path(spec["store"]), expected, max_attempt=1)
    runs = executions(Path(spec["executions"]))
    if runs != settings.runs:
        problems.append(f"{runs} executions of {settings.runs} runs")
    if problems:
        case.fail("calibration", problems)
    else:
        case.survived += 1
    case.notes.append(
        f"start-up to first record {settings.startup:.1f} s, whole sweep {total:.1f} s"
    )


def wait_for_moment(settings: Settings, drv: Driver, store: Path) -> str:
    """Wait for the moment this trial's kill lands; describe it. One trial in five lands at a
    random time in the driver's start-up, the others once a random number of runs is recorded."""
    rng = settings.rng
    if rng.random() < 0.2:
        delay = rng.uniform(0.0, settings.startup)
        deadline = drv.started + delay
        while drv.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return f"at {delay:.2f} s"
    target = rng.randint(1, settings.runs - 1)
    while drv.proc.poll() is None and count_records(store) < target:
        if time.monotonic() - drv.started > settings.timeout:
            break
        time.sleep(0.01)
    return f"at {target} records"


def driver_kills(settings: Settings, case: Case, signum: int, trials: int) -> None:
    """Kill (or interrupt) the driver's process group, resume until done, check the store."""
    sig = signal.Signals(signum).name
    landed = {"start-up": 0, "mid-sweep": 0, "after the end": 0}
    exits: dict[str, int] = {}
    one_line = 0
    reexecuted = 0
    last_lines: list[str] = []
    for n in range(trials):
        tag = f"{sig.lower()}-{n:03d}"
        spec, expected, trial = new_trial(settings, tag)
        store = Path(spec["store"])
        drv = Driver(spec, trial, "driver", settings.adopted)
        moment = wait_for_moment(settings, drv, store)
        ended_first = drv.proc.poll() is not None
        recorded = count_records(store)
        drv.signal_group(signum)
        status = drv.wait(60)
        if status is None:
            exits["hung (killed after 60 s)"] = exits.get("hung (killed after 60 s)", 0) + 1
            drv.hung(store)
        drv.kill_all()
        status = drv.proc.returncode if status is not None else None
        if ended_first:
            landed["after the end"] += 1
        elif recorded == 0:
            landed["start-up"] += 1
        else:
            landed["mid-sweep"] += 1
        problems = []
        if signum == signal.SIGINT and not ended_first and status is not None:
            exits[str(status)] = exits.get(str(status), 0) + 1
            lines = drv.stderr_lines()
            if status == 130 and len(lines) == 1:
                one_line += 1
            else:
                if lines:
                    last_lines = [f"{len(lines)} stderr lines, last: {lines[-1][:120]}"]
                if settings.strict_ctrl_c:
                    problems.append(f"Ctrl-C: exit status {status}, {len(lines)} stderr lines")
        problems += resume_until_done(settings, spec, trial, tag)
        max_attempt = 1 if signum == signal.SIGKILL else 2
        problems += verify_file_store(store, expected, max_attempt)
        reexecuted += executions(Path(spec["executions"])) - settings.runs
        case.trials += 1
        if problems:
            case.fail(f"trial {n} ({moment}, {recorded} recorded)", problems)
        else:
            case.survived += 1
    case.notes.append(", ".join(f"{v} {k}" for k, v in landed.items()))
    case.notes.append(f"{reexecuted} runs executed again after the kills")
    if signum == signal.SIGINT:
        shown = ", ".join(f"{k}: {v}" for k, v in sorted(exits.items()))
        interrupted = sum(exits.values())
        case.notes.append(
            f"exit status {shown or 'none'}; status 130 with one stderr line in "
            f"{one_line} of {interrupted}"
        )
        case.notes.extend(last_lines)


# ---------------------------------------------------------------- worker kills
def worker_kills(settings: Settings, case: Case, trials: int) -> None:
    """SIGKILL one Dask worker process mid-sweep; the same driver must finish the sweep."""
    reexecuted = 0
    for n in range(trials):
        tag = f"worker-{n:03d}"
        spec, expected, trial = new_trial(settings, tag)
        store = Path(spec["store"])
        drv = Driver(spec, trial, "driver", settings.adopted)
        target = settings.rng.randint(max(1, settings.runs // 5), max(1, settings.runs * 3 // 5))
        while drv.proc.poll() is None and count_records(store) < target:
            if time.monotonic() - drv.started > settings.timeout:
                break
            time.sleep(0.01)
        workers = worker_processes(drv.proc.pid)
        problems = []
        killed = None
        if not workers:
            problems.append("no worker process found among the driver's children")
        else:
            killed = settings.rng.choice(workers)
            with contextlib.suppress(ProcessLookupError):
                os.kill(killed, signal.SIGKILL)
        at = count_records(store)
        status = drv.wait(settings.timeout)
        if status is None:
            state = drv.hung(store)
            problems.append(f"the driver did not end within {settings.timeout:.0f} s ({state})")
        elif status != 0:
            problems.append(f"the driver exited with {status}: {tail(drv)}")
        drv.kill_all()
        if problems:  # the data must still be whole after a resume
            problems += resume_until_done(settings, spec, trial, tag)
        problems += verify_file_store(store, expected, max_attempt=1)
        reexecuted += executions(Path(spec["executions"])) - settings.runs
        case.trials += 1
        if problems:
            case.fail(f"trial {n} (worker {killed} killed at {at} records)", problems)
        else:
            case.survived += 1
    case.notes.append(f"{reexecuted} runs executed again after the kills")


# ---------------------------------------------------------------- PostgreSQL restart
def postgres_restart(settings: Settings, case: Case, runs: int, server: str) -> None:
    """Restart the local server once ~30% of a PostgreSQL sweep is recorded."""
    try:
        import psycopg

        from metalab.stores import postgres
    except ImportError as exc:
        case.fail("setup", [f"psycopg is not installed ({exc}): install the postgres extra"])
        return
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions or shutil.which("pg_ctlcluster") is None:
        case.fail("setup", ["no local Debian PostgreSQL cluster (pg_ctlcluster, /etc/postgresql)"])
        return
    cluster = [versions[-1], "main"]
    schema = f"campaign_{uuid.uuid4().hex[:12]}"
    locator = f"{server}{'&' if '?' in server else '?'}schema={schema}"
    trial = settings.work / "postgres"
    trial.mkdir()
    spec = {
        "store": locator,
        "runs": runs,
        "sleep": settings.sleep,
        "executions": str(trial / "executions.txt"),
    }
    exp = campaign_experiment(runs, settings.sleep, spec["executions"])
    expected = {run_id: i for i, run_id in enumerate(exp.run_ids())}
    problems: list[str] = []

    def count(query: str) -> int:
        with psycopg.connect(server, connect_timeout=3) as conn:
            return conn.execute(query.replace("{schema}", f'"{schema}"')).fetchone()[0]

    def ctl(action: str) -> None:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, action],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def online() -> bool:
        listed = subprocess.run(["pg_lsclusters", "-h", *cluster], capture_output=True, text=True)
        return "online" in listed.stdout

    drv = Driver(spec, trial, "driver", settings.adopted)
    at_stop = at_start = None
    try:
        while drv.proc.poll() is None:
            if time.monotonic() - drv.started > settings.timeout:
                break
            try:
                seen = count("SELECT count(*) FROM {schema}.runs")
            except psycopg.Error:
                seen = 0  # the schema is not made yet
            if seen >= runs * 0.3:
                at_stop = seen
                ctl("stop")
                try:
                    time.sleep(2)
                finally:
                    ctl("start")
                at_start = count("SELECT count(*) FROM {schema}.runs")
                break
            time.sleep(0.05)
    except Exception as exc:  # noqa: BLE001 - the campaign reports it as a failure
        problems.append(f"restart failed: {type(exc).__name__}: {exc}")
    finally:
        if not online():
            ctl("start")
    status = drv.wait(settings.timeout)
    if status is None:
        drv.hung(None)
        problems.append(f"the driver did not end within {settings.timeout:.0f} s")
    elif status != 0:
        problems.append(f"the driver exited with {status}: {tail(drv)}")
    drv.kill_all()
    try:
        with psycopg.connect(server, connect_timeout=10) as conn:
            rows = conn.execute(
                f'SELECT run_id, run_index, status, record FROM "{schema}".runs'
            ).fetchall()
            claims = conn.execute(f'SELECT count(*) FROM "{schema}".claims').fetchone()[0]
        found = {row[0]: row for row in rows}
        for run_id in sorted(set(found) - set(expected)):
            problems.append(f"record of an unknown run id: {run_id}")
        for run_id, index in expected.items():
            row = found.get(run_id)
            if row is None:
                problems.append(f"run {index}: no record")
                continue
            record = json.loads(row[3])
            if row[1] != index or row[2] != "completed" or record.get("attempt") != 1:
                problems.append(
                    f"run {index}: index {row[1]}, status {row[2]}, attempt {record.get('attempt')}"
                )
        if claims:
            problems.append(f"{claims} claims left")
    except psycopg.Error as exc:
        problems.append(f"cannot check the store: {exc}")
    finally:
        with contextlib.suppress(Exception):
            postgres.PostgresStore(postgres.parse_locator(locator)).drop()
    case.trials += 1
    if at_stop is None:
        case.notes.append("the sweep ended before 30% could be seen: no restart")
        problems.append("no restart took place")
    else:
        case.notes.append(f"stopped at {at_stop}/{runs} records, {at_start} when started again")
    case.notes.append(f"{executions(Path(spec['executions'])) - runs} runs executed again")
    if problems:
        case.fail("restart", problems)
    else:
        case.survived += 1


# ---------------------------------------------------------------- crafted stores
def snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, tuple[int, int]]:
    """Every file under `root` but those under `skip`, with its size and mtime."""
    seen = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        for name in filenames:
            st = os.lstat(here / name)
            seen[str(here / name)] = (st.st_size, st.st_mtime_ns)
    return seen


def crafted_stores(settings: Settings, case: Case) -> None:
    """Craft damaged or hostile file stores; loading, deriving, resuming and exporting them
    must neither fail nor write outside the store."""
    runs = 6
    canary = f"metalab-campaign-canary-{uuid.uuid4().hex[:8]}"
    climb = "../" * 12 + f"tmp/{canary}"

    def first_record(store: Path) -> Path:
        return sorted((store / "runs").rglob("*.json"))[0]

    def edit_record(store: Path, **changes: Any) -> None:
        path = first_record(store)
        record = json.loads(path.read_bytes())
        record.update(changes)
        path.write_text(json.dumps(record))

    def other_id(store: Path) -> str:
        return sorted((store / "runs").rglob("*.json"))[1].name[:RUN_ID_LENGTH]

    def empty_claim(store: Path) -> None:
        path = first_record(store)
        run_id = path.name[:RUN_ID_LENGTH]
        path.unlink()
        (store / "runs" / run_id[:2] / f"{run_id}.done").unlink(missing_ok=True)
        claim = store / "claims" / run_id[:2] / f"{run_id}.claim"
        claim.parent.mkdir(parents=True, exist_ok=True)
        claim.write_bytes(b"")
        old = time.time() - 30
        os.utime(claim, (old, old))

    def torn(store: Path) -> None:
        path = first_record(store)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])

    dead = f"{claims.HOST_TAG}-999999999"  # a writer tag whose pid cannot run

    def dead_writer_tmp(store: Path) -> None:
        path = first_record(store)
        (path.parent / f".{path.name}.{dead}.0.tmp").write_bytes(b"{")

    def dead_claim_tmp(store: Path) -> None:
        run_id = first_record(store).name[:RUN_ID_LENGTH]
        shard = store / "claims" / run_id[:2]
        shard.mkdir(parents=True, exist_ok=True)
        (shard / f".{run_id}.claim.{dead}.0.tmp").write_bytes(b"")

    def bad_manifest(store: Path) -> None:
        manifest = sorted((store / "experiments").glob("*.json"))[0]
        data = json.loads(manifest.read_bytes())
        data.update(experiment_id="../../../tmp/x:1", name="../../../tmp/x")
        (store / "experiments" / "x_20260101T000000.000000Z.json").write_text(json.dumps(data))

    crafts: dict[str, Callable[[Path], None]] = {
        "run_id ../../../tmp/x": lambda s: edit_record(s, run_id="../../../tmp/x"),
        "run_id climbing to /tmp": lambda s: edit_record(s, run_id=climb),
        "run_id of another run": lambda s: edit_record(s, run_id=other_id(s)),
        "experiment_id ../../x:1": lambda s: edit_record(s, experiment_id="../../x:1"),
        "artifact ref ../../../tmp/x": lambda s: edit_record(
            s, artifacts=[{"name": "a", "ref": "../../../tmp/x", "kind": "json"}]
        ),
        "empty _meta.json": lambda s: (s / "_meta.json").write_bytes(b""),
        "torn _meta.json": lambda s: (s / "_meta.json").write_bytes(b'{"format": "meta'),
        "empty claim file": empty_claim,
        "torn record JSON": torn,
        "temporary record of a dead writer": dead_writer_tmp,
        "temporary claim of a dead writer": dead_claim_tmp,
        "manifest naming ../../../tmp/x": bad_manifest,
    }
    must_warn = {label for label in crafts if label.startswith(("run_id", "manifest"))}
    warned = 0
    for n, (label, craft) in enumerate(crafts.items()):
        outer = settings.work / "crafted" / f"{n:02d}" / "a" / "b" / "c"
        store = outer / "store"
        exported = outer / "exported"
        outer.mkdir(parents=True)
        executions_file = outer.parent / "executions.txt"
        exp = campaign_experiment(runs, 0.0, str(executions_file))
        metalab.run(exp, str(store), executor="inline").result()
        craft(store)
        watched = settings.work / "crafted" / f"{n:02d}"
        skip = (store, exported)
        before = snapshot(watched, skip)
        canaries_before = set(Path("/tmp").glob(f"{canary}*"))
        problems: list[str] = []
        caught: list[str] = []
        started = time.monotonic()
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            for step in ("load_results", "compute_derived", "run log/artifacts", "resume"):
                try:
                    _crafted_step(step, exp, str(store))
                except Exception as exc:  # noqa: BLE001 - a failure of the case
                    problems.append(f"{step} raised {type(exc).__name__}: {exc}"[:160])
        caught = [f"{type(w.message).__name__}" for w in seen]
        export = ("store", "export", "--from", str(store), "--to", str(exported))
        cli = subprocess.run(
            [sys.executable, "-m", "metalab", *export],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if cli.returncode != 0:
            problems.append(f"store export exited {cli.returncode}: {cli.stderr.strip()[-200:]}")
        elapsed = time.monotonic() - started
        if elapsed > 30:
            problems.append(f"took {elapsed:.0f} s")
        after = snapshot(watched, skip)
        changed = sorted(
            p for p in after if before.get(p) != after[p] and p != str(executions_file)
        )
        if changed:
            problems.append(f"written outside the store: {changed[:3]}")
        left = sorted(str(p.relative_to(store)) for p in store.rglob("*.tmp"))
        if left:
            problems.append(f"temporary files of dead writers left: {left[:3]}")
        canaries = set(Path("/tmp").glob(f"{canary}*")) - canaries_before
        if canaries:
            problems.append(f"written outside the store: {sorted(map(str, canaries))}")
            for path in canaries:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                final = metalab.load_results(str(store))
            completed = sum(1 for r in final if r.status == "completed")
            if completed != runs:
                problems.append(f"{completed} of {runs} runs loaded completed after the resume")
        except Exception as exc:  # noqa: BLE001 - a failure of the case
            problems.append(f"load after the resume raised {type(exc).__name__}: {exc}"[:300])
        case.trials += 1
        if "UnsafeStoreWarning" in caught or "UnsafeStoreWarning" in cli.stderr:
            warned += 1
        elif label in must_warn:
            problems.append("no UnsafeStoreWarning")
        if problems:
            case.fail(label, problems)
        else:
            case.survived += 1
    case.notes.append(f"{warned} of {len(crafts)} stores gave an UnsafeStoreWarning")


def _crafted_step(step: str, exp: metalab.Experiment, store: str) -> None:
    if step == "resume":
        metalab.run(exp, store, executor="inline").result()
        return
    results = metalab.load_results(store)
    if step == "load_results":
        list(results)
    elif step == "compute_derived":
        results.compute_derived([_derived_double])
    else:
        _touch_runs(results)


def _derived_double(run):
    return {"double": 2 * run.metrics.get("i", 0)}


def _touch_runs(results: Any) -> None:
    """Read each run's log, derived values and artifacts (paths made from stored values)."""
    for run in results:
        _ = run.log
        _ = run.derived
        for name in run.artifacts:
            with contextlib.suppress(metalab.MetalabError, KeyError, FileNotFoundError):
                run.artifact(name)


# ---------------------------------------------------------------- bad inputs
@metalab.operation
def _noop(params, capture):
    capture.metric("ok", 1)


def _exp(**overrides: Any) -> metalab.Experiment:
    arguments = {
        "name": "bad",
        "version": "1",
        "context": {},
        "operation": _noop,
        "params": metalab.grid(a=[1, 2]),
        "seeds": metalab.seeds(base=0),
    }
    arguments.update(overrides)
    return metalab.Experiment(**arguments)


def bad_calls(store: str, existing: str) -> list[tuple[str, Callable[[], Any], tuple[type, ...]]]:
    """(call, thunk, accepted errors): each call is wrong and must be refused at once.
    `store` does not exist (nothing may create it); `existing` holds a completed sweep."""
    m = metalab
    from metalab.store import FallbackStore, create_store

    v: tuple[type, ...] = (m.ValidationError,)
    store_error: tuple[type, ...] = (m.StoreError,)  # documented for locators and stores
    cfg = m.SlurmConfig
    inline = "inline"
    return [
        ('Experiment(name="a"*300)', lambda: _exp(name="a" * 300), v),
        ('Experiment(name="")', lambda: _exp(name=""), v),
        ('Experiment(name="a/b")', lambda: _exp(name="a/b"), v),
        ('Experiment(name="../x")', lambda: _exp(name="../x"), v),
        ("Experiment(version=1)", lambda: _exp(version=1), v),
        ('Experiment(version="v"*300)', lambda: _exp(version="v" * 300), v),
        ("Experiment(context=5)", lambda: _exp(context=5), v),
        ("Experiment(operation=5)", lambda: _exp(operation=5), v),
        ("Experiment(params={'a': [1]})", lambda: _exp(params={"a": [1]}), v),
        ("Experiment(seeds=3)", lambda: _exp(seeds=3), v),
        ('Experiment(metadata="x")', lambda: _exp(metadata="x"), v),
        ('Experiment(tags="x")', lambda: _exp(tags="x"), v),
        ("Experiment(description=5)", lambda: _exp(description=5), v),
        ("grid(a=[])", lambda: m.grid(a=[]), v),
        ("grid(a=5)", lambda: m.grid(a=5), v),
        ("run(grid(a=[object()]))", lambda: m.run(_exp(params=m.grid(a=[object()])), store), v),
        ("random(space, n_trials=0)", lambda: m.random({"x": m.uniform(0, 1)}, n_trials=0), v),
        ("random(space, n_trials=-1)", lambda: m.random({"x": m.uniform(0, 1)}, n_trials=-1), v),
        ("random({'x': 5}, n_trials=3)", lambda: m.random({"x": 5}, n_trials=3), v),
        ("random(space, 3, seed='s')", lambda: m.random({"x": m.uniform(0, 1)}, 3, seed="s"), v),
        ("random({'x': uniform(1, 0)}, 3)", lambda: m.random({"x": m.uniform(1, 0)}, 3), v),
        ("uniform(0, nan)", lambda: m.uniform(0, math.nan), v),
        ("random({'x': loguniform(0, 1)}, 3)", lambda: m.random({"x": m.loguniform(0, 1)}, 3), v),
        (
            "random({'x': loguniform(-1, 1)}, 3)",
            lambda: m.random({"x": m.loguniform(-1, 1)}, 3),
            v,
        ),
        ("random({'x': randint(5, 1)}, 3)", lambda: m.random({"x": m.randint(5, 1)}, 3), v),
        ("randint(0.5, 3)", lambda: m.randint(0.5, 3), v),
        (
            "random({'x': loguniform_int(0, 10)}, 3)",
            lambda: m.random({"x": m.loguniform_int(0, 10)}, 3),
            v,
        ),
        ("choice([])", lambda: m.choice([]), v),
        ("manual([])", lambda: m.manual([]), v),
        ("manual([1, 2])", lambda: m.manual([1, 2]), v),
        ("seeds(base=0, replicates=0)", lambda: m.seeds(base=0, replicates=0), v),
        ("seeds(base=-1)", lambda: m.seeds(base=-1), v),
        ('seeds(base="0")', lambda: m.seeds(base="0"), v),
        ("seeds(base=0, replicates=True)", lambda: m.seeds(base=0, replicates=True), v),
        ('run(exp, resume="no")', lambda: m.run(_exp(), store, inline, resume="no"), v),
        ("run(exp, chunk_size=0)", lambda: m.run(_exp(), store, inline, chunk_size=0), v),
        ('run(exp, chunk_size="3")', lambda: m.run(_exp(), store, inline, chunk_size="3"), v),
        ('run(exp, executor="nope")', lambda: m.run(_exp(), store, "nope"), v),
        ("run(exp, executor=42)", lambda: m.run(_exp(), store, 42), v),
        ('run(exp, progress="fancy")', lambda: m.run(_exp(), store, inline, progress="fancy"), v),
        ("run(exp, derived_metrics=5)", lambda: m.run(_exp(), store, inline, derived_metrics=5), v),
        (
            "run(exp, derived_metrics=[5])",
            lambda: m.run(_exp(), store, inline, derived_metrics=[5]),
            v,
        ),
        ('run(exp, dry_run="yes")', lambda: m.run(_exp(), store, inline, dry_run="yes"), v),
        ('run("not an experiment")', lambda: m.run("not an experiment", store), v),
        (
            "run(exp, store=42)",
            lambda: m.run(_exp(), 42, inline),
            v,
        ),  # not a store: a wrong argument
        ('run(exp, "ftp://host/x")', lambda: m.run(_exp(), "ftp://host/x", inline), store_error),
        ('to_delayed(exp, chunk_size="3")', lambda: m.to_delayed(_exp(), store, chunk_size="3"), v),
        ("to_delayed(exp, chunk_size=2.5)", lambda: m.to_delayed(_exp(), store, chunk_size=2.5), v),
        ('to_delayed(exp, resume="no")', lambda: m.to_delayed(_exp(), store, resume="no"), v),
        ("load_results(store, experiment=5)", lambda: m.load_results(existing, experiment=5), v),
        ("load_results(missing store)", lambda: m.load_results(store), store_error),
        ('reconnect(store, trust="yes")', lambda: m.reconnect(existing, trust="yes"), v),
        ("reconnect(store, experiment=5)", lambda: m.reconnect(existing, experiment=5), v),
        ("DaskExecutor(n_workers=0)", lambda: m.DaskExecutor(n_workers=0), v),
        ("DaskExecutor(threads_per_worker=-1)", lambda: m.DaskExecutor(threads_per_worker=-1), v),
        ('DaskExecutor(processes="yes")', lambda: m.DaskExecutor(processes="yes"), v),
        ('DaskExecutor("tcp://127.0.0.1:1")', lambda: m.DaskExecutor("tcp://127.0.0.1:1"), v),
        ("DaskExecutor(chunk_size=0)", lambda: m.DaskExecutor(chunk_size=0), v),
        ("ThreadExecutor(max_workers=0)", lambda: m.ThreadExecutor(max_workers=0), v),
        ('ProcessExecutor(max_workers="2")', lambda: m.ProcessExecutor(max_workers="2"), v),
        ("JobqueueExecutor(cfg, jobs=0)", lambda: m.JobqueueExecutor(cfg(), jobs=0), v),
        ("JobqueueExecutor(cfg, jobs=-1)", lambda: m.JobqueueExecutor(cfg(), jobs=-1), v),
        ('JobqueueExecutor("cfg")', lambda: m.JobqueueExecutor("cfg"), v),
        (
            "JobqueueExecutor(cfg, jobs=2, maximum_jobs=1)",
            lambda: m.JobqueueExecutor(cfg(), jobs=2, maximum_jobs=1),
            v,
        ),
        ("JobqueueExecutor(cfg, processes=0)", lambda: m.JobqueueExecutor(cfg(), processes=0), v),
        ('SlurmExecutor("cfg")', lambda: m.SlurmExecutor("cfg"), v),
        ("SlurmExecutor(poll_interval=0)", lambda: m.SlurmExecutor(cfg(), poll_interval=0), v),
        ("SlurmExecutor(stall_after=-1)", lambda: m.SlurmExecutor(cfg(), stall_after=-1), v),
        ('SlurmConfig(time="forever")', lambda: cfg(time="forever"), v),
        ('SlurmConfig(memory="lots")', lambda: cfg(memory="lots"), v),
        ("SlurmConfig(cpus=0)", lambda: cfg(cpus=0), v),
        ("SlurmConfig(gpus=-1)", lambda: cfg(gpus=-1), v),
        ("SlurmConfig(max_array_size=0)", lambda: cfg(max_array_size=0), v),
        ("SlurmConfig(runs_per_task=0)", lambda: cfg(runs_per_task=0), v),
        ("SlurmConfig(retries=-1)", lambda: cfg(retries=-1), v),
        ("SlurmConfig(max_concurrent=0)", lambda: cfg(max_concurrent=0), v),
        ('SlurmConfig(retry_on_error="yes")', lambda: cfg(retry_on_error="yes"), v),
        (
            'SlurmConfig(extra_directives=["--x\\nrm -rf ~"])',
            lambda: cfg(extra_directives=["--comment=x\nrm -rf ~"]),
            v,
        ),
        ('SlurmConfig(escalate={"memory": 0})', lambda: cfg(escalate={"memory": 0}), v),
        (
            "FallbackStore(..., retry_after=-5)",
            lambda: FallbackStore(existing, f"{store}-fallback", retry_after=-5),
            v,
        ),
        (
            'FallbackStore(..., write_to_both="yes")',
            lambda: FallbackStore(existing, f"{store}-fallback", write_to_both="yes"),
            v,
        ),
        ("create_store(42)", lambda: create_store(42), store_error),
        ('create_store(path, create="no")', lambda: create_store(store, create="no"), v),
        (
            "create_store(postgresql://...?schema=" + "s" * 8 + "...(64))",
            lambda: create_store("postgresql://u@127.0.0.1:1/db?schema=" + "s" * 64),
            v,
        ),
        (
            "create_store(postgresql://...?colour=blue)",
            lambda: create_store("postgresql://u@127.0.0.1:1/db?schema=x&colour=blue"),
            v,
        ),
        ("operation(5)", lambda: m.operation(5), (TypeError, *v)),
        ('import_operation("noref")', lambda: m.import_operation("noref"), (ValueError,)),
        ("FilePath(5)", lambda: m.FilePath(5), v),
        (
            "run(exp with a missing FilePath)",
            lambda: m.run(_exp(context={"f": m.FilePath(f"{store}-missing.csv")}), store, inline),
            (m.ContextFileError, *v),
        ),
        ('register_codec("json")', lambda: m.register_codec("json"), (TypeError, *v)),
        (
            "results.filter(no_such_param=1)",
            lambda: m.load_results(existing).filter(no_such_param=1),
            v,
        ),
        ("results.where(okk__lt=1)", lambda: m.load_results(existing).where(okk__lt=1), v),
        ('results.metric_series("okk")', lambda: m.load_results(existing).metric_series("okk"), v),
        ("results[100] of 2 runs", lambda: m.load_results(existing)[100], (IndexError,)),
        (
            "results.compute_derived(5)",
            lambda: m.load_results(existing).compute_derived(5),
            v,
        ),
        (
            'results.compute_derived([f], overwrite="maybe")',
            lambda: m.load_results(existing).compute_derived([_derived_double], overwrite="maybe"),
            v,
        ),
    ]


def bad_inputs(settings: Settings, case: Case) -> None:
    """Each bad call must raise the expected error at once, leaving the directories as they were."""
    work = settings.work / "bad"
    work.mkdir()
    existing = work / "existing"
    metalab.run(_exp(), str(existing), executor="inline").result()
    # as a store some time after its sweep: its runs table cached, which a load may write
    # once its directories settle (whatever the call)
    past = time.time() - 60
    for shard in (existing / "runs").iterdir():
        os.utime(shard, (past, past))
    metalab.load_results(str(existing))
    store = work / "store"
    accepted, slow, wrong = [], [], []
    old_cwd = os.getcwd()
    for n, (label, call, errors) in enumerate(bad_calls(str(store), str(existing))):
        cwd = work / f"cwd-{n:03d}"
        cwd.mkdir()
        os.chdir(cwd)
        before = snapshot(work, ())
        started = time.monotonic()
        outcome = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = call()
                if isinstance(value, metalab.RunHandle):  # accepted: let it end
                    value.result(timeout=120)
        except errors:
            outcome = "rejected"
        except Exception as exc:  # noqa: BLE001 - the wrong error is a finding
            outcome = f"{type(exc).__name__}: {str(exc)[:120]}"
        elapsed = time.monotonic() - started
        after = snapshot(work, ())
        os.chdir(old_cwd)
        written = sorted(set(after) - set(before)) + sorted(
            p for p in before if p in after and before[p] != after[p]
        )
        case.trials += 1
        problems = []
        if outcome is None:
            accepted.append(label)
            problems.append("accepted")
        elif outcome != "rejected":
            wrong.append(f"{label} -> {outcome}")
            problems.append(f"raised {outcome}")
        if elapsed > 2:
            slow.append(label)
            problems.append(f"took {elapsed:.1f} s")
        if written:
            rel = [os.path.relpath(p, work) for p in written[:3]]
            problems.append(f"wrote {rel}")
        if store.exists():
            problems.append("created the store")
            shutil.rmtree(store)
        if problems:
            case.fail(label, problems)
        else:
            case.survived += 1
    case.notes.append(
        f"{len(accepted)} accepted" + (f": {', '.join(accepted)}" if accepted else "")
    )
    if wrong:
        case.notes.append(f"{len(wrong)} with another error")


# ---------------------------------------------------------------- main
def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0, help="seed of the RNG picking kill moments")
    p.add_argument("--runs", type=int, default=300, help="runs per driver sweep (default 300)")
    p.add_argument("--sleep-ms", type=float, default=5.0, help="each run's sleep (default 5)")
    p.add_argument("--kills", type=int, default=20, help="SIGKILL trials (default 20)")
    p.add_argument("--interrupts", type=int, default=4, help="SIGINT trials (default 4)")
    p.add_argument("--worker-kills", type=int, default=3, help="worker kill trials (default 3)")
    p.add_argument("--postgres-runs", type=int, default=1000, help="runs of the PostgreSQL sweep")
    p.add_argument("--no-postgres", action="store_true", help="leave out the PostgreSQL restart")
    p.add_argument(
        "--postgres",
        default=os.environ.get(
            "METALAB_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
        ),
        help="the server (default METALAB_TEST_POSTGRES or postgresql://postgres@127.0.0.1:5432/test)",
    )
    p.add_argument("--timeout", type=float, default=90, help="seconds a driver may take")
    p.add_argument("--keep", action="store_true", help="keep the stores (their path is printed)")
    p.add_argument(
        "--strict-ctrl-c",
        action="store_true",
        help="count a Ctrl-C that does not exit 130 with one line on stderr as a failure",
    )
    p.add_argument("--driver", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.driver:
        return driver(json.loads(args.driver))
    if args.runs < 2:
        raise SystemExit("--runs must be at least 2")
    become_subreaper()
    work = Path(tempfile.mkdtemp(prefix="metalab-campaign-"))
    settings = Settings(
        runs=args.runs,
        sleep=args.sleep_ms / 1000,
        timeout=args.timeout,
        work=work,
        rng=random.Random(args.seed),
        strict_ctrl_c=args.strict_ctrl_c,
    )
    started = time.monotonic()
    cases: list[Case] = []

    def stage(name: str, action: Callable[[Case], None], counted_as: str = "survived") -> None:
        case = Case(name, counted_as=counted_as)
        cases.append(case)
        print(f"{time.monotonic() - started:6.0f} s  {name} ...", file=sys.stderr, flush=True)
        try:
            action(case)
        except Exception:  # noqa: BLE001 - a case that breaks is a failure, the others run
            case.fail("campaign", [traceback.format_exc().strip().splitlines()[-1]])
            traceback.print_exc()

    try:
        stage("uninterrupted sweep (calibration)", lambda c: calibrate(settings, c))
        if args.kills:
            stage(
                "driver SIGKILL + resume",
                lambda c: driver_kills(settings, c, signal.SIGKILL, args.kills),
            )
        if args.interrupts:
            stage(
                "driver SIGINT (Ctrl-C) + resume",
                lambda c: driver_kills(settings, c, signal.SIGINT, args.interrupts),
            )
        if args.worker_kills:
            stage("Dask worker SIGKILL", lambda c: worker_kills(settings, c, args.worker_kills))
        if not args.no_postgres:
            stage(
                "PostgreSQL restart mid-sweep",
                lambda c: postgres_restart(settings, c, args.postgres_runs, args.postgres),
            )
        stage("crafted file stores", lambda c: crafted_stores(settings, c))
        stage("bad inputs", lambda c: bad_inputs(settings, c), counted_as="rejected")
    finally:
        reap_orphans(settings.adopted)
        if args.keep:
            print(f"stores kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - started
    print(format_table(cases))
    failures = [(case.name, f) for case in cases for f in case.failures]
    if failures:
        print("\nfailures:")
        for name, failure in failures:
            print(f"  {name}: {failure}")
    print(
        f"\nseed {args.seed}, {args.runs} runs per sweep of {args.sleep_ms:g} ms, "
        f"{elapsed:.0f} s in all"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
