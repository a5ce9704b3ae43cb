"""What happens between two issues: new articles about a story already sent, a previous
issue still waiting on a retry when the next is asked for, and runs with nothing to send.

Real parts: a real SQLite store, the outbox on disk, the real dedupe stage, aiosmtpd on
127.0.0.1 with STARTTLS and AUTH, and the ``aggregator digest`` command through typer.
"""

from __future__ import annotations

import asyncio
import email
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aggregator import digest, newsletters, pipeline
from aggregator.cli_digest import describe
from aggregator.config import LoadedConfig, load_config
from aggregator.store import IssueRecord, Store, entry_id
from tests.test_mail import (  # tls_files is a fixture
    PASSWORD,
    USER,
    Handler,
    SmtpServer,
    start_server,
    tls_files,  # noqa: F401
)
from tests.test_newsletters import (
    NOW,
    SMTP_YAML,
    TEST_KEY,
    add_entry,
    command_app,
    make_project,
    outbox_files,
)

FEED_A = "https://a.example/feed"
FEED_B = "https://b.example/feed"
CONFIG = f"""feeds:
  - url: {FEED_A}
    title: Outlet A
  - url: {FEED_B}
    title: Outlet B
newsletters:
  - name: daily
    title: The Daily
    schedule: "0 7 * * *"
    timezone: UTC
    sender: digest@example.com
    subscribers: [reader@example.com]
"""


@pytest.fixture
def quiet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LoadedConfig, Store]]:
    """Two outlets with nothing stored yet, a daily newsletter at 07:00 UTC, the outbox."""
    monkeypatch.setenv("AGGREGATOR_SECRET_KEY", TEST_KEY)
    (tmp_path / "feeds.yaml").write_text(CONFIG)
    loaded = load_config(tmp_path / "feeds.yaml")
    with Store.open(loaded.database_url) as store:
        store.sync_feeds([(FEED_A, "Outlet A"), (FEED_B, "Outlet B")])
        yield loaded, store


def archived_text(loaded: LoadedConfig, number: int) -> str:
    return (newsletters.archive_dir(loaded, "daily") / f"{number:04d}.txt").read_text(encoding="utf-8")


def headlines(text: str) -> list[str]:
    return [line[2:] for line in text.splitlines() if line.startswith("* ")]


def story_block(text: str, headline: str) -> str:
    """The lines of one story in an issue's text part, from its headline to the blank line."""
    start = text.index(f"* {headline}")
    return text[start : text.index("\n\n", start)]


# ----------------------------------------------------------------------- 1. new coverage of an older story


