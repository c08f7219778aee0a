"""PostgreSQL at scale: a store of N runs (default 1,000,000) read back.

How the store is filled
-----------------------
A fresh schema of the server (`--server`, default `METALAB_TEST_POSTGRES` or the local
`postgresql://postgres@127.0.0.1:5432/test`) becomes a metalab store. The experiment is the grid
`gene=range(N // 50)` x `expr_val=range(50)`, one replicate, operation `_ops.draw_per_case`
(one metric `x` in [0, 1), different from case to case).

1. A real sweep of its first B runs (`--block`, default 20,000) goes into the store with
   `metalab.run` on the default executor, in a fresh process (time reported for information).
   The experiment of B runs is the same grid cut short: as the last axis varies fastest, its
   run `i` has the params, seed and run id of run `i` of the whole sweep.
2. The other N - B rows are made inside PostgreSQL from those B. For every index `i >= B`,
   `Experiment.run_spec(i)` of the whole sweep gives the run id, the params and the params'
   fingerprint; these are copied (`COPY`) into a temporary table. Then, one block of B
   indices at a time, `INSERT INTO runs ... SELECT` takes the row of run `i % B` and replaces
   what differs: `run_id`, `run_index`, `params` (jsonb), and in the record text the run id,
   `"index"`/`"case"`, `"params"` and the params' fingerprint (`replace()` of the exact text
   metalab wrote; the fill stops if a record does not hold it). Everything else is the
   source run's: status, metric `x` (so it repeats every B runs; the filter below selects
   real runs), timestamps, duration and provenance.
3. `VACUUM (ANALYZE)` of the runs table, then a check of 200 random rows against
   `run_spec` (run id, index, case, params, fingerprint) and that every row has its table
   columns (`tabled`, copied with the rest from the source row), and finally `metalab.run` of the
   whole sweep, which must find every run done (a fresh process; its time is reported
   for information): it also writes the whole sweep's manifest, as a real sweep would have.

A sweep of all N runs is what `--block N` does. On the 2-core VM, with other work running, the
default executor swept 20,000 runs into PostgreSQL in 60 to 75 s (270 to 330 runs/s), so
1,000,000 runs would take about an hour; the fill of the other 980,000 rows takes minutes.

What is measured
----------------
Each measurement in a fresh process (pandas, pyarrow and psycopg imported before the clock
starts), `--repeat` interleaved rounds (default 3), the best counts; peak memory from the
process's VmHWM:

* `metalab.load_results(locator).to_dataframe()`: target < 5 s at 1,000,000 runs;
* `load_results(locator).filter(gene=3).where(x__lt=0.5).to_dataframe()`: target < 0.5 s.

Floors, same run: the frame of the load read back from a pickle; a plain `psycopg`
`COPY (SELECT ...) TO STDOUT` of the same columns (the record fields the frame holds come
from `json_to_record` of the record text) read into pandas with `read_csv`, in the frame's
order; for the filter, the same `COPY` with the filter in its `WHERE`. The frames are
compared (rows, columns, run ids) so that each floor makes the same frame. For information,
the same `COPY` without the four columns only the record text holds (`replicate`,
`duration`, `started_at`, `finished_at`): what reading the table's own columns costs.

    uv run --all-extras python benchmarks/bench_postgres_million.py [--runs 1000000]
        [--block 20000] [--repeat 3] [--schema NAME] [--reuse] [--keep] [--work DIR]

The schema is dropped at the end unless `--keep`; `--reuse` with `--schema NAME` uses a
schema an earlier `--keep` left as it is when it holds the N runs, and otherwise goes on
filling it where that run stopped. A fill, a probe or the sweep that fails because the
server went away (restarted by other work on the machine) is tried again after 10 s.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

from _common import format_table, row

HERE = Path(__file__).resolve().parent
SERVER = os.environ.get("METALAB_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
NAME = "pgmillion"
TARGETS = {"load": {1_000_000: 5.0}, "filter": {1_000_000: 0.5}}
FILTER_GENE, FILTER_BELOW = 3, 0.5
COLUMNS = {
    "run_id": "str",
    "experiment_id": "str",
    "index": "int64",
    "replicate": "int64",
    "status": "str",
    "duration": "float64",
    "started_at": "str",
    "finished_at": "str",
    "param_gene": "int64",
    "param_expr_val": "int64",
    "x": "float64",
}
"""The columns of the frame `load_results(...).to_dataframe()` makes of this sweep."""


def experiment(runs: int):
    """The sweep of `runs` runs (its first B runs are those of `experiment(B)`)."""
    import _ops

    return _ops.experiment_of(_ops.draw_per_case, NAME, gene=range(runs // 50), expr_val=range(50))


def with_options(url: str, **options: str) -> str:
    """`url` with query options added."""
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


def _ident(schema: str) -> Any:
    from psycopg import sql

    return sql.Identifier(schema)


# ---------------------------------------------------------------- the floor (in a probe)
RECORD_ONLY = ("replicate", "duration", "started_at", "finished_at")
"""The frame's columns the runs table has no column for: they are read from the record text."""


