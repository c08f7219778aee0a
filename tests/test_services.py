"""`metalab postgres start|stop|status`: real PostgreSQL servers from the installed binaries.

Servers run from real `initdb`/`pg_ctl`/`postgres` processes, locally and as real SLURM jobs.
Every fixture that starts a server stops it (and, failing that, kills its postmaster or
cancels its job) whatever the test's outcome. Their directories live under /tmp with mode
0755, so that an unprivileged server account (`postgres`, when the tests run as root) can
reach its data directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from service_checks import missing_service

import metalab
from metalab.errors import ValidationError
from metalab.executors.slurm.arrays import ArrayJob
from metalab.executors.slurm.script import TASK_PROLOGUE, render_script
from metalab.processes import alive
from metalab.services import binaries, data_dir, server, slurm_job
from metalab.services import postgres as service
from metalab.services.account import server_account
from metalab.services.cli import postgres as postgres_group
from metalab.services.directory import service_dir
from metalab.services.passfile import ensure_password_file, read_password
from metalab.services.roles import scram_verifier
from metalab.services.state import ServiceRecord, read_record, write_record

CLI = "from metalab.services.cli import postgres; postgres()"


# ----------------------------------------------------------------------------- helpers


def cli_subprocess(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the `postgres` command group as a user would, in its own process."""
    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "200"},
    )


def cli(*args: str):
    return CliRunner().invoke(postgres_group, list(args), catch_exceptions=False)


def make_root() -> Path:
    """A directory an unprivileged server account can pass through."""
    root = Path(tempfile.mkdtemp(prefix="metalab-services-", dir="/tmp"))
    os.chmod(root, 0o755)
    return root


def connect(locator: str):
    psycopg = pytest.importorskip("psycopg")
    return psycopg.connect(locator, connect_timeout=10)


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=2):
        return True
    return False


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def teardown(store: Path) -> None:
    """Stop the service of `store`; if that fails, kill its postmaster or cancel its job."""
    try:
        service.stop(store=store, timeout=60)
        return
    except Exception:  # noqa: BLE001 - fall back to the blunt way below, whatever went wrong
        pass
    record = read_record(service_dir(store))
    if record is None:
        return
    if record.job_id is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["scancel", record.job_id], check=False, timeout=60)
    pid = server.postmaster_pid(Path(record.data_dir))
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 30
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)


@pytest.fixture(scope="session")
def pg_binaries() -> binaries.PostgresBinaries:
    try:
        return binaries.find_binaries()
    except service.PostgresNotFoundError as exc:
        missing_service(str(exc))
        raise


@pytest.fixture
def root():
    path = make_root()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def stores(root):
    """Stores whose services are stopped when the test ends, however it ends."""
    made: list[Path] = []

    def new(name: str = "store") -> Path:
        made.append(root / name)
        return root / name

    yield new
    for store in made:
        teardown(store)


# ------------------------------------------------------------- a local server, scram-sha-256


@pytest.fixture(scope="module")
def local_service(pg_binaries):
    """A server started by `metalab postgres start --print-store-locator` in a subprocess."""
    root = make_root()
    store = root / "store"
    try:
        out = cli_subprocess("start", "--store", str(store), "--print-store-locator")
        assert out.returncode == 0, out.stderr
        yield {"store": store, "locator": out.stdout.strip(), "out": out}
    finally:
        teardown(store)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_printed_locator_connects(local_service):
    with connect(local_service["locator"]) as conn:
        user, database = conn.execute("SELECT current_user, current_database()").fetchone()
    assert (user, database) == ("metalab", "metalab")


@pytest.mark.slow
def test_printed_locator_opens_a_postgres_store(local_service):
    try:
        from metalab.stores.postgres import PostgresStore
    except ImportError:
        with connect(local_service["locator"]) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        return
    store = PostgresStore.open(local_service["locator"] + "&schema=services_test")
    try:
        assert store.manifests() == []
        assert "passfile=" in store.locator
    finally:
        store.close()


