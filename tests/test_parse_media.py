"""Media RSS captions (``media:description``) are never an item's text, and "not a feed" errors
name the feed's URL once.

feedparser reads a ``media:description`` as another ``<description>``: after the item's own it
filed the first caption as the content (the article) and the last into ``summary_detail``, so
a HuffPost article was stored, published and digested as its 138-character photo caption.
"""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import feedparser
import pytest
from typer.testing import CliRunner

from aggregator.cli import app
from aggregator.errors import ParseError
from aggregator.parse import parse_feed
from aggregator.types import ParsedFeed
from tests.feedserver import FeedServer

CORPUS = Path(__file__).parent / "feeds" / "corpus"
HUFFPOST = CORPUS / "feedjira" / "spec" / "sample_feeds" / "HuffPostCanada.xml"

ARTICLE = "<p>This is the whole article body, every paragraph of it.</p>"
DESCRIPTION = "<description><![CDATA[" + ARTICLE + "]]></description>"
CONTENT = "<content:encoded><![CDATA[<p>The full text from content:encoded.</p>]]></content:encoded>"
CAPTION_1 = (
    '<media:content url="https://news.example/1.jpg" medium="image">'
    "<media:description>Photo caption only.</media:description></media:content>"
)
CAPTION_2 = (
    '<media:content url="https://news.example/2.jpg" medium="image">'
    "<media:description>Second caption.</media:description></media:content>"
)
CAPTION_BESIDE = "<media:description>A caption beside the item's media.</media:description>"
CAPTIONS = ("Photo caption only.", "Second caption.", "A caption beside the item's media.")


def rss(*items: str) -> bytes:
    body = "".join(
        f"<item><title>Story {n}</title><link>https://news.example/{n}</link>"
        f"<guid>https://news.example/{n}</guid>{inner}</item>"
        for n, inner in enumerate(items, 1)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"'
        ' xmlns:content="http://purl.org/rss/1.0/modules/content/">'
        "<channel><title>News</title><link>https://news.example/</link>"
        f"{body}</channel></rss>"
    ).encode()


def both_paths(body: bytes, url: str = "https://news.example/feed.xml") -> ParsedFeed:
    """The feed as parse_feed reads it; the fast path must agree with feedparser (or decline)."""
    fast = parse_feed(body, {"content-type": "application/rss+xml"}, url)
    assert parse_feed(body, {"content-type": "application/rss+xml"}, url, fast=False) == fast
    return fast


def cli(config: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["--config", str(config), *args], catch_exceptions=False)


