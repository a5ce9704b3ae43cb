"""The output feeds: one entry per story, valid Atom / RSS / JSON Feed, stable, written atomically.

Validity is checked the way a feed validator would: Atom against RFC 4287's RELAX NG schema
(tests/schemas/atom.rng) plus its two Schematron rules, JSON Feed against the 1.1 spec's
rules written out below, and every format read back with feedparser (JSON by json).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import feedparser
import pytest
from lxml import etree

from aggregator import pipeline
from aggregator.config import load_config
from aggregator.errors import ConfigError
from aggregator.publish import (
    MAX_AUTHORS,
    MAX_ENCLOSURES,
    PublishResult,
    PublishSettings,
    feed_path,
    publish_feeds,
    render_feeds,
    story_html,
    topic_slugs,
    write_atomic,
)
from aggregator.snapshot import RECENT_WINDOW, Snapshot, build_snapshot, public_id, read_snapshot
from aggregator.store import Store, StoredStory, entry_id
from aggregator.types import DuplicateEvidence, Enclosure, Entry, FeedState, FeedStatus, StoredEntry

SCHEMAS = Path(__file__).parent / "schemas"
GOLDEN = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("AGGREGATOR_UPDATE_GOLDEN") == "1"
ATOM = "{http://www.w3.org/2005/Atom}"
LEDGER, WIRE, DISPATCH = "https://ledger.example/rss", "https://wire.example/atom", "seeds/dispatch.rdf"
TITLES = {LEDGER: "The Ledger", WIRE: "Wire & Co", DISPATCH: "Dispatch"}
SETTINGS = PublishSettings(title="Test <news>", base_url="https://news.example/out", max_stories=50)
NOW = datetime(2025, 8, 18, 12, tzinfo=UTC)


def stored(
    id: str,
    feed: str,
    *,
    title: str,
    day: int,
    duplicate_of: str | None = None,
    story: str | None = None,
    topics: tuple[str, ...] = (),
    content: str | None = None,
    url: str | None = "default",
    seen: datetime | None = None,
    **entry: Any,
) -> StoredEntry:
    published = datetime(2025, 8, day, 9, 0, tzinfo=UTC)
    first_seen = seen or published + timedelta(minutes=5)
    return StoredEntry(
        id=id,
        feed_url=feed,
        entry=Entry(
            guid=id,
            url=f"https://{id}.example/a" if url == "default" else url,
            canonical_url=None,
            title=title,
            published=published,
            content_html=f"<p>Body of {id}</p>" if content is None else content,
            text=f"Body of {id}",
            **entry,
        ),
        first_seen=first_seen,
        last_updated=first_seen,
        duplicate_of=duplicate_of,
        story=story,
        topics=topics,
    )


@pytest.fixture
def entries() -> list[StoredEntry]:
    """A summit story carried by three outlets (one syndicated copy), and two single stories."""
    return [
        stored("wire1", WIRE, title="Leaders meet in Alaska", day=14, authors=("A. Reporter",)),
        stored("ledger1", LEDGER, title="Leaders meet in Alaska", day=14, duplicate_of="wire1"),
        stored("disp1", DISPATCH, title="Why Alaska?", day=15, url="https://dispatch.example/why?x=1&y=2"),
        stored(
            "ledger2",
            LEDGER,
            title="Briefing: <markets> & more",
            day=16,
            content='<p onclick="steal()">Hi<script>alert(1)</script>'
            '<a href="javascript:alert(2)">x</a>\x00\x0b</p>',
        ),
        stored("wire2", WIRE, title="Arctic Council explained", day=12, url=None),
    ]


@pytest.fixture
def grouped(entries: list[StoredEntry]) -> tuple[list[StoredEntry], list[StoredStory]]:
    """The same entries after the story stage: the summit story with topics, the others alone."""
    moment = datetime(2025, 8, 17, tzinfo=UTC)
    story_of = {"wire1": "s-summit", "ledger1": "s-summit", "disp1": "s-summit", "ledger2": "s-brief"}
    topics = {"s-summit": ("Russia", "Diplomacy / Arctic"), "s-brief": ("Markets",)}
    with_story = [
        replace(e, story=story_of.get(e.id), topics=topics.get(story_of.get(e.id, ""), ())) for e in entries
    ]
    stories = [
        StoredStory(
            sid, label, topics[sid], moment, moment, tuple(k for k, v in story_of.items() if v == sid)
        )
        for sid, label in (("s-summit", "Leaders meet in Alaska"), ("s-brief", "Briefing"))
    ]
    return with_story, stories


def snapshot_of(
    entries: list[StoredEntry], stories: list[StoredStory] | None = None, *, now: datetime | None = None
) -> Snapshot:
    return build_snapshot(entries, TITLES, now or datetime(2025, 8, 18, 12, tzinfo=UTC), stories or ())


# ------------------------------------------------------------------- validity


def assert_valid_atom(data: bytes) -> etree._Element:
    schema = etree.RelaxNG(etree.parse(str(SCHEMAS / "atom.rng")))
    doc = etree.fromstring(data)
    assert schema.validate(doc), schema.error_log
    feed_author = doc.find(f"{ATOM}author") is not None
    for entry in doc.iter(f"{ATOM}entry"):
        # The schema's Schematron rules, which RELAX NG validators skip.
        assert feed_author or entry.find(f"{ATOM}author") is not None, "entry without an author"
        links = [link.get("rel", "alternate") for link in entry.iter(f"{ATOM}link")]
        assert "alternate" in links or entry.find(f"{ATOM}content") is not None
        # RFC 4287 4.1.1: no two alternate links with the same type and hreflang.
        alternates = [
            (lk.get("type"), lk.get("hreflang"))
            for lk in entry.iter(f"{ATOM}link")
            if lk.get("rel", "alternate") == "alternate"
        ]
        assert len(alternates) == len(set(alternates))
    return doc


RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
JSON_FEED_TOP = {
    "version", "title", "home_page_url", "feed_url", "description", "user_comment", "next_url",
    "icon", "favicon", "authors", "language", "expired", "hubs", "items",
}  # fmt: skip
JSON_FEED_ITEM = {
    "id", "url", "external_url", "title", "content_html", "content_text", "summary", "image",
    "banner_image", "date_published", "date_modified", "authors", "tags", "language", "attachments",
}  # fmt: skip


def assert_valid_json_feed(data: bytes) -> dict[str, Any]:
    """The rules of https://www.jsonfeed.org/version/1.1/ a validator checks."""
    doc = json.loads(data.decode("utf-8"))
    assert doc["version"] == "https://jsonfeed.org/version/1.1"
    assert isinstance(doc["title"], str)
    assert doc["title"]
    assert isinstance(doc["items"], list)
    for key in doc:
        assert key in JSON_FEED_TOP or re.match(r"^_[A-Za-z]", key), f"unknown top-level key {key}"
    for key in ("home_page_url", "feed_url"):
        assert doc.get(key, "https://x").startswith(("https://", "http://"))
    for author in doc.get("authors", []):
        assert {"name", "url", "avatar"} & author.keys()
    ids = []
    for item in doc["items"]:
        for key in item:
            assert key in JSON_FEED_ITEM or re.match(r"^_[A-Za-z]", key), f"unknown item key {key}"
        assert isinstance(item["id"], str)
        assert item["id"]
        ids.append(item["id"])
        assert "content_html" in item or "content_text" in item
        for key in ("date_published", "date_modified"):
            if key in item:
                assert RFC3339.match(item[key]), item[key]
        if "url" in item:
            assert item["url"].startswith(("https://", "http://"))
        assert all(isinstance(t, str) for t in item.get("tags", []))
        for author in item.get("authors", []):
            assert {"name", "url", "avatar"} & author.keys()
        for key, value in item.items():
            if key.startswith("_"):
                assert isinstance(value, dict)
                assert "about" in value
    assert len(ids) == len(set(ids)), "item ids must be unique"
    return doc


def assert_valid_rss(data: bytes) -> etree._Element:
    doc = etree.fromstring(data)
    assert doc.tag == "rss"
    assert doc.get("version") == "2.0"
    channel = doc.find("channel")
    assert channel is not None
    for required in ("title", "link", "description"):
        assert channel.findtext(required)
    for item in channel.iter("item"):
        assert item.findtext("title") or item.findtext("description")
        parsedate_to_datetime(item.findtext("pubDate") or "")  # RFC 822, raises if not
        assert item.find("author") is None  # <author> must be an email; names go in dc:creator
    return doc


# ------------------------------------------------------------------- one entry per story


