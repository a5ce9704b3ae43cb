"""Messages and their delivery, against a real SMTP server (aiosmtpd) on 127.0.0.1.

``SmtpServer`` here is also used by tests/test_newsletters.py.
"""

from __future__ import annotations

import asyncio
import base64
import email
import re
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from aggregator import mail
from aggregator.mail import DeliveryResult, Outcome, SmtpSettings, SmtpTransport

USER, PASSWORD = "digest", "s3cret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Handler:
    """Records accepted messages; ``data_replies`` scripts the replies to DATA, in order.

    ``mail_replies`` scripts the replies to MAIL FROM (a "250" accepts), ``mail_delay``
    makes MAIL FROM hang that many seconds, and ``data_command`` scripts the answer to the
    DATA command itself, before 354: a reply line, or "drop" to close the connection.
    """

    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    reject: set[str] = field(default_factory=set)
    # address → the reply to its RCPT TO, or "drop" to close the connection there
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    rcpt_seen: list[str] = field(default_factory=list)  # every RCPT TO address, in order
    drop_on_data: int | None = None  # drop the connection on the Nth DATA (1-based)
    on_data: Callable[[int], None] | None = None
    data_count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    mail_replies: list[str] = field(default_factory=list)
    mail_delay: float = 0.0
    mail_count: int = 0
    data_command: list[str] = field(default_factory=list)
    smtp_utf8: list[bool] = field(default_factory=list)  # per accepted message: MAIL FROM said SMTPUTF8
    # Keep the sender and recipients of a message refused at the end of DATA, as some servers
    # do (aiosmtpd forgets them): only RSET ends that transaction.
    keep_refused_transaction: bool = False
    refused_data: int = 0  # messages refused at the end of DATA

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        self.mail_count += 1
        if self.mail_delay:
            await asyncio.sleep(self.mail_delay)
        if self.mail_replies and not (reply := self.mail_replies.pop(0)).startswith("250"):
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        self.rcpt_seen.append(address)
        if address in self.reject:
            return "550 5.1.1 no such user"
        if self.rcpt_replies.get(address) == "drop":
            server.transport.close()
            return "250 OK"  # never reaches the client
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.data_count += 1
            count = self.data_count
        if self.on_data is not None:
            self.on_data(count)
        if self.drop_on_data == count:
            server.transport.close()
            return "250 OK"  # never reaches the client
        if self.data_replies:
            reply = self.data_replies.pop(0)
            if not reply.startswith("250"):
                self.refused_data += 1
                return reply
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        self.smtp_utf8.append(bool(envelope.smtp_utf8))
        return "250 OK queued"


class ScriptedSMTP(SMTP):
    """aiosmtpd's SMTP, answering the DATA command as ``Handler.data_command`` says."""

    async def smtp_DATA(self, arg: str) -> None:
        script = self.event_handler.data_command
        if script and self.envelope is not None and self.envelope.rcpt_tos:
            reply = script.pop(0)
            if reply == "drop":
                assert self.transport is not None
                self.transport.close()
                return
            await self.push(reply)  # refused before 354: the transaction stays open (RFC 5321)
            return
        envelope, refused = self.envelope, self.event_handler.refused_data
        await super().smtp_DATA(arg)
        if self.event_handler.keep_refused_transaction and self.event_handler.refused_data > refused:
            self.envelope = envelope  # the next MAIL FROM meets "503 Error: nested MAIL command"


class _Controller(Controller):
    def factory(self) -> SMTP:
        return ScriptedSMTP(self.handler, **self.SMTP_kwargs)


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok)