@pytest.mark.slow
def test_password_stays_in_private_files(local_service):
    directory = service_dir(local_service["store"])
    record = read_record(directory)
    assert record is not None and record.password_file is not None
    password = read_password(Path(record.password_file))
    assert len(password) >= 32
    assert mode(record.password_file) == 0o600
    assert mode(directory / "service.json") == 0o600
    assert mode(record.data_dir) == 0o700
    out = local_service["out"]
    locator = local_service["locator"]
    assert password not in out.stdout + out.stderr
    assert password not in (directory / "service.json").read_text()
    assert password not in locator
    assert locator.endswith(f"?passfile={record.password_file}")
    inline = service.discover(local_service["store"], inline_password=True)
    assert inline is not None and password in inline
    with connect(inline) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.slow
def test_status_says_up(local_service):
    result = cli("status", "--store", str(local_service["store"]))
    assert result.exit_code == 0, result.output
    record = read_record(service_dir(local_service["store"]))
    assert "PostgreSQL: up" in result.output
    assert f"127.0.0.1:{record.port}" in result.output
    assert f"pid:      {record.pid}" in result.output
    assert "uptime:" in result.output
    as_json = json.loads(cli("status", "--store", str(local_service["store"]), "--json").output)
    assert as_json["up"] is True and as_json["state"] == "up"
    assert as_json["record"]["port"] == record.port
    assert as_json["uptime_seconds"] >= 0


@pytest.mark.slow
def test_start_twice_reports_the_running_server(local_service):
    before = read_record(service_dir(local_service["store"]))
    again = cli_subprocess("start", "--store", str(local_service["store"]), "--print-store-locator")
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stderr
    assert again.stdout.strip() == local_service["locator"]
    assert read_record(service_dir(local_service["store"])) == before


@pytest.mark.slow
def test_discover_finds_the_running_server(local_service):
    assert service.discover(local_service["store"]) == local_service["locator"]
    assert service.discover(f"file://{local_service['store']}") == local_service["locator"]


# ------------------------------------------------------------------------ stop and restart


@pytest.mark.slow
def test_stop_closes_the_port_and_restart_keeps_password_and_port(pg_binaries, stores):
    store = stores()
    started = service.start_local(store=store)
    assert not started.already_running
    port = started.record.port
    with connect(started.locator) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (42)")
        conn.commit()

    result = cli("stop", "--store", str(store))
    assert result.exit_code == 0 and "PostgreSQL stopped" in result.output
    assert not port_open("127.0.0.1", port)
    assert read_record(service_dir(store)).state == "stopped"
    assert service.discover(store) is None
    down = cli("status", "--store", str(store))
    assert down.exit_code == 3 and "PostgreSQL: down" in down.output
    again = cli("stop", "--store", str(store))
    assert again.exit_code == 0 and "was not running" in again.output

    restarted = service.start_local(store=store)
    assert restarted.record.port == port
    with connect(restarted.locator) as conn:
        assert conn.execute("SELECT x FROM kept").fetchone() == (42,)


@pytest.mark.slow
def test_trust_mode_needs_no_password(pg_binaries, stores, root):
    store = stores()
    started = service.start_local(store=store, auth="trust", data_dir=root / "trust-data")
    assert started.record.password_file is None
    assert not (service_dir(store) / "pgpass").exists()
    assert "passfile" not in started.locator
    with connect(started.locator) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("metalab",)
    assert service.status(store=store).up


@pytest.mark.slow
def test_custom_user_and_database(pg_binaries, stores):
    store = stores()
    started = service.start_local(store=store, user="lab_user", database="lab_db")
    with connect(started.locator) as conn:
        row = conn.execute("SELECT current_user, current_database()").fetchone()
    assert row == ("lab_user", "lab_db")


# ------------------------------------------------------------------------------------ errors


@pytest.mark.slow
def test_port_in_use_is_named(pg_binaries, stores):
    store = stores()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(service.PortInUseError, match=f"port {port} on 127.0.0.1"):
            service.start_local(store=store, port=port)
        out = cli_subprocess("start", "--store", str(store), "--port", str(port))
    assert out.returncode == 1
    assert f"port {port}" in out.stderr and "already in use" in out.stderr
    assert read_record(service_dir(store)) is None


