"""Digest messages: MIME building, optional DKIM, and delivery over SMTP or to the outbox.

In: a rendered digest (HTML and text with ``UNSUBSCRIBE_MARK`` in place of the
per-recipient link), one recipient and that recipient's unsubscribe URLs.  Out: the
message as bytes (``build_message``), and a ``DeliveryResult`` per attempt from a
transport: ``Outbox`` (``.eml`` files, the default with no SMTP configured) or
``SmtpTransport`` (verified TLS only, one connection reused, a send rate limit).

The message is ``multipart/alternative`` (text first, HTML last: clients show the last
part they can), UTF-8, with ``List-Id``, ``List-Unsubscribe`` (https; mailto too when given) and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058), ``Auto-Submitted``, and
a ``Date`` and ``Message-ID`` fixed when the issue was frozen, so a resumed send produces
byte-identical messages.  It is serialized with a 998-column policy: the default folding
of ``policy.SMTP`` turns a long ``List-Unsubscribe`` into encoded-words that mail
providers do not read.  An address with non-ASCII characters before the @ (``josé@…``)
gets its message with UTF-8 headers (RFC 6532) and travels with SMTPUTF8 (RFC 6531): a
server that does not offer it fails that recipient alone, before MAIL FROM, with the reason.

Delivery outcomes follow SMTP: 2xx sent; 4xx retry later; 5xx permanent; a connection
lost once the server took DATA (354) is *uncertain* (the server may have accepted the
message), and the caller must never send that message again.  The caller records its claim on a recipient
before DATA through the ``before_data`` callback; see ``aggregator.newsletters``.  A session
lost before the server took MAIL FROM is ``server_down`` (everyone would meet it); one the
server closes at a recipient's RCPT TO (a 421, or the connection dropped) is a retry for that
recipient alone, marked ``dropped``: the next message opens a new session.
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
import socket
import ssl
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.errors import HeaderParseError
from email.headerregistry import Address, HeaderRegistry, SingleAddressHeader
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime
from email.utils import quote as quote_string
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote, urlsplit, urlunsplit

from aggregator.errors import DeliveryError


class ListIdHeader(SingleAddressHeader):
    """``List-Id: phrase <list-id>`` (RFC 2919) read and written as the name and address
    it is: the phrase as an RFC 5322 phrase (a quoted-string where it holds specials,
    encoded-words where it is not ASCII, specials inside them), the list id in its angle
    brackets.  policy.SMTP takes List-Id for unstructured text, which decodes the value's
    encoded-words and writes them again word by word: the specials of a title came out bare
    (``News, Views & "More" <today> =?utf-8?q?T=C3=A4glich?= <…>``), and mail filters read
    the list id as ``today``.  A list id has no @: it is read as the address's local part."""


# A registry of our own: the default policies share theirs, which no one else's mail should see changed.
_HEADERS = HeaderRegistry()
# The registry makes the class a BaseHeader itself, as it does its own (typeshed asks for one).
_HEADERS.map_to_type("list-id", ListIdHeader)  # type: ignore[arg-type]

# policy.SMTP folds at 78 columns, and folds a long List-Unsubscribe into encoded-words.
MAIL_POLICY = policy.SMTP.clone(max_line_length=998, header_factory=_HEADERS)
# A message to an address with a non-ASCII local part: headers in UTF-8 (RFC 6532), as
# smtplib's send_message does when it uses SMTPUTF8.
MAIL_POLICY_UTF8 = MAIL_POLICY.clone(utf8=True)

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


# What a phrase may hold unquoted: RFC 5322 atext, spaces between words, and non-ASCII
# characters (encoded-words on the wire, or UTF-8 atext under RFC 6532).
_PLAIN_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\- \x80-\U0010ffff]+")


def list_id_value(name: str, ident: str) -> str:
    """The ``List-Id`` value (RFC 2919) of the list ``ident`` named ``name``: ``name`` cleaned
    (``clean_header``), quoted when it holds a special (``"Team <Alpha> News" <ident>``), as it
    is when it needs no quoting (``The Daily Digest <ident>``: the bytes filters were written
    for); ``<ident>`` alone for no name.  Raw non-ASCII text is kept: ``ListIdHeader`` turns
    it into encoded-words, or writes it as UTF-8 where the message may carry that."""
    phrase = clean_header(name)
    if phrase and not _PLAIN_PHRASE.fullmatch(phrase):
        phrase = f'"{quote_string(phrase)}"'
    return f"{phrase} <{ident}>" if phrase else f"<{ident}>"


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
    list_id: str  # e.g. "Daily Digest <daily.list.example.org>"; see ``list_id_value``
    auto_submitted: str = "auto-generated"


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    message_id: str
    unsubscribe_url: str  # https, one click (RFC 8058)
    # mailto:...?subject=... for a list whose mailbox acts on unsubscribe mail; the
    # aggregator's does not (nothing reads it), so its digests go without.
    unsubscribe_mailto: str | None = None


