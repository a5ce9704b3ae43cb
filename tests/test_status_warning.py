"""``aggregator status`` shows the parser's warnings about a feed it accepted anyway.

A feed with broken XML (a bare ``&`` in a title) is read by feedparser's recovery, perhaps
not whole; the poll logged one WARNING and ``status`` then said plain "ok" for good, so
whoever missed the log line (cron's mail unread, the scheduler's log gone) never learned.
The warnings are now kept with the feed's state until a body parses cleanly: a 304 keeps
them (the body is the one stored) and so does an error (shown first).  Real parts: a
loopback HTTP server, real SQLite (and PostgreSQL for the store), the command in-process
(typer's runner) with rich drawing at a given width.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

import aggregator.cli
import aggregator.cli_feeds
from aggregator import polling
from aggregator.cli import app
from aggregator.store import Store
from aggregator.types import FeedState, FeedStatus, FetchResult
from tests.feedserver import RSS, FeedServer

BROKEN_RSS = RSS.replace(b"<title>First story</title>", b"<title>Bad & amp</title>")
FIXED_RSS = RSS.replace(b"<title>First story</title>", b"<title>Bad &amp; amp</title>")
WARNING = "not well-formed XML (line 9)"  # the title's line
# A table of seven columns, one of four (60 to 99 columns), a line per feed (under 60).
WIDTHS = (160, 80, 40)


def invoke(config: Path, *args: str, exit_code: int = 0) -> Any:
    result = CliRunner().invoke(app, ["--config", str(config), *args], catch_exceptions=False)
    assert result.exit_code == exit_code, result.output
    return result


def write_config(folder: Path, *urls: str) -> Path:
    config = folder / "feeds.yaml"
    config.write_text(
        "feeds:\n"
        + "".join(f"  - url: {url}\n" for url in urls)
        + 'newsletters: []\ndatabase: "sqlite:///db.sqlite"\n',
        encoding="utf-8",
    )
    return config


def status_json(config: Path) -> dict[str, dict[str, Any]]:
    return {row["url"]: row for row in json.loads(invoke(config, "status", "--format", "json").stdout)}


def status_table(config: Path, monkeypatch: pytest.MonkeyPatch, width: int) -> str:
    """``aggregator status`` as a terminal ``width`` columns wide shows it, the table only."""
    monkeypatch.setattr(aggregator.cli, "out", Console(width=width, soft_wrap=True))
    return str(invoke(config, "status").stdout).split("Scheduler jobs")[0].split("\npoll: ")[0]


def column_text(shown: str, marker: str = "warning:") -> str:
    """The text of the table's column that says ``marker``, its folded lines joined (the
    whole output when there is no table: a narrow terminal gets a line per feed)."""
    rows = [line.split("│")[1:-1] for line in shown.splitlines() if line.startswith("│")]
    if not rows:
        return " ".join(shown.split())
    column = next((j for row in rows for j, text in enumerate(row) if marker in text), 0)
    return " ".join(" ".join(row[column].split()) for row in rows)


def broken_feed(server: FeedServer) -> str:
    server.add_feed("/broken.xml", BROKEN_RSS, etag='"broken-v1"')
    return server.url("/broken.xml")


def test_status_shows_the_warning_of_a_feed_accepted_with_broken_xml(
    tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    broken, clean = broken_feed(feed_server), feed_server.url("/feed.xml")
    config = write_config(tmp_path, broken, clean)
    invoke(config, "poll")
    assert f"{WARNING}: not well-formed (invalid token)" in caplog.text  # the poll's log line stays

    rows = status_json(config)
    # The contract's keys as they were, the warning beside them.
    assert {k: rows[broken][k] for k in ("url", "status", "error", "entries")} == {
        "url": broken,
        "status": "ok",
        "error": None,
        "entries": 1,
    }
    assert rows[broken]["warning"] == f"{WARNING}: not well-formed (invalid token)"
    assert rows[clean]["warning"] is None
    for width in WIDTHS:
        shown = status_table(config, monkeypatch, width)
        assert f"warning: {WARNING}: not well-formed (invalid token)" in column_text(shown), shown
        assert shown.count("warning") == 1, shown  # the clean feed says nothing


def test_feeds_list_shows_the_warning_as_status_does(
    tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken, clean = broken_feed(feed_server), feed_server.url("/feed.xml")
    config = write_config(tmp_path, broken, clean)
    invoke(config, "poll")

    rows = {row["url"]: row for row in json.loads(invoke(config, "feeds", "list", "--format", "json").stdout)}
    assert rows[broken]["warning"] == f"{WARNING}: not well-formed (invalid token)"
    assert rows[clean]["warning"] is None
    for width in WIDTHS:
        monkeypatch.setattr(aggregator.cli_feeds, "out", Console(width=width, soft_wrap=True))
        shown = str(invoke(config, "feeds", "list").stdout)
        assert f"warning: {WARNING}: not well-formed (invalid token)" in column_text(shown), shown
        assert shown.count("warning") == 1, shown


def test_a_304_keeps_the_warning_and_a_clean_body_clears_it(
    tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    broken = broken_feed(feed_server)
    config = write_config(tmp_path, broken)
    invoke(config, "poll")

    invoke(config, "poll")  # the same body: 304
    assert feed_server.last("/broken.xml").headers["if-none-match"] == '"broken-v1"'
    [row] = status_json(config).values()
    assert (row["status"], row["warning"]) == ("not_modified", f"{WARNING}: not well-formed (invalid token)")
    assert f"warning: {WARNING}" in column_text(status_table(config, monkeypatch, 160))

    feed_server.add_feed("/broken.xml", FIXED_RSS, etag='"broken-v2"')  # the site fixed it
    caplog.clear()
    invoke(config, "poll")
    assert feed_server.requests("/broken.xml")[-1].headers["if-none-match"] == '"broken-v1"'
    assert "not well-formed" not in caplog.text
    [row] = status_json(config).values()
    assert (row["status"], row["warning"]) == ("ok", None)
    for width in WIDTHS:
        assert "warning" not in status_table(config, monkeypatch, width), width


def test_an_error_keeps_the_warning_and_is_shown_first(
    tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = broken_feed(feed_server)
    config = write_config(tmp_path, broken)
    invoke(config, "poll")
    del feed_server.resources["/broken.xml"]  # now a 404
    invoke(config, "poll", exit_code=1)

    [row] = status_json(config).values()
    assert row["status"] == "error"
    assert "404" in row["error"]
    assert (
        row["warning"] == f"{WARNING}: not well-formed (invalid token)"
    )  # its entries are still that body's
    for width in WIDTHS:
        shown = column_text(status_table(config, monkeypatch, width))
        assert "404" in shown, shown
        assert f"warning: {WARNING}" in shown, shown
        assert shown.index("404") < shown.index("warning:"), shown


# ---------------------------------------------------------------- kept bounded, and stored


def test_many_or_long_warnings_are_joined_and_capped(now: datetime) -> None:
    fetched = FetchResult(
        url="https://example.org/feed.xml",
        requested_url="https://example.org/feed.xml",
        final_url="https://example.org/feed.xml",
        status=FeedStatus.OK,
        fetched_at=now,
        http_status=200,
        body=b"<rss/>",
    )
    state = FeedState(url=fetched.url)
    rng = random.Random(1)
    two = polling.advance_state(
        state, fetched, None, polling.PollingPolicy(), now, rng, warnings=("one", "two")
    )
    assert two.last_warning == "one; two"
    hostile = polling.advance_state(
        state, fetched, None, polling.PollingPolicy(), now, rng, warnings=("x" * 10**6, "y")
    )
    assert hostile.last_warning is not None
    assert len(hostile.last_warning) == polling.MAX_WARNING_CHARS
    assert hostile.last_warning.endswith("…")


def test_the_warning_round_trips_in_the_store(database_url: str, now: datetime) -> None:
    warned = FeedState(
        url="https://example.com/feed.xml",
        status=FeedStatus.OK,
        last_fetch=now,
        next_check=now + timedelta(hours=1),
        last_warning="not well-formed XML (line 2): naïve & – "
        + "x" * (polling.MAX_WARNING_CHARS - 50)
        + "…",
    )
    other = FeedState(url="https://example.org/rss", status=FeedStatus.NOT_MODIFIED, last_warning="w")
    with Store.open(database_url) as store:
        store.save_poll(warned, [], now)
        store.save_poll(FeedState(url=other.url), [], now)
        assert store.feed_state(warned.url) == warned
        # Several polls without entries are written in one statement: the column goes too.
        later = datetime(2025, 8, 18, 13, 0, tzinfo=UTC)
        cleared = FeedState(url=warned.url, status=FeedStatus.OK, last_fetch=later)
        store.save_polls([(cleared, []), (other, [])], later)
        assert store.feed_states([warned.url, other.url]) == [cleared, other]
