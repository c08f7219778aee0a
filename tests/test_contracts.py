"""Every store and executor satisfies its contract in `metalab.contracts`, and the registry
finds them: what the core relies on instead of probing."""

from __future__ import annotations

import pytest
from sweeps import draw_experiment

import metalab
from metalab import registry
from metalab.contracts import (
    Executor,
    ExecutorBase,
    JournalStore,
    QueryStore,
    Store,
    StoreDefaults,
)
from metalab.errors import StoreError, ValidationError
from metalab.stores.file import FileStore


def _declared_matches_implemented(store: Store) -> None:
    caps = type(store).capabilities
    assert isinstance(store, Store)
    assert caps.queries == isinstance(store, QueryStore)
    assert caps.journal == isinstance(store, JournalStore)


def test_file_store_satisfies_the_store_contract(tmp_path):
    store = registry.open_store(tmp_path / "s")
    assert type(store) is FileStore
    _declared_matches_implemented(store)
    assert store.capabilities.journal and not store.capabilities.queries
    assert store.work_directory() == tmp_path / "s"
    assert registry.open_store(store.locator, create=False).root == store.root


@pytest.mark.postgres
def test_postgres_store_satisfies_the_query_store_contract(postgres_store):
    _declared_matches_implemented(postgres_store)
    assert postgres_store.capabilities.queries
    assert postgres_store.work_directory() is None


@pytest.mark.postgres
def test_fallback_store_satisfies_the_store_contract(postgres_locator, tmp_path):
    from urllib.parse import quote

    locator = f"fallback:?primary={quote(postgres_locator)}&fallback={quote(str(tmp_path / 'f'))}"
    store = registry.open_store(locator)
    _declared_matches_implemented(store)
    assert store.work_directory() == tmp_path / "f"


@pytest.mark.parametrize("name", ["inline", "threads", "processes", "dask"])
def test_named_executors_satisfy_the_executor_contract(name):
    executor = registry.resolve_executor(name)
    assert isinstance(executor, Executor) and isinstance(executor, ExecutorBase)
    assert registry.executor_class(type(executor).__name__) is type(executor)


def test_batch_executors_satisfy_the_executor_contract():
    assert isinstance(metalab.SlurmExecutor(metalab.SlurmConfig()), Executor)
    assert isinstance(metalab.JobqueueExecutor(metalab.SlurmConfig()), Executor)
    assert registry.executor_class("slurm") is metalab.SlurmExecutor
    assert registry.executor_class("SlurmExecutor") is metalab.SlurmExecutor
    assert registry.executor_class("to_delayed") is None


def test_an_object_that_is_no_executor_is_refused_by_name():
    class Half:
        def execute(self, sweep, indices, sink):  # no cancel, close, ... hooks
            pass

    with pytest.raises(ValidationError, match="executor must be a metalab executor"):
        registry.resolve_executor(Half())
    with pytest.raises(ValidationError, match="unknown executor 'gpu'; known names: inline"):
        registry.resolve_executor("gpu")


def test_an_unknown_scheme_names_the_known_ones():
    with pytest.raises(StoreError, match=r"unknown store scheme 'nosuch://'.*file://"):
        registry.open_store("nosuch://somewhere")


class _Prefixed(FileStore):
    """A file store opened from `prefixed://<path>` locators (a user's own scheme)."""

    @classmethod
    def open(cls, locator, *, create=True):
        return super().open(str(locator).removeprefix("prefixed://"), create=create)

    @property
    def locator(self) -> str:
        return f"prefixed://{self.root}"


def test_a_registered_scheme_is_opened_by_run_and_by_workers(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_STORES", dict(registry._STORES))  # this test's only
    registry.register_store("prefixed", _Prefixed)
    locator = f"prefixed://{tmp_path / 'mine'}"
    experiment = draw_experiment()
    total = len(experiment.run_ids())
    results = metalab.run(experiment, locator, executor="threads").result()
    assert len(results) == total and all(r.status == "completed" for r in results)
    assert isinstance(registry.open_store(locator, create=False), _Prefixed)
    assert len(metalab.load_results(locator)) == total


def test_store_defaults_give_the_optional_hooks():
    class Bare(StoreDefaults):
        @property
        def locator(self) -> str:
            return "bare://x"

    bare = Bare()
    assert bare.public_locator == "bare://x" and bare.work_directory() is None
    assert bare.flush_journal() is None and bare.cancel_poll_interval > 0


def test_memory_store_satisfies_the_store_contract():
    from metalab.testing import MemoryStore

    store = registry.open_store("memory://contracts")
    assert isinstance(store, MemoryStore)
    _declared_matches_implemented(store)
    assert registry.open_store("memory://contracts", create=False) is store


def test_a_cluster_of_another_package_is_run_on_through_dask(monkeypatch):
    import distributed  # noqa: F401 - a process holding a cluster has imported distributed

    class GatewayLike:  # what dask-gateway's clusters look like to a client
        scheduler_address = "tcp://127.0.0.1:8786"

    executor = registry.resolve_executor(GatewayLike())
    assert isinstance(executor, metalab.DaskExecutor)


def test_the_observer_name_still_follows_a_store():
    from metalab.following import StoreFollower

    assert isinstance(registry.resolve_executor("observer"), StoreFollower)


def test_a_store_locator_is_shown_without_its_password(tmp_path):
    from metalab.store import to_locator

    class Secret(FileStore):  # a store whose locator holds a password
        @property
        def locator(self) -> str:
            return "postgresql://me:hunter2@db/x"

    store = Secret.open(tmp_path / "s")
    assert to_locator(store) == "postgresql://me@db/x"
    assert "hunter2" in to_locator(store, include_password=True)
