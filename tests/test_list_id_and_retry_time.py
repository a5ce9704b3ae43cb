"""Two things a digest tells people: the ``List-Id`` header that mail filters match on, and the
time of a put-off reader's next try.

Real parts: the bundled sample feeds polled into a real SQLite store, aiosmtpd on 127.0.0.1
with STARTTLS and AUTH (``tests.test_mail``; SMTPUTF8 for a non-ASCII address), and the
``aggregator`` command through typer.  What arrives at the server is read back with the
standard library's parsers (``email.utils.parseaddr``, ``email.header.decode_header``,
``email.headerregistry``), as a mail filter would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import headerregistry, policy
from email.header import decode_header, make_header
from email.utils import parseaddr
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from aggregator import cli, newsletters, pipeline
from aggregator.config import LoadedConfig, load_config
from aggregator.store import Store
from tests.test_mail import (  # tls_files is a fixture
    PASSWORD,
    USER,
    Handler,
    SmtpServer,
    start_server,
    tls_files,  # noqa: F401
)
from tests.test_newsletters import NOW, SMTP_YAML, TEST_KEY, make_project, poll, project_sending_to

SENDER = "digest@example.com"  # the bundled feeds.yaml's
IDENT = "daily.list.example.com"  # its default List-Id: NAME.list.<the sender's domain>
BUNDLED_TITLE = "The Daily Digest"


# ----------------------------------------------------------------------- reading headers back


def raw_header(data: bytes, name: str) -> str:
    """The header as it travelled, unfolded, nothing decoded (UTF-8 where RFC 6532 allows it)."""
    head = data.decode("utf-8").split("\r\n\r\n", 1)[0]
    found = re.search(rf"^{name}:[ \t]*(.*(?:\r\n[ \t].*)*)", head, re.MULTILINE | re.IGNORECASE)
    assert found, f"no {name} header in:\n{head}"
    return re.sub(r"\r\n([ \t])", r"\1", found.group(1))


def read_phrase_and_id(value: str) -> tuple[str, str]:
    """``phrase <id>`` as a filter reads it: split by ``parseaddr`` (the phrase's quoted-strings
    unquoted), then the phrase's encoded-words decoded."""
    phrase, ident = parseaddr(value)
    return str(make_header(decode_header(phrase))), ident


def registry_reading(data: bytes, name: str) -> tuple[str, str]:
    """The same header read by ``email.headerregistry`` as a single address: display name and
    the part in angle brackets (a list id has no @, so it is all "username")."""
    registry = headerregistry.HeaderRegistry()
    registry.map_to_type(name.lower(), headerregistry.SingleAddressHeader)
    # From text: the bytes parser would leave UTF-8 headers (RFC 6532) as escaped bytes.
    msg = email.message_from_string(
        data.decode("utf-8"), policy=policy.default.clone(header_factory=registry)
    )
    address = msg[name].address
    at = f"@{address.domain}" if address.domain else ""
    return address.display_name, f"{address.username}{at}"


def digest_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: SmtpServer, title: str) -> Path:
    """The bundled project sending through ``server``, its newsletter titled ``title``."""
    monkeypatch.setenv("AGGREGATOR_SMTP_USERNAME", USER)
    monkeypatch.setenv("AGGREGATOR_SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("AGGREGATOR_SECRET_KEY", TEST_KEY)
    path = make_project(tmp_path, smtp_yaml=SMTP_YAML.format(port=server.port, cafile=server.cafile))
    text = path.read_text()
    # JSON is a YAML double-quoted scalar: any title, its quotes and backslashes included.
    path.write_text(text.replace(f"title: {BUNDLED_TITLE}\n", f"title: {json.dumps(title)}\n", 1))
    loaded = load_config(path)
    assert loaded.config.newsletters[0].title == title
    # At the machine's time: the command reads the clock itself, and its issue needs stories.
    with Store.open(loaded.database_url) as store:
        asyncio.run(pipeline.poll_feeds(loaded, store, datetime.now(UTC)))
    return path


def send_test_copy(path: Path, to: str) -> None:
    """``aggregator --config PATH digest daily --to ADDRESS``, as the README shows it."""
    sent = CliRunner().invoke(cli.app, ["--config", str(path), "digest", "daily", "--to", to])
    assert sent.exit_code == 0, sent.output


@pytest.fixture
def server(tls_files: tuple[Path, Path]) -> Iterator[SmtpServer]:  # noqa: F811 -- the fixture imported above
    started = start_server(Handler(), tls_files, smtputf8=True)
    yield started
    started.controller.stop()


# ----------------------------------------------------------------------- 1. List-Id


@pytest.mark.parametrize(
    "title",
    [
        'News, Views & "More" <today> Täglich',  # the report: non-ASCII with specials
        "Team <Alpha> News",  # ASCII with specials: parseaddr found the list id "Alpha"
        'St. Louis: "Weekly" (beta); a\\b @home, [x]',  # every ASCII special
        "Café news, daily",  # a special after a non-ASCII word
        "日本語のニュース, 毎日 <速報>",
        "x" * 60 + ' "Ü" ' + "y" * 60,  # long enough to be folded in several words
        BUNDLED_TITLE,  # nothing to quote
        "Täglich Nachrichten",  # non-ASCII, nothing to quote
    ],
)
@pytest.mark.parametrize("to", ["t@example.com", "josé@example.com"], ids=["ascii", "smtputf8"])
def test_the_list_id_and_from_read_back_as_the_title_and_the_list_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: SmtpServer, title: str, to: str
) -> None:
    # `List-Id: News, Views & "More" <today> =?utf-8?q?T=C3=A4glich?= <comma.list.example.com>`:
    # the phrase's specials were bare, so a filter read the list id as "today" (or "Alpha").
    send_test_copy(digest_project(tmp_path, monkeypatch, server, title), to)
    [(_sender, rcpts, data)] = server.handler.messages
    assert rcpts == [to]
    assert server.handler.smtp_utf8 == [not to.isascii()]  # UTF-8 headers only where allowed
    if to.isascii():
        assert data.isascii()
    for name, expected in (("List-Id", IDENT), ("From", SENDER)):
        value = raw_header(data, name)
        assert read_phrase_and_id(value) == (title, expected), value
        assert registry_reading(data, name) == (title, expected), value
        # Nothing of the title left outside a quoted-string or an encoded-word: the value
        # holds one pair of angle brackets, around the address or list id.
        assert value.count(f"<{expected}>") == 1, value