def test_one_entry_per_story_with_every_outlet_as_related_links_and_a_visible_list(
    grouped: tuple[list[StoredEntry], list[StoredStory]],
) -> None:
    files = render_feeds(snapshot_of(*grouped), SETTINGS)
    doc = assert_valid_atom(files["feed.atom"])
    entries = doc.findall(f"{ATOM}entry")
    assert len(entries) == 3  # summit (3 copies), briefing, arctic
    summit = next(e for e in entries if e.findtext(f"{ATOM}title") == "Leaders meet in Alaska")
    assert summit.findtext(f"{ATOM}id") == public_id("s-summit")
    related = {lk.get("href") for lk in summit.iter(f"{ATOM}link") if lk.get("rel") == "related"}
    assert related == {"https://ledger1.example/a", "https://dispatch.example/why?x=1&y=2"}
    alternate = [lk.get("href") for lk in summit.iter(f"{ATOM}link") if lk.get("rel") == "alternate"]
    assert alternate == ["https://wire1.example/a"]  # the copy kept, not the syndicated one
    assert [c.get("term") for c in summit.iter(f"{ATOM}category")] == ["Russia", "Diplomacy / Arctic"]
    assert summit.findtext(f"{ATOM}author/{ATOM}name") == "A. Reporter"
    content = summit.findtext(f"{ATOM}content") or ""
    assert "<p>Body of wire1</p>" in content  # the kept copy's content
    assert "Also reported by:" in content
    assert "The Ledger</a>: Leaders meet in Alaska" in content
    assert "Dispatch</a>: Why Alaska?" in content

    parsed = feedparser.parse(files["feed.atom"])
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert [e.title for e in parsed.entries] == [
        "Briefing: <markets> & more",
        "Leaders meet in Alaska",
        "Arctic Council explained",
    ]
    assert parsed.feed.links[0].href == "https://news.example/out/feed.atom"


def test_rss_and_json_feed_carry_the_same_stories(
    grouped: tuple[list[StoredEntry], list[StoredStory]],
) -> None:
    files = render_feeds(snapshot_of(*grouped), SETTINGS)
    rss = feedparser.parse(files["feed.rss"])
    assert not rss.bozo, rss.get("bozo_exception")
    assert_valid_rss(files["feed.rss"])
    doc = assert_valid_json_feed(files["feed.json"])
    atom = feedparser.parse(files["feed.atom"])
    assert [e.id for e in rss.entries] == [e.id for e in atom.entries] == [i["id"] for i in doc["items"]]
    assert rss.feed.title == doc["title"] == "Test <news>"
    summit_rss = rss.entries[1]
    assert summit_rss.guidislink is False
    assert [t.term for t in summit_rss.tags] == ["Russia", "Diplomacy / Arctic"]
    assert "Also reported by:" in summit_rss.description
    assert summit_rss.published_parsed[:3] == (2025, 8, 14)
    summit_json = doc["items"][1]
    assert summit_json["tags"] == ["Russia", "Diplomacy / Arctic"]
    assert summit_json["_aggregator"]["outlet"] == "Wire & Co"
    assert [c["outlet"] for c in summit_json["_aggregator"]["also_reported_by"]] == ["The Ledger", "Dispatch"]
    assert doc["_aggregator"]["topics"] == [
        {"name": "Diplomacy / Arctic", "slug": "diplomacy-arctic"},
        {"name": "Markets", "slug": "markets"},
        {"name": "Russia", "slug": "russia"},
    ]


def test_before_the_story_stage_a_story_is_a_kept_entry_with_its_copies(entries: list[StoredEntry]) -> None:
    snapshot = snapshot_of(entries)
    assert [s.headline for s in snapshot.stories] == [
        "Briefing: <markets> & more",
        "Why Alaska?",
        "Leaders meet in Alaska",
        "Arctic Council explained",
    ]
    summit = snapshot.stories[2]
    assert summit.lead.id == "wire1"
    assert summit.key == "entry:wire1"
    assert [(c.outlet, c.duplicate) for c in summit.coverage] == [("The Ledger", True)]
    assert summit.outlets == ("Wire & Co", "The Ledger")


def test_the_lead_is_the_kept_copy_named_by_the_story_label_else_the_most_carried(
    grouped: tuple[list[StoredEntry], list[StoredStory]],
) -> None:
    entries, stories = grouped
    relabelled = [replace(stories[0], label="Why Alaska?"), stories[1]]
    assert snapshot_of(entries, relabelled).stories[1].lead.id == "disp1"
    # A duplicate is never the lead, even when its headline is the label.
    entries = [replace(e, entry=replace(e.entry, title="Copy")) if e.id == "ledger1" else e for e in entries]
    relabelled = [replace(stories[0], label="Copy"), stories[1]]
    assert snapshot_of(entries, relabelled).stories[1].lead.id == "wire1"


def test_topic_feeds_hold_only_their_stories_and_validate(
    grouped: tuple[list[StoredEntry], list[StoredStory]],
) -> None:
    files = render_feeds(snapshot_of(*grouped), SETTINGS)
    assert sorted(files) == sorted(
        [f"feed.{x}" for x in ("atom", "rss", "json")]
        + [
            f"topics/{t}.{x}"
            for t in ("diplomacy-arctic", "markets", "russia")
            for x in ("atom", "rss", "json")
        ]
    )
    doc = assert_valid_atom(files["topics/markets.atom"])
    assert [e.findtext(f"{ATOM}title") for e in doc.iter(f"{ATOM}entry")] == ["Briefing: <markets> & more"]
    assert doc.findtext(f"{ATOM}title") == "Test <news>: Markets"
    self_link = [lk.get("href") for lk in doc.iter(f"{ATOM}link") if lk.get("rel") == "self"]
    assert self_link == ["https://news.example/out/topics/markets.atom"]
    assert_valid_json_feed(files["topics/russia.json"])
    assert_valid_rss(files["topics/russia.rss"])
    assert not feedparser.parse(files["topics/russia.rss"]).bozo


def test_topic_slugs_are_readable_unique_and_depend_only_on_the_names() -> None:
    names = ["Russia / Ukraine", "AI", "ai", "Économie", "!!!", "???", "C#", "C++", "R&D", "Россия", "中国"]
    slugs = topic_slugs(names)
    assert slugs == topic_slugs(reversed(names))
    assert slugs["Russia / Ukraine"] == "russia-ukraine"
    assert slugs["Économie"] == "economie"
    assert {slugs["AI"], slugs["ai"]} == {"ai", "ai-2"}  # only case or punctuation tells them apart
    assert {slugs["C#"], slugs["C++"]} == {"c", "c-2"}  # symbols too
    assert slugs["R&D"] == "r-d"  # as it always was: its subscribers' address stays
    # Letters folding to ASCII would lose, or a name that folds to nothing: a short hash of it.
    for name in ("!!!", "???", "Россия", "中国"):
        assert re.fullmatch(r"topic-[0-9a-f]{6}", slugs[name]), name
    assert len(set(slugs.values())) == len(names)


def test_a_topics_feed_keeps_its_address_when_other_topics_come_and_go() -> None:
    # Every Cyrillic or Chinese name was topics/topic.atom, topic-2, ... in the order of the
    # names a cycle had: a subscriber's feed changed topic when another came or went.
    rd = stored("rd", WIRE, title="Labs spend more", day=14, topics=("R&D",))
    greece = stored("gr", WIRE, title="Athens news", day=15, topics=("Ελλάδα",))
    russia = stored("ru", LEDGER, title="Moscow news", day=14, topics=("Россия",))
    china = stored("cn", LEDGER, title="Beijing news", day=15, topics=("中国",))

    def topic_feeds(entries: list[StoredEntry]) -> dict[str, list[str]]:
        files = render_feeds(snapshot_of(entries), SETTINGS)
        return {
            name: [e.title for e in feedparser.parse(data).entries]
            for name, data in files.items()
            if name.startswith("topics/") and name.endswith(".atom")
        }

    before = topic_feeds([rd, russia])
    after = topic_feeds([rd, greece, russia, china])
    for name, titles in before.items():
        assert after[name] == titles, name
    assert len(after) == 4
    for name in ("R&D", "Россия", "Économie", "AI"):
        assert topic_slugs([name]) == {name: topic_slugs([name, "中国", "Ελλάδα", "C#"])[name]}


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("US–Russia diplomacy", "us-russia-diplomacy"),  # en dash
        ("War—and peace", "war-and-peace"),  # em dash
        ("Left\u2010right", "left-right"),  # the Unicode hyphen
        ("North\u2011South", "north-south"),  # a non-breaking hyphen
        ("Sea\u00a0ice", "sea-ice"),  # a no-break space
        ("Line\u2028break", "line-break"),  # a line separator
        ("Économie – Europe", "economie-europe"),
    ],
)
def test_dashes_and_separators_of_every_kind_part_the_words_of_a_slug(name: str, slug: str) -> None:
    assert topic_slugs([name]) == {name: slug}


