"""A name the runs do not have (a typo) is an error naming it, the closest known name and the
known ones, never an empty selection: in memory, from a file store's journals, and in a
PostgreSQL query; and a run position past the end says how many runs there are."""

from __future__ import annotations

import uuid

import pytest

import metalab
from metalab.errors import ValidationError
from metalab.results.sources import Journaled


@metalab.operation
def train(params, capture):
    for step in range(2):
        capture.metric("loss", params["learning_rate"] / (step + 1), step=step)
    capture.metric("final_loss", params["learning_rate"] / 2)
    capture.metric("accuracy", 1 - params["learning_rate"])


def experiment(name="typos"):
    return metalab.Experiment(
        name=name,
        version="1",
        context={},
        operation=train,
        params=metalab.grid(learning_rate=[0.1, 0.2], optimizer=["adam", "sgd"]),
        seeds=metalab.seeds(base=0),
    )


def check_typos(load, n=4):
    """The checks every kind of `Results` passes; `load()` gives the results (`n` runs of
    `experiment()`), afresh for a store that selects in its database."""
    with pytest.raises(ValidationError) as error:
        load().filter(learnin_rate=0.1)
    message = str(error.value)
    assert "'learnin_rate'" in message and "did you mean 'learning_rate'?" in message
    assert "['learning_rate', 'optimizer']" in message
    with pytest.raises(ValidationError, match=r"no parameter is called 'lr'.*\['learning_rate'"):
        load().filter(lr__lt=0.15)
    with pytest.raises(ValidationError, match="did you mean 'optimizer'"):
        load().filter(learning_rate=0.1, optimiser="adam")
    with pytest.raises(ValidationError) as error:
        load().where(final_los__lt=1)
    message = str(error.value)
    assert "no metric is called 'final_los'" in message
    assert "did you mean 'final_loss'?" in message and "'accuracy'" in message
    with pytest.raises(ValidationError, match="did you mean 'loss'"):
        load().metric_series("losss")
    # a selection knows the names of the runs it was made from
    with pytest.raises(ValidationError, match="did you mean 'learning_rate'"):
        load().filter(optimizer="adam").filter(learning_rat=0.1)
    with pytest.raises(ValidationError, match="did you mean 'accuracy'"):
        load().where(status="completed").where(acuracy__gt=0.5)
    # known names still select, chained selections included
    assert len(load().filter(optimizer="adam").where(final_loss__lt=0.06)) == n // 4
    assert len(load().metric_series("loss")) == 2 * n
    assert len(load().where(status="failed")) == 0
    results = load()
    assert len(results) == n
    with pytest.raises(IndexError, match=f"hold {n} runs"):
        results[100]
    with pytest.raises(IndexError, match=f"hold {n} runs"):
        results[-n - 1]


def test_typos_from_the_runs_table(tmp_path):
    metalab.run(experiment(), tmp_path, executor="inline").result()
    loaded = metalab.load_results(tmp_path)
    check_typos(lambda: loaded)


def test_typos_in_memory(tmp_path):
    results = metalab.run(experiment(), tmp_path, executor="inline").result()
    check_typos(lambda: results)
    loaded = metalab.load_results(tmp_path)
    check_typos(lambda: loaded)


def test_typos_from_journals(tmp_path, monkeypatch):
    from metalab import runs_table
    from metalab.stores.file import journal

    monkeypatch.setattr(journal, "MIN_FIRST_ENTRY", 1)
    monkeypatch.setattr(runs_table, "available", lambda: False)  # loads read journals
    metalab.run(experiment(), tmp_path, executor="inline").result()
    loaded = metalab.load_results(tmp_path)
    # selections read the journal rows, no record decoded
    assert isinstance(loaded._source, Journaled) and not loaded._source.decoded
    check_typos(lambda: loaded)


def test_runs_and_artifacts_name_the_closest_name(tmp_path):
    run = metalab.run(experiment(), tmp_path, executor="inline").result()[0]
    with pytest.raises(ValidationError, match=r"'losss' \(did you mean 'loss'\?\)"):
        run.metric_series("losss")
    with pytest.raises(KeyError, match="has no artifact 'model'"):  # a KeyError too
        run.artifact("model")
    with pytest.raises(ValidationError, match="has no artifact 3"):  # no name at all
        run.artifact(3)
    with pytest.raises(ValidationError, match="has no stepped metric None"):
        run.metric_series(None)


def test_empty_results_do_not_guess(tmp_path):
    metalab.run(experiment(), tmp_path, executor="inline").result()
    nothing = metalab.load_results(tmp_path, "no_such_experiment")
    assert len(nothing.filter(anything=1)) == 0
    with pytest.raises(IndexError, match="hold 0 runs"):
        nothing[0]


def test_positions_must_be_integers(tmp_path):
    results = metalab.run(experiment(), tmp_path, executor="inline").result()
    with pytest.raises(TypeError, match="filter"):
        results["learning_rate"]


@pytest.fixture
def locator(postgres_server):
    schema = f"typos_{uuid.uuid4().hex[:12]}"
    yield f"{postgres_server}{'&' if '?' in postgres_server else '?'}schema={schema}"
    from metalab.stores.postgres import PostgresStore, parse_locator

    PostgresStore(parse_locator(f"{postgres_server}?schema={schema}")).drop()


@pytest.mark.postgres
def test_typos_in_a_postgresql_query(locator):
    metalab.run(experiment(), locator, executor="inline").result()
    metalab.run(experiment("other"), locator, executor="inline").result()
    for selection, n in ((None, 8), ("typos:1", 4)):

        def load(selection=selection):
            results = metalab.load_results(locator, selection)
            assert results._source.query() is not None  # its selections go to the database
            return results

        check_typos(load, n)
    store = metalab.load_results(locator).store
    assert store.field_names("typos:1") == {
        "params": ["learning_rate", "optimizer"],
        "metrics": ["accuracy", "final_loss"],  # first seen in the same run: by name
        "series": ["loss"],
    }


def test_a_stepped_metric_of_runs_that_have_none_is_named(tmp_path):
    @metalab.operation
    def flat(params, capture):
        capture.metric("ok", params["i"])

    exp = metalab.Experiment(
        name="flat",
        version="1",
        context={},
        operation=flat,
        params=metalab.grid(i=[0, 1]),
        seeds=metalab.seeds(base=0),
    )
    metalab.run(exp, tmp_path, executor="inline").result()
    results = metalab.load_results(tmp_path)
    with pytest.raises(metalab.ValidationError, match=r"no stepped metric is called 'okk'"):
        results.metric_series("okk")
    assert len(results.metric_series()) == 0  # every stepped metric: there are none
