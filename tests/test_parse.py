"""parse_feed: crafted fixtures against their expected normalized results, plus the hostile cases.

Each fixture in tests/feeds/ has ``<name>.expected.json`` beside it: the ParsedFeed as JSON, or
the ParseError it must raise.  After a deliberate change of behaviour, rewrite them with
``AGGREGATOR_UPDATE_EXPECTED=1 pytest tests/test_parse.py`` and review the diff.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator.errors import ParseError
from aggregator.parse import FULL_TEXT_MIN_CHARS, _read_fast, parse_feed, sanitize_html
from aggregator.types import ParsedFeed

FEEDS = Path(__file__).parent / "feeds"
UPDATE = os.environ.get("AGGREGATOR_UPDATE_EXPECTED") == "1"

# fixture file -> (response headers, final URL)
FIXTURES: dict[str, tuple[dict[str, str], str]] = {
    "rss20.xml": ({"content-type": "application/rss+xml; charset=utf-8"}, "https://news.example/feed.xml"),
    "atom10.xml": ({"content-type": "application/atom+xml"}, "https://blog.example/atom.xml"),
    "rdf_dcdate.rdf": ({"content-type": "application/rdf+xml"}, "https://rdf.example/index.rdf"),
    "jsonfeed11.json": ({"content-type": "application/feed+json"}, "https://json.example/feed.json"),
    "jsonfeed10.json": ({"content-type": "application/json"}, "https://old.example/feed.json"),
    "xss.xml": ({"content-type": "application/rss+xml"}, "https://xss.example/feed"),
    "latin1.xml": ({"content-type": "application/xml"}, "https://latin1.example/rss"),
    "windows1251.xml": ({"content-type": "text/xml"}, "https://cp1251.example/rss"),
    "windows1251_http_charset.xml": (
        {"content-type": "text/xml; charset=windows-1251"},
        "https://cp1251.example/rss2",
    ),
    "html_page.html": ({"content-type": "text/html; charset=utf-8"}, "https://x.example/"),
    "malformed.xml": ({"content-type": "application/rss+xml"}, "https://sloppy.example/rss"),
    "billion_laughs.xml": ({"content-type": "application/rss+xml"}, "https://lol.example/rss"),
    "external_entity.xml": ({"content-type": "application/rss+xml"}, "https://xxe.example/rss"),
    "atom_xml_base.xml": ({"content-type": "application/atom+xml"}, "https://feeds.example/bases.atom"),
    "rss_xml_base.xml": ({"content-type": "application/rss+xml"}, "https://feeds.example/bases.rss"),
}


def describe(result: ParsedFeed) -> dict[str, Any]:
    """A ParsedFeed as plain JSON: datetimes in ISO 8601, timedeltas in seconds."""

    def convert(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, timedelta):
            return value.total_seconds()
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [convert(v) for v in value]
        return value

    described: dict[str, Any] = convert(asdict(result))
    # Digests of the raw entries, not output a reader sees: test_source_keys.py covers them.
    del described["source_keys"], described["unchanged"]
    return described


def run_fixture(name: str) -> dict[str, Any]:
    headers, url = FIXTURES[name]
    try:
        result = parse_feed((FEEDS / name).read_bytes(), headers, url)
    except ParseError as exc:
        return {"error": str(exc), "advertised": list(exc.advertised)}
    return {"result": describe(result)}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixture_matches_expected(name: str) -> None:
    expected_path = FEEDS / (name.rsplit(".", 1)[0] + ".expected.json")
    actual = run_fixture(name)
    if UPDATE:
        expected_path.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    assert actual == json.loads(expected_path.read_text(encoding="utf-8"))


def parse_fixture(name: str, *, fast: bool = True) -> ParsedFeed:
    headers, url = FIXTURES[name]
    return parse_feed((FEEDS / name).read_bytes(), headers, url, fast=fast)


# --- behaviour a reader would notice, stated outright (the JSON above pins the rest) ------


def test_rss_entries_are_normalized() -> None:
    feed = parse_fixture("rss20.xml")
    assert (feed.format, feed.title, feed.link, feed.ttl) == (
        "rss20",
        "Harbour & Hill News",
        "https://news.example/",
        timedelta(minutes=45),
    )
    first, second, third = feed.entries
    assert first.guid == "news-example-1001"
    assert first.url == "https://news.example/2025/08/ferry-timetable?utm_source=rss&utm_medium=feed&id=42"
    assert first.canonical_url == "https://news.example/2025/08/ferry-timetable?id=42"
    assert first.published == datetime(2025, 8, 18, 7, 30, tzinfo=UTC)
    assert first.updated is None
    assert first.authors == ("Ana Pereira",)
    assert first.categories == ("Transport", "Harbour")
    assert first.has_full_text
    assert 'href="https://news.example/timetable.pdf"' in first.content_html
    assert 'src="https://news.example/img/ferry.jpg"' in first.content_html
    assert first.summary_html == "The 7:10 ferry moves to 7:25."
    assert first.text == "The 7:10 ferry moves to 7:25.\nSee the new timetable and the photo."
    assert first.enclosures[0].url == "https://news.example/audio/ferry.mp3"
    assert first.enclosures[0].length == 123456
    # a description alone is a summary, not the article
    assert not second.has_full_text
    assert second.summary_html == "<p>The market moves to <em>Saturday</em>.</p>"
    assert second.text == "The market moves to Saturday."
    assert second.guid == "https://news.example/2025/08/market#comments"  # no guid: the link
    assert second.canonical_url == "https://news.example/2025/08/market"
    # neither guid nor link: a hash of title and text, stable across runs
    assert third.guid.startswith("sha256:")
    assert len(third.guid) == 7 + 64
    assert third.url is None


def test_atom_xml_base_updated_only_and_xhtml() -> None:
    feed = parse_fixture("atom10.xml")
    assert feed.title == "Notes & Sketches"
    ink, updated_only = feed.entries
    assert ink.url == "https://blog.example/posts/ink.html"
    assert 'href="https://blog.example/about"' in ink.content_html
    assert 'src="https://blog.example/posts/pics/pen.png"' in ink.content_html
    assert ink.published == datetime(2025, 8, 17, 8, 0, tzinfo=UTC)
    assert ink.updated == datetime(2025, 8, 18, 7, 59, 30, tzinfo=UTC)
    assert ink.authors == ("Mia Lund", "Guest Writer")
    assert ink.summary_html == "<p>Ink &lt;b&gt;is&lt;/b&gt; forgiving.</p>"  # type="text" stays text
    assert updated_only.published is None
    assert updated_only.updated == updated_only.date == datetime(2025, 8, 16, 12, 0, tzinfo=UTC)


def test_rdf_with_only_dc_date_sorts_by_it() -> None:
    feed = parse_fixture("rdf_dcdate.rdf")
    assert feed.format == "rss10"
    (entry,) = feed.entries
    assert entry.published is None
    assert entry.date == datetime(2025, 8, 15, 5, 45, tzinfo=UTC)
    assert entry.authors == ("R. Dee",)


def test_json_feed_11_and_10() -> None:
    feed = parse_fixture("jsonfeed11.json")
    assert (feed.format, feed.title, feed.link) == ("json11", "JSON Harbour", "https://json.example/")
    first, second = feed.entries
    assert first.title == "Hello JSON & friends"
    assert first.canonical_url == "https://json.example/posts/1?p=1"
    assert "<script" not in first.content_html
    assert 'href="https://json.example/x"' in first.content_html
    assert first.published == datetime(2025, 8, 18, 8, 0, tzinfo=UTC)
    assert first.updated == datetime(2025, 8, 18, 11, 0, tzinfo=UTC)
    assert first.authors == ("Jo", "https://json.example/kim")
    assert first.enclosures[0].url == "https://json.example/files/a.mp3"
    assert second.guid == "2"
    assert second.url == "https://elsewhere.example/story"
    assert second.published is None
    assert second.content_html == "<p>First paragraph.</p><p>Second &lt;paragraph&gt;.</p>"
    assert second.text == "First paragraph.\nSecond <paragraph>."
    old = parse_fixture("jsonfeed10.json")
    assert old.format == "json10"
    assert old.entries[0].authors == ("Item Author",)


def test_json_feed_halves_of_surrogate_pairs_read_as_replacement_characters() -> None:
    # JSON can escape half a surrogate pair alone; UTF-8 cannot hold it, so a store of it
    # failed.  Every string field of a JSON Feed goes through the same reading.
    body = r"""{"version": "https://jsonfeed.org/version/1.1", "title": "Title \ud800",
      "items": [{"id": "id-\ud800", "url": "https://j.example/a\ud800", "title": "Half \ud800 pair",
                 "tags": ["tag\ud800"], "authors": [{"name": "Ann \ud800"}], "content_text": "Body."}]}"""
    feed = parse_feed(body.encode(), {"content-type": "application/feed+json"}, "https://j.example/feed.json")
    (entry,) = feed.entries
    assert feed.title == "Title \ufffd"
    assert (entry.guid, entry.title, entry.authors, entry.categories) == (
        "id-\ufffd",
        "Half \ufffd pair",
        ("Ann \ufffd",),
        ("tag\ufffd",),
    )
    assert entry.url is not None
    entry.url.encode()  # storable, as the fields above are


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", r"invalid JSON \(line 1, column 2\): Expecting property name"),
        (b'{"title": "x", "items": []}', 'no "version"'),
        (
            b"[1, 2]",
            "^not a JSON feed: the document is a JSON list, not an object$",  # the caller names the URL
        ),
        (b'{"version": "https://jsonfeed.org/version/1.1"}', '"items" is missing'),
        (b"{" * 100_000, "invalid JSON"),
    ],
)
def test_bad_json_feed_is_a_parse_error(body: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_feed(body, {"content-type": "application/feed+json"}, "https://j.example/feed.json")


@pytest.mark.parametrize(
    ("body", "begins"),
    [
        (b"hello world\n", "'hello world'"),
        (
            b"\xef\xbb\xbf  Not Found\x1b[31m\r\n\r\nThe requested URL was not found",
            "'Not Found[31m The requested URL was not'",
        ),
    ],
)
def test_a_body_that_is_no_markup_at_all_says_how_it_begins(body: bytes, begins: str) -> None:
    # expat's "line 2" of a one-line text file pointed nowhere.
    url = "https://plain.example/feed"
    with pytest.raises(ParseError) as caught:
        parse_feed(body, {"content-type": "text/plain"}, url)
    assert str(caught.value) == f"not a feed: neither XML nor JSON: it begins {begins}"


def test_xss_is_removed_everywhere() -> None:
    feed = parse_fixture("xss.xml")
    assert feed.title == "XSS Feed"
    assert feed.link is None  # a javascript: link is no link
    (entry,) = feed.entries
    assert entry.title == "Hello world"
    assert entry.url is None
    everything = json.dumps(describe(feed)).lower()
    for needle in (
        "<script",
        "javascript:",
        "onerror",
        "onclick",
        "onload",
        "<iframe",
        "<form",
        "<input",
        "<style",
        "<svg",
        "<object",
        "<embed",
        "data:text",
        "alert(",
        "\u202e",
        "\\u0000",
        "target=",
    ):
        assert needle not in everything, needle
    assert 'href="https://xss.example/safe" rel="noopener noreferrer nofollow"' in entry.content_html


def test_latin1_and_windows_1251_become_unicode() -> None:
    latin1 = parse_fixture("latin1.xml")
    assert latin1.title == "Café à Paris"
    assert latin1.entries[0].title == "Crème brûlée © ½"
    assert latin1.entries[0].text == "Déjà vu, naïve façade."
    declared = parse_fixture("windows1251.xml")
    assert declared.title == "Новости"
    assert declared.entries[0].title == "Привет, мир!"
    assert declared.entries[0].text == "Текст на русском."
    by_http = parse_fixture("windows1251_http_charset.xml")
    assert by_http.title == "Новости HTTP"
    assert by_http.entries[0].title == "Привет, мир!"


def test_html_page_names_the_feeds_it_advertises() -> None:
    with pytest.raises(ParseError) as caught:
        parse_fixture("html_page.html")
    assert caught.value.advertised == (
        "https://x.example/feed.xml",
        "https://x.example/atom.xml",
        "https://x.example/feed.json",
    )
    assert str(caught.value) == (
        "not a feed: it is an HTML page; it advertises these feeds: "
        "https://x.example/feed.xml, https://x.example/atom.xml, https://x.example/feed.json"
    )


@pytest.mark.parametrize(
    ("headers", "declared"),
    [
        ({"content-type": "text/html; charset=windows-1251"}, b""),  # said by the server
        ({"content-type": "text/html"}, b'<meta charset="windows-1251">'),  # said by the page
        (
            {"content-type": "text/html"},
            b'<meta http-equiv="Content-Type" content="text/html; charset=cp1251">',
        ),
    ],
)
def test_an_html_page_in_its_own_charset_advertises_its_feeds_word_for_word(
    headers: dict[str, str], declared: bytes
) -> None:
    page = (
        b"<!doctype html><html><head>" + declared + b"<title>\xcd\xee\xe2\xee\xf1\xf2\xe8</title>"
        b'<link rel="alternate" type="application/rss+xml" href="/\xeb\xe5\xed\xf2\xe0.xml">'
        b"</head><body></body></html>"
    )
    with pytest.raises(ParseError) as caught:
        parse_feed(page, headers, "https://x.example/")
    assert caught.value.advertised == ("https://x.example/лента.xml",)


def test_malformed_but_recoverable_feed_is_accepted_with_a_warning() -> None:
    feed = parse_fixture("malformed.xml")
    assert [e.title for e in feed.entries] == ["Café opens today", "Second item"]
    assert any(w.startswith("not well-formed XML (line 7): undefined entity") for w in feed.warnings), (
        feed.warnings
    )


def test_billion_laughs_finishes_quickly_without_expansion() -> None:
    started = time.monotonic()
    try:
        feed = parse_fixture("billion_laughs.xml")
    except ParseError:
        pass
    else:
        assert "lollol" not in json.dumps(describe(feed))
    assert time.monotonic() - started < 2


def test_external_entity_is_never_resolved(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-4711")
    body = (
        (FEEDS / "external_entity.xml").read_bytes().replace(b"file:///etc/passwd", secret.as_uri().encode())
    )
    for fast in (True, False):
        try:
            feed = parse_feed(
                body, {"content-type": "application/rss+xml"}, "https://xxe.example/rss", fast=fast
            )
        except ParseError as exc:
            seen = str(exc)
        else:
            seen = json.dumps(describe(feed))
        assert "TOP-SECRET" not in seen
        assert "root:" not in seen


def test_bytes_naming_a_local_file_are_not_read_as_that_file() -> None:
    # feedparser, given bytes, first tries them as a file name; parse must never let it.
    path = str(FEEDS / "rss20.xml").encode()
    with pytest.raises(ParseError):
        parse_feed(path, {}, "https://x.example/")


@pytest.mark.parametrize("body", [b"", b"   \n\t "])
def test_empty_response(body: bytes) -> None:
    with pytest.raises(ParseError, match=r"^empty response$"):
        parse_feed(body, {}, "https://x.example/feed")


def test_plain_text_is_not_a_feed() -> None:
    with pytest.raises(ParseError, match=r"^not a feed: neither XML nor JSON: "):
        parse_feed(b"hello, this is not XML", {"content-type": "text/plain"}, "https://x.example/feed")


FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@pytest.mark.parametrize("separator", ["", "\u2028"])  # U+2028 sends the document to feedparser
def test_control_characters_are_stripped_from_every_field(separator: str) -> None:
    # Well-formed XML may carry C1 controls, line separators and bidi overrides.
    body = (
        f'<rss version="2.0"><channel><title>Tit\u0085le{separator}</title>'
        "<item><title>A\u202eb\u2066c\u0080d</title><guid isPermaLink='false'>g\u2029 1</guid>"
        "<category>c\u009fat</category><author>x\u200f@y</author><description>x&#x85;y</description>"
        "</item></channel></rss>"
    ).encode()
    feed = parse_feed(body, {}, "https://c.example/")
    assert not FORBIDDEN.search(json.dumps(describe(feed), ensure_ascii=False))
    entry = feed.entries[0]
    assert entry.guid == "g 1"
    # feedparser repairs C1 controls as the Windows-1252 characters they nearly always are
    # (the fast path declines such documents so that both paths agree)
    assert entry.title == "Abc€d"
    assert feed == parse_feed(body, {}, "https://c.example/", fast=False)


def test_nul_and_c0_controls_are_stripped() -> None:
    # Not XML at all (XML 1.0 forbids them), so feedparser's loose parser reads it and lets them through.
    body = (
        b'<rss version="2.0"><channel><title>T\x01T</title><item><title>A&#0;b\x1bc</title>'
        b"<guid>g\x07 1</guid><description>x\x00y\x0cz</description></item></channel></rss>"
    )
    feed = parse_feed(body, {}, "https://c.example/")
    entry = feed.entries[0]
    assert (feed.title, entry.title, entry.text) == ("TT", "Abc", "xyz")
    assert entry.guid.endswith("g 1")  # feedparser resolves a permalink guid against the feed URL


def test_long_description_counts_as_full_text() -> None:
    words = "word " * (FULL_TEXT_MIN_CHARS // 5 + 10)
    body = (
        f'<rss version="2.0"><channel><title>t</title><item><title>Long</title><link>https://l.example/1</link>'
        f"<description>&lt;p&gt;{words}&lt;/p&gt;</description></item>"
        f"<item><title>Short</title><link>https://l.example/2</link><description>short</description></item>"
        f"</channel></rss>"
    ).encode()
    long_entry, short_entry = parse_feed(body, {}, "https://l.example/").entries
    assert long_entry.has_full_text
    assert long_entry.summary_html == ""
    assert not short_entry.has_full_text
    assert short_entry.summary_html == "short"


def test_no_entry_is_dropped_for_age_or_count() -> None:
    items = "".join(
        f"<item><title>n{i}</title><link>https://o.example/{i}</link>"
        f"<pubDate>Mon, 01 Jan 1990 00:00:00 GMT</pubDate></item>"
        for i in range(500)
    )
    body = f'<rss version="2.0"><channel><title>old</title>{items}</channel></rss>'.encode()
    assert len(parse_feed(body, {}, "https://o.example/").entries) == 500


def test_valid_feed_without_items_parses_with_a_warning() -> None:
    feed = parse_feed(
        b'<rss version="2.0"><channel><title>Empty</title></channel></rss>', {}, "https://e.example/"
    )
    assert feed.entries == ()
    assert feed.warnings == ("the feed has no entries",)


def test_fast_and_feedparser_paths_agree_on_fixtures() -> None:
    for name in (
        *("rss20.xml", "atom10.xml", "xss.xml", "latin1.xml", "windows1251.xml", "malformed.xml"),
        *("atom_xml_base.xml", "rss_xml_base.xml"),
    ):
        fast, slow = parse_fixture(name), parse_fixture(name, fast=False)
        assert fast.entries == slow.entries, name


# --- xml:base, and what the fast path leaves to feedparser -------------------------------


@pytest.mark.parametrize("name", ["atom_xml_base.xml", "rss_xml_base.xml"])
def test_xml_base_is_followed_on_the_fast_path_exactly_as_feedparser_does(name: str) -> None:
    headers, url = FIXTURES[name]
    body = (FEEDS / name).read_bytes()
    assert _read_fast(body, headers["content-type"], url) is not None  # not declined
    # Source keys digest each reader's raw entries, which may differ where the output agrees.
    fast, slow = parse_feed(body, headers, url), parse_feed(body, headers, url, fast=False)
    assert replace(fast, source_keys=()) == replace(slow, source_keys=())


def test_atom_links_resolve_against_the_base_in_scope() -> None:
    feed = parse_fixture("atom_xml_base.xml")
    assert feed.link == "https://base.example/blog/"
    first, second, third = feed.entries
    # the entry's base (relative, joined to the feed's) for its links and enclosures
    assert first.url == "https://base.example/blog/2025/08/first.html"
    assert first.enclosures[0].url == "https://base.example/blog/audio/first.mp3"
    assert first.enclosures[0].length == 1234
    # the content's own relative base, joined to the entry's
    for href in (
        "https://base.example/blog/2025/08/about.html",
        "https://base.example/top",
        "https://other.example/x",
        "https://base.example/blog/2025/08/pics/#note",
        "https://base.example/blog/2025/08/pics/?page=2",
        "https://base.example/blog/2025/08/pics/pen.png",
    ):
        assert f'"{href}"' in first.content_html, href
    assert 'href="https://base.example/summaries/first-summary.html"' in first.summary_html
    # absolute bases replace the outer ones
    assert second.url == "https://cdn.example/articles/second"
    assert 'src="https://images.example/a/b/c.png"' in second.content_html
    assert 'href="https://images.example/a/d/"' in second.content_html
    # a javascript: base is not a safe URI: feedparser keeps the outer base, and so do we
    assert third.url == "https://base.example/blog/third.html"
    assert 'href="https://base.example/blog/fourth.html"' in third.content_html


def test_rss_links_resolve_against_the_base_in_scope() -> None:
    feed = parse_fixture("rss_xml_base.xml")
    assert feed.link == "https://rss-base.example/news/index.html"
    first, second = feed.entries
    assert first.url == "https://rss-base.example/news/2025/story.html"
    assert 'href="https://static.example/2025/index.html"' in first.content_html
    assert 'src="https://static.example/2025/08/photo.jpg"' in first.content_html
    assert 'href="https://rss-base.example/news/2025/short.html"' in first.summary_html
    # feedparser leaves <enclosure url> alone, so it resolves against the document URL
    assert first.enclosures[0].url == "https://feeds.example/media/story.mp3"
    assert second.url == "https://rss-base.example/other/story.html"
    assert 'href="https://rss-base.example/news/archive/"' in second.summary_html


ATOM_HEAD = '<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'


def atom_entry(inner: str, entry_attrs: str = "") -> bytes:
    return (
        f"{ATOM_HEAD}<entry{entry_attrs}><title>e</title><id>tag:x,2025:1</id>"
        f'<updated>2025-08-18T08:00:00Z</updated><link href="p.html"/>{inner}</entry></feed>'
    ).encode()


CONTENT = '<content type="html">&lt;a href="rel.html"&gt;x&lt;/a&gt;</content>'


@pytest.mark.parametrize(
    ("why", "body"),
    [
        ("xml:base on a link", atom_entry(f'<link rel="related" xml:base="/l/" href="r.html"/>{CONTENT}')),
        ("xml:base on an author", atom_entry(f'<author xml:base="/a/"><name>n</name></author>{CONTENT}')),
        ("a bare base attribute", atom_entry(CONTENT.replace("<content", '<content base="/b/"'))),
        ("xml:base in another case", atom_entry(CONTENT.replace("<content", '<content xml:BASE="/c/"'))),
        (
            "xml:base inside XHTML content",
            atom_entry(
                '<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">'
                '<p xml:base="/p/"><a href="rel.html">x</a></p></div></content>'
            ),
        ),
        (
            "an XHTML title",
            atom_entry(
                CONTENT.replace(
                    "<content",
                    '<summary type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">'
                    "<b>s</b></div></summary><content",
                )
            ),
        ),
        (
            "an itunes:summary",
            atom_entry(f"<itunes:summary xmlns:itunes='urn:i'>s</itunes:summary>{CONTENT}"),
        ),
        (
            "two authors",
            atom_entry(f"<author><name>a</name></author><author><name>b</name></author>{CONTENT}"),
        ),
    ],
)
def test_what_the_fast_path_cannot_read_exactly_goes_to_feedparser(why: str, body: bytes) -> None:
    url = "https://d.example/feeds/atom"
    assert _read_fast(body, "", url) is None, why
    assert parse_feed(body, {}, url).entries == parse_feed(body, {}, url, fast=False).entries


def test_the_fast_path_reads_rss_authors_and_atom_enclosure_lengths_like_feedparser() -> None:
    items = "".join(
        f"<item><title>i{i}</title><link>https://a.example/{i}</link><author>{author}</author></item>"
        for i, author in enumerate(
            [
                "jo@a.example.com (Jo Doe)",
                "jo@a.example.com",
                "Jo Doe &lt;jo@a.example.com&gt;",
                "Just A Name",
            ]
        )
    )
    rss = f'<rss version="2.0"><channel><title>a</title>{items}</channel></rss>'.encode()
    atom = atom_entry(
        '<link rel="enclosure" type="audio/mpeg" length="4321" href="a.mp3"/>'
        "<link rel='enclosure' href='b.mp3'/>"
        '<link rel="enclosure" href="c.mp3" length=" 12 "/>'
    )
    for body in (rss, atom):
        assert _read_fast(body, "", "https://a.example/feed") is not None
    fast = parse_feed(rss, {}, "https://a.example/feed")
    assert [e.authors for e in fast.entries] == [
        ("Jo Doe",),
        ("jo@a.example.com",),
        ("Jo Doe",),
        ("Just A Name",),
    ]
    slow = parse_feed(rss, {}, "https://a.example/feed", fast=False)
    assert replace(fast, source_keys=()) == replace(slow, source_keys=())  # keys: each path its own
    (entry,) = parse_feed(atom, {}, "https://a.example/feed").entries
    assert [(e.url, e.length) for e in entry.enclosures] == [
        ("https://a.example/a.mp3", 4321),
        ("https://a.example/b.mp3", None),
        ("https://a.example/c.mp3", 12),
    ]
    assert (entry,) == parse_feed(atom, {}, "https://a.example/feed", fast=False).entries


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=2000),
        st.text(max_size=500).map(lambda s: s.encode("utf-8", "surrogatepass")),
        st.builds(
            lambda head, middle, tail: head + middle + tail,
            st.sampled_from(
                [
                    b'<?xml version="1.0"?><rss version="2.0"><channel><item><title>',
                    b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><title>',
                    b'{"version": "https://jsonfeed.org/version/1.1", "items": [{"id": ',
                    b"<html><head><link rel=alternate type=application/rss+xml href=",
                ]
            ),
            st.binary(max_size=300),
            st.sampled_from(
                [b"", b"</title></item></channel></rss>", b"</title></entry></feed>", b"}]}", b">"]
            ),
        ),
    ),
    st.sampled_from(
        [
            {},
            {"content-type": "application/json"},
            {"content-type": "text/xml; charset=koi8-r"},
            {"content-type": "text/html"},
        ]
    ),
)
def test_any_bytes_give_a_feed_or_a_parse_error(body: bytes, headers: dict[str, str]) -> None:
    try:
        result = parse_feed(body, headers, "https://h.example/feed")
    except ParseError:
        return
    assert isinstance(result, ParsedFeed)


# --- source keys: what is stored already is not cleaned again ----------------------------


def test_known_entries_are_not_cleaned_again_and_changed_ones_are() -> None:
    headers, url = FIXTURES["rss20.xml"]
    body = (FEEDS / "rss20.xml").read_bytes()
    first = parse_feed(body, headers, url)
    assert len(first.source_keys) == len(first.entries) >= 2
    assert parse_feed(body, headers, url).source_keys == first.source_keys  # stable
    known = {key: entry.guid for key, entry in zip(first.source_keys, first.entries, strict=True)}

    again = parse_feed(body, headers, url, known=known)
    assert again.entries == ()
    assert again.unchanged == tuple(e.guid for e in first.entries)
    assert again.warnings == first.warnings  # an all-known feed is not "a feed with no entries"

    # The feed edits one title: that entry alone is cleaned, with a new key.
    edited_title = first.entries[0].title
    edited = parse_feed(
        body.replace(edited_title.encode(), b"A corrected headline", 1), headers, url, known=known
    )
    assert [e.guid for e in edited.entries] == [first.entries[0].guid]
    assert edited.entries[0].title == "A corrected headline"
    assert edited.source_keys[0] not in known
    assert edited.unchanged == tuple(e.guid for e in first.entries[1:])


def test_the_fast_path_does_not_read_the_items_it_already_knows(monkeypatch: pytest.MonkeyPatch) -> None:
    # A periodic poll of a feed that gained two items should cost two items' reading.
    from aggregator import parse  # noqa: PLC0415 -- the module whose reader is watched

    headers, url = FIXTURES["rss20.xml"]
    body = (FEEDS / "rss20.xml").read_bytes()
    assert _read_fast(body, headers["content-type"], url) is not None  # the fast path's feed
    first = parse_feed(body, headers, url)
    known = {key: entry.guid for key, entry in zip(first.source_keys, first.entries, strict=True)}
    read: list[bytes] = []
    real_reader = parse._fast_rss_entry

    def watched(e: Any, chunk: bytes, *args: Any) -> Any:
        read.append(chunk)
        return real_reader(e, chunk, *args)

    monkeypatch.setattr(parse, "_fast_rss_entry", watched)
    assert parse_feed(body, headers, url, known=known).unchanged == tuple(e.guid for e in first.entries)
    assert read == []
    edited = parse_feed(
        body.replace(first.entries[0].title.encode(), b"Corrected", 1), headers, url, known=known
    )
    assert [e.title for e in edited.entries] == ["Corrected"]
    assert len(read) == 1


_NAMESPACED_ITEM = (
    b'<?xml version="1.0" encoding="utf-8"?>\n'
    b'<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel>'
    b"<title>t</title>"
    b"<item><guid>https://a.example/1</guid><title>One</title><description>Short.</description>"
    b"<content:encoded><![CDATA[<p>The whole article.</p>]]></content:encoded></item>"
    b"</channel></rss>"
)


@pytest.mark.parametrize(
    "changed",
    [
        # The same item bytes mean something else once its prefix is bound to another namespace,
        _NAMESPACED_ITEM.replace(b"http://purl.org/rss/1.0/modules/content/", b"https://other.example/ns"),
        # or could, once the document declares another encoding for them.
        _NAMESPACED_ITEM.replace(b'encoding="utf-8"', b'encoding="us-ascii"'),
    ],
    ids=["namespace", "encoding"],
)
def test_a_known_item_is_read_again_when_what_surrounds_it_changes(changed: bytes) -> None:
    url, headers = "https://a.example/feed", {"content-type": "application/rss+xml"}
    for document in (_NAMESPACED_ITEM, changed):
        assert _read_fast(document, "", url) is not None  # both on the fast path
    first = parse_feed(_NAMESPACED_ITEM, headers, url)
    assert first.entries[0].content_html == "<p>The whole article.</p>"
    known = dict(zip(first.source_keys, (e.guid for e in first.entries), strict=True))
    again = parse_feed(changed, headers, url, known=known)
    assert again.unchanged == ()
    assert [e.guid for e in again.entries] == ["https://a.example/1"]
    assert set(again.source_keys).isdisjoint(known)
    assert again.entries[0] == parse_feed(changed, headers, url).entries[0]


def test_a_source_key_changes_with_the_base_url_links_resolve_against() -> None:
    headers, url = FIXTURES["rss20.xml"]
    body = (FEEDS / "rss20.xml").read_bytes()
    here = parse_feed(body, headers, url)
    moved = parse_feed(body, headers, url.replace("https://", "https://mirror."))
    assert set(here.source_keys).isdisjoint(moved.source_keys)


def test_a_guid_repeated_in_one_feed_counts_once_even_when_its_first_copy_is_known() -> None:
    feed = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
    <item><guid isPermaLink="false">x</guid><title>first</title><description>one</description></item>
    <item><guid isPermaLink="false">x</guid><title>second</title><description>two</description></item>
    </channel></rss>"""
    headers = {"content-type": "application/rss+xml"}
    parsed = parse_feed(feed, headers, "https://example.com/feed")
    assert [e.title for e in parsed.entries] == ["first"]
    again = parse_feed(feed, headers, "https://example.com/feed", known={parsed.source_keys[0]: "x"})
    assert (again.entries, again.unchanged) == ((), ("x",))