class SenderError(DeliveryError):
    """A problem with the sender or the signing key, not with one recipient: every message of
    the issue would fail alike, so the issue stops and waits for the configuration to be fixed."""


class DkimKeyError(SenderError):
    """The DKIM key cannot sign; ``reason`` is the signer's own words (``Private key not found``)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class SmtpFileError(SenderError):
    """A file ``smtp:`` names (``key``: ``smtp.ca_file``, ``smtp.dkim_key_file``) that cannot be
    used: missing, a folder, unreadable, or not what it should hold.  ``problem`` follows the
    path (``does not exist``) and ``hint`` says what to write: ``config check`` reports the same
    words on the key's line of feeds.yaml."""

    def __init__(self, key: str, path: str, problem: str, hint: str) -> None:
        super().__init__(f"{key}: {path} {problem} ({hint})")
        self.key = key
        self.path = path
        self.problem = problem
        self.hint = hint


CA_FILE_KEY = "smtp.ca_file"
DKIM_KEY_FILE_KEY = "smtp.dkim_key_file"
_CA_FILE_HINT = "give the path of a PEM file of CA certificates, relative to feeds.yaml or absolute"
_NOT_PEM_CA_HINT = (
    "give the CA's certificates in PEM form, each from a line -----BEGIN CERTIFICATE-----;"
    " a DER file converts with `openssl x509 -inform der -in ca.der -out ca.pem`"
)
_DKIM_FILE_HINT = "give the path of the DKIM private key, a PEM file, relative to feeds.yaml or absolute"
_DKIM_KEY_HINT = (
    "give an RSA private key in PEM form, as `openssl genrsa -out dkim.pem 2048` makes one, whose"
    " public half is published at SELECTOR._domainkey.DOMAIN"
)
_READ_ACCESS_HINT = "give the user this runs as read access to it (chmod, chgrp), and to the folders above it"


def _check_smtp_file(key: str, path: str, hint: str) -> None:
    """``SmtpFileError`` unless ``path`` is a regular file: ssl reads a folder as "Is a
    directory" without saying which setting, and a FIFO would hang the read for good."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise _unusable_smtp_file(key, path, exc, hint) from exc
    if stat.S_ISDIR(mode):
        raise SmtpFileError(key, path, "is a folder, not a file", hint)
    if not stat.S_ISREG(mode):
        raise SmtpFileError(key, path, "is a device, a FIFO or a socket, not a regular file", hint)


def _unusable_smtp_file(key: str, path: str, exc: OSError | ValueError, hint: str) -> SmtpFileError:
    """Why ``path`` could not be opened, in words that say what to change."""
    if isinstance(exc, FileNotFoundError):
        return SmtpFileError(key, path, "does not exist", hint)
    if isinstance(exc, NotADirectoryError):
        return SmtpFileError(key, path, "does not exist (a part of its path is a file)", hint)
    if isinstance(exc, IsADirectoryError):
        return SmtpFileError(key, path, "is a folder, not a file", hint)
    if isinstance(exc, PermissionError):
        return SmtpFileError(key, path, "cannot be read: permission denied", _READ_ACCESS_HINT)
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return SmtpFileError(key, path, f"cannot be read: {why.lower()}", hint)


def wire_address(address: str, *, smtputf8: bool = False) -> str:
    """``address`` as it travels in RCPT TO and the To header: an internationalized domain in
    its ASCII (IDNA) form.  A non-ASCII local part (``josé@example.org``) has no ASCII form: it
    travels as UTF-8 and needs SMTPUTF8 (RFC 6531) from the server; it is kept only when
    ``smtputf8`` says the caller can carry it.  Raises ``DeliveryError`` otherwise, or for a
    domain IDNA cannot encode."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local:
        raise DeliveryError(f"{address}: bad address: no local part and domain")
    if not local.isascii() and not smtputf8:
        raise DeliveryError(
            f"{address}: non-ASCII characters before the @ need a server that offers SMTPUTF8"
        )
    if domain.isascii():
        return address.strip()
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError as exc:
        raise DeliveryError(f"{address}: bad address: the domain cannot be encoded: {exc}") from exc