def test_missing_binaries_name_where_metalab_looked(tmp_path, monkeypatch):
    with pytest.raises(service.PostgresNotFoundError) as info:
        binaries.find_binaries(tmp_path)
    assert str(tmp_path) in str(info.value) and "initdb" in str(info.value)
    assert isinstance(info.value, metalab.MetalabError)

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(binaries, "DEBIAN_BIN_GLOB", str(tmp_path / "none" / "*" / "bin"))
    with pytest.raises(service.PostgresNotFoundError, match="pg_ctl on PATH") as info:
        binaries.find_binaries()
    assert "none exists" in str(info.value)

    monkeypatch.setenv(binaries.BIN_DIR_ENV, str(tmp_path / "pg"))
    with pytest.raises(service.PostgresNotFoundError, match=str(tmp_path / "pg")):
        binaries.find_binaries()


def test_missing_binaries_on_the_command_line(tmp_path):
    result = cli("start", "--store", str(tmp_path / "store"), "--bin-dir", str(tmp_path))
    assert result.exit_code == 1
    assert "PostgreSQL server binaries not found" in result.output
    assert str(tmp_path) in result.output


def _fake_bin(directory: Path) -> Path:
    directory.mkdir(parents=True)
    for name in binaries.REQUIRED_BINARIES:
        (directory / name).write_text("#!/bin/sh\n")
        (directory / name).chmod(0o755)
    return directory


def test_binaries_search_prefers_path_then_newest_version(tmp_path, monkeypatch):
    for version in ("9.6", "15", "16"):
        _fake_bin(tmp_path / "lib" / version / "bin")
    monkeypatch.delenv(binaries.BIN_DIR_ENV, raising=False)
    monkeypatch.setattr(binaries, "DEBIAN_BIN_GLOB", str(tmp_path / "lib" / "*" / "bin"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert binaries.find_binaries().bin_dir == str(tmp_path / "lib" / "16" / "bin")

    linked = tmp_path / "local-bin"
    linked.mkdir()
    (linked / "pg_ctl").symlink_to(tmp_path / "lib" / "9.6" / "bin" / "pg_ctl")
    monkeypatch.setenv("PATH", str(linked))
    assert binaries.find_binaries().bin_dir == str(tmp_path / "lib" / "9.6" / "bin")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"auth": "md5"}, "auth='md5' is not valid"),
        ({"user": "no spaces"}, "user='no spaces' is not valid"),
        ({"database": "1db"}, "database='1db' is not valid"),
        ({"port": 0}, "port=0 is not valid"),
        ({"host": "0.0.0.0", "auth": "trust"}, "auth='trust' with host='0.0.0.0'"),
    ],
)
def test_invalid_options_are_named(tmp_path, options, message):
    with pytest.raises(ValidationError, match=message):
        service.start_local(store=tmp_path, **options)


def test_a_postgres_locator_is_not_a_service_store():
    with pytest.raises(ValidationError, match="file-store directory"):
        service_dir("postgresql://me@db/lab")


def test_slurm_options_are_checked_on_the_command_line(tmp_path):
    result = cli("start", "--slurm")
    assert result.exit_code == 2 and "--slurm needs --store" in result.output
    result = cli("start", "--slurm", "--store", str(tmp_path), "--port", "5555")
    assert result.exit_code == 2 and "do not apply with --slurm" in result.output
    result = cli("start", "--store", str(tmp_path), "--partition", "debug")
    assert result.exit_code == 2 and "--partition only apply with --slurm" in result.output


def test_status_and_stop_without_a_service(tmp_path):
    result = cli("status", "--store", str(tmp_path))
    assert result.exit_code == 3 and "absent" in result.output
    result = cli("stop", "--store", str(tmp_path))
    assert result.exit_code == 0 and "no PostgreSQL service recorded" in result.output
    assert service.discover(tmp_path) is None


# ------------------------------------------------------------------------ records and files