def test_a_body_still_gzipped_after_decoding_is_named_as_such() -> None:
    twice = gzip.compress((FEEDS / "rss20.xml").read_bytes())  # what is left after one gunzip
    with pytest.raises(
        ParseError, match=r"the body is still gzip-compressed after decoding \(compressed twice"
    ):
        parse_feed(twice, {"content-type": "application/rss+xml"}, "https://x.example/feed.xml")


def _rss(items: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"'
        ' xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel><title>t</title>'
        f"<link>https://ex.example/</link>{items}</channel></rss>"
    ).encode()


def _item(
    inner: str, title: str = "<title>i</title>", guid: str = '<guid isPermaLink="false">x</guid>'
) -> str:
    return f"<item>{title}{guid}{inner}</item>"


_READ_ALIKE = {
    # Markup written as XML inside a text element: fastfeedparser kept only the text before it.
    "br in description": _rss(
        _item("<description>The 7:10 ferry moves to 7:25.<br/>See the timetable.</description>")
    ),
    "p in description": _rss(_item("<description><p>Paragraph one.</p><p>Paragraph two.</p></description>")),
    "comment in content": _rss(
        _item("<content:encoded>Start <!-- ad slot --> rest of it.</content:encoded>")
    ),
    "comment in title": _rss(
        _item("", title="<title>Budget passes <!-- updated --> after late vote</title>")
    ),
    # A quoted </item> inside CDATA ended the item early: its guid, date and body were lost.
    "item end in CDATA": _rss(
        "<item><title>How to</title><link>https://dev.example/a?utm_source=rss</link>"
        "<description><![CDATA[<p>Close every entry with <code></item></code>.</p>]]></description>"
        '<guid isPermaLink="false">post-1001</guid><pubDate>Mon, 18 Aug 2025 09:30:00 GMT</pubDate>'
        "<content:encoded><![CDATA[<p>Full article body.</p>]]></content:encoded></item>"
    ),
    # Two links or guids (each parser takes another), an atom:link, an upper-case scheme.
    "two links": _rss(_item("<link>https://ex.example/a</link><link>https://ex.example/a?amp=1</link>")),
    "two guids": _rss(_item("", guid="<guid>https://ex.example/1</guid><guid>https://ex.example/2</guid>")),
    "atom link in item": _rss(_item('<atom:link href="https://ex.example/b" rel="alternate"/>', guid="")),
    "upper-case guid scheme": _rss(_item("", guid="<guid>HTTPS://ex.example/p/1</guid>")),
    # Dates fastfeedparser reads otherwise than feedparser.
    **{
        f"date {date}": _rss(_item(f"<pubDate>{date}</pubDate>"))
        for date in (
            "Mon, 18 Aug 2025 09:30:00 -08:00",
            "Mon, 18 Aug 2025 09:30:00 +05",
            "Mon, 18 Aug 2025 09:30:00 CEST",
            "Mon, 18 Aug 2025 09:30:00",
            "Mon, 18 Aug 2025 09:30:00 -0800",
            "Mon, 18 Aug 2025 09:30:00 GMT",
            "18 Aug 2025 09:30 UT",
            "Mon, 18 Aug 2025 09:30:00 EST",
            "Mon, 18 Aug 2025 09:30:00 PDT",
        )
    },
}