_NOT_ASCII = re.compile(r"[^\x21-\x7e]+")


def ascii_uri(uri: str) -> str:
    """``uri`` in ASCII, as a header must carry it: an internationalized host in its IDNA form
    (``bücher.example`` → ``xn--bcher-kva.example``), every other character outside printable
    ASCII percent-encoded as UTF-8.  A ``List-Unsubscribe`` with one such character was
    written as an encoded-word, which no mail provider reads as a link: readers of a site
    at an IDN address got no unsubscribe button."""
    if uri.isascii() and " " not in uri:
        return uri
    scheme, _, rest = uri.partition(":")
    if scheme.lower() == "mailto":
        address, mark, query = rest.partition("?")
        local, at, domain = address.rpartition("@")
        rest = f"{local}{at}{_idna(domain)}{mark}{query}" if at else rest
    else:
        parts = urlsplit(uri)
        userinfo, at, hostport = parts.netloc.rpartition("@")
        host, colon, port = hostport.partition(":")  # not an IPv6 "[…]": that one is ASCII
        netloc = f"{userinfo}{at}{_idna(host)}{colon}{port}"
        scheme, _, rest = urlunsplit(parts._replace(netloc=netloc)).partition(":")
    return f"{scheme}:" + _NOT_ASCII.sub(lambda m: quote(m.group(), safe=""), rest)


def _idna(domain: str) -> str:
    """``domain`` in its ASCII (IDNA) form; as it is (percent-encoded later) if it has none."""
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def build_message(spec: MessageSpec, recipient: Recipient) -> EmailMessage:
    """One recipient's message.  Raises ``DeliveryError`` for an address that cannot be used."""
    msg = EmailMessage(policy=MAIL_POLICY)
    try:
        msg["From"] = Address(display_name=clean_header(spec.sender_name), addr_spec=spec.sender)
        if spec.reply_to:
            msg["Reply-To"] = Address(addr_spec=spec.reply_to)
    except (ValueError, IndexError, HeaderParseError) as exc:
        raise SenderError(f"building message: the sender {spec.sender!r}: bad address: {exc}") from exc
    to = wire_address(recipient.address, smtputf8=True)
    try:
        # Address() refuses a non-ASCII local part; parsed from text it is kept, and
        # ``serialize`` writes it as UTF-8 (RFC 6532), which only an SMTPUTF8 server takes.
        msg["To"] = to if not to.isascii() else Address(addr_spec=to)
    except (ValueError, IndexError, HeaderParseError) as exc:
        raise DeliveryError(f"building message: {recipient.address}: bad address: {exc}") from exc
    msg["Subject"] = clean_header(spec.subject, 250)
    msg["Date"] = spec.date
    msg["Message-ID"] = recipient.message_id
    try:
        # Never cut (a limit of its own length): cut, it lost the ">" that ends the list id.
        # The name in it is cut already (``list_id_value``).
        msg["List-Id"] = clean_header(spec.list_id, len(spec.list_id))
    except (ValueError, IndexError, HeaderParseError) as exc:
        raise SenderError(f"building message: the List-Id {spec.list_id!r}: {exc}") from exc
    unsubscribe = [recipient.unsubscribe_url, *filter(None, [recipient.unsubscribe_mailto])]
    msg["List-Unsubscribe"] = ", ".join(f"<{ascii_uri(uri)}>" for uri in unsubscribe)
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
    if cte == "base64":
        encoded = base64.encodebytes(data)
    else:
        # A line starting "From " is rewritten ">From " by mbox storage, and readers see it:
        # its F is encoded (=46), which quoted-printable allows for any character.
        encoded = _FROM_LINE.sub(b"=46rom ", binascii.b2a_qp(data, istext=True))
    part.set_payload(encoded.decode("ascii"))
    return part


_FROM_LINE = re.compile(rb"^From ", re.MULTILINE)


