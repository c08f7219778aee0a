"""The `metalab` command (also `python -m metalab`): look into stores and write reports.

metalab status STORE                 counts per status, per experiment
metalab report STORE [-o FILE]       a standalone HTML report of the runs
metalab store ls STORE               the experiments of a store and their submissions
metalab store export --from STORE --to FILE.parquet --format parquet   the runs table
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import click

from . import runs_table
from .errors import MetalabError, require
from .locators import redact_password, scheme_of
from .registry import open_store
from .report import report_from_store
from .results import load_results
from .results.tables import cause_of
from .services.cli import postgres as postgres_command
from .stores.fallback import FallbackStore
from .stores.locator import to_locator
from .stores.transfer import export_store, import_from_filestore


def _open(locator: str) -> Any:
    try:
        return open_store(locator, create=False)
    except MetalabError as exc:
        raise click.ClickException(str(exc)) from exc


def _records(store: Any) -> Any:
    """The store's records; a store that cannot be read is a one-line error, not a trace."""
    try:
        yield from store.iter_records()
    except MetalabError as exc:
        raise click.ClickException(str(exc)) from exc


def _public(store: Any) -> str:
    """The store's locator without a password."""
    return to_locator(store)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="metalab", prog_name="metalab")
def main() -> None:
    """metalab: reproducible experiment sweeps. Inspect stores, write reports."""


@main.command()
@click.argument("store")
@click.option(
    "--experiment", "-e", default=None, help="Only this experiment (name or name:version)."
)
def status(store: str, experiment: str | None) -> None:
    """Counts of runs per status, per experiment, in STORE (a path or a locator)."""
    opened = _open(store)
    counts: dict[str, dict[str, int]] = {}
    by_status, by_cause = _status_counts(opened, experiment)
    for (exp_id, state), count in by_status.items():
        counts.setdefault(exp_id or "?", {})[state] = count
    totals: dict[str, int | None] = {}
    for manifest in opened.manifests():
        exp_id = manifest.get("experiment_id")
        if exp_id and (experiment is None or experiment in (exp_id, manifest.get("name"))):
            totals[exp_id] = manifest.get("total_runs") or totals.get(exp_id)
            counts.setdefault(exp_id, {})
    if not counts:
        target = f"experiment {experiment!r}" if experiment else "any run"
        raise click.ClickException(f"{_public(opened)} holds no record of {target}")
    statuses = ["completed", "failed", "interrupted", "cancelled"]
    header = ["experiment", "total", *statuses, "missing"]
    rows = []
    for exp_id in sorted(counts):
        per = counts[exp_id]
        recorded = sum(per.values())
        total = totals.get(exp_id)
        missing = "" if total is None else str(max(total - recorded, 0))
        rows.append(
            [
                exp_id,
                "" if total is None else str(total),
                *(str(per.get(s, 0)) for s in statuses),
                missing,
            ]
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    click.echo(f"store {_public(opened)}")
    click.echo(
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))
        )
    )
    for row in rows:
        click.echo(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))
            )
        )
    causes: dict[str, list[str]] = {}
    for (exp_id, cause), count in sorted(by_cause.items()):
        causes.setdefault(exp_id, []).append(f"{cause} {count}")
    for exp_id, parts in sorted(causes.items()):
        click.echo(f"{exp_id}: lost to the scheduler: {', '.join(parts)}")


Counts = dict[tuple[str, str], int]


def _status_counts(store: Any, experiment: str | None) -> tuple[Counts, Counts]:
    """Runs per (experiment id, status) and lost runs per (experiment id, cause): from the
    runs' record columns where pandas is installed (a record is read only for a run that did
    not complete), else from the records themselves."""
    try:
        results = load_results(store, experiment)
        if runs_table.available():
            frame = results.to_dataframe(include_params=False, include_metrics=False)
            return _counts(frame, "status"), _counts(frame, "cause")
        by_status: Counter[tuple[str, str]] = Counter()
        by_cause: Counter[tuple[str, str]] = Counter()
        for record in results.records:
            exp_id = str(record.get("experiment_id") or "")
            by_status[exp_id, str(record.get("status"))] += 1
            cause = cause_of(record)
            if cause is not None:
                by_cause[exp_id, str(cause)] += 1
        return dict(by_status), dict(by_cause)
    except MetalabError as exc:
        raise click.ClickException(str(exc)) from exc


def _counts(frame: Any, column: str) -> dict[tuple[str, str], int]:
    """Runs per (experiment id, value of `column`), runs without a value left out."""
    if not len(frame) or column not in frame:
        return {}
    sizes = frame.groupby(["experiment_id", column], dropna=column == "cause").size()
    return {(str(e), str(s)): int(n) for (e, s), n in sizes.items()}


@main.command()
@click.argument("store")
@click.option("--output", "-o", default=None, help="The HTML file (default: ./report.html).")
@click.option(
    "--experiment", "-e", default=None, help="Only this experiment (name or name:version)."
)
def report(store: str, output: str | None, experiment: str | None) -> None:
    """Write a standalone HTML report of the runs in STORE."""

    try:
        path = report_from_store(store, output=output, experiment=experiment, load=load_results)
    except MetalabError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:  # a directory that may not be written, a full disk
        where = exc.filename or output or "report.html"
        raise click.ClickException(f"cannot write {where!r}: {exc.strerror or exc}") from exc
    click.echo(f"wrote {path}")