@pytest.mark.parametrize("case", _READ_ALIKE)
def test_the_fast_path_reads_what_feedparser_reads_or_leaves_it_to_feedparser(case: str) -> None:
    body = _READ_ALIKE[case]
    fast = parse_feed(body, {}, "https://ex.example/feed")
    slow = parse_feed(body, {}, "https://ex.example/feed", fast=False)
    assert fast.entries == slow.entries
    if case.rsplit(maxsplit=1)[-1] in {"-0800", "GMT", "UT", "EST", "PDT"}:
        # The forms both parsers read alike stay on the fast path.
        assert _read_fast(body, "", "https://ex.example/feed") is not None


@pytest.mark.parametrize(
    "fragment",
    [
        # 1,000 formatting elements left open, then 1,000 paragraphs: the parser re-opens all of
        # them in each (a million elements from 40 kB; 2,000 of each made a 1.2 GB process).
        "<p>" + "".join(f'<b title="{i}">' for i in range(1000)) + "</p>" + "<p>x</p>" * 1000,
        # Nesting deep enough to make the parse quadratic, however it is written: a "/>" on a
        # div closes nothing, nor does an end tag of an element that is not open.
        "<ul><li>" * 12000 + "x" + "</li></ul>" * 12000,
        "<div/>x" * 12000,
        "<div></span>x" * 12000,
    ],
    ids=["reopened-formatting", "deep-lists", "self-closed-divs", "stray-end-tags"],
)
def test_html_that_would_amplify_is_kept_as_text_at_its_own_size(fragment: str) -> None:
    sanitized = sanitize_html(fragment, "https://x.example/")
    assert len(sanitized) <= len(fragment)
    assert "x" in sanitized
    assert "<b" not in sanitized
    assert "<ul" not in sanitized


