"""A feed URL's credentials and token never reach a published link.

feeds.yaml may hold a private feed's URL with a user name and password, or a token in its
query (``http://alice:hunter2@host/rel.rss?token=...``).  Relative links in that feed resolve
against the document's URL: the results (entry links, links and images in the HTML,
enclosures, the feed's home page) are published, so they must carry neither; and a link
that resolves to the feed document itself (``#comments``, an empty ``href``) must not
carry the token either.
"""

from __future__ import annotations

import email
import json
from email import policy
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aggregator.cli import app
from aggregator.parse import _RawEntry, _read_fast, _read_feedparser, parse_feed, source_key
from aggregator.snapshot import web_link
from aggregator.types import ParsedFeed
from tests.feedserver import FeedServer

SECRETS = ("alice", "hunter2", "SECRET123")
FEED_URL = "http://alice:hunter2@127.0.0.1:44511/rel.rss?token=SECRET123"
SITE = "http://127.0.0.1:44511"

MEMBERS_RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Members Only</title><link>/</link><description>m</description>
<item><title>Relative link story</title><link>/news/1.html</link><guid isPermaLink="false">r1</guid>
<pubDate>Mon, 07 Dec 2026 01:00:00 +0000</pubDate>
<description>&lt;p&gt;Read &lt;a href="more.html"&gt;more&lt;/a&gt; or
&lt;a href="#comments"&gt;comments&lt;/a&gt; &lt;img src="pic.png" alt="p"&gt;.&lt;/p&gt;</description>
<enclosure url="/audio/1.mp3" type="audio/mpeg" length="10"/></item>
<item><title>Comments only</title><link>#x</link><guid isPermaLink="false">r2</guid>
<pubDate>Mon, 07 Dec 2026 02:00:00 +0000</pubDate><description>two</description></item>
</channel></rss>
"""

# Atom with a relative xml:base on an entry: the fast path computes bases itself (_BaseScope).
MEMBERS_ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Members Only</title><id>urn:x:feed</id>
<link href="/"/><updated>2026-12-07T01:00:00Z</updated>
<entry xml:base="/blog/"><title>Relative link story</title><id>urn:x:1</id>
<link href="news/1.html"/><updated>2026-12-07T01:00:00Z</updated>
<link rel="enclosure" href="audio/1.mp3" type="audio/mpeg" length="10"/>
<content type="html">&lt;p&gt;Read &lt;a href="more.html"&gt;more&lt;/a&gt; or
&lt;a href="#comments"&gt;comments&lt;/a&gt; &lt;img src="pic.png" alt="p"&gt;&lt;/p&gt;</content></entry>
<entry><title>The feed itself</title><id>urn:x:2</id><link href=""/>
<updated>2026-12-07T02:00:00Z</updated><summary>two</summary></entry>
</feed>
"""

MEMBERS_JSON = json.dumps(
    {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Members Only",
        "home_page_url": "/",
        "items": [
            {
                "id": "r1",
                "url": "/news/1.html",
                "title": "Relative link story",
                "content_html": '<p>Read <a href="more.html">more</a> or <a href="#comments">comments</a>'
                ' <img src="pic.png" alt="p"></p>',
                "attachments": [{"url": "/audio/1.mp3", "mime_type": "audio/mpeg"}],
            },
            {"id": "r2", "url": "#x", "title": "Comments only", "content_text": "two"},
        ],
    }
).encode()


def _readable(path: Path) -> str:
    """A written file's text; an email's parts decoded (quoted-printable or base64 would hide a word)."""
    if path.suffix != ".eml":
        return path.read_text(encoding="utf-8", errors="replace")
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    parts = [str(message)]
    for part in message.walk():
        if not part.is_multipart():
            parts.append(str(part.get_content()))
    return "\n".join(parts)


def assert_no_secret(feed: ParsedFeed) -> None:
    shown = repr(feed)
    for secret in SECRETS:
        assert secret not in shown, f"{secret!r} in {shown}"


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "feedparser"])
def test_rss_links_resolved_against_a_feed_url_with_credentials_carry_none(fast: bool) -> None:
    headers = {"content-type": "application/rss+xml"}
    if fast:
        assert _read_fast(MEMBERS_RSS, headers["content-type"], FEED_URL) is not None
    feed = parse_feed(MEMBERS_RSS, headers, FEED_URL, fast=fast)
    assert_no_secret(feed)
    first, second = feed.entries
    assert feed.link == f"{SITE}/"
    assert first.url == f"{SITE}/news/1.html"
    assert f'href="{SITE}/more.html"' in first.summary_html
    assert f'href="{SITE}/rel.rss#comments"' in first.summary_html
    assert f'src="{SITE}/pic.png"' in first.summary_html
    assert [e.url for e in first.enclosures] == [f"{SITE}/audio/1.mp3"]
    assert second.url == f"{SITE}/rel.rss#x"


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "feedparser"])
def test_atom_links_under_a_relative_xml_base_carry_no_credentials(fast: bool) -> None:
    headers = {"content-type": "application/atom+xml"}
    if fast:
        assert _read_fast(MEMBERS_ATOM, headers["content-type"], FEED_URL) is not None
    feed = parse_feed(MEMBERS_ATOM, headers, FEED_URL, fast=fast)
    assert_no_secret(feed)
    first, second = feed.entries
    assert first.url == f"{SITE}/blog/news/1.html"
    assert f'href="{SITE}/blog/more.html"' in first.content_html
    assert f'src="{SITE}/blog/pic.png"' in first.content_html
    assert [e.url for e in first.enclosures] == [f"{SITE}/blog/audio/1.mp3"]
    # feedparser reads an empty href as the feed document itself (here without its token);
    # the fast path reads it as no link.
    assert second.url in (f"{SITE}/rel.rss", None)


