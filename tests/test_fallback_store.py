"""`FallbackStore`'s arguments and locator: a value it cannot work with is a ValidationError
naming it and what is expected, raised before anything is created; its settings travel to
workers with its locator."""

from __future__ import annotations

import math
import uuid

import pytest

import metalab
from metalab.store import FallbackStore, create_store


@pytest.mark.parametrize("retry_after", [-5, -0.1, math.nan, math.inf, "3", None, True])
def test_a_bad_retry_after_is_refused_before_anything_is_written(tmp_path, retry_after):
    with pytest.raises(metalab.ValidationError) as caught:
        FallbackStore(tmp_path / "primary", tmp_path / "fallback", retry_after=retry_after)
    message = str(caught.value)
    assert f"retry_after={retry_after!r}" in message
    assert "a finite number >= 0" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("write_to_both", ["yes", 1, None])
def test_a_bad_write_to_both_is_refused(tmp_path, write_to_both):
    with pytest.raises(metalab.ValidationError, match=f"got {write_to_both!r}"):
        FallbackStore(tmp_path / "p", tmp_path / "f", write_to_both=write_to_both)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("which", ["primary", "fallback"])
@pytest.mark.parametrize("value", [None, 5, b"runs"])
def test_a_store_that_is_not_a_store_is_refused(tmp_path, which, value):
    stores = {"primary": tmp_path / "p", "fallback": tmp_path / "f"} | {which: value}
    with pytest.raises(metalab.ValidationError, match=f"{which}={value!r} is not valid"):
        FallbackStore(stores["primary"], stores["fallback"])
    assert list(tmp_path.iterdir()) == []


def test_the_same_store_twice_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(metalab.ValidationError, match="primary and fallback are the same store"):
        FallbackStore("runs", f"file://{tmp_path / 'runs'}")
    store = create_store(tmp_path / "other")
    with pytest.raises(metalab.ValidationError, match="the same store"):
        FallbackStore(store, store)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other"]


def test_retry_after_and_write_to_both_travel_with_the_locator(tmp_path):
    store = FallbackStore(tmp_path / "p", tmp_path / "f", write_to_both=True, retry_after=2.5)
    reopened = create_store(store.locator)
    assert (reopened.retry_after, reopened.write_to_both) == (2.5, True)
    default = create_store(FallbackStore(tmp_path / "p", tmp_path / "f").locator)
    assert (default.retry_after, default.write_to_both) == (30.0, False)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("&retry_after=-1", "retry_after=-1"),
        ("&retry_after=soon", "retry_after='soon'"),
        ("&write_to_both=maybe", "write_to_both='maybe'"),
        ("&retry=1", "unknown option 'retry'"),
    ],
)
def test_a_bad_fallback_locator_option_is_named(tmp_path, query, expected):
    locator = FallbackStore(tmp_path / "p", tmp_path / "f").locator + query
    with pytest.raises(metalab.ValidationError, match=expected):
        create_store(locator)


def test_create_must_be_a_boolean(tmp_path):
    with pytest.raises(metalab.ValidationError, match="create must be True or False, got 'no'"):
        create_store(tmp_path / "runs", create="no")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.postgres
def test_a_postgresql_primary_does_not_wait_for_its_server(postgres_server, tmp_path):
    from metalab.stores.postgres import PostgresStore, parse_locator

    schema = f"fallback_{uuid.uuid4().hex[:12]}"
    primary = f"{postgres_server}{'&' if '?' in postgres_server else '?'}schema={schema}"
    try:
        store = FallbackStore(primary, tmp_path / "fallback")
        assert store.primary.locator.endswith("&reconnect_timeout=0")
        # workers open the same primary from the locator
        assert create_store(store.locator).primary.locator == store.primary.locator
        waiting = FallbackStore(primary + "&reconnect_timeout=5", tmp_path / "fallback")
        assert waiting.primary.locator.endswith("&reconnect_timeout=5")
        # a store object as the primary too; sync() uses the store as it was given
        given = create_store(primary)
        from_object = FallbackStore(given, tmp_path / "fallback")
        assert from_object.primary.locator.endswith("&reconnect_timeout=0")
        assert from_object._syncing_primary() is given
    finally:
        PostgresStore(parse_locator(primary)).drop()
