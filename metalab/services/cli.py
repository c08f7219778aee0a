"""`metalab postgres start|stop|status`: a PostgreSQL server for metalab stores.

metalab postgres start [--store DIR] [--port N] [--print-store-locator]   on this machine
metalab postgres start --store DIR --slurm [--partition P --time T]      as a SLURM job
metalab postgres status [--store DIR] [--json]                            up (exit 0) or not (3)
metalab postgres stop [--store DIR]
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click

from ..errors import MetalabError
from ..executors.slurm.config import SlurmConfig
from . import postgres as service
from .postgres import ServiceStatus, StartResult
from .state import ServiceRecord

STATUS_DOWN_EXIT = 3
"""Exit code of `status` when the service is not up (as `pg_ctl status`)."""

_STORE_HELP = (
    "File-store directory whose service this is: its record goes to "
    "STORE/services/postgres/service.json, where workers find it. Default: your state "
    "directory (~/.local/state/metalab/postgres)."
)


def _fail(exc: MetalabError) -> click.ClickException:
    return click.ClickException(str(exc))


@click.group("postgres", context_settings={"help_option_names": ["-h", "--help"]})
def postgres() -> None:
    """Start, stop and inspect a PostgreSQL server for metalab stores."""


@postgres.command()
@click.option("--store", default=None, help=_STORE_HELP)
@click.option("--slurm", is_flag=True, help="Run the server as a SLURM job (needs --store).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data directory. Default: STORE/services/postgres/data, or under the state directory.",
)
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="TCP port. Default: a free one."
)
@click.option("--host", default=None, help="Address to listen on. Default: 127.0.0.1.")
@click.option(
    "--auth",
    type=click.Choice(["scram-sha-256", "trust"]),
    default="scram-sha-256",
    show_default=True,
    help="How clients log in: a generated password, or none (loopback only).",
)
@click.option("--user", default="metalab", show_default=True, help="Database role to create.")
@click.option("--database", default="metalab", show_default=True, help="Database to create.")
@click.option(
    "--os-user",
    default=None,
    help="Unprivileged OS user the server runs as. Default: you; as root, 'postgres'.",
)
@click.option(
    "--bin-dir",
    default=None,
    help="Directory of initdb, pg_ctl, postgres, pg_isready ($METALAB_POSTGRES_BIN).",
)
@click.option(
    "--print-store-locator",
    is_flag=True,
    help="Print the store locator on stdout (the password as ?passfile=, not itself).",
)
@click.option(
    "--inline-password",
    is_flag=True,
    help="With --print-store-locator: put the password itself into the printed locator.",
)
@click.option("--timeout", type=float, default=None, help="Seconds to wait for the server.")
@click.option("--partition", default=None, help="SLURM partition (--slurm).")
@click.option(
    "--time", "time_limit", default=None, help="SLURM time limit (--slurm), e.g. 1-00:00:00."
)
@click.option("--memory", default=None, help="SLURM memory (--slurm), e.g. 4G.")
@click.option("--cpus", type=click.IntRange(min=1), default=None, help="SLURM CPUs (--slurm).")
@click.option("--account", default=None, help="SLURM account (--slurm).")
@click.option("--qos", default=None, help="SLURM QOS (--slurm).")
def start(
    store: str | None,
    slurm: bool,
    print_store_locator: bool,
    inline_password: bool,
    **options: Any,
) -> None:
    """Start a PostgreSQL server (or report the one already running)."""
    try:
        result = _start_slurm(store, options) if slurm else _start_local(store, options)
        locator = result.record.locator(inline_password=inline_password and print_store_locator)
    except MetalabError as exc:
        raise _fail(exc) from exc
    verb = "already running" if result.already_running else "started"
    click.echo(f"PostgreSQL {verb}: {_describe(result.record)}", err=True)
    if print_store_locator:
        click.echo(locator)
    elif inline_password:
        click.echo("--inline-password only applies with --print-store-locator", err=True)


def _start_local(store: str | None, options: dict[str, Any]) -> StartResult:
    slurm_only = ("partition", "time_limit", "memory", "cpus", "account", "qos")
    given = [name for name in slurm_only if options[name] is not None]
    if given:
        names = ", ".join("--" + name.replace("time_limit", "time") for name in given)
        raise click.UsageError(f"{names} only apply with --slurm")
    timeout = options["timeout"] or service.LOCAL_TIMEOUT
    return service.start_local(
        store=store,
        data_dir=options["data_dir"],
        port=options["port"],
        host=options["host"] or service.DEFAULT_HOST,
        auth=options["auth"],
        user=options["user"],
        database=options["database"],
        os_user=options["os_user"],
        bin_dir=options["bin_dir"],
        timeout=timeout,
    )


def _start_slurm(store: str | None, options: dict[str, Any]) -> StartResult:
    if store is None:
        raise click.UsageError("--slurm needs --store: the job writes its record there")
    if options["port"] is not None or options["host"] is not None:
        raise click.UsageError("--port and --host do not apply with --slurm: the node picks")
    return service.start_slurm(
        store,
        config=_slurm_config(options),
        data_dir=options["data_dir"],
        auth=options["auth"],
        user=options["user"],
        database=options["database"],
        os_user=options["os_user"],
        bin_dir=options["bin_dir"],
        timeout=options["timeout"] or service.SLURM_TIMEOUT,
    )


def _slurm_config(options: dict[str, Any]) -> SlurmConfig:

    changes = {
        "partition": options["partition"],
        "time": options["time_limit"],
        "memory": options["memory"],
        "cpus": options["cpus"],
        "account": options["account"],
        "qos": options["qos"],
    }
    given = {key: value for key, value in changes.items() if value is not None}
    return dataclasses.replace(service.default_slurm_config(), **given)


@postgres.command()
@click.option("--store", default=None, help=_STORE_HELP)
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait.")
def stop(store: str | None, timeout: float) -> None:
    """Stop the server (fast shutdown, or cancel its SLURM job); fine if it is not running."""
    try:
        result = service.stop(store=store, timeout=timeout)
    except MetalabError as exc:
        raise _fail(exc) from exc
    if result.record is None:
        click.echo(f"no PostgreSQL service recorded in {result.service_dir}")
    elif result.was_running:
        click.echo(f"PostgreSQL stopped: {_describe(result.record)}")
    else:
        click.echo(f"PostgreSQL was not running: {_describe(result.record)}")


@postgres.command()
@click.option("--store", default=None, help=_STORE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(store: str | None, as_json: bool) -> None:
    """Show whether the server is up: address, pid, SLURM job, uptime. Exit code 3 if not."""
    try:
        result = service.status(store=store)
    except MetalabError as exc:
        raise _fail(exc) from exc
    click.echo(json.dumps(_status_dict(result), indent=2) if as_json else _status_text(result))
    if not result.up:
        raise SystemExit(STATUS_DOWN_EXIT)


def _status_dict(result: ServiceStatus) -> dict[str, Any]:
    record = result.record
    return {
        "state": result.state,
        "up": result.up,
        "reachable": result.reachable,
        "job_state": result.job_state,
        "other_server": None
        if result.other is None
        else {
            "address": result.other.address,
            "started_by_metalab": result.other.started_by_metalab,
            "data_dir": None if result.other.data_dir is None else str(result.other.data_dir),
        },
        "uptime_seconds": None if result.uptime is None else round(result.uptime),
        "locator": None if record is None or record.host is None else record.locator(),
        "service_dir": str(result.service_dir),
        "record": None if record is None else record.to_dict(),
    }


def _status_text(result: ServiceStatus) -> str:
    record = result.record
    other = [] if result.other is None else [f"  note:     {result.other.describe()}"]
    if other and record is not None:
        other[0] += ": it is not this service's server, which is not running"
    if record is None:
        return "\n".join(
            [f"PostgreSQL: absent (no service recorded in {result.service_dir})", *other]
        )
    lines = [f"PostgreSQL: {result.state}", *other, f"  kind:     {record.kind}"]
    if record.host is not None:
        lines.append(
            f"  address:  {record.host}:{record.port} (database {record.database}, "
            f"user {record.user}, auth {record.auth})"
        )
        lines.append(f"  locator:  {record.locator()}")
    if record.job_id is not None:
        lines.append(f"  job:      {record.job_id} ({result.job_state or 'not in squeue'})")
    if record.pid is not None:
        lines.append(f"  pid:      {record.pid} on {record.node}")
    if result.uptime is not None:
        lines.append(f"  uptime:   {_duration(result.uptime)}")
    lines.append(f"  data dir: {record.data_dir}")
    lines.append(f"  record:   {result.service_dir / 'service.json'}")
    if record.error:
        lines.append(f"  error:    {record.error}")
    return "\n".join(lines)


def _describe(record: ServiceRecord) -> str:
    where = f"{record.host}:{record.port}" if record.host is not None else "no address"
    parts = [where, f"database {record.database}", f"user {record.user}"]
    if record.job_id is not None:
        parts.append(f"SLURM job {record.job_id}")
    if record.pid is not None:
        parts.append(f"pid {record.pid}")
    return ", ".join(parts)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return (
        f"{days}d {hours:02d}:{minutes:02d}:{secs:02d}"
        if days
        else f"{hours:02d}:{minutes:02d}:{secs:02d}"
    )