def test_an_article_with_a_few_tags_left_open_keeps_its_markup() -> None:
    fragment = "<p><b>Bold <i>lead" + "".join(
        f"<p>Paragraph {i} with a <a href='/a{i}'>link</a>.</p>" for i in range(400)
    )
    sanitized = sanitize_html(fragment, "https://x.example/")
    assert '<a href="https://x.example/a399"' in sanitized
    assert "<b>" in sanitized


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Using Vec&lt;T&gt; in Rust", "Using Vec<T> in Rust"),
        ("Why a&lt;b is fine", "Why a<b is fine"),
        ("std::vector&lt;int&gt; vs std::array", "std::vector<int> vs std::array"),
        ("I &lt;3 Rust", "I <3 Rust"),
        ("Option&lt;std::string&gt; in C++", "Option<std::string> in C++"),
        ("Result&lt;io::Error&gt; explained", "Result<io::Error> explained"),
        # Markup a title carries is still markup, and scripts still go with their content.
        ("&lt;b&gt;Budget&lt;/b&gt; passes", "Budget passes"),
        ("Vote &lt;script&gt;alert(1)&lt;/script&gt;today", "Vote today"),
        ("Leaders &lt;!-- draft --&gt;meet", "Leaders meet"),
        ("&lt;h1&gt;Headline&lt;/h1&gt;", "Headline"),  # any HTML element, not only those seen in titles
        ("&lt;div&gt;Wrapped&lt;/div&gt;", "Wrapped"),
        ("Paris&lt;o:p&gt;&lt;/o:p&gt;", "Paris"),  # Word's namespaced tags
        ("&lt;x-card&gt;Custom&lt;/x-card&gt;", "Custom"),
    ],
)
def test_a_less_than_sign_that_opens_no_tag_stays_in_the_title(title: str, expected: str) -> None:
    body = _rss(_item("", title=f"<title>{title}</title>"))
    for fast in (True, False):
        assert parse_feed(body, {}, "https://ex.example/feed", fast=fast).entries[0].title == expected


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("&#55357;&#56832;", "Good news \U0001f600"),  # an emoji as two UTF-16 halves (Java, JavaScript CMSs)
        ("&#xD83D;&#xDE00;", "Good news \U0001f600"),
        ("&#55357;", "Good news \ufffd"),  # a lone half
        ("&#x110000;", "Good news \ufffd"),  # past the last code point
        ("&#99999999999999999999;", "Good news \ufffd"),
    ],
)
def test_a_character_reference_python_cannot_read_costs_one_character_not_the_feed(
    ref: str, expected: str
) -> None:
    body = _rss(
        _item("", title=f"<title>Good news {ref}</title>") + _item("", title="<title>Other</title>", guid="")
    )
    feed = parse_feed(body, {}, "https://ex.example/feed")
    assert [e.title for e in feed.entries] == [expected, "Other"]


