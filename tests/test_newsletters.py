"""Newsletter runs end to end: due issues, the send log, resuming, the archive, the command.

Real parts: the bundled sample feeds polled into a real SQLite store, the outbox on disk,
aiosmtpd on 127.0.0.1 with STARTTLS and AUTH, a subprocess killed with SIGKILL mid-issue,
and headless Chromium for what a reader sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from aggregator import cli, digest, mail, newsletters, pipeline
from aggregator.cli_digest import describe
from aggregator.cli_digest import digest as digest_command
from aggregator.config import LoadedConfig, NewsletterConfig, load_config
from aggregator.errors import AggregatorError
from aggregator.runlock import sending_lock
from aggregator.service import StoppableTransport
from aggregator.store import Store
from aggregator.types import Entry, FeedState, FeedStatus
from tests.browser import CHROMIUM_ARGS
from tests.conftest import PROJECT_ROOT
from tests.feedserver import FeedServer
from tests.test_mail import (  # tls_files is a fixture
    PASSWORD,
    USER,
    Handler,
    SmtpServer,
    check_message,
    start_server,
    tls_files,  # noqa: F401
)

NOW = datetime(2025, 8, 18, 12, 0, tzinfo=UTC)  # a Monday; the sample's newest items are from the day before
GOLDEN = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("AGGREGATOR_UPDATE_GOLDEN") == "1"
TEST_KEY = "test-key-" + "0" * 32  # a key of at least 32 bytes, as secret_key requires


def make_project(tmp_path: Path, newsletters_yaml: str | None = None, smtp_yaml: str = "") -> Path:
    """A copy of the bundled feeds.yaml and seeds, optionally with other newsletters or SMTP."""
    shutil.copytree(PROJECT_ROOT / "seeds", tmp_path / "seeds")
    text = (PROJECT_ROOT / "feeds.yaml").read_text()
    if newsletters_yaml is not None:
        text = text[: text.index("newsletters:")] + newsletters_yaml
    (tmp_path / "feeds.yaml").write_text(text + smtp_yaml)
    return tmp_path / "feeds.yaml"


def poll(loaded: LoadedConfig, store: Store) -> None:
    summary = asyncio.run(pipeline.poll_feeds(loaded, store, NOW))
    assert summary.failed == 0


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LoadedConfig, Store]]:
    monkeypatch.setenv("AGGREGATOR_SECRET_KEY", TEST_KEY)
    loaded = load_config(make_project(tmp_path))
    with Store.open(loaded.database_url) as store:
        poll(loaded, store)
        yield loaded, store


def outbox_files(loaded: LoadedConfig) -> list[Path]:
    folder = newsletters.outbox_dir(loaded)
    return sorted(folder.glob("*.eml")) if folder.exists() else []


def add_entry(store: Store, feed: str, guid: str, title: str, at: datetime) -> None:
    state = FeedState(url=feed, status=FeedStatus.OK, last_fetch=at, title=None)
    entry = Entry(
        guid=guid,
        url=f"https://news.example/{guid}",
        canonical_url=None,
        title=title,
        published=at,
        text=f"{title}. The full story.",
    )
    store.save_poll(state, [*_existing(store, feed)], at)
    store.save_poll(state, [*_existing(store, feed), entry], at)


def _existing(store: Store, feed: str) -> list[Entry]:
    return [e.entry for e in store.iter_entries([feed])]


# ----------------------------------------------------------------------- outbox runs


def test_first_run_leaves_the_first_issue_in_the_outbox_and_archive(
    project: tuple[LoadedConfig, Store],
) -> None:
    loaded, store = project
    outcomes = newsletters.run_due_newsletters(loaded, store, NOW)
    assert [(o.newsletter, o.number, o.status, o.sent) for o in outcomes] == [("daily", 1, "done", 1)]
    [eml] = outbox_files(loaded)
    msg = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    check_message(msg, "reader@example.com")  # type: ignore[arg-type]
    assert msg["Date"] == "Mon, 18 Aug 2025 12:00:00 +0000"
    token = str(msg["List-Unsubscribe"]).split("/unsubscribe/")[1].split(">")[0]
    # One-click https alone: nothing reads the sender's mailbox, so a mailto: entry (which
    # some clients use to "unsubscribe") unsubscribed nobody, and the reader was not told.
    assert (
        str(msg["List-Unsubscribe"])
        == f"<{newsletters.unsubscribe_url(loaded, newsletters.find_newsletter(loaded, 'daily'), token)}>"
    )
    key = newsletters.secret_key(loaded)
    assert newsletters.read_unsubscribe_token(key, token) == ("daily", "reader@example.com")
    assert newsletters.read_unsubscribe_token(key, token[:-2] + "xx") is None

    folder = newsletters.archive_dir(loaded, "daily")
    assert sorted(p.name for p in folder.iterdir()) == ["0001.html", "0001.txt", "index.html"]
    for page in folder.iterdir():
        assert token not in page.read_text()
        assert "reader@example.com" not in page.read_text()
    assert "0001.html" in (folder / "index.html").read_text()
    # The same `now` again: nothing is due, nothing sent twice.
    assert newsletters.run_due_newsletters(loaded, store, NOW) == []
    assert len(outbox_files(loaded)) == 1


def test_an_issue_with_nothing_new_is_recorded_but_not_sent(project: tuple[LoadedConfig, Store]) -> None:
    loaded, store = project
    newsletters.run_due_newsletters(loaded, store, NOW)
    tomorrow = NOW + timedelta(days=1)  # 07:00 Europe/London has passed
    [outcome] = newsletters.run_due_newsletters(loaded, store, tomorrow)
    assert (outcome.number, outcome.status) == (2, "empty")
    assert len(outbox_files(loaded)) == 1
    latest = store.latest_issue("daily")
    assert latest is not None
    assert latest.window_start == NOW
    assert latest.window_end == tomorrow
    assert newsletters.run_due_newsletters(loaded, store, tomorrow + timedelta(hours=1)) == []


def test_an_issue_whose_email_could_show_no_story_sends_no_email(
    project: tuple[LoadedConfig, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded, store = project
    original = digest._story_html
    monkeypatch.setattr(digest, "_story_html", lambda story, timezone: original(story, timezone) + "<")
    [outcome] = newsletters.run_due_newsletters(loaded, store, NOW)
    assert (outcome.number, outcome.status, outcome.sent) == (1, "empty", 0)
    assert outbox_files(loaded) == []
    latest = store.latest_issue("daily")
    assert latest is not None
    assert (latest.status, latest.stories) == ("empty", 0)


def test_the_next_issue_holds_only_what_arrived_since_the_last(project: tuple[LoadedConfig, Store]) -> None:
    loaded, store = project
    newsletters.run_due_newsletters(loaded, store, NOW)
    feed = loaded.config.feeds[0].url
    add_entry(store, feed, "late-1", "Ceasefire talks resume in Geneva", NOW + timedelta(hours=3))
    early = NOW + timedelta(hours=5)  # before 07:00 tomorrow: not due yet
    assert newsletters.run_due_newsletters(loaded, store, early) == []
    [outcome] = newsletters.run_due_newsletters(loaded, store, NOW + timedelta(days=1))
    assert (outcome.number, outcome.stories, outcome.sent) == (2, 1, 1)
    text = (newsletters.archive_dir(loaded, "daily") / "0002.txt").read_text()
    assert "Ceasefire talks resume in Geneva" in text
    assert text.count("\n* ") == 1


def test_a_feed_added_with_its_archive_sends_its_news_not_its_archive(
    project: tuple[LoadedConfig, Store],
) -> None:
    loaded, store = project
    newsletters.run_due_newsletters(loaded, store, NOW)
    added = NOW + timedelta(hours=20)  # a feed added before the next issue, with its old items
    text = loaded.path.read_text(encoding="utf-8").replace(
        "feeds:\n", "feeds:\n  - url: https://new.example/feed\n", 1
    )
    loaded.path.write_text(text, encoding="utf-8")
    loaded = load_config(loaded.path)
    state = FeedState(url="https://new.example/feed", status=FeedStatus.OK, last_fetch=added)
    items = [
        Entry(guid="old", url="https://new.example/2019/harbour", canonical_url=None,
              title="Harbour bridge opens to traffic", published=datetime(2019, 3, 1, tzinfo=UTC),
              text="The new harbour bridge opened to traffic this morning."),
        Entry(guid="new", url="https://new.example/today/council", canonical_url=None,
              title="City council passes budget", published=added - timedelta(hours=2),
              text="The council passed next year's budget late on Monday."),
    ]  # fmt: skip
    store.save_poll(state, items, added)
    [outcome] = newsletters.run_due_newsletters(loaded, store, NOW + timedelta(days=1))
    text = (newsletters.archive_dir(loaded, "daily") / "0002.txt").read_text()
    assert "City council passes budget" in text
    assert "Harbour bridge" not in text
    assert outcome.stories == 1


def test_a_new_database_continues_the_archives_numbering_instead_of_overwriting_it(
    project: tuple[LoadedConfig, Store],
) -> None:
    # The archive outlived its database (a new file, a move to PostgreSQL): issue 1 again
    # would overwrite the page readers' links point to and repeat its Message-ID.
    loaded, store = project
    folder = newsletters.archive_dir(loaded, "daily")
    folder.mkdir(parents=True)
    for number in (1, 2, 7):
        (folder / f"{number:04d}.html").write_text(f"issue {number} as sent", encoding="utf-8")
    [outcome] = newsletters.run_due_newsletters(loaded, store, NOW)
    assert (outcome.number, outcome.status) == (8, "done")
    assert (folder / "0001.html").read_text(encoding="utf-8") == "issue 1 as sent"
    assert (folder / "0008.html").is_file()
    [eml] = outbox_files(loaded)
    assert ".8." in email.message_from_bytes(eml.read_bytes(), policy=policy.default)["Message-ID"]
    # The index links every page the archive holds, not only this database's issues.
    index = (folder / "index.html").read_text(encoding="utf-8")
    assert re.findall(r'href="(\d{4})\.html"', index) == ["0008", "0007", "0002", "0001"]


def test_recipients_are_the_file_plus_web_subscribers_minus_unsubscribed(
    project: tuple[LoadedConfig, Store],
) -> None:
    loaded, store = project
    store.set_subscriber("daily", "Web.Reader@Example.com", True, NOW)
    store.set_subscriber("daily", "reader@example.com", False, NOW)  # unsubscribed via the web
    [outcome] = newsletters.run_due_newsletters(loaded, store, NOW)
    assert outcome.sent == 1
    [eml] = outbox_files(loaded)
    assert email.message_from_bytes(eml.read_bytes(), policy=policy.default)["To"] == "web.reader@example.com"


def test_a_crash_after_the_claim_resumes_without_a_second_copy(
    project: tuple[LoadedConfig, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded, store = project
    for address in ("a@example.com", "b@example.com", "c@example.com"):
        store.set_subscriber("daily", address, True, NOW)
    outbox = newsletters.default_transport(loaded)
    real = outbox.deliver
    delivered: list[str] = []

    def crashing(sender: str, recipient: str, data: bytes, name: str, before_data: object) -> object:
        if recipient == "b@example.com" and not delivered.count("crashed"):
            delivered.append("crashed")
            raise KeyboardInterrupt  # the process dies after claiming b, before writing it
        delivered.append(recipient)
        return real(sender, recipient, data, name, before_data)  # type: ignore[arg-type]

    monkeypatch.setattr(outbox, "deliver", crashing)
    with pytest.raises(KeyboardInterrupt):
        newsletters.run_due_newsletters(loaded, store, NOW, transport=outbox)
    states = {d.recipient: d.status for d in store.deliveries("daily", 1)}
    assert states["a@example.com"] == "sent"
    assert states["b@example.com"] == "sending"
    [outcome] = newsletters.run_due_newsletters(loaded, store, NOW + timedelta(minutes=1), transport=outbox)
    assert outcome.status == "done"
    assert outcome.sent == 4
    assert delivered == ["a@example.com", "crashed", "b@example.com", "c@example.com", "reader@example.com"]
    assert len(outbox_files(loaded)) == 4


# ----------------------------------------------------------------------- SMTP runs


SMTP_YAML = """
smtp:
  host: 127.0.0.1
  port: {port}
  security: starttls
  ca_file: {cafile}
  rate_per_minute: 60000
  timeout: 5s