def test_new_articles_about_a_story_already_sent_bring_it_back_marked_updated_once(
    quiet: tuple[LoadedConfig, Store],
) -> None:
    loaded, store = quiet
    add_entry(store, FEED_A, "geneva-1", "Ceasefire talks open in Geneva", NOW - timedelta(hours=2))
    add_entry(store, FEED_B, "bridge-1", "Harbour bridge opens to traffic", NOW - timedelta(hours=2))
    store.save_stories(
        [("s-geneva", "Ceasefire talks open in Geneva", ())],
        [(entry_id(FEED_A, "geneva-1"), "s-geneva")],
        NOW - timedelta(hours=1),
    )
    [first] = newsletters.run_due_newsletters(loaded, store, NOW)
    assert (first.number, first.stories) == (1, 2)

    # Before the next issue: a new article (another outlet's own report) joins the Geneva
    # story; the bridge story gains only a syndicated copy of the article already sent;
    # and a story of its own arrives.
    later = NOW + timedelta(hours=3)
    add_entry(store, FEED_B, "geneva-2", "Geneva talks stall over prisoner exchange", later)
    store.save_stories(
        [("s-geneva", "Ceasefire talks open in Geneva", ())],
        [(entry_id(FEED_B, "geneva-2"), "s-geneva")],
        later,
    )
    add_entry(store, FEED_A, "bridge-copy", "Harbour bridge opens to traffic", later)
    add_entry(store, FEED_A, "markets-1", "Markets rally after rate decision", later)
    pipeline.collapse_duplicates(loaded.config, store)
    copy = store.get_entry(entry_id(FEED_A, "bridge-copy"))
    assert copy is not None
    assert copy.duplicate_of == entry_id(FEED_B, "bridge-1")  # the real dedupe stage's verdict

    [second] = newsletters.run_due_newsletters(loaded, store, NOW + timedelta(days=1))
    assert (second.number, second.stories) == (2, 2)
    text = archived_text(loaded, 2)
    assert sorted(headlines(text)) == ["Ceasefire talks open in Geneva", "Markets rally after rate decision"]
    geneva = story_block(text, "Ceasefire talks open in Geneva")
    assert "Updated" in geneva
    assert "New: Geneva talks stall over prisoner exchange (Outlet B, " in geneva
    assert "https://news.example/geneva-2" in geneva
    assert "Updated" not in story_block(text, "Markets rally after rate decision")
    page = (newsletters.archive_dir(loaded, "daily") / "0002.html").read_text(encoding="utf-8")
    assert "Updated" in page
    assert 'href="https://news.example/geneva-2"' in page
    record = store.latest_issue("daily")
    assert record is not None
    [updated] = [s for s in digest.issue_from_json(record.snapshot).stories if s.updated]
    assert [a.headline for a in updated.new_articles] == ["Geneva talks stall over prisoner exchange"]

    # Nothing joined it since: it is not repeated.
    add_entry(store, FEED_B, "rail-1", "Rail strike called off", NOW + timedelta(days=1, hours=2))
    [third] = newsletters.run_due_newsletters(loaded, store, NOW + timedelta(days=2))
    assert (third.number, third.stories) == (3, 1)
    assert headlines(archived_text(loaded, 3)) == ["Rail strike called off"]


# ----------------------------------------------------------------------- 2. --send while a retry is pending


def test_digest_send_while_the_last_issue_waits_on_a_retry_says_what_waits_and_exits_1(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tls_files: tuple[Path, Path],  # noqa: F811 -- the fixture imported above
) -> None:
    server = start_server(Handler(), tls_files)
    try:
        monkeypatch.setenv("AGGREGATOR_SMTP_USERNAME", USER)
        monkeypatch.setenv("AGGREGATOR_SMTP_PASSWORD", PASSWORD)
        monkeypatch.setenv("AGGREGATOR_SECRET_KEY", TEST_KEY)
        smtp = SMTP_YAML.format(port=server.port, cafile=server.cafile)
        loaded = load_config(make_project(tmp_path, smtp_yaml=smtp))
        with Store.open(loaded.database_url) as store:
            asyncio.run(pipeline.poll_feeds(loaded, store, datetime.now(UTC)))
            store.set_subscriber("daily", "a@example.com", True, datetime.now(UTC))
        server.handler.data_replies = ["451 4.7.1 greylisted"]  # the first DATA: a@
        app = command_app(loaded)
        first = CliRunner().invoke(app, ["digest", "daily", "--send"])
        assert "daily #1:" in first.stdout
        assert "1 sent, 1 to retry" in first.stdout

        again = CliRunner().invoke(app, ["digest", "daily", "--send"])
        with Store.open(loaded.database_url) as store:
            [row] = [d for d in store.deliveries("daily", 1) if d.status == "retry"]
            assert store.latest_issue("daily").number == 1  # type: ignore[union-attr]
        assert row.next_attempt is not None
        # It printed the resumed #1 ("1 sent, 1 to retry") and exited 0: nothing said that
        # no new issue started, nor why, nor when it would.
        assert again.exit_code == 1, again.output
        said = " ".join(again.output.split())
        assert "no new issue" in said
        assert "daily #1" in said
        assert "1 recipient" in said
        assert "451 4.7.1 greylisted" in said
        assert digest.format_time(row.next_attempt, "Europe/London") in said
        assert "aggregator digest daily --send" in said  # what to do
        assert received_count(server) == 1
    finally:
        server.controller.stop()


def received_count(server: SmtpServer) -> int:
    return len(server.handler.messages)


# ----------------------------------------------------------------------- 3. runs with nothing to send