def test_newest_n_stories_by_latest_coverage(entries: list[StoredEntry]) -> None:
    files = render_feeds(snapshot_of(entries), replace(SETTINGS, max_stories=2))
    titles = [e.title for e in feedparser.parse(files["feed.atom"]).entries]
    assert titles == ["Briefing: <markets> & more", "Why Alaska?"]


# ------------------------------------------------------------------- hostile input


def test_content_is_sanitized_and_stripped_of_characters_xml_forbids(entries: list[StoredEntry]) -> None:
    files = render_feeds(snapshot_of(entries), SETTINGS)
    for name in ("feed.atom", "feed.rss"):
        etree.fromstring(files[name])  # parses: no NUL or \x0b survived
    html = story_html(snapshot_of(entries).stories[0])
    assert "<script" not in html
    assert "onclick" not in html
    assert "javascript:" not in html
    assert "alert(1)" not in html
    assert "\x00" not in html
    assert "\x0b" not in html
    doc = assert_valid_json_feed(files["feed.json"])
    assert doc["items"][0]["title"] == "Briefing: <markets> & more"


def test_an_entry_with_hundreds_of_authors_or_enclosures_credits_a_readable_few() -> None:
    # A feed chose every one of these: a 500-name byline and 300 attachments were published
    # whole, in every format, in every file that holds the story.
    entry = stored(
        "many",
        WIRE,
        title="Everyone wrote this",
        day=14,
        authors=(*(f"Author {n}" for n in range(500)), "Author 0"),
        enclosures=tuple(Enclosure(f"https://cdn.example/{n}.mp3", "audio/mpeg", 10) for n in range(300)),
    )
    files = render_feeds(snapshot_of([entry]), SETTINGS)
    atom = assert_valid_atom(files["feed.atom"])
    ns = {"a": "http://www.w3.org/2005/Atom"}
    names = atom.xpath("//a:entry/a:author/a:name/text()", namespaces=ns)
    assert names == [f"Author {n}" for n in range(MAX_AUTHORS)]
    assert len(atom.xpath("//a:entry/a:link[@rel='enclosure']", namespaces=ns)) == MAX_ENCLOSURES
    item = assert_valid_json_feed(files["feed.json"])["items"][0]
    assert [a["name"] for a in item["authors"]] == names
    assert len(item["attachments"]) == MAX_ENCLOSURES


def test_character_references_to_characters_xml_forbids_do_not_come_back_from_sanitizing() -> None:
    # nh3 decodes "&#1;" and "&#xFFFE;" into the very characters; every reader refused the feed.
    entry = stored("a", WIRE, title="Hello", day=14, content="<p>Tab&#1;le &#xFFFE; end</p>")
    files = render_feeds(snapshot_of([entry]), SETTINGS)
    assert_valid_atom(files["feed.atom"])
    assert_valid_rss(files["feed.rss"])
    for name in ("feed.atom", "feed.rss"):
        parsed = feedparser.parse(files[name])
        assert not parsed.bozo, parsed.get("bozo_exception")
    content = assert_valid_json_feed(files["feed.json"])["items"][0]["content_html"]
    assert "<p>Table  end</p>" in content


@pytest.mark.parametrize(
    ("feed", "source"),
    [
        ("https://alice:s3cret@private.example/feed", "https://private.example/feed"),
        ("https://alice@private.example:8443/feed?feed=rss2", "https://private.example:8443/feed?feed=rss2"),
        ("https://private.example/feed?token=ghp_SECRET123", None),
        ("https://private.example/feed?format=rss&API_Key=SECRET123", None),
        ("https://private.example/feed?x=1;my%5Fpassword=SECRET123", None),
        ("https://blog.example/?feed=rss2", "https://blog.example/?feed=rss2"),
    ],
)
def test_rss_source_never_publishes_the_credentials_of_a_feed_url(feed: str, source: str | None) -> None:
    files = render_feeds(
        build_snapshot([stored("a", feed, title="Hello", day=14)], {feed: "Private"}, NOW), SETTINGS
    )
    item = assert_valid_rss(files["feed.rss"]).find("channel/item")
    assert item is not None
    found = item.find("source")
    assert (found.get("url") if found is not None else None) == source
    for name, data in files.items():
        assert b"SECRET123" not in data, name
        assert b"s3cret" not in data, name


@pytest.mark.parametrize(
    ("feed", "outlet"),
    [
        ("file:///home/alice/private/drafts/feed.xml", "feed"),
        ("seeds/dispatch.rdf", "dispatch"),
        ("file:///x/seeds/my%20dispatch.rdf", "my dispatch"),
        ("file:///home/alice/private/", "Local feed"),
    ],
)
def test_a_local_feed_with_no_title_is_named_by_its_file_not_its_path(feed: str, outlet: str) -> None:
    files = render_feeds(
        build_snapshot([stored("a", feed, title="Hello", day=14)], {feed: ""}, NOW), SETTINGS
    )
    assert feedparser.parse(files["feed.atom"]).entries[0].author == outlet
    assert assert_valid_json_feed(files["feed.json"])["items"][0]["_aggregator"]["outlet"] == outlet
    for name, data in files.items():
        assert b"/home/alice" not in data, name
        assert b"seeds/" not in data, name


def test_enclosures_are_published_in_every_format() -> None:
    episode = stored(
        "ep1",
        WIRE,
        title="Episode 1",
        day=14,
        enclosures=(
            Enclosure("javascript:alert(1)", "audio/mpeg", 1),
            Enclosure("https://cdn.example/ep1.mp3", "audio/mpeg", 12_345_678),
            Enclosure("https://cdn.example/ep1.mp4", "not a type", -1),
        ),
    )
    bare = stored(
        "ep2", LEDGER, title="Episode 2", day=13, enclosures=(Enclosure("https://cdn.example/ep2"),)
    )
    files = render_feeds(snapshot_of([episode, bare]), SETTINGS)

    atom = assert_valid_atom(files["feed.atom"])
    links = [
        [dict(lk.attrib) for lk in entry.iter(f"{ATOM}link") if lk.get("rel") == "enclosure"]
        for entry in atom.iter(f"{ATOM}entry")
    ]
    assert links == [
        [
            {
                "rel": "enclosure",
                "href": "https://cdn.example/ep1.mp3",
                "type": "audio/mpeg",
                "length": "12345678",
            },
            {"rel": "enclosure", "href": "https://cdn.example/ep1.mp4"},
        ],
        [{"rel": "enclosure", "href": "https://cdn.example/ep2"}],
    ]

    rss = assert_valid_rss(files["feed.rss"])
    # One enclosure an item (RSS 2.0), with the length and type the spec requires.
    assert [[dict(e.attrib) for e in item.iter("enclosure")] for item in rss.iter("item")] == [
        [{"url": "https://cdn.example/ep1.mp3", "length": "12345678", "type": "audio/mpeg"}],
        [{"url": "https://cdn.example/ep2", "length": "0", "type": "application/octet-stream"}],
    ]
    parsed = feedparser.parse(files["feed.rss"])
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.entries[0].enclosures[0].href == "https://cdn.example/ep1.mp3"

    items = assert_valid_json_feed(files["feed.json"])["items"]
    assert [i["attachments"] for i in items] == [
        [
            {"url": "https://cdn.example/ep1.mp3", "mime_type": "audio/mpeg", "size_in_bytes": 12_345_678},
            {"url": "https://cdn.example/ep1.mp4", "mime_type": "application/octet-stream"},
        ],
        [{"url": "https://cdn.example/ep2", "mime_type": "application/octet-stream"}],
    ]