def test_json_feed_values_json_does_not_have_cost_no_item_and_no_feed() -> None:
    items = [
        '{"id": NaN, "title": "one", "content_text": "1"}',
        '{"id": NaN, "title": "two", "content_text": "2"}',  # was the same guid "nan" as one
        '{"id": 1e999, "title": "three", "content_text": "3"}',
        '{"id": "a", "title": "four", "_ext": {"n": ' + "9" * 4301 + "}}",  # failed the whole feed
        '{"id": "b", "title": "five", "url": "javascript:alert(1)", "external_url": "https://other.example/s"}',
    ]
    body = (
        '{"version": "https://jsonfeed.org/version/1.1", "title": "J", "items": [' + ",".join(items) + "]}"
    ).encode()
    feed = parse_feed(body, {"content-type": "application/feed+json"}, "https://j.example/feed.json")
    assert [e.title for e in feed.entries] == ["one", "two", "three", "four", "five"]
    assert len({e.guid for e in feed.entries}) == 5
    assert feed.entries[4].url == "https://other.example/s"


def _atom_entry(links: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
        "<id>tag:ex.example,2020:feed</id><updated>2025-08-18T09:30:00Z</updated><entry><title>e</title>"
        f"<id>tag:ex.example,2020:1</id><updated>2025-08-18T09:30:00Z</updated>{links}</entry></feed>"
    ).encode()


