"""Readers the mail server puts off: one reader's 421 or dropped connection at RCPT TO, a
server that puts off every message at DATA, and a reader left uncertain under the scheduler.

Real parts: the sample feeds polled into SQLite, aiosmtpd on 127.0.0.1 with STARTTLS and
AUTH (``tests.test_mail``), the newsletter pipeline and the scheduler's ``Service``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from aggregator import mail, newsletters
from aggregator.cli_digest import describe
from aggregator.config import load_config
from aggregator.store import Store
from tests.test_mail import (
    PASSWORD,
    USER,
    Handler,
    start_server,
    tls_files,  # noqa: F401 -- a fixture
)
from tests.test_newsletters import (
    NOW,
    SMTP_YAML,
    TEST_KEY,
    add_entry,
    make_project,
    poll,
    project_sending_to,
    received,
)
from tests.test_scheduler import digest_setup

READERS = ("alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com")
EVERYONE = [*READERS, "reader@example.com"]  # feeds.yaml's own reader too
NEXT_DAY = NOW + timedelta(days=1)  # the next issue (07:00 London) is due: retries get their last try


def states(store: Store, number: int = 1) -> dict[str, str]:
    return {d.recipient: d.status for d in store.deliveries("daily", number)}


def warnings_naming(caplog: pytest.LogCaptureFixture, address: str) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and address in r.getMessage()
    ]


@pytest.mark.parametrize("reply", ["421 4.7.0 try again later", "drop"], ids=["421", "dropped"])
def test_a_421_at_one_readers_rcpt_puts_her_off_and_the_others_get_the_issue_on_a_new_session(
    tmp_path: Path,
    tls_files: tuple[Path, Path],  # noqa: F811 -- the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    reply: str,
) -> None:
    # Every run stopped at carol ("the connection failed before DATA", her name nowhere):
    # dave never got the issue, and no later issue was ever made.
    server = start_server(Handler(rcpt_replies={"carol@example.com": reply}), tls_files)
    with project_sending_to(server, tmp_path, monkeypatch, READERS) as (loaded, store):
        caplog.set_level(logging.WARNING)
        [first] = newsletters.run_due_newsletters(loaded, store, NOW)
        assert received(server) == [
            "alice@example.com",
            "bob@example.com",
            "dave@example.com",
            "reader@example.com",
        ]
        assert (first.status, first.sent, first.retrying, first.waiting, first.stopped) == (
            "sending",
            4,
            1,
            0,
            "",
        )
        assert ": 4 sent, 1 to retry;" in describe(first)
        carol = next(d for d in store.deliveries("daily", 1) if d.recipient == "carol@example.com")
        assert (carol.status, carol.next_attempt) == ("retry", NOW + newsletters.RETRY_FIRST)
        assert "RCPT TO" in (carol.last_error or "")
        assert warnings_naming(caplog, "carol@example.com"), caplog.text
        assert server.handler.rcpt_seen.count("carol@example.com") == 1  # no second session for her

        # Before her next try: she is left alone.
        [early] = newsletters.run_due_newsletters(loaded, store, NOW + timedelta(minutes=2))
        assert (early.sent, early.retrying) == (4, 1)
        assert server.handler.rcpt_seen.count("carol@example.com") == 1

        # The next issue is due: her last try meets the same 421, she is given up, the next issue goes.
        outcomes = newsletters.run_due_newsletters(loaded, store, NEXT_DAY)
        assert [(o.number, o.status) for o in outcomes] == [(1, "done"), (2, "empty")]
        carol = next(d for d in store.deliveries("daily", 1) if d.recipient == "carol@example.com")
        assert carol.status == "failed"
        assert (carol.last_error or "").startswith("gave up: the next issue is due")
    assert received(server) == [
        "alice@example.com",
        "bob@example.com",
        "dave@example.com",
        "reader@example.com",
    ]


def test_a_server_that_refuses_the_new_session_after_a_readers_421_leaves_the_issue_waiting(
    tmp_path: Path,
    tls_files: tuple[Path, Path],  # noqa: F811 -- the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The session carol's 421 closed cannot be had again: the server is down, nobody is given up.
    handler = Handler(rcpt_replies={"carol@example.com": "421 4.7.0 try again later"})
    handler.mail_replies = ["250", "250", "250", "421 4.3.2 shutting down"]  # dave's new session
    server = start_server(handler, tls_files)
    with project_sending_to(server, tmp_path, monkeypatch, READERS) as (loaded, store):
        [first] = newsletters.run_due_newsletters(loaded, store, NOW)
        assert received(server) == ["alice@example.com", "bob@example.com"]
        assert first.stopped
        handler.mail_replies = ["421 4.3.2 shutting down"] * 10  # still down when the next issue is due
        [waiting] = newsletters.run_due_newsletters(loaded, store, NEXT_DAY)
        assert waiting.status == "sending"
        assert "failed" not in states(store).values()
        assert store.latest_issue("daily").number == 1  # type: ignore[union-attr]
        handler.mail_replies = []
        handler.rcpt_replies = {}  # back, and taking carol's mail again
        outcomes = newsletters.run_due_newsletters(loaded, store, NEXT_DAY + timedelta(minutes=10))
        assert [(o.number, o.status) for o in outcomes] == [(1, "done"), (2, "empty")]
    assert received(server) == EVERYONE  # each once


def test_a_421_at_every_readers_rcpt_is_the_server_refusing_mail_and_nobody_is_given_up(
    tmp_path: Path,
    tls_files: tuple[Path, Path],  # noqa: F811 -- the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler = Handler(rcpt_replies=dict.fromkeys(EVERYONE, "421 4.7.0 try again later"))
    server = start_server(handler, tls_files)
    with project_sending_to(server, tmp_path, monkeypatch, READERS) as (loaded, store):
        [first] = newsletters.run_due_newsletters(loaded, store, NOW)
        assert first.stopped  # not a new session for every reader of the list
        assert handler.mail_count == newsletters.SESSIONS_DROPPED_IN_A_ROW
        [again] = newsletters.run_due_newsletters(loaded, store, NEXT_DAY)
        assert again.status == "sending"
        assert sorted(states(store).values()) == ["pending", "pending", "pending", "retry", "retry"]
        assert store.latest_issue("daily").number == 1  # type: ignore[union-attr]
        handler.rcpt_replies = {}
        newsletters.run_due_newsletters(loaded, store, NEXT_DAY + timedelta(minutes=30))
    assert received(server) == EVERYONE


def test_a_server_that_puts_off_every_message_at_data_keeps_the_issue_for_everyone(
    tmp_path: Path,
    tls_files: tuple[Path, Path],  # noqa: F811 -- the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each reader was given up when the next issue was due ("gave up: the next issue is due;
    # last error: DATA: 451 ..."), and the issue's stories reached nobody.
    handler = Handler(data_replies=["451 4.3.0 temporary local problem"] * 20, reject={"dave@example.com"})
    server = start_server(handler, tls_files)
    with project_sending_to(server, tmp_path, monkeypatch, READERS) as (loaded, store):
        [first] = newsletters.run_due_newsletters(loaded, store, NOW)
        assert (first.sent, first.retrying, first.failed) == (0, 4, 1)
        [last] = newsletters.run_due_newsletters(loaded, store, NEXT_DAY)
        assert (last.number, last.status, last.sent, last.retrying, last.failed) == (1, "sending", 0, 4, 1)
        assert "451 4.3.0 temporary local problem" in last.stopped
        rows = {d.recipient: d for d in store.deliveries("daily", 1)}
        assert rows["dave@example.com"].status == "failed"  # the 550: his own
        assert {a: r.status for a, r in rows.items() if a != "dave@example.com"} == dict.fromkeys(
            ["alice@example.com", "bob@example.com", "carol@example.com", "reader@example.com"], "retry"
        )
        assert not any("gave up" in (r.last_error or "") for r in rows.values())
        handler.data_replies = []  # the server's problem is fixed
        outcomes = newsletters.run_due_newsletters(loaded, store, NEXT_DAY + timedelta(minutes=30))
        assert [(o.number, o.status, o.sent) for o in outcomes] == [(1, "done", 4), (2, "empty", 0)]
    assert received(server) == [
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
        "reader@example.com",
    ]


class _KilledAfterDataBegan(mail.Transport):
    """The real SMTP transport, with the process "killed" (KeyboardInterrupt) for ``victim``
    once the server took DATA and the row says ``in_data``, as kill -9 would leave it."""

    def __init__(self, inner: mail.Transport, victim: str) -> None:
        self.inner, self.victim = inner, victim

    def deliver(
        self, sender: str, recipient: str, data: bytes, name: str, before_data: Callable[[], None]
    ) -> mail.DeliveryResult:
        def killed() -> None:
            before_data()
            if recipient == self.victim:
                raise KeyboardInterrupt

        return self.inner.deliver(sender, recipient, data, name, killed)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.anyio
async def test_the_scheduler_names_a_reader_left_uncertain_by_a_crash_and_counts_her_apart(
    tmp_path: Path,
    tls_files: tuple[Path, Path],  # noqa: F811 -- the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # `aggregator run` restarted after a kill -9 during alice's DATA logged "done, 1 sent,
    # 1 failed": her name nowhere, and counted as failed though she may have the issue.
    handler = Handler()
    with digest_setup(tmp_path, tls_files, monkeypatch, handler) as (service, clock, store):
        store.set_subscriber("daily", "alice@example.com", True, clock.now())
        transport = _KilledAfterDataBegan(newsletters.default_transport(service.loaded), "alice@example.com")
        with pytest.raises(KeyboardInterrupt), transport:
            newsletters.run_due_newsletters(service.loaded, store, clock.now(), transport=transport)
        clock.advance(timedelta(minutes=1))
        caplog.set_level(logging.INFO, logger="aggregator.service")
        [run] = await service.catch_up()  # the restart
        assert delivery_states(store) == {"alice@example.com": "uncertain", "daily@example.com": "sent"}
    assert (run.status, run.sent, run.failed) == ("done", 1, 0)
    lines = [r.getMessage() for r in caplog.records if r.name == "aggregator.service"]
    assert any("uncertain" in line and "alice@example.com" in line for line in lines), lines
    [summary] = [line for line in lines if line.startswith("digest daily #1 ")]
    assert "done, 1 sent, 0 failed, 1 uncertain, 0 left" in summary
    assert received_by(handler) == ["daily@example.com"]  # alice's message is never sent again


def delivery_states(store: Store) -> dict[str, str]:
    latest = store.latest_issue("daily")
    assert latest is not None
    return {d.recipient: d.status for d in store.deliveries("daily", latest.number)}


def received_by(handler: Handler) -> list[str]:
    return sorted(r for _sender, rcpts, _data in handler.messages for r in rcpts)


LITE = """newsletters:
  - name: lite
    title: Lite
    schedule: "*/2 * * * *"
    timezone: UTC
    sender: digest@example.com
    subscribers: [alice@example.com, bob@example.com, carol@example.com, dave@example.com]
