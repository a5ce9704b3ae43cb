"""Reading JSON Feed 1.0 and 1.1 documents (https://www.jsonfeed.org/version/1.1/).

In: the response body as bytes.  Out: a ``JsonFeed``, a typed and validated view of the
document with every value as the feed gave it (no HTML sanitizing, no URL resolving:
``parse`` does that for every format alike).  Raises ``ParseError`` when the bytes are
not JSON, not an object, or carry no JSON Feed ``version``; its message does not name the
URL, which every caller shows before it (as for any other "not a feed").

feedparser has no JSON parser, hence this small path.  It is lenient where real feeds
are sloppy (a numeric ``id``, a 1.0 ``author`` in a 1.1 feed, an RFC 822 date, a bad date)
and strict only where guessing would be wrong (no ``version``: it may be any JSON at all).

- A numeric ``id`` is the number as the feed wrote it, not as a float holds it: a double
  has 53 bits, and ``9007199254740993.0`` and ``9007199254740992.0`` must stay two items.
- Dates are RFC 3339, as the spec says; what that does not read (RFC 822, which real
  feeds send) is read by feedparser's date handlers, as a date in an RSS or Atom feed is.
  A string that is a bare number is Unix time (``bare_number_date``), as in RSS and Atom;
  a JSON *number* is no date at all (the spec says string), so it is ignored, not guessed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

# feedparser's own date reading, so that a JSON Feed date reads as the same text in an RSS or
# Atom feed does (every format feeds the same store); a private name, like parse.py's imports
# from feedparser.urls: test_jsonfeed.py would catch a feedparser release that renamed it.
from feedparser.datetimes import _parse_date as _feedparser_parse_date

from aggregator.errors import ParseError

__all__ = ["JsonAttachment", "JsonFeed", "JsonItem", "bare_number_date", "is_bare_number", "read_json_feed"]

_VERSIONS = {
    "https://jsonfeed.org/version/1": "json10",
    "https://jsonfeed.org/version/1.1": "json11",
}


@dataclass(frozen=True, slots=True)
class JsonAttachment:
    url: str
    mime_type: str | None
    size_in_bytes: int | None


@dataclass(frozen=True, slots=True)
class JsonItem:
    id: str | None
    url: str | None
    external_url: str | None
    title: str | None
    content_html: str | None
    content_text: str | None
    summary: str | None
    date_published: datetime | None
    date_modified: datetime | None
    authors: tuple[str, ...]
    tags: tuple[str, ...]
    attachments: tuple[JsonAttachment, ...]


@dataclass(frozen=True, slots=True)
class JsonFeed:
    format: str  # "json10" or "json11"
    title: str
    home_page_url: str | None
    items: tuple[JsonItem, ...]
    warnings: tuple[str, ...] = ()


def read_json_feed(body: bytes) -> JsonFeed:
    """Decode and validate a JSON Feed."""
    try:
        text = body.decode("utf-8-sig")  # RFC 8259: JSON on the wire is UTF-8
    except UnicodeDecodeError as exc:
        raise ParseError(f"not a JSON feed: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    try:
        doc = json.loads(text, parse_constant=_no_value, parse_float=_Fraction, parse_int=_bounded_int)
    except json.JSONDecodeError as exc:
        raise ParseError(
            f"not a JSON feed: invalid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}"
        ) from exc
    except (ValueError, RecursionError) as exc:  # too deeply nested, or an absurdly long number
        raise ParseError(f"not a JSON feed: invalid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ParseError(f"not a JSON feed: the document is a JSON {type(doc).__name__}, not an object")
    version = doc.get("version")
    if not isinstance(version, str) or not version:
        raise ParseError('not a JSON feed: no "version" (a JSON Feed names its version URL)')
    warnings: list[str] = []
    fmt = _VERSIONS.get(version.rstrip("/").replace("http://", "https://"))
    if fmt is None:
        if "jsonfeed.org/version/" not in version:
            raise ParseError(f"not a JSON feed: unknown version {version!r}")
        fmt = "json"
        warnings.append(f"unknown JSON Feed version {version!r}; read as 1.1")
    raw_items = doc.get("items")
    if not isinstance(raw_items, list):
        raise ParseError('not a JSON feed: "items" is missing or not a list')
    items = []
    for index, raw in enumerate(raw_items):
        if not isinstance(raw, dict):
            warnings.append(f"items[{index}] is not an object; skipped")
            continue
        items.append(_read_item(raw))
    return JsonFeed(
        format=fmt,
        title=_str(doc.get("title")) or "",
        home_page_url=_str(doc.get("home_page_url")),
        items=tuple(items),
        warnings=tuple(warnings),
    )


# JSON has no NaN or Infinity, though Python reads them: ids such as "nan" would make distinct
# items one.  Nor may one long number, in an extension field the feed never needed, fail the
# whole feed (Python refuses to read over 4,300 digits).
def _no_value(name: str) -> None:
    return None


def _bounded_int(text: str) -> int | None:
    return int(text) if len(text) <= 4000 else None


@dataclass(frozen=True, slots=True)
class _Fraction:
    """A JSON number with a fraction or an exponent, as the feed wrote it (``json.loads``'s
    ``parse_float``).  As a float, ids past 2**53 (or with more digits than a double holds)
    would become one; and no field this module reads takes a fraction, so nothing is lost."""

    text: str

    def as_id(self) -> str:
        """The text ``str(float)`` always gave when the float is the very number written
        (``1.5``, ``1e3`` as ``1000.0``: stored guids stay as they were), else the feed's own."""
        number = float(self.text)
        written = str(number)
        try:
            return written if Decimal(written) == Decimal(self.text) else self.text
        except ArithmeticError:  # an exponent past what Decimal holds (1e followed by 100 nines)
            return self.text


