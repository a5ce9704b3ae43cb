"""Shared fixtures: a fixed ``now``, the anyio backend, and database URLs for SQLite and PostgreSQL.

PostgreSQL tests use the server named by ``AGGREGATOR_TEST_POSTGRES_URL`` (default: the local
trust-auth server, database ``test``), each in a schema of its own that is dropped afterwards.
When the server is unreachable they skip with the reason, unless ``AGGREGATOR_REQUIRE_POSTGRES=1``
(set by CI), in which case they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

POSTGRES_URL = os.environ.get(
    "AGGREGATOR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
pytest_plugins = ("tests.feedserver", "tests.browser")

REQUIRE_POSTGRES = os.environ.get("AGGREGATOR_REQUIRE_POSTGRES") == "1"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def now() -> datetime:
    """A fixed clock reading; tests pass it in instead of reading the time."""
    return datetime(2025, 8, 18, 12, 0, tzinfo=UTC)


def _postgres_schema_url() -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(POSTGRES_URL)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        engine.dispose()
        reason = f"PostgreSQL unreachable at {POSTGRES_URL}: {exc.orig}"
        if REQUIRE_POSTGRES:
            pytest.fail(reason + " (AGGREGATOR_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'aggregator.sqlite'}"
    else:
        yield from _postgres_schema_url()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'aggregator.sqlite'}"


def table_names(url: str) -> list[str]:
    """The tables of the database at ``url``, read with an engine of its own."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()