def copy_frame(server: str, schema: str, filtered: bool, record_fields: bool = True):
    """The frame's columns with a plain `COPY (SELECT ...) TO STDOUT`, read by pandas.
    Without `record_fields`, only the columns the runs table holds (no record text parsed)."""
    import pandas
    import psycopg
    from psycopg import sql

    where = sql.SQL("")
    if filtered:
        where = sql.SQL("WHERE r.params @> {} AND (r.metrics ->> 'x')::float8 < {}").format(
            sql.Literal(json.dumps({"gene": FILTER_GENE})), sql.Literal(FILTER_BELOW)
        )
    columns = dict(COLUMNS)
    fields = "j.replicate, r.status, j.duration, j.started_at, j.finished_at"
    parse = (
        ", json_to_record(r.record::json)"
        " AS j(replicate bigint, duration float8, started_at text, finished_at text)"
    )
    if not record_fields:
        columns = {k: v for k, v in COLUMNS.items() if k not in RECORD_ONLY}
        fields, parse = "r.status", ""
    query = sql.SQL(
        "COPY (SELECT r.run_id, r.experiment_id, r.run_index, " + fields + ","
        " (r.params ->> 'gene')::bigint, (r.params ->> 'expr_val')::bigint,"
        " (r.metrics ->> 'x')::float8 FROM {schema}.runs AS r" + parse + " {where}"
        " ORDER BY r.experiment_id, r.run_index, r.run_id) TO STDOUT (FORMAT csv)"
    ).format(schema=_ident(schema), where=where)
    buffer = io.BytesIO()
    with psycopg.connect(server) as conn, conn.cursor() as cursor, cursor.copy(query) as copy:
        for block in copy:
            buffer.write(block)
    buffer.seek(0)
    return pandas.read_csv(
        buffer, names=list(columns), dtype=columns, header=None, engine="pyarrow"
    )


PROBE = textwrap.dedent(
    """
    import hashlib, json, os, sys, time
    sys.path.insert(0, {here!r})

    def peak_mb():
        # the process's high-water mark of resident memory (VmHWM, in kB)
        with open("/proc/self/status") as fh:
            line = next(l for l in fh if l.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024

    import pandas, pyarrow, pyarrow.compute, psycopg, pickle, metalab
    import bench_postgres_million as bench
    what, server, schema, runs, frame_file = sys.argv[1:6]
    locator = bench.with_options(server, schema=schema)
    before = peak_mb()
    t0 = time.perf_counter()
    out = {{}}
    if what == "load":
        df = metalab.load_results(locator).to_dataframe()
    elif what == "filter":
        selected = metalab.load_results(locator).filter(gene=bench.FILTER_GENE)
        df = selected.where(x__lt=bench.FILTER_BELOW).to_dataframe()
    elif what == "pickle":
        with open(frame_file, "rb") as fh:
            df = pickle.load(fh)
    elif what in ("copy", "copy filter"):
        df = bench.copy_frame(server, schema, filtered=what == "copy filter")
    elif what == "copy table columns":
        df = bench.copy_frame(server, schema, filtered=False, record_fields=False)
    elif what == "resume":
        handle = metalab.run(bench.experiment(int(runs)), locator)
        while handle.status.pending:
            time.sleep(0.01)
        out["skipped"] = handle.status.skipped
        handle.wait()
        df = None
    out["seconds"] = time.perf_counter() - t0
    out["peak_growth_mb"] = peak_mb() - before
    if df is not None:
        out["rows"] = len(df)
        out["columns"] = list(df.columns)
        out["frame_mb"] = df.memory_usage(deep=True).sum() / 2**20
        ids = "\\n".join(df["run_id"]).encode()
        out["run_ids"] = hashlib.sha256(ids).hexdigest()
        if what == "load" and frame_file and not os.path.exists(frame_file):
            with open(frame_file, "wb") as fh:
                pickle.dump(df, fh, protocol=pickle.HIGHEST_PROTOCOL)
    print(json.dumps(out))
    """
)