@pytest.mark.parametrize(
    ("links", "fast_path"),
    [
        # Blogger: self, edit and replies beside the alternate; both parsers take the alternate.
        (
            "<link rel='replies' href='https://b.example/c'/><link rel='edit' href='https://b.example/e'/>"
            "<link rel='self' href='https://b.example/s'/><link rel='alternate' href='https://b.example/p.html'/>",
            True,
        ),
        ("<link href='https://b.example/p.html'/>", True),
        # No alternate: feedparser gives no link, fastfeedparser took the edit or replies link.
        ("<link rel='edit' href='https://b.example/e'/>", False),
        ("<link rel='replies' href='https://b.example/c'/>", False),
        # Two candidates: fastfeedparser took the first, feedparser the alternate or the last.
        ("<link rel='edit' href='https://b.example/e'/><link href='https://b.example/p.html'/>", False),
        (
            "<link rel='alternate' href='https://b.example/1'/><link rel='alternate' href='https://b.example/2'/>",
            False,
        ),
        (
            "<link rel='alternate' type='application/pdf' href='https://b.example/p.pdf'/>"
            "<link rel='self' href='https://b.example/s'/>",
            False,
        ),
    ],
)
def test_atom_entry_links_are_read_as_feedparser_reads_them(links: str, fast_path: bool) -> None:
    body = _atom_entry(links)
    url = "https://ex.example/feed"
    assert parse_feed(body, {}, url).entries == parse_feed(body, {}, url, fast=False).entries
    assert (_read_fast(body, "", url) is not None) is fast_path


