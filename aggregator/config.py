"""The ``feeds.yaml`` schema, and loading it with errors that name their line.

In: the path of a YAML file a person edits by hand.  Out: a ``LoadedConfig`` holding the
validated, typed ``Config`` plus where things came from (the folder relative paths are
resolved against, the line of every feed), or a ``ConfigError`` listing *every* problem at
once, each as ``feeds.yaml:LINE:COL: location: message (hint)``.

The schema is pydantic with ``extra="forbid"`` everywhere: an unknown key is an error with
the nearest valid name as a hint, never silently ignored (a typo such as ``intervall`` would
otherwise quietly fall back to the default).  The file is read with ruamel.yaml's safe
loader (its C parser when ruamel.yaml.clib is installed: about 8x faster on a thousand
feeds, and every command pays it at start-up).  Line numbers come from a second read with
the round-trip loader, which keeps the line and column of every key and item, done only
when they are needed: a problem to report, or a feed's line asked for (``where``).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import unicodedata
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from email.errors import HeaderParseError
from email.headerregistry import Address
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

from aggregator.errors import ConfigError, ConfigProblem, DeliveryError
from aggregator.urls import canonical_url, without_password

if TYPE_CHECKING:
    import sqlalchemy as sa

DEFAULT_CONFIG_NAME = "feeds.yaml"
CONFIG_ENV = "AGGREGATOR_CONFIG"  # the config path when --config is not given

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_duration(value: object) -> timedelta:
    """``"90s"``, ``"30m"``, ``"1h30m"``, ``"2d"``, ``"1w"`` or a number of seconds → timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30m, 1h or 2d")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        parts = list(_DURATION_PART.finditer(text))
        if not parts or "".join(p.group(0) for p in parts).replace(" ", "") != text.replace(" ", ""):
            raise ValueError(
                f"bad duration {value!r}: use a number and a unit (s, m, h, d, w), e.g. 30m or 1h30m"
            )
        seconds = sum(float(p.group(1)) * _DURATION_UNITS[p.group(2).lower()] for p in parts)
    else:
        raise ValueError("expected a duration such as 30m, 1h or 2d")
    if seconds < 0:  # a YAML number (-5): the text form has no sign to begin with
        raise ValueError(f"bad duration {value!r}: a length of time cannot be negative")
    try:
        return timedelta(seconds=seconds)
    except (OverflowError, ValueError) as exc:  # .inf, .nan, or beyond 999,999,999 days
        raise ValueError(f"bad duration {value!r}: not a length of time this program can keep") from exc


def _duration_text(value: timedelta) -> str:
    """``2h``, ``90s``: a duration as feeds.yaml writes it, for messages."""
    seconds = value.total_seconds()
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def parse_size(value: object) -> int:
    """``"10MiB"``, ``"500 KB"`` or a number of bytes → bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 10MiB")
    if isinstance(value, int):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"bad size {value!r}: use a number and a unit (B, KB, KiB, MB, MiB, GB, GiB)")
    try:
        return int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()])
    except OverflowError as exc:  # more digits than a float holds
        raise ValueError(f"bad size {value!r}: too large") from exc


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]

# What no title, topic or URL may hold: control characters (YAML's "\f" escapes write them),
# which the OPML export and terminals cannot carry, and halves of surrogate pairs ("\ud800"),
# which no UTF-8 file, page or database can.
# Nor noncharacters (U+FFFE, U+FDD0...): not meant for interchange, and MJML refuses them.
# (A regex class body: U+FDD0..U+FDEF and the last two code points of every plane.)
NONCHARACTERS = "\ufdd0-\ufdef" + "".join(
    chr(plane + 0xFFFE) + chr(plane + 0xFFFF) for plane in range(0, 0x110000, 0x10000)
)
_UNWRITABLE = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff{NONCHARACTERS}]")


def check_text(value: str) -> str:
    if found := _UNWRITABLE.search(value):
        char = found.group()
        if "\ud800" <= char <= "\udfff":
            what = "half a surrogate pair"
        elif ord(char) < 0xA0:
            what = "a control character"
        else:
            what = "a noncharacter"
        raise ValueError(f"{what} (U+{ord(char):04X}) in {value!r}: remove it")
    return value


Text = Annotated[str, AfterValidator(check_text)]


def check_base_url(value: str) -> str:
    """An absolute http(s) URL with a host: feed ids, self links and every emailed link are
    built on it, and relative ones mean nothing to a feed reader or a mail client."""
    value = value.strip()
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError for a port that is no number
        absolute = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:  # an unbalanced "[", a port out of range
        absolute = False
    if not absolute:
        raise ValueError(
            f"not an absolute http(s) URL with a host: {value!r}; write where the site is served,"
            " e.g. https://news.example.com/feeds/"
        )
    return value


BaseUrl = Annotated[str, AfterValidator(check_text), AfterValidator(check_base_url)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


MAX_URL_BYTES = 1024  # feeds.url is indexed with each entry's guid (see parse.MAX_INDEXED_BYTES)


def check_interval(value: timedelta) -> timedelta:
    """A polling interval: zero would mean polling without a pause, which nothing does (the
    next check is never sooner than ``min_interval``), and which a person may have written
    meaning "never" or "as often as allowed": said here rather than guessed."""
    if value <= timedelta(0):
        raise ValueError(
            "an interval of 0 would poll without a pause: write how long to wait between polls,"
            " e.g. 30m (to pause a feed, write 'enabled: false')"
        )
    return value


Interval = Annotated[Duration, AfterValidator(check_interval)]


class FeedConfig(_Strict):
    """One feed to poll."""

    url: Text
    title: Text | None = None
    topics: tuple[Text, ...] = ()
    interval: Interval | None = None
    priority: int = 0  # breaks ties when choosing which copy of a story to keep (higher wins)
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return check_feed_url(value)


def check_feed_url(value: str) -> str:
    """A feed's ``url`` as feeds.yaml accepts it (stripped), else ``ValueError``; also for
    ``aggregator feeds add``, which must refuse what ``config check`` would."""
    value = value.strip()
    if not value:
        raise ValueError("empty url")
    if len(value.encode()) > MAX_URL_BYTES:
        raise ValueError(
            f"url longer than {MAX_URL_BYTES} bytes: no feed needs one, and the database indexes it"
        )
    scheme = urlsplit(value).scheme.lower()
    # A one-letter "scheme" is a Windows drive letter, i.e. a path.
    if scheme and len(scheme) > 1 and scheme not in ("http", "https", "file"):
        raise ValueError(f"not an http(s) or file URL, nor a path: {value!r}")
    if scheme in ("http", "https"):
        parts = urlsplit(value)
        if not parts.netloc:
            raise ValueError(f"URL without a host: {value!r}")
        # What fetching would refuse on every poll (exit 1, "some feeds failed"): said here,
        # with the file's line, as the mistake in feeds.yaml it is.
        host = parts.hostname or ""
        if not host or any(c.isspace() or c in "%\\" for c in host):
            raise ValueError(f"no usable host name in {value!r}: a space or a typo in the host?")
        try:
            parts.port  # noqa: B018 -- raises ValueError for a port that is no number or out of range
        except ValueError:
            raise ValueError(f"bad port in {value!r}: write a number from 1 to 65535") from None
        if parts.port == 0:
            raise ValueError(f"bad port in {value!r}: write a number from 1 to 65535")
    return value


def _positive_duration(value: timedelta) -> timedelta:
    """A time limit: zero would fail every fetch (``timed out after 0 s``)."""
    if value <= timedelta(0):
        raise ValueError("must be more than 0, e.g. 10s")
    return value


def _positive_size(value: int) -> int:
    """A size limit: zero or less would refuse every response."""
    if value < 1:
        raise ValueError(f"must be at least 1 byte, not {value}; e.g. 10MiB")
    return value


TimeLimit = Annotated[Duration, AfterValidator(_positive_duration)]


class PollingConfig(_Strict):
    """How politely to poll; every value has a sound default."""

    interval: Interval = timedelta(hours=1)
    min_interval: Duration = timedelta(minutes=5)
    max_interval: Duration = timedelta(days=7)
    max_retry_after: Duration = timedelta(days=2)
    unconditional_every: Duration = timedelta(days=7)
    concurrency: int = Field(default=16, ge=1, le=256)
    per_host: int = Field(default=4, ge=1, le=64)
    connect_timeout: TimeLimit = timedelta(seconds=10)
    read_timeout: TimeLimit = timedelta(seconds=30)
    timeout: TimeLimit = timedelta(seconds=60)
    max_response_size: Annotated[Size, AfterValidator(_positive_size)] = 10 * 1024 * 1024
    max_redirects: int = Field(default=5, ge=0, le=20)

    @field_validator("max_interval")
    @classmethod
    def _not_below_min_interval(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        # Every next check is clamped to [min_interval, max_interval]: an empty range has no answer.
        # Absent only when min_interval itself was refused (said on its own line): then no
        # range to judge (the default 5m would blame a max_interval that may well be right).
        least = info.data.get("min_interval")
        if least is not None and value < least:
            raise ValueError(
                f"max_interval ({_duration_text(value)}) is shorter than min_interval"
                f" ({_duration_text(least)}): make it at least as long, or lower min_interval"
            )
        return value


class TopicConfig(_Strict):
    """A named topic: stories matching any keyword (a word or phrase, case-insensitive) belong to it."""

    name: Text
    keywords: tuple[Text, ...] = ()


class DedupeConfig(_Strict):
    """Thresholds for collapsing near-identical copies, and pins a person can set by entry id."""

    title_window: Duration = timedelta(days=3)
    jaccard: float = Field(default=0.8, gt=0, le=1)
    containment: float = Field(default=0.9, gt=0, le=1)
    pin_together: tuple[tuple[str, str], ...] = ()
    pin_apart: tuple[tuple[str, str], ...] = ()


class StoriesConfig(_Strict):
    """How entries are grouped into stories."""

    # lexical: TF-IDF with names weighted up (the default install).  embeddings: joined with
    # sentence embeddings (better on real news, slower; the optional extra aggregator[embeddings]).
    method: Literal["lexical", "embeddings"] = "lexical"

    @field_validator("method")
    @classmethod
    def _check_extra(cls, value: str) -> str:
        if value == "embeddings":
            # Only looks for the modules (no import of torch): cheap enough for every load.
            from aggregator.embeddings import missing_extra  # noqa: PLC0415 -- only when asked for

            problem = missing_extra()
            if problem is not None:
                raise ValueError(f"'embeddings' {problem}")
        return value


# A language tag as BCP 47 writes one (en, en-GB, pt-BR, zh-Hant, es-419): a primary language
# of two or three letters ("english" is none), then subtags.
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")


class OutputConfig(_Strict):
    """The combined output feed."""

    dir: str = "public"
    title: str = "Aggregated stories"
    base_url: BaseUrl = "http://localhost:8000/"
    max_stories: int = Field(default=50, ge=1)
    # The language the stories are in: Atom xml:lang, RSS <language>, JSON Feed language.
    language: str | None = None

    @field_validator("language")
    @classmethod
    def _check_language(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not _LANGUAGE_TAG.fullmatch(value):
            raise ValueError(f"not a language tag: {value!r}; write e.g. en, en-GB or pt-BR")
        return value


def address_problem(address: str, *, utf8_local_part: bool) -> str | None:
    """Why ``address`` cannot be a mailbox of a digest (as the mail stack would find when
    building the message, every issue again), else None."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        return "not an email address (name@example.org)"
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return "the domain cannot be encoded"
    if not local.isascii():
        # Only a recipient's: it travels as UTF-8 to a server that offers SMTPUTF8.
        return None if utf8_local_part else "non-ASCII characters before the @"
    try:
        Address(addr_spec=f"{local}@{domain}")
    except (ValueError, IndexError, HeaderParseError) as exc:
        return f"not a valid email address ({exc})" if str(exc) else "not a valid email address"
    return None