def serialize(msg: EmailMessage) -> bytes:
    """The message's bytes; UTF-8 headers (``MAIL_POLICY_UTF8``) when its recipient's address
    has a non-ASCII local part, which no encoded-word may carry (RFC 2047 section 5)."""
    return msg.as_bytes(policy=MAIL_POLICY_UTF8 if needs_smtputf8(str(msg["To"] or "")) else MAIL_POLICY)


def needs_smtputf8(address: str) -> bool:
    """Whether mail to ``address`` needs SMTPUTF8: a non-ASCII local part (a non-ASCII
    domain has an ASCII form, see ``wire_address``)."""
    return not address.strip().rpartition("@")[0].isascii()


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
    try:
        signature = dkim.sign(
            data,
            key.selector.encode(),
            key.domain.encode(),
            key.private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=list(DKIM_HEADERS),
        )
    except (dkim.DKIMException, ValueError, UnicodeError) as exc:  # KeyFormatError is a DKIMException
        raise DkimKeyError(
            f"DKIM signing as {key.selector}._domainkey.{key.domain}: {exc}; check smtp.dkim_key_file",
            str(exc),
        ) from exc
    return bytes(signature) + data


def read_dkim_key(path: str, selector: str, domain: str) -> DkimKey:
    """The DKIM key in the file at ``path``, tried on a test message: a key that cannot sign
    is found before any reader is tried (and by ``config check``, which calls this too).
    ``SmtpFileError`` for a file that cannot be read, ``DkimKeyError`` for one that holds no
    key to sign with, ``DeliveryError`` without dkimpy."""
    _check_smtp_file(DKIM_KEY_FILE_KEY, path, _DKIM_FILE_HINT)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:  # gone or made unreadable since the look above
        raise _unusable_smtp_file(DKIM_KEY_FILE_KEY, path, exc, _DKIM_FILE_HINT) from exc
    key = DkimKey(data, selector, domain)
    dkim_sign(b"From: check@example.invalid\r\n\r\n", key)
    return key


def dkim_key_problem(path: str, exc: DkimKeyError) -> SmtpFileError:
    """A key ``read_dkim_key`` read but cannot sign with, said as a problem of its file."""
    return SmtpFileError(
        DKIM_KEY_FILE_KEY, path, f"is not a private key DKIM can sign with: {exc.reason}", _DKIM_KEY_HINT
    )


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
    # A RETRY caused on this machine (a bug, an outbox that cannot be written), not by the
    # mail server's answer: nothing will clear it by itself, so whoever runs us must hear.
    local_fault: bool = False
    # The step a refusal came at ("MAIL FROM", "RCPT TO", "DATA"), "" for any other problem:
    # the same 4xx at the same step for every reader is the server's, not theirs.
    stage: str = field(default="", compare=False)
    # The server closed the session at this recipient's RCPT TO (a 421, or the connection
    # dropped) after it took MAIL FROM: put off this recipient; the next message needs a new
    # session, which the caller may allow or not (see ``newsletters``).
    dropped: bool = False


class TransportStopped(Exception):
    """A transport that refuses to start another message (the process is stopping), raised
    by ``deliver`` before ``before_data``: nothing of that message was sent.  The delivery
    loop (``newsletters``) catches it, puts the claimed recipient back as it was, ends the
    issue's run as interrupted and starts no other message or issue; the next run sends to
    the readers left, once each."""


