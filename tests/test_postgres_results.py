"""PostgreSQL stores as users meet them: results selected in the database, the spec's store
snippets, transfers to and from directories, and a server that stops mid-sweep behind a
FallbackStore."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from sweeps import checked_result

import metalab
from metalab.errors import UnknownNameError
from metalab.store import (
    FallbackStore,
    FileStore,
    create_store,
    export_store,
    import_from_filestore,
    to_locator,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def locator(postgres_server):
    url = postgres_server
    schema = f"results_{uuid.uuid4().hex[:12]}"
    yield f"{url}{'&' if '?' in url else '?'}schema={schema}"
    from metalab.stores.postgres import PostgresStore, parse_locator

    PostgresStore(parse_locator(f"{url}?schema={schema}")).drop()


@metalab.operation
def model(params, seeds, capture):
    lr, opt = params["lr"], params["optimizer"]
    loss = lr * 10 + (0.5 if opt == "sgd" else 0.0) + seeds.numpy().random() * 0.01
    capture.metric("loss", loss)
    for step in range(3):
        capture.metric("curve", loss * step, step=step)
    capture.artifact("weights", [lr, loss])
    capture.log(f"lr={lr}")
    if opt == "bad":
        raise RuntimeError("diverged")


def sweep(name="pg_sweep"):
    return metalab.Experiment(
        name=name,
        version="1",
        context={},
        operation=model,
        params=metalab.grid(lr=[0.01, 0.02, 0.1 * 3], optimizer=["adam", "sgd", "bad"]),
        seeds=metalab.seeds(base=2, replicates=2),
    )


def counted_queries(store):
    """The arguments of every `query_table` call `store` answers from now on."""
    calls = []
    real = store.query_table

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    store.query_table = counting
    return calls


def test_filters_run_in_the_database_and_match_memory(locator, tmp_path):
    checked_result(metalab.run(sweep(), locator, executor="threads"))
    checked_result(metalab.run(sweep("other"), locator, executor="inline"))
    export_store(locator, tmp_path / "copy")
    in_memory = metalab.load_results(tmp_path / "copy")  # the same runs, filtered in memory
    results = metalab.load_results(locator)
    calls = counted_queries(results.store)
    selected = results.filter(optimizer="adam").where(loss__lt=0.25, status="completed")
    ids = sorted(r.run_id for r in selected)
    assert calls == [
        {
            "experiment_id": None,
            "params": {"optimizer": "adam"},
            "metric_filters": [("loss", "<", 0.25)],
            "status": "completed",
            "near": {},
        }
    ]
    expected = sorted(
        r.run_id
        for r in in_memory.filter(optimizer="adam").where(loss__lt=0.25, status="completed")
    )
    assert ids == expected and ids
    # a float parameter is matched within 1e-9 in memory, exactly as with a file store
    assert len(results.filter(lr=0.3)) == len(in_memory.filter(lr=0.3)) == 12
    one = metalab.load_results(locator, experiment="other:1")
    assert {r.experiment_id for r in one} == {"other:1"} and len(one) == 18
    assert len(one.failed) == 6 and one.failed[0].error["message"] == "diverged"


def test_spec_storage_snippets(locator, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    handle = metalab.run(sweep(), store=locator, executor="inline")
    assert len(checked_result(handle)) == 18
    store = create_store(locator)
    assert to_locator(store) == store.public_locator
    # a password never shows in to_locator unless asked
    with_password = locator.replace("postgresql://postgres@", "postgresql://postgres:s3cret@")
    assert "s3cret" not in to_locator(with_password)
    assert "s3cret" in to_locator(with_password, include_password=True)

    # Export Postgres -> FileStore, import FileStore -> Postgres, and the same with the CLI
    export_store(locator, "./runs/export", experiment_id="pg_sweep:1")
    schema2 = f"imported_{uuid.uuid4().hex[:8]}"
    other = locator.rsplit("schema=", 1)[0] + f"schema={schema2}"
    try:
        import_from_filestore("./runs/export", other)
        originals = {r.run_id: r for r in metalab.load_results(locator)}
        copies = {r.run_id: r for r in metalab.load_results(other)}
        assert originals.keys() == copies.keys()
        for run_id, run in originals.items():
            copy = copies[run_id]
            assert copy.record == {**run.record, "artifacts": copy.record["artifacts"]}
            assert copy.artifact("weights") == run.artifact("weights")
            assert copy.log == run.log
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "metalab",
                "store",
                "export",
                "--from",
                other,
                "--to",
                str(tmp_path / "cli-export"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert "0 record(s) copied" not in out.stdout
        assert len(FileStore.open(tmp_path / "cli-export").scan()[0]) == 18
    finally:
        from metalab.stores.postgres import PostgresStore, parse_locator

        PostgresStore(parse_locator(other)).drop()


@metalab.operation
def paced(params, capture):
    time.sleep(0.05)
    capture.metric("i", params["i"])


def test_server_stopped_mid_sweep_behind_a_fallback_store(tmp_path, postgres_server):
    """A private server stops while a sweep writes to it: the sweep completes into the
    fallback, and after a restart sync() leaves every run in the primary exactly once."""
    from test_services import make_root, teardown

    from metalab.services import postgres as service

    root = make_root()  # a directory the server's unprivileged account can reach
    service_store = root / "service"
    try:
        started = service.start_local(store=service_store, auth="trust")
        primary = started.locator + ("&" if "?" in started.locator else "?") + "schema=fb"
        store = FallbackStore(primary, tmp_path / "fallback", retry_after=1.0)
        exp = metalab.Experiment(
            name="failover",
            version="1",
            context={},
            operation=paced,
            params=metalab.grid(i=list(range(60))),
            seeds=metalab.seeds(base=0),
        )
        stopped = threading.Event()

        def stop_soon():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(create_store(primary).scan()[0]) < 10:
                time.sleep(0.05)
            service.stop(store=service_store)
            stopped.set()

        stopper = threading.Thread(target=stop_soon)
        stopper.start()
        results = metalab.run(exp, store, executor="threads").result()
        stopper.join()
        assert stopped.is_set()
        assert len(results) == 60 and all(r.status == "completed" for r in results)
        fallback_ids = {r["run_id"] for r in FileStore.open(tmp_path / "fallback").iter_records()}
        assert fallback_ids, "the fallback took the writes while the server was down"

        service.start_local(store=service_store, auth="trust")
        report = FallbackStore(primary, tmp_path / "fallback").sync()
        assert report.records >= len(fallback_ids) - report.unchanged
        ids = [r["run_id"] for r in create_store(primary).iter_records()]
        assert sorted(ids) == sorted(exp.run_ids())  # every run, exactly once
        assert metalab.run(exp, primary, executor="inline").status.skipped == 60
    finally:
        teardown(service_store)
        import shutil

        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slurm
@pytest.mark.slow
def test_slurm_sweep_into_a_password_protected_store_keeps_the_password_out(
    tmp_path, slurm_cluster
):
    """Array tasks reach a scram-sha-256 server with a password that is in no file of the
    store or the sweep's directory: they read it from a 0600 libpq password file."""
    from test_services import make_root, teardown

    from metalab.services import postgres as service

    root = make_root()
    service_store = root / "service"
    try:
        started = service.start_local(store=service_store, auth="scram-sha-256")
        secret = service.discover(service_store, inline_password=True)
        assert secret is not None
        password = secret.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
        assert password
        locator = secret.split("?", 1)[0] + "?schema=slurm_secret"
        work = root / "work"
        executor = metalab.SlurmExecutor(
            metalab.SlurmConfig(
                time="5:00", memory="500M", setup=[f"export PYTHONPATH={Path(__file__).parent}"]
            ),
            work_dir=work,
            poll_interval=0.3,
        )
        from slurm_ops import slurm_experiment

        handle = metalab.run(slurm_experiment(n=3), locator, executor=executor)
        session = handle._sweep.session
        passfile = Path.home() / ".metalab" / "pgpass" / session
        # while the tasks may need it, the password is in a file only the user can read
        assert oct(passfile.stat().st_mode & 0o777) == "0o600"
        assert password in passfile.read_text()
        results = handle.result(timeout=240)
        assert [r.status for r in results] == ["completed"] * 3
        leaked = [
            str(path)
            for path in work.rglob("*")
            if path.is_file() and password.encode() in path.read_bytes()
        ]
        assert leaked == []
        assert not passfile.exists()  # every run recorded: the password file is gone
        assert started.locator and password not in started.locator
    finally:
        teardown(service_store)
        import shutil

        shutil.rmtree(root, ignore_errors=True)