def _check_sender(value: str | None) -> str | None:
    if value is not None and (problem := address_problem(value, utf8_local_part=False)):
        raise ValueError(f"bad address {value!r}: {problem}; write e.g. digest@example.org")
    return value


# RFC 2919's list-id: dot-atom-text (RFC 5322 atext, dot-separated) with at least one dot.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LIST_ID = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})+")


def _check_subscriber(value: str) -> str:
    if value.strip() and (problem := address_problem(value, utf8_local_part=True)):
        raise ValueError(f"bad address {value!r}: {problem}; fix it or take it out")
    return value


class NewsletterConfig(_Strict):
    """A periodic digest email."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)  # the database keeps 64
    title: Text
    schedule: str = "0 7 * * *"  # cron: minute hour day month weekday
    timezone: str = "UTC"
    topics: tuple[str, ...] = ()
    feeds: tuple[str, ...] = ()
    max_stories: int = Field(default=30, ge=1)
    sender: Annotated[str, AfterValidator(_check_sender)] = "digest@localhost"
    reply_to: Annotated[str | None, AfterValidator(_check_sender)] = None
    subscribers: tuple[Annotated[str, AfterValidator(_check_subscriber)], ...] = ()
    # Where the web side serves the archive and the unsubscribe page; default: output.base_url.
    base_url: BaseUrl | None = None
    lang: str = "en"
    # The List-Id (RFC 2919) identifier; default: NAME.list.<the sender's domain>.
    list_id: str | None = None
    # How far back the very first issue reaches (later issues start where the last one ended).
    first_issue_lookback: Duration = timedelta(days=7)

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Paris)") from exc
        return value

    @field_validator("list_id")
    @classmethod
    def _check_list_id(cls, value: str | None) -> str | None:
        # RFC 2919: a dot-atom of at least two labels, ASCII only.  Anything else came out of
        # the header mangled (``T <a>,b>``), and mail filters could not match the list.
        if value is not None and not _LIST_ID.fullmatch(value):
            raise ValueError(
                f"bad list id {value!r}: write letters, digits and dots only, a name and a domain"
                " you control, e.g. daily.list.example.org (or leave it out for NAME.list.<sender domain>)"
            )
        return value

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, value: str) -> str:
        # Imported here, only when a newsletter has a schedule to check: APScheduler costs
        # about 0.1 s at start-up, which `aggregator poll` from cron would pay on every run.
        from apscheduler.triggers.cron import CronTrigger  # noqa: PLC0415

        from aggregator.crontab import for_apscheduler  # noqa: PLC0415 -- beside its user

        try:
            CronTrigger.from_crontab(for_apscheduler(value))
        except ValueError as exc:
            raise ValueError(f"bad cron expression {value!r}: {exc}") from exc
        return value


def _check_smtp_port(value: int) -> int:
    """A TCP port: any other number fails every send, blaming the mail server or its host name."""
    if not 1 <= value <= 65535:
        raise ValueError(
            f"bad port {value}: write a number from 1 to 65535, e.g. 587 (starttls) or 465 (tls)"
        )
    return value


def _check_smtp_host(value: str) -> str:
    """A host name or IP address alone: a scheme or a port in it passes to the resolver as part
    of the name, and every send failed with "cannot resolve the host name"."""
    host = value.strip()
    if not host:
        raise ValueError("no host: write the mail server's name, e.g. smtp.example.org")
    if "://" in host:
        parts = urlsplit(host)
        try:
            port = parts.port
        except ValueError:  # a port that is no number: the hint leaves it out
            port = None
        name = parts.hostname or "smtp.example.org"
        tls = "; smtps:// is security: tls" if parts.scheme.lower() == "smtps" else ""
        raise ValueError(
            f"{value!r} is a URL, not a host name: write host: {name}"
            + (f" and port: {port}" if port else "")
            + tls
        )
    if host.startswith("["):  # an IPv6 address as a URL brackets it, perhaps with a port
        address, _, port_text = host[1:].partition("]")
        if port_text.startswith(":") and port_text[1:].isdigit():
            raise ValueError(f"{value!r} has a port in it: write host: {address} and port: {port_text[1:]}")
        raise ValueError(f"{value!r}: write the address without brackets: host: {address}")
    if ":" in host and not _is_ip_address(host):
        name, _, port_text = host.rpartition(":")
        raise ValueError(
            f"{value!r} has a port in it: write host: {name} and port: {port_text}"
            if port_text.isdigit() and name
            else f"{value!r} is not a host name: write the mail server's name or address alone"
        )
    if any(c.isspace() or c in "/@" for c in host):
        raise ValueError(
            f"{value!r} is not a host name: write the mail server's name alone, e.g. smtp.example.org"
        )
    return host


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class SmtpConfig(_Strict):
    """Where digests are sent; without it they are written to newsletters/outbox/."""

    host: Annotated[str, AfterValidator(_check_smtp_host)]
    port: Annotated[int, AfterValidator(_check_smtp_port)] = 587
    security: Literal["starttls", "tls"] = "starttls"
    username_env: str | None = "AGGREGATOR_SMTP_USERNAME"
    password_env: str | None = "AGGREGATOR_SMTP_PASSWORD"  # noqa: S105 (a variable name, not a secret)
    rate_per_minute: int = Field(default=60, ge=1)
    timeout: TimeLimit = timedelta(seconds=30)
    # An extra CA bundle to verify the server with (a private CA); verification is never off.
    ca_file: str | None = None
    # DKIM signing, when a private key (PEM) is configured: selector._domainkey.DOMAIN in DNS.
    dkim_key_file: str | None = None
    dkim_selector: str = "default"
    dkim_domain: str | None = None  # default: the sender's domain


# The shortest retention: newer entries are still news.  Dedupe compares new entries with
# those of the last days (dedupe.title_window, 3d by default), and a digest takes articles
# dated up to a week before its window (newsletters.ARCHIVE_AGE).
MIN_RETENTION = timedelta(days=7)


def _optional_duration(value: object) -> timedelta | None:
    """``null`` (keep everything), or a duration with its unit: a bare number, read as
    seconds elsewhere, is surely days here (``max_age: 180`` was refused as "3m")."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"{value} has no unit: write {value}d for days, or null to keep everything")
    return None if value is None else parse_duration(value)