def probe(what: str, server: str, schema: str, runs: int, frame_file: str = "") -> dict:
    """Measure `what` in a fresh process; return what it reports."""
    script = PROBE.format(here=str(HERE))
    return _json_of([sys.executable, "-c", script, what, server, schema, str(runs), frame_file])


def _json_of(argv: list[str]) -> dict:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:2]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- filling the store
def sweep(locator: str, runs: int) -> dict:
    """Run the first `runs` runs of the sweep with the default executor, in a fresh process."""
    script = textwrap.dedent(
        f"""
        import json, sys, time
        sys.path.insert(0, {str(HERE)!r})
        import metalab
        import bench_postgres_million as bench
        if __name__ == "__main__":
            t0 = time.perf_counter()
            handle = metalab.run(bench.experiment({runs}), {locator!r})
            handle.wait()
            seconds = time.perf_counter() - t0
            assert handle.status.completed == {runs}, handle.status
            print(json.dumps({{"seconds": seconds}}))
        """
    )
    return _json_of([sys.executable, "-c", script])


def _sql(conn, schema: str, template: str, args: Any = None) -> list[tuple]:
    """Run `template` on `conn`, `{schema}` standing for the quoted schema and `{helper}`
    for the schema of the fill's own tables."""
    from psycopg import sql

    query = sql.SQL(template).format(schema=_ident(schema), helper=_ident(_helper(schema)))
    cursor = conn.execute(query, args)
    return cursor.fetchall() if cursor.description is not None else []


def _helper(schema: str) -> str:
    """The schema of the fill's own tables, beside the store's (dropped after the fill)."""
    return f"{schema}_fill"


def _connect(server: str):
    import psycopg

    return psycopg.connect(server, autocommit=True)


def _retrying(what: str, fn, tries: int = 5):
    """`fn()`, again after a pause when the server went away (a restart of the server by
    other work on the machine), at most `tries` times."""
    import psycopg

    for attempt in range(1, tries + 1):
        try:
            return fn()
        except (psycopg.OperationalError, RuntimeError) as exc:
            if attempt == tries:
                raise
            print(f"  {what} failed ({str(exc)[-300:]}); again in 10 s", file=sys.stderr)
            time.sleep(10)


def count_runs(server: str, schema: str) -> int | None:
    """Runs in the store in `schema`; None when the schema holds no runs table."""
    with _connect(server) as conn:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".runs',))
        if not exists.fetchone()[0]:
            return None
        return _sql(conn, schema, "SELECT count(*) FROM {schema}.runs")[0][0]


INSERT = (
    "INSERT INTO {schema}.runs (run_id, experiment_id, run_index, status, completed,"
    " params, metrics, series, replicate, duration, started_at, finished_at, param_shape,"
    " metric_shape, tabled, record)"
    " SELECT f.run_id, s.experiment_id, f.run_index, s.status, s.completed,"
    " f.params_text::jsonb, s.metrics, s.series, s.replicate, s.duration, s.started_at,"
    " s.finished_at, s.param_shape, s.metric_shape, s.tabled,"
    " replace(replace(replace(replace(s.record,"
    " '\"run_id\": \"' || s.run_id || '\"', '\"run_id\": \"' || f.run_id || '\"'),"
    " '\"index\": ' || s.run_index || ', \"case\": ' || s.run_index || ',',"
    " '\"index\": ' || f.run_index || ', \"case\": ' || f.run_index || ','),"
    " '\"params\": ' || s.params_text, '\"params\": ' || f.params_text),"
    " s.params_fp, f.params_fp)"
    " FROM {helper}.ids AS f JOIN {helper}.source AS s ON s.run_index = f.run_index %% %s"
    " WHERE f.run_index >= %s AND f.run_index < %s ORDER BY f.run_index"
    " ON CONFLICT (run_id) DO NOTHING"
)
"""Rows of runs [start, end) made from the rows of runs [0, block) (see the top)."""


