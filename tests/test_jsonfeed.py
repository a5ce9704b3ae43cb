"""read_json_feed: what real JSON feeds write that the spec does not say (numeric ids, RFC 822 dates)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from aggregator.jsonfeed import read_json_feed
from aggregator.parse import parse_feed

URL = "https://j.example/feed.json"


def _feed(*items: str) -> bytes:
    return (
        '{"version": "https://jsonfeed.org/version/1.1", "title": "J", "items": [' + ",".join(items) + "]}"
    ).encode()


def test_numeric_ids_past_the_precision_of_a_float_stay_distinct() -> None:
    # Each pair is one float: 2**53 + 1 is 2**53 as a double, and so on.
    ids = [
        "9007199254740993.0",
        "9007199254740992.0",
        "1.8446744073709552e19",
        "18446744073709551617e0",
        "0.1000000000000000000001",
        "0.1",
    ]
    body = _feed(
        *(f'{{"id": {number}, "title": "t{i}", "content_text": "{i}"}}' for i, number in enumerate(ids))
    )
    feed = parse_feed(body, {"content-type": "application/feed+json"}, URL)
    assert len(feed.entries) == len(ids)
    assert len({entry.guid for entry in feed.entries}) == len(ids)
    # An id a float holds exactly keeps the text it always had, so stored entries keep their guid.
    assert [item.id for item in read_json_feed(body).items] == [
        "9007199254740993.0",
        "9007199254740992.0",
        "1.8446744073709552e+19",
        "18446744073709551617e0",
        "0.1000000000000000000001",
        "0.1",
    ]


def test_numeric_ids_read_as_before() -> None:
    # Integers at any size are exact; a float a double holds is written as Python writes it.
    body = _feed(*(f'{{"id": {number}}}' for number in ("12345678901234567890", "7", "1e3", "2.50", "-0.0")))
    assert [item.id for item in read_json_feed(body).items] == [
        "12345678901234567890",
        "7",
        "1000.0",
        "2.5",
        "-0.0",
    ]


def test_a_number_out_of_a_double_range_is_still_an_id_of_its_own() -> None:
    body = _feed('{"id": 1e999, "title": "a"}', '{"id": 2e999, "title": "b"}', '{"id": NaN, "title": "c"}')
    assert [item.id for item in read_json_feed(body).items] == ["1e999", "2e999", None]


def test_floats_elsewhere_are_no_strings() -> None:
    # A number is never a title, a URL or a size, wherever the hook that keeps its text put it.
    body = _feed(
        '{"id": "a", "title": 1.5, "url": 2.5, "attachments": [{"url": "https://j.example/a.mp3", '
        '"size_in_bytes": 10.0, "duration_in_seconds": 1.5}], "_ext": {"score": 0.25}}'
    )
    (item,) = read_json_feed(body).items
    assert (item.title, item.url, item.attachments[0].size_in_bytes) == (None, None, None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-06T10:00:00Z", datetime(2026, 12, 6, 10, 0, tzinfo=UTC)),
        ("2026-12-06T11:00:00+01:00", datetime(2026, 12, 6, 10, 0, tzinfo=UTC)),
        # RFC 822, which the spec does not allow and real feeds send anyway
        ("Sun, 06 Dec 2026 10:00:00 GMT", datetime(2026, 12, 6, 10, 0, tzinfo=UTC)),
        ("Sun, 06 Dec 2026 10:00:00 +0100", datetime(2026, 12, 6, 9, 0, tzinfo=UTC)),
        ("06 Dec 2026 05:00:00 EST", datetime(2026, 12, 6, 10, 0, tzinfo=UTC)),
        ("Mon, 06 Dec 2026 10:00:00 GMT", datetime(2026, 12, 6, 10, 0, tzinfo=UTC)),  # wrong weekday
        ("Sun, 06 Dec 2026 10:00 GMT", datetime(2026, 12, 6, 10, 0, tzinfo=UTC)),
        ("garbage", None),
        ("Sun, 31 Dec 2016 23:59:60 GMT", None),
        ("Sun, 06 Dec 2026 10:00:00 GMT " + "x" * 10_000, None),
    ],
)
def test_dates_in_rfc_3339_and_rfc_822(text: str, expected: datetime | None) -> None:
    body = _feed(json.dumps({"id": "a", "date_published": text, "date_modified": text}))
    (item,) = read_json_feed(body).items
    assert (item.date_published, item.date_modified) == (expected, expected)


def test_an_rfc_822_date_is_the_one_feedparser_would_read() -> None:
    # The same date in an RSS <pubDate> and in a JSON Feed item: one instant.
    date = "Sun, 06 Dec 2026 10:00:00 GMT"
    rss = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><title>i</title>'
        f'<guid isPermaLink="false">a</guid><pubDate>{date}</pubDate></item></channel></rss>'
    ).encode()
    json_body = _feed(json.dumps({"id": "a", "title": "i", "date_published": date}))
    (from_rss,) = parse_feed(rss, {}, URL, fast=False).entries
    (from_json,) = parse_feed(json_body, {"content-type": "application/feed+json"}, URL).entries
    assert from_json.published == from_rss.published == datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
