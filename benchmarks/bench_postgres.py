"""PostgreSQL store: ingest from two worker processes, and queries over 100,000 runs.

Records are real: one run of `_ops.draw` is executed inline to get a record, and each
benchmark record is that record with the run id, index and params of one index of the sweep
(grid gene=range(2000) x expr_val=range(50), the sweep of bench_resume) and a fresh metric.

- **Ingest**: two processes (spawned, like Dask workers) each write their share of
  `INGEST_RUNS` records with `PostgresStore.put_record`, one call per record. The floor
  (baseline) is the same two processes writing the same record texts with the plainest
  statement there is: one autocommit `INSERT (run_id, record)` per record into a bare table.
  Both are measured at the server's default durability and with `?synchronous_commit=off`
  (a commit then returns before its WAL is flushed to disk), in interleaved rounds; the best
  round counts. Ratio: speed / floor. Target: >= 5,000 records/s.
- **100,000 runs**: the whole sweep is written (two processes, `synchronous_commit=off`;
  reported for information), then, best of 5 (load: best of 3):
  - filter by one parameter and one metric threshold in SQL,
    `store.query_records(params={"gene": 7}, metric_filters=[("x", ">", 0.5)])`, against
    the same filter in Python over the records already in memory (the baseline). Target:
    < 0.5 s.
  - load all records into a DataFrame, `metalab.load_results(locator).to_dataframe()`
    (records are fetched when first needed), against what a plain script does
    (the baseline): a bare `SELECT` of the record texts and `json.loads` of each. Target:
    < 2 s.
  - `store.scan()` against a bare `SELECT run_id` (for information), and `metalab.run` of
    the finished sweep until the handle reports every run skipped (bench_resume's target for
    the file store, < 1 s).

    uv run --all-extras python benchmarks/bench_postgres.py

The server is `METALAB_TEST_POSTGRES` (default `postgresql://postgres@127.0.0.1:5432/test`);
everything is written to a fresh schema, dropped at the end.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import tempfile
import time
import uuid
from typing import Any

import _ops
from _common import best, format_table, row

import metalab
from metalab.stores.postgres import PostgresStore, parse_locator

SERVER = os.environ.get("METALAB_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
AXES = {"gene": range(2000), "expr_val": range(50)}
INGEST_RUNS = 10_000
ROUNDS = 2
WORKERS = 2
REPEAT = 5
TARGETS = {"ingest": 5_000, "filter": 0.5, "load": 2.0, "resume": 1.0}


def experiment() -> metalab.Experiment:
    """The 100,000-run sweep, freshly defined."""
    return _ops.experiment("pgbench", **AXES)


def template_record() -> dict[str, Any]:
    """The record of one real run of the sweep's operation."""
    small = _ops.experiment("pgbench", gene=[0], expr_val=[0])
    with tempfile.TemporaryDirectory(prefix="metalab-bench-") as tmp:
        return metalab.run(small, tmp, executor="inline").result()[0].record


def records(template: dict[str, Any], indices: range) -> list[dict[str, Any]]:
    """Records of `indices` of the sweep, made from `template`."""
    exp, rng = experiment(), random.Random(indices.start)
    out = []
    for i in indices:
        record = dict(template, run_id=exp.run_id(i), index=i, case=i, params=exp.params_at(i))
        record["metrics"] = {"x": rng.random()}
        out.append(record)
    return out


def with_options(url: str, **options: str) -> str:
    """`url` with query options added."""
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


# ---------------------------------------------------------------- ingest (in worker processes)
def _ingest(kind: str, locator: str, template, indices: range, barrier, queue) -> None:
    batch = records(template, indices)
    write = _store_writer(locator) if kind == "store" else _floor_writer(locator)
    barrier.wait(timeout=300)
    started = time.perf_counter()
    for record in batch:
        write(record)
    queue.put((started, time.perf_counter()))


def _store_writer(locator: str):
    return PostgresStore.open(locator, create=False).put_record


def _floor_writer(locator: str):
    import psycopg

    location = parse_locator(locator)
    conn = psycopg.connect(location.conninfo, autocommit=True)
    if location.synchronous_commit:
        conn.execute("SELECT set_config('synchronous_commit', %s, false)", ("off",))
    table = psycopg.sql.Identifier(location.schema, "floor").as_string(None)
    query = f"INSERT INTO {table} (run_id, record) VALUES (%s, %s)"

    def write(record: dict[str, Any]) -> None:
        conn.execute(query, (record["run_id"], json.dumps(record)))

    return write


def ingest(kind: str, locator: str, template, indices: range) -> float:
    """Seconds for WORKERS processes to write `indices` (split evenly), from a common start."""
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(WORKERS), context.Queue()
    step = -(-len(indices) // WORKERS)
    shares = [indices[k : k + step] for k in range(0, len(indices), step)]
    workers = [
        context.Process(target=_ingest, args=(kind, locator, template, share, barrier, queue))
        for share in shares
    ]
    for worker in workers:
        worker.start()
    spans = [queue.get(timeout=1800) for _ in workers]
    for worker in workers:
        worker.join()
        if worker.exitcode != 0:
            raise RuntimeError(f"an ingest worker failed with exit code {worker.exitcode}")
    return max(end for _, end in spans) - min(start for start, _ in spans)


def _sql(store: PostgresStore, query: str) -> list[Any]:
    with store._db.connection() as conn:
        cursor = conn.execute(query.replace("{schema}", _ident(store)))
        return cursor.fetchall() if cursor.description is not None else []


def _ident(store: PostgresStore) -> str:
    import psycopg

    return psycopg.sql.Identifier(store.schema).as_string(None)


def _reset(store: PostgresStore) -> None:
    _sql(store, "TRUNCATE {schema}.runs, {schema}.floor")


FLOOR = "floor: bare INSERT per record (baseline)"
FLOOR_OFF = "floor, synchronous_commit=off (baseline)"
STORE = "PostgresStore.put_record"
STORE_OFF = "PostgresStore.put_record, synchronous_commit=off"


def ingest_rows(store: PostgresStore, template) -> list[dict]:
    """Store and floor, durable and not, in interleaved rounds on emptied tables."""
    _sql(store, "CREATE TABLE {schema}.floor (run_id text PRIMARY KEY, record text NOT NULL)")
    fast = with_options(store.locator, synchronous_commit="off")
    variants = {
        FLOOR: ("floor", store.locator),
        STORE: ("store", store.locator),
        FLOOR_OFF: ("floor", fast),
        STORE_OFF: ("store", fast),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(ROUNDS):
        for name, (kind, locator) in variants.items():
            _reset(store)
            samples[name].append(ingest(kind, locator, template, range(INGEST_RUNS)))
    _reset(store)
    floors = {STORE: best(samples[FLOOR]), STORE_OFF: best(samples[FLOOR_OFF])}
    out = []
    for name, measured in samples.items():
        seconds, floor = best(measured), floors.get(name)
        label = f"ingest {INGEST_RUNS:,} records, {WORKERS} processes: {name}"
        if floor is None:
            out.append(row(label, seconds, runs=INGEST_RUNS, samples=measured))
            continue
        out.append(
            row(
                label,
                seconds,
                runs=INGEST_RUNS,
                ratio=floor / seconds,
                ratio_is="speed / floor",
                target=f">= {TARGETS['ingest']:,}/s",
                met=INGEST_RUNS / seconds >= TARGETS["ingest"],
                samples=measured,
            )
        )
    return out


# ---------------------------------------------------------------- 100,000 runs
def timed(fn, repeat: int = REPEAT) -> list[float]:
    """Seconds of `repeat` calls of `fn`."""
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def resume(locator: str) -> None:
    """`metalab.run` of the finished sweep, until the handle knows every run is skipped."""
    exp = experiment()
    handle = metalab.run(exp, locator)
    status = handle.status
    if status.pending != 0 or status.skipped != len(exp):
        handle.cancel()
        raise RuntimeError(f"expected every run skipped, got {status}")
    handle.wait()


def query_rows(store: PostgresStore, template) -> list[dict]:
    """Write the whole sweep, then time filter, load, scan and resume against baselines."""
    n = len(experiment())
    built = ingest(
        "store", with_options(store.locator, synchronous_commit="off"), template, range(n)
    )
    _sql(store, "ANALYZE {schema}.runs")
    in_memory = list(store.iter_records())

    def python_filter() -> list[dict]:
        return [r for r in in_memory if r["params"]["gene"] == 7 and r["metrics"]["x"] > 0.5]

    def sql_filter() -> list[dict]:
        return store.query_records(params={"gene": 7}, metric_filters=[("x", ">", 0.5)])

    if {r["run_id"] for r in sql_filter()} != {r["run_id"] for r in python_filter()}:
        raise RuntimeError("query_records and the Python filter disagree")
    samples = {
        "python filter": timed(python_filter),
        "sql filter": timed(sql_filter),
        "fetch texts": timed(lambda: _fetch_and_parse(store), 3),
        "load_results": timed(lambda: metalab.load_results(store.locator).to_dataframe(), 3),
        "iter_records": timed(lambda: list(store.iter_records()), 3),
        "select run_id": timed(lambda: _sql(store, "SELECT run_id FROM {schema}.runs")),
        "scan": timed(store.scan),
        "resume": timed(lambda: resume(store.locator), 3),
    }
    b = {name: best(s) for name, s in samples.items()}
    return [
        row(f"build: {n:,} runs, {WORKERS} processes, sync off (info)", built, runs=n),
        row(
            "baseline: Python filter over records in memory",
            b["python filter"],
            samples=samples["python filter"],
        ),
        _target_row(
            "query_records: 1 param + 1 metric threshold",
            "filter",
            b,
            samples,
            "sql filter",
            "python filter",
        ),
        row(
            "baseline: bare SELECT of record texts + json.loads each",
            b["fetch texts"],
            samples=samples["fetch texts"],
        ),
        _target_row(
            f"load_results + to_dataframe: all {n:,} records",
            "load",
            b,
            samples,
            "load_results",
            "fetch texts",
        ),
        row(
            "  part: store.iter_records()",
            b["iter_records"],
            ratio=b["iter_records"] / b["fetch texts"],
            ratio_is="time / baseline",
            samples=samples["iter_records"],
        ),
        row("baseline: bare SELECT run_id", b["select run_id"], samples=samples["select run_id"]),
        row(
            "store.scan()",
            b["scan"],
            ratio=b["scan"] / b["select run_id"],
            ratio_is="time / baseline",
            samples=samples["scan"],
        ),
        _target_row(
            "metalab.run -> handle with pending == 0",
            "resume",
            b,
            samples,
            "resume",
            "select run_id",
        ),
    ]


def _fetch_and_parse(store: PostgresStore) -> list[dict]:
    """What a plain script does: select the record texts, parse each."""
    return [json.loads(text) for (text,) in _sql(store, "SELECT record FROM {schema}.runs")]


def _target_row(label, target, b, samples, measured, baseline) -> dict:
    seconds = b[measured]
    return row(
        label,
        seconds,
        ratio=seconds / b[baseline],
        ratio_is="time / baseline",
        target=f"< {TARGETS[target]:g} s",
        met=seconds < TARGETS[target],
        samples=samples[measured],
    )


def run() -> list[dict]:
    """Measure ingest and the 100,000-run queries in a fresh schema; return the table rows."""
    template = template_record()
    store = PostgresStore.open(with_options(SERVER, schema=f"bench_{uuid.uuid4().hex[:10]}"))
    try:
        return ingest_rows(store, template) + query_rows(store, template)
    finally:
        _sql(store, "DROP TABLE IF EXISTS {schema}.floor")
        store.drop()
        store.close()


def main() -> None:
    print(format_table({"postgres": run()}))


if __name__ == "__main__":
    main()