@dataclass
class SmtpServer:
    handler: Handler
    port: int
    cafile: Path | None
    controller: Controller

    def settings(self, *, tls: bool = True, rate: int = 60_000, **kwargs: Any) -> SmtpSettings:
        context = (
            ssl.create_default_context(cafile=str(self.cafile))
            if self.cafile
            else ssl.create_default_context()
        )
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "security": "starttls",
            "username": USER if tls else None,
            "password": PASSWORD if tls else None,
            "rate_per_minute": rate,
            "timeout": 5.0,
            "ssl_context": context,
        }
        values.update(kwargs)
        return SmtpSettings(**values)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def start_server(
    handler: Handler,
    tls_files: tuple[Path, Path] | None,
    port: int | None = None,
    *,
    smtputf8: bool = False,
) -> SmtpServer:
    """aiosmtpd on 127.0.0.1, with STARTTLS and AUTH required when ``tls_files`` are given;
    ``smtputf8`` makes it offer SMTPUTF8 (RFC 6531), which aiosmtpd does not by default."""
    port = port or free_port()
    kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8}
    cafile = None
    if tls_files is not None:
        cert, key = tls_files
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert), str(key))
        kwargs |= {
            "tls_context": context,
            "require_starttls": True,
            "authenticator": _authenticate,
            "auth_required": True,
        }
        cafile = cert
    controller = _Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    return SmtpServer(handler, port, cafile, controller)


@pytest.fixture
def smtp_server(tls_files: tuple[Path, Path]) -> Iterator[SmtpServer]:
    server = start_server(Handler(), tls_files)
    yield server
    server.controller.stop()


@pytest.fixture
def plain_server() -> Iterator[SmtpServer]:
    server = start_server(Handler(), None)
    yield server
    server.controller.stop()


SPEC = mail.MessageSpec(
    sender="digest@example.com",
    sender_name="The Daily \u202eDigest\r\nBcc: victim@example.com",
    reply_to="editor@example.com",
    subject="Daily: Café talks\u2028resume\x07 in Alaska",
    html=f'<!doctype html><html><body><p>Hello ✓</p><a href="{mail.UNSUBSCRIBE_MARK}">u</a></body></html>',
    text=f"Hello ✓\nUnsubscribe: {mail.UNSUBSCRIBE_MARK}\n",
    date="Mon, 18 Aug 2025 12:00:00 +0000",
    list_id="The Daily Digest <daily.list.example.com>",
)


TOKEN = "ZGFpbHkKcmVhZGVyQGV4YW1wbGUuY29t.EHVcDH9UMkF6GoAnJ8OnPYH8" * 2