def multiply(server: str, schema: str, runs: int, block: int) -> None:
    """Make the rows of runs `block..runs-1` from those of runs `0..block-1` (see the top).
    Called again after a failure, it goes on where it stopped."""
    exp = experiment(runs)
    with _connect(server) as conn:
        conn.execute("SET synchronous_commit = off")
        _sql(conn, schema, "CREATE SCHEMA IF NOT EXISTS {helper}")
        ready = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f'"{_helper(schema)}".source',)
        ).fetchone()[0]
        if not ready:
            _prepare_fill(conn, schema, exp, runs, block)
        for start in range(block, runs, block):
            end = min(start + block, runs)
            done = _sql(
                conn,
                schema,
                "SELECT count(*) FROM {schema}.runs"
                " WHERE experiment_id = %s AND run_index >= %s AND run_index < %s",
                (exp.experiment_id, start, end),
            )[0][0]
            if done < end - start:
                _sql(conn, schema, INSERT, (block, start, end))
            print(f"  filled {end:,} of {runs:,}", file=sys.stderr, flush=True)
        _sql(conn, schema, "VACUUM (ANALYZE) {schema}.runs")
        _sql(conn, schema, "DROP SCHEMA {helper} CASCADE")


def _prepare_fill(conn, schema: str, exp, runs: int, block: int) -> None:
    """The run id, params and params' fingerprint of every run, and the rows to copy."""
    _sql(conn, schema, "DROP TABLE IF EXISTS {helper}.ids, {helper}.source")
    _sql(
        conn,
        schema,
        "CREATE UNLOGGED TABLE {helper}.ids (run_index bigint PRIMARY KEY,"
        " run_id text NOT NULL, params_text text NOT NULL, params_fp text NOT NULL)",
    )
    with conn.cursor() as cursor:
        copy_ids = cursor.copy(
            psycopg_sql("COPY {helper}.ids FROM STDIN", helper=_ident(_helper(schema)))
        )
        with copy_ids as copy:
            for i in range(runs):
                spec = exp.run_spec(i)
                copy.write_row((i, spec.run_id, json.dumps(spec.params), spec.params_fingerprint))
    _sql(conn, schema, "ANALYZE {helper}.ids")
    _sql(
        conn,
        schema,
        "CREATE UNLOGGED TABLE {helper}.pending AS SELECT r.*, f.params_text, f.params_fp"
        " FROM {schema}.runs AS r JOIN {helper}.ids AS f USING (run_index, run_id)"
        " WHERE r.experiment_id = %s AND r.run_index < %s",
        (exp.experiment_id, block),
    )
    _sql(conn, schema, "CREATE UNIQUE INDEX ON {helper}.pending (run_index)")
    found, unexpected = _sql(
        conn,
        schema,
        "SELECT count(*), count(*) FILTER (WHERE NOT completed"
        " OR position('\"run_id\": \"' || run_id || '\"' IN record) = 0"
        " OR position('\"index\": ' || run_index || ', \"case\": ' || run_index || ','"
        " IN record) = 0 OR position('\"params\": ' || params_text IN record) = 0"
        " OR position(params_fp IN record) = 0) FROM {helper}.pending",
    )[0]
    if found != block or unexpected:
        raise ValueError(
            f"the sweep of {block} runs left {found} rows of its run ids, {unexpected} of "
            "them not completed or not written as this fill expects: it cannot copy them"
        )
    # named `source` only once complete: a fill that stopped before prepares again
    _sql(conn, schema, "ANALYZE {helper}.pending")
    _sql(conn, schema, "ALTER TABLE {helper}.pending RENAME TO source")