def _check_max_age(value: timedelta | None) -> timedelta | None:
    if value is not None and value < MIN_RETENTION:
        raise ValueError(
            f"{_duration_text(value)} is shorter than 7 days: entries that"
            " recent are still news (dedupe compares new entries with them, and a digest takes"
            " articles up to a week old); write at least 7d, or null to keep everything"
        )
    return value


class RetentionConfig(_Strict):
    """How long entries are kept (``aggregator prune``, and the last stage of every run)."""

    # Entries stored and unchanged for longer than this are removed; None keeps everything.
    max_age: Annotated[
        timedelta | None, BeforeValidator(_optional_duration), AfterValidator(_check_max_age)
    ] = timedelta(days=180)


_EITHER_DATABASE = "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"


def check_database_url(value: str | None) -> str | None:
    """A ``database:`` URL the store opens (``store._create_engine`` decides: SQLite with its
    own driver, or PostgreSQL) and that keeps what a run stores: said here, on its line,
    rather than by every command failing to open it, or by every run from cron starting
    afresh (an in-memory database: each issue sent again)."""
    if not value:
        return value  # the default
    import sqlalchemy as sa  # noqa: PLC0415 -- only when feeds.yaml names a database

    try:
        url = sa.make_url(value)
    except (sa.exc.ArgumentError, ValueError):
        raise ValueError(_unparsable_database(value)) from None
    # As the store says it: the password hidden (there is none in a value it cannot parse).
    shown = url.render_as_string(hide_password=True) if url.password else value
    backend = url.get_backend_name()
    if url.drivername in ("postgresql", "postgresql+psycopg"):  # psycopg 3, which we ship
        return value
    # Only the scheme to change is said: a URL with its password masked, copied back, would
    # set the password to "***".
    if backend == "postgres":  # as libpq and Heroku's DATABASE_URL write it; SQLAlchemy does not
        raise ValueError(
            f"unsupported database 'postgres' in {shown!r}: write postgresql+psycopg:// instead of postgres://"
        )
    if backend == "postgresql":
        raise ValueError(
            f"unsupported PostgreSQL driver {url.get_driver_name()!r} in {shown!r} (psycopg 3 is the one"
            f" installed): write postgresql+psycopg:// instead of {url.drivername}://"
        )
    if backend != "sqlite":
        raise ValueError(f"unsupported database {backend!r} in {shown!r}: {_EITHER_DATABASE}")
    if url.get_driver_name() not in ("pysqlite", ""):
        raise ValueError(
            f"unsupported SQLite driver {url.get_driver_name()!r} in {shown!r}: use sqlite:///PATH"
        )
    if url.username or url.password or url.host or url.port:  # `sqlite://data/x.sqlite`
        raise ValueError(
            f"a SQLite URL has no host: {shown!r}; write three slashes before a relative path"
            " (sqlite:///data/x.sqlite), four before an absolute one (sqlite:////srv/x.sqlite)"
        )
    if _in_memory(url):
        raise ValueError(
            f"{shown!r} is an in-memory database, which keeps nothing between runs: give a file"
            " path (sqlite:///data/aggregator.sqlite) or a PostgreSQL URL (postgresql+psycopg://USER@HOST/DB)"
        )
    return value


def _unparsable_database(value: str) -> str:
    """What to write instead of a ``database:`` SQLAlchemy cannot read: a bare path, usually."""
    if "://" in value:
        return f"not a database URL: {without_password(value)!r}; {_EITHER_DATABASE}"
    if "@" in value:  # `user:password@host/db`: a URL without its scheme, not a path
        shown = without_password(f"//{value}").removeprefix("//")
        return f"not a database URL: {shown!r}; {_EITHER_DATABASE}"
    return (
        f"not a database URL: {value!r}; for a SQLite file write sqlite:///{_url_path(Path(value))},"
        " else a PostgreSQL URL (postgresql+psycopg://USER@HOST/DB)"
    )


def _in_memory(url: sa.URL) -> bool:
    """Whether a SQLite URL names a database that lives only as long as its connection: no
    path, ``:memory:``, or with ``uri=true`` a ``file:`` URI with ``mode=memory`` or
    ``vfs=memdb``, or naming no file (``file::memory:``; ``file:``, a temporary one)."""
    database = url.database or ""
    if database in ("", ":memory:"):
        return True
    # Without uri=true SQLAlchemy opens the path as a file name and drops the query; with it,
    # SQLite reads only a "file:" name as a URI, with the URL's query as its options.
    uri = str(url.query.get("uri", "")).strip().lower() in ("true", "yes", "on", "y", "t", "1")
    if not uri or not database.startswith("file:"):
        return False
    parts = urlsplit(database)
    options = [*url.query.items(), *(pair.partition("=")[::2] for pair in parts.query.split("&"))]
    return unquote(parts.path) in ("", ":memory:") or any(
        (key, str(option).lower()) in (("mode", "memory"), ("vfs", "memdb")) for key, option in options
    )


class Config(_Strict):
    """The whole of feeds.yaml."""

    feeds: tuple[FeedConfig, ...]
    newsletters: tuple[NewsletterConfig, ...] = ()
    topics: tuple[TopicConfig, ...] = ()
    polling: PollingConfig = PollingConfig()
    dedupe: DedupeConfig = DedupeConfig()
    stories: StoriesConfig = StoriesConfig()
    output: OutputConfig = OutputConfig()
    smtp: SmtpConfig | None = None
    retention: RetentionConfig = RetentionConfig()
    # SQLAlchemy URL; default: SQLite under data/
    database: Annotated[str | None, AfterValidator(check_database_url)] = None


