"""The real-world corpus (tests/feeds/corpus, from feedjira and Miniflux): every file is ingested or
refused with a specific error, and the fast path reads every file exactly as feedparser does."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from aggregator.errors import ParseError
from aggregator.parse import _read_fast, parse_feed

CORPUS = Path(__file__).parent / "feeds" / "corpus"
with (CORPUS / "MANIFEST.tsv").open(encoding="utf-8", newline="") as manifest:
    FILES = sorted(row["local"] for row in csv.DictReader(manifest, delimiter="\t"))

# Files that are not feeds, and the start of the error each must raise.
NOT_FEEDS = {
    "feedjira/spec/sample_feeds/AmazonWebServicesBlogFirstEntryContent.xml": "the document is <div>",
    "feedjira/spec/sample_feeds/HREFConsideredHarmfulFirstEntry.xml": "the document is <p>",
    "feedjira/spec/sample_feeds/PaulDixExplainsNothingFirstEntryContent.xml": "the document is <p>",
    "feedjira/spec/sample_feeds/TechCrunchFirstEntry.xml": "the document is <img>",
    "feedjira/spec/sample_feeds/TechCrunchFirstEntryDescription.xml": "the document is <img>",
    "feedjira/spec/sample_feeds/TenderLovemakingFirstEntry.xml": "the document is <p>",
    "miniflux/internal/reader/encoding/testdata/iso-8859-1-meta-after-1024.html": "is an HTML page",
    "miniflux/internal/reader/encoding/testdata/iso-8859-1.html": "is an HTML page",
    "miniflux/internal/reader/encoding/testdata/utf8-meta-after-1024.html": "is an HTML page",
    "miniflux/internal/reader/encoding/testdata/utf8.html": "is an HTML page",
    "miniflux/internal/reader/xml/testdata/iso88591.xml": "the document is <note>",
    "miniflux/internal/reader/xml/testdata/iso88591_utf8_mismatch.xml": "the document is <note>",
}
# Valid RSS channels that hold no item: parsed, and said so in a warning.
EMPTY_FEEDS = {
    "miniflux/internal/reader/encoding/testdata/iso-8859-1.xml",
    "miniflux/internal/reader/encoding/testdata/windows-1252.xml",
    "miniflux/internal/reader/encoding/testdata/windows-1252-incorrect-prolog.xml",
}
# Every field of every entry (the feed's own link is not compared: fastfeedparser sometimes
# takes a rel="self" link for it where feedparser finds none).
COMPARED = (
    *("guid", "url", "canonical_url", "title", "authors", "published", "updated"),
    *("content_html", "summary_html", "text", "enclosures", "categories"),
)


def feed_url(local: str) -> str:
    return f"https://corpus.example/{local}"


def test_the_corpus_is_all_there() -> None:
    assert len(FILES) == 65
    for local in FILES:
        assert (CORPUS / local).is_file(), local


@pytest.mark.parametrize("local", FILES)
def test_every_file_is_ingested_or_refused_with_a_reason(local: str) -> None:
    body = (CORPUS / local).read_bytes()
    url = feed_url(local)
    if local in NOT_FEEDS:
        with pytest.raises(ParseError) as caught:
            parse_feed(body, {}, url)
        assert str(caught.value).startswith("not a feed: ")
        assert url not in str(caught.value)  # the caller names it
        assert NOT_FEEDS[local] in str(caught.value)
        return
    feed = parse_feed(body, {}, url)
    if local in EMPTY_FEEDS:
        assert feed.entries == ()
        assert "the feed has no entries" in feed.warnings
        return
    assert feed.entries, local
    assert all(entry.guid for entry in feed.entries)
    # one real feed (no_encoding_ISO-8859-1.xml) has a truly empty <item>: kept, with a hash guid
    assert any(entry.title or entry.url for entry in feed.entries)


@pytest.mark.parametrize("local", [f for f in FILES if f not in NOT_FEEDS])
def test_fast_path_reads_like_feedparser(local: str) -> None:
    body = (CORPUS / local).read_bytes()
    fast = parse_feed(body, {}, feed_url(local))
    slow = parse_feed(body, {}, feed_url(local), fast=False)
    assert (fast.format, fast.title, len(fast.entries)) == (slow.format, slow.title, len(slow.entries))
    differences = [
        f"entry {i} {name}: fast {getattr(f, name)!r} != feedparser {getattr(s, name)!r}"
        for i, (f, s) in enumerate(zip(fast.entries, slow.entries, strict=True))
        for name in COMPARED
        if getattr(f, name) != getattr(s, name)
    ]
    assert not differences, "\n".join(differences)


def test_the_fast_path_is_actually_taken() -> None:
    # Without this the comparison above could pass by the fast path declining everything.
    taken = [local for local in FILES if _read_fast((CORPUS / local).read_bytes(), "", feed_url(local))]
    assert len(taken) >= 15, taken