def psycopg_sql(template: str, **names: Any) -> Any:
    """`template` as a psycopg SQL object with `names` filled in."""
    from psycopg import sql

    return sql.SQL(template).format(**names)


def check_rows(server: str, schema: str, runs: int, sample: int = 200) -> None:
    """Compare `sample` random rows with what the experiment says of their runs."""
    exp = experiment(runs)
    indices = random.Random(0).sample(range(runs), min(sample, runs))
    with _connect(server) as conn:
        found = _sql(
            conn,
            schema,
            "SELECT run_index, run_id, params, record FROM {schema}.runs WHERE run_index = ANY(%s)",
            (indices,),
        )
    if len(found) != len(indices):
        raise RuntimeError(f"{len(indices)} runs sampled, {len(found)} rows found")
    with _connect(server) as conn:
        untabled = _sql(conn, schema, "SELECT count(*) FROM {schema}.runs WHERE NOT tabled")[0][0]
    if untabled:  # they would be read from their records, not measured as a table
        raise RuntimeError(f"{untabled} rows have no table columns (`tabled` is false)")
    for index, run_id, params, text in found:
        spec, record = exp.run_spec(index), json.loads(text)
        wanted = (spec.run_id, index, index, spec.params, spec.params_fingerprint)
        got = (record["run_id"], record["index"], record["case"], record["params"])
        got += (record["fingerprints"]["params"],)
        if got != wanted or run_id != spec.run_id or params != spec.params:
            raise RuntimeError(f"row of run {index} does not match the experiment: {got}")


def fill(server: str, schema: str, runs: int, block: int) -> list[dict]:
    """Fill the schema with the sweep's `runs` runs (going on with what an earlier fill
    left); return the informational rows."""
    out = []
    if (count_runs(server, schema) or 0) < block:
        locator = with_options(server, schema=schema)
        swept = _retrying("the sweep", lambda: sweep(locator, block))
        out.append(
            row(
                f"fill: real sweep of {block:,} runs, default executor",
                swept["seconds"],
                runs=block,
            )
        )
    if runs > block:
        t0 = time.perf_counter()
        _retrying("the fill", lambda: multiply(server, schema, runs, block))
        seconds = time.perf_counter() - t0
        out.append(
            row(
                f"fill: {runs - block:,} more rows, INSERT ... SELECT + VACUUM",
                seconds,
                runs=runs - block,
            )
        )
    check_rows(server, schema, runs)
    resumed = _retrying("the resume", lambda: probe("resume", server, schema, runs))
    if resumed["skipped"] != runs:
        raise RuntimeError(f"metalab.run of the whole sweep skipped {resumed['skipped']} runs")
    out.append(row(f"metalab.run of the filled sweep: all {runs:,} skipped", resumed["seconds"]))
    return out


def drop(server: str, schema: str) -> None:
    """Drop the store's schema and the fill's."""
    with _connect(server) as conn:
        _sql(conn, schema, "DROP SCHEMA IF EXISTS {schema}, {helper} CASCADE")


# ---------------------------------------------------------------- measuring
def measure(server: str, schema: str, runs: int, repeat: int, frame_file: str) -> dict:
    """`repeat` interleaved rounds of every probe; the first load writes the pickle."""
    samples: dict[str, list[dict]] = {}
    first = _retrying("the first load", lambda: probe("load", server, schema, runs, frame_file))
    for _ in range(repeat):
        for what in ("pickle", "copy", "copy table columns", "load", "copy filter", "filter"):
            measured = _retrying(
                what, lambda what=what: probe(what, server, schema, runs, frame_file)
            )
            shown = {k: v for k, v in measured.items() if k != "columns"}
            print(f"  {what}: {json.dumps(shown)}", file=sys.stderr, flush=True)
            samples.setdefault(what, []).append(measured)
    for what, floor in (("load", "copy"), ("filter", "copy filter"), ("load", "pickle")):
        a, b = samples[what][0], samples[floor][0]
        if (a["rows"], a["columns"], a["run_ids"]) != (b["rows"], b["columns"], b["run_ids"]):
            raise RuntimeError(f"{what} and {floor} made different frames: {a} {b}")
    samples["first load"] = [first]
    return samples


