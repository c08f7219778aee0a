"""`metalab postgres status` tells the truth when a server it did not start is listening: at
PostgreSQL's default port when no service is recorded, or at the address of a service that
is not running."""

from __future__ import annotations

import json
import os
import shutil
import socket

import pytest
from click.testing import CliRunner
from service_checks import missing_service

from metalab.services import postgres as service
from metalab.services.binaries import find_binaries
from metalab.services.cli import postgres as postgres_group
from metalab.services.listener import listener
from metalab.services.state import ServiceRecord, write_record

pytestmark = pytest.mark.postgres


def cli(*args: str):
    return CliRunner().invoke(postgres_group, list(args), catch_exceptions=False)


@pytest.fixture
def foreign_port(postgres_server, monkeypatch) -> int:
    """The port of the test server, a server metalab did not start, made the default port."""
    import psycopg

    params = psycopg.conninfo.conninfo_to_dict(postgres_server)
    if str(params.get("host", "localhost")) not in ("127.0.0.1", "localhost"):
        missing_service(f"the test server {postgres_server} does not listen on 127.0.0.1")
    port = int(params.get("port", 5432))
    monkeypatch.setenv("PGPORT", str(port))
    return port


def may_inspect() -> bool:
    """Whether this process may look at the test server's process (root, or its owner)."""
    port = int(os.environ["PGPORT"])
    return listener("127.0.0.1", port).data_dir is not None


def inspected_phrase() -> str:
    """What status says of the test server: metalab did not start it, or (when its process
    cannot be looked at) only that this service did not."""
    who = "metalab" if may_inspect() else "this service"
    return f"a PostgreSQL server that {who} did not start"


def a_free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_no_service_but_another_server_on_the_default_port(tmp_path, foreign_port):
    result = cli("status", "--store", str(tmp_path))
    assert result.exit_code == 3
    lines = result.output.splitlines()
    assert lines[0] == f"PostgreSQL: absent (no service recorded in {tmp_path}/services/postgres)"
    assert inspected_phrase() in lines[1]
    assert lines[1].endswith(f"is listening on 127.0.0.1:{foreign_port}")
    shown = json.loads(cli("status", "--store", str(tmp_path), "--json").output)
    assert shown["state"] == "absent" and shown["up"] is False
    assert shown["other_server"]["address"] == f"127.0.0.1:{foreign_port}"
    assert shown["other_server"]["started_by_metalab"] is (False if may_inspect() else None)


def test_a_stopped_service_whose_port_another_server_took(tmp_path, foreign_port):
    record = ServiceRecord(
        kind="local",
        state="stopped",
        user="metalab",
        database="metalab",
        auth="trust",
        data_dir=str(tmp_path / "data"),
        host="127.0.0.1",
        port=foreign_port,
    )
    directory = service.service_dir(tmp_path)
    directory.mkdir(parents=True)
    write_record(directory, record)
    result = cli("status", "--store", str(tmp_path))
    assert result.exit_code == 3
    lines = result.output.splitlines()
    assert lines[0] == "PostgreSQL: down"
    assert inspected_phrase() in lines[1]
    assert "it is not this service's server, which is not running" in lines[1]
    shown = json.loads(cli("status", "--store", str(tmp_path), "--json").output)
    assert shown["reachable"] is True and shown["up"] is False
    assert shown["other_server"]["address"] == f"127.0.0.1:{foreign_port}"


def test_nothing_listening_says_absent_only(tmp_path, monkeypatch):
    monkeypatch.setenv("PGPORT", str(a_free_port()))
    result = cli("status", "--store", str(tmp_path))
    assert result.exit_code == 3
    assert result.output.strip() == (
        f"PostgreSQL: absent (no service recorded in {tmp_path}/services/postgres)"
    )
    assert (
        json.loads(cli("status", "--store", str(tmp_path), "--json").output)["other_server"] is None
    )


@pytest.mark.slow
def test_a_server_metalab_started_for_another_store_is_named(tmp_path, monkeypatch):
    from test_services import make_root, teardown

    try:
        find_binaries()
    except service.PostgresNotFoundError as exc:
        missing_service(str(exc))
    root = make_root()
    other_store = root / "other"
    try:
        started = service.start_local(store=other_store, auth="trust")
        monkeypatch.setenv("PGPORT", str(started.record.port))
        result = cli("status", "--store", str(tmp_path))
        assert result.exit_code == 3
        assert "a PostgreSQL server that metalab started for another service" in result.output
        assert os.path.realpath(started.record.data_dir) in result.output
    finally:
        teardown(other_store)
        shutil.rmtree(root, ignore_errors=True)