# sqlite:///data/x.sqlite (relative; an absolute path has a fourth slash), with its query.
_RELATIVE_SQLITE_RE = re.compile(r"(?P<prefix>sqlite(?:\+\w+)?:///)(?P<path>[^/?][^?]*)(?P<query>\?.*)?")


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """A validated config and where it came from."""

    config: Config
    path: Path
    # The text it was read from, to find the feeds' lines in (``feed_lines``) when asked.
    text: str = field(default="", repr=False, compare=False)
    _feed_lines: dict[str, int] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def feed_lines(self) -> Mapping[str, int]:
        """Feed url as configured → its line in the file (read again the first time it is asked)."""
        if self._feed_lines is None:
            try:
                lines = _feed_lines(_round_trip(self.text))
            except MarkedYAMLError:  # the fast loader took what this one refuses: no lines, no failure
                lines = {}
            object.__setattr__(self, "_feed_lines", lines)  # a cache: the value never changes
        assert self._feed_lines is not None  # noqa: S101 -- for mypy
        return self._feed_lines

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL; a relative SQLite path is relative to this file's folder, as
        feed paths are (not to wherever the command runs: cron, a service)."""
        if not self.config.database:
            return f"sqlite:///{_url_path(self.base_dir / 'data' / 'aggregator.sqlite')}"
        relative = _RELATIVE_SQLITE_RE.match(self.config.database)
        if relative is None or relative["path"] == ":memory:" or "uri=true" in (relative["query"] or ""):
            return self.config.database
        folder = _url_path(self.base_dir.resolve())
        return f"{relative['prefix']}{folder}/{relative['path']}{relative['query'] or ''}"

    @property
    def enabled_feeds(self) -> tuple[FeedConfig, ...]:
        return tuple(f for f in self.config.feeds if f.enabled)

    def feed_location(self, url: str) -> str:
        """The absolute URL to fetch for a feed as configured: http(s) as is, paths as ``file:`` URLs."""
        return resolve_feed_location(url, self.base_dir)

    def where(self, url: str) -> str:
        """``feeds.yaml:12`` for a feed, to point a person at the line to change."""
        line = self.feed_lines.get(url)
        return f"{self.path.name}:{line}" if line else self.path.name


def _url_path(path: Path) -> str:
    """``path`` as the path of a database URL: SQLAlchemy reads "?" as the start of a query,
    "#" as a fragment, and decodes "%XX", so a folder named ``proj?a`` or ``proj%41`` would
    put the database somewhere else (``proj``, ``projA``)."""
    return str(path).replace("%", "%25").replace("?", "%3F").replace("#", "%23")


def feed_identity(url: str, base_dir: Path) -> str:
    """What makes two feed URLs one feed however each is spelt (host case, default port,
    tracking parameters, a fragment; a path or a file: URL as the file it names): their
    canonical http(s) URL, else where they are read from.  ``ValueError`` for no URL at all."""
    return canonical_url(url) or resolve_feed_location(url.strip(), base_dir)


def resolve_feed_location(url: str, base_dir: Path) -> str:
    """Where a feed is fetched from: http(s) as given; a path, or a ``file:`` URL with a
    relative path (``file:feeds/x.xml``), against the folder of feeds.yaml, never the
    working directory (under cron, the home folder)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return url
    if scheme == "file":
        if parts.netloc or parts.path.startswith("/"):
            return url
        return (base_dir / unquote(parts.path)).resolve().as_uri()
    return (base_dir / url).resolve().as_uri()


def config_file(value: str, base_dir: Path) -> Path:
    """A file feeds.yaml names (``smtp.ca_file``, ``smtp.dkim_key_file``): a relative path is
    relative to its folder, as feed paths are, never to wherever the command runs."""
    path = Path(value)
    return path if path.is_absolute() else base_dir / path


def load_config(path: Path) -> LoadedConfig:
    """Read and validate feeds.yaml; raise ``ConfigError`` with every problem found."""
    return load_config_text(_read_config_text(path), path)


def _read_config_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([config_read_problem(path, exc)]) from exc


def config_read_problem(path: Path, exc: OSError | UnicodeDecodeError) -> ConfigProblem:
    """Why feeds.yaml at ``path`` cannot be read, and what to do, in the same words for every
    command that reads it (``load_config``, the ``feeds`` editor, the web editor)."""
    if isinstance(exc, UnicodeDecodeError):
        return _undecodable_config_problem(path, exc)
    if isinstance(exc, FileNotFoundError):
        return missing_config_problem(path)
    if isinstance(exc, IsADirectoryError) or path.is_dir():  # PermissionError on Windows
        return folder_config_problem(path)
    if isinstance(exc, PermissionError):
        user = _user_name()
        return ConfigProblem(
            str(path),
            0,
            0,
            "",
            "permission denied",
            f"{user} may not read it, or not enter a folder above it: give that user read "
            "access (chmod, chgrp), or run the command as the file's owner",
        )
    why = exc.strerror.lower() if exc.strerror else str(exc)
    return ConfigProblem(str(path), 0, 0, "", f"cannot read: {why}", "check the path, or pass --config PATH")


def _undecodable_config_problem(path: Path, exc: UnicodeDecodeError) -> ConfigProblem:
    """Saved as Latin-1 or CP-1252: say the line, not a byte offset."""
    before = exc.object[: exc.start].decode("utf-8", errors="replace").split("\n")
    bad = f"byte 0x{exc.object[exc.start]:02x}"
    return ConfigProblem(
        str(path), len(before), len(before[-1]) + 1, "", f"not valid UTF-8 ({bad})", "save the file as UTF-8"
    )


def _user_name() -> str:
    """Who this process runs as (a service account, usually, when a file is not readable)."""
    try:
        import pwd  # noqa: PLC0415 -- POSIX only

        uid = os.geteuid()
    except (ImportError, AttributeError):  # Windows
        return "this user"
    try:
        return f"user {pwd.getpwuid(uid).pw_name!r}"
    except KeyError:  # a uid with no name (a container run with --user 1234)
        return f"user {uid}"


def missing_config_problem(path: Path) -> ConfigProblem:
    """feeds.yaml is not at ``path``: the hint says where the path came from, as that is what
    to change (a stale $AGGREGATOR_CONFIG in a service's environment is not seen on its
    command line)."""
    hint = "pass --config PATH"
    named = os.environ.get(CONFIG_ENV)
    if named and Path(named).absolute() == path.absolute():
        hint = f"the path is ${CONFIG_ENV}: set it to your feeds.yaml, or {hint}"
    return ConfigProblem(str(path), 0, 0, "", "file not found", hint)


def folder_config_problem(path: Path) -> ConfigProblem:
    """``path`` is a folder, not feeds.yaml: the hint names the feeds.yaml inside it if there
    is one, and, like ``missing_config_problem``, where the path came from."""
    inside = path / DEFAULT_CONFIG_NAME
    found = inside.is_file()
    hint = f"give the file: --config {inside}" if found else "pass --config PATH"
    named = os.environ.get(CONFIG_ENV)
    if named and Path(named).absolute() == path.absolute():
        target = str(inside) if found else f"your {DEFAULT_CONFIG_NAME}, or pass --config PATH"
        hint = f"the path is ${CONFIG_ENV}: set it to {target}"
    return ConfigProblem(str(path), 0, 0, "", f"a folder, not a {DEFAULT_CONFIG_NAME}", hint)


def unknown_key_hint(key: str, valid: Sequence[str]) -> str:
    """What to write instead of an unknown key: the closest valid one, else all of them
    (``config check`` and the feeds.yaml editor say it alike)."""
    close = difflib.get_close_matches(key, valid, n=1)
    return f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(valid)}"


def missing_feed_file(location: str) -> Path | None:
    """The file a ``file:`` feed location names, if there is no such file (else None)."""
    if not location.startswith("file:"):
        return None
    local = Path(unquote(urlsplit(location).path))  # as_uri() escaped it: "my%20feeds"
    return None if local.is_file() else local


def load_config_text(text: str, path: Path, *, check_local_files: bool = False) -> LoadedConfig:
    """Validate feeds.yaml's ``text`` (read from ``path``); raise ``ConfigError`` with every
    problem found.  ``check_local_files``: a feed's local file that is missing is one too, and
    an ``smtp.ca_file`` or ``smtp.dkim_key_file`` sending could not load (``config check``; a
    run only fails that feed, or the sending, and the file may come later)."""
    try:
        return _load_config_text(text, path, local_files=check_local_files)
    except RecursionError as exc:  # from the YAML loaders or the checks walking the data
        problem = ConfigProblem(
            str(path),
            0,
            0,
            "",
            "nested too deeply, or an alias (*name) used inside its own anchor (&name)",
            "write the value out without the self-reference or the deep nesting",
        )
        raise ConfigError([problem]) from exc