def recipient(address: str = "reader@example.com") -> mail.Recipient:
    token = TOKEN
    return mail.Recipient(
        address=address,
        message_id=mail.message_id("daily", 1, address, "example.com"),
        unsubscribe_url=f"https://example.org/unsubscribe/{token}",
        unsubscribe_mailto=f"mailto:digest@example.com?subject=unsubscribe%20{token}",
    )


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def check_message(msg: EmailMessage, address: str = "reader@example.com") -> None:
    """Every header and part a digest must have."""
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert msg["To"] == address
    for name in ("From", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe", "Auto-Submitted"):
        assert msg[name], name
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = str(msg["List-Unsubscribe"])
    assert unsubscribe.startswith(("<https://", "<http://"))  # https in production (RFC 8058)
    assert mail.UNSUBSCRIBE_MARK not in parts[0].get_content()
    assert mail.UNSUBSCRIBE_MARK not in parts[1].get_content()


def test_message_has_both_parts_every_header_and_clean_header_text() -> None:
    data = mail.serialize(mail.build_message(SPEC, recipient()))
    msg = parse(data)
    check_message(msg)
    assert str(msg["List-Unsubscribe"]).endswith(
        f", <mailto:digest@example.com?subject=unsubscribe%20{TOKEN}>"
    )
    assert msg["From"].addresses[0].display_name == "The Daily Digest Bcc: victim@example.com"
    assert msg["From"].addresses[0].addr_spec == "digest@example.com"
    assert "Bcc" not in msg
    assert msg["Subject"] == "Daily: Café talks resume in Alaska"
    assert msg["Reply-To"] == "editor@example.com"
    assert msg["Auto-Submitted"] == "auto-generated"
    text, html = (p.get_content() for p in msg.iter_parts())
    assert "https://example.org/unsubscribe/" in text
    assert 'href="https://example.org/unsubscribe/' in html
    assert "Hello ✓" in html


# A feed's title whose encoded-word hides CR/LF and two headers (CVE-2024-6923 in Python
# before 3.11.10: the email package decoded it and wrote the line breaks as they were).
HIDDEN_HEADERS = base64.b64encode(b"hi\r\nBcc: victim@evil.example\r\nX-Injected: yes").decode()
ENCODED_WORD_TITLE = f"Daily: News =?utf-8?b?{HIDDEN_HEADERS}?= today"


def test_an_encoded_word_in_a_title_adds_no_header_and_reads_as_written() -> None:
    data = mail.serialize(mail.build_message(replace(SPEC, subject=ENCODED_WORD_TITLE), recipient()))
    msg = parse(data)
    assert "Bcc" not in msg
    assert "X-Injected" not in msg
    check_message(msg)  # the body is still both parts, not pushed into the headers
    # The reader sees the title's characters (with an invisible word joiner after "=").
    assert msg["Subject"].replace("\u2060", "") == ENCODED_WORD_TITLE
    assert data.split(b"\r\n\r\n")[0].count(b"\r\nSubject:") == 1


def test_a_header_that_would_hold_a_line_break_is_refused() -> None:
    msg = EmailMessage(policy=mail.MAIL_POLICY)
    msg["Subject"] = ENCODED_WORD_TITLE  # not through clean_header
    with pytest.raises(mail.DeliveryError, match="Subject header would hold a line break"):
        mail.check_headers(msg)


def test_long_unsubscribe_header_stays_on_one_line_and_messages_are_reproducible() -> None:
    data = mail.serialize(mail.build_message(SPEC, recipient()))
    line = next(raw for raw in data.split(b"\r\n") if raw.startswith(b"List-Unsubscribe:"))
    assert len(line) > 200
    assert b"=?" not in line
    assert all(len(raw) <= 998 for raw in data.split(b"\r\n"))
    assert mail.serialize(mail.build_message(SPEC, recipient())) == data


def test_an_unsubscribe_link_on_an_international_domain_stays_a_link_mail_providers_read() -> None:
    # The site at https://bücher.example/: List-Unsubscribe went out as an encoded-word
    # ("=?utf-8?q?=3Chttps=3A//b=C3=BCcher..."), which no provider reads: no unsubscribe button.
    reader = replace(
        recipient(),
        unsubscribe_url="https://Bücher.example:8443/nachrichten/über uns/unsubscribe/TOKEN",
        unsubscribe_mailto="mailto:digest@bücher.example?subject=unsubscribe%20TOKEN",
    )
    data = mail.serialize(mail.build_message(SPEC, reader))
    [line] = [raw for raw in data.split(b"\r\n") if raw.startswith(b"List-Unsubscribe:")]
    assert line.decode("ascii") == (
        "List-Unsubscribe: <https://xn--bcher-kva.example:8443/nachrichten/%C3%BCber%20uns/unsubscribe/TOKEN>,"
        " <mailto:digest@xn--bcher-kva.example?subject=unsubscribe%20TOKEN>"
    )
    check_message(parse(data))


def test_message_ids_differ_per_recipient_and_repeat_per_issue() -> None:
    a = mail.message_id("daily", 3, "a@example.com", "example.com")
    assert a == mail.message_id("daily", 3, "A@example.com", "example.com")
    assert a != mail.message_id("daily", 3, "b@example.com", "example.com")
    assert a.startswith("<daily.3.")
    assert a.endswith("@example.com>")


def _send(transport: SmtpTransport, address: str, calls: list[str] | None = None) -> DeliveryResult:
    data = mail.serialize(mail.build_message(SPEC, recipient(address)))
    return transport.deliver(
        "digest@example.com", address, data, "x", lambda: None if calls is None else calls.append(address)
    )


def test_starttls_and_auth_deliver_over_one_connection(smtp_server: SmtpServer) -> None:
    calls: list[str] = []
    with SmtpTransport(smtp_server.settings()) as transport:
        for address in ("a@example.com", "b@example.com", "c@example.com"):
            assert _send(transport, address, calls).outcome is Outcome.SENT
        assert transport._conn is not None
    assert calls == ["a@example.com", "b@example.com", "c@example.com"]
    assert [m[1] for m in smtp_server.handler.messages] == [
        ["a@example.com"],
        ["b@example.com"],
        ["c@example.com"],
    ]
    for _sender, rcpts, content in smtp_server.handler.messages:
        check_message(parse(content), rcpts[0])


def test_wrong_password_is_a_retry_with_the_server_reason(smtp_server: SmtpServer) -> None:
    with SmtpTransport(smtp_server.settings(password="wrong", timeout=1.0)) as transport:
        result = _send(transport, "a@example.com")
    assert result.outcome is Outcome.RETRY
    assert "127.0.0.1" in result.detail
    assert smtp_server.handler.messages == []


def test_unverified_certificate_is_refused(smtp_server: SmtpServer) -> None:
    settings = smtp_server.settings(ssl_context=ssl.create_default_context())  # no CA for the test cert
    with SmtpTransport(settings) as transport:
        result = _send(transport, "a@example.com")
    assert result.outcome is Outcome.RETRY
    assert "TLS with 127.0.0.1" in result.detail
    assert smtp_server.handler.messages == []


def test_a_server_without_starttls_gets_nothing(plain_server: SmtpServer) -> None:
    with SmtpTransport(plain_server.settings(tls=False)) as transport:
        result = _send(transport, "a@example.com")
    assert result.outcome is Outcome.RETRY
    assert "does not offer STARTTLS" in result.detail
    assert plain_server.handler.messages == []


def test_451_is_retried_later_and_then_accepted(smtp_server: SmtpServer) -> None:
    smtp_server.handler.data_replies = ["451 4.3.0 try again later"]
    with SmtpTransport(smtp_server.settings()) as transport:
        first = _send(transport, "a@example.com")
        second = _send(transport, "a@example.com")
    assert first == DeliveryResult(Outcome.RETRY, "DATA: 451 4.3.0 try again later")
    assert second.outcome is Outcome.SENT
    assert len(smtp_server.handler.messages) == 1


def test_550_recipient_fails_permanently_without_data(smtp_server: SmtpServer) -> None:
    smtp_server.handler.reject = {"gone@example.com"}
    calls: list[str] = []
    with SmtpTransport(smtp_server.settings()) as transport:
        gone = _send(transport, "gone@example.com", calls)
        ok = _send(transport, "a@example.com", calls)
    assert gone.outcome is Outcome.FAILED
    assert "550" in gone.detail
    assert ok.outcome is Outcome.SENT
    assert calls == ["a@example.com"]  # before_data never ran for the rejected one


def test_connection_dropped_during_data_is_uncertain_and_the_next_message_reconnects(
    smtp_server: SmtpServer,
) -> None:
    smtp_server.handler.drop_on_data = 1
    with SmtpTransport(smtp_server.settings()) as transport:
        dropped = _send(transport, "a@example.com")
        after = _send(transport, "b@example.com")
    assert dropped.outcome is Outcome.UNCERTAIN
    assert after.outcome is Outcome.SENT
    assert [m[1] for m in smtp_server.handler.messages] == [["b@example.com"]]


def test_a_refused_data_command_is_reset_and_the_next_message_still_goes_out(smtp_server: SmtpServer) -> None:
    # Refused before 354, the transaction stays open: without RSET the next MAIL FROM met
    # "503 nested MAIL command" and that reader was failed for good.
    smtp_server.handler.data_command = ["451 4.7.1 greylisted"]
    with SmtpTransport(smtp_server.settings()) as transport:
        first = _send(transport, "a@example.com")
        second = _send(transport, "b@example.com")
    assert first == DeliveryResult(Outcome.RETRY, "DATA: 451 4.7.1 greylisted")
    assert second.outcome is Outcome.SENT
    assert [m[1] for m in smtp_server.handler.messages] == [["b@example.com"]]


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [("554 5.7.1 message refused as spam", Outcome.FAILED), ("451 4.3.0 queue full", Outcome.RETRY)],
    ids=["5xx", "4xx"],
)
def test_a_message_refused_at_the_end_of_data_is_reset_and_the_next_reader_still_gets_theirs(
    smtp_server: SmtpServer, reply: str, outcome: Outcome
) -> None:
    # A server that keeps the refused transaction open answered the next MAIL FROM with
    # "503 nested MAIL command", blamed on the sender and the login: the whole issue stopped.
    smtp_server.handler.keep_refused_transaction = True
    smtp_server.handler.data_replies = ["250 OK", reply]  # b@ is refused
    with SmtpTransport(smtp_server.settings()) as transport:
        results = [_send(transport, a) for a in ("a@example.com", "b@example.com", "c@example.com")]
    assert [r.outcome for r in results] == [Outcome.SENT, outcome, Outcome.SENT], results
    assert results[1] == DeliveryResult(outcome, f"DATA: {reply}")
    assert [m[1] for m in smtp_server.handler.messages] == [["a@example.com"], ["c@example.com"]]