def write_config(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "feeds.yaml"
    config.write_text(f"feeds:\n  - url: {url}\nnewsletters: []\n", encoding="utf-8")
    return config


# --- defect 1: captions are not the article ----------------------------------------------


def test_run_once_stores_and_publishes_the_article_not_its_captions(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.add_feed("/media.xml", rss(DESCRIPTION + CAPTION_1 + CAPTION_2, DESCRIPTION + CAPTION_1))
    config = write_config(tmp_path, feed_server.url("/media.xml"))

    result = cli(config, "run", "--once")

    assert result.exit_code == 0, result.output
    with sqlite3.connect(tmp_path / "data" / "aggregator.sqlite") as db:
        rows = db.execute(
            "SELECT guid, content_html, summary_html, text FROM entries ORDER BY guid"
        ).fetchall()
    assert len(rows) == 2
    for guid, content_html, summary_html, text in rows:
        assert (content_html, summary_html) == ("", ARTICLE), guid
        assert text == "This is the whole article body, every paragraph of it.", guid
    published = (tmp_path / "public" / "feed.json").read_text(encoding="utf-8")
    assert "This is the whole article body" in published
    assert not any(caption in published for caption in CAPTIONS)


@pytest.mark.parametrize(
    "inner",
    [
        DESCRIPTION + CAPTION_1,
        DESCRIPTION + CAPTION_1 + CAPTION_2,
        CAPTION_1 + DESCRIPTION,
        CAPTION_1 + CAPTION_2 + DESCRIPTION,
        DESCRIPTION + CAPTION_BESIDE,
        CAPTION_1 + DESCRIPTION + CAPTION_2,
    ],
    ids=["after", "two after", "before", "two before", "beside", "around"],
)
def test_captions_anywhere_leave_the_description_as_the_text(inner: str) -> None:
    (entry,) = both_paths(rss(inner)).entries
    assert (entry.content_html, entry.summary_html) == ("", ARTICLE)
    assert entry.text == "This is the whole article body, every paragraph of it."


def test_captions_in_a_malformed_feed_are_not_the_text_either() -> None:
    # A bare "&" and an undeclared media: prefix: feedparser's loose parser reads this one.
    body = rss(DESCRIPTION + CAPTION_1 + CAPTION_2).replace(b"<title>Story 1", b"<title>Story & 1")
    body = body.replace(b' xmlns:media="http://search.yahoo.com/mrss/"', b"")
    feed = both_paths(body)
    assert feed.warnings  # read despite the errors
    (entry,) = feed.entries
    assert (entry.content_html, entry.summary_html) == ("", ARTICLE)


@pytest.mark.parametrize(
    "inner",
    [
        CONTENT + DESCRIPTION + CAPTION_1,
        DESCRIPTION + CONTENT + CAPTION_1 + CAPTION_2,
        DESCRIPTION + CAPTION_1 + CONTENT,
        CAPTION_1 + CONTENT + DESCRIPTION,
    ],
    ids=["content first", "content between", "content last", "caption first"],
)
def test_captions_beside_content_encoded_are_neither_content_nor_summary(inner: str) -> None:
    (entry,) = both_paths(rss(inner)).entries
    assert entry.content_html == "<p>The full text from content:encoded.</p>"
    assert entry.summary_html == ARTICLE
    assert not any(caption in entry.text for caption in CAPTIONS)


@pytest.mark.parametrize("inner", [CAPTION_1, CAPTION_1 + CAPTION_2], ids=["one", "two"])
def test_an_item_whose_only_text_is_captions_keeps_the_first_as_its_summary(inner: str) -> None:
    # A video's description in media:group is often all a feed says about it (YouTube).
    (entry,) = both_paths(rss(inner)).entries
    assert (entry.content_html, entry.summary_html, entry.text) == (
        "",
        "Photo caption only.",
        "Photo caption only.",
    )


def test_a_nested_description_does_not_replace_the_summary() -> None:
    # feedparser updates summary_detail from every description-like element, however deep,
    # while summary keeps the one nearest the item: the detail is then another element's.
    nested = (
        '<media:content url="https://news.example/{n}.jpg">'
        '<dc:description xmlns:dc="http://purl.org/dc/elements/1.1/">Nested {n}.</dc:description>'
        "</media:content>"
    )
    body = rss(DESCRIPTION + nested.format(n=1) + nested.format(n=2))
    (entry,) = both_paths(body).entries
    assert entry.summary_html == ARTICLE


def test_huffpost_articles_are_kept_whole() -> None:
    body = HUFFPOST.read_bytes()
    url = "https://corpus.example/feedjira/spec/sample_feeds/HuffPostCanada.xml"
    feed = both_paths(body, url)
    raw = feedparser.parse(io.BytesIO(body)).entries
    assert len(feed.entries) == len(raw) == 2
    first = feed.entries[0]
    assert first.title == "Winnipeg High School Orders Custom Hijabs For Muslim Athletes"
    # The description is the article (3,595 characters as feedparser reads it: over
    # FULL_TEXT_MIN_CHARS of text, so it is the content), not the photo's caption.
    assert len(raw[0].summary) == 3595
    assert first.text.startswith("Winnipeg high school student Nusaybah Mohamed's basketball uniform")
    assert "Dakota Collegiate found a website where it could place orders for custom hijabs." in first.text
    assert not first.text.startswith("About 50 female students at Dakota Collegiate")
    for entry in feed.entries:
        assert len(entry.text) > 2000, entry.guid
        assert entry.content_html, entry.guid
        assert not entry.summary_html, entry.guid


# --- defect 2: the URL once ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "why"),
    [
        (b"<div><p>Hello</p></div>", "application/xml", "the document is <div>"),
        (b"<!doctype html><html><head></head><body>Hi</body></html>", "text/html", "is an HTML page"),
        (b"hello, not XML", "text/plain", "neither XML nor JSON"),
        (b"\x1f\x8b\x08\x00gzip", "application/xml", "still gzip-compressed"),
    ],
    ids=["other xml", "html page", "plain text", "gzip"],
)
def test_not_a_feed_leaves_the_url_to_the_caller(body: bytes, content_type: str, why: str) -> None:
    url = "https://reader:s3cret@news.example/x.html"
    with pytest.raises(ParseError) as caught:
        parse_feed(body, {"content-type": content_type}, url)
    assert str(caught.value).startswith("not a feed: ")
    assert why in str(caught.value)
    assert "news.example" not in str(caught.value)  # nor its password


def test_poll_names_the_url_of_what_is_not_a_feed_once(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.add_feed("/x.html", b"<div><p>An HTML fragment</p></div>", content_type="application/xml")
    url = feed_server.url("/x.html")
    config = write_config(tmp_path, url)

    result = cli(config, "poll")

    assert result.exit_code == 1, result.output
    line = f"feeds.yaml:2: {url}: not a feed: the document is <div>, not RSS, Atom, RDF or JSON Feed"
    assert line in result.stderr.splitlines()
    status = cli(config, "status", "--format", "json")
    (row,) = json.loads(status.stdout)
    assert row["error"] == "not a feed: the document is <div>, not RSS, Atom, RDF or JSON Feed"


def test_feeds_add_names_the_url_of_what_is_not_a_feed_once(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.add_feed("/x.html", b"<div><p>An HTML fragment</p></div>", content_type="application/xml")
    url = feed_server.url("/x.html")
    config = tmp_path / "feeds.yaml"
    config.write_text("feeds: []\nnewsletters: []\n", encoding="utf-8")

    result = cli(config, "feeds", "add", url)

    assert result.exit_code == 1, result.output
    assert f"cannot subscribe to {url}: not a feed: the document is <div>" in result.stderr
    assert result.stderr.count(url) == 1