def _load_config_text(text: str, path: Path, *, local_files: bool = False) -> LoadedConfig:
    name = str(path)
    try:
        data = _fast_load(text)
    except Exception:  # whatever it is, the round-trip loader says it with a line
        data = _round_trip_or_error(name, text)
    if not isinstance(data, Mapping):
        raise ConfigError([ConfigProblem(name, 1, 1, "", "expected a mapping with a 'feeds:' list")])
    plain = _plain(data)
    try:
        config = Config.model_validate(plain)
    except ValidationError as exc:
        located = _round_trip_or_error(name, text)
        problems = [_problem_from(name, located, err) for err in exc.errors()]
        # The checks across fields too: else the next `config check`, once these are fixed,
        # would be the first to name a duplicate feed.
        problems += _cross_checks(name, lambda: located, plain, path.parent, local_files=local_files)
        raise ConfigError(problems) from exc
    problems = _cross_checks(
        name, lambda: _round_trip_or_error(name, text), plain, path.parent, local_files=local_files
    )
    if problems:
        raise ConfigError(problems)
    return LoadedConfig(config, path, text)


def _fast_load(text: str) -> Any:
    """Plain dicts and lists, without positions: the safe loader (C when ruamel.yaml.clib is there)."""
    return YAML(typ="safe").load(text)


def _round_trip(text: str) -> Any:
    """Commented containers that know the line and column of every key and item (pure Python)."""
    return YAML(typ="rt").load(text)


def _round_trip_or_error(name: str, text: str) -> Any:
    """``_round_trip``, with a YAML error turned into a ``ConfigError`` naming its line."""
    try:
        return _round_trip(text)
    except DuplicateKeyError as exc:  # before MarkedYAMLError, which it is
        raise ConfigError([_duplicate_key_problem(name, text, exc)]) from exc
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = str(exc.problem or exc)
        if exc.context in _CONTEXT_IS_THE_CAUSE and exc.context_mark is not None:
            # The parser notices where the key ends (the next line, or further down), or
            # that a quote or bracket is never closed (at the end of the file): the line to
            # fix is the one where the key starts, or the quote or bracket opens.
            mark = exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        hint = _yaml_hint(what, text, mark, str(exc.context or ""))
        problem = ConfigProblem(name, line, col, "", f"not valid YAML: {what}", hint)
        raise ConfigError([problem]) from exc
    except ReaderError as exc:
        # A character YAML forbids anywhere (ESC, NUL, form feed: a paste from a terminal).
        raise ConfigError([_forbidden_character_problem(name, text, exc)]) from exc
    except (ValueError, TypeError, OverflowError) as exc:
        # A value the parser accepts but cannot build: `title: 2024-13-45` reads as a date
        # (month 13), `priority: !!int high`.  ruamel says it without a line: find it.
        raise ConfigError([_unbuildable_value_problem(name, text, exc)]) from exc


def _forbidden_character_problem(name: str, text: str, exc: ReaderError) -> ConfigProblem:
    """A character YAML does not allow, at its line and column, by its name."""
    position = exc.position if isinstance(exc.position, int) and 0 <= exc.position <= len(text) else 0
    before = text[:position].split("\n")
    char = text[position] if position < len(text) else ""
    shown = f"U+{ord(char):04X}" if char else "a character"
    label = unicodedata.name(char, "") or _CONTROL_NAMES.get(ord(char), "a control character") if char else ""
    return ConfigProblem(
        name,
        len(before),
        len(before[-1]) + 1,
        "",
        f"character {shown}{f' ({label})' if label else ''} is not allowed in YAML",
        "remove it: a paste from a terminal can bring such characters along",
    )


_CONTROL_NAMES = {0x00: "NUL", 0x07: "BEL", 0x08: "BACKSPACE", 0x0C: "FORM FEED", 0x1B: "ESC", 0x7F: "DELETE"}


_CONTEXT_IS_THE_CAUSE = (
    "while scanning a simple key",
    "while scanning a quoted scalar",
    "while parsing a flow sequence",
    "while parsing a flow mapping",
)


def _duplicate_key_problem(name: str, text: str, exc: DuplicateKeyError) -> ConfigProblem:
    """A key given twice in one mapping (``url:`` twice in a feed, two ``feeds:``): in the
    file's words, without ruamel's repr of both values (a whole list of feeds, for ``feeds``)."""
    mark = exc.problem_mark
    if mark is None:
        return ConfigProblem(name, 0, 0, "", f"not valid YAML: {exc.problem}")
    lines = text.splitlines()
    line = lines[mark.line] if mark.line < len(lines) else ""
    key = line[mark.column :].partition(":")[0].strip()
    start = exc.context_mark.line if exc.context_mark is not None else 0
    first = next(
        (
            n + 1
            for n in range(start, mark.line)
            if lines[n][mark.column :].partition(":")[0].strip() == key
            and re.fullmatch(r"\s*(?:-\s+)*", lines[n][: mark.column])
        ),
        None,
    )
    message = f"{key!r} given twice in one mapping" + (f" (first on line {first})" if first else "")
    if mark.column == 0:
        hint = f"keep one '{key}:': put what is under the second one under the first"
    else:
        hint = "keep one of the two; another item of a list starts with its own '- '"
    return ConfigProblem(name, mark.line + 1, mark.column + 1, "", message, hint)


def _unbuildable_value_problem(name: str, text: str, exc: Exception) -> ConfigProblem:
    found = _unbuildable_scalar(text)
    if found is None:
        return ConfigProblem(name, 0, 0, "", f"not valid YAML: {exc}")
    node, why = found
    mark = node.start_mark
    if text.splitlines()[mark.line][mark.column :].startswith("!"):
        message = f"not valid YAML: {node.value!r} is not what its tag says ({why})"
        hint = "fix the value, or remove the tag (the '!!...' before it)"
    else:
        kind = str(node.tag).rpartition(":")[2]  # tag:yaml.org,2002:timestamp
        message = f"not valid YAML: {node.value!r} reads as a {'date' if kind == 'timestamp' else kind}"
        message += f", but is none ({why})"
        hint = f'if it is text, put it in quotes: "{node.value}"'
    return ConfigProblem(name, mark.line + 1, mark.column + 1, "", message, hint)


def _unbuildable_scalar(text: str) -> tuple[Any, str] | None:
    """The first value (node) in ``text`` the round-trip loader cannot build, and why."""
    yaml = YAML(typ="rt")
    try:
        pending = [yaml.compose(text)]
    except MarkedYAMLError:
        return None
    seen: set[int] = set()  # an alias is the node of its anchor: once is enough (and `&a [*a]` loops)
    while pending:
        node = pending.pop(0)
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, ScalarNode):
            try:
                yaml.constructor.construct_object(node, deep=True)
            except (ValueError, TypeError, OverflowError) as exc:
                return node, str(exc)
        elif isinstance(node, MappingNode):
            pending[:0] = [part for pair in node.value for part in pair]
        elif isinstance(node, SequenceNode):
            pending[:0] = list(node.value)
    return None


def _yaml_hint(what: str, text: str, mark: Any, context: str = "") -> str | None:
    """The usual cause of a YAML error, in the words of someone editing the file."""
    lines = text.splitlines()
    here = lines[mark.line] if mark is not None and mark.line < len(lines) else ""
    if "'\\t'" in what:  # the parser names the character, not the cause: an editor's tab key
        return "indent with spaces: YAML does not allow tabs there"
    if what == "could not find expected ':'":
        if glued := _GLUED_VALUE.match(here):  # `title:Foo` is one word, not a key and a value
            return f"a space is needed after the ':': write '{glued['key']}: {glued['value']}'"
        return "a ':' missing after the key on this line? write 'key: value'"
    if what == "mapping values are not allowed here" and mark is not None:
        return _mapping_values_hint(lines, mark.line, mark.column)
    if what.startswith("expected <block end>, but found"):  # a key or '- ' out of line
        return (
            "check the indentation: a key lines up with the other keys of its mapping, "
            "a '- ' with the other items of its list"
        )
    return _value_syntax_hint(what, context, here)


