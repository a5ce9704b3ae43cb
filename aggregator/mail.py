"""Digest messages: MIME building, optional DKIM, and delivery over SMTP or to the outbox.

In: a rendered digest (HTML and text with ``UNSUBSCRIBE_MARK`` in place of the
per-recipient link), one recipient and that recipient's unsubscribe URLs.  Out: the
message as bytes (``build_message``), and a ``DeliveryResult`` per attempt from a
transport: ``Outbox`` (``.eml`` files, the default with no SMTP configured) or
``SmtpTransport`` (verified TLS only, one connection reused, a send rate limit).

The message is ``multipart/alternative`` (text first, HTML last: clients show the last
part they can), UTF-8, with ``List-Id``, ``List-Unsubscribe`` (https and mailto) and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058), ``Auto-Submitted``, and
a ``Date`` and ``Message-ID`` fixed when the issue was frozen, so a resumed send produces
byte-identical messages.  It is serialized with a 998-column policy: the default folding
of ``policy.SMTP`` turns a long ``List-Unsubscribe`` into encoded-words that mail
providers do not read.

Delivery outcomes follow SMTP: 2xx sent; 4xx retry later; 5xx permanent; a connection
lost after DATA began is *uncertain* (the server may have accepted the message), and the
caller must never send that message again.  The caller records its claim on a recipient
before DATA through the ``before_data`` callback; see ``aggregator.newsletters``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import enum
import hashlib
import os
import re
import secrets
import smtplib
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from aggregator.errors import DeliveryError

# policy.SMTP folds at 78 columns, and folds a long List-Unsubscribe into encoded-words.
MAIL_POLICY = policy.SMTP.clone(max_line_length=998)

# What a digest is rendered with in place of each reader's unsubscribe URL, replaced per
# recipient in ``build_message``.  Random per process: the replacement runs over the whole
# message, feed text included, and a fixed placeholder let a feed put it in a story's link
# and so receive every reader's address and unsubscribe token.  Always the same length, so
# that a resumed send still builds byte-identical messages.
UNSUBSCRIBE_MARK = f"https://unsubscribe.invalid/{secrets.token_hex(16)}"

_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_HEADER_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029\u0085\ufeff{_BIDI}]")
_SPACE = re.compile(r"\s+")


# "=?" opens an RFC 2047 encoded-word.  Python's email package (before 3.11.10, see
# CVE-2024-6923) decodes one found in a header value it is given and writes what it decodes
# as is, CR/LF included: a feed titled "=?utf-8?b?<base64 of 'x\r\nBcc: ...'>?=" would add
# headers to the digest.  A word joiner (invisible, U+2060) between the two characters leaves
# the text as the reader sees it but no longer an encoded-word.
_ENCODED_WORD_START = "=?"
_NOT_ENCODED_WORD = "=\u2060?"


def clean_header(value: str, limit: int = 200) -> str:
    """Header-safe text: controls, CR/LF, line separators and bidi characters removed, one
    line, and nothing the email package would decode as an encoded-word."""
    text = _SPACE.sub(" ", _HEADER_UNSAFE.sub(" ", value)).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text.replace(_ENCODED_WORD_START, _NOT_ENCODED_WORD)


def message_id(newsletter: str, number: int | str, recipient: str, domain: str) -> str:
    """``<name.N.hash@domain>``: the same issue and recipient always get the same id."""
    digest = hashlib.sha256(recipient.lower().encode()).hexdigest()[:16]
    return f"<{newsletter}.{number}.{digest}@{domain}>"


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().lower() or "localhost"


@dataclass(frozen=True, slots=True)
class MessageSpec:
    """Everything about one message except the recipient."""

    sender: str  # an address
    sender_name: str
    reply_to: str | None
    subject: str
    html: str
    text: str
    date: str  # RFC 5322, from the freeze time
    list_id: str  # e.g. "Daily Digest <daily.list.example.org>"
    auto_submitted: str = "auto-generated"


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    message_id: str
    unsubscribe_url: str  # https, one click (RFC 8058)
    unsubscribe_mailto: str  # mailto:...?subject=...


def build_message(spec: MessageSpec, recipient: Recipient) -> EmailMessage:
    """One recipient's message.  Raises ``DeliveryError`` for an address that cannot be used."""
    msg = EmailMessage(policy=MAIL_POLICY)
    try:
        msg["From"] = Address(display_name=clean_header(spec.sender_name), addr_spec=spec.sender)
        msg["To"] = Address(addr_spec=recipient.address)
        if spec.reply_to:
            msg["Reply-To"] = Address(addr_spec=spec.reply_to)
    except (ValueError, IndexError) as exc:
        raise DeliveryError(f"building message: {recipient.address}: bad address: {exc}") from exc
    msg["Subject"] = clean_header(spec.subject, 250)
    msg["Date"] = spec.date
    msg["Message-ID"] = recipient.message_id
    msg["List-Id"] = clean_header(spec.list_id)
    msg["List-Unsubscribe"] = f"<{recipient.unsubscribe_url}>, <{recipient.unsubscribe_mailto}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Auto-Submitted"] = spec.auto_submitted
    msg["X-Auto-Response-Suppress"] = "OOF, AutoReply"
    msg["Precedence"] = "list"
    text = spec.text.replace(UNSUBSCRIBE_MARK, recipient.unsubscribe_url)
    html = spec.html.replace(UNSUBSCRIBE_MARK, recipient.unsubscribe_url)
    # A boundary derived from the Message-ID: a resumed send builds byte-identical messages.
    boundary = "=_" + hashlib.sha256(recipient.message_id.encode()).hexdigest()[:32]
    msg["MIME-Version"] = "1.0"
    msg["Content-Type"] = f'multipart/alternative; boundary="{boundary}"'
    # The parts are encoded here with binascii (C) rather than by set_content, whose
    # pure-Python encoders cost several milliseconds per 90 KB message.  Quoted-printable
    # keeps the text readable in raw form; base64 suits the long lines of the HTML.
    msg.set_payload([_text_part(text, "plain", "quoted-printable"), _text_part(html, "html", "base64")])
    check_headers(msg)
    return msg


