"""A database error while an issue is frozen names the issue as readers and the log know it.

The store keys issues one per run, empty ones included, while readers' numbers (the
dateline, the archive's ``NNNN.html``, the log's ``digest daily #2``) go up only with
issues that have stories.  After empty issues the two differ, and the error named the
key: "freezing issue 4 of daily: … database is locked" of the issue the archive calls
0002.  An empty issue, which nobody sees, is named by its time.

Real parts: a feed served on 127.0.0.1, the ``aggregator`` command in-process (typer's
runner), and a real SQLite file that another connection takes with ``BEGIN EXCLUSIVE`` as
the issue is frozen.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

from aggregator import store as store_module
from aggregator.cli import app
from aggregator.config import load_config
from aggregator.store import IssueRecord, Store
from tests.feedserver import FeedServer
from tests.test_newsletters import TEST_KEY


def rss(items: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>Harbour Wire</title><link>https://wire.example/</link>{items}</channel></rss>\n"
    ).encode()


def item(slug: str, title: str, date: str) -> str:
    url = f"https://wire.example/2025/{slug}"
    return (
        f"<item><title>{title}</title><link>{url}</link><guid>{url}</guid>"
        f"<pubDate>{date}</pubDate><description>{title}, as the wire reported it.</description></item>"
    )


FERRY = item("ferry", "Harbour ferry resumes its winter timetable", "Sun, 17 Aug 2025 06:00:00 GMT")
# News to the issue after the empty ones: dated now, not a feed's archive.
BRIDGE = item(
    "bridge", "Council votes to repaint the old swing bridge", format_datetime(datetime.now(UTC), usegmt=True)
)


def write_config(folder: Path, feed: str) -> Path:
    config = folder / "feeds.yaml"
    config.write_text(
        f"feeds:\n  - url: {feed}\n    title: Harbour Wire\n"
        "newsletters:\n"
        "  - name: daily\n"
        "    title: The Daily\n"
        '    schedule: "0 0 1 1 *"\n'  # never due by itself: `digest --send` makes each issue
        "    timezone: UTC\n"
        "    sender: digest@example.com\n"
        "    subscribers: [reader@example.com]\n",
        encoding="utf-8",
    )
    return config


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--config", str(config), *args])


@contextmanager
def locked_when_freezing(config: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Another connection (as another process would) starts writing to the database just as
    the issue is frozen, for longer than the store waits; the digest's writes before it go
    through."""
    monkeypatch.setattr(store_module, "SQLITE_BUSY_TIMEOUT_S", 0.2)
    path = sa.make_url(load_config(config).database_url).database or ""
    holder = sqlite3.connect(path, isolation_level=None)
    freeze = Store.freeze_issue

    def freeze_while_held(store: Store, issue: IssueRecord, recipients: Sequence[str], now: datetime) -> None:
        holder.execute("BEGIN EXCLUSIVE")
        freeze(store, issue, recipients, now)

    monkeypatch.setattr(Store, "freeze_issue", freeze_while_held)
    try:
        yield
    finally:
        monkeypatch.setattr(Store, "freeze_issue", freeze)
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()


@pytest.fixture
def after_two_empty_issues(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, feed_server: FeedServer
) -> tuple[Path, FeedServer]:
    """Issue #1 sent, then two runs with nothing new: store keys 1 to 3, and the next
    issue with stories is #2 to readers."""
    monkeypatch.setenv("AGGREGATOR_SECRET_KEY", TEST_KEY)
    monkeypatch.chdir(tmp_path)
    feed_server.add_feed("/wire.xml", rss(FERRY))
    config = write_config(tmp_path, feed_server.url("/wire.xml"))
    assert invoke(config, "poll").exit_code == 0
    for _run in range(3):
        assert invoke(config, "digest", "daily", "--send").exit_code == 0
    with Store.open(load_config(config).database_url) as store:
        assert [(r.number, r.status) for r in store.issues("daily")] == [
            (1, "done"),
            (2, "empty"),
            (3, "empty"),
        ]
    return config, feed_server


def test_a_locked_database_while_freezing_names_the_number_readers_see(
    after_two_empty_issues: tuple[Path, FeedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, feed_server = after_two_empty_issues
    feed_server.add_feed("/wire.xml", rss(BRIDGE + FERRY))
    assert invoke(config, "poll").exit_code == 0
    with locked_when_freezing(config, monkeypatch):
        failed = invoke(config, "digest", "daily", "--send")
    assert failed.exit_code == 2, failed.output
    assert "freezing issue #2 of daily: " in failed.output, failed.output
    assert "database is locked" in failed.output
    assert "issue 4" not in failed.output  # the store's key, which no reader has seen
    # Once the database is free, that issue goes out as #2: the number the error named.
    assert invoke(config, "digest", "daily", "--send").exit_code == 0
    assert (config.parent / "newsletters" / "archive" / "daily" / "0002.html").exists()


def test_a_locked_database_while_recording_an_empty_issue_names_its_time(
    after_two_empty_issues: tuple[Path, FeedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, _feed_server = after_two_empty_issues
    with locked_when_freezing(config, monkeypatch):
        failed = invoke(config, "digest", "daily", "--send")
    assert failed.exit_code == 2, failed.output
    output = " ".join(failed.output.split())  # as wrapped for the terminal
    named = r"recording that daily had nothing new at \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ: sqlite:///"
    assert re.search(named, output), output
    assert "database is locked" in output
    assert "issue 4" not in output
