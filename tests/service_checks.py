"""Helpers of the tests that need real services (PostgreSQL, SLURM), importable by any test
module (`from service_checks import missing_service`): conftest modules are not."""

from __future__ import annotations

import os
import uuid

import pytest

try:
    from psycopg import sql as psycopg_sql
except ImportError:  # the postgres_server fixture skips (or fails) every test with the reason
    psycopg_sql = None  # type: ignore[assignment]

POSTGRES_URL = os.environ.get("METALAB_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def services_required() -> bool:
    """Whether a missing service must fail the test run rather than skip."""
    return os.environ.get("METALAB_REQUIRE_SERVICES", "") not in ("", "0")


def missing_service(reason: str):
    """Skip (or, when services are required, fail) the calling test because of `reason`."""
    if services_required():
        pytest.fail(f"{reason} (METALAB_REQUIRE_SERVICES=1: services must be present)")
    pytest.skip(reason)


def with_options(url: str, **options: str) -> str:
    """`url` with query options added."""
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


def fresh_schema(prefix: str = "pgtest") -> str:
    """A schema name no other test uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def postgres_sql(store, query: str, args=None) -> list:
    """Run SQL on `store`'s database, `{schema}` standing for its quoted schema (to look
    behind the contract); return the rows ([] for a statement without)."""
    schema = psycopg_sql.Identifier(store.schema).as_string(None)
    with store._db.connection() as conn:
        cursor = conn.execute(query.replace("{schema}", schema), args)
        return cursor.fetchall() if cursor.description is not None else []
