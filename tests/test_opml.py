"""OPML in and out: several readers' exports read the same way, a round trip keeps feeds and
topics, importing twice adds nothing, and hostile or broken files are refused."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aggregator.config import FeedConfig, load_config
from aggregator.configedit import ConfigDocument
from aggregator.opml import OpmlError, import_subscriptions, parse_opml, render_opml

OPML_DIR = Path(__file__).parent / "opml"
SAMPLES = sorted(OPML_DIR.glob("*.opml"))
NOW = datetime(2025, 8, 18, 12, 0, tzinfo=UTC)


def test_there_are_samples_from_six_readers() -> None:
    assert {p.stem for p in SAMPLES} == {
        "feedly",
        "inoreader",
        "netnewswire",
        "miniflux",
        "freshrss",
        "thunderbird",
    }


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_reader_exports_give_the_expected_feeds(sample: Path) -> None:
    expected = json.loads(sample.with_suffix(".expected.json").read_text(encoding="utf-8"))
    document = parse_opml(sample.read_bytes(), str(sample))
    assert document.title == expected["title"]
    assert [
        {"url": s.url, "title": s.title, "topics": list(s.topics)} for s in document.subscriptions
    ] == expected["feeds"]
    assert len(document.skipped) == expected["skipped"]


def test_a_feed_in_two_folders_is_one_feed_with_both_topics() -> None:
    document = parse_opml((OPML_DIR / "feedly.opml").read_bytes(), "feedly.opml")
    ars = [s for s in document.subscriptions if "arstechnica" in s.url]
    assert len(ars) == 1
    assert ars[0].topics == ("Tech", "News")


def test_unusable_urls_are_skipped_with_a_reason() -> None:
    document = parse_opml((OPML_DIR / "freshrss.opml").read_bytes(), "freshrss.opml")
    assert document.skipped == (
        "outline 'Local scraper': not an http(s) feed URL: 'javascript:void(0)' (freshrss.opml:13)",
    )
    assert "http://lwn.net/headlines/rss" in [s.url for s in document.subscriptions]  # from feed://


def test_the_opml2_category_attribute_names_topics() -> None:
    data = b"""<opml version="2.0"><head/><body>
      <outline text="A" xmlUrl="https://a.example/feed" category="/News/World,/Tech"/>
    </body></opml>"""
    (sub,) = parse_opml(data, "x.opml").subscriptions
    assert sub.topics == ("World", "Tech")
    assert sub.title == "A"


def test_export_then_import_gives_back_the_feeds_and_topics() -> None:
    feeds = [
        FeedConfig(url="https://a.example/feed", title="A & B <news>", topics=("world", "tech")),
        FeedConfig(url="https://b.example/rss", topics=("tech",)),
        FeedConfig(url="https://c.example/atom"),
        FeedConfig(url="seeds/local.xml", title="Local file"),
    ]
    text, left_out = render_opml(feeds, title="Mine", now=NOW)
    assert left_out == ("seeds/local.xml",)
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<opml version="2.0">')
    assert "<dateCreated>Mon, 18 Aug 2025 12:00:00 GMT</dateCreated>" in text
    document = parse_opml(text.encode(), "export.opml")
    assert document.title == "Mine"
    assert [(s.url, s.title, s.topics) for s in document.subscriptions] == [
        ("https://a.example/feed", "A & B <news>", ("world", "tech")),
        ("https://b.example/rss", None, ("tech",)),
        ("https://c.example/atom", None, ()),
    ]


def test_a_topic_named_like_a_readers_default_folder_survives_the_round_trip() -> None:
    # Exported as a folder "All", it came back as no topic at all (a folder readers put
    # feeds in by default), and a newsletter filtering on it got nothing.
    feeds = [
        FeedConfig(url="https://a.example/feed", topics=("All", "tech")),
        FeedConfig(url="https://b.example/rss", topics=("Unsorted",)),
    ]
    text, _ = render_opml(feeds, title="Mine", now=NOW)
    document = parse_opml(text.encode(), "export.opml")
    assert [(s.url, s.topics) for s in document.subscriptions] == [
        ("https://a.example/feed", ("All", "tech")),
        ("https://b.example/rss", ("Unsorted",)),
    ]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_reader_export_round_trips_through_our_export(sample: Path) -> None:
    first = parse_opml(sample.read_bytes(), str(sample)).subscriptions
    feeds = [FeedConfig(url=s.url, title=s.title, topics=s.topics) for s in first]
    text, _ = render_opml(feeds, title="again", now=NOW)
    assert parse_opml(text.encode(), "again.opml").subscriptions == tuple(
        type(s)(s.url, s.title, s.topics, None) for s in first
    )


def test_importing_the_same_file_twice_adds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    shutil.copyfile(Path(__file__).parent / "golden" / "config" / "base.yaml", path)
    subscriptions = parse_opml((OPML_DIR / "inoreader.opml").read_bytes(), "i.opml").subscriptions

    document = ConfigDocument.read(path)
    report = import_subscriptions(document, subscriptions)
    document.save()
    assert len(report.added) == 3
    after_first = path.read_bytes()

    document = ConfigDocument.read(path)
    report = import_subscriptions(document, subscriptions)
    assert report.added == ()
    assert len(report.present) == 3
    assert document.text().encode() == after_first
    urls = [f.url for f in load_config(path).config.feeds]
    assert urls.count("https://xkcd.com/rss.xml") == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"<opml><body><outline", "not well-formed XML"),
        (b"<rss version='2.0'><channel/></rss>", "the document is <rss>, not <opml>"),
        (b"<opml version='2.0'><head/></opml>", "no <body>"),
        (
            b'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            b'<opml><body><outline text="&xxe;" xmlUrl="https://a.example/f"/></body></opml>',
            "refused: it declares a DTD or entities",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
            b'<opml><body><outline text="&lol2;" xmlUrl="https://a.example/f"/></body></opml>',
            "refused: it declares a DTD or entities",
        ),
        (b'<?xml version="1.0" encoding="x-bogus"?><opml/>', "declares an encoding Python does not know"),
    ],
)
def test_broken_or_hostile_files_are_refused_with_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(OpmlError, match=r"cannot import bad\.opml") as info:
        parse_opml(data, "bad.opml")
    assert message in str(info.value)


def test_a_parse_error_names_the_line() -> None:
    with pytest.raises(OpmlError, match=r"bad\.opml:3:\d+: not well-formed XML"):
        parse_opml(b'<opml version="2.0">\n<body>\n<outline text="a" xmlUrl="x"></body>\n</opml>', "bad.opml")


def test_folders_nested_thousands_deep_are_read_like_any_other() -> None:
    depth = 3000  # far beyond Python's recursion limit
    data = (
        '<opml version="2.0"><head/><body>'
        + '<outline text="News">' * depth
        + '<outline text="Deep" xmlUrl="https://deep.example/feed"/>'
        + "</outline>" * depth
        + "</body></opml>"
    ).encode()
    (sub,) = parse_opml(data, "deep.opml").subscriptions
    assert (sub.url, sub.title, sub.topics) == ("https://deep.example/feed", "Deep", ("News",))


def test_adding_many_feeds_adds_each_once(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    shutil.copyfile(Path(__file__).parent / "golden" / "config" / "base.yaml", path)
    document = ConfigDocument.read(path)
    added, present = document.add_feeds(
        [
            ("https://new.example/feed", "New", ("news",)),
            ("https://NEW.example/feed?utm_source=x", "New again", ()),  # the same feed
            ("https://wire.example.com/rss.xml", "Wire", ()),  # listed already
        ]
    )
    assert added == ["https://new.example/feed"]
    assert present == ["https://NEW.example/feed?utm_source=x", "https://wire.example.com/rss.xml"]
    document.save()
    feeds = load_config(path).config.feeds
    assert [(f.url, f.title, f.topics) for f in feeds if "new.example" in f.url] == [
        ("https://new.example/feed", "New", ("news",))
    ]


def test_one_unusable_outline_is_skipped_or_cleaned_and_the_others_are_imported() -> None:
    # A C1 control character in a title (legal XML) or a URL over 1024 bytes made the whole
    # import fail with "feeds[51].title: …", a place in no file the user has.
    long_url = "https://long.example/" + "x" * 1100
    data = f"""<?xml version="1.0"?><opml version="2.0"><head/><body>
      <outline text="Caf&#x81;&#x9f; News&#xFDD0;" xmlUrl="https://cafe.example/feed"/>
      <outline text="Folder&#x85;&#x9b;Name"><outline text="In" xmlUrl="https://in.example/feed"/></outline>
      <outline text="Long" xmlUrl="{long_url}"/>
      <outline text="Bell" xmlUrl="https://bell.example/&#x80;feed"/>
      <outline text="Good" xmlUrl="https://good.example/feed" category="/A&#x80;B"/>
    </body></opml>""".encode()
    document = parse_opml(data, "x.opml")
    assert [(s.url, s.title, s.topics) for s in document.subscriptions] == [
        ("https://cafe.example/feed", "Caf News", ()),
        ("https://in.example/feed", "In", ("Folder Name",)),
        ("https://good.example/feed", "Good", ("AB",)),
    ]
    assert document.skipped == (
        "outline 'Long': url longer than 1024 bytes: no feed needs one, and the database indexes it"
        " (x.opml:4)",
        "outline 'Bell': not an http(s) feed URL: 'https://bell.example/\\x80feed' (x.opml:5)",
    )


def test_importing_a_file_with_an_unusable_outline_saves_the_others(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text("feeds:\n  - url: https://a.example/feed\n")
    data = (
        b"""<opml version="2.0"><head/><body>
      <outline text="Caf&#x81; News" xmlUrl="https://cafe.example/feed"/>
      <outline text="Long" xmlUrl="https://long.example/"""
        + b"x" * 1100
        + b""""/>
    </body></opml>"""
    )
    document = ConfigDocument.read(path)
    report = import_subscriptions(document, parse_opml(data, "x.opml").subscriptions)
    document.save()
    assert report.added == ("https://cafe.example/feed",)
    assert [(f.url, f.title) for f in load_config(path).config.feeds] == [
        ("https://a.example/feed", None),
        ("https://cafe.example/feed", "Caf News"),
    ]


def test_feeds_nested_inside_a_feed_outline_are_imported_in_the_same_folder() -> None:
    # They were dropped: neither imported nor skipped.
    data = b"""<opml version="2.0"><head/><body><outline text="Tech">
      <outline text="Main" type="rss" xmlUrl="https://tech.example/feed">
        <outline type="rss" text="Child A" xmlUrl="https://a.example/feed"/>
        <outline type="rss" text="Child B" xmlUrl="https://b.example/feed">
          <outline type="rss" text="Grandchild" xmlUrl="https://c.example/feed"/>
        </outline>
      </outline>
    </outline></body></opml>"""
    document = parse_opml(data, "nested.opml")
    assert [(s.url, s.title, s.topics) for s in document.subscriptions] == [
        ("https://tech.example/feed", "Main", ("Tech",)),
        ("https://a.example/feed", "Child A", ("Tech",)),
        ("https://b.example/feed", "Child B", ("Tech",)),
        ("https://c.example/feed", "Grandchild", ("Tech",)),
    ]
    assert document.skipped == ()
