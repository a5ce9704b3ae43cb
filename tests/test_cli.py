"""The ``aggregator`` command where nothing has run yet: the commands that only read create
nothing (no ``data/`` folder, no database file, no table) and say that there is no data yet.

Real parts: the command in-process (typer's runner, stdout and stderr apart), real SQLite
files and a real PostgreSQL schema (see tests/conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from aggregator.cli import app
from aggregator.store import Store
from tests.conftest import table_names

FEED = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>News</title><link>https://news.example/</link>
<item><title>A summit in Alaska</title><link>https://news.example/1</link>
<guid>https://news.example/1</guid><description>Talks resume.</description></item>
</channel></rss>
"""

NO_DATA_YET = "run `aggregator poll` or `aggregator run --once` first"


def project(folder: Path, database: str | None = None) -> Path:
    """A feeds.yaml with one local feed and a newsletter, as on a machine where nothing ran yet."""
    (folder / "news.xml").write_text(FEED, encoding="utf-8")
    config = folder / "feeds.yaml"
    config.write_text(
        "feeds:\n  - url: news.xml\n    title: News\nnewsletters:\n  - name: daily\n    title: Daily\n"
        + (f"database: {database}\n" if database else ""),
        encoding="utf-8",
    )
    return config


def files_under(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


def invoke(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["--config", str(config), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("status",), 0),
        (("status", "--format", "json"), 0),
        (("export",), 0),
        (("export", "--format", "jsonl"), 0),
    ],
)
def test_a_read_only_command_on_a_fresh_install_creates_nothing_and_says_there_is_no_data_yet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], code: int
) -> None:
    # `aggregator status` on a new machine created data/ and data/aggregator.sqlite.
    config = project(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = files_under(tmp_path)
    exit_code, stdout, stderr = invoke(config, *args)
    assert files_under(tmp_path) == before
    assert exit_code == code, stderr
    assert stderr.splitlines()[0] == f"no database yet at data/aggregator.sqlite: {NO_DATA_YET}"
    if args[0] == "export":
        assert stdout == ""
    if args == ("status", "--format", "json"):  # the contract's rows still: every feed, never polled
        [row] = json.loads(stdout)
        assert (row["url"], row["status"], row["entries"], row["last_fetch"]) == (
            "news.xml",
            "never",
            0,
            None,
        )
    if args == ("status",):  # and when the scheduler's jobs run
        assert "never" in stdout
        assert "newsletter:daily" in stdout


def test_explain_on_a_fresh_install_says_to_poll_first_not_that_the_id_is_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It said "no entry with id '0123456789abcdef'" after the no-database line, as if the id
    # were mistyped: there is nothing to explain until a poll has stored something.
    config = project(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = files_under(tmp_path)
    exit_code, stdout, stderr = invoke(config, "explain", "0123456789abcdef")
    assert files_under(tmp_path) == before
    # 2, as for an id not stored in an empty database: the id cannot be explained.
    assert (exit_code, stdout) == (2, "")
    assert stderr == (
        "no database yet at data/aggregator.sqlite: nothing stored yet to explain '0123456789abcdef'; "
        f"{NO_DATA_YET}\n"
    )
    # Once something is stored, an id that is not is a mistyped one, and said so.
    assert invoke(config, "poll")[0] == 0
    exit_code, stdout, stderr = invoke(config, "explain", "0123456789abcdef")
    assert (exit_code, stdout) == (2, "")
    assert stderr == "no entry with id '0123456789abcdef': the ids are in `aggregator export`\n"


def test_config_check_on_a_fresh_install_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = project(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = files_under(tmp_path)
    assert invoke(config, "config", "check")[0] == 0
    assert files_under(tmp_path) == before


def test_status_on_an_empty_database_creates_no_table_on_either_backend(
    tmp_path: Path, database_url: str
) -> None:
    # On PostgreSQL the database itself exists (an administrator made it); nothing has run yet.
    config = project(tmp_path, database_url)
    exit_code, stdout, stderr = invoke(config, "status", "--format", "json")
    assert exit_code == 0, stderr
    assert [row["status"] for row in json.loads(stdout)] == ["never"]
    assert stderr.startswith("no database yet at "), stderr
    assert NO_DATA_YET in stderr
    if database_url.startswith("sqlite"):
        assert not (tmp_path / "aggregator.sqlite").exists()
    else:
        assert table_names(database_url) == []


def test_after_a_poll_the_read_only_commands_read_what_is_stored_and_say_nothing_more(
    tmp_path: Path, database_url: str
) -> None:
    config = project(tmp_path, database_url)
    assert invoke(config, "poll")[0] == 0
    exit_code, stdout, stderr = invoke(config, "status", "--format", "json")
    assert (exit_code, stderr) == (0, "")
    [row] = json.loads(stdout)
    assert (row["status"], row["entries"]) == ("ok", 1)
    exit_code, stdout, stderr = invoke(config, "export")
    assert (exit_code, stderr) == (0, "")
    assert json.loads(stdout)["title"] == "A summit in Alaska"


def test_status_shows_a_paused_feed_as_paused_with_no_next_check(tmp_path: Path) -> None:
    # A feed set to `enabled: false` after it was polled kept its last status and a next
    # check that would never come: `status` said it was fine and due.
    config = project(tmp_path)
    assert invoke(config, "poll")[0] == 0
    config.write_text(
        config.read_text().replace("    title: News\n", "    title: News\n    enabled: false\n")
    )
    exit_code, stdout, _ = invoke(config, "status", "--format", "json")
    [row] = json.loads(stdout)
    assert (exit_code, row["status"], row["entries"], row["enabled"], row["next_check"]) == (
        0,
        "ok",
        1,
        False,
        None,
    )
    exit_code, stdout, _ = invoke(config, "status")
    assert exit_code == 0
    assert "paused" in stdout
    assert "ok" not in stdout.split("Scheduler jobs")[0].replace("Feeds in", "")


def test_a_database_at_an_older_schema_is_still_opened_to_read(tmp_path: Path) -> None:
    # create=False only spares a database that does not exist: one that does is migrated
    # as before (the queries need the newest schema).
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    Store.open(url).close()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM alembic_version"))
            conn.execute(sa.text("INSERT INTO alembic_version VALUES ('0005')"))
            conn.execute(sa.text("DROP TABLE newsletter_schedules"))
            conn.execute(sa.text("DROP TABLE pruned_entries"))  # 0007's, as 0005 had none
            conn.execute(sa.text("DROP TABLE meta"))  # 0008's
            conn.execute(sa.text("ALTER TABLE feeds DROP COLUMN last_warning"))  # 0009's
    finally:
        engine.dispose()
    with Store.open(url, create=False) as store, store.engine.connect() as conn:
        assert store.feed_states() == []
        assert sa.inspect(conn).has_table("newsletter_schedules")
        assert sa.inspect(conn).has_table("pruned_entries")
        assert sa.inspect(conn).has_table("meta")
        assert "last_warning" in {c["name"] for c in sa.inspect(conn).get_columns("feeds")}


def test_a_digest_preview_on_a_fresh_install_creates_nothing_and_says_to_poll_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It made data/aggregator.sqlite and an empty issue's HTML, and printed its path.
    config = project(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = files_under(tmp_path)
    exit_code, stdout, stderr = invoke(config, "digest", "daily", "--preview")
    assert files_under(tmp_path) == before
    assert (exit_code, stdout) == (0, "")  # as status and export there: nothing failed
    assert stderr == (
        "no database yet at data/aggregator.sqlite: nothing stored yet for a preview of daily; "
        f"{NO_DATA_YET}\n"
    )


def test_a_digest_preview_on_an_empty_database_creates_no_table_on_either_backend(
    tmp_path: Path, database_url: str
) -> None:
    config = project(tmp_path, database_url)
    exit_code, stdout, stderr = invoke(config, "digest", "daily", "--preview")
    assert (exit_code, stdout) == (0, "")
    assert NO_DATA_YET in stderr
    if database_url.startswith("sqlite"):
        assert not (tmp_path / "aggregator.sqlite").exists()
    else:
        assert table_names(database_url) == []
    assert not (tmp_path / "newsletters").exists()
    # After a poll it previews as before: the path of the HTML.
    assert invoke(config, "poll")[0] == 0
    exit_code, stdout, stderr = invoke(config, "digest", "daily", "--preview")
    assert exit_code == 0, stderr
    assert Path(stdout.strip()).read_text(encoding="utf-8").count("A summit in Alaska") >= 1


@pytest.mark.parametrize("args", [("--preview",), ("--send",), ("--to", "me@example.org")])
def test_a_digest_of_a_newsletter_not_configured_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    # A typo in the name made the database (and its folder) before saying there is no such newsletter.
    config = project(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = files_under(tmp_path)
    exit_code, stdout, stderr = invoke(config, "digest", "dayly", *args)
    assert (exit_code, stdout) == (2, "")
    assert stderr == "error: feeds.yaml: no newsletter named 'dayly' (configured: daily)\n"
    assert files_under(tmp_path) == before


def test_feeds_list_on_an_empty_database_creates_no_table_on_either_backend(
    tmp_path: Path, database_url: str
) -> None:
    # On PostgreSQL `feeds list` created every table (the SQLite file alone was checked for).
    config = project(tmp_path, database_url)
    exit_code, stdout, stderr = invoke(config, "feeds", "list", "--format", "json")
    assert (exit_code, stderr) == (0, "")
    assert [(row["url"], row["status"]) for row in json.loads(stdout)] == [("news.xml", "never")]
    if database_url.startswith("sqlite"):
        assert not (tmp_path / "aggregator.sqlite").exists()
    else:
        assert table_names(database_url) == []