def report(samples: dict, runs: int) -> list[dict]:
    best = {what: min(s, key=lambda s: s["seconds"]) for what, s in samples.items()}
    load, flt = best["load"], best["filter"]
    growth = min(s["peak_growth_mb"] for s in samples["load"])

    def timed(label: str, what: str, floor: str, floor_is: str, target: dict) -> dict:
        seconds, limit = best[what]["seconds"], target.get(runs)
        return row(
            label,
            seconds,
            ratio=seconds / best[floor]["seconds"],
            ratio_is=f"time / {floor_is}",
            target="" if limit is None else f"< {limit:g} s",
            met=None if limit is None else seconds < limit,
            samples=[s["seconds"] for s in samples[what]],
        )

    def floor_row(label: str, what: str) -> dict:
        b = best[what]
        return row(
            f"{label} (+{b['peak_growth_mb']:.0f} MB)",
            b["seconds"],
            samples=[s["seconds"] for s in samples[what]],
        )

    return [
        row("first load_results + to_dataframe (info)", best["first load"]["seconds"]),
        floor_row("floor: pickled frame read back", "pickle"),
        floor_row("floor: psycopg COPY of the columns + read_csv", "copy"),
        timed(
            f"load_results + to_dataframe: {load['rows']:,} rows",
            "load",
            "pickle",
            "pickle floor",
            TARGETS["load"],
        ),
        timed("  the same, against the COPY floor", "load", "copy", "COPY floor", {}),
        floor_row(
            "  info: COPY without the 4 columns only the record text holds", "copy table columns"
        ),
        row(
            f"  peak memory growth {growth:.0f} MB, frame {load['frame_mb']:.0f} MB",
            None,
            ratio=growth / load["frame_mb"],
            ratio_is="growth / frame",
        ),
        floor_row("floor: psycopg COPY of the filtered rows + read_csv", "copy filter"),
        timed(
            f"filter(gene={FILTER_GENE}).where(x__lt={FILTER_BELOW}) + to_dataframe: "
            f"{flt['rows']:,} rows",
            "filter",
            "copy filter",
            "COPY floor",
            TARGETS["filter"],
        ),
    ]


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000, help="runs (a multiple of 50)")
    parser.add_argument("--block", type=int, default=20_000, help="runs really swept")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best counts")
    parser.add_argument("--server", default=SERVER, help="postgresql:// URL of the server")
    parser.add_argument("--schema", default=None, help="schema (default: a fresh name)")
    parser.add_argument("--reuse", action="store_true", help="use --schema as it is when full")
    parser.add_argument("--keep", action="store_true", help="keep the schema at the end")
    parser.add_argument("--work", default=None, help="directory for the pickled frame")
    args = parser.parse_args()
    block = min(args.block, args.runs)
    if args.runs <= 0 or args.runs % 50 or block <= 0 or block % 50:
        parser.error(f"--runs and --block must be positive multiples of 50: {args.runs}, {block}")
    if args.reuse and args.schema is None:
        parser.error("--reuse needs --schema NAME")
    schema = args.schema or f"bench_{uuid.uuid4().hex[:10]}"
    existing = count_runs(args.server, schema)
    if existing is not None and not (args.reuse and existing <= args.runs):
        parser.error(
            f"schema {schema!r} already holds {existing:,} runs; "
            + ("--reuse needs at most --runs of them" if args.reuse else "pass --reuse")
        )
    work = tempfile.mkdtemp(prefix="metalab-pgmillion-", dir=args.work)
    rows = []
    try:
        if existing != args.runs:
            rows += fill(args.server, schema, args.runs, block)
        frame_file = os.path.join(work, "frame.pkl")
        rows += report(measure(args.server, schema, args.runs, args.repeat, frame_file), args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if args.keep:
            print(f"schema kept: {with_options(args.server, schema=schema)}", file=sys.stderr)
        else:
            drop(args.server, schema)
    results = {"postgres_million": rows}
    print(format_table(results))
    return results


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"{time.perf_counter() - t0:.0f} s in all")