@pytest.mark.parametrize("to", ["t@example.com", "josé@example.com"], ids=["ascii", "smtputf8"])
def test_a_plain_title_stays_unquoted_and_byte_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: SmtpServer, to: str
) -> None:
    # What nothing needed quoting in is written as before: filters written for it still match.
    send_test_copy(digest_project(tmp_path, monkeypatch, server, BUNDLED_TITLE), to)
    [(_sender, _rcpts, data)] = server.handler.messages
    assert b"\r\nList-Id: The Daily Digest <daily.list.example.com>\r\n" in data


def test_a_title_with_a_line_break_is_one_line_and_reads_back_cleaned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: SmtpServer
) -> None:
    # feeds.yaml refuses control characters in titles; a title that got one past it anyway
    # (an older config, another caller) is still one header line, read back as cleaned.
    path = digest_project(tmp_path, monkeypatch, server, BUNDLED_TITLE)
    loaded = load_config(path)
    [letter] = loaded.config.newsletters
    broken = letter.model_copy(update={"title": 'Daily\r\nBcc: victim@example.com\r\n\r\n"x" <y>'})
    loaded = dataclasses.replace(loaded, config=loaded.config.model_copy(update={"newsletters": (broken,)}))
    with Store.open(loaded.database_url) as store:
        result = newsletters.send_test_copy(loaded, store, datetime.now(UTC), "daily", "t@example.com")
    assert result.outcome == "sent", result.detail
    [(_sender, rcpts, data)] = server.handler.messages
    assert rcpts == ["t@example.com"]
    msg = email.message_from_bytes(data, policy=policy.default)
    assert "Bcc" not in msg
    cleaned = 'Daily Bcc: victim@example.com "x" <y>'
    for name, expected in (("List-Id", IDENT), ("From", SENDER)):
        assert read_phrase_and_id(raw_header(data, name)) == (cleaned, expected)
        assert registry_reading(data, name) == (cleaned, expected)


# ----------------------------------------------------------------------- 2. the next try's time

LONDON = ZoneInfo("Europe/London")  # the bundled newsletter's time zone
NEXT_TRY = re.compile(r"next try at (\d{1,2} \w{3} \d{4}, \d{2}:\d{2}) \w+")


def shown_next_try(text: str) -> datetime:
    """The moment a message's "next try at 7 Dec 2026, 10:05 GMT" names, as an aware datetime."""
    found = NEXT_TRY.search(" ".join(text.split()))
    assert found, text
    return datetime.strptime(found.group(1), "%d %b %Y, %H:%M").replace(tzinfo=LONDON)


def retry_row_of(store: Store, address: str) -> datetime:
    [row] = [d for d in store.deliveries("daily", 1) if d.recipient == address]
    assert row.status == "retry"
    assert row.next_attempt is not None
    return row.next_attempt


