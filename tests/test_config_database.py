"""feeds.yaml's ``database:``: a URL the store cannot open, or a database that keeps nothing
between runs, is refused by ``config check`` on its line, not by the next run."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from aggregator.cli import app
from aggregator.config import check_config, load_config
from aggregator.store import Store
from tests.test_config import _config_check, problems_of, write

IN_MEMORY = (
    "is an in-memory database, which keeps nothing between runs: give a file path"
    " (sqlite:///data/aggregator.sqlite) or a PostgreSQL URL (postgresql+psycopg://USER@HOST/DB)"
)
EITHER = "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"


def with_database(tmp_path: Path, url: str) -> Path:
    return write(tmp_path, f'feeds: []\nnewsletters: []\ndatabase: "{url}"\n')


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///file:x?mode=memory&uri=true",
        "sqlite:///file:x?mode=memory&cache=shared&uri=true",
        "sqlite:///file::memory:?uri=true",
        "sqlite:///file:x?vfs=memdb&uri=true",
    ],
)
def test_an_in_memory_database_is_refused_on_its_line(tmp_path: Path, url: str) -> None:
    # It passed `config check`; every `run --once` from cron then sent the newsletter again
    # ("daily #1", "#2", ... with the same stories), and `export` found no database.
    path = with_database(tmp_path, url)
    assert problems_of(path) == [f"{path}:3:1: database: {url!r} {IN_MEMORY}"]


def test_config_check_and_every_command_refuse_an_in_memory_database(tmp_path: Path) -> None:
    path = with_database(tmp_path, "sqlite://")
    expected = f"{path}:3:1: database: 'sqlite://' {IN_MEMORY}"
    code, stdout, stderr = _config_check(path)
    assert (code, stdout) == (2, "")
    assert stderr.splitlines()[0] == expected
    ran = CliRunner().invoke(app, ["--config", str(path), "status"])
    assert ran.exit_code == 2
    assert expected in ran.stderr


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://x", f"unsupported database 'mysql' in 'mysql://x': {EITHER}"),
        (
            "postgres://postgres@127.0.0.1/test",
            "unsupported database 'postgres' in 'postgres://postgres@127.0.0.1/test':"
            " write postgresql+psycopg:// instead of postgres://",
        ),
        (
            # Only psycopg 3 is installed: it passed, and every command failed with
            # "No module named 'psycopg2'".
            "postgresql+psycopg2://u@127.0.0.1/db",
            "unsupported PostgreSQL driver 'psycopg2' in 'postgresql+psycopg2://u@127.0.0.1/db'"
            " (psycopg 3 is the one installed): write postgresql+psycopg:// instead of postgresql+psycopg2://",
        ),
        (
            "postgresql+asyncpg://u@127.0.0.1/db",
            "unsupported PostgreSQL driver 'asyncpg' in 'postgresql+asyncpg://u@127.0.0.1/db'"
            " (psycopg 3 is the one installed): write postgresql+psycopg:// instead of postgresql+asyncpg://",
        ),
        (
            "data/x.sqlite",
            "not a database URL: 'data/x.sqlite'; for a SQLite file write sqlite:///data/x.sqlite,"
            " else a PostgreSQL URL (postgresql+psycopg://USER@HOST/DB)",
        ),
        (
            "/srv/news/x.sqlite",
            "not a database URL: '/srv/news/x.sqlite'; for a SQLite file write"
            " sqlite:////srv/news/x.sqlite, else a PostgreSQL URL (postgresql+psycopg://USER@HOST/DB)",
        ),
        ("my-sql://x", f"not a database URL: 'my-sql://x'; {EITHER}"),
        (
            "sqlite://data/x.sqlite",
            "a SQLite URL has no host: 'sqlite://data/x.sqlite'; write three slashes before a"
            " relative path (sqlite:///data/x.sqlite), four before an absolute one (sqlite:////srv/x.sqlite)",
        ),
        (
            "sqlite+aiosqlite:///x.sqlite",
            "unsupported SQLite driver 'aiosqlite' in 'sqlite+aiosqlite:///x.sqlite': use sqlite:///PATH",
        ),
    ],
)
def test_a_database_url_the_store_cannot_open_is_refused_on_its_line(
    tmp_path: Path, url: str, message: str
) -> None:
    # It passed `config check`; `status` and `run` then failed with "unsupported database
    # 'postgres'", or SQLAlchemy's "Could not parse SQLAlchemy URL" with no hint.
    path = with_database(tmp_path, url)
    assert problems_of(path) == [f"{path}:3:1: database: {message}"]


def test_the_password_in_a_refused_database_url_is_not_shown(tmp_path: Path) -> None:
    path = with_database(tmp_path, "postgres://reader:s3cret@127.0.0.1/news")
    code, stdout, stderr = _config_check(path)
    assert (code, stdout) == (2, "")
    assert stderr.splitlines()[0] == (
        f"{path}:3:1: database: unsupported database 'postgres' in"
        " 'postgres://reader:***@127.0.0.1/news': write postgresql+psycopg:// instead of postgres://"
    )
    assert "s3cret" not in stderr
    path = with_database(tmp_path, "reader:s3cret@db/news")
    assert problems_of(path) == [f"{path}:3:1: database: not a database URL: 'reader:***@db/news'; {EITHER}"]


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///data/aggregator.sqlite",
        "sqlite+pysqlite:///data/aggregator.sqlite",
        "sqlite:///data/aggregator.sqlite?timeout=5",
        "sqlite:///data/x.sqlite?uri=true",
        "sqlite:///file:data/x.sqlite?uri=true",
    ],
)
def test_a_sqlite_file_the_store_opens_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    # Nothing the store takes is refused: the same URL opens, and keeps a file.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    path = with_database(tmp_path, url)
    assert check_config(path) == []
    with Store.open(load_config(path).database_url):
        pass
    assert list((tmp_path / "data").glob("*.sqlite"))


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        "postgresql+psycopg://reader:s3cret@db.example/news?sslmode=require",
        "postgresql://postgres@127.0.0.1/test",
    ],
)
def test_a_postgresql_url_is_accepted(tmp_path: Path, url: str) -> None:
    path = with_database(tmp_path, url)
    assert check_config(path) == []
    assert load_config(path).database_url == url


def test_no_database_key_is_the_sqlite_file_under_data(tmp_path: Path) -> None:
    path = write(tmp_path, "feeds: []\nnewsletters: []\n")
    assert check_config(path) == []
    assert load_config(path).database_url == f"sqlite:///{tmp_path / 'data' / 'aggregator.sqlite'}"