@metalab.operation
def typed(params, capture):
    x = params["x"]
    capture.log_metrics(
        {"y": 0.1 * 3 * 10 if x == 2 else float(x * 10), "score": float(x + 1), "flag": x == 1}
    )
    capture.metric("epochs", x)


@pytest.mark.parametrize(
    "select",
    [
        lambda r: r.filter(x=2),
        lambda r: r.filter(name="b"),
        lambda r: r.filter(name="b").filter(name="c"),
        lambda r: r.filter(x__gt=0),
        lambda r: r.filter(big=1_700_000_000_002),
        lambda r: r.where(y=3),
        lambda r: r.where(score=3),
        lambda r: r.where(flag=1),
        lambda r: r.where(flag__gt=0.5),
        lambda r: r.where(epochs__ne=2),
        lambda r: r.where(y__ge=10, status="completed"),
        lambda r: r.where(score__lt=3).filter(name__in=["a", "c"]),
        lambda r: r.successful.filter(name="a"),
        lambda r: r[1:].filter(name="b"),
    ],
)
def test_database_selections_agree_with_memory(locator, tmp_path, select):
    exp = metalab.Experiment(
        name="typed",
        version="1",
        context={},
        operation=typed,
        params=metalab.manual(
            [
                {"x": 0, "name": "a", "big": 1_700_000_000_001},
                {"x": 1, "name": "b", "big": 1_700_000_000_002},
                {"x": 2, "name": "c", "big": 1_700_000_000_003},
            ]
        ),
        seeds=metalab.seeds(base=0),
    )
    metalab.run(exp, locator, executor="inline").result()
    export_store(locator, tmp_path / "copy")
    in_db = sorted(r.index for r in select(metalab.load_results(locator)))
    in_memory = sorted(r.index for r in select(metalab.load_results(tmp_path / "copy")))
    assert in_db == in_memory