def test_also_reported_by_never_lists_the_lead_again() -> None:
    # The Ledger re-issued its article under a new guid: "Also reported by" showed the
    # outlet and link the Source line shows.
    lead = stored("k", LEDGER, title="Summit", day=14, url="https://ledger.example/a")
    reissued = stored("c", LEDGER, title="Summit", day=14, url="https://ledger.example/a", duplicate_of="k")
    # Another outlet carried it under the Ledger's link: named, not linked a second time.
    wired = stored("w", WIRE, title="Summit (wire)", day=15, url="https://ledger.example/a", duplicate_of="k")
    # Another article of the Ledger on the story, with a link of its own, stays.
    sequel = stored(
        "s", LEDGER, title="Summit, day two", day=16, url="https://ledger.example/b", duplicate_of="k"
    )
    snapshot = snapshot_of([lead, reissued, wired, sequel])
    html = story_html(snapshot.stories[0])
    assert html.count('href="https://ledger.example/a"') == 1  # the Source line's
    assert html.endswith(
        "<p>Also reported by:</p><ul><li>Wire &amp; Co: Summit (wire)</li>"
        '<li><a href="https://ledger.example/b">The Ledger</a>: Summit, day two</li></ul>'
    )
    files = render_feeds(snapshot, SETTINGS)
    item = assert_valid_json_feed(files["feed.json"])["items"][0]
    assert [c["outlet"] for c in item["_aggregator"]["also_reported_by"]] == ["Wire & Co", "The Ledger"]
    atom = assert_valid_atom(files["feed.atom"])
    related = [lk.get("href") for lk in atom.iter(f"{ATOM}link") if lk.get("rel") == "related"]
    assert related == ["https://ledger.example/b"]


def test_only_http_links_are_published() -> None:
    bad = [
        stored("a", WIRE, title="A", day=10, url="javascript:alert(1)"),
        stored("b", WIRE, title="B", day=11, url="https://b.example/ü path"),
    ]
    files = render_feeds(snapshot_of(bad), SETTINGS)
    doc = assert_valid_atom(files["feed.atom"])
    hrefs = [lk.get("href") for lk in doc.iter(f"{ATOM}link") if lk.get("rel") == "alternate"]
    assert "javascript:alert(1)" not in hrefs
    assert "https://b.example/%C3%BC%20path" in hrefs


def test_relative_links_in_content_are_not_published() -> None:
    # A reader resolves them against the output feed's own address: a link to our site, not theirs.
    body = '<p><a href="/world/x">x</a> <img src="pic.png"> <a href="https://ok.example/y">y</a></p>'
    files = render_feeds(snapshot_of([stored("a", WIRE, title="A", day=10, content=body)]), SETTINGS)
    content = assert_valid_json_feed(files["feed.json"])["items"][0]["content_html"]
    assert 'href="/world/x"' not in content
    assert 'src="pic.png"' not in content
    assert 'href="https://ok.example/y"' in content


def test_bidi_overrides_and_c1_controls_never_reach_a_title_or_name() -> None:
    # A configured feed title or topic name is not cleaned by the parse stage; "\u202e" makes
    # "evil\u202egnp.exe" read as "evilexe.png".
    titles = {WIRE: "Wire\u202e & Co\x85"}
    entry = stored("a", WIRE, title="Head\u2066line\x9b", day=10, topics=("Top\u202dic",))
    files = render_feeds(build_snapshot([entry], titles, NOW), SETTINGS)
    for name, data in files.items():
        text = data.decode()
        for char in "\u202e\u202d\u2066\x85\x9b":
            assert char not in text, (name, char)
    assert "Headline" in files["feed.atom"].decode()
    # The front page finds a tag's feed by its name in the topic list: both are cleaned alike.
    doc = assert_valid_json_feed(files["feed.json"])
    assert doc["items"][0]["tags"] == ["Topic"]
    assert doc["_aggregator"]["topics"] == [{"name": "Topic", "slug": "topic"}]


def test_an_entry_dated_in_the_future_is_shown_at_when_it_was_first_seen() -> None:
    seen = datetime(2025, 8, 18, 10, tzinfo=UTC)
    future = stored("f", WIRE, title="F", day=30, seen=seen)
    story = snapshot_of([future]).stories[0]
    assert story.published == seen


def test_an_empty_snapshot_still_makes_valid_feeds() -> None:
    files = render_feeds(snapshot_of([]), SETTINGS)
    assert_valid_atom(files["feed.atom"])
    assert_valid_rss(files["feed.rss"])
    assert assert_valid_json_feed(files["feed.json"])["items"] == []


# ------------------------------------------------------------------- stability & writing


def test_ids_and_bytes_are_stable_across_runs_and_input_order(
    grouped: tuple[list[StoredEntry], list[StoredStory]],
) -> None:
    entries, stories = grouped
    first = render_feeds(snapshot_of(entries, stories), SETTINGS)
    later = render_feeds(
        snapshot_of(list(reversed(entries)), stories, now=datetime(2025, 9, 1, tzinfo=UTC)), SETTINGS
    )
    assert first == later


def test_a_story_that_gains_coverage_keeps_its_id_and_moves_its_updated_time(
    grouped: tuple[list[StoredEntry], list[StoredStory]],
) -> None:
    entries, stories = grouped
    before = feedparser.parse(render_feeds(snapshot_of(entries, stories), SETTINGS)["feed.atom"])
    later = datetime(2025, 8, 18, 8, tzinfo=UTC)
    newcomer = stored("late", LEDGER, title="Alaska, a day later", day=17, story="s-summit", seen=later)
    stories = [replace(stories[0], updated=later, entry_ids=(*stories[0].entry_ids, "late")), stories[1]]
    after = feedparser.parse(render_feeds(snapshot_of([*entries, newcomer], stories), SETTINGS)["feed.atom"])
    old = {e.id: e for e in before.entries}
    new = {e.id: e for e in after.entries}
    summit = public_id("s-summit")
    assert old.keys() == new.keys()
    assert new[summit].updated_parsed > old[summit].updated_parsed
    assert new[summit].published == old[summit].published
    assert "Alaska, a day later" in new[summit].content[0].value