def test_issues_with_nothing_new_use_no_number_readers_see(quiet: tuple[LoadedConfig, Store]) -> None:
    loaded, store = quiet
    add_entry(store, FEED_A, "geneva-1", "Ceasefire talks open in Geneva", NOW - timedelta(hours=2))
    [first] = newsletters.run_due_newsletters(loaded, store, NOW)
    assert (first.shown_number, first.status) == (1, "done")

    for day in (1, 2):  # 07:00 has passed; nothing new
        [empty] = newsletters.run_due_newsletters(loaded, store, NOW + timedelta(days=day))
        assert (empty.status, empty.shown_number) == ("empty", 2)  # 2: the next issue's, not used
        assert describe(empty) == "daily: nothing new since issue #1; no email"
        # Recorded (the schedule counts from it): not due again before the next 07:00.
        assert newsletters.run_due_newsletters(loaded, store, NOW + timedelta(days=day, hours=1)) == []

    add_entry(store, FEED_B, "rail-1", "Rail strike called off", NOW + timedelta(days=2, hours=2))
    [second] = newsletters.run_due_newsletters(loaded, store, NOW + timedelta(days=3))
    assert (second.shown_number, second.status, second.stories) == (2, "done", 1)
    assert describe(second).startswith(
        f"daily #2: 1 story: 1 message written to {newsletters.outbox_dir(loaded)}/;"
    )
    folder = newsletters.archive_dir(loaded, "daily")
    assert sorted(p.name for p in folder.glob("*.html")) == ["0001.html", "0002.html", "index.html"]
    assert re.findall(r'href="(\d{4})\.html"', (folder / "index.html").read_text()) == ["0002", "0001"]
    assert "issue 2 · 1 story" in archived_text(loaded, 2)
    assert "Rail strike called off" in archived_text(loaded, 2)
    *_, eml = outbox_files(loaded)
    assert eml.name.startswith("daily-0002-")
    message = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert ".2." in message["Message-ID"]
    assert "/archive/daily/0002.html" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    [third] = newsletters.run_due_newsletters(loaded, store, NOW + timedelta(days=4))
    assert (third.status, third.shown_number) == ("empty", 3)


def test_a_first_run_with_nothing_to_send_leaves_issue_1_to_the_first_with_stories(
    quiet: tuple[LoadedConfig, Store],
) -> None:
    loaded, store = quiet
    [empty] = newsletters.run_due_newsletters(loaded, store, NOW)
    assert (empty.status, empty.shown_number) == ("empty", 1)
    assert describe(empty) == "daily: nothing new to send yet; no email"
    assert newsletters.run_due_newsletters(loaded, store, NOW + timedelta(hours=1)) == []
    add_entry(store, FEED_A, "geneva-1", "Ceasefire talks open in Geneva", NOW + timedelta(hours=2))
    [first] = newsletters.run_due_newsletters(loaded, store, NOW + timedelta(days=1))
    assert (first.shown_number, first.status, first.stories) == (1, "done", 1)
    folder = newsletters.archive_dir(loaded, "daily")
    assert sorted(p.name for p in folder.glob("*.html")) == ["0001.html", "index.html"]
    assert "issue 1 · 1 story" in archived_text(loaded, 1)


def store_an_old_empty_issue(store: Store, number: int, start: datetime, end: datetime) -> None:
    """An empty issue as an earlier version stored it: numbered like any other."""
    frozen = digest.DigestIssue("daily", "The Daily", number, start, end, end, "UTC", "en", ())
    record = IssueRecord("daily", number, start, end, end, "empty", 0, digest.issue_to_json(frozen), end)
    store.freeze_issue(record, (), end)


def test_two_empty_issues_an_earlier_version_stored_leave_no_gap_in_the_archive(
    quiet: tuple[LoadedConfig, Store],
) -> None:
    # Each took a number of its own then (#2, #3): the next issue readers get is still #2.
    loaded, store = quiet
    add_entry(store, FEED_A, "geneva-1", "Ceasefire talks open in Geneva", NOW - timedelta(hours=2))
    newsletters.run_due_newsletters(loaded, store, NOW)
    for number in (2, 3):
        store_an_old_empty_issue(
            store, number, NOW + timedelta(days=number - 2), NOW + timedelta(days=number - 1)
        )
    add_entry(store, FEED_B, "rail-1", "Rail strike called off", NOW + timedelta(days=2, hours=2))
    [after] = newsletters.run_due_newsletters(loaded, store, NOW + timedelta(days=3))
    assert (after.number, after.shown_number, after.status) == (4, 2, "done")
    archived = sorted(p.name for p in newsletters.archive_dir(loaded, "daily").glob("0*.html"))
    assert archived == ["0001.html", "0002.html"]