def test_a_long_article_with_many_flat_tags_keeps_its_markup() -> None:
    # 250 kB of syntax-highlighted code: 20,000 tags, nothing deep, nothing left open.
    line = (
        '<span class="k">def</span> <span class="nf">f</span>(<span class="n">x</span>): <a href="/x">r</a>\n'
    )
    fragment = "<p>Intro with a <a href='/doc'>link</a>.</p><pre><code>" + line * 2600 + "</code></pre>"
    assert fragment.count("<") > 20_000
    sanitized = sanitize_html(fragment, "https://x.example/")
    assert "<pre><code>" in sanitized
    assert '<a href="https://x.example/doc"' in sanitized


def test_an_atom_entry_without_a_link_takes_its_id_for_one_as_feedparser_does() -> None:
    # feedparser reads an Atom id as a permalink when no <link> precedes it; the fast path read no link.
    body = (
        f"{ATOM_HEAD}<entry><title>e</title><id>https://b.example/posts/1</id>"
        "<updated>2025-08-18T08:00:00Z</updated></entry></feed>"
    ).encode()
    url = "https://b.example/atom"
    fast = parse_feed(body, {}, url)
    assert fast.entries[0].url == "https://b.example/posts/1"
    assert fast.entries == parse_feed(body, {}, url, fast=False).entries


def test_windows_1252_punctuation_in_a_latin_1_feed_is_kept() -> None:
    # Declared ISO-8859-1, written in Windows-1252 (the commonest mislabel there is): bytes 0x80 to 0x9f
    # are quotes, dashes and the euro sign.  The fast path read them as C1 controls, then dropped them.
    body = (
        b'<?xml version="1.0" encoding="ISO-8859-1"?><rss version="2.0"><channel><title>Caf\xe9</title>'
        b"<item><title>It\x92s \x93quoted\x94 \x97 really</title><guid>https://x.example/1</guid>"
        b"<description>Price: 5 \x80</description></item></channel></rss>"
    )
    for fast in (True, False):
        (entry,) = parse_feed(body, {}, "https://x.example/feed", fast=fast).entries
        assert (entry.title, entry.text) == ("It\u2019s \u201cquoted\u201d \u2014 really", "Price: 5 \u20ac")


@pytest.mark.parametrize(
    ("declared", "text"),
    [
        # UTF-8 read as Latin-1 and written out as UTF-8 again (a database with the wrong charset)
        ("utf-8", "Caf\u00c3\u00a9 na\u00c3\u00afve".encode()),
        # UTF-8 bytes in a feed that says it is Latin-1 or Windows-1252
        ("iso-8859-1", "Caf\u00e9 na\u00efve".encode()),
        ("windows-1252", "Caf\u00e9 na\u00efve".encode()),
    ],
)
def test_utf8_read_as_latin_1_is_read_back_on_both_paths(declared: str, text: bytes) -> None:
    # feedparser reads such text back as UTF-8 (``_FeedParserMixin.pop``); the fast path kept the mojibake.
    body = (
        (
            f'<?xml version="1.0" encoding="{declared}"?><rss version="2.0"><channel><title>t</title><item>'
        ).encode()
        + b"<title>"
        + text
        + b"</title><guid>https://x.example/1</guid></item></channel></rss>"
    )
    for fast in (True, False):
        assert (
            parse_feed(body, {}, "https://x.example/feed", fast=fast).entries[0].title
            == "Caf\u00e9 na\u00efve"
        )