def test_publishing_writes_every_file_then_rewrites_only_what_changed(
    tmp_path: Path, grouped: tuple[list[StoredEntry], list[StoredStory]]
) -> None:
    entries, stories = grouped
    first = publish_feeds(snapshot_of(entries, stories), tmp_path, SETTINGS)
    assert len(first.files) == len(first.changed) == 12
    mtimes = {p: p.stat().st_mtime_ns for p in first.files}
    again = publish_feeds(snapshot_of(entries, stories), tmp_path, SETTINGS)
    assert again.changed == ()
    assert again.removed == ()
    assert {p: p.stat().st_mtime_ns for p in again.files} == mtimes
    assert all(oct(p.stat().st_mode & 0o777) == "0o644" for p in again.files)

    # Markets disappears: its feeds go, the whole feed changes, Russia's does not.
    without_markets = [replace(e, topics=()) if e.story == "s-brief" else e for e in entries]
    stories = [stories[0], replace(stories[1], topics=())]
    third = publish_feeds(snapshot_of(without_markets, stories), tmp_path, SETTINGS)
    assert {p.name for p in third.removed} == {"markets.atom", "markets.rss", "markets.json"}
    assert tmp_path / "feed.atom" in third.changed
    assert tmp_path / "topics" / "russia.atom" not in third.changed
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_reader_never_sees_half_a_file(tmp_path: Path) -> None:
    path = tmp_path / "feed.atom"
    versions = [b"a" * 2_000_000, b"b" * 1_000_000]
    write_atomic(path, versions[0])
    seen: set[bytes] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(path.read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(20):
            write_atomic(path, versions[i % 2 == 0])
    finally:
        stop.set()
        reader.join()
    assert seen <= set(versions)
    assert not [p for p in tmp_path.iterdir() if p.name != "feed.atom"]


def test_temporary_files_a_crash_left_are_removed_once_no_writer_can_own_them(
    tmp_path: Path, entries: list[StoredEntry]
) -> None:
    # A process killed between mkstemp and the rename left .feed.atom.XXXX.tmp for ever.
    snapshot = snapshot_of(entries)
    (tmp_path / "topics").mkdir()
    old = [tmp_path / ".feed.atom.k3j_9x2a.tmp", tmp_path / "topics" / ".russia.json.abcd1234.tmp"]
    fresh = tmp_path / ".feed.rss.zzzz9999.tmp"  # another process may be writing it now
    other = tmp_path / ".notes.txt.abcd1234.tmp"  # not ours
    for path, age in [
        *((p, timedelta(hours=1)) for p in old),
        (fresh, timedelta(minutes=1)),
        (other, timedelta(days=1)),
    ]:
        path.write_bytes(b"half a feed")
        when = (snapshot.taken - age).timestamp()
        os.utime(path, (when, when))
    result = publish_feeds(snapshot, tmp_path, SETTINGS)
    assert set(old) <= set(result.removed)
    assert not any(p.exists() for p in old)
    assert fresh.exists()
    assert other.exists()


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "feed.atom"
    write_atomic(path, b"old")
    with pytest.raises(TypeError):
        write_atomic(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["feed.atom"]


# ------------------------------------------------------------------- the seeds, end to end


def test_the_seed_feeds_publish_valid_feeds_from_the_store(tmp_path: Path, now: datetime) -> None:
    root = Path(__file__).resolve().parent.parent
    config = tmp_path / "feeds.yaml"
    config.write_text(
        (root / "feeds.yaml").read_text().replace("url: seeds/", f"url: {root}/seeds/"), encoding="utf-8"
    )
    loaded = load_config(config)
    with Store.open(f"sqlite:///{tmp_path / 'agg.sqlite'}") as store:
        asyncio.run(pipeline.poll_feeds(loaded, store, now))
        titles = {s.url: s.title or s.url for s in store.feed_states()}
        snapshot = read_snapshot(store, titles, now, at_least=50)
        count = sum(1 for _ in store.iter_entries())
    result = publish_feeds(snapshot, tmp_path / "public", SETTINGS)
    assert {p.name for p in result.files} == {"feed.atom", "feed.rss", "feed.json"}
    atom = assert_valid_atom((tmp_path / "public" / "feed.atom").read_bytes())
    assert len(atom.findall(f"{ATOM}entry")) == len(snapshot.stories) == count  # no dedupe yet: one each
    assert_valid_rss((tmp_path / "public" / "feed.rss").read_bytes())
    assert_valid_json_feed((tmp_path / "public" / "feed.json").read_bytes())
    for name in ("feed.atom", "feed.rss"):
        parsed = feedparser.parse((tmp_path / "public" / name).read_bytes())
        assert not parsed.bozo
        assert len(parsed.entries) == count
        assert all(e.title and e.id.startswith("urn:uuid:") for e in parsed.entries)


def test_the_seed_output_feeds_match_the_golden_files(tmp_path: Path, now: datetime) -> None:
    """What ``aggregator run --once`` writes to public/ on a fresh clone, byte for byte.

    Refresh on purpose only: ``AGGREGATOR_UPDATE_GOLDEN=1 .venv/bin/python -m pytest
    tests/test_publish.py tests/test_newsletters.py``, then read the diff.
    """
    root = Path(__file__).resolve().parent.parent
    shutil.copytree(root / "seeds", tmp_path / "seeds")
    shutil.copy(root / "feeds.yaml", tmp_path / "feeds.yaml")
    loaded = load_config(tmp_path / "feeds.yaml")
    with Store.open(loaded.database_url) as store:
        report = asyncio.run(pipeline.run_cycle(loaded, store, now, only_due=False))
    assert report.duplicates > 0  # the golden files show syndicated copies folded into stories
    public = tmp_path / loaded.config.output.dir
    for name in ("feed.atom", "feed.rss", "feed.json"):
        actual = (public / name).read_bytes()
        if UPDATE_GOLDEN:
            (GOLDEN / name).write_bytes(actual)
        assert actual == (GOLDEN / name).read_bytes(), (
            f"{name} changed: rerun with AGGREGATOR_UPDATE_GOLDEN=1 if on purpose"
        )
    assert_valid_atom((GOLDEN / "feed.atom").read_bytes())
    assert_valid_rss((GOLDEN / "feed.rss").read_bytes())
    assert_valid_json_feed((GOLDEN / "feed.json").read_bytes())


class CountingStore:
    """A real store that remembers which windows and ids ``read_snapshot`` asked it for."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.windows: list[datetime] = []
        self.by_id: list[str] = []

    def entries_first_seen_since(self, since: datetime) -> list[StoredEntry]:
        self.windows.append(since)
        return self.store.entries_first_seen_since(since)

    def get_entries(self, ids: Any) -> list[StoredEntry]:
        ids = list(ids)
        self.by_id += ids
        return self.store.get_entries(ids)

    def entry_counts(self) -> dict[str, int]:
        return self.store.entry_counts()

    def iter_stories(self) -> list[StoredStory]:
        return list(self.store.iter_stories())


def test_read_snapshot_reads_a_recent_window_and_reaches_back_only_as_far_as_needed(
    database_url: str, now: datetime
) -> None:
    with Store.open(database_url) as store:
        store.sync_feeds(list(TITLES.items()))
        saved: dict[str, list[Entry]] = {}

        def save(item: StoredEntry) -> str:
            saved.setdefault(item.feed_url, []).append(item.entry)
            state = FeedState(url=item.feed_url, status=FeedStatus.OK, last_fetch=item.first_seen)
            store.save_poll(state, saved[item.feed_url], item.first_seen)
            return entry_id(item.feed_url, item.entry.guid)

        ancient = save(stored("ancient", DISPATCH, title="Ancient", day=1, seen=now - timedelta(days=40)))
        old = save(stored("old", WIRE, title="Old", day=1))
        copy = save(stored("copy", LEDGER, title="Old", day=17))
        save(stored("new", WIRE, title="New", day=17))
        store.save_duplicates([DuplicateEvidence(copy, old, "url", 1.0)])
        source = CountingStore(store)

        snapshot = read_snapshot(source, TITLES, now, at_least=2)
        assert [s.headline for s in snapshot.stories] == ["New", "Old"]
        assert source.windows == [now - RECENT_WINDOW]  # two stories in two weeks: enough
        assert source.by_id == [old]  # the kept copy of a recent duplicate, read by id
        story = snapshot.stories[1]
        assert (story.lead.id, [c.entry_id for c in story.coverage]) == (old, [copy])
        assert story.first_seen == datetime(2025, 8, 1, 9, 5, tzinfo=UTC)  # the old copy's

        source = CountingStore(store)
        snapshot = read_snapshot(source, TITLES, now, at_least=3)
        assert [s.headline for s in snapshot.stories] == ["New", "Old", "Ancient"]
        assert source.windows == [now - RECENT_WINDOW * n for n in (1, 2, 4)]  # 14, 28, 56 days back

        source = CountingStore(store)
        assert len(read_snapshot(source, TITLES, now, at_least=50).stories) == 3
        assert len(source.windows) == 3  # the 56-day window held every entry: no further

        # A digest's window: only what was first seen since, with its stories whole.
        snapshot = read_snapshot(store, TITLES, now, since=now - timedelta(days=2))
        assert [s.headline for s in snapshot.stories] == ["New", "Old"]
        assert ancient not in {s.lead.id for s in snapshot.stories}


def test_a_date_before_1970_is_a_placeholder_and_the_story_is_dated_when_first_seen() -> None:
    # Hugo's zero date (0001-01-01) means "no date": taken as given, a new article showed
    # "published 0001" and sank below every other story, out of the newest 50 for good.
    zero = datetime(1, 1, 1, tzinfo=UTC)
    entry = replace(
        stored("z", LEDGER, title="Zero", day=18), first_seen=datetime(2025, 8, 18, 9, 5, tzinfo=UTC)
    )
    entry = replace(entry, entry=replace(entry.entry, published=zero))
    files = render_feeds(build_snapshot([entry], TITLES, NOW, []), SETTINGS)
    item = json.loads(files["feed.json"])["items"][0]
    assert item["date_published"] == "2025-08-18T09:05:00Z"
    assert feedparser.parse(files["feed.atom"]).entries[0].published == "2025-08-18T09:05:00Z"
    assert feedparser.parse(files["feed.rss"]).entries[0].published == "Mon, 18 Aug 2025 09:05:00 GMT"

    older = [stored(f"o{i}", WIRE, title=f"Older {i}", day=1 + i % 10) for i in range(3)]
    files = render_feeds(build_snapshot([*older, entry], TITLES, NOW, []), replace(SETTINGS, max_stories=2))
    assert [e.title for e in feedparser.parse(files["feed.atom"]).entries] == ["Zero", "Older 2"]


def test_a_quiet_topic_keeps_its_feed_and_its_older_stories(tmp_path: Path, now: datetime) -> None:
    # The stories read cover the newest max_stories of the whole feed (14 days on a busy
    # instance): a configured topic quiet for longer lost its feed (404) though it still has
    # stories.  An automatic topic goes with its last recent story, as before.
    config = tmp_path / "feeds.yaml"
    config.write_text(
        f"feeds:\n  - url: {WIRE}\n    title: Wire\nnewsletters: []\noutput:\n  max_stories: 3\n"
        "topics:\n  - name: Arctic\n    keywords: [Arctic]\n",
        encoding="utf-8",
    )
    loaded = load_config(config)
    arctic = tmp_path / "public" / "topics" / "arctic.atom"

    def arctic_titles() -> list[str]:
        return [e.title for e in feedparser.parse(arctic.read_bytes()).entries]

    with Store.open(loaded.database_url) as store:
        store.sync_feeds([(WIRE, "Wire")])

        def save(guid: str, title: str, seen: datetime, topic: str | None = None) -> None:
            url = f"https://wire.example/{guid}"
            entry = Entry(guid, url, None, title, published=seen, content_html=f"<p>{title}</p>")
            store.save_poll(FeedState(url=WIRE, status=FeedStatus.OK, last_fetch=seen), [entry], seen)
            if topic is not None:
                store.save_stories(
                    [(f"s-{guid}", title, (topic,))], [(entry_id(WIRE, guid), f"s-{guid}")], seen
                )

        for days in (40, 30, 20, 3):
            save(f"arctic{days}", f"Arctic, {days} days ago", now - timedelta(days=days), "Arctic")
        save("auto", "Once in the news", now - timedelta(days=3), "Automatic")
        for hours in range(5):
            save(f"news{hours}", f"News, {hours} hours ago", now - timedelta(hours=hours))
        pipeline.publish_output(loaded, store, now)
        assert arctic_titles() == ["Arctic, 3 days ago", "Arctic, 20 days ago", "Arctic, 30 days ago"]
        whole = feedparser.parse((tmp_path / "public" / "feed.atom").read_bytes())
        assert [e.title for e in whole.entries] == [f"News, {h} hours ago" for h in range(3)]

        later = now + timedelta(days=12)  # busy days, and nothing new about the Arctic
        for hours in range(5):
            save(f"more{hours}", f"More, {hours} hours ago", later - timedelta(hours=hours))
        result = pipeline.publish_output(loaded, store, later)
    assert {p.name for p in result.removed} == {"automatic.atom", "automatic.rss", "automatic.json"}
    assert arctic_titles() == ["Arctic, 3 days ago", "Arctic, 20 days ago", "Arctic, 30 days ago"]


def test_an_empty_feed_keeps_its_bytes_from_one_cycle_to_the_next() -> None:
    first = render_feeds(build_snapshot([], TITLES, datetime(2025, 8, 18, 12, tzinfo=UTC), []), SETTINGS)
    later = render_feeds(build_snapshot([], TITLES, datetime(2025, 8, 19, 12, tzinfo=UTC), []), SETTINGS)
    assert first == later


def test_a_late_copy_given_a_story_of_its_own_is_still_one_entry_with_its_original() -> None:
    # The story stage sees only recent entries: a copy whose original is older than its
    # window got a new story, and the combined feed carried the one article twice.
    moment = datetime(2025, 8, 10, tzinfo=UTC)
    original = stored("orig", WIRE, title="Leaders meet in Alaska", day=10, story="s-old")
    copy = stored("copy", LEDGER, title="Leaders meet in Alaska", day=16, duplicate_of="orig", story="s-new")
    stories = [
        StoredStory("s-old", "Leaders meet in Alaska", (), moment, moment, ("orig",)),
        StoredStory("s-new", "Leaders meet in Alaska", (), moment, moment, ("copy",)),
    ]
    snapshot = snapshot_of([original, copy], stories)
    (story,) = snapshot.stories
    assert {story.lead.id, *(c.entry_id for c in story.coverage)} == {"orig", "copy"}
    atom = etree.fromstring(render_feeds(snapshot, SETTINGS)["feed.atom"])
    assert len(atom.findall("{http://www.w3.org/2005/Atom}entry")) == 1


# ------------------------------------------------------------------- what a subscriber sees over time


def save_entry(store: Store, feed: str, guid: str, title: str, seen: datetime, **entry: Any) -> str:
    """Store one entry of ``feed`` as a poll at ``seen`` would; its id."""
    stored_entry = Entry(
        guid,
        entry.pop("url", f"https://{guid}.example/a"),
        None,
        title,
        published=seen,
        content_html=f"<p>Body of {guid}</p>",
        **entry,
    )
    store.save_poll(FeedState(url=feed, status=FeedStatus.OK, last_fetch=seen), [stored_entry], seen)
    return entry_id(feed, guid)


def published_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def atom_titles(data: bytes) -> list[str]:
    return [e.findtext(f"{ATOM}title") or "" for e in etree.fromstring(data).iter(f"{ATOM}entry")]


def test_a_feed_removed_from_feeds_yaml_leaves_every_output_and_comes_back_when_added_again(
    sqlite_url: str, tmp_path: Path, now: datetime
) -> None:
    # The snapshot read every stored entry: a feed removed from feeds.yaml kept its stories
    # (under its title) in the combined feed, its topic feeds and the digests.
    public = tmp_path / "public"
    with Store.open(sqlite_url) as store:
        store.sync_feeds([(WIRE, "Wire & Co"), (LEDGER, "The Ledger")])
        day = datetime(2025, 8, 14, 9, tzinfo=UTC)
        summit = save_entry(store, WIRE, "summit", "Leaders meet in Alaska", day)
        copy = save_entry(
            store,
            LEDGER,
            "copy",
            "Leaders meet in Alaska",
            day + timedelta(hours=2),
            url="https://ledger.example/1",
        )
        markets = save_entry(store, LEDGER, "markets", "Markets calm", day + timedelta(days=2))
        wire_only = save_entry(store, WIRE, "wire-only", "Only on the wire", day + timedelta(days=3))
        store.save_duplicates([DuplicateEvidence(copy, summit, "url", 1.0)])
        store.save_stories(
            [
                ("s-summit", "Leaders meet in Alaska", ("Russia",)),
                ("s-markets", "Markets calm", ("Markets",)),
                ("s-wire", "Only on the wire", ("Wire news",)),
            ],
            [(summit, "s-summit"), (copy, "s-summit"), (markets, "s-markets"), (wire_only, "s-wire")],
            day + timedelta(days=3),
        )
        titles = store.feed_titles()

        def publish(feeds: list[str]) -> PublishResult:
            snapshot = read_snapshot(store, titles, now, at_least=50, per_topic=50, feeds=feeds)
            return publish_feeds(snapshot, public, SETTINGS)

        publish([WIRE, LEDGER])
        assert atom_titles((public / "feed.atom").read_bytes()) == [
            "Only on the wire",
            "Markets calm",
            "Leaders meet in Alaska",
        ]

        # The wire is removed from feeds.yaml (its entries stay stored).
        result = publish([LEDGER])
        assert {p.name for p in result.removed} == {"wire-news.atom", "wire-news.rss", "wire-news.json"}
        files = published_files(public)
        assert set(files) == {
            *(f"feed.{f}" for f in ("atom", "rss", "json")),
            *(f"topics/{t}.{f}" for t in ("markets", "russia") for f in ("atom", "rss", "json")),
        }
        for name, data in files.items():
            for gone in (
                b"Only on the wire",
                b"Wire &amp; Co",
                b"Wire & Co",
                b"summit.example",
                b"wire.example",
            ):
                assert gone not in data, (name, gone)
        atom = assert_valid_atom(files["feed.atom"])
        assert atom_titles(files["feed.atom"]) == ["Markets calm", "Leaders meet in Alaska"]
        # The story the two feeds shared stays, with its id, shown from the Ledger's copy.
        (entry,) = [e for e in atom.iter(f"{ATOM}entry") if e.findtext(f"{ATOM}id") == public_id("s-summit")]
        assert entry.find(f"{ATOM}link[@rel='alternate']").get("href") == "https://ledger.example/1"
        assert entry.findtext(f"{ATOM}author/{ATOM}name") == "The Ledger"
        item = next(i for i in json.loads(files["feed.json"])["items"] if i["id"] == public_id("s-summit"))
        assert item["_aggregator"] == {
            "about": item["_aggregator"]["about"],
            "outlet": "The Ledger",
            "also_reported_by": [],
        }
        assert atom_titles(files["topics/russia.atom"]) == ["Leaders meet in Alaska"]
        assert_valid_rss(files["feed.rss"])
        assert_valid_json_feed(files["feed.json"])

        # A digest reads the same snapshot: the wire's stories are gone there too, and the
        # shared story is not new again (it was first seen when the wire carried it).
        digest_view = read_snapshot(store, titles, now, since=day - timedelta(days=1), feeds=[LEDGER])
        assert [s.headline for s in digest_view.stories] == ["Markets calm", "Leaders meet in Alaska"]
        shared = digest_view.stories[1]
        assert (shared.feed_urls, shared.outlets, shared.first_seen) == ((LEDGER,), ("The Ledger",), day)
        assert store.get_entries([wire_only])[0].entry.title == "Only on the wire"  # nothing deleted

        # Added again: everything is back, as it was.
        publish([WIRE, LEDGER])
        assert atom_titles((public / "feed.atom").read_bytes()) == [
            "Only on the wire",
            "Markets calm",
            "Leaders meet in Alaska",
        ]
        assert (public / "topics" / "wire-news.atom").exists()


def test_a_removed_feed_leaves_the_published_feeds_end_to_end(tmp_path: Path, now: datetime) -> None:
    config = tmp_path / "feeds.yaml"
    both = (
        f"feeds:\n  - url: {WIRE}\n    title: Wire\n  - url: {LEDGER}\n    title: Ledger\nnewsletters: []\n"
    )
    config.write_text(both, encoding="utf-8")
    with Store.open(load_config(config).database_url) as store:
        store.sync_feeds([(WIRE, "Wire"), (LEDGER, "Ledger")])
        save_entry(store, WIRE, "w", "On the wire", now - timedelta(hours=2))
        save_entry(store, LEDGER, "l", "In the ledger", now - timedelta(hours=3))
        pipeline.publish_output(load_config(config), store, now)
        assert atom_titles((tmp_path / "public" / "feed.atom").read_bytes()) == [
            "On the wire",
            "In the ledger",
        ]
        config.write_text(both.replace(f"  - url: {WIRE}\n    title: Wire\n", ""), encoding="utf-8")
        pipeline.publish_output(load_config(config), store, now + timedelta(minutes=1))
    assert atom_titles((tmp_path / "public" / "feed.atom").read_bytes()) == ["In the ledger"]


def feed_updated_times(folder: Path, slug: str | None = None) -> set[datetime]:
    """What every format of one published feed says of when it was updated."""
    atom = etree.fromstring((folder / feed_path("atom", slug)).read_bytes())
    rss = etree.fromstring((folder / feed_path("rss", slug)).read_bytes())
    times = {
        datetime.fromisoformat(atom.findtext(f"{ATOM}updated") or ""),
        parsedate_to_datetime(rss.findtext("channel/lastBuildDate") or ""),
    }
    if slug is None:
        times.add(
            datetime.fromisoformat(json.loads((folder / "feed.json").read_bytes())["_aggregator"]["updated"])
        )
    return times


def test_a_feeds_updated_time_never_goes_back_when_its_newest_story_leaves_it(
    sqlite_url: str, tmp_path: Path
) -> None:
    # <updated> was the newest of the stories shown: when the newest story left a topic (or
    # the feed that carried it was removed), the feed said it was updated days earlier than
    # it said the publish before.
    public = tmp_path / "public"
    day = datetime(2025, 8, 14, 9, tzinfo=UTC)
    with Store.open(sqlite_url) as store:
        store.sync_feeds([(WIRE, "Wire & Co"), (LEDGER, "The Ledger")])
        ice = save_entry(store, WIRE, "ice", "Arctic ice", day)
        store.save_stories([("s-ice", "Arctic ice", ("Arctic",))], [(ice, "s-ice")], day)
        ships = save_entry(store, LEDGER, "ships", "Arctic shipping", day + timedelta(days=2))
        store.save_stories(
            [("s-ships", "Arctic shipping", ("Arctic",))], [(ships, "s-ships")], day + timedelta(days=2)
        )

        def publish(when: datetime, feeds: list[str] | None = None) -> PublishResult:
            # feeds= only when removing one: the first steps need no snapshot change to fail before the fix.
            options: dict[str, Any] = {"at_least": 50, "per_topic": 50}
            if feeds is not None:
                options["feeds"] = feeds
            snapshot = read_snapshot(store, store.feed_titles(), when, **options)
            return publish_feeds(snapshot, public, SETTINGS)

        publish(day + timedelta(days=2, hours=1))
        assert feed_updated_times(public, "arctic") == {day + timedelta(days=2)}
        assert feed_updated_times(public) == {day + timedelta(days=2)}

        # The story stage moves the shipping story out of the Arctic topic.
        moved = day + timedelta(days=3)
        store.save_stories([("s-ships", "Arctic shipping", ())], [(ships, "s-ships")], moved)
        publish(moved + timedelta(hours=1))
        assert atom_titles((public / "topics" / "arctic.atom").read_bytes()) == ["Arctic ice"]
        # Its newest story is the ice (day 14), but the feed changed now, not then.
        assert feed_updated_times(public, "arctic") == {moved + timedelta(hours=1)}
        assert feed_updated_times(public) == {moved}  # the shipping story changed at ``moved``

        # Nothing new: every file keeps its bytes, its updated time included.
        again = publish(moved + timedelta(hours=5))
        assert again.changed == ()
        assert feed_updated_times(public, "arctic") == {moved + timedelta(hours=1)}

        # The Ledger is removed from feeds.yaml: the whole feed loses its newest story.
        removed_at = moved + timedelta(hours=6)
        publish(removed_at, feeds=[WIRE])
        assert atom_titles((public / "feed.atom").read_bytes()) == ["Arctic ice"]
        assert feed_updated_times(public) == {removed_at}

        # A newer story moves it forward again, to that story's time.
        fresh = removed_at + timedelta(hours=1)
        thaw = save_entry(store, WIRE, "thaw", "Arctic thaw", fresh)
        store.save_stories([("s-thaw", "Arctic thaw", ("Arctic",))], [(thaw, "s-thaw")], fresh)
        publish(fresh + timedelta(minutes=5), feeds=[WIRE])
        assert feed_updated_times(public, "arctic") == feed_updated_times(public) == {fresh}
    assert_valid_atom((public / "topics" / "arctic.atom").read_bytes())
    assert_valid_rss((public / "topics" / "arctic.rss").read_bytes())


def test_an_unchanged_feed_published_again_keeps_its_updated_time_from_the_previous_publish(
    tmp_path: Path, grouped: tuple[list[StoredEntry], list[StoredStory]]
) -> None:
    # Same stories, later clock: same bytes (the clock is only read when a feed changed).
    entries, stories = grouped
    publish_feeds(snapshot_of(entries, stories), tmp_path, SETTINGS)
    before = published_files(tmp_path)
    result = publish_feeds(snapshot_of(entries, stories, now=NOW + timedelta(days=3)), tmp_path, SETTINGS)
    assert result.changed == ()
    assert published_files(tmp_path) == before


def test_very_long_titles_are_cut_at_a_word_in_every_output_and_kept_whole_in_the_store(
    sqlite_url: str, tmp_path: Path, now: datetime
) -> None:
    # A hostile feed's 5,000-character title was published whole, in every format.
    long_title = " ".join(f"word{i:04d}" for i in range(560))[:5000]
    assert len(long_title) == 5000
    unbroken = "長" * 5000  # no spaces (Chinese, Japanese): cut where the limit is
    with Store.open(sqlite_url) as store:
        store.sync_feeds([(WIRE, "Wire & Co"), (LEDGER, "The Ledger")])
        lead = save_entry(store, WIRE, "long", long_title, now - timedelta(hours=2))
        copy = save_entry(store, LEDGER, "copy", long_title + " (copy)", now - timedelta(hours=1))
        save_entry(store, LEDGER, "cjk", unbroken, now - timedelta(hours=3))
        store.save_stories([("s-long", "Long", ())], [(lead, "s-long"), (copy, "s-long")], now)
        snapshot = read_snapshot(store, store.feed_titles(), now, at_least=50)
        publish_feeds(snapshot, tmp_path, SETTINGS)
        assert store.get_entries([lead])[0].entry.title == long_title  # stored whole

    def assert_cut(title: str, original: str) -> None:
        assert len(title) <= 300
        assert title.endswith("…")
        kept = title.removesuffix("…")
        assert original.startswith(kept)
        assert len(kept) > 150
        if " " in original[:300]:
            assert original[len(kept)] == " "  # a whole word, not half of one

    atom = etree.fromstring((tmp_path / "feed.atom").read_bytes())
    rss = etree.fromstring((tmp_path / "feed.rss").read_bytes())
    doc = json.loads((tmp_path / "feed.json").read_bytes())
    headlines = [
        [e.findtext(f"{ATOM}title") or "" for e in atom.iter(f"{ATOM}entry")],
        [i.findtext("title") or "" for i in rss.iter("item")],
        [i["title"] for i in doc["items"]],
    ]
    for long, cjk in headlines:
        assert_cut(long, long_title)
        assert_cut(cjk, unbroken)
        assert len(cjk) == 300
    # The other outlet's headline, in the "Also reported by" list and links, is cut too.
    (other,) = doc["items"][0]["_aggregator"]["also_reported_by"]
    assert_cut(other["title"], long_title + " (copy)")
    related = [lk.get("title") or "" for lk in atom.iter(f"{ATOM}link") if lk.get("rel") == "related"]
    assert related
    assert all(len(t) <= 300 for t in related)
    assert max(len(t) for t in re.findall(r"<li>.*?</li>", doc["items"][0]["content_html"])) < 600
    # The digest is built from the same snapshot: the same headline.
    assert snapshot.stories[0].headline == headlines[0][0]


def test_the_configured_language_is_in_every_format(tmp_path: Path, entries: list[StoredEntry]) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(
        f"feeds:\n  - url: {WIRE}\nnewsletters: []\noutput:\n  language: en-GB\n", encoding="utf-8"
    )
    assert load_config(config).config.output.language == "en-GB"
    settings = replace(SETTINGS, language="en-GB")
    files = render_feeds(snapshot_of(entries), settings)
    for slug in (None, "russia"):
        if slug is not None and feed_path("atom", slug) not in files:
            continue
        atom = assert_valid_atom(files[feed_path("atom", slug)])
        assert atom.get("{http://www.w3.org/XML/1998/namespace}lang") == "en-GB"
        assert feedparser.parse(files[feed_path("atom", slug)]).feed.language == "en-GB"
        rss = assert_valid_rss(files[feed_path("rss", slug)])
        assert rss.findtext("channel/language") == "en-GB"
        assert feedparser.parse(files[feed_path("rss", slug)]).feed.language == "en-GB"
        assert assert_valid_json_feed(files[feed_path("json", slug)])["language"] == "en-GB"

    # Not configured: no language is claimed.
    files = render_feeds(snapshot_of(entries), SETTINGS)
    assert b"xml:lang" not in files["feed.atom"]
    assert b"<language>" not in files["feed.rss"]
    assert "language" not in json.loads(files["feed.json"])


@pytest.mark.parametrize("value", ["english", "en_GB", "", "en-", "e"])
def test_a_language_that_is_no_language_tag_is_a_config_error(tmp_path: Path, value: str) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(
        f"feeds:\n  - url: {WIRE}\nnewsletters: []\noutput:\n  language: '{value}'\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="language"):
        load_config(config)


def test_the_configured_language_is_published_end_to_end(tmp_path: Path, now: datetime) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(
        f"feeds:\n  - url: {WIRE}\nnewsletters: []\noutput:\n  language: fr\n", encoding="utf-8"
    )
    loaded = load_config(config)
    with Store.open(loaded.database_url) as store:
        pipeline.publish_output(loaded, store, now)
    assert b'xml:lang="fr"' in (tmp_path / "public" / "feed.atom").read_bytes()


# ------------------------------------------------------------------- entries' updated times

ITEM = """<item><title>{title}</title><link>https://wire.example/thaw</link><guid>thaw-1</guid>
<pubDate>Mon, 18 Aug 2025 09:00:00 GMT</pubDate>{extra}
<description>{summary}</description>
<content:encoded><![CDATA[<p>The sea ice thawed early this year.</p>]]></content:encoded></item>"""


def write_local_feed(path: Path, when: datetime, **item: str) -> None:
    """A one-item RSS file whose modification time is ``when``, so that a poll reads it again."""
    fields = {"title": "Arctic thaw", "extra": "", "summary": "Sea ice thawed early.", **item}
    path.write_text(
        '<?xml version="1.0"?><rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">'
        "<channel><title>Wire</title><link>https://wire.example/</link><description>d</description>"
        + ITEM.format(**fields)
        + "</channel></rss>",
        encoding="utf-8",
    )
    os.utime(path, (when.timestamp(), when.timestamp()))


def test_an_entry_changed_only_where_no_output_shows_it_keeps_its_updated_time(
    tmp_path: Path, now: datetime
) -> None:
    # The source feed changed what the outputs never show (its own categories, a summary
    # beside the full text): the store counts the entry updated, and every entry's
    # <updated> / date_modified moved with it, so readers were told of a change they
    # could not find, and every file (and its ETag) was rewritten each time.
    feed = tmp_path / "wire.rss"
    config = tmp_path / "feeds.yaml"
    config.write_text("feeds:\n  - url: wire.rss\n    title: Wire\nnewsletters: []\n", encoding="utf-8")
    loaded = load_config(config)
    public = tmp_path / "public"

    def cycle(when: datetime) -> pipeline.CycleReport:
        with Store.open(loaded.database_url) as store:
            return asyncio.run(pipeline.run_cycle(loaded, store, when, only_due=False))

    write_local_feed(feed, now)
    cycle(now)
    first = published_files(public)
    assert feed_updated_times(public) == {now}

    later = now + timedelta(hours=1)
    write_local_feed(feed, later, extra="<category>Climate</category>", summary="Ice thawed early.")
    report = cycle(later)
    assert report.poll.updated_entries == 1  # the store took it as a new version
    assert report.published.changed == ()
    assert published_files(public) == first

    # A change a reader can see (a corrected headline) moves it, and the feed's, to then.
    fixed = now + timedelta(hours=2)
    write_local_feed(feed, fixed, extra="<category>Climate</category>", title="Arctic thaw, corrected")
    report = cycle(fixed)
    assert {p.name for p in report.published.changed} == {"feed.atom", "feed.rss", "feed.json"}
    assert feed_updated_times(public) == {fixed}
    atom = assert_valid_atom((public / "feed.atom").read_bytes())
    assert [e.findtext(f"{ATOM}updated") for e in atom.iter(f"{ATOM}entry")] == ["2025-08-18T14:00:00Z"]
    item = assert_valid_json_feed((public / "feed.json").read_bytes())["items"][0]
    assert (item["title"], item["date_modified"]) == ("Arctic thaw, corrected", "2025-08-18T14:00:00Z")


def test_a_topic_listed_only_in_the_json_feed_changing_leaves_the_atom_and_rss_files_alone(
    tmp_path: Path,
) -> None:
    # The whole JSON Feed lists every topic (for the front page); a topic whose stories are
    # all older than the whole feed's newest ``max_stories`` changed that list alone, and
    # feed.atom and feed.rss were rewritten too, with a new <updated> and the same entries.
    settings = replace(SETTINGS, max_stories=1)
    moment = datetime(2025, 8, 17, tzinfo=UTC)
    entries = [
        stored("new", WIRE, title="Arctic ice", day=16, story="s-new", topics=("Arctic",)),
        stored("old", LEDGER, title="Markets calm", day=12, story="s-old", topics=("Markets",)),
    ]
    stories = [
        StoredStory("s-new", "Arctic ice", ("Arctic",), moment, moment, ("new",)),
        StoredStory("s-old", "Markets calm", ("Markets",), moment, moment, ("old",)),
    ]
    publish_feeds(snapshot_of(entries, stories), tmp_path, settings)
    before = published_files(tmp_path)
    assert atom_titles(before["feed.atom"]) == ["Arctic ice"]

    renamed = [stories[0], replace(stories[1], topics=("Economy",), updated=moment + timedelta(hours=1))]
    result = publish_feeds(snapshot_of(entries, renamed, now=NOW + timedelta(days=1)), tmp_path, settings)
    assert {p.relative_to(tmp_path).as_posix() for p in result.changed} == {
        "feed.json",
        *(f"topics/economy.{fmt}" for fmt in ("atom", "rss", "json")),
    }
    after = published_files(tmp_path)
    assert (after["feed.atom"], after["feed.rss"]) == (before["feed.atom"], before["feed.rss"])
    listed = json.loads(after["feed.json"])["_aggregator"]["topics"]
    assert [t["name"] for t in listed] == ["Arctic", "Economy"]
    # The JSON Feed changed now, and says so; read again, nothing moves.
    assert json.loads(after["feed.json"])["_aggregator"]["updated"] == "2025-08-19T12:00:00Z"
    again = publish_feeds(snapshot_of(entries, renamed, now=NOW + timedelta(days=2)), tmp_path, settings)
    assert again.changed == ()


def test_a_configured_topic_with_no_story_keeps_its_feed_not_a_404(entries: list[StoredEntry]) -> None:
    # Retention removed a quiet topic's last stories (or nothing matched it yet): its files
    # were deleted as leftovers, and readers subscribed to topics/rare.atom got a 404.
    settings = replace(SETTINGS, kept_topics=("Rare",))
    files = render_feeds(snapshot_of(entries), settings)
    atom = assert_valid_atom(files["topics/rare.atom"])
    assert atom.findall("{http://www.w3.org/2005/Atom}entry") == []
    assert assert_valid_json_feed(files["topics/rare.json"])["items"] == []
    assert_valid_rss(files["topics/rare.rss"])
    whole = json.loads(files["feed.json"])
    assert "Rare" not in json.dumps(whole["_aggregator"])  # the front page lists topics with stories