"""


@contextlib.contextmanager
def project_sending_to(
    server: SmtpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, subscribers: Sequence[str]
) -> Iterator[tuple[LoadedConfig, Store]]:
    """The project polled, sending through ``server`` (stopped at the end) to ``subscribers``."""
    monkeypatch.setenv("AGGREGATOR_SMTP_USERNAME", USER)
    monkeypatch.setenv("AGGREGATOR_SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("AGGREGATOR_SECRET_KEY", TEST_KEY)
    loaded = load_config(
        make_project(tmp_path, smtp_yaml=SMTP_YAML.format(port=server.port, cafile=server.cafile))
    )
    try:
        with Store.open(loaded.database_url) as store:
            poll(loaded, store)
            for address in subscribers:
                store.set_subscriber("daily", address, True, NOW)
            yield loaded, store
    finally:
        server.controller.stop()


@pytest.fixture
def smtp_project(
    tmp_path: Path,
    tls_files: tuple[Path, Path],  # noqa: F811 -- the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[LoadedConfig, Store, SmtpServer]]:
    server = start_server(Handler(), tls_files)
    readers = ("a@example.com", "b@example.com", "c@example.com", "d@example.com")
    with project_sending_to(server, tmp_path, monkeypatch, readers) as (loaded, store):
        yield loaded, store, server


def received(server: SmtpServer) -> list[str]:
    return sorted(rcpt for _sender, rcpts, _data in server.handler.messages for rcpt in rcpts)


def test_smtp_run_delivers_one_message_per_recipient(
    smtp_project: tuple[LoadedConfig, Store, SmtpServer],
) -> None:
    loaded, store, server = smtp_project
    [outcome] = newsletters.run_due_newsletters(loaded, store, NOW)
    assert (outcome.status, outcome.sent) == ("done", 5)
    assert received(server) == [
        "a@example.com",
        "b@example.com",
        "c@example.com",
        "d@example.com",
        "reader@example.com",
    ]
    for _sender, rcpts, data in server.handler.messages:
        check_message(email.message_from_bytes(data, policy=policy.default), rcpts[0])  # type: ignore[arg-type]
    assert not outbox_files(loaded)


def test_451_is_retried_with_backoff_and_550_fails_for_that_subscriber(
    smtp_project: tuple[LoadedConfig, Store, SmtpServer],
) -> None:
    loaded, store, server = smtp_project
    server.handler.data_replies = ["451 4.7.1 greylisted"]  # the first DATA (a@)
    server.handler.reject = {"d@example.com"}
    [first] = newsletters.run_due_newsletters(loaded, store, NOW)
    assert (first.status, first.sent, first.retrying, first.failed) == ("sending", 3, 1, 1)
    assert first.pending == ()  # greylisting is the server's routine: nothing to alarm anyone
    rows = {d.recipient: d for d in store.deliveries("daily", 1)}
    assert rows["a@example.com"].status == "retry"
    assert "451" in (rows["a@example.com"].last_error or "")
    assert rows["d@example.com"].status == "failed"
    assert "550" in (rows["d@example.com"].last_error or "")
    # Too early for the retry: nothing happens.
    [waiting] = newsletters.run_due_newsletters(loaded, store, NOW + timedelta(minutes=1))
    assert waiting.retrying == 1
    [done] = newsletters.run_due_newsletters(loaded, store, NOW + timedelta(minutes=6))
    assert (done.status, done.sent, done.failed) == ("done", 4, 1)
    assert received(server).count("a@example.com") == 1


def test_retries_stop_when_the_next_issue_is_due(
    smtp_project: tuple[LoadedConfig, Store, SmtpServer],
) -> None:
    loaded, store, server = smtp_project
    server.handler.data_replies = ["451 4.3.0 busy"]
    newsletters.run_due_newsletters(loaded, store, NOW)
    server.handler.data_replies = ["451 4.3.0 busy"] * 10
    outcomes = newsletters.run_due_newsletters(loaded, store, NOW + timedelta(days=1))
    assert [(o.number, o.status) for o in outcomes] == [(1, "done"), (2, "empty")]
    row = next(d for d in store.deliveries("daily", 1) if d.recipient == "a@example.com")
    assert row.status == "failed"
    assert (row.last_error or "").startswith("gave up: the next issue is due")


def test_a_put_off_reader_gets_one_last_try_when_the_next_issue_is_due(
    smtp_project: tuple[LoadedConfig, Store, SmtpServer],
) -> None:
    # `run --once` from cron once a day, at the newsletter's time: a reader greylisted at
    # 07:00 was never tried again, but given up at the next day's run without one more try,
    # and never had that issue although the server would have taken it.
    loaded, store, server = smtp_project
    server.handler.data_replies = ["451 4.7.1 greylisted"]  # a@
    [first] = newsletters.run_due_newsletters(loaded, store, NOW)
    assert first.retrying == 1
    outcomes = newsletters.run_due_newsletters(loaded, store, NOW + timedelta(days=1))
    assert [(o.number, o.status, o.sent, o.failed) for o in outcomes] == [
        (1, "done", 5, 0),
        (2, "empty", 0, 0),
    ]
    assert received(server).count("a@example.com") == 1
    row = next(d for d in store.deliveries("daily", 1) if d.recipient == "a@example.com")
    assert (row.status, row.attempts) == ("sent", 2)


def test_a_connection_lost_during_data_is_uncertain_and_never_resent(
    smtp_project: tuple[LoadedConfig, Store, SmtpServer],
) -> None:
    loaded, store, server = smtp_project
    server.handler.drop_on_data = 2  # b@: the server got it, the client never heard back
    [outcome] = newsletters.run_due_newsletters(loaded, store, NOW)
    assert outcome.uncertain == ("b@example.com",)
    assert (outcome.status, outcome.sent) == ("done", 4)
    assert newsletters.run_due_newsletters(loaded, store, NOW + timedelta(hours=1)) == []
    assert "b@example.com" not in received(server)


def test_a_sender_the_server_refuses_leaves_the_issue_waiting_and_fails_nobody(
    smtp_project: tuple[LoadedConfig, Store, SmtpServer],
) -> None:
    # As when cron lacks the credentials' variables: the server refuses MAIL FROM.  Each
    # reader was recorded as failed for good, so fixing the setup sent nothing.
    loaded, store, server = smtp_project
    server.handler.mail_replies = ["530 5.7.0 Authentication required"]
    [first] = newsletters.run_due_newsletters(loaded, store, NOW)
    assert (first.status, first.sent, first.failed) == ("sending", 0, 0)
    assert "refuses the sender digest@example.com" in first.errors[0]
    assert server.handler.mail_count == 1  # nobody else was tried
    [fixed] = newsletters.run_due_newsletters(loaded, store, NOW + timedelta(minutes=6))
    assert (fixed.status, fixed.sent, fixed.failed) == ("done", 5, 0)


@pytest.mark.parametrize("smtputf8", [False, True], ids=["server-without-smtputf8", "server-with-smtputf8"])
def test_a_reader_whose_address_is_not_ascii_before_the_at_gets_the_issue_if_the_server_can_carry_it(
    tmp_path: Path,
    tls_files: tuple[Path, Path],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    smtputf8: bool,
) -> None:
    # Such an address needs SMTPUTF8 (RFC 6531).  Without it on the server, that reader fails
    # with the reason and everyone else still gets the issue; with it, it is used.
    server = start_server(Handler(), tls_files, smtputf8=smtputf8)
    readers = ("a@example.com", "josé@example.org", "b@example.com")
    with project_sending_to(server, tmp_path, monkeypatch, readers) as (loaded, store):
        [first] = newsletters.run_due_newsletters(loaded, store, NOW)
        rows = {d.recipient: d for d in store.deliveries("daily", 1)}
        later = newsletters.run_due_newsletters(loaded, store, NOW + timedelta(hours=1))
    others = ["a@example.com", "b@example.com", "reader@example.com"]
    assert later == []  # the issue is over: nobody is tried again
    if smtputf8:
        assert (first.status, first.sent, first.failed) == ("done", 4, 0), first
        assert received(server) == sorted([*others, "josé@example.org"])
        [data] = [d for _s, rcpts, d in server.handler.messages if rcpts == ["josé@example.org"]]
        check_message(email.message_from_bytes(data, policy=policy.default), "josé@example.org")  # type: ignore[arg-type]
        return
    assert (first.status, first.sent, first.failed) == ("done", 3, 1), first
    assert received(server) == others  # each once
    error = rows["josé@example.org"].last_error or ""
    assert rows["josé@example.org"].status == "failed"
    assert error.startswith("josé@example.org: "), error
    assert f"127.0.0.1:{server.port} does not offer SMTPUTF8" in error
    assert any("josé@example.org" in e and "SMTPUTF8" in e for e in first.errors), first.errors


def test_real_mail_with_links_to_localhost_is_warned_about(
    smtp_project: tuple[LoadedConfig, Store, SmtpServer], caplog: pytest.LogCaptureFixture
) -> None:
    # The default output.base_url is http://localhost:8000/: readers could not unsubscribe.
    loaded, store, _server = smtp_project
    newsletters.run_due_newsletters(loaded, store, NOW)
    assert any(
        "unsubscribe and archive links point at http://localhost:8000/" in r.message for r in caplog.records
    )


def test_a_reader_who_unsubscribed_after_the_freeze_gets_nothing(
    smtp_project: tuple[LoadedConfig, Store, SmtpServer],
) -> None:
    loaded, store, server = smtp_project
    server.handler.data_replies = ["451 4.7.1 greylisted"]  # a@ waits for a retry
    [first] = newsletters.run_due_newsletters(loaded, store, NOW)
    assert first.retrying == 1
    store.set_subscriber("daily", "a@example.com", False, NOW + timedelta(minutes=1))
    [later] = newsletters.run_due_newsletters(loaded, store, NOW + timedelta(minutes=6))
    assert later.status == "done"
    assert "a@example.com" not in received(server)
    row = next(d for d in store.deliveries("daily", 1) if d.recipient == "a@example.com")
    assert row.status == "unsubscribed"
    assert later.unsubscribed == 1
    assert "1 unsubscribed since it was frozen" in describe(later)


def test_a_reader_taken_out_of_feeds_yaml_gets_no_more_tries_and_holds_up_no_issue(
    smtp_project: tuple[LoadedConfig, Store, SmtpServer],
) -> None:
    # reader@ was greylisted, then taken out of `subscribers:`: the retry mailed it anyway
    # (a new RCPT TO, a second 451), and kept the issue open until the give-up.
    loaded, store, server = smtp_project
    greylisted = "451 4.7.1 greylisted"
    server.handler.data_replies = [greylisted, "250 OK", "250 OK", "250 OK", greylisted]  # a@ and reader@
    [first] = newsletters.run_due_newsletters(loaded, store, NOW)
    assert (first.status, first.retrying) == ("sending", 2)
    text = loaded.path.read_text(encoding="utf-8")
    edited = text.replace("    subscribers:\n      - reader@example.com\n", "    subscribers: []\n")
    assert edited != text
    loaded.path.write_text(edited, encoding="utf-8")
    loaded = load_config(loaded.path)
    server.handler.data_replies = [greylisted, greylisted]  # a@ again; reader@ too, were it tried
    tried = server.handler.mail_count
    [later] = newsletters.run_due_newsletters(loaded, store, NOW + timedelta(minutes=6))
    assert (later.status, later.sent, later.retrying, later.unsubscribed) == ("sending", 3, 1, 1)
    assert server.handler.mail_count == tried + 1  # a@ only, still subscribed on the web
    row = next(d for d in store.deliveries("daily", 1) if d.recipient == "reader@example.com")
    assert (row.status, row.attempts) == ("unsubscribed", 1)
    assert "no longer among the subscribers of daily in feeds.yaml" in (row.last_error or "")
    assert "1 unsubscribed since it was frozen" in describe(later)
    server.handler.data_replies = []
    [done] = newsletters.run_due_newsletters(loaded, store, NOW + timedelta(minutes=20))
    assert (done.status, done.sent, done.unsubscribed) == ("done", 4, 1)
    assert "reader@example.com" not in received(server)
    assert received(server).count("a@example.com") == 1


def test_a_message_refused_at_the_end_of_data_fails_that_reader_alone(
    smtp_project: tuple[LoadedConfig, Store, SmtpServer],
) -> None:
    # A server that keeps a refused transaction open (no RSET from us): the next reader's
    # MAIL FROM met "503 nested MAIL command", read as a refused sender: the issue stopped.
    loaded, store, server = smtp_project
    server.handler.keep_refused_transaction = True
    server.handler.data_replies = ["250 OK", "554 5.7.1 message refused"]  # b@
    [outcome] = newsletters.run_due_newsletters(loaded, store, NOW)
    assert (outcome.status, outcome.sent, outcome.failed, outcome.stopped) == ("done", 4, 1, ""), outcome
    assert received(server) == ["a@example.com", "c@example.com", "d@example.com", "reader@example.com"]
    row = next(d for d in store.deliveries("daily", 1) if d.recipient == "b@example.com")
    assert (row.status, row.last_error) == ("failed", "DATA: 554 5.7.1 message refused")


def test_an_unforeseen_error_for_one_reader_is_recorded_and_the_others_get_the_issue(
    project: tuple[LoadedConfig, Store],
) -> None:
    # It crashed the run, and every later run again at the same reader: nobody after it got mail.
    loaded, store = project
    store.set_subscriber("daily", "a@example.com", True, NOW)
    outbox = newsletters.default_transport(loaded)

    class Flaky(mail.Transport):
        def deliver(
            self, sender: str, recipient: str, data: bytes, name: str, before_data: Callable[[], None]
        ) -> mail.DeliveryResult:
            if recipient == "a@example.com":
                raise RuntimeError("something nobody foresaw")
            return outbox.deliver(sender, recipient, data, name, before_data)

    [outcome] = newsletters.run_due_newsletters(loaded, store, NOW, transport=Flaky())
    # Nothing of it left: tried again later (it may pass), given up when the next issue is due.
    assert (outcome.status, outcome.sent, outcome.retrying) == ("sending", 1, 1)
    row = next(d for d in store.deliveries("daily", 1) if d.recipient == "a@example.com")
    assert row.status == "retry"
    assert "RuntimeError: something nobody foresaw" in (row.last_error or "")


class _FailsFor(mail.Transport):
    """The outbox, except that delivering to ``who`` raises what nobody foresaw."""

    def __init__(self, inner: mail.Transport, who: str) -> None:
        self.inner, self.who = inner, who

    def deliver(
        self, sender: str, recipient: str, data: bytes, name: str, before_data: Callable[[], None]
    ) -> mail.DeliveryResult:
        if recipient == self.who:
            raise RuntimeError("something nobody foresaw")
        return self.inner.deliver(sender, recipient, data, name, before_data)


def test_a_reader_put_off_by_an_unexpected_error_is_pending_with_the_next_try(
    project: tuple[LoadedConfig, Store],
) -> None:
    # Recorded as a retry like a server's 451 and reported as "1 to retry": `run --once`
    # exited 0 though a reader had no issue and nothing said the error would pass.
    loaded, store = project
    store.set_subscriber("daily", "a@example.com", True, NOW)
    outbox = newsletters.default_transport(loaded)
    [first] = newsletters.run_due_newsletters(
        loaded, store, NOW, transport=_FailsFor(outbox, "a@example.com")
    )
    assert first.pending == (
        "a@example.com: not delivered yet: unexpected error: RuntimeError: something nobody foresaw;"
        " next try at 18 Aug 2025, 13:05 BST (retried until the next issue is due)",
    )
    [healed] = newsletters.run_due_newsletters(loaded, store, NOW + timedelta(minutes=5), transport=outbox)
    assert (healed.status, healed.sent, healed.pending) == ("done", 2, ())


def test_an_outbox_that_cannot_be_written_leaves_its_readers_pending(
    project: tuple[LoadedConfig, Store],
) -> None:
    loaded, store = project
    folder = newsletters.outbox_dir(loaded)
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("a file where the outbox should be")
    [outcome] = newsletters.run_due_newsletters(loaded, store, NOW)
    assert (outcome.status, outcome.sent, outcome.retrying) == ("sending", 0, 1)
    [line] = outcome.pending
    assert line.startswith(f"reader@example.com: not delivered yet: writing {folder}/daily-0001-")
    assert line.endswith("; next try at 18 Aug 2025, 13:05 BST (retried until the next issue is due)")


def test_a_crash_while_writing_to_the_outbox_is_settled_through_a_wrapping_transport(
    project: tuple[LoadedConfig, Store],
) -> None:
    # The scheduler wraps the outbox (to stop between readers); recovery asked the wrapper
    # whether it was an outbox, got no, and called a written message uncertain.
    loaded, store = project
    newsletters.run_due_newsletters(loaded, store, NOW)
    name = f"daily-0001-{newsletters._short('reader@example.com')}"
    assert outbox_files(loaded)[0].name == f"{name}.eml"
    store.set_delivery("daily", 1, "reader@example.com", "in_data", NOW)  # as a crash mid-write leaves it
    record = store.latest_issue("daily")
    assert record is not None
    run = newsletters._Run(
        loaded,
        store,
        NOW,
        StoppableTransport(newsletters.default_transport(loaded), threading.Event()),
        b"k" * 32,
        None,
    )
    newsletters._recover(run, loaded.config.newsletters[0], record)
    row = next(d for d in store.deliveries("daily", 1) if d.recipient == "reader@example.com")
    assert row.status == "sent"


def test_two_folders_sending_from_one_database_never_send_together(
    project: tuple[LoadedConfig, Store], tmp_path: Path
) -> None:
    # The lock lived under each folder's data/: a second checkout on the same database
    # settled the first one's claimed readers as left by a crash, and sent them again.
    loaded, store = project
    other = tmp_path / "other"
    shutil.copytree(loaded.base_dir / "seeds", other / "seeds")
    (other / "feeds.yaml").write_text(
        loaded.path.read_text().replace("newsletters:", f'database: "{loaded.database_url}"\nnewsletters:', 1)
    )
    elsewhere = load_config(other / "feeds.yaml")
    assert elsewhere.database_url == loaded.database_url
    with sending_lock(loaded.database_url) as held:
        assert held
        assert newsletters.run_due_newsletters(elsewhere, store, NOW) == []  # skipped, not sent
    assert not outbox_files(elsewhere)


def test_a_signing_key_too_short_to_trust_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load_config(make_project(tmp_path))
    monkeypatch.setenv("AGGREGATOR_SECRET_KEY", "hunter2")
    with pytest.raises(AggregatorError, match=r"\$AGGREGATOR_SECRET_KEY\) has 7 bytes; it needs at least 32"):
        newsletters.secret_key(loaded)
    monkeypatch.setenv("AGGREGATOR_SECRET_KEY", " ")  # set but empty (docker-compose ${VAR:-}): unset
    key_file = tmp_path / "data" / "secret.key"
    key_file.parent.mkdir()
    key_file.write_bytes(b"")  # a crash between creating the file and writing the key
    with pytest.raises(AggregatorError, match=r"secret\.key\) has 0 bytes"):
        newsletters.secret_key(loaded)
    key_file.write_bytes(b"k" * 64)
    assert newsletters.secret_key(loaded) == b"k" * 64


def test_processes_starting_together_all_get_the_same_whole_key(tmp_path: Path) -> None:
    # The key file was created empty and written after: a process starting at that moment
    # read b"" and signed every link with it (anyone could forge them).
    loaded = load_config(make_project(tmp_path))
    env = {k: v for k, v in os.environ.items() if k != "AGGREGATOR_SECRET_KEY"}
    script = (
        "import sys; from pathlib import Path; from aggregator import newsletters; "
        "from aggregator.config import load_config; "
        "print(newsletters.secret_key(load_config(Path(sys.argv[1]))).decode())"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(loaded.path)], env=env, text=True, stdout=subprocess.PIPE
        )
        for _ in range(4)
    ]
    keys = {proc.communicate(timeout=60)[0].strip() for proc in procs}
    assert len(keys) == 1
    assert len(keys.pop()) == 64


def test_a_dkim_key_that_cannot_sign_is_reported_before_any_reader_is_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("dkim", reason="dkimpy is not installed")
    smtp = "\nsmtp:\n  host: 127.0.0.1\n  dkim_key_file: dkim.pem\n  dkim_selector: sel\n"
    loaded = load_config(make_project(tmp_path, smtp_yaml=smtp))
    (tmp_path / "dkim.pem").write_text("-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n")
    with pytest.raises(AggregatorError, match=r"reading the DKIM key: .*dkim\.pem: DKIM signing as sel\."):
        newsletters.dkim_key(loaded)


KILL_SCRIPT = """
import sys
from datetime import datetime
from pathlib import Path
from aggregator import newsletters
from aggregator.config import load_config
from aggregator.store import Store
loaded = load_config(Path(sys.argv[1]))
with Store.open(loaded.database_url) as store:
    for outcome in newsletters.run_due_newsletters(loaded, store, datetime.fromisoformat(sys.argv[2])):
        print(outcome.newsletter, outcome.number, outcome.status, outcome.sent, ",".join(outcome.uncertain))