def _value_syntax_hint(what: str, context: str, here: str) -> str | None:
    """A value YAML cannot read as written: unclosed, or needing quotes (``here`` is its line)."""
    if context == "while scanning a quoted scalar":
        return "a quote opened on this line is not closed: end the value with the same quote"
    if context in ("while parsing a flow sequence", "while parsing a flow mapping"):
        close = "]" if "sequence" in context else "}"
        return f"a bracket opened on this line is not closed with '{close}'; or quote a value with ',' in it"
    if "unknown escape character" in what:  # `url: "C:\\feeds\\a.xml"`
        return "in double quotes '\\' starts an escape: use single quotes, or write '\\\\'"
    if what == "but found another document":
        return "feeds.yaml holds one document: remove the '---' line, or merge what follows it into the rest"
    if (
        "cannot start any token" in what
        or context in ("while scanning an alias", "while scanning a block scalar")
        or what.startswith("found undefined alias")
    ):
        return _quote_hint(here)
    return None


def _mapping_values_hint(lines: list[str], line: int, column: int) -> str | None:
    """A ':' where the parser was reading a value: which of the usual three mistakes it is."""
    before = lines[line][:column] if line < len(lines) else ""
    if ": " in before:  # `title: Roundup: the best`
        key, _, value = lines[line].strip().removeprefix("- ").partition(": ")
        return f"a value with ': ' in it needs quotes: {key}: \"{value}\""
    above = next(
        (n for n in range(line - 1, -1, -1) if lines[n].strip() and not lines[n].lstrip().startswith("#")),
        None,
    )
    if above is None:
        return None
    if _HAS_KEY.match(lines[above]):
        # The line above has its ':': this one, indented deeper than its keys, was read as
        # more of that line's value.
        return f"indented more than the line above it: line its key up with those on line {above + 1}"
    return f"a ':' missing after the key on line {above + 1}? write 'key: value'"


_GLUED_VALUE = re.compile(r"^\s*(?:-\s+)?(?P<key>[A-Za-z_]+):(?P<value>[^\s/].*?)\s*$")  # "title:Foo"
# What no plain value may start with ("@handle", "* * * * *" as a cron schedule, "%s", "`x`").
_INDICATOR_START = re.compile(r"^\s*(?:-\s+)?(?:(?P<key>[^\s#:'\"][^#:]*):\s+)?(?P<value>[@`%*&!|>].*?)\s*$")


def _quote_hint(line: str) -> str | None:
    """``schedule: * * * * *`` → put it in quotes, as the line would read with them."""
    found = _INDICATOR_START.match(line)
    if found is None:
        return None
    value = found["value"].replace("\\", "\\\\").replace('"', '\\"')
    written = f'{found["key"]}: "{value}"' if found["key"] else f'"{value}"'
    return f"a value starting with '{found['value'][0]}' needs quotes: {written}"


_HAS_KEY = re.compile(r"^\s*(?:-\s+)?[^\s#:'\"][^#:]*:(?:\s|$)")  # "  - url: x", "polling:"


def check_config(path: Path) -> list[ConfigProblem]:
    """Every problem ``aggregator config check`` reports, including local feed files that are
    missing and ``smtp:`` files (CA certificates, the DKIM key) that sending could not load."""
    try:
        load_config_text(_read_config_text(path), path, check_local_files=True)
    except ConfigError as exc:
        # As the file reads (the checks across fields come after pydantic's, in its order).
        return sorted(exc.problems, key=lambda p: (p.line, p.column))
    return []


def config_warnings(loaded: LoadedConfig) -> list[ConfigProblem]:
    """What feeds.yaml asks for that will not happen, though nothing fails: an interval
    outside ``[polling.min_interval, polling.max_interval]`` is quietly raised or lowered
    to that bound when the next check is worked out (see polling).  ``config check`` prints
    these as warnings, on their lines, and passes."""
    polling = loaded.config.polling
    found: list[tuple[tuple[int | str, ...], timedelta, str]] = []
    if polling.interval != _interval_used(polling.interval, polling):
        found.append(
            (("polling", "interval"), polling.interval, "feeds without an interval of their own are")
        )
    for index, feed in enumerate(loaded.config.feeds):
        if feed.interval is not None and feed.interval != _interval_used(feed.interval, polling):
            found.append((("feeds", index, "interval"), feed.interval, "this feed is"))
    repeated = _repeated_topics(loaded.config.topics)
    if not found and not repeated:
        return []
    try:
        tree = _round_trip(loaded.text)
    except MarkedYAMLError:  # the fast loader took what this one refuses: no lines, still said
        tree = None
    name = str(loaded.path)
    warnings = [
        _clamped_interval_warning(name, tree, loc, value, polling, subject=subject)
        for loc, value, subject in found
    ]
    for index, first in repeated:
        loc: tuple[int | str, ...] = ("topics", index, "name")
        line, col = _locate_in(tree, loc) if tree is not None else (0, 0)
        topic = loaded.config.topics[index].name
        message = f"topic {topic!r} is listed twice: its keywords are merged with those of topics[{first}]"
        warnings.append(ConfigProblem(name, line, col, _location_text(loc), message, "give it one entry"))
    return sorted(warnings, key=lambda w: (w.line, w.column))  # as the file reads


def _repeated_topics(topics: Sequence[TopicConfig]) -> list[tuple[int, int]]:
    """(index, index of its first entry) of each topic listed again under the same name:
    harmless, its keywords merged, so a warning (``_topic_problems`` refuses names that
    differ only in case, which became a second label and a second topic feed)."""
    first: dict[str, int] = {}
    repeated = []
    for index, topic in enumerate(topics):
        if topic.name in first:
            repeated.append((index, first[topic.name]))
        else:
            first[topic.name] = index
    return repeated


def _interval_used(value: timedelta, polling: PollingConfig) -> timedelta:
    """The interval polling keeps of ``value`` (it clamps every next check to this range)."""
    return min(max(value, polling.min_interval), polling.max_interval)


def _clamped_interval_warning(
    name: str,
    tree: Any,
    loc: tuple[int | str, ...],
    value: timedelta,
    polling: PollingConfig,
    *,
    subject: str,
) -> ConfigProblem:
    used = _duration_text(_interval_used(value, polling))
    if value < polling.min_interval:
        message = f"{_duration_text(value)} is shorter than polling.min_interval ({used})"
        hint = f"to poll this often, lower polling.min_interval; else write {used}"
    else:
        message = f"{_duration_text(value)} is longer than polling.max_interval ({used})"
        hint = f"to wait this long, raise polling.max_interval; else write {used}"
    line, col = _locate_in(tree, loc) if tree is not None else (0, 0)
    return ConfigProblem(
        name, line, col, _location_text(loc), f"{message}: {subject} polled every {used} instead", hint
    )


def warning_text(problem: ConfigProblem) -> str:
    """``feeds.yaml:4:15: warning: feeds[0].interval: …``: a problem that stops nothing, as
    compilers say it (editors jump to the line from it too)."""
    location = f"warning: {problem.location}" if problem.location else "warning"
    return str(replace(problem, location=location))


def _plain(node: Any) -> Any:
    """ruamel's commented containers → plain dicts and lists (pydantic wants no surprises)."""
    if isinstance(node, Mapping):
        return {key: _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(value) for value in node]
    return node


def _locate_in(data: Any, loc: Sequence[int | str]) -> tuple[int, int]:
    """The 1-based (line, column) of the deepest node of ``loc`` that exists in the YAML."""
    line, col = 0, 0
    node = data
    for key in loc:
        try:
            if isinstance(node, CommentedMap) and key in node:
                line, col = node.lc.key(key)
                line, col = line + 1, col + 1
                node = node[key]
            elif isinstance(node, CommentedSeq) and isinstance(key, int) and key < len(node):
                line, col = node.lc.item(key)
                line, col = line + 1, col + 1
                node = node[key]
            else:
                break
        except (KeyError, TypeError, AttributeError):
            break
    return line, col


def _location_text(loc: Sequence[int | str]) -> str:
    text = ""
    for key in loc:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text