def check_headers(msg: EmailMessage) -> None:
    """Raise ``DeliveryError`` if a header's value holds a line break: a header would then
    write more headers (or end them) on the wire.  The values set above are cleaned, so this
    is the net under them, as Python 3.11.10's ``verify_generated_headers`` is."""
    for name, value in msg.items():
        if "\r" in str(value) or "\n" in str(value):
            raise DeliveryError(
                f"building message: the {name} header would hold a line break: {str(value)!r}"
            )


def _text_part(content: str, subtype: str, cte: str) -> MIMEPart:
    part = MIMEPart(policy=MAIL_POLICY)
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    part["Content-Transfer-Encoding"] = cte
    data = content.encode("utf-8")
    encoded = base64.encodebytes(data) if cte == "base64" else binascii.b2a_qp(data, istext=True)
    part.set_payload(encoded.decode("ascii"))
    return part


def serialize(msg: EmailMessage) -> bytes:
    return msg.as_bytes(policy=MAIL_POLICY)


@dataclass(frozen=True, slots=True)
class DkimKey:
    """A DKIM signing key: ``selector._domainkey.domain`` must publish its public half."""

    private_key: bytes  # PEM
    selector: str
    domain: str


# Signed headers: the unsubscribe pair must be covered (RFC 8058 section 4).
DKIM_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"mime-version",
    b"content-type",
)


def dkim_sign(data: bytes, key: DkimKey) -> bytes:
    """``data`` with a DKIM-Signature header prepended (relaxed/relaxed, rsa-sha256)."""
    try:
        import dkim  # type: ignore[import-untyped,import-not-found,unused-ignore]  # noqa: PLC0415 -- optional
    except ImportError as exc:
        raise DeliveryError("DKIM signing: the dkimpy package is not installed: pip install dkimpy") from exc
    signature = dkim.sign(
        data,
        key.selector.encode(),
        key.domain.encode(),
        key.private_key,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=list(DKIM_HEADERS),
    )
    return bytes(signature) + data


# ----------------------------------------------------------------------- delivery


class Outcome(enum.StrEnum):
    SENT = "sent"
    RETRY = "retry"  # 4xx or a connection problem before DATA: try again later
    FAILED = "failed"  # 5xx: permanent for this recipient
    UNCERTAIN = "uncertain"  # lost during DATA: may have arrived; never resend


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    outcome: Outcome
    detail: str = ""  # the server's reply or the error, for the send log
    server_down: bool = False  # no session at all (connect, TLS, login): later recipients would fail too