"""


def test_a_process_killed_mid_issue_and_restarted_sends_nobody_twice(
    smtp_project: tuple[LoadedConfig, Store, SmtpServer],
) -> None:
    loaded, store, server = smtp_project
    procs: list[subprocess.Popen[str]] = []

    def kill_on_third(count: int) -> None:
        if count == 3:  # the third message's DATA is in: kill the sender before it hears 250
            os.kill(procs[0].pid, signal.SIGKILL)
            procs[0].wait(timeout=10)

    server.handler.on_data = kill_on_third
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    args = [sys.executable, "-c", KILL_SCRIPT, str(loaded.path), NOW.isoformat()]
    procs.append(subprocess.Popen(args, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    procs[0].communicate(timeout=60)
    assert procs[0].returncode == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while len(server.handler.messages) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)  # the server finishes the third DATA after the kill
    assert len(server.handler.messages) == 3
    server.handler.on_data = None

    restarted = subprocess.run(args, env=env, text=True, capture_output=True, timeout=60, check=True)
    everyone = ["a@example.com", "b@example.com", "c@example.com", "d@example.com", "reader@example.com"]
    got = received(server)
    assert got == everyone  # each exactly once
    assert restarted.stdout.strip() == "daily 1 done 4 c@example.com"
    states = {d.recipient: d.status for d in store.deliveries("daily", 1)}
    assert states["c@example.com"] == "uncertain"


# ----------------------------------------------------------------------- the command


def command_app(loaded: LoadedConfig) -> typer.Typer:
    app = typer.Typer()

    class Context:
        def load(self) -> LoadedConfig:
            return loaded

    @app.callback()
    def main(ctx: typer.Context) -> None:
        ctx.obj = Context()

    app.command("digest")(digest_command)
    return app


def polled_just_now(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LoadedConfig:
    """The seeds polled at the real time (no dedupe, no stories), as ``aggregator poll`` leaves
    them: the digest command reads the clock itself, and its issue must have stories."""
    monkeypatch.setenv("AGGREGATOR_SECRET_KEY", TEST_KEY)
    loaded = load_config(make_project(tmp_path))
    with Store.open(loaded.database_url) as store:
        asyncio.run(pipeline.poll_feeds(loaded, store, datetime.now(UTC)))
    return loaded


def test_digest_command_previews_sends_and_sends_test_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = polled_just_now(tmp_path, monkeypatch)
    runner = CliRunner()
    app = command_app(loaded)
    preview = runner.invoke(app, ["digest", "daily", "--preview"])
    assert preview.exit_code == 0, preview.output
    path = Path(preview.stdout.strip())
    assert path.is_file()
    assert "The Daily Digest" in path.read_text()
    assert outbox_files(loaded) == []

    for bad in ("bad@@example", "me example.com"):  # a typo: said as such, no traceback
        refused = runner.invoke(app, ["digest", "daily", "--to", bad])
        assert refused.exit_code == 2, refused.output
        assert f"--to {bad!r}: " in refused.output
        assert isinstance(refused.exception, SystemExit)  # an exit, not a traceback
    assert outbox_files(loaded) == []
    monkeypatch.chdir(loaded.base_dir)  # where a person runs it: the outbox said as they would type it
    test_copy = runner.invoke(app, ["digest", "daily", "--to", "me@example.com"])
    assert test_copy.exit_code == 0, test_copy.output
    [eml] = outbox_files(loaded)
    assert test_copy.stdout == (
        f"test copy to me@example.com: written to newsletters/outbox/{eml.name} (no smtp: configured)\n"
    )
    assert email.message_from_bytes(eml.read_bytes(), policy=policy.default)["Subject"].startswith("[test] ")

    sent = runner.invoke(app, ["digest", "daily", "--send"])
    assert sent.exit_code == 0, sent.output
    assert "daily #1:" in sent.stdout
    # Nothing was sent: the message was written to the outbox ("1 sent" said otherwise).
    assert (
        ": 1 message written to newsletters/outbox/; archive: newsletters/archive/daily/0001.html"
        in sent.stdout
    )
    assert "sent" not in sent.stdout
    assert len(outbox_files(loaded)) == 2

    unknown = runner.invoke(app, ["digest", "weekly", "--send"])
    assert unknown.exit_code == 2
    assert "no newsletter named 'weekly'" in unknown.output
    assert runner.invoke(app, ["digest", "daily"]).exit_code == 2
    assert newsletters.archive_dir(loaded, "daily").joinpath("0001.html").is_file()


def test_a_digest_sent_after_a_bare_poll_holds_each_story_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `aggregator poll` then `aggregator digest daily --send`, both from cron: the poll
    # stores without deduplicating or grouping, and the issue must not show the copies.
    loaded = polled_just_now(tmp_path, monkeypatch)
    sent = CliRunner().invoke(command_app(loaded), ["digest", "daily", "--send"])
    assert sent.exit_code == 0, sent.output
    headlines = [
        line
        for line in newsletters.archive_dir(loaded, "daily").joinpath("0001.txt").read_text().splitlines()
        if line.startswith("* ")
    ]
    assert len(headlines) == 6  # as `run --once` groups the seeds (a bare poll made 15)


def test_an_issue_sent_while_another_process_polls_waits_for_what_it_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, feed_server: FeedServer
) -> None:
    # `aggregator poll` and `aggregator digest daily --send` from cron at the same minute.
    # The poll dates what it stores by its start; an issue frozen before the poll has
    # stored would miss those entries, and the next issue starts after this one's end: no
    # issue would ever carry them.  The issue waits for the poll instead.
    monkeypatch.setenv("AGGREGATOR_SECRET_KEY", TEST_KEY)
    config = tmp_path / "feeds.yaml"
    config.write_text(
        f"feeds:\n  - url: {feed_server.url('/slow?delay=1.5')}\n"
        "newsletters:\n  - name: daily\n    title: Daily\n    schedule: '0 7 * * *'\n"
        "    sender: digest@example.com\n    subscribers: [reader@example.com]\n"
    )
    polling = subprocess.Popen(
        [sys.executable, "-m", "aggregator", "--config", str(config), "poll"],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while feed_server.count("/slow") == 0:  # the poll has read its clock and is fetching
            assert polling.poll() is None, polling.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        loaded = load_config(config)
        with Store.open(loaded.database_url) as store:
            [outcome] = newsletters.run_due_newsletters(loaded, store, datetime.now(UTC))
    finally:
        _out, err = polling.communicate(timeout=60)
    assert polling.returncode == 0, err
    assert (outcome.number, outcome.status) == (1, "done")
    text = newsletters.archive_dir(loaded, "daily").joinpath("0001.txt").read_text()
    assert "First story" in text


# ----------------------------------------------------------------------- golden files and browser


@pytest.fixture
def cycled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LoadedConfig, Store]]:
    """The seeds after one full cycle, as ``aggregator run --once`` leaves them on a fresh clone."""
    monkeypatch.setenv("AGGREGATOR_SECRET_KEY", TEST_KEY)
    loaded = load_config(make_project(tmp_path))
    with Store.open(loaded.database_url) as store:
        asyncio.run(pipeline.run_cycle(loaded, store, NOW, only_due=False))
        issues = newsletters.run_due_newsletters(loaded, store, NOW)
        assert [(o.newsletter, o.number, o.status) for o in issues] == [("daily", 1, "done")]
        yield loaded, store


def test_seed_digest_matches_the_golden_files(cycled: tuple[LoadedConfig, Store]) -> None:
    """Refresh on purpose only: ``AGGREGATOR_UPDATE_GOLDEN=1 .venv/bin/python -m pytest
    tests/test_newsletters.py tests/test_publish.py``, then read the diff."""
    loaded, _store = cycled
    folder = newsletters.archive_dir(loaded, "daily")
    for name, golden in (("0001.html", "seed-digest.html"), ("0001.txt", "seed-digest.txt")):
        actual = (folder / name).read_text()
        if UPDATE_GOLDEN:
            GOLDEN.mkdir(exist_ok=True)
            (GOLDEN / golden).write_text(actual)
        expected = (GOLDEN / golden).read_text()
        assert actual == expected, f"{golden} changed: rerun with AGGREGATOR_UPDATE_GOLDEN=1 if on purpose"


def test_the_email_and_the_output_feed_show_each_story_alike(cycled: tuple[LoadedConfig, Store]) -> None:
    loaded, store = cycled
    record = store.latest_issue("daily")
    assert record is not None
    issue = digest.issue_from_json(record.snapshot)
    feed = json.loads((loaded.base_dir / loaded.config.output.dir / "feed.json").read_text())
    items = {item["id"]: item for item in feed["items"]}
    assert issue.stories
    assert len(issue.stories) == len(items)  # the seeds fit in both: the same stories
    for story in issue.stories:
        item = items[story.id]
        extension = item["_aggregator"]
        outlets = dict.fromkeys([extension["outlet"], *(c["outlet"] for c in extension["also_reported_by"])])
        assert (story.headline, story.url) == (item["title"], item["url"])
        assert story.outlets == tuple(outlets)
        assert story.topics == tuple(item.get("tags", ()))
        assert story.time == datetime.fromisoformat(item["date_published"])
    # One entry per story, not per copy: a story several outlets carried is one item in both.
    assert any(len(s.outlets) > 1 for s in issue.stories)


CHECK_SCRIPT = """<script>
window.addEventListener("load", () => {
  const results = [...document.querySelectorAll("a")].filter(a => a.dataset.headline !== undefined).map(a => {
    const r = a.getBoundingClientRect(), s = getComputedStyle(a);
    const visible = r.width > 0 && r.height > 0 && r.left >= 0 && r.right <= window.innerWidth + 1
      && s.visibility === "visible" && s.display !== "none" && parseFloat(s.opacity) > 0.5
      && s.color !== getComputedStyle(document.body).backgroundColor;
    return {text: a.textContent, visible, right: r.right, width: window.innerWidth};
  });
  const out = document.createElement("pre"); out.id = "results";
  out.textContent = JSON.stringify(results); document.body.appendChild(out);
});
</script>"""


def _chromium(chromium: Path, args: list[str], width: int, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(chromium),
            "--headless",
            *CHROMIUM_ARGS,
            "--hide-scrollbars",
            f"--window-size={width},3000",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_every_headline_is_visible_at_phone_and_desktop_widths(
    project: tuple[LoadedConfig, Store], tmp_path: Path, chromium: Path
) -> None:
    loaded, store = project
    newsletters.run_due_newsletters(loaded, store, NOW)
    record = store.latest_issue("daily")
    assert record is not None
    issue = digest.issue_from_json(record.snapshot)
    rendered = digest.render_digest(issue, archive_url="https://example.org/archive/daily/0001.html")
    assert rendered.omitted == 0
    headlines = [s.headline for s in issue.stories]
    # Mark the headline links (the first link of each story block) for the in-page check.
    html = rendered.html.replace(
        '<div style="margin:0 0 18px"><a ', '<div style="margin:0 0 18px"><a data-headline '
    )
    page = tmp_path / "issue.html"
    page.write_text(html.replace("</body>", CHECK_SCRIPT + "</body>"))
    for width in (375, 800):
        dom = _chromium(chromium, ["--dump-dom", "--virtual-time-budget=2000"], width, page.as_uri()).stdout
        results = json.loads(
            dom.split('<pre id="results">')[1]
            .split("</pre>")[0]
            .replace("&quot;", '"')
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
        )
        assert [r["text"] for r in results] == headlines
        hidden = [r for r in results if not r["visible"]]
        assert hidden == [], f"at {width}px"
        shot = tmp_path / f"issue-{width}.png"
        _chromium(chromium, [f"--screenshot={shot}"], width, page.as_uri())
        assert shot.stat().st_size > 10_000
        with shot.open("rb") as handle:
            header = handle.read(24)
        assert int.from_bytes(header[16:20], "big") == width  # the PNG is as wide as the viewport


def test_an_unreachable_server_stops_the_issue_until_the_next_run(
    smtp_project: tuple[LoadedConfig, Store, SmtpServer],
    tls_files: tuple[Path, Path],  # noqa: F811 -- the fixture imported above
) -> None:
    loaded, store, server = smtp_project
    server.controller.stop()
    [outcome] = newsletters.run_due_newsletters(loaded, store, NOW)
    assert outcome.status == "sending"
    assert outcome.retrying == 1  # only the first was tried; the others wait, untouched
    assert "connecting to 127.0.0.1" in outcome.errors[0]
    states = sorted(d.status for d in store.deliveries("daily", 1))
    assert states == ["pending", "pending", "pending", "pending", "retry"]
    # The same server comes back (aiosmtpd's controller cannot be restarted: a new one).
    server.controller = start_server(server.handler, tls_files, port=server.port).controller
    [resumed] = newsletters.run_due_newsletters(loaded, store, NOW + timedelta(minutes=10))
    assert (resumed.status, resumed.sent) == ("done", 5)


def test_a_0230_issue_is_due_once_on_the_night_the_clocks_go_back() -> None:
    # Europe/Paris, 26 Oct 2025: 02:30 happens at 00:30 UTC (summer time) and again at 01:30 UTC.
    letter = NewsletterConfig(name="night", title="Night", schedule="30 2 * * *", timezone="Europe/Paris")
    first = newsletters.next_issue_time(letter, datetime(2025, 10, 25, 12, 0, tzinfo=UTC))
    assert first == datetime(2025, 10, 26, 0, 30, tzinfo=UTC)
    # After the issue sent at the first 02:30, the next one is the following night, not an hour later.
    assert newsletters.next_issue_time(letter, first) == datetime(2025, 10, 27, 1, 30, tzinfo=UTC)


def test_each_test_copy_is_a_message_of_its_own(project: tuple[LoadedConfig, Store]) -> None:
    # Both copies had one Message-ID (providers drop the second) and one outbox file.
    loaded, store = project
    for minutes in (0, 5):
        result = newsletters.send_test_copy(
            loaded, store, NOW + timedelta(minutes=minutes), "daily", "me@example.com"
        )
        assert result.outcome is mail.Outcome.SENT
    copies = [email.message_from_bytes(f.read_bytes(), policy=policy.default) for f in outbox_files(loaded)]
    assert len(copies) == 2
    assert copies[0]["Message-ID"] != copies[1]["Message-ID"]


def test_digest_send_into_an_archive_that_is_a_file_says_so_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A traceback and exit 1 (`run --once` already said it in one line).
    loaded = polled_just_now(tmp_path, monkeypatch)
    (tmp_path / "newsletters").mkdir(exist_ok=True)
    (tmp_path / "newsletters" / "archive").write_text("a file where the archive should be")
    sent = CliRunner().invoke(command_app(loaded), ["digest", "daily", "--send"])
    assert sent.exit_code == 1
    assert sent.exception is None or isinstance(sent.exception, SystemExit)
    assert "error: archiving newsletter daily's issue #1: cannot write" in sent.output
    assert "archive is a file, not a folder" in sent.output
    assert "Traceback" not in sent.output


def test_a_test_copy_after_an_issue_with_nothing_new_is_the_last_issue_with_stories(
    smtp_project: tuple[LoadedConfig, Store, SmtpServer],
) -> None:
    # `digest --send` on a day with nothing new records an empty issue; a `--to` copy then
    # went out with no story, "issue 2 · 0 stories", and a browser link to no archive page.
    loaded, store, server = smtp_project
    newsletters.run_due_newsletters(loaded, store, NOW)
    [empty] = newsletters.run_due_newsletters(loaded, store, NOW + timedelta(days=1))
    assert empty.status == "empty"
    result = newsletters.send_test_copy(loaded, store, NOW + timedelta(days=1), "daily", "me@example.com")
    assert result.outcome is mail.Outcome.SENT
    *_, (_sender, rcpts, data) = server.handler.messages
    assert rcpts == ["me@example.com"]
    copy = email.message_from_bytes(data, policy=policy.default)
    text = copy.get_body(("plain",)).get_content()  # type: ignore[attr-defined]
    assert "issue 1 · 15 stories" in text  # the seeds as polled, not yet grouped
    assert "/archive/daily/0001.html" in text


def test_a_server_that_loses_every_message_during_data_stops_the_issue_instead_of_losing_everyone(
    smtp_project: tuple[LoadedConfig, Store, SmtpServer],
) -> None:
    # A content filter slower than smtp.timeout, or a proxy that drops each DATA: every
    # reader was marked uncertain in turn (never sent again), and nobody got the issue.
    loaded, store, server = smtp_project
    server.handler.drop_on_data = 1
    server.handler.on_data = lambda count: setattr(server.handler, "drop_on_data", count)  # every DATA
    [outcome] = newsletters.run_due_newsletters(loaded, store, NOW)
    assert outcome.status == "sending"
    assert len(outcome.uncertain) == 2  # two in a row: the server is at fault, not the readers
    assert "during DATA" in outcome.errors[-1]
    server.handler.on_data = None
    server.handler.drop_on_data = None
    [resumed] = newsletters.run_due_newsletters(loaded, store, NOW + timedelta(minutes=10))
    assert (resumed.status, resumed.sent, len(resumed.uncertain)) == ("done", 3, 2)


def _two_readers_and_the_server_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tls: tuple[Path, Path]
) -> tuple[LoadedConfig, int]:
    """The sample project with a second reader, its SMTP port one where nothing listens."""
    monkeypatch.setenv("AGGREGATOR_SECRET_KEY", TEST_KEY)
    server = start_server(Handler(), tls)
    port = server.port
    server.controller.stop()  # nothing listens there any more
    newsletters_yaml = (PROJECT_ROOT / "feeds.yaml").read_text().split("newsletters:", 1)[1]
    newsletters_yaml = "newsletters:" + newsletters_yaml.replace(
        "      - reader@example.com", "      - reader@example.com\n      - other@example.com"
    )
    extra = SMTP_YAML.format(port=port, cafile=tls[0])
    return load_config(make_project(tmp_path, newsletters_yaml, extra)), port


def test_digest_send_with_the_server_down_says_who_waits_and_exits_1(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tls_files: tuple[Path, Path],  # noqa: F811
) -> None:
    # It printed "0 sent, 1 to retry" and exited 0 while nobody had the issue.
    loaded, port = _two_readers_and_the_server_down(tmp_path, monkeypatch, tls_files)
    with Store.open(loaded.database_url) as store:
        asyncio.run(pipeline.poll_feeds(loaded, store, datetime.now(UTC)))
    sent = CliRunner().invoke(command_app(loaded), ["digest", "daily", "--send"])
    assert sent.exit_code == 1, sent.output
    assert "0 sent, 1 to retry, 1 waiting" in sent.output
    assert f"connecting to 127.0.0.1:{port}" in sent.output


def test_run_once_with_the_server_down_says_who_waits_and_exits_1(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tls_files: tuple[Path, Path],  # noqa: F811
) -> None:
    # As `digest --send` says it: exit 0 told cron that all was well.
    loaded, port = _two_readers_and_the_server_down(tmp_path, monkeypatch, tls_files)
    ran = CliRunner().invoke(cli.app, ["--config", str(loaded.path), "run", "--once"])
    assert ran.exit_code == 1, ran.output
    assert "0 sent, 1 to retry, 1 waiting" in ran.output
    assert f"stopped: connecting to 127.0.0.1:{port}" in ran.output


def test_run_once_with_a_reader_put_off_by_a_fault_here_names_them_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The outbox could not be written: the reader was "1 to retry" and `run --once` exited 0.
    monkeypatch.setenv("AGGREGATOR_SECRET_KEY", TEST_KEY)
    loaded = load_config(make_project(tmp_path))
    (tmp_path / "newsletters").mkdir()
    (tmp_path / "newsletters" / "outbox").write_text("a file where the outbox should be")
    ran = CliRunner().invoke(cli.app, ["--config", str(loaded.path), "run", "--once"])
    assert ran.exit_code == 1, ran.output
    said = " ".join(ran.output.split())
    assert f"0 messages written to {newsletters.outbox_dir(loaded)}/, 1 to retry" in said
    assert "reader@example.com: not delivered yet: writing " in said
    assert "; next try at " in said