def test_record_round_trip_and_locators(tmp_path):
    password_file = ensure_password_file(tmp_path, "metalab")
    record = ServiceRecord(
        kind="local",
        state="running",
        user="metalab",
        database="lab",
        auth="scram-sha-256",
        data_dir=str(tmp_path / "data"),
        host="::1",
        port=5433,
        password_file=str(password_file),
    )
    write_record(tmp_path, record)
    assert read_record(tmp_path) == record
    assert mode(tmp_path / "service.json") == 0o600
    assert record.locator() == f"postgresql://metalab@[::1]:5433/lab?passfile={password_file}"
    password = read_password(password_file)
    assert record.locator(inline_password=True) == f"postgresql://metalab:{password}@[::1]:5433/lab"
    assert record.public_locator == "postgresql://metalab@[::1]:5433/lab"
    pending = record.replace(state="pending", host=None, port=None)
    with pytest.raises(service.ServiceError, match="no address"):
        pending.locator()


def test_password_file_is_kept_private_and_stable(tmp_path):
    path = ensure_password_file(tmp_path, "metalab")
    assert mode(path) == 0o600
    password = read_password(path)
    assert path.read_text() == f"*:*:*:metalab:{password}\n"
    path.chmod(0o644)
    assert ensure_password_file(tmp_path, "other") == path
    assert mode(path) == 0o600
    assert path.read_text() == f"*:*:*:other:{password}\n"


def test_default_service_dir_is_the_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert service_dir() == tmp_path / "state" / "metalab" / "postgres"
    assert service_dir(tmp_path / "s") == tmp_path / "s" / "services" / "postgres"


def test_scram_verifier_has_postgres_format():
    verifier = scram_verifier("secret")
    head, keys = verifier.split("$", 1)[1].split("$")
    iterations, salt = head.split(":")
    assert verifier.startswith("SCRAM-SHA-256$4096:")
    assert iterations == "4096" and len(salt) == 24
    assert [len(k) for k in keys.split(":")] == [44, 44]
    assert scram_verifier("secret") != verifier  # a fresh salt each time