def test_a_503_to_mail_from_on_a_kept_session_is_a_fresh_session_not_a_refused_sender(
    smtp_server: SmtpServer,
) -> None:
    with SmtpTransport(smtp_server.settings()) as transport:
        assert _send(transport, "a@example.com").outcome is Outcome.SENT
        smtp_server.handler.mail_replies = ["503 5.5.1 Error: nested MAIL command"]
        again = _send(transport, "b@example.com")
    assert again.outcome is Outcome.SENT, again
    assert [m[1] for m in smtp_server.handler.messages] == [["a@example.com"], ["b@example.com"]]


def test_a_503_to_mail_from_on_a_fresh_session_does_not_blame_the_login(smtp_server: SmtpServer) -> None:
    smtp_server.handler.mail_replies = ["503 5.5.1 Error: send HELO/EHLO first"]
    with SmtpTransport(smtp_server.settings()) as transport:
        result = _send(transport, "a@example.com")
    assert (result.outcome, result.server_down) == (Outcome.RETRY, True)  # the issue waits, nobody fails
    assert "503 5.5.1 Error: send HELO/EHLO first" in result.detail
    assert f"127.0.0.1:{smtp_server.port}" in result.detail
    assert "bad sequence of commands" in result.detail
    assert "login" not in result.detail
    assert "refuses the sender" not in result.detail