class Transport:
    """Where messages go.  ``deliver`` calls ``before_data`` right before the point of no return."""

    def deliver(
        self, sender: str, recipient: str, data: bytes, name: str, before_data: Callable[[], None]
    ) -> DeliveryResult:
        raise NotImplementedError

    def delivered(self, name: str) -> bool | None:
        """Whether the message ``name``, claimed by a run that crashed, got through: True or
        False when this transport can tell (the outbox: the file is there or not), None when
        it cannot (SMTP)."""
        return None

    def close(self) -> None:
        """Release connections; the transport may be used again afterwards."""

    @property
    def outbox(self) -> Path | None:
        """The folder messages are written to instead of sent (``Outbox``), else None."""
        return None

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

    @property
    def outbox(self) -> Path | None:
        return self.directory

    def path_for(self, name: str) -> Path:
        return self.directory / f"{name}.eml"

    def exists(self, name: str) -> bool:
        return self.path_for(name).exists()

    def delivered(self, name: str) -> bool | None:
        return self.exists(name)  # written atomically: there whole, or not at all

    def deliver(
        self, sender: str, recipient: str, data: bytes, name: str, before_data: Callable[[], None]
    ) -> DeliveryResult:
        before_data()
        target = self.path_for(name)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # Not "*.eml" until whole: whoever reads the outbox (Path.glob matches hidden names)
            # must never take a message still being written.
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    # On disk before the rename: after a power cut the file is there whole
                    # or not at all, and "there" is what recovery reads as sent.
                    os.fsync(handle.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            return DeliveryResult(Outcome.RETRY, f"writing {target}: {exc.strerror or exc}", local_fault=True)
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


# "Bad sequence of commands" (RFC 5321 4.2.4): a reply about the session's state, e.g.
# "503 nested MAIL command" from a server still holding an unfinished transaction.
_BAD_SEQUENCE = 503

# What ``SmtpTransport._envelope`` returns when the session itself broke.
_LOST = DeliveryResult(Outcome.RETRY, "the connection failed before DATA", server_down=True)
# ... and when the recipient needs SMTPUTF8, which the server does not offer.
_NO_SMTPUTF8 = DeliveryResult(Outcome.FAILED, "the server does not offer SMTPUTF8")


class SmtpTransport(Transport):
    """SMTP with verified TLS, AUTH when credentials are given, one connection reused.

    Each message is MAIL FROM, RCPT TO, then DATA; ``before_data`` runs once the server
    answered DATA with 354 and before the first byte of the message, so a crash can lose at
    most the knowledge of whether one message arrived, never send one twice.  A refused
    sender or a session that cannot be had (twice in a row) is ``server_down``: the other
    recipients would meet the same, so the caller stops and tries again on its next run.
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
                # Greet now: login() would, but a relay without a login otherwise saw MAIL
                # FROM first and refused every message ("503 send HELO first").
                conn.ehlo()
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
        except ssl.SSLCertVerificationError as exc:
            why = exc.verify_message or exc.reason or exc
            raise DeliveryError(
                f"TLS with {self._where()}: the server's certificate is not trusted: {why}"
                " (for a private CA, set smtp.ca_file)"
            ) from exc
        except ssl.SSLError as exc:
            hint = ""
            if exc.reason == "WRONG_VERSION_NUMBER" and s.security == "tls":
                hint = " (the server does not speak TLS at once on this port: use security: starttls)"
            raise DeliveryError(f"TLS with {self._where()}: {exc.reason or exc}{hint}") from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"connecting to {self._where()}: {_connect_problem(exc, s)}") from exc
        self._conn = conn
        return conn

    def _pace(self) -> None:
        interval = 60.0 / self.settings.rate_per_minute
        if self._last_send is not None:
            wait = self._last_send + interval - self._clock()
            if wait > 0:
                time.sleep(wait)
        self._last_send = self._clock()

    def deliver(
        self, sender: str, recipient: str, data: bytes, name: str, before_data: Callable[[], None]
    ) -> DeliveryResult:
        self._pace()
        try:
            address = wire_address(recipient, smtputf8=True)
        except DeliveryError as exc:
            return DeliveryResult(Outcome.FAILED, str(exc))
        reused = self._conn is not None
        result = self._envelope(sender, address)
        if reused and self._conn is None and result is not None and result.server_down:
            # A kept session that gave out under this message: closed by the server while
            # idle (its timeout, or our pacing), or out of step with it (a 503 to MAIL FROM):
            # one fresh session before deciding anything about this recipient.
            result = self._envelope(sender, address)
        if result is _LOST:
            return DeliveryResult(
                Outcome.RETRY, f"{self._where()}: the connection failed before DATA", server_down=True
            )
        if result is _NO_SMTPUTF8:
            # Permanent for this reader (until the server changes), and only for this reader.
            return DeliveryResult(
                Outcome.FAILED,
                f"{recipient}: the server {self._where()} does not offer SMTPUTF8, which an address with"
                " non-ASCII characters before the @ needs; nothing was sent to it",
            )
        if result is not None:
            return result
        return self._data(data, before_data)

    def _envelope(self, sender: str, address: str) -> DeliveryResult | None:
        """MAIL FROM and RCPT TO on a session; None when both were accepted, ``_LOST`` when
        the session broke (connect, TLS, login, or a dropped connection) before the server took
        MAIL FROM, a ``dropped`` retry when it broke at this recipient's RCPT TO, ``_NO_SMTPUTF8``
        when ``address`` needs SMTPUTF8 and the server does not offer it (nothing sent)."""
        try:
            conn = self._connect()
        except DeliveryError as exc:
            return DeliveryResult(Outcome.RETRY, str(exc), server_down=True)
        try:
            options: tuple[str, ...] = ()
            if needs_smtputf8(address):
                conn.ehlo_or_helo_if_needed()  # the extensions are those of the last EHLO
                if not conn.has_extn("smtputf8"):
                    return _NO_SMTPUTF8
                options = ("SMTPUTF8",)  # smtplib then sends the commands in UTF-8
            code, reply = conn.mail(sender, options)
            if code != 250:
                return self._refused(conn, code, reply, "MAIL FROM", sender)
        except (OSError, smtplib.SMTPException):
            self._drop()
            return _LOST
        return self._rcpt(conn, sender, address)

    def _rcpt(self, conn: smtplib.SMTP, sender: str, address: str) -> DeliveryResult | None:
        try:
            code, reply = conn.rcpt(address)
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            return self._dropped_at(f"RCPT TO: the connection was lost: {exc}")
        if code not in (250, 251):
            return self._refused(conn, code, reply, "RCPT TO", sender)
        return None

    def _dropped_at(self, detail: str) -> DeliveryResult:
        # The session took MAIL FROM a moment ago: what ended it came with this recipient
        # (a server that will not take mail for one address, or not now).  Not the server
        # down: the caller may give the other readers a new session.
        return DeliveryResult(
            Outcome.RETRY,
            f"{detail} ({self._where()} closed the session at this recipient)",
            stage="RCPT TO",
            dropped=True,
        )

    def _refused(self, conn: smtplib.SMTP, code: int, reply: bytes, step: str, sender: str) -> DeliveryResult:
        if code == 421:  # the server closes the session (an idle one timed out): not a refusal
            self._drop()
            return self._dropped_at(f"{step}: {code} {_text(reply)}") if step == "RCPT TO" else _LOST
        if code == _BAD_SEQUENCE and step == "MAIL FROM":
            # Not a refused sender: the server holds a transaction this session left open, or
            # missed a greeting.  The session is of no further use; the login has no part in it.
            self._drop()
            return DeliveryResult(
                Outcome.RETRY,
                f"MAIL FROM: {code} {_text(reply)}: {self._where()} took MAIL FROM as out of sequence"
                " (bad sequence of commands) on a fresh session; if that persists, check smtp.security"
                " and the server's log",
                server_down=True,
            )
        self._reset(conn)
        refused = _classify(code, reply, step)
        if step != "MAIL FROM":
            return refused
        # The sender is refused (authentication required, a domain it may not send for, a
        # rate limit): every recipient would be, so the issue waits.
        if refused.outcome is Outcome.RETRY:  # a 4xx: for now, and no setting of ours is to blame
            return DeliveryResult(
                Outcome.RETRY,
                f"{refused.detail}: {self._where()} puts off the sender {sender} for now (a rate limit,"
                " a busy server); the issue waits and is tried again later",
                server_down=True,
            )
        login = "logged in" if self.settings.username else "no login: the username variable is not set"
        return DeliveryResult(
            Outcome.RETRY,
            f"{refused.detail}: the server refuses the sender {sender} ({login}); check smtp: and the"
            " newsletter's sender in feeds.yaml, and the credentials' environment variables; the"
            " issue waits until then",
            server_down=True,
        )

    def _data(self, data: bytes, before_data: Callable[[], None]) -> DeliveryResult:
        """DATA in two steps (smtplib's ``data`` in one cannot tell them apart): until the
        server answers 354 no byte of the message has left, and a failure is a plain retry;
        after it, a lost connection is uncertain."""
        conn = self._conn
        assert conn is not None  # _envelope left it open  # noqa: S101
        try:
            conn.putcmd("data")
            code, reply = conn.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            return DeliveryResult(Outcome.RETRY, f"DATA: the connection failed before 354: {exc}")
        if code != 354:
            if code == 421:  # the server is closing the session
                self._drop()
            else:
                self._reset(conn)  # else the next MAIL FROM meets "503 nested MAIL command"
            return _classify(code, reply, "DATA")
        try:
            before_data()
        except BaseException:
            # The server now waits for the message: this session is of no further use (the
            # next MAIL FROM would be read as message text).  Nothing was sent.
            self._drop()
            raise
        body = re.sub(rb"(?m)^\.", b"..", data)  # dot-stuffing (RFC 5321 4.5.2), as smtplib does
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        try:
            conn.send(body + b".\r\n")
            code, reply = conn.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            # The message may or may not have been accepted: never send it again.
            self._drop()
            return DeliveryResult(Outcome.UNCERTAIN, f"connection lost during DATA: {exc}")
        if code == 250:
            return DeliveryResult(Outcome.SENT, f"{code} {_text(reply)}")
        if not 400 <= code < 600:  # the body was sent and the answer makes no sense: it may be there
            self._drop()
            return DeliveryResult(Outcome.UNCERTAIN, f"DATA: {code} {_text(reply)}")
        if code == 421:
            self._drop()
        else:
            # RFC 5321 ends the transaction with this reply, but not every server forgets
            # its sender and recipients after refusing a message: without RSET (as
            # smtplib's sendmail sends) the next reader's MAIL FROM met "503 nested MAIL
            # command", and the whole issue stopped on it.
            self._reset(conn)
        return _classify(code, reply, "DATA")

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


def _connect_problem(exc: OSError | smtplib.SMTPException, settings: SmtpSettings) -> str:
    """Why a session could not be had, in words that say what to check (a bare
    "[Errno 111] Connection refused" named neither the server nor the setting)."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: is the mail server running, and are smtp.host and smtp.port right?"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name {settings.host!r}: check smtp.host in feeds.yaml"
    if isinstance(exc, TimeoutError) and settings.security == "starttls":
        return f"{exc} (no SMTP greeting: a port that starts with TLS, such as 465, needs security: tls)"
    return str(exc)


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _reply(exc: smtplib.SMTPResponseException) -> str:
    return f"{exc.smtp_code} {_text(exc.smtp_error)}"


def _classify(code: int, reply: bytes | str, step: str) -> DeliveryResult:
    detail = f"{step}: {code} {_text(reply)}"
    if 400 <= code < 500 or code < 200:
        return DeliveryResult(Outcome.RETRY, detail, stage=step)
    if code == _BAD_SEQUENCE:  # about the session's state, not this reader: never failed for good on it
        return DeliveryResult(Outcome.RETRY, f"{detail} (bad sequence of commands; the session was reset)")
    return DeliveryResult(Outcome.FAILED, detail, stage=step)


def smtp_ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A verifying TLS context (system CAs, plus ``ca_file`` when given).  ``SmtpFileError``
    naming ``smtp.ca_file`` and the path when that file cannot be loaded: ``config check``
    loads it through here too, so what it passes is what sending gets."""
    context = ssl.create_default_context()
    if ca_file:
        _check_smtp_file(CA_FILE_KEY, ca_file, _CA_FILE_HINT)
        try:
            context.load_verify_locations(cafile=ca_file)
        except ssl.SSLError as exc:  # before OSError, which it is: read, but no certificate in it
            why = _SSL_SOURCE_LINE.sub("", exc.strerror or str(exc))
            raise SmtpFileError(
                CA_FILE_KEY, ca_file, f"cannot be loaded as PEM CA certificates: {why}", _NOT_PEM_CA_HINT
            ) from exc
        except OSError as exc:  # gone or made unreadable since the look above
            raise _unusable_smtp_file(CA_FILE_KEY, ca_file, exc, _CA_FILE_HINT) from exc
    return context


_SSL_SOURCE_LINE = re.compile(r"\s*\(_ssl\.c:\d+\)$")  # "... no certificate or crl found (_ssl.c:4154)"


def format_date(moment: datetime) -> str:
    """RFC 5322 date of an aware datetime, e.g. ``Mon, 18 Aug 2025 12:00:00 +0000``."""
    return format_datetime(moment)


__all__ = [
    "MAIL_POLICY",
    "MAIL_POLICY_UTF8",
    "DeliveryResult",
    "DkimKey",
    "DkimKeyError",
    "ListIdHeader",
    "MessageSpec",
    "Outbox",
    "Outcome",
    "Recipient",
    "SenderError",
    "SmtpFileError",
    "SmtpSettings",
    "SmtpTransport",
    "Transport",
    "TransportStopped",
    "ascii_uri",
    "build_message",
    "clean_header",
    "dkim_key_problem",
    "dkim_sign",
    "domain_of",
    "format_date",
    "list_id_value",
    "message_id",
    "needs_smtputf8",
    "read_dkim_key",
    "serialize",
    "smtp_ssl_context",
    "wire_address",
]