"""


@pytest.mark.parametrize("refused", [("carol@example.com",), ("bob@example.com", "carol@example.com")])
def test_run_once_every_two_minutes_goes_on_past_readers_the_server_closes_the_session_on(
    tmp_path: Path,
    tls_files: tuple[Path, Path],  # noqa: F811 -- the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
    refused: tuple[str, ...],
) -> None:
    # cron's `run --once` every 2 minutes, a `*/2` newsletter: each run tried carol first and
    # stopped; dave never had #1 and nobody ever had #2.
    handler = Handler(rcpt_replies=dict.fromkeys(refused, "421 4.7.0 try again later"))
    server = start_server(handler, tls_files)
    monkeypatch.setenv("AGGREGATOR_SMTP_USERNAME", USER)
    monkeypatch.setenv("AGGREGATOR_SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("AGGREGATOR_SECRET_KEY", TEST_KEY)
    smtp = SMTP_YAML.format(port=server.port, cafile=server.cafile)
    loaded = load_config(make_project(tmp_path, LITE, smtp))
    try:
        with Store.open(loaded.database_url) as store:
            poll(loaded, store)
            feed = loaded.config.feeds[0].url
            for minutes in (0, 2, 4):
                if minutes:
                    moment = NOW + timedelta(minutes=minutes - 1)
                    add_entry(store, feed, f"late-{minutes}", f"Harbour news at minute {minutes}", moment)
                newsletters.run_due_newsletters(loaded, store, NOW + timedelta(minutes=minutes))
            issues = [(i.number, i.status) for i in store.issues("lite")]
            given_up = {
                d.recipient: d.last_error or "" for d in store.deliveries("lite", 1) if d.status == "failed"
            }
    finally:
        server.controller.stop()
    assert issues[:2] == [(1, "done"), (2, "done")]
    assert set(given_up) == set(refused)
    assert all(
        why.startswith("gave up: the next issue is due; last error: RCPT TO: 421")
        for why in given_up.values()
    )
    got = Counter(r for _sender, rcpts, _data in handler.messages for r in rcpts)
    assert got["dave@example.com"] >= 2  # #1 and #2
    assert got["alice@example.com"] == len(issues)  # every issue, once
    assert not any(got[r] for r in refused)