def test_a_503_to_a_recipient_is_a_retry_not_a_reader_failed_for_good(smtp_server: SmtpServer) -> None:
    # "Bad sequence of commands" is about the session, not the address: failed, that reader
    # lost the issue for a state of ours the server disliked.
    smtp_server.handler.rcpt_replies = {"b@example.com": "503 5.5.1 Error: need MAIL command"}
    with SmtpTransport(smtp_server.settings()) as transport:
        results = [_send(transport, a) for a in ("a@example.com", "b@example.com", "c@example.com")]
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.RETRY, Outcome.SENT], results
    assert not results[1].server_down
    assert results[1].detail.startswith("RCPT TO: 503 5.5.1 Error: need MAIL command")
    assert [m[1] for m in smtp_server.handler.messages] == [["a@example.com"], ["c@example.com"]]


def test_a_mail_server_that_is_not_running_says_what_to_check() -> None:
    port = free_port()  # nothing listens there
    settings = SmtpSettings("127.0.0.1", port, "starttls", None, None, 60, 2.0, ssl.create_default_context())
    with SmtpTransport(settings) as transport:
        result = _send(transport, "a@example.com")
    assert (result.outcome, result.server_down) == (Outcome.RETRY, True)
    assert result.detail == (
        f"connecting to 127.0.0.1:{port}: connection refused: is the mail server running, and are"
        " smtp.host and smtp.port right?"
    )


def test_a_mail_server_name_that_does_not_resolve_says_which_setting_to_check() -> None:
    host = "smtp.no-such-host.invalid"  # never resolves (RFC 6761)
    settings = SmtpSettings(host, 587, "starttls", None, None, 60, 2.0, ssl.create_default_context())
    with SmtpTransport(settings) as transport:
        result = _send(transport, "a@example.com")
    assert (result.outcome, result.server_down) == (Outcome.RETRY, True)
    assert result.detail == (
        f"connecting to {host}:587: cannot resolve the host name {host!r}: check smtp.host in feeds.yaml"
    )


def test_a_connection_dropped_before_354_is_a_retry_not_uncertain(smtp_server: SmtpServer) -> None:
    # No byte of the message left: "uncertain" would mean that reader never gets the issue.
    smtp_server.handler.data_command = ["drop"]
    calls: list[str] = []
    with SmtpTransport(smtp_server.settings()) as transport:
        dropped = _send(transport, "a@example.com", calls)
        again = _send(transport, "a@example.com", calls)
    assert dropped.outcome is Outcome.RETRY
    assert "before 354" in dropped.detail
    assert again.outcome is Outcome.SENT
    assert calls == ["a@example.com"]  # the point of no return was reached once