def _model_at(loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model class that owns the last key of ``loc``, to suggest valid names."""
    model: type[BaseModel] | None = Config
    for key in loc[:-1]:
        if isinstance(key, int) or model is None:
            continue
        field = model.model_fields.get(key)
        if field is None:
            return None
        model = _model_of(field.annotation)
    return model


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _problem_from(name: str, data: Any, err: Mapping[str, Any]) -> ConfigProblem:
    loc: tuple[int | str, ...] = tuple(err["loc"])
    line, col = _locate_in(data, loc)
    kind = err["type"]
    hint = None
    message = str(err["msg"])
    if kind == "extra_forbidden":
        message = f"unknown key {loc[-1]!r}"
        model = _model_at(loc)
        if model is not None:
            hint = unknown_key_hint(str(loc[-1]), list(model.model_fields))
    elif kind == "missing":
        message = f"missing required key {loc[-1]!r}"
        if loc == ("feeds",):
            hint = "add a 'feeds:' list ('feeds: []' while there are none)"
    elif kind in ("model_type", "dict_type"):
        # pydantic's words name a class ("instance of FeedConfig"), not what to write.
        message = f"expected keys and values (key: value), got {_shown_input(err.get('input'))}"
        hint = _mapping_hint(loc, err.get("input"))
        if hint is None and err.get("input") is None:
            hint = f"indent its keys on the lines below '{loc[-1]}:', or remove the line"
    elif kind in ("tuple_type", "list_type"):
        message = f"expected a list (one '- ' line per item), got {_shown_input(err.get('input'))}"
        if loc == ("feeds",):
            hint = "list each feed as '- url: https://example.org/feed.xml' on a line under 'feeds:'"
        elif err.get("input") is None:
            hint = f"write its items on the lines below, each after '- ', or '{loc[-1]}: []' for none"
    elif kind in _EXPECTED:
        # pydantic's words ("Input should be a valid string") say neither what was found nor
        # the usual cause: YAML read a title such as 1984 or 2024-01-01 as a number or a date.
        value = err.get("input")
        message = f"expected {_EXPECTED[kind]}, got {_shown_input(value)}"
        hint = _text_hint(loc, value) if kind == "string_type" else None
    elif kind == "string_pattern_mismatch" and loc[-1] == "name" and loc[0] == "newsletters":
        message, hint = _newsletter_name_problem(err.get("input"))
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    return ConfigProblem(name, line, col, _location_text(loc), message, hint)


def _newsletter_name_problem(value: Any) -> tuple[str, str | None]:
    """What a newsletter name may hold, and the name meant: the archive folder, the List-Id
    and URLs are made of it (pydantic says the regular expression)."""
    message = f"{_shown_input(value)} is not a newsletter name: lower-case letters, digits, - and _"
    fixed = re.sub(r"[^a-z0-9_-]+", "-", value.lower()).strip("-_") if isinstance(value, str) else ""
    return message, (f"write name: {fixed}; the title: says it any way you like" if fixed else None)


_EXPECTED = {
    "string_type": "text",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "int_parsing": "a whole number",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
}


def _text_hint(loc: Sequence[int | str], value: Any) -> str | None:
    """Where text was expected: what to write instead of what YAML read."""
    key = loc[-1]
    if value is None:
        return f"write a value after '{key}:', or remove the line" if isinstance(key, str) else None
    if isinstance(value, TaggedScalar):
        return f"feeds.yaml reads no tags such as {value.tag}: write the value itself"
    if isinstance(value, Mapping):  # `topics: [Europe: East]`, `title: {x}`
        return "a value with ': ' or braces in it needs quotes"
    if isinstance(value, list):
        return "a value that starts with '[' needs quotes" if isinstance(key, str) else None
    # A number, a date or true/false: the text it was written as, in quotes.
    written = str(value).lower() if isinstance(value, bool) else _shown_input(value).removeprefix("the date ")
    return (
        f'put it in quotes: {key}: "{written}"' if isinstance(key, str) else f'put it in quotes: "{written}"'
    )


def _shown_input(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, TaggedScalar):  # `url: !env FEED_URL`: read as no kind of value
        return f"a value tagged {value.tag}"
    if isinstance(value, date):  # `title: 2024-01-01`, which YAML reads as a date
        return f"the date {value.isoformat()}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _mapping_hint(loc: Sequence[int | str], value: Any) -> str | None:
    """What to write where a mapping was expected: a feed written as a bare URL, or a key
    whose ':' is missing (``- url https://...``), are the usual causes."""
    glued = _GLUED_VALUE.match(value) if isinstance(value, str) else None
    model = _model_at((*loc, ""))
    if glued and model is not None and glued["key"] in model.model_fields:  # `- url:https://...`
        return f"a space is needed after the ':': write '{glued['key']}: {glued['value']}'"
    if isinstance(value, str) and re.match(r"^[A-Za-z_]+ ", value) and ":" not in value.split(" ", 1)[0]:
        key = value.split(" ", 1)[0]
        return f"a ':' missing after {key!r}? write '{key}: {value.split(' ', 1)[1].strip()}'"
    if len(loc) == 2 and loc[0] == "feeds" and isinstance(loc[1], int):
        return f"write the feed as '- url: {value}'" if isinstance(value, str) else "write '- url: ...'"
    if len(loc) == 2 and loc[0] == "newsletters" and isinstance(loc[1], int):
        return "write the newsletter as '- name: ...' with its keys indented below it"
    return None


def _cross_checks(
    name: str,
    located: Callable[[], Any],
    data: Mapping[str, Any],
    base_dir: Path,
    *,
    local_files: bool = False,
) -> list[ConfigProblem]:
    """Problems no single field shows (duplicates, unknown topics and feeds, with
    ``local_files`` local feed files that are missing and ``smtp:`` files sending could not
    load), found in the plain data whether or
    not it validated: ``config check`` says them with the others, not on the next run once
    those are fixed.  Each check skips what it cannot judge (a broken item is already a
    problem of its own).  ``located()`` gives the round-trip tree for their lines, read only
    when a problem is found."""
    tree: list[Any] = []  # the round-trip tree, once read

    def position(loc: Sequence[int | str]) -> tuple[int, int]:
        if not tree:
            tree.append(located())
        return _locate_in(tree[0], loc)

    def problem(loc: tuple[int | str, ...], message: str, hint: str | None = None) -> ConfigProblem:
        line, col = position(loc)
        return ConfigProblem(name, line, col, _location_text(loc), message, hint)

    problems = _feed_problems(problem, data, base_dir, local_files=local_files)
    problems += _topic_problems(problem, data) + _newsletter_problems(problem, data, base_dir)
    return problems + (_smtp_file_problems(problem, data, base_dir) if local_files else [])


_Report = Callable[..., ConfigProblem]  # (loc, message, hint=None) -> the problem, on its line


def _list_at(data: Mapping[str, Any], key: str) -> list[Any]:
    """``data[key]`` when it is a list, else nothing (it is a problem of its own)."""
    value = data.get(key)
    return value if isinstance(value, list) else []


def _valid_feed_url(item: Any) -> str | None:
    """A feed item's url as validation keeps it (stripped), or None when it has none that
    validation accepts (which says why on its own line)."""
    url = item.get("url") if isinstance(item, Mapping) else None
    if not isinstance(url, str):
        return None
    try:
        return check_feed_url(check_text(url))
    except ValueError:
        return None


def _feed_problems(
    problem: _Report, data: Mapping[str, Any], base_dir: Path, *, local_files: bool
) -> list[ConfigProblem]:
    problems = []
    seen: dict[str, tuple[int, str]] = {}
    for index, item in enumerate(_list_at(data, "feeds")):
        url = _valid_feed_url(item)
        if url is None:
            continue
        try:
            key = feed_identity(url, base_dir)
        except (ValueError, OSError):  # no URL at all, a path too long to resolve
            continue
        if key in seen:
            # Two spellings of one feed would both be polled, every entry stored twice.
            first_index, first = seen[key]
            hint = f"already listed as feeds[{first_index}]" + (f": {first!r}" if first != url else "")
            problems.append(problem(("feeds", index, "url"), f"duplicate feed {url!r}", hint))
            continue
        seen[key] = (index, url)
        missing = _missing_local_file(url, base_dir) if local_files else None
        if missing is not None:
            problems.append(problem(("feeds", index, "url"), missing, "fix the path or remove the feed"))
    return problems


def _missing_local_file(url: str, base_dir: Path) -> str | None:
    """Why a feed's local file cannot be read (no such file), else None (or not a local file)."""
    try:
        local = missing_feed_file(resolve_feed_location(url, base_dir))
    except (ValueError, OSError) as exc:  # a file name longer than the system allows
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return f"not a path this system can open: {why.lower()}"
    return f"no such file: {local}" if local is not None else None


def _smtp_file_problems(problem: _Report, data: Mapping[str, Any], base_dir: Path) -> list[ConfigProblem]:
    """``smtp.ca_file`` and ``smtp.dkim_key_file`` that sending could not load, loaded as
    sending loads them (``aggregator.mail``): else they passed here, and every issue failed.
    Like a feed's missing local file, for ``config check`` only: the other commands need
    neither file (a poll sends nothing), and sending says the same words if one goes away."""
    smtp = data.get("smtp")
    if not isinstance(smtp, Mapping):
        return []
    # Only here, only with such a key: the mail stack is no cost for the other checks.
    from aggregator import mail  # noqa: PLC0415

    problems = []
    ca_file, key_file = smtp.get("ca_file"), smtp.get("dkim_key_file")
    if isinstance(ca_file, str) and ca_file.strip():
        try:
            mail.smtp_ssl_context(str(config_file(ca_file, base_dir)))
        except mail.SmtpFileError as exc:
            problems.append(problem(("smtp", "ca_file"), f"{exc.path} {exc.problem}", exc.hint))
    if isinstance(key_file, str) and key_file.strip():
        path = str(config_file(key_file, base_dir))
        selector, domain = smtp.get("dkim_selector"), smtp.get("dkim_domain")
        try:
            mail.read_dkim_key(
                path,
                selector if isinstance(selector, str) else "default",
                domain if isinstance(domain, str) else "example.invalid",  # the key alone decides
            )
        except mail.DkimKeyError as exc:
            found = mail.dkim_key_problem(path, exc)
            problems.append(problem(("smtp", "dkim_key_file"), f"{found.path} {found.problem}", found.hint))
        except mail.SmtpFileError as exc:
            problems.append(problem(("smtp", "dkim_key_file"), f"{exc.path} {exc.problem}", exc.hint))
        except DeliveryError as exc:  # dkimpy missing: no key signs
            problems.append(problem(("smtp", "dkim_key_file"), str(exc)))
    return problems


def _topic_problems(problem: _Report, data: Mapping[str, Any]) -> list[ConfigProblem]:
    """Topics whose names differ only in case: each would be a label of its own on every
    story it matches, with a second topic feed beside the first.  (The same name twice is
    merged, and only warned of: ``config_warnings``.)"""
    problems = []
    seen: dict[str, tuple[int, str]] = {}
    for index, topic in enumerate(_list_at(data, "topics")):
        name = topic.get("name") if isinstance(topic, Mapping) else None
        if not isinstance(name, str):
            continue
        key = name.strip().casefold()
        if key not in seen:
            seen[key] = (index, name)
            continue
        first_index, first = seen[key]
        if first.strip() != name.strip():
            hint = (
                f"already listed as topics[{first_index}]: {first!r}; give it one entry with all its keywords"
            )
            problems.append(problem(("topics", index, "name"), f"duplicate topic {name!r}", hint))
    return problems


def _newsletter_problems(problem: _Report, data: Mapping[str, Any], base_dir: Path) -> list[ConfigProblem]:
    problems = []
    known_topics = _known_topics(data)
    listed = _listed_feeds(data)
    names: set[str] = set()
    for index, letter in enumerate(_list_at(data, "newsletters")):
        if not isinstance(letter, Mapping):
            continue
        letter_name = letter.get("name")
        if isinstance(letter_name, str):
            if letter_name in names:
                problems.append(
                    problem(("newsletters", index, "name"), f"duplicate newsletter {letter_name!r}")
                )
            names.add(letter_name)
        # Skipped where a broken topic or feed may be the one named (see _known_topics).
        if known_topics is not None:
            problems += _unknown_topics(problem, index, letter.get("topics"), known_topics)
        for f_index, wanted in _texts(letter.get("feeds")) if listed is not None else ():
            found = _unknown_feed_problem(wanted, listed or (), base_dir)
            if found is not None:
                problems.append(problem(("newsletters", index, "feeds", f_index), *found))
    return problems


def _unknown_topics(problem: _Report, index: int, wanted: Any, known: set[str]) -> list[ConfigProblem]:
    problems = []
    for t_index, topic in _texts(wanted):
        if topic not in known:
            close = difflib.get_close_matches(topic, sorted(known), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "define it under 'topics:'"
            problems.append(
                problem(("newsletters", index, "topics", t_index), f"no topic named {topic!r}", hint)
            )
    return problems


def _texts(value: Any) -> list[tuple[int, str]]:
    """The (index, text) items of a list (those that are text: the others are problems of their own)."""
    return [(i, v) for i, v in enumerate(value) if isinstance(v, str)] if isinstance(value, list) else []


def _known_topics(data: Mapping[str, Any]) -> set[str] | None:
    """Every topic name feeds.yaml defines (under ``topics:`` or on a feed), or None when a
    broken part may hide one: a newsletter's topic is then not called unknown on a guess."""
    known: set[str] = set()
    topics, feeds = data.get("topics"), data.get("feeds")
    if not isinstance(topics, list | None) or not isinstance(feeds, list | None):
        return None
    for topic in topics or ():
        if not (isinstance(topic, Mapping) and isinstance(topic.get("name"), str)):
            return None
        known.add(topic["name"])
    for feed in feeds or ():
        given = feed.get("topics") if isinstance(feed, Mapping) else None
        if given is not None and not (isinstance(given, list) and all(isinstance(t, str) for t in given)):
            return None
        known.update(given or ())
    return known


def _listed_feeds(data: Mapping[str, Any]) -> list[tuple[str, str | None]] | None:
    """``(url, title)`` of every feed as listed, or None when a broken item may hide one."""
    feeds = data.get("feeds")
    if not isinstance(feeds, list):
        return None
    listed = []
    for item in feeds:
        url = item.get("url") if isinstance(item, Mapping) else None
        if not isinstance(url, str):
            return None
        title = item.get("title")
        listed.append((url.strip(), title if isinstance(title, str) else None))
    return listed


def _unknown_feed_problem(
    wanted: str, feeds: Sequence[tuple[str, str | None]], base_dir: Path
) -> tuple[str, str] | None:
    """``(message, hint)`` when a newsletter's ``feeds`` entry is not a URL exactly as listed
    under ``feeds:`` (stories are matched by that string: anything else would silently leave
    every issue empty), else None."""
    listed = {url for url, _ in feeds}
    if wanted in listed:
        return None
    target = _location_or_none(wanted, base_dir)
    same = next(
        (
            url
            for url, title in feeds
            if wanted == title or (target is not None and target == _location_or_none(url, base_dir))
        ),
        None,
    )
    close = difflib.get_close_matches(wanted, sorted(listed), n=1)
    if same is not None:
        hint = f"write it as listed under 'feeds:': {same!r}"
    else:
        # A feed just removed from feeds: is the usual cause: say both ways out.
        hint = "list the feed under 'feeds:', or take it out of this newsletter's feeds"
        if close:
            hint = f"did you mean {close[0]!r}? Else {hint}"
    return f"no feed with URL {wanted!r}", hint


def _location_or_none(url: str, base_dir: Path) -> str | None:
    try:
        return resolve_feed_location(url, base_dir)
    except (ValueError, OSError):  # a NUL byte, a name too long for a path
        return None


def _feed_lines(data: Any) -> dict[str, int]:
    lines: dict[str, int] = {}
    feeds = data.get("feeds")
    if isinstance(feeds, CommentedSeq):
        for index, item in enumerate(feeds):
            if isinstance(item, Mapping) and isinstance(item.get("url"), str):
                lines[item["url"].strip()] = feeds.lc.item(index)[0] + 1
    return lines