def test_data_dir_out_of_reach_is_explained(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root runs the server as another account")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    account = server_account(None)
    with pytest.raises(service.ServiceError, match="cannot enter"):
        data_dir.prepare_data_dir(private / "data", account)


# ---------------------------------------------------------------------------- SLURM script


def test_job_script_holds_resources_setup_and_entry(tmp_path):
    config = metalab.SlurmConfig(
        partition="debug",
        time="2:00:00",
        memory="2G",
        cpus=2,
        account="lab",
        setup=["export X=1"],
        extra_directives=["--constraint=fast"],
        python="/opt/py/bin/python",
    )
    directory = tmp_path / "with space" / "services" / "postgres"
    script = slurm_job.render_script(config, directory)
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    for directive in (
        "--job-name=metalab-postgres",
        "--partition=debug",
        "--time=2:00:00",
        "--mem=2G",
        "--cpus-per-task=2",
        "--account=lab",
        "--constraint=fast",
        f"--output='{directory}/slurm-%j.out'",
    ):
        assert f"#SBATCH {directive}" in lines
    assert "export X=1" in lines
    assert lines[-1] == (f"exec /opt/py/bin/python -m metalab.services.slurm_job '{directory}'")


def test_job_script_reads_the_config_as_array_scripts_do(tmp_path):
    config = metalab.SlurmConfig(
        partition="gpu",
        gpus=1,
        qos="high",
        modules=["gcc/12"],
        conda_env="db env",
        extra_directives={"constraint": "ssd"},
        python="/opt/py/bin/python",
    )
    job = ArrayJob(
        shard=0, offset=0, runs_per_task=1, task_ids=(0,), throttle=None, lane=0, after=None
    )
    array = render_script(config, job, job_name="x", logs=tmp_path, command=["true"])
    service = slurm_job.render_script(config, tmp_path)

    def shared(script: str) -> list[str]:
        own = ("#SBATCH --job-name", "#SBATCH --array", "#SBATCH --output", "#SBATCH --error")
        # an array task's time-limit warning, and its runs submitted again when preempted
        own += ("#SBATCH --signal", "#SBATCH --no-requeue", *TASK_PROLOGUE)
        return [line for line in script.splitlines()[:-1] if not line.startswith(own)]

    assert shared(service) == shared(array)
    assert "#SBATCH --gres=gpu:1" in service.splitlines()
    assert not any(line.startswith("#SBATCH --error") for line in service.splitlines())


def test_node_entry_leaves_a_record_of_another_job_alone(tmp_path):
    record = ServiceRecord(
        kind="slurm",
        state="pending",
        user="metalab",
        database="metalab",
        auth="scram-sha-256",
        data_dir=str(tmp_path / "data"),
        job_id="111",
    )
    write_record(tmp_path, record)
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        assert slurm_job.serve(tmp_path, "222", claim_timeout=0.3) == 1
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    assert read_record(tmp_path) == record
    assert not (tmp_path / "data").exists()


# ----------------------------------------------------------------------- a real SLURM job


@pytest.fixture
def slurm_service(slurm_cluster, pg_binaries, stores):
    store = stores("slurm-store")
    config = metalab.SlurmConfig(partition=slurm_cluster, time="20:00", memory="1G", cpus=1)
    # the queue may be busy with other work: wait for a slot, up to a point
    started = service.start_slurm(store, config=config, timeout=400)
    return store, started, config


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.timeout(600)
def test_slurm_service_is_discovered_and_stopped(slurm_service):
    from metalab.executors.slurm import commands

    store, started, config = slurm_service
    record = started.record
    assert not started.already_running
    assert record.kind == "slurm" and record.state == "running" and record.job_id
    assert record.host == socket.gethostname()
    assert mode(service_dir(store) / "service.json") == 0o600

    locator = service.discover(store)
    assert locator is not None and "passfile=" in locator
    with connect(locator) as conn:
        assert conn.execute("SELECT inet_server_port()").fetchone() == (record.port,)

    status = service.status(store=store)
    assert status.up and status.job_state == "RUNNING" and status.state == "up"
    shown = cli("status", "--store", str(store))
    assert shown.exit_code == 0
    assert f"job:      {record.job_id} (RUNNING)" in shown.output

    again = service.start_slurm(store, config=config, timeout=60)
    assert again.already_running and again.record.job_id == record.job_id

    stopped = cli("stop", "--store", str(store), "--timeout", "90")
    assert stopped.exit_code == 0 and "PostgreSQL stopped" in stopped.output
    state = commands.squeue([record.job_id]).get(record.job_id)
    assert state is None or state.state not in ("PENDING", "RUNNING", "COMPLETING")
    assert read_record(service_dir(store)).state == "stopped"
    assert not port_open(record.host, record.port)
    assert service.discover(store) is None
    assert cli("status", "--store", str(store)).exit_code == 3


@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_job_not_up_in_time_is_cancelled(slurm_cluster, pg_binaries, stores):
    from metalab.executors.slurm import commands

    store = stores("held-store")
    config = metalab.SlurmConfig(
        partition=slurm_cluster, time="5:00", memory="1G", extra_directives=["--hold"]
    )
    with pytest.raises(service.ServiceTimeoutError, match="was cancelled") as info:
        service.start_slurm(store, config=config, timeout=3)
    assert isinstance(info.value, metalab.MetalabError)
    record = read_record(service_dir(store))
    assert record.state == "stopped" and record.job_id in str(info.value)
    state = commands.squeue([record.job_id]).get(record.job_id)
    assert state is None or state.state not in ("PENDING", "RUNNING")


@pytest.mark.slow
@pytest.mark.slurm
def test_refused_submission_is_recorded(slurm_cluster, pg_binaries, stores):
    from metalab.executors.slurm.commands import SubmissionError

    store = stores("refused-store")
    config = metalab.SlurmConfig(partition="no_such_partition", time="5:00", memory="1G")
    with pytest.raises(SubmissionError, match="partition"):
        service.start_slurm(store, config=config, timeout=30)
    record = read_record(service_dir(store))
    assert record.state == "failed" and "sbatch" in record.error
    assert service.status(store=store).state == "down"


def test_docs_list_every_start_option():
    from metalab.services.cli import start

    docs = (Path(__file__).parent.parent / "docs" / "services.md").read_text()
    for option in start.params:
        for name in option.opts:
            assert f"`{name}" in docs, f"docs/services.md does not mention {name}"