def test_a_refused_sender_stops_the_issue_instead_of_failing_each_reader(smtp_server: SmtpServer) -> None:
    smtp_server.handler.mail_replies = ["530 5.7.0 Authentication required"]
    with SmtpTransport(smtp_server.settings()) as transport:
        result = _send(transport, "a@example.com")
    assert result.outcome is Outcome.RETRY
    assert result.server_down  # the caller stops: every reader would meet the same
    assert "530 5.7.0 Authentication required" in result.detail
    assert "refuses the sender digest@example.com" in result.detail


def test_a_sender_put_off_for_now_waits_without_blaming_the_settings(smtp_server: SmtpServer) -> None:
    # A rate limit at MAIL FROM was reported as a refused sender: "check smtp: ... and the
    # credentials' environment variables", sending the operator after settings that were fine.
    smtp_server.handler.mail_replies = ["451 4.7.1 Too many messages, slow down"]
    with SmtpTransport(smtp_server.settings()) as transport:
        result = _send(transport, "a@example.com")
    assert (result.outcome, result.server_down) == (Outcome.RETRY, True)  # the issue waits
    assert result.detail == (
        f"MAIL FROM: 451 4.7.1 Too many messages, slow down: 127.0.0.1:{smtp_server.port} puts off the"
        " sender digest@example.com for now (a rate limit, a busy server); the issue waits and is tried"
        " again later"
    )


def test_a_server_that_hangs_after_its_greeting_is_down_for_everyone(smtp_server: SmtpServer) -> None:
    # Else each reader of a long list waits out the timeout in turn.
    smtp_server.handler.mail_delay = 3.0
    with SmtpTransport(smtp_server.settings(timeout=0.5)) as transport:
        result = _send(transport, "a@example.com")
    assert result.outcome is Outcome.RETRY
    assert result.server_down
    assert smtp_server.handler.mail_count == 1


def test_an_international_domain_goes_out_in_ascii_and_a_non_ascii_local_part_fails_alone(
    smtp_server: SmtpServer,
) -> None:
    with SmtpTransport(smtp_server.settings()) as transport:
        idn = _send(transport, "user@bücher.de")
        local = transport.deliver("digest@example.com", "jörg@example.com", b"x", "x", lambda: None)
    assert idn.outcome is Outcome.SENT
    [(_sender, rcpts, data)] = smtp_server.handler.messages
    assert rcpts == ["user@xn--bcher-kva.de"]
    assert parse(data)["To"] == "user@xn--bcher-kva.de"
    assert local.outcome is Outcome.FAILED
    assert "jörg@example.com" in local.detail
    assert "SMTPUTF8" in local.detail


def test_a_non_ascii_local_part_goes_out_with_smtputf8_when_the_server_offers_it(
    tls_files: tuple[Path, Path],
) -> None:
    server = start_server(Handler(), tls_files, smtputf8=True)
    calls: list[str] = []
    try:
        with SmtpTransport(server.settings()) as transport:
            results = [
                _send(transport, a, calls) for a in ("a@example.com", "josé@bücher.de", "b@example.com")
            ]
    finally:
        server.controller.stop()
    assert [r.outcome for r in results] == [Outcome.SENT] * 3, results
    assert calls == ["a@example.com", "josé@bücher.de", "b@example.com"]
    assert server.handler.smtp_utf8 == [False, True, False]  # only where it is needed
    [(_s, first, _d), (_s, rcpts, data), (_s, last, _d2)] = server.handler.messages
    assert (first, rcpts, last) == (["a@example.com"], ["josé@xn--bcher-kva.de"], ["b@example.com"])
    check_message(parse(data), "josé@xn--bcher-kva.de")
    assert b"\r\nTo: jos\xc3\xa9@xn--bcher-kva.de\r\n" in data  # UTF-8 as it is (RFC 6532), no encoded-word
    assert parse(data)["Subject"] == "Daily: Café talks resume in Alaska"