def test_an_empty_issue_an_earlier_version_stored_leaves_its_unused_number_to_the_next(
    quiet: tuple[LoadedConfig, Store],
) -> None:
    # Earlier versions numbered an empty issue like any other: #2 was never sent nor archived.
    loaded, store = quiet
    add_entry(store, FEED_A, "geneva-1", "Ceasefire talks open in Geneva", NOW - timedelta(hours=2))
    newsletters.run_due_newsletters(loaded, store, NOW)
    tomorrow = NOW + timedelta(days=1)
    store_an_old_empty_issue(store, 2, NOW, tomorrow)
    add_entry(store, FEED_B, "rail-1", "Rail strike called off", tomorrow + timedelta(hours=2))
    [second] = newsletters.run_due_newsletters(loaded, store, NOW + timedelta(days=2))
    assert (second.number, second.shown_number, second.status) == (3, 2, "done")
    assert "issue 2 · 1 story" in archived_text(loaded, 2)
    record = store.latest_issue("daily")
    assert record is not None
    assert newsletters.shown_number(record) == 2


def test_a_story_this_newsletter_never_sent_is_not_marked_updated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The newsletter follows Outlet A only: the story Outlet B broke was not in issue #1.
    # When A reports on it, its readers hear of it for the first time: no "Updated" mark.
    monkeypatch.setenv("AGGREGATOR_SECRET_KEY", TEST_KEY)
    narrow = CONFIG.replace(
        "    subscribers: [reader@example.com]\n",
        f"    subscribers: [reader@example.com]\n    feeds: [{FEED_A}]\n",
    )
    (tmp_path / "feeds.yaml").write_text(narrow)
    loaded = load_config(tmp_path / "feeds.yaml")
    with Store.open(loaded.database_url) as store:
        store.sync_feeds([(FEED_A, "Outlet A"), (FEED_B, "Outlet B")])
        add_entry(store, FEED_A, "other-1", "Harbour bridge reopens", NOW - timedelta(hours=2))
        add_entry(store, FEED_B, "geneva-1", "Ceasefire talks open in Geneva", NOW - timedelta(hours=2))
        story = [(entry_id(FEED_B, "geneva-1"), "s-geneva")]
        store.save_stories(
            [("s-geneva", "Ceasefire talks open in Geneva", ())], story, NOW - timedelta(hours=1)
        )
        newsletters.run_due_newsletters(loaded, store, NOW)
        assert "Ceasefire" not in archived_text(loaded, 1)
        later = NOW + timedelta(hours=3)
        add_entry(store, FEED_A, "geneva-2", "Geneva talks stall over prisoner exchange", later)
        joined = [(entry_id(FEED_A, "geneva-2"), "s-geneva")]
        store.save_stories([("s-geneva", "Ceasefire talks open in Geneva", ())], joined, later)
        [second] = newsletters.run_due_newsletters(loaded, store, NOW + timedelta(days=1))
        text = archived_text(loaded, 2)
    assert second.stories == 1
    assert "Geneva" in text
    assert "Updated" not in text


def test_an_issue_nobody_is_subscribed_to_says_so_not_zero_sent(tmp_path: Path) -> None:
    # "daily #1: 6 stories: 0 written to newsletters/outbox/" read as if every send failed.
    done = newsletters.IssueOutcome("daily", 1, "done", stories=6, shown=6, outbox=tmp_path / "outbox")
    assert describe(done).startswith("daily #1: 6 stories: no subscribers yet: nobody to send it to;")
    one = newsletters.IssueOutcome("daily", 1, "done", stories=6, shown=6, sent=1, outbox=tmp_path / "outbox")
    assert ": 1 message written to " in describe(one)