def test_json_feed_links_resolved_against_a_feed_url_with_credentials_carry_none() -> None:
    feed = parse_feed(MEMBERS_JSON, {"content-type": "application/feed+json"}, FEED_URL)
    assert_no_secret(feed)
    first, second = feed.entries
    assert feed.link == f"{SITE}/"
    assert first.url == f"{SITE}/news/1.html"
    assert f'href="{SITE}/more.html"' in first.content_html
    assert f'href="{SITE}/rel.rss#comments"' in first.content_html
    assert [e.url for e in first.enclosures] == [f"{SITE}/audio/1.mp3"]
    assert second.url == f"{SITE}/rel.rss#x"


def test_an_explicit_absolute_xml_base_is_the_feeds_own_statement_and_is_kept() -> None:
    body = MEMBERS_ATOM.replace(b'xml:base="/blog/"', b'xml:base="https://public.example/blog/"')
    for fast in (True, False):
        (first, _) = parse_feed(body, {}, FEED_URL, fast=fast).entries
        assert first.url == "https://public.example/blog/news/1.html"


@pytest.mark.parametrize(
    ("given", "published"),
    [
        ("https://alice:hunter2@news.example/a?b=1#c", "https://news.example/a?b=1#c"),
        ("http://token@news.example:8080/a", "http://news.example:8080/a"),
        ("https://news.example/a@b", "https://news.example/a@b"),  # an "@" in the path is no userinfo
    ],
)
def test_a_published_link_never_holds_a_user_name_or_password(given: str, published: str) -> None:
    assert web_link(given) == published


def test_run_once_publishes_no_credential_nor_token_of_a_feed_url(
    tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGGREGATOR_SECRET_KEY", "test-key-" + "0" * 32)
    feed_server.add_feed(
        "/rel.rss", MEMBERS_RSS.replace(b"<link>/</link>", b"<link>https://members.example/</link>")
    )
    url = feed_server.url("/rel.rss").replace("http://", "http://alice:hunter2@") + "?token=SECRET123"
    config = tmp_path / "feeds.yaml"
    config.write_text(
        f"feeds:\n  - url: {url}\n    topics: [Members]\n"
        "topics:\n  - name: Members\n    keywords: [story]\n"
        "newsletters:\n  - name: daily\n    title: Daily\n    schedule: '0 7 * * *'\n"
        "    sender: digest@example.com\n    subscribers: [reader@example.com]\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["--config", str(config), "run", "--once"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert feed_server.last("/rel.rss").query == "token=SECRET123"  # the feed was fetched with its token

    written = [
        p for folder in ("public", "newsletters") for p in (tmp_path / folder).rglob("*") if p.is_file()
    ]
    assert {"feed.atom", "feed.rss", "feed.json", "0001.html"} <= {p.name for p in written}
    for path in written:
        text = _readable(path)
        for secret in ("hunter2", "SECRET123"):
            assert secret not in text, f"{secret} in {path.relative_to(tmp_path)}"
    atom = (tmp_path / "public" / "feed.atom").read_text(encoding="utf-8")
    assert feed_server.url("/news/1.html") in atom  # the story was published, its link resolved


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "feedparser"])
def test_entries_stored_with_links_holding_secrets_are_cleaned_again(fast: bool) -> None:
    # The source keys the parser gave before links stopped resolving against the URL as
    # written: their entries must not count as unchanged, or their links would stay stored.
    headers = {"content-type": "application/rss+xml"}
    if fast:
        raw = _read_fast(MEMBERS_RSS, headers["content-type"], FEED_URL)
        assert raw is not None
        old_keys = [e.key for e in raw.entries if isinstance(e, _RawEntry) and e.key]
    else:
        raw = _read_feedparser(MEMBERS_RSS, headers["content-type"], FEED_URL, FEED_URL)
        old_keys = [source_key(e) for e in raw.entries if isinstance(e, _RawEntry)]
    assert len(old_keys) == 2
    feed = parse_feed(
        MEMBERS_RSS, headers, FEED_URL, fast=fast, known=dict(zip(old_keys, ("r1", "r2"), strict=True))
    )
    assert [e.guid for e in feed.entries] == ["r1", "r2"]
    assert feed.unchanged == ()


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "feedparser"])
@pytest.mark.parametrize("query", ["format=rss", "feed=rss2&paged=2"])
def test_an_ordinary_query_of_the_feed_url_stays_in_the_base(fast: bool, query: str) -> None:
    # It picks the document (index.php?format=rss is not index.php), and an entry with no
    # guid takes its guid from its link: dropped, every such entry came back as new once.
    feed_url = f"https://example.com/index.php?{query}"
    body = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><link>/</link>'
        b"<description>d</description><item><title>Release 1.2</title><link>#v1.2</link>"
        b"<description>notes</description></item></channel></rss>"
    )
    (entry,) = parse_feed(body, {"content-type": "application/rss+xml"}, feed_url, fast=fast).entries
    assert entry.url == f"{feed_url}#v1.2"
    assert entry.guid == f"{feed_url}#v1.2"