def test_a_non_ascii_local_part_fails_alone_when_the_server_lacks_smtputf8(smtp_server: SmtpServer) -> None:
    calls: list[str] = []
    with SmtpTransport(smtp_server.settings()) as transport:
        results = [_send(transport, a, calls) for a in ("a@example.com", "josé@example.org", "b@example.com")]
    sent, refused, after = results
    assert (sent.outcome, refused.outcome, after.outcome) == (Outcome.SENT, Outcome.FAILED, Outcome.SENT)
    assert not refused.server_down  # the other readers still get the issue
    assert refused.detail.startswith("josé@example.org: ")
    assert f"127.0.0.1:{smtp_server.port} does not offer SMTPUTF8" in refused.detail
    assert calls == ["a@example.com", "b@example.com"]  # never claimed: nothing went out
    assert smtp_server.handler.mail_count == 2  # not even a MAIL FROM for it
    assert [m[1] for m in smtp_server.handler.messages] == [["a@example.com"], ["b@example.com"]]


def test_a_message_to_a_non_ascii_local_part_is_utf8_and_the_same_every_time() -> None:
    first = mail.serialize(mail.build_message(SPEC, recipient("josé@example.org")))
    assert first == mail.serialize(mail.build_message(SPEC, recipient("josé@example.org")))
    check_message(parse(first), "josé@example.org")
    # An ASCII reader's message keeps its encoded-words: it may meet any server.
    assert mail.serialize(mail.build_message(SPEC, recipient())).isascii()


def test_implicit_tls_without_a_login_delivers(tls_files: tuple[Path, Path]) -> None:
    # Port 465 with no username (a relay that trusts the network): the session must still
    # greet with EHLO, which login() used to do as a side effect, before MAIL FROM.
    cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    handler = Handler()
    controller = _Controller(handler, hostname="127.0.0.1", port=free_port(), ssl_context=context)
    controller.start()
    try:
        server = SmtpServer(handler, controller.port, cert, controller)
        with SmtpTransport(server.settings(security="tls", tls=False)) as transport:
            results = [_send(transport, address) for address in ("a@example.com", "b@example.com")]
    finally:
        controller.stop()
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT], [r.detail for r in results]
    assert [m[1] for m in handler.messages] == [["a@example.com"], ["b@example.com"]]


def test_implicit_tls_against_a_starttls_port_says_which_setting_to_use(smtp_server: SmtpServer) -> None:
    with SmtpTransport(smtp_server.settings(security="tls", timeout=2.0)) as transport:
        result = _send(transport, "a@example.com")
    assert result.server_down
    assert "use security: starttls" in result.detail


def test_a_claim_that_cannot_be_written_after_354_loses_the_session_not_the_next_reader(
    smtp_server: SmtpServer,
) -> None:
    # The server waits for the message: the next MAIL FROM was read as message text, and
    # that reader waited out the timeout.
    def locked() -> None:
        raise RuntimeError("database is locked")

    data = mail.serialize(mail.build_message(SPEC, recipient("a@example.com")))
    with SmtpTransport(smtp_server.settings()) as transport:
        with pytest.raises(RuntimeError):
            transport.deliver("digest@example.com", "a@example.com", data, "x", locked)
        began = time.monotonic()
        after = _send(transport, "b@example.com")
    assert after.outcome is Outcome.SENT
    assert time.monotonic() - began < 2
    assert [m[1] for m in smtp_server.handler.messages] == [["b@example.com"]]


def test_421_to_mail_from_on_a_kept_session_is_a_reconnect_not_a_refused_sender(
    smtp_server: SmtpServer,
) -> None:
    # Postfix says "421 4.4.2 timeout exceeded" to an idle session: it was reported as a
    # refused sender and stopped the issue.
    with SmtpTransport(smtp_server.settings()) as transport:
        assert _send(transport, "a@example.com").outcome is Outcome.SENT
        smtp_server.handler.mail_replies = ["421 4.4.2 Error: timeout exceeded"]
        again = _send(transport, "b@example.com")
    assert again.outcome is Outcome.SENT
    assert [m[1] for m in smtp_server.handler.messages] == [["a@example.com"], ["b@example.com"]]