def test_the_next_try_shown_when_no_new_issue_starts_is_never_before_the_real_one(
    tmp_path: Path,
    tls_files: tuple[Path, Path],  # noqa: F811 -- the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # "next try at 7 Dec 2026, 10:05 GMT ... run it again after that time": run again at
    # 10:05:11, it was refused with the same words, for the try was due at 10:05:27.
    greylisted = "a@example.com"
    server = start_server(Handler(rcpt_replies={greylisted: "451 4.7.1 greylisted, try later"}), tls_files)
    with project_sending_to(server, tmp_path, monkeypatch, [greylisted]) as (loaded, store):
        started = NOW + timedelta(seconds=27)  # a run that did not start on the minute
        [first] = newsletters.run_due_newsletters(loaded, store, started)
        assert (first.sent, first.retrying) == (1, 1)
        real = retry_row_of(store, greylisted)
        assert real >= started + newsletters.RETRY_FIRST

        # `digest daily --send` a minute later: no new issue, and when to come back.
        [early] = newsletters.run_due_newsletters(
            loaded, store, started + timedelta(minutes=1), names=["daily"], force=True
        )
        assert "451 4.7.1 greylisted" in early.held_back
        shown = shown_next_try(early.held_back)
        assert shown >= real, early.held_back
        assert shown - real < timedelta(minutes=1)

        # Coming back at the time shown, as told: the try is made, and the server takes it now.
        server.handler.rcpt_replies.clear()
        back = newsletters.run_due_newsletters(
            loaded, store, shown.astimezone(UTC), names=["daily"], force=True
        )
        assert (back[0].number, back[0].status, back[0].retrying) == (1, "done", 0)  # then #2 starts
        assert sorted(r for _s, rcpts, _d in server.handler.messages for r in rcpts) == [
            greylisted,
            "reader@example.com",
        ]


def test_a_next_try_stored_with_seconds_by_an_earlier_version_is_shown_rounded_up(
    tmp_path: Path,
    tls_files: tuple[Path, Path],  # noqa: F811 -- the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Databases written before the next try was put on a whole minute hold such times.
    greylisted = "a@example.com"
    server = start_server(Handler(rcpt_replies={greylisted: "451 4.7.1 greylisted, try later"}), tls_files)
    with project_sending_to(server, tmp_path, monkeypatch, [greylisted]) as (loaded, store):
        newsletters.run_due_newsletters(loaded, store, NOW)
        real = NOW + timedelta(minutes=5, seconds=27)
        store.set_delivery("daily", 1, greylisted, "retry", NOW, error="451 busy", next_attempt=real)
        [early] = newsletters.run_due_newsletters(
            loaded, store, NOW + timedelta(minutes=1), names=["daily"], force=True
        )
        assert "next try at 18 Aug 2025, 13:06 BST" in early.held_back, early.held_back


def test_the_digest_command_shows_a_next_try_that_is_never_before_the_real_one(
    tmp_path: Path,
    tls_files: tuple[Path, Path],  # noqa: F811 -- the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The report's own words, through the command at the machine's time (whatever its seconds).
    greylisted = "a@example.com"
    server = start_server(Handler(rcpt_replies={greylisted: "451 4.7.1 greylisted, try later"}), tls_files)
    try:
        path = digest_project(tmp_path, monkeypatch, server, BUNDLED_TITLE)
        loaded = load_config(path)
        with Store.open(loaded.database_url) as store:
            store.set_subscriber("daily", greylisted, True, NOW)
        run = CliRunner()
        first = run.invoke(cli.app, ["--config", str(path), "digest", "daily", "--send"])
        assert "1 sent, 1 to retry" in first.stdout, first.output
        again = run.invoke(cli.app, ["--config", str(path), "digest", "daily", "--send"])
        assert again.exit_code == 1, again.output
        said = " ".join(again.output.split())
        assert "no new issue" in said
        assert "run `aggregator digest daily --send` again after that time" in said
        with Store.open(loaded.database_url) as store:
            real = retry_row_of(store, greylisted)
        assert real > datetime.now(UTC)  # still to come: the message above is about it
        shown = shown_next_try(said)
        assert shown >= real, (said, real)
        assert shown - real < timedelta(minutes=1)
    finally:
        server.controller.stop()


def test_a_reader_put_off_by_a_fault_here_is_shown_a_next_try_never_before_the_real_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The other place a next try is shown: "reader@…: not delivered yet: …; next try at …".
    monkeypatch.setenv("AGGREGATOR_SECRET_KEY", TEST_KEY)
    loaded: LoadedConfig = load_config(make_project(tmp_path))
    folder = newsletters.outbox_dir(loaded)
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("a file where the outbox should be")
    with Store.open(loaded.database_url) as store:
        poll(loaded, store)
        started = NOW + timedelta(seconds=27, microseconds=5)
        [outcome] = newsletters.run_due_newsletters(loaded, store, started)
        [line] = outcome.pending
        real = retry_row_of(store, "reader@example.com")
    shown = shown_next_try(line)
    assert shown >= real, line
    assert shown - real < timedelta(minutes=1)
