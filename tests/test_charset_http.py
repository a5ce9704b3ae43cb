"""A server's wrong charset does not turn a feed into mojibake, and the warning blames the header.

RFC 3023 lets the HTTP charset override the XML declaration, and feedparser obeys: a KOI8-R or
Windows-1251 feed served as ``charset=iso-8859-1`` (Apache's ``AddDefaultCharset``) read as
``ðÅÒ×ÁÑ ÎÏ×ÏÓÔØ``, silently.  Real files from the corpus (tests/feeds/corpus), real bytes
and headers through ``parse_feed``, and one poll through a loopback server.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aggregator.cli import app
from aggregator.parse import parse_feed
from tests.feedserver import FeedServer

MINIFLUX = Path(__file__).parent / "feeds" / "corpus" / "miniflux" / "internal" / "reader"
KOI8R = MINIFLUX / "encoding" / "testdata" / "koi8r.xml"  # declares KOI8-R
CP1251 = MINIFLUX / "parser" / "testdata" / "encoding_WINDOWS-1251.xml"  # declares windows-1251
UTF8 = MINIFLUX / "parser" / "testdata" / "rdf_UTF8.xml"  # declares utf-8
UTF8_AS_CP1252 = MINIFLUX / "encoding" / "testdata" / "windows-1252-incorrect-prolog.xml"
UTF8_AS_LATIN_1 = MINIFLUX / "encoding" / "testdata" / "utf8-incorrect-prolog.xml"
URL = "https://ru.example/rss"


def parse(path: Path, content_type: str) -> Any:
    headers = {"content-type": content_type} if content_type else {}
    return parse_feed(path.read_bytes(), headers, URL)


@pytest.mark.parametrize(
    "content_type", ["text/xml; charset=iso-8859-1", "application/rss+xml; charset=ISO-8859-1"]
)
def test_a_koi8_r_feed_served_as_latin_1_reads_as_its_declaration_says(content_type: str) -> None:
    feed = parse(KOI8R, content_type)
    assert feed.title == "Пример RSS ленты"
    assert feed.entries[0].title == "Первая новость"
    assert "Ёжик, чай, Москва" in feed.entries[0].text
    assert feed.warnings == (  # the charset as the header spells it, for the operator to find
        f"the server's Content-Type says {content_type.split('; ')[1]} but the feed declares KOI8-R; "
        "read as KOI8-R: the site should fix its header",
    )


def test_a_windows_1251_feed_served_as_latin_1_reads_as_its_declaration_says() -> None:
    feed = parse(CP1251, "text/xml; charset=iso-8859-1")
    assert feed.entries[0].title == "Цитата #17703"
    assert feed.warnings == (
        "the server's Content-Type says charset=iso-8859-1 but the feed declares windows-1251; "
        "read as windows-1251: the site should fix its header",
    )


def test_a_koi8_r_feed_served_as_utf_8_blames_the_header_not_the_document() -> None:
    feed = parse(KOI8R, "application/xml; charset=utf-8")
    assert feed.entries[0].title == "Первая новость"
    assert feed.warnings == (
        "the server's Content-Type says charset=utf-8 but the feed declares KOI8-R; "
        "read as KOI8-R: the site should fix its header",
    )
    assert not any("document declared as" in w for w in feed.warnings)


def test_a_utf_8_feed_served_as_latin_1_reads_as_utf_8() -> None:
    feed = parse(UTF8, "text/xml; charset=iso-8859-1")
    assert feed.entries[0].title == "OLED-TVs: Vorsichtsmaßnahmen gegen Einbrennen"
    assert feed.warnings == (
        "the server's Content-Type says charset=iso-8859-1 but the feed declares utf-8; "
        "read as utf-8: the site should fix its header",
    )


def test_a_header_that_agrees_or_is_absent_changes_nothing_and_says_nothing() -> None:
    for content_type in ("", "text/xml", "text/xml; charset=koi8-r", "application/xml; charset=KOI8-R"):
        feed = parse(KOI8R, content_type)
        assert feed.entries[0].title == "Первая новость", content_type
        assert feed.warnings == (), content_type


def test_a_header_is_still_believed_when_the_bytes_are_not_what_the_document_declares() -> None:
    # Windows-1251 bytes in a document that declares UTF-8 (or nothing, which is UTF-8): the
    # declaration cannot be right, the header can (today's behaviour, kept).
    body = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Лента</title>'
        "<item><title>Привет, мир!</title><link>https://ru.example/1</link></item></channel></rss>"
    ).encode("cp1251")
    for prolog in (body, body.replace(b' encoding="utf-8"', b"")):
        feed = parse_feed(prolog, {"content-type": "text/xml; charset=windows-1251"}, URL)
        assert feed.entries[0].title == "Привет, мир!"
        assert not any("Content-Type" in w for w in feed.warnings), feed.warnings


@pytest.mark.parametrize(
    "content_type", ["", "text/xml", "text/xml; charset=utf-8", "text/xml; charset=iso-8859-1"]
)
def test_utf_8_bytes_under_a_single_byte_prolog_read_as_utf_8(content_type: str) -> None:
    # "â‚¬" is the euro sign's three UTF-8 bytes read as Windows-1252; such a sequence is
    # never real Windows-1252 text, while valid UTF-8 is almost never anything else.
    assert parse(UTF8_AS_CP1252, content_type).title == "Euro €"
    latin = parse(UTF8_AS_LATIN_1, content_type)
    assert (latin.title, latin.entries[0].title) == ("테스트 피드", "Café")
    assert any("its text is UTF-8" in w for w in latin.warnings), latin.warnings


# --- end to end: a poll through a real server ----------------------------------------------


def invoke(config: Path, *args: str) -> Any:
    result = CliRunner().invoke(app, ["--config", str(config), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_a_poll_of_a_koi8_r_feed_served_as_latin_1_stores_cyrillic_and_warns(
    tmp_path: Path, feed_server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    feed_server.add_feed("/koi8r.xml", KOI8R.read_bytes(), content_type="text/xml; charset=iso-8859-1")
    url = feed_server.url("/koi8r.xml")
    config = tmp_path / "feeds.yaml"
    config.write_text(f"feeds:\n  - url: {url}\nnewsletters: []\n", encoding="utf-8")

    with caplog.at_level(logging.WARNING):
        invoke(config, "poll")
    # The poll logs the warning with the feed's address (``aggregator status`` shows no warnings).
    assert (
        f"{url}: the server's Content-Type says charset=iso-8859-1 but the feed declares KOI8-R"
        in caplog.text
    )

    [row] = json.loads(invoke(config, "status", "--format", "json").stdout)
    assert (row["title"], row["status"], row["entries"]) == ("Пример RSS ленты", "ok", 2)
    titles = {json.loads(line)["title"] for line in invoke(config, "export").stdout.splitlines()}
    assert "Первая новость" in titles


def test_bytes_in_no_encoding_anyone_named_blame_the_header_that_named_one() -> None:
    # Windows-1251 bytes that declare nothing, served as UTF-8: neither is right; feedparser's
    # "document declared as utf-8" sent the operator to a document that declares nothing.
    body = (
        '<rss version="2.0"><channel><title>Лента</title>'
        "<item><title>Привет</title><link>https://ru.example/1</link></item></channel></rss>"
    ).encode("cp1251")
    feed = parse_feed(body, {"content-type": "application/xml; charset=utf-8"}, URL)
    assert feed.warnings == (
        "the server's Content-Type says charset=utf-8, but its text is not in that encoding; "
        "read as windows-1252",
    )


def test_a_header_naming_a_single_byte_encoding_of_its_own_beats_a_single_byte_declaration() -> None:
    # Windows-1251 bytes that declare iso-8859-1, served as windows-1251: the bytes cannot
    # tell the two apart, and a header that is no site-wide default was set for this feed.
    body = (
        '<?xml version="1.0" encoding="iso-8859-1"?><rss version="2.0"><channel><title>Новости</title>'
        "<link>https://news.example/</link><description>d</description><item><title>Первая</title>"
        "<link>https://news.example/1</link></item></channel></rss>"
    ).encode("cp1251")
    feed = parse_feed(body, {"content-type": "text/xml; charset=windows-1251"}, "https://news.example/rss")
    assert feed.title == "Новости"
    assert [e.title for e in feed.entries] == ["Первая"]
