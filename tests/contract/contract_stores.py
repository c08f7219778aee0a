"""The stores of the contract suite: their parameters and how each is made and removed."""

from __future__ import annotations

import logging
import urllib.parse
import uuid

import pytest

STORES = [
    pytest.param("file", id="file"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("fallback", id="fallback", marks=pytest.mark.postgres),
]


def _drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def postgres_locator(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


def fallback_locator(primary: str, fallback: str) -> str:
    return "fallback:?" + urllib.parse.urlencode({"primary": primary, "fallback": fallback})


def make_store(kind: str, request, tmp_path):
    """(locator of a store that does not exist yet, cleanup)."""
    if kind == "file":
        return str(tmp_path / "store"), None
    url = request.getfixturevalue("postgres_server")
    schema = f"contract_{uuid.uuid4().hex[:12]}"
    locator = postgres_locator(url, schema)
    if kind == "fallback":
        locator = fallback_locator(locator, str(tmp_path / "fallback"))
    return locator, lambda: _drop_schema(url, schema)


def two_worker_cluster():
    """A local Dask cluster of two single-threaded worker processes, on loopback only."""
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.ERROR,
    )