@main.group()
def store() -> None:
    """List, export and import stores."""


@store.command("ls")
@click.argument("store")
def store_ls(store: str) -> None:
    """The experiments of STORE with their submissions and recorded runs."""
    opened = _open(store)
    recorded: dict[str, int] = {}
    for record in _records(opened):
        exp_id = record.get("experiment_id", "?")
        recorded[exp_id] = recorded.get(exp_id, 0) + 1
    manifests: dict[str, list[dict[str, Any]]] = {}
    for manifest in opened.manifests():
        manifests.setdefault(manifest.get("experiment_id", "?"), []).append(manifest)
    click.echo(f"store {_public(opened)}")
    for exp_id in sorted(set(recorded) | set(manifests)):
        subs = manifests.get(exp_id, [])
        last = max((m.get("submitted_at", "") for m in subs), default="")
        total = subs[-1].get("total_runs") if subs else None
        click.echo(
            f"  {exp_id}: {recorded.get(exp_id, 0)} recorded"
            + (f" of {total}" if total is not None else "")
            + f", {len(subs)} submission(s)"
            + (f", last {last}" if last else "")
        )


def _transfer(kind: str, source: str, destination: str, experiment: str | None) -> None:
    if kind == "import" and scheme_of(source) != "file":
        raise click.ClickException(
            f"--from {redact_password(source)!r}: `metalab store import` reads a file store (a "
            "directory); to copy from any store to any other, use `metalab store export "
            "--from SOURCE --to DESTINATION`"
        )
    copy = import_from_filestore if kind == "import" else export_store
    try:
        report = copy(source, destination, experiment_id=experiment)
    except MetalabError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(str(report))


@store.command("export")
@click.option("--from", "source", required=True, help="The store to read (path or locator).")
@click.option(
    "--to",
    "destination",
    required=True,
    help="The store to write (created if new), or with --format parquet the file to write.",
)
@click.option(
    "--experiment", "-e", default=None, help="Only this experiment (name or name:version)."
)
@click.option(
    "--format",
    "format_",
    type=click.Choice(["store", "parquet"]),
    default="store",
    show_default=True,
    help="store: copy runs, artifacts, logs and manifests; parquet: write the runs table.",
)
def store_export(source: str, destination: str, experiment: str | None, format_: str) -> None:
    """Copy every record, artifact, log, derived metric and manifest into another store, or
    (--format parquet) write the runs table, one row per run, to a Parquet file.

    Idempotent: running it again copies only what changed.
    """
    if format_ == "parquet":
        _export_table(source, destination, experiment)
        return
    _transfer("export", source, destination, experiment)


def _export_table(source: str, destination: str, experiment: str | None) -> None:
    """Write the runs table of `source` to the Parquet file `destination` (atomically)."""
    import os

    if not destination.endswith(".parquet"):
        raise click.ClickException(
            f"--to {destination!r}: with --format parquet, name a .parquet file to write"
        )
    try:
        opened = _open(source)
        table = load_results(opened, experiment).to_arrow()
        pq = require("pyarrow.parquet", "pandas", "metalab store export --format parquet")
    except MetalabError as exc:
        raise click.ClickException(str(exc)) from exc
    if experiment is not None and table.num_rows == 0:
        held = sorted({str(m["experiment_id"]) for m in opened.manifests()})
        if not any(experiment in (e, e.partition(":")[0]) for e in held):
            raise click.ClickException(
                f"{_public(opened)} holds no experiment {experiment!r}; it holds: "
                f"{', '.join(held) or 'nothing'} (nothing was written)"
            )
    tmp = f"{destination}.{os.getpid()}.tmp"
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, destination)
    except OSError as exc:
        raise click.ClickException(f"cannot write {destination!r}: {exc.strerror or exc}") from exc
    click.echo(f"wrote {table.num_rows} runs to {destination}")


@store.command("import")
@click.option("--from", "source", required=True, help="The file store (a directory) to read.")
@click.option("--to", "destination", required=True, help="The store to write (created if new).")
@click.option(
    "--experiment", "-e", default=None, help="Only this experiment (name or name:version)."
)
def store_import(source: str, destination: str, experiment: str | None) -> None:
    """Import a file store into another store (e.g. PostgreSQL); idempotent."""
    _transfer("import", source, destination, experiment)


@store.command("sync")
@click.option("--primary", required=True, help="The primary store (path or locator).")
@click.option("--fallback", required=True, help="The fallback store that took writes meanwhile.")
@click.option(
    "--experiment", "-e", default=None, help="Only this experiment (name or name:version)."
)
def store_sync(primary: str, fallback: str, experiment: str | None) -> None:
    """Copy what a FallbackStore wrote to its fallback into the primary, once it is back."""
    try:
        report = FallbackStore(primary, _open(fallback)).sync(experiment)
    except MetalabError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(str(report))


main.add_command(postgres_command)


def run() -> None:
    """Entry point of `python -m metalab`."""
    main(prog_name="metalab")


if __name__ == "__main__":  # pragma: no cover
    run()