def _read_item(raw: dict[str, Any]) -> JsonItem:
    raw_id = raw.get("id")
    # The spec says string, but 1.0 feeds in the wild often use numbers.
    if isinstance(raw_id, _Fraction):
        item_id: str | None = raw_id.as_id()
    elif isinstance(raw_id, int) and not isinstance(raw_id, bool):
        item_id = str(raw_id)
    else:
        item_id = _str(raw_id)
    return JsonItem(
        id=item_id,
        url=_str(raw.get("url")),
        external_url=_str(raw.get("external_url")),
        title=_str(raw.get("title")),
        content_html=_str(raw.get("content_html")),
        content_text=_str(raw.get("content_text")),
        summary=_str(raw.get("summary")),
        date_published=_date(raw.get("date_published")),
        date_modified=_date(raw.get("date_modified")),
        authors=_authors(raw),
        tags=tuple(t for t in (_str(t) for t in _list(raw.get("tags"))) if t),
        attachments=tuple(a for a in (_attachment(a) for a in _list(raw.get("attachments"))) if a),
    )


def _authors(raw: dict[str, Any]) -> tuple[str, ...]:
    # 1.1 has "authors" (a list); 1.0 had "author" (one object).  Accept both in either version.
    found = [*_list(raw.get("authors"))]
    if isinstance(raw.get("author"), dict):
        found.append(raw["author"])
    names = []
    for author in found:
        if isinstance(author, dict):
            name = _str(author.get("name")) or _str(author.get("url"))
            if name:
                names.append(name)
    return tuple(names)


def _attachment(raw: object) -> JsonAttachment | None:
    if not isinstance(raw, dict):
        return None
    url = _str(raw.get("url"))
    if not url:
        return None
    size = raw.get("size_in_bytes")
    return JsonAttachment(
        url=url,
        mime_type=_str(raw.get("mime_type")),
        size_in_bytes=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
    )


# Longer than any date: not read at all (feedparser's handlers are regular expressions).
_MAX_DATE_CHARS = 100


def _date(value: object) -> datetime | None:
    """RFC 3339 to aware UTC; a date without an offset is taken as UTC; a bare number as
    Unix time (``bare_number_date``); any other form (RFC 822: ``Sun, 06 Dec 2026 10:00:00
    GMT``) as feedparser reads it; garbage is None."""
    text = _str(value)
    if not text or len(text) > _MAX_DATE_CHARS:
        return None
    if is_bare_number(text):
        return bare_number_date(text)
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return _feedparser_date(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC).replace(microsecond=0)
    except OverflowError:  # year 1 with a positive offset, year 9999 with a negative one
        return None


# A date written as a bare number is Unix time: seconds since 1970-01-01 UTC, as PHP's
# time() and a database's integer columns give it.  Real RSS feeds send it (a FeedBurner
# podcast feed, feedjira/feedjira#368; feedjira's own InvalidDateFormat.xml has a
# <dc:date>1518478934</dc:date>), and feedparser misreads every such number as an ISO 8601
# ordinal date from its first digits ("1518478934": year 15, day 184, 2015-07-03).  9 to 13
# ASCII digits, optionally with a fraction of a second (dropped, as every stored date is to
# the second): 9 and 10 digits are 1973 to 2286, and 13 would be milliseconds (JavaScript's
# Date.now()), which no feed was found to send, so they are ignored rather than read as
# seconds (year 50,000) or misread as above.  Eight digits are left to feedparser: YYYYMMDD.
_BARE_NUMBER_RE = re.compile(r"[0-9]{9,13}(?:\.[0-9]{1,9})?")
# Beyond these bounds a number is not the time of an article (an id, a mistake): ignored.
# 1995 is before any web feed; 2100 is far enough ahead for any article and near enough to
# leave out ids.  Fixed bounds, not "now": parsing reads no clock (a date the same bytes give
# must not depend on when they are parsed: it goes into the entry's source key), and a date
# ahead of now is treated as any other date written ahead is.
_EARLIEST_UNIX_TIME = datetime(1995, 1, 1, tzinfo=UTC)
_LATEST_UNIX_TIME = datetime(2100, 1, 1, tzinfo=UTC)


def is_bare_number(text: str) -> bool:
    """Whether a date's text (stripped) is a bare number that ``bare_number_date`` reads."""
    return _BARE_NUMBER_RE.fullmatch(text) is not None


def bare_number_date(text: str) -> datetime | None:
    """A bare number (``is_bare_number``) as Unix time, in UTC, to the second; None when it
    falls before 1995 or in 2100 or later."""
    seconds = int(text.partition(".")[0])
    if not _EARLIEST_UNIX_TIME.timestamp() <= seconds < _LATEST_UNIX_TIME.timestamp():
        return None
    return datetime.fromtimestamp(seconds, UTC)


def _feedparser_date(text: str) -> datetime | None:
    """feedparser's reading of a date (a UTC ``struct_time``) as an aware datetime, as
    ``parse._struct_to_datetime`` turns those of RSS and Atom feeds into one."""
    try:
        found = _feedparser_parse_date(text)
        if not found:
            return None
        year, month, day, hour, minute, second = found[:6]
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except Exception:  # its handlers catch what they expect; a hostile feed may find more
        return None


# JSON may escape half of a surrogate pair alone (\ud800 in the text): a string Python holds but no
# UTF-8 can encode, so storing it fails.  Such a half reads as U+FFFD, as a decoder shows it.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _str(value: object) -> str | None:
    if isinstance(value, str):
        value = _LONE_SURROGATE.sub("\ufffd", value.strip())
        return value or None
    return None


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []
