"""A date written as a bare number is Unix time, and JSON Feed errors name the feed's URL once.

feedparser misreads a bare number as an ISO 8601 ordinal date from its first digits: feedjira's
InvalidDateFormat.xml has ``<dc:date>1518478934</dc:date>`` (2018-02-12T23:42:14Z) and its
entry was stored as updated on 2015-07-03 (year 15, day 184), before its publication date.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aggregator.cli import app
from aggregator.errors import ParseError
from aggregator.parse import _read_fast, parse_feed
from aggregator.types import ParsedFeed
from tests.feedserver import FeedServer

CORPUS = Path(__file__).parent / "feeds" / "corpus"
INVALID_DATE_FORMAT = CORPUS / "feedjira" / "spec" / "sample_feeds" / "InvalidDateFormat.xml"
URL = "https://news.example/feed.xml"
UNIX_1518478934 = datetime(2018, 2, 12, 23, 42, 14, tzinfo=UTC)
JSON_TYPE = "application/feed+json"


def cli(config: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["--config", str(config), *args], catch_exceptions=False)


def write_config(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "feeds.yaml"
    config.write_text(f"feeds:\n  - url: {url}\nnewsletters: []\n", encoding="utf-8")
    return config


def rss(date_element: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        "<channel><title>News</title><link>https://news.example/</link>"
        "<item><title>Story</title><link>https://news.example/1</link>"
        f"<guid>https://news.example/1</guid>{date_element}</item>"
        "</channel></rss>"
    ).encode()


def atom(date_element: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        "<title>News</title><id>https://news.example/</id><updated>2020-01-01T00:00:00Z</updated>"
        '<entry><id>https://news.example/1</id><title>Story</title><link href="https://news.example/1"/>'
        f"{date_element}</entry></feed>"
    ).encode()


def json_feed(item: str) -> bytes:
    return (
        '{"version": "https://jsonfeed.org/version/1.1", "title": "News", "items": ['
        '{"id": "1", "url": "https://news.example/1", "content_text": "Story"' + item + "}]}"
    ).encode()


def both_paths(body: bytes) -> ParsedFeed:
    """The feed as parse_feed reads it; feedparser's path must read every field alike."""
    fast = parse_feed(body, {}, URL)
    slow = parse_feed(body, {}, URL, fast=False)
    assert fast.entries == slow.entries
    return fast


def _in(delta: timedelta) -> str:
    return str(int((datetime.now(UTC) + delta).timestamp()))


# What each bare number reads as: Unix time from 1995 to the end of 2099, else nothing.
BARE_NUMBERS = [
    ("1518478934", UNIX_1518478934),
    (" 1518478934\n", UNIX_1518478934),
    ("1518478934.75", UNIX_1518478934),  # a fraction of a second is dropped, as by every reader
    ("946684800", datetime(2000, 1, 1, tzinfo=UTC)),  # nine digits
    ("788918399", None),  # 1994-12-31T23:59:59Z: before any web feed
    ("99999999999", None),  # eleven digits: the year 5138
    ("1518478934123", None),  # milliseconds: not seen in a feed, and not misread as above
]
BARE_IDS = ["unix time", "spaces", "fraction", "nine digits", "before 1995", "eleven digits", "milliseconds"]


@pytest.mark.parametrize(("text", "expected"), BARE_NUMBERS, ids=BARE_IDS)
@pytest.mark.parametrize(
    ("body", "field"),
    [
        (lambda d: rss(f"<pubDate>{d}</pubDate>"), "published"),
        (
            lambda d: rss(f"<pubDate>Mon, 16 Oct 2017 15:10:00 +0000</pubDate><dc:date>{d}</dc:date>"),
            "updated",
        ),
        (lambda d: atom(f"<published>2017-10-16T15:10:00Z</published><updated>{d}</updated>"), "updated"),
        (lambda d: atom(f"<published>{d}</published>"), "published"),
    ],
    ids=["rss pubDate", "rss dc:date", "atom updated", "atom published"],
)
def test_a_bare_number_is_unix_time_on_both_paths(
    body: Any, field: str, text: str, expected: datetime | None
) -> None:
    (entry,) = both_paths(body(text)).entries
    assert getattr(entry, field) == expected


def test_the_fast_path_reads_unix_time_itself() -> None:
    # fastfeedparser reads no date from a bare number; the fast path reads it as feedparser's path does.
    body = rss("<pubDate>1518478934</pubDate>")
    assert _read_fast(body, "", URL) is not None
    assert both_paths(body).entries[0].published == UNIX_1518478934


def test_a_unix_time_is_read_the_same_whenever_it_is_parsed() -> None:
    # Fixed bounds, not the clock: the same bytes give the same date (and source key) on
    # every poll.  Ahead of now is kept, as a date written ahead in any other form is.
    later = _in(timedelta(days=3))
    (entry,) = both_paths(rss(f"<pubDate>{later}</pubDate>")).entries
    assert entry.published == datetime.fromtimestamp(int(later), UTC)
    (entry,) = both_paths(rss("<pubDate>4102444799</pubDate>")).entries  # 2099-12-31T23:59:59Z
    assert entry.published == datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC)
    (entry,) = both_paths(rss("<pubDate>4102444800</pubDate>")).entries  # 2100: an id, not a date
    assert entry.published is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20180212", datetime(2018, 2, 12, tzinfo=UTC)),  # ISO 8601 basic: still feedparser's reading
        ("Mon, 12 Feb 2018 23:42:14 +0000", UNIX_1518478934),
        ("2018-02-12T23:42:14Z", UNIX_1518478934),
    ],
)
def test_other_dates_read_as_before(text: str, expected: datetime) -> None:
    (entry,) = both_paths(rss(f"<pubDate>{text}</pubDate>")).entries
    assert entry.published == expected


def test_the_corpus_file_is_read_as_unix_time() -> None:
    feed = parse_feed(INVALID_DATE_FORMAT.read_bytes(), {}, URL)
    first = feed.entries[0]
    assert first.published == datetime(2017, 10, 16, 15, 10, tzinfo=UTC)
    assert first.updated == UNIX_1518478934  # was 2015-07-03, before its publication


@pytest.mark.parametrize(("text", "expected"), BARE_NUMBERS, ids=BARE_IDS)
def test_a_json_feed_string_of_digits_reads_as_in_rss(text: str, expected: datetime | None) -> None:
    body = json_feed(f', "date_published": {json.dumps(text)}, "date_modified": {json.dumps(text)}')
    (entry,) = parse_feed(body, {"content-type": JSON_TYPE}, URL).entries
    assert (entry.published, entry.updated) == (expected, expected)


def test_a_json_feed_number_is_no_date() -> None:
    # JSON Feed dates are strings (RFC 3339): a number is ignored, not guessed at.
    (entry,) = parse_feed(
        json_feed(', "date_published": 1518478934'), {"content-type": JSON_TYPE}, URL
    ).entries
    assert entry.published is None


def test_poll_stores_the_unix_time(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.add_feed("/dates.xml", INVALID_DATE_FORMAT.read_bytes())
    config = write_config(tmp_path, feed_server.url("/dates.xml"))

    result = cli(config, "poll")

    assert result.exit_code == 0, result.output
    with sqlite3.connect(tmp_path / "data" / "aggregator.sqlite") as db:
        rows = db.execute("SELECT title, published, updated FROM entries ORDER BY title").fetchall()
    stored = [
        (title, *(datetime.fromisoformat(d).replace(tzinfo=UTC) for d in dates)) for title, *dates in rows
    ]
    assert stored == [
        ("Item 0 with an invalid date", datetime(2017, 10, 16, 15, 10, tzinfo=UTC), UNIX_1518478934),
        (
            "Item 1 with all valid dates",
            datetime(2017, 10, 17, 12, 17, tzinfo=UTC),
            datetime(2017, 10, 17, 22, 17, tzinfo=UTC),
        ),
    ]


# --- JSON Feed errors leave the URL to the caller ------------------------------------------

BAD_JSON = [
    (b"[1, 2]", "not a JSON feed: the document is a JSON list, not an object"),
    (b'{"title": "x", "items": []}', 'not a JSON feed: no "version" (a JSON Feed names its version URL)'),
    (b'{"version": "https://example.org/v2", "items": []}', "not a JSON feed: unknown version"),
    (b'{"version": "https://jsonfeed.org/version/1.1"}', 'not a JSON feed: "items" is missing or not a list'),
    (b"{not json", "not a JSON feed: invalid JSON (line 1, column 2)"),
    (b'{"version": "\xff"}', "not a JSON feed: not UTF-8"),
]


@pytest.mark.parametrize(
    ("body", "message"),
    BAD_JSON,
    ids=["list", "no version", "other version", "no items", "invalid", "not utf-8"],
)
def test_json_feed_errors_leave_the_url_to_the_caller(body: bytes, message: str) -> None:
    url = "https://reader:s3cret@news.example/feed.json"
    with pytest.raises(ParseError) as caught:
        parse_feed(body, {"content-type": JSON_TYPE}, url)
    assert str(caught.value).startswith(message)
    assert "news.example" not in str(caught.value)  # nor its password


def test_poll_names_the_url_of_a_bad_json_feed_once(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.add_feed("/feed.json", b"[1, 2]", content_type=JSON_TYPE)
    url = feed_server.url("/feed.json")
    config = write_config(tmp_path, url)

    result = cli(config, "poll")

    assert result.exit_code == 1, result.output
    line = f"feeds.yaml:2: {url}: not a JSON feed: the document is a JSON list, not an object"
    assert line in result.stderr.splitlines()
    assert result.stderr.count(url) == 1
    status = cli(config, "status", "--format", "json")
    (row,) = json.loads(status.stdout)
    assert row["error"] == "not a JSON feed: the document is a JSON list, not an object"


def test_feeds_add_names_the_url_of_a_bad_json_feed_once(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.add_feed("/feed.json", b'{"title": "x", "items": []}', content_type=JSON_TYPE)
    url = feed_server.url("/feed.json")
    config = tmp_path / "feeds.yaml"
    config.write_text("feeds: []\nnewsletters: []\n", encoding="utf-8")

    result = cli(config, "feeds", "add", url)

    assert result.exit_code == 1, result.output
    assert f'cannot subscribe to {url}: not a JSON feed: no "version"' in result.stderr
    assert result.stderr.count(url) == 1