@pytest.mark.parametrize(
    "published",
    [
        "Sat, 31 Dec 2016 23:59:60 GMT",
        "2016-12-31T23:59:60Z",
        "2025-02-30T10:00:00Z",
        "0001-01-01T00:00:00+05:00",
    ],
)
def test_an_atom_published_date_the_fast_parser_cannot_read_is_not_taken_from_updated(published: str) -> None:
    # fastfeedparser fills an unreadable <published> with <updated>: the entry seemed published when updated.
    body = atom_entry(f"<published>{published}</published>").replace(
        b"<updated>2025-08-18T08:00:00Z</updated>", b"<updated>2025-09-01T12:00:00Z</updated>"
    )
    url = "https://d.example/feeds/atom"
    (entry,) = parse_feed(body, {}, url).entries
    assert entry.published != entry.updated
    assert (entry,) == parse_feed(body, {}, url, fast=False).entries


@pytest.mark.parametrize(
    ("declared", "written_in"),
    [
        # the mark is right, the declaration a template's leftover
        ("iso-8859-1", "utf-8"),
        ("windows-1251", "utf-8"),
        # the declaration is right, the mark an editor's or a script's
        ("windows-1251", "windows-1251"),
        ("koi8-r", "koi8-r"),
    ],
)
def test_a_utf8_byte_order_mark_that_contradicts_the_declaration(declared: str, written_in: str) -> None:
    # Each parser believed another of the two (feedparser, failing, fell back to Windows-1252).
    body = b"\xef\xbb\xbf" + (
        f'<?xml version="1.0" encoding="{declared}"?><rss version="2.0"><channel><title>Пример</title>'
        "<item><title>Привет, мир</title><guid>https://x.example/1</guid></item></channel></rss>"
    ).encode(written_in)
    for fast in (True, False):
        feed = parse_feed(body, {}, "https://x.example/feed", fast=fast)
        assert (feed.title, feed.entries[0].title) == ("Пример", "Привет, мир")


@pytest.mark.parametrize(
    "pub_date",
    [
        "Sat, 31 Dec 2016 23:59:60 GMT",  # a leap second
        "Mon, 30 Feb 2025 10:00:00 GMT",
        "Mon, 32 Aug 2025 10:00:00 GMT",
        "Mon, 18 Aug 2025 25:00:00 GMT",
        "Mon, 18 Foo 2025 10:00:00 GMT",  # no such month
        "Xyz, 18 Aug 2025 10:00:00 GMT",  # no such day: feedparser reads no date at all
    ],
)
@pytest.mark.parametrize("guid", ["2025-01-02T03:04:05Z", "2025-01-02", "Thu, 02 Jan 2025 03:04:05 GMT"])
def test_an_rss_date_the_fast_parser_cannot_read_is_not_taken_from_a_date_like_guid(
    pub_date: str, guid: str
) -> None:
    # fastfeedparser fills a <pubDate> it cannot read from the guid when that reads as a date:
    # the entry seemed published on the guid's "date"; feedparser reads no date.
    body = _rss(_item(f"<pubDate>{pub_date}</pubDate>", guid=f'<guid isPermaLink="false">{guid}</guid>'))
    url = "https://ex.example/feed"
    (entry,) = parse_feed(body, {}, url).entries
    assert (entry,) == parse_feed(body, {}, url, fast=False).entries
    assert entry.published is None


_REFERENCED_MOJIBAKE = [
    "Caf&#195;&#169; na&#195;&#175;ve",  # UTF-8 read as Latin-1, written out as references
    "Caf&#xC3;&#xA9; na&#xc3;&#xaf;ve",
    "Caf&#00195;&#x0a9; na&#195;&#175;ve",  # leading zeros
    "&lt;b&gt;Caf&#195;&#169; na&#195;&#175;ve&lt;/b&gt;",  # in escaped HTML
]
_HALF_REFERENCED_MOJIBAKE = [
    "Caf\u00c3&#169; na\u00c3&#175;ve",  # half a character, half a reference
    "Caf&#195;\u00a9 na&#195;\u00afve",
]


@pytest.mark.parametrize(
    ("declared", "title"),
    [
        *(("utf-8", title) for title in _REFERENCED_MOJIBAKE + _HALF_REFERENCED_MOJIBAKE),
        *(("iso-8859-1", title) for title in _REFERENCED_MOJIBAKE + _HALF_REFERENCED_MOJIBAKE),
        *(("windows-1251", title) for title in _REFERENCED_MOJIBAKE),  # no Ã in Windows-1251
    ],
)
def test_utf8_read_as_latin_1_in_character_references_is_read_alike_on_both_paths(
    declared: str, title: str
) -> None:
    # feedparser reads the text of an element that is all Latin-1 back as UTF-8 whatever the
    # encoding, character references included; the fast path kept "CafÃ©".
    body = (
        f'<?xml version="1.0" encoding="{declared}"?><rss version="2.0"><channel><title>t</title>'
        f"<item><title>{title}</title><guid>https://x.example/1</guid></item></channel></rss>"
    ).encode(declared)
    url = "https://x.example/feed"
    (entry,) = parse_feed(body, {}, url).entries
    assert entry.title == "Caf\u00e9 na\u00efve"
    assert (entry,) == parse_feed(body, {}, url, fast=False).entries


def test_latin_1_references_that_are_no_utf8_stay_on_the_fast_path() -> None:
    # "&#169; 2025" and "&#160;" are everywhere; only a whole UTF-8 sequence read as Latin-1
    # sends the feed to feedparser (é must be followed by two continuations, not one).
    body = _rss(
        _item(
            "<description>&#169;&#160;2025 caf&#233; &#8212; x&#160;y, l'\u00e9t\u00e9&#160;!</description>"
        )
    )
    url = "https://ex.example/feed"
    assert _read_fast(body, "", url) is not None
    assert parse_feed(body, {}, url).entries == parse_feed(body, {}, url, fast=False).entries


@pytest.mark.parametrize("title", ["&#228;&#184;&#173; x", "\u00e4&#184;&#173; x", "&#xe4;\u00b8&#173; x"])
def test_a_three_byte_sequence_in_character_references_is_read_alike_on_both_paths(title: str) -> None:
    # "中" is E4 B8 AD in UTF-8: a lead that takes two continuations, any of them a reference.
    body = _rss(_item("", title=f"<title>{title}</title>"))
    url = "https://ex.example/feed"
    (entry,) = parse_feed(body, {}, url).entries
    assert entry.title == "\u4e2d x"
    assert (entry,) == parse_feed(body, {}, url, fast=False).entries