class Transport:
    """Where messages go.  ``deliver`` calls ``before_data`` right before the point of no return."""

    def deliver(
        self, sender: str, recipient: str, data: bytes, name: str, before_data: Callable[[], None]
    ) -> DeliveryResult:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections; the transport may be used again afterwards."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Outbox(Transport):
    """Writes each message to ``DIR/NAME.eml`` atomically (the default without SMTP).

    ``name`` is deterministic per issue and recipient, so ``exists`` tells a resumed run
    whether a message whose claim was recorded actually got written.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, name: str) -> Path:
        return self.directory / f"{name}.eml"

    def exists(self, name: str) -> bool:
        return self.path_for(name).exists()

    def deliver(
        self, sender: str, recipient: str, data: bytes, name: str, before_data: Callable[[], None]
    ) -> DeliveryResult:
        before_data()
        target = self.path_for(name)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".eml")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            return DeliveryResult(Outcome.RETRY, f"writing {target}: {exc.strerror or exc}")
        return DeliveryResult(Outcome.SENT, str(target))


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int
    security: str  # "starttls" (required, never opportunistic) or "tls" (implicit, port 465)
    username: str | None
    password: str | None
    rate_per_minute: int
    timeout: float
    ssl_context: ssl.SSLContext


class SmtpTransport(Transport):
    """SMTP with verified TLS, AUTH when credentials are given, one connection reused.

    Each message is MAIL FROM, RCPT TO, then DATA; ``before_data`` runs after the
    recipient was accepted and before DATA, so a crash can lose at most the knowledge of
    whether one message arrived, never send one twice.
    """

    def __init__(self, settings: SmtpSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._conn: smtplib.SMTP | None = None
        self._clock = clock
        self._last_send: float | None = None

    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _connect(self) -> smtplib.SMTP:
        if self._conn is not None:
            return self._conn
        s = self.settings
        conn: smtplib.SMTP
        try:
            if s.security == "tls":
                conn = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=s.ssl_context)
            else:
                conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
                conn.ehlo()
                if not conn.has_extn("starttls"):
                    conn.close()
                    raise DeliveryError(
                        f"connecting to {self._where()}: the server does not offer STARTTLS, and mail "
                        "is never sent unencrypted (use security: tls for port 465)"
                    )
                conn.starttls(context=s.ssl_context)
                conn.ehlo()
            if s.username and s.password:
                conn.login(s.username, s.password)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"logging in to {self._where()}: {_reply(exc)}") from exc
        except ssl.SSLError as exc:
            raise DeliveryError(f"TLS with {self._where()}: {exc.reason or exc}") from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"connecting to {self._where()}: {exc}") from exc
        self._conn = conn
        return conn

    def _pace(self) -> None:
        interval = 60.0 / self.settings.rate_per_minute
        if self._last_send is not None:
            wait = self._last_send + interval - self._clock()
            if wait > 0:
                time.sleep(wait)
        self._last_send = self._clock()

    def deliver(  # noqa: PLR0911 -- one return per SMTP outcome reads best
        self, sender: str, recipient: str, data: bytes, name: str, before_data: Callable[[], None]
    ) -> DeliveryResult:
        self._pace()
        try:
            conn = self._connect()
        except DeliveryError as exc:
            return DeliveryResult(Outcome.RETRY, str(exc), server_down=True)
        try:
            code, reply = conn.mail(sender)
            if code != 250:
                self._reset(conn)
                return _classify(code, reply, "MAIL FROM")
            code, reply = conn.rcpt(recipient)
            if code not in (250, 251):
                self._reset(conn)
                return _classify(code, reply, "RCPT TO")
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            return DeliveryResult(Outcome.RETRY, f"before DATA: {exc}")
        before_data()
        try:
            code, reply = conn.data(data)
        except smtplib.SMTPDataError as exc:
            return _classify(exc.smtp_code, exc.smtp_error, "DATA")
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code == 354 or exc.smtp_code < 400:
                self._drop()
                return DeliveryResult(Outcome.UNCERTAIN, f"DATA: {_reply(exc)}")
            self._drop()
            return _classify(exc.smtp_code, exc.smtp_error, "DATA")
        except (OSError, smtplib.SMTPException) as exc:
            # The message may or may not have been accepted: never send it again.
            self._drop()
            return DeliveryResult(Outcome.UNCERTAIN, f"connection lost during DATA: {exc}")
        if code != 250:  # smtplib's data() returns the final reply without raising
            return _classify(code, reply, "DATA")
        return DeliveryResult(Outcome.SENT, f"{code} {_text(reply)}")

    def _reset(self, conn: smtplib.SMTP) -> None:
        try:
            conn.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self._conn.quit()
            self._drop()


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _reply(exc: smtplib.SMTPResponseException) -> str:
    return f"{exc.smtp_code} {_text(exc.smtp_error)}"


def _classify(code: int, reply: bytes | str, step: str) -> DeliveryResult:
    detail = f"{step}: {code} {_text(reply)}"
    if 400 <= code < 500 or code < 200:
        return DeliveryResult(Outcome.RETRY, detail)
    return DeliveryResult(Outcome.FAILED, detail)


def smtp_ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A verifying TLS context (system CAs, plus ``ca_file`` when given)."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def format_date(moment: datetime) -> str:
    """RFC 5322 date of an aware datetime, e.g. ``Mon, 18 Aug 2025 12:00:00 +0000``."""
    return format_datetime(moment)


__all__ = [
    "MAIL_POLICY",
    "DeliveryResult",
    "DkimKey",
    "MessageSpec",
    "Outbox",
    "Outcome",
    "Recipient",
    "SmtpSettings",
    "SmtpTransport",
    "Transport",
    "build_message",
    "clean_header",
    "dkim_sign",
    "domain_of",
    "format_date",
    "message_id",
    "serialize",
    "smtp_ssl_context",
]