def test_a_wrong_database_is_an_error_not_an_outage(postgres_server, tmp_path):
    """A server that answers but refuses (no such database) is a configuration error: it is
    reported as such, and a FallbackStore does not hide it by writing to its fallback."""
    from metalab.errors import StoreError, StoreUnavailableError

    wrong = postgres_server.rsplit("/", 1)[0] + "/no_such_database_here"
    with pytest.raises(StoreError, match="refused the connection") as raised:
        create_store(wrong)
    assert not isinstance(raised.value, StoreUnavailableError)
    assert "no_such_database_here" in str(raised.value)
    with pytest.raises(StoreError, match="refused the connection"):
        FallbackStore(wrong, tmp_path / "fallback")
    unreachable = "postgresql://postgres@127.0.0.1:1/test?reconnect_timeout=0"
    with pytest.raises(StoreUnavailableError, match="port 1"):
        create_store(unreachable)


def test_a_number_filter_narrows_in_the_database_then_matches_as_in_memory(locator, tmp_path):
    checked_result(metalab.run(sweep(), locator, executor="inline"))
    export_store(locator, tmp_path / "copy")
    in_memory = metalab.load_results(tmp_path / "copy")
    results = metalab.load_results(locator)
    calls = counted_queries(results.store)
    for lr in (0.01, 0.3, 0.31, 1):  # 0.3 matches 0.30000000000000004 as typed in memory
        selected = results.filter(lr=lr)
        assert sorted(r.run_id for r in selected) == sorted(
            r.run_id for r in in_memory.filter(lr=lr)
        )
        assert calls[-1]["near"] == {"lr": lr}
    assert len(results.filter(lr=0.3)) == 6


@metalab.operation
def by_k(params, capture):
    capture.metric("k", float(params["k"]))


def test_a_whole_number_filter_uses_equality_of_numbers_in_the_database(locator, tmp_path):
    exp = metalab.Experiment(
        name="whole",
        version="1",
        context={},
        operation=by_k,
        params=metalab.grid(k=[3, 3.0, 4, 2.5, -7, 1e20]),
        seeds=metalab.seeds(base=1),
    )
    checked_result(metalab.run(exp, locator, executor="inline"))
    export_store(locator, tmp_path / "copy")
    in_memory = metalab.load_results(tmp_path / "copy")
    results = metalab.load_results(locator)
    for k in (3, 3.0, 4, 2.5, -7, 1e20, 5):
        expected = sorted(r.run_id for r in in_memory.filter(k=k))
        assert sorted(r.run_id for r in results.filter(k=k)) == expected, k
    assert len(results.filter(k=3)) == 2  # the int and the float
    # a whole number is selected by containment, which the parameters' GIN index answers;
    # any other number by a range
    from metalab.stores.postgres import query

    whole, _ = query.where_clause("s", None, {}, [], None, {"k": 3.0})
    other, _ = query.where_clause("s", None, {}, [], None, {"k": 2.5})
    assert "params @>" in repr(whole) and "BETWEEN" not in repr(whole)
    assert "BETWEEN" in repr(other)


def test_conditions_on_names_the_runs_have_are_checked_without_listing_every_name(locator):
    checked_result(metalab.run(sweep(), locator, executor="inline"))
    results = metalab.load_results(locator)
    listed = []
    real = results.store.field_names

    def listing(*args, **kwargs):
        listed.append(args)
        return real(*args, **kwargs)

    results.store.field_names = listing
    selected = results.filter(optimizer="adam").where(loss__lt=100)
    assert len(selected) == 6 and {r.params["optimizer"] for r in selected} == {"adam"}
    assert listed == []  # each name was found at a run that has it
    with pytest.raises(UnknownNameError, match=r"'optimiser'.*'optimizer'"):
        results.filter(optimiser="adam")
    with pytest.raises(UnknownNameError, match="'los'"):
        results.where(los__lt=1)
    assert listed  # a name no run has: the error lists those they have


def test_negative_positions_count_from_the_end(locator):
    with pytest.warns(metalab.RunsFailedWarning):
        metalab.run(sweep(), locator, executor="inline").result()
    for read_first in ("a run", "the table"):
        results = metalab.load_results(locator, "pg_sweep")
        n = len(results)
        if read_first == "the table":
            results.table()
        first = results[0]
        assert results[-1].run_id == results[n - 1].run_id == list(results)[-1].run_id
        assert results[-n].run_id == first.run_id
        assert results[-1].index == max(r.index for r in results)