def test_rate_limit_spaces_messages(smtp_server: SmtpServer) -> None:
    now = [0.0]
    slept: list[float] = []

    def clock() -> float:
        return now[0]

    transport = SmtpTransport(smtp_server.settings(rate=600), clock=clock)
    original_sleep = mail.time.sleep
    try:
        mail.time.sleep = lambda s: (slept.append(s), now.__setitem__(0, now[0] + s))  # type: ignore[assignment]
        with transport:
            _send(transport, "a@example.com")
            _send(transport, "b@example.com")
    finally:
        mail.time.sleep = original_sleep
    assert slept == [pytest.approx(0.1)]


def test_outbox_writes_each_message_atomically(tmp_path: Path) -> None:
    outbox = mail.Outbox(tmp_path / "outbox")
    data = mail.serialize(mail.build_message(SPEC, recipient()))
    calls: list[str] = []
    result = outbox.deliver(
        "digest@example.com", "reader@example.com", data, "daily-0001-abc", lambda: calls.append("x")
    )
    assert result.outcome is Outcome.SENT
    assert calls == ["x"]
    assert outbox.exists("daily-0001-abc")
    assert (tmp_path / "outbox" / "daily-0001-abc.eml").read_bytes() == data
    assert [p.name for p in (tmp_path / "outbox").iterdir()] == ["daily-0001-abc.eml"]


def test_a_message_being_written_to_the_outbox_is_no_eml_file_yet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its temporary file was ".tmp-….eml": a script reading the outbox (Path.glob("*.eml")
    # matches hidden names) took half-written messages, or found them renamed away.
    folder = tmp_path / "outbox"
    seen: list[list[str]] = []
    fsync = mail.os.fsync

    def look_then_fsync(fd: int) -> None:
        seen.append(sorted(p.name for p in folder.glob("*.eml")))
        fsync(fd)

    monkeypatch.setattr(mail.os, "fsync", look_then_fsync)
    data = mail.serialize(mail.build_message(SPEC, recipient()))
    result = mail.Outbox(folder).deliver(
        "digest@example.com", "reader@example.com", data, "daily-1-a", lambda: None
    )
    assert result.outcome is Outcome.SENT
    assert seen == [[]]
    assert [p.name for p in folder.glob("*.eml")] == ["daily-1-a.eml"]


@pytest.mark.parametrize("address", ["reader@example.com", "josé@example.org"])  # UTF-8 headers too
def test_dkim_signature_covers_the_unsubscribe_headers(tmp_path: Path, address: str) -> None:
    dkim = pytest.importorskip("dkim", reason="dkimpy is not installed")
    key_path = tmp_path / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key_path), "2048"], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key_path), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    data = mail.serialize(mail.build_message(SPEC, recipient(address)))
    signed = mail.dkim_sign(data, mail.DkimKey(key_path.read_bytes(), "sel", "example.com"))
    header = parse(signed)["DKIM-Signature"]
    tags = {k.strip(): v for k, _, v in (part.partition("=") for part in str(header).split(";"))}
    signed_headers = {h.strip().lower() for h in tags["h"].replace(" ", "").split(":")}
    assert {"list-unsubscribe", "list-unsubscribe-post", "from", "subject"} <= signed_headers
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: record)


def test_a_key_that_cannot_sign_is_a_sender_error_not_a_readers_failure() -> None:
    pytest.importorskip("dkim", reason="dkimpy is not installed")
    data = mail.serialize(mail.build_message(SPEC, recipient()))
    with pytest.raises(
        mail.SenderError, match=r"DKIM signing as sel\._domainkey\.example\.com: .*dkim_key_file"
    ):
        mail.dkim_sign(data, mail.DkimKey(b"not a key", "sel", "example.com"))


def test_a_text_line_starting_with_from_survives_mbox_storage() -> None:
    # mbox storage rewrites a line starting "From " to ">From ", and readers see it.
    spec = replace(SPEC, text="Hello\nFrom the editors: a line\n" + "x" * 70 + " From here\n")
    raw = mail.serialize(mail.build_message(spec, recipient()))
    assert not re.search(rb"^From ", raw, re.MULTILINE)
    [text_part, _html] = parse(raw).iter_parts()
    assert "\nFrom the editors: a line\r\n" in text_part.get_content()
