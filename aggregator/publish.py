"""The combined output feeds: Atom 1.0, RSS 2.0 and JSON Feed 1.1, whole and per topic.

In: a ``Snapshot`` of stories (``aggregator.snapshot``), the folder to write to and
``PublishSettings`` (title, the URL the folder is served at, how many stories).  Out:
``feed.atom``, ``feed.rss``, ``feed.json`` and ``topics/<slug>.atom|.rss|.json`` in that
folder, and a ``PublishResult`` naming them.  A topic's slug depends on its name alone
(``topic_slugs``), so ``topics/c.atom`` never changes from one topic to another.  The
``render_*`` functions are pure (a snapshot in, bytes out); only ``publish_feeds`` and
``write_atomic`` touch the disk.  A file ``publish_feeds`` cannot write, read or remove is
an ``errors.OutputError`` naming this stage (``PUBLISH_STAGE``), the file and what is wrong
with its path (a file where the folder should be, permissions, a full disk).

One entry per story, not per copy: the snapshot's headline and link and the lead copy's
content (the same story, lead and outlets a digest issue shows), then a visible "Also
reported by" list of every other outlet that carried it (never the lead again: a copy
from its feed with its link); in Atom each of those is also a ``link rel="related"``, in
JSON Feed an ``_aggregator.also_reported_by`` list.  The lead's enclosures (podcast
audio, video) are Atom ``link rel="enclosure"``, JSON Feed ``attachments`` and, RSS
allowing one, the first as ``<enclosure>``.  Topics are categories (tags).  Ids are the
snapshot's ``urn:uuid:`` ids, stable across runs.  ``output.language``, when set, is the
feeds' language (Atom ``xml:lang``, RSS ``<language>``, JSON Feed ``language``).  Every
title and name is one line of at most ``snapshot.TITLE_CHARS`` characters.

An entry's updated time (Atom ``<updated>``, JSON Feed ``date_modified``) is its story's
``updated``, except that an entry showing exactly what it showed in the files published
before keeps the time they gave it: the store takes a copy as changed when its source
changed anything, shown or not (its categories, its own updated date, a summary beside
the full text), and readers must not be told of a change they cannot find.  The other
way round, an entry showing something else moves past the time it had even when no copy
of it changed (its lead's feed removed from feeds.yaml, an outlet renamed): to when the
snapshot was taken.  Readers that refresh an entry only when its time moves would keep
showing the old link and outlet.  Its topics alone are no such change: a story filed
anew when the topics in feeds.yaml were edited is no news.

A feed's updated time (Atom ``<updated>``, RSS ``<lastBuildDate>``, our JSON Feed's
``_aggregator.updated``) is the newest updated time of the entries it shows, but never
earlier than what the same file said last time (``render_feeds(published=...)``): when a
file changed while its newest entry is older than that (the newest story left it, a
story moved to another topic, the JSON Feed's list of topics changed), it is when the
snapshot was taken.  Readers and caches that go by it then neither see time go back nor
miss the change.  Each format goes by its own file.

The output depends only on the snapshot and the files published before (no clock), so an
unchanged snapshot gives byte-identical files, which are then not rewritten: their ETag
and Last-Modified stay put and readers polling with validators get 304s.

Every string from a feed is hostile: HTML is sanitized again with nh3 (the parse stage
already did; this stage must not trust that), characters XML 1.0 forbids are dropped,
and only absolute http(s) URLs are linked (``snapshot.web_link``).  A feed URL as
configured may hold secrets: RSS ``<source>`` names it without its user and password,
and not at all when its query looks like it carries a key or token.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from html import escape
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import nh3

from aggregator.atomicfile import write_atomic
from aggregator.errors import OutputError
from aggregator.pathfaults import output_error
from aggregator.snapshot import TITLE_CHARS, Coverage, Snapshot, SnapshotStory, shorten, web_link
from aggregator.types import Enclosure
from aggregator.urls import query_holds_secret

__all__ = [
    "FEED_FORMATS",
    "MAX_AUTHORS",
    "MAX_ENCLOSURES",
    "PUBLISH_STAGE",
    "FeedMeta",
    "PublishResult",
    "PublishSettings",
    "feed_path",
    "publish_feeds",
    "render_atom",
    "render_json",
    "render_rss",
    "story_html",
    "topic_slugs",
    "write_atomic",
]

ATOM_NS = "http://www.w3.org/2005/Atom"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
DC_NS = "http://purl.org/dc/elements/1.1/"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
GENERATOR = "aggregator"
GENERATOR_URI = "https://github.com/aggregator-project/aggregator"
# Documents the ``_aggregator`` extension object of our JSON Feed items (JSON Feed 1.1, "Extensions").
EXTENSION_ABOUT = GENERATOR_URI + "#json-feed-extension"

# File suffix → media type.  Also what the web side serves them as.
FEED_FORMATS = {
    "atom": "application/atom+xml; charset=utf-8",
    "rss": "application/rss+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
}

# Characters XML 1.0 does not allow anywhere, even escaped (C0 controls but tab, CR, LF;
# surrogates; U+FFFE and U+FFFF).  Feeds do contain them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# Not in a title or a name either: C1 controls, and bidi embeddings, overrides and isolates,
# which make a headline or an outlet read as something it is not ("evil\u202egnp.exe").  The
# parse stage drops them from what feeds say, but a configured feed title or topic name
# comes here as typed.
_NOT_IN_LINE = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True, slots=True)
class PublishSettings:
    """What the output feeds say about themselves; ``output:`` in feeds.yaml."""

    title: str = "Aggregated stories"
    base_url: str = "http://localhost:8000/"  # where the output folder is served (the front page)
    max_stories: int = 50
    language: str | None = None  # a BCP 47 tag (``en``, ``pt-BR``); None: none said
    # The configured topics: each has its feeds even with no story in the snapshot (a quiet
    # topic whose stories retention removed, one nothing matched yet), so that the address
    # a reader subscribed to answers with an empty feed, not a 404.
    kept_topics: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.base_url.endswith("/"):
            # urljoin("https://x/news", "feed.atom") drops "news": the folder URL needs its slash.
            object.__setattr__(self, "base_url", self.base_url + "/")


@dataclass(frozen=True, slots=True)
class FeedMeta:
    """One feed's own metadata: its title and where each format of it lives."""

    title: str
    home_url: str  # the HTML page the feed belongs to
    urls: Mapping[str, str]  # format ("atom", "rss", "json") → its absolute URL
    topic: str | None = None
    language: str | None = None


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What ``publish_feeds`` did: every file of the output, those rewritten, stale ones removed
    (feeds of topics gone, temporary files a crash left)."""

    files: tuple[Path, ...]
    changed: tuple[Path, ...]
    removed: tuple[Path, ...]


# --------------------------------------------------------------------------- names


def _slugify(name: str) -> str:
    """The readable part of a slug: lower-case ASCII words joined by "-", maybe empty."""
    # Dashes of every kind (Unicode Pd: en and em dashes, hyphens…) and separators (Z*)
    # part words before the ASCII folding drops them: "US–Russia" is "us-russia", not "usrussia".
    parted = "".join(
        " " if unicodedata.category(c) == "Pd" or unicodedata.category(c).startswith("Z") else c
        for c in unicodedata.normalize("NFKC", name)
    )
    ascii_name = unicodedata.normalize("NFKD", parted).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:60].strip("-")


def _loses_letters(name: str) -> bool:
    """Whether folding ``name`` to ASCII drops a letter or digit (a Cyrillic, Greek or Han
    one; accents are kept as their base letter)."""
    return any(
        not c.isascii() and unicodedata.category(c)[0] in "LN" for c in unicodedata.normalize("NFKD", name)
    )


def _slug(name: str) -> str:
    """The slug of ``name``: readable, plus a short hash of the name when folding to ASCII
    drops letters or leaves nothing.

    Without the hash every Cyrillic or Chinese name would be ``topic`` (or the digits in it),
    told apart by ``-2``, ``-3`` in the order of whichever names a cycle has: a subscriber's
    feed would change topic as other topics come and go.  Symbols are not letters: "R&D"
    stays ``r-d``, as it always was (a new hash would move every such feed).
    """
    readable = _slugify(name)
    if readable and not _loses_letters(name):
        return readable
    digest = hashlib.sha256(unicodedata.normalize("NFC", name).encode()).hexdigest()[:6]
    return f"{readable or 'topic'}-{digest}"


def topic_slugs(topics: Iterable[str]) -> dict[str, str]:
    """Topic name → the file name of its feeds: ``"Russia / Ukraine"`` → ``russia-ukraine``.

    A name whose letters and digits all fold to ASCII keeps its readable slug; one that
    loses letters gets a short hash of the name after it (``"Россия"`` → ``topic-`` and six
    hex digits), so its slug depends on its name alone.  Names that still make the same
    slug (they differ only in case, punctuation or symbols: ``"AI"`` and ``"ai"``, ``"C#"``
    and ``"C++"``) are told apart by ``-2``, ``-3``… in sorted order.
    """
    slugs: dict[str, str] = {}
    used: set[str] = set()
    for name in sorted(set(topics), key=lambda t: (t.casefold(), t)):
        base = _slug(name)
        slug, n = base, 1
        while slug in used:
            n += 1
            slug = f"{base}-{n}"
        used.add(slug)
        slugs[name] = slug
    return slugs


def feed_path(fmt: str, slug: str | None = None) -> str:
    """The output-relative path of a feed: ``feed.atom`` or ``topics/<slug>.atom``."""
    return f"feed.{fmt}" if slug is None else f"topics/{slug}.{fmt}"


def _meta(settings: PublishSettings, topic: str | None, slug: str | None) -> FeedMeta:
    title = settings.title if topic is None else f"{settings.title}: {topic}"
    urls = {fmt: urljoin(settings.base_url, feed_path(fmt, slug)) for fmt in FEED_FORMATS}
    return FeedMeta(
        title=title, home_url=settings.base_url, urls=urls, topic=topic, language=settings.language
    )


# --------------------------------------------------------------------------- cleaning


def _text(value: str) -> str:
    return _NOT_XML.sub("", value)


def _line(value: str) -> str:
    """A title or name: one line, no control characters, no runs of spaces, at most
    ``TITLE_CHARS`` characters (the snapshot cut its headlines already; outlet and author
    names come from feeds too)."""
    return shorten(" ".join(_NOT_IN_LINE.sub("", _text(value)).split()), TITLE_CHARS)


def _date(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _rfc3339(value: datetime) -> str:
    # The year by hand: strftime("%Y") gives "1" for year 1 (Hugo's zero date) on Linux,
    # and "1-01-01T00:00:00Z" is no RFC 3339 date for any reader.
    when = _date(value)
    return f"{when.year:04d}-{when:%m-%dT%H:%M:%SZ}"


# A feed chooses how many authors and attachments an entry has: published whole, a
# 500-name byline (or 300 attachments) went into every format of every file holding it.
MAX_AUTHORS = 10
MAX_ENCLOSURES = 10


def _authors(story: SnapshotStory) -> tuple[str, ...]:
    """The lead's authors (each once, the first ``MAX_AUTHORS``), else its outlet: every
    entry has someone to credit."""
    names = tuple(dict.fromkeys(n for n in (_line(a) for a in story.lead.entry.authors) if n))
    return names[:MAX_AUTHORS] or (_line(story.outlet),)


# nh3's defaults keep relative links ("/world/x", "pic.png"), which a reader resolves against
# the output feed's own address: a link into our site instead of the article's.  The parse
# stage made every link absolute already; what is still relative here is dropped.
_CLEANER = nh3.Cleaner(url_relative="deny")


def _clean_html(html: str) -> str:
    # Stripped after cleaning too: nh3 decodes character references, so "&#1;" or "&#xFFFE;"
    # come out of it as the very characters XML forbids.
    return _text(_CLEANER.clean(_text(html)))


def _body_html(story: SnapshotStory) -> str:
    entry = story.lead.entry
    if entry.content_html.strip():
        return _clean_html(entry.content_html)
    if entry.summary_html.strip():
        return _clean_html(entry.summary_html)
    if entry.text.strip():
        return "".join(f"<p>{escape(p.strip())}</p>" for p in _text(entry.text).split("\n\n") if p.strip())
    return ""


def _other_copies(story: SnapshotStory) -> tuple[Coverage, ...]:
    """The copies worth an "Also reported by" line, in every format: not the lead again.

    A copy from the lead's own feed with the lead's link (the feed re-issued the article
    under a new guid) showed the Source line's outlet and link a second time.  Another
    article of that feed on the story (its own link) stays.
    """
    return tuple(c for c in story.coverage if not (c.feed_url == story.lead.feed_url and c.url == story.url))


def story_html(story: SnapshotStory) -> str:
    """The content of a story's entry: the lead's sanitized HTML, then "Also reported by"."""
    parts = [_body_html(story)]
    source = story.url
    outlet = escape(_line(story.outlet))
    parts.append(
        f'<p>Source: <a href="{escape(source)}">{outlet}</a></p>' if source else f"<p>Source: {outlet}</p>"
    )
    if others := _other_copies(story):
        items = []
        for copy in others:
            name = escape(_line(copy.outlet))
            title = escape(_line(copy.title))
            # Another outlet carrying the lead's very link is named, not linked: the Source
            # line links it already.
            link = copy.url if copy.url != source else None
            label = f'<a href="{escape(link)}">{name}</a>' if link else name
            items.append(f"<li>{label}: {title}</li>" if title else f"<li>{label}</li>")
        parts.append("<p>Also reported by:</p><ul>" + "".join(items) + "</ul>")
    return "\n".join(p for p in parts if p)


def _related(story: SnapshotStory) -> list[tuple[str, str]]:
    """``(url, title)`` of every other copy worth linking, each URL once, never the lead's own."""
    seen = {story.url}
    links = []
    for copy in _other_copies(story):
        link = copy.url
        if link and link not in seen:
            seen.add(link)
            links.append((link, _line(f"{copy.outlet}: {copy.title}")))
    return links


# A media type as RFC 6838 spells one, without parameters ("audio/mpeg").
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
# What JSON Feed and RSS say when the feed did not give a type; both require one.
_UNKNOWN_MEDIA_TYPE = "application/octet-stream"


def _enclosures(story: SnapshotStory) -> tuple[Enclosure, ...]:
    """The lead's enclosures that can be linked (absolute http(s)), each URL once, the first
    ``MAX_ENCLOSURES``, cleaned: a type only when it reads as a media type, a length only
    when positive."""
    found: dict[str, Enclosure] = {}
    for enclosure in story.lead.entry.enclosures:
        url = web_link(enclosure.url)
        if url is None or url in found:
            continue
        media = (enclosure.type or "").split(";")[0].strip().lower()
        length = enclosure.length if enclosure.length is not None and enclosure.length > 0 else None
        found[url] = Enclosure(url, media if _MEDIA_TYPE.fullmatch(media) else None, length)
        if len(found) == MAX_ENCLOSURES:
            break
    return tuple(found.values())


def _public_feed_url(feed_url: str) -> str | None:
    """A feed URL as configured, fit to publish: no user or password, and None when its
    query looks like it carries a credential (a private or paid feed's access key).

    Ordinary queries stay: WordPress feeds are ``/?feed=rss2``.
    """
    link = web_link(feed_url)  # without the user and password
    if link is None or query_holds_secret(urlsplit(link).query):
        return None
    return link


# What an empty feed says it was updated: a fixed time, so that it too keeps its bytes (and
# its ETag) from one cycle to the next.
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


def _feed_updated(stories: Sequence[SnapshotStory]) -> datetime:
    # From the stories, not the clock: the same stories give the same bytes.  Whole seconds,
    # as every format writes it, so that it compares with what a published file says.
    return max((s.updated for s in stories), default=_NEVER).replace(microsecond=0)


# A published updated time later than this past the snapshot is no clock's reading (a file
# someone edited, a clock that was far off): it is not kept, or it would hold the feed's
# updated time fixed until then.
_FUTURE_SLACK = timedelta(days=1)


def _published_updated(data: bytes, fmt: str) -> datetime | None:
    """The updated time a feed file we wrote says of itself, or None (no file, not ours, unreadable)."""
    try:
        if fmt == "json":
            extension = json.loads(data).get("_aggregator")
            value = extension.get("updated") if isinstance(extension, dict) else None
            when = datetime.fromisoformat(value) if isinstance(value, str) else None
        else:
            root = ET.fromstring(data)  # noqa: S314 -- our own output file, not a feed from outside
            if fmt == "atom":
                text = root.findtext(f"{{{ATOM_NS}}}updated")
                when = datetime.fromisoformat(text) if text else None
            else:
                text = root.findtext("channel/lastBuildDate")
                when = parsedate_to_datetime(text) if text else None
    except (ValueError, TypeError, AttributeError, ET.ParseError):
        return None
    if when is None:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


# --------------------------------------------------------------------------- renderers


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def _xml(root: ET.Element) -> bytes:
    ET.indent(root, space="  ")
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + body + b"\n"


def render_atom(
    stories: Sequence[SnapshotStory], meta: FeedMeta, snapshot: Snapshot, updated: datetime | None = None
) -> bytes:
    """An Atom 1.0 (RFC 4287) document of ``stories``, in the order given.

    ``updated`` is the feed's updated time; default: the newest of ``stories``.
    """
    feed = ET.Element("feed", {"xmlns": ATOM_NS})
    if meta.language:
        feed.set(XML_LANG, meta.language)
    _sub(feed, "id", meta.urls["atom"])
    _sub(feed, "title", _line(meta.title), type="text")
    _sub(feed, "updated", _rfc3339(updated or _feed_updated(stories)))
    _sub(feed, "link", rel="self", type="application/atom+xml", href=meta.urls["atom"])
    _sub(feed, "link", rel="alternate", type="text/html", href=meta.home_url)
    _sub(feed, "link", rel="alternate", type="application/feed+json", href=meta.urls["json"])
    author = _sub(feed, "author")
    _sub(author, "name", _line(meta.title))
    _sub(feed, "generator", GENERATOR, uri=GENERATOR_URI)
    if meta.topic is not None:
        _sub(feed, "category", term=_line(meta.topic))
    for story in stories:
        _atom_entry(feed, story)
    return _xml(feed)


def _atom_entry(feed: ET.Element, story: SnapshotStory, html: str | None = None) -> ET.Element:
    """The ``<entry>`` of ``story``, added to ``feed``; ``html``: its ``story_html``, if made already."""
    entry = _sub(feed, "entry")
    _sub(entry, "id", story.id)
    _sub(entry, "title", _line(story.headline) or "(untitled)", type="text")
    _sub(entry, "published", _rfc3339(story.published))
    _sub(entry, "updated", _rfc3339(story.updated))
    for name in _authors(story):
        _sub(_sub(entry, "author"), "name", name)
    if link := story.url:
        _sub(entry, "link", rel="alternate", type="text/html", href=link)
    for href, title in _related(story):
        _sub(entry, "link", rel="related", type="text/html", href=href, title=title)
    for enclosure in _enclosures(story):
        media = {"type": enclosure.type} if enclosure.type else {}
        size = {"length": str(enclosure.length)} if enclosure.length else {}
        _sub(entry, "link", rel="enclosure", href=enclosure.url, **media, **size)
    for topic in story.topics:
        _sub(entry, "category", term=_line(topic))
    _sub(entry, "content", story_html(story) if html is None else html, type="html")
    return entry


def render_rss(
    stories: Sequence[SnapshotStory], meta: FeedMeta, snapshot: Snapshot, updated: datetime | None = None
) -> bytes:
    """An RSS 2.0 document of ``stories``; other outlets appear in each item's description.

    ``updated`` is the channel's ``lastBuildDate``; default: the newest of ``stories``.
    """
    rss = ET.Element("rss", {"version": "2.0", "xmlns:atom": ATOM_NS, "xmlns:dc": DC_NS})
    channel = _sub(rss, "channel")
    _sub(channel, "title", _line(meta.title))
    _sub(channel, "link", meta.home_url)
    _sub(channel, "description", _line(meta.title))
    if meta.language:
        _sub(channel, "language", meta.language)
    _sub(channel, "atom:link", rel="self", type="application/rss+xml", href=meta.urls["rss"])
    _sub(channel, "lastBuildDate", format_datetime(_date(updated or _feed_updated(stories)), usegmt=True))
    _sub(channel, "generator", GENERATOR)
    _sub(channel, "docs", "https://www.rssboard.org/rss-specification")
    if meta.topic is not None:
        _sub(channel, "category", _line(meta.topic))
    for story in stories:
        item = _sub(channel, "item")
        _sub(item, "title", _line(story.headline) or "(untitled)")
        if link := story.url:
            _sub(item, "link", link)
        _sub(item, "description", story_html(story))
        # <author> must be an email address; names go in dc:creator.
        for name in _authors(story):
            _sub(item, "dc:creator", name)
        for topic in story.topics:
            _sub(item, "category", _line(topic))
        _sub(item, "guid", story.id, isPermaLink="false")
        _sub(item, "pubDate", format_datetime(_date(story.published), usegmt=True))
        if enclosures := _enclosures(story):
            # RSS 2.0 allows one enclosure an item, and requires its length ("0": unknown) and type.
            first = enclosures[0]
            length, media = str(first.length or 0), first.type or _UNKNOWN_MEDIA_TYPE
            _sub(item, "enclosure", url=first.url, length=length, type=media)
        if source := _public_feed_url(story.lead.feed_url):
            _sub(item, "source", _line(story.outlet), url=source)
    return _xml(rss)


def render_json(
    stories: Sequence[SnapshotStory],
    meta: FeedMeta,
    snapshot: Snapshot,
    topics: dict[str, str] | None = None,
    updated: datetime | None = None,
) -> bytes:
    """A JSON Feed 1.1 document of ``stories``.

    ``topics`` (name → slug) is listed in the top-level ``_aggregator`` extension so that the
    web front page can link every topic feed without recomputing slugs, with ``updated``
    (default: the newest of ``stories``).
    """
    items = [_json_item(story) for story in stories]
    document: dict[str, object] = {
        "version": JSON_FEED_VERSION,
        "title": _line(meta.title),
        "home_page_url": meta.home_url,
        "feed_url": meta.urls["json"],
        "authors": [{"name": _line(meta.title)}],
    }
    if meta.language:
        document["language"] = meta.language
    document["items"] = items
    if topics is not None:
        document["_aggregator"] = {
            "about": EXTENSION_ABOUT,
            "updated": _rfc3339(updated or _feed_updated(stories)),
            # Named as the items' tags are: the front page finds a tag's slug by this name.
            "topics": [{"name": _line(name), "slug": slug} for name, slug in topics.items()],
        }
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode()


def _json_item(story: SnapshotStory, html: str | None = None) -> dict[str, object]:
    """The JSON Feed item of ``story``; ``html``: its ``story_html``, if made already."""
    item: dict[str, object] = {"id": story.id}
    if link := story.url:
        item["url"] = link
    item["title"] = _line(story.headline) or "(untitled)"
    item["content_html"] = story_html(story) if html is None else html
    item["date_published"] = _rfc3339(story.published)
    item["date_modified"] = _rfc3339(story.updated)
    item["authors"] = [{"name": n} for n in _authors(story)]
    if story.topics:
        item["tags"] = [_line(t) for t in story.topics]
    if enclosures := _enclosures(story):
        item["attachments"] = [_attachment(e) for e in enclosures]
    item["_aggregator"] = {
        "about": EXTENSION_ABOUT,
        "outlet": _line(story.outlet),
        "also_reported_by": [
            {
                "outlet": _line(c.outlet),
                "url": c.url,
                "title": _line(c.title),
                "date_published": _rfc3339(c.date),
            }
            for c in _other_copies(story)
        ],
    }
    return item


def _attachment(enclosure: Enclosure) -> dict[str, object]:
    # JSON Feed 1.1 requires mime_type; size_in_bytes is optional.
    attachment: dict[str, object] = {"url": enclosure.url, "mime_type": enclosure.type or _UNKNOWN_MEDIA_TYPE}
    if enclosure.length:
        attachment["size_in_bytes"] = enclosure.length
    return attachment


# --------------------------------------------------------------------------- writing


# What this stage is called in its errors: ``writing the output feeds: cannot write …``.
PUBLISH_STAGE = "writing the output feeds"


@contextlib.contextmanager
def _on_file(path: Path, doing: str = "write") -> Iterator[None]:
    """An OSError while doing ``doing`` to ``path`` as an ``OutputError``: the bare one named
    a temporary file, or the target, and no stage (``[Errno 20] Not a directory: '…'``)."""
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        raise output_error(PUBLISH_STAGE, path, exc, doing=doing) from exc


def render_feeds(
    snapshot: Snapshot, settings: PublishSettings, published: Mapping[str, bytes] | None = None
) -> dict[str, bytes]:
    """Every output file, by its output-relative path (``feed.atom``, ``topics/x.json``…).

    ``published`` holds the files as published before, by the same paths (``publish_feeds``
    reads them): a feed's updated time never goes back from what its files said (see the
    module docstring).  Without it, each feed's updated time is that of its newest story.
    """
    names = (*snapshot.topics, *(t for t in settings.kept_topics if t not in snapshot.topics))
    slugs = topic_slugs(names)
    listed = {t: slugs[t] for t in snapshot.topics}  # the whole JSON Feed lists those with stories
    files: dict[str, bytes] = {}
    feeds: list[tuple[str | None, str | None, tuple[SnapshotStory, ...]]] = [
        (None, None, snapshot.newest(settings.max_stories))
    ]
    feeds += [(t, slugs[t], snapshot.in_topic(t)[: settings.max_stories]) for t in names]
    shown = _as_shown({s.id: s for _, _, stories in feeds for s in stories}, published or {}, snapshot.taken)
    feeds = [(topic, slug, tuple(shown[s.id] for s in stories)) for topic, slug, stories in feeds]
    for topic, slug, stories in feeds:
        meta = _meta(settings, topic, slug)
        paths = {fmt: feed_path(fmt, slug) for fmt in FEED_FORMATS}
        before = {
            fmt: data for fmt, path in paths.items() if (data := (published or {}).get(path)) is not None
        }
        rendered = _render_feed(stories, meta, snapshot, listed if slug is None else None, before)
        files.update((paths[fmt], data) for fmt, data in rendered.items())
    return files


def _render_feed(
    stories: Sequence[SnapshotStory],
    meta: FeedMeta,
    snapshot: Snapshot,
    topics: dict[str, str] | None,
    before: Mapping[str, bytes],
) -> dict[str, bytes]:
    """One feed in every format (format → bytes), each file's updated time never earlier
    than what it said in ``before`` (format → the file as published).

    Each format goes by its own file: the whole JSON Feed also lists every topic, and a
    change to that list alone must not move (and rewrite) the Atom and RSS files."""
    renderers: dict[str, Callable[[datetime], bytes]] = {
        "atom": lambda updated: render_atom(stories, meta, snapshot, updated),
        "rss": lambda updated: render_rss(stories, meta, snapshot, updated),
        "json": lambda updated: render_json(stories, meta, snapshot, topics, updated),
    }
    newest = _feed_updated(stories)
    limit = snapshot.taken + _FUTURE_SLACK
    files = {}
    for fmt, render in renderers.items():
        data = before.get(fmt)
        said = _published_updated(data, fmt) if data is not None else None
        if said is None or said > limit or newest > said:
            files[fmt] = render(newest)
            continue
        same = render(said)
        # Unchanged: the same bytes, not rewritten.  Changed, though its newest story is no
        # newer than the last publish (it lost its newest story, or gained an older one):
        # it changed now.
        files[fmt] = same if same == data else render(max(said, _whole_seconds(snapshot.taken)))
    return files


def _whole_seconds(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(microsecond=0)


# --------------------------------------------------------------------------- entries' updated times


@dataclass(frozen=True, slots=True)
class _PublishedEntry:
    """A story's entry as the files published before hold it."""

    updated: datetime  # the latest time any Atom file gave it
    atom: ET.Element  # its Atom <entry>
    item: dict[str, object] | None  # its JSON Feed item, if a JSON file has it


def _as_shown(
    stories: Mapping[str, SnapshotStory], published: Mapping[str, bytes], taken: datetime
) -> dict[str, SnapshotStory]:
    """``stories`` (by id), each with the updated time its entry is published with.

    A story's ``updated`` moves whenever the store takes one of its copies as changed,
    which includes what no output shows: the source's own categories or updated date, a
    summary beside the full text, a copy's body.  Published as is, readers were told the
    entry changed (some show it as unread again) and every file was rewritten.  So an
    entry that shows what it showed in the files published before keeps the time those
    files gave it.  One that shows something else gets its story's time when that is
    later, else (no copy of it changed: its lead's feed removed, an outlet renamed) when
    the snapshot was taken, a second past its old time at least; but one whose topics
    alone changed keeps its time unless its story's moved (a story filed anew under topics
    edited in feeds.yaml is no news).
    """
    before = _published_entries(published)
    limit = taken + _FUTURE_SLACK
    shown = {}
    for story_id, story in stories.items():
        old = before.get(story_id)
        if old is None or old.updated > limit:
            shown[story_id] = story
        elif _shows_the_same(story, old):
            shown[story_id] = replace(story, updated=old.updated)
        elif _whole_seconds(story.updated) > old.updated:  # as the files say it: whole seconds
            shown[story_id] = story
        elif _shows_the_same(story, old, topics_too=False):
            # Only its topics changed, its story's time did not: filed anew after the topics in
            # feeds.yaml were edited, which is no news (``pipeline.relabel_stories``).
            shown[story_id] = replace(story, updated=old.updated)
        else:
            # It shows something else though no copy of it changed: its lead's feed was
            # removed (whose copies still count for ``updated``), an outlet renamed.  Its
            # time must move all the same, or readers keep the old link and outlet.
            changed = max(_whole_seconds(taken), old.updated + timedelta(seconds=1))
            shown[story_id] = replace(story, updated=changed)
    return shown


def _shows_the_same(story: SnapshotStory, old: _PublishedEntry, *, topics_too: bool = True) -> bool:
    """Whether ``story``'s entry and item say what ``old``'s did, updated times aside, and
    topics (Atom categories, JSON Feed tags) aside too unless ``topics_too``."""
    if old.item is None:
        return False
    # Every story published before is compared on every publish: its HTML (nh3, the costly
    # part) is made once for both formats.
    html = story_html(story)
    atom = _atom_entry(ET.Element("feed"), story, html)
    skip = {"updated"} if topics_too else {"updated", "category"}
    if _element_look(atom, skip) != _element_look(old.atom, skip):
        return False
    aside = {"date_modified"} if topics_too else {"date_modified", "tags"}
    item = {k: v for k, v in _json_item(story, html).items() if k not in aside}
    old_item = {k: v for k, v in old.item.items() if k not in aside}
    return bool(json.loads(json.dumps(item)) == old_item)  # as read back from a file: lists, not tuples


def _element_look(element: ET.Element, skip: Collection[str] = ()) -> tuple[object, ...]:
    """An element as a comparable value: its tag (namespace aside), attributes, the text of
    a leaf (line ends as an XML parser reads them back) and its children, but not the
    whitespace between elements (``ET.indent`` adds it) nor its children named in ``skip``."""
    children = tuple(_element_look(c) for c in element if _local(c.tag) not in skip)
    text = None if len(element) else (element.text or "").replace("\r\n", "\n").replace("\r", "\n")
    return _local(element.tag), tuple(sorted(element.attrib.items())), text, children


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _published_entries(published: Mapping[str, bytes]) -> dict[str, _PublishedEntry]:
    """Story id → its entry in the files published before (the Atom ones name every entry
    published, with its time; every file is written from the same stories, so they agree
    but for a file left from long ago: the latest time wins)."""
    atom: dict[str, tuple[datetime, ET.Element]] = {}
    items: dict[str, dict[str, object]] = {}
    for path, data in published.items():
        try:
            if path.endswith(".atom"):
                root = ET.fromstring(data)  # noqa: S314 -- our own output file, not a feed from outside
                for entry in root.iter(f"{{{ATOM_NS}}}entry"):
                    story_id = entry.findtext(f"{{{ATOM_NS}}}id")
                    text = entry.findtext(f"{{{ATOM_NS}}}updated")
                    if story_id and text:
                        when = datetime.fromisoformat(text).astimezone(UTC)
                        if story_id not in atom or atom[story_id][0] < when:
                            atom[story_id] = (when, entry)
            elif path.endswith(".json"):
                for item in json.loads(data).get("items", []):
                    if isinstance(item, dict) and isinstance(item.get("id"), str):
                        items[item["id"]] = {k: v for k, v in item.items() if k != "date_modified"}
        except (ValueError, TypeError, AttributeError, ET.ParseError):
            continue  # not ours, or damaged: its entries count as never published
    return {
        story_id: _PublishedEntry(when, entry, items.get(story_id))
        for story_id, (when, entry) in atom.items()
    }


# The temporary files of ``write_atomic``: ``.feed.atom.k3j_9x2a.tmp`` (mkstemp's random part).
_TEMPORARY = re.compile(r"\..+\.(?:" + "|".join(FEED_FORMATS) + r")\.[a-z0-9_]+\.tmp")
# How old a temporary file must be to be a crash's leftover rather than another process's
# write in progress (which takes well under a second).
_LEFTOVER_AGE = timedelta(minutes=10)


def _remove_leftovers(output_dir: Path, now: datetime) -> list[Path]:
    """Remove the temporary files a crash left between ``mkstemp`` and the rename; return them."""
    removed = []
    before = (now - _LEFTOVER_AGE).timestamp()
    for folder in (output_dir, output_dir / "topics"):
        if not folder.is_dir():
            continue
        with _on_file(folder, "read"):
            paths = sorted(folder.iterdir())
        for path in paths:
            with _on_file(path, "remove"):
                try:
                    if _TEMPORARY.fullmatch(path.name) and path.is_file() and path.stat().st_mtime < before:
                        path.unlink()
                        removed.append(path)
                except FileNotFoundError:  # another publish removed it first
                    continue
    return removed


def _read_published(output_dir: Path) -> dict[str, bytes]:
    """Every feed file under ``output_dir`` (``feed.*``, ``topics/*``), by its output-relative path."""
    found: dict[str, bytes] = {}
    for folder, prefix in ((output_dir, ""), (output_dir / "topics", "topics/")):
        if not folder.is_dir():
            continue
        with _on_file(folder, "read"):
            paths = list(folder.iterdir())
        for path in paths:
            if path.suffix.lstrip(".") not in FEED_FORMATS or path.name.startswith("."):
                continue
            with _on_file(path, "read"):
                try:
                    found[prefix + path.name] = path.read_bytes()
                except (FileNotFoundError, IsADirectoryError):  # removed meanwhile; a folder so named
                    continue
    return found


def publish_feeds(snapshot: Snapshot, output_dir: Path, settings: PublishSettings) -> PublishResult:
    """Render every feed of ``snapshot`` and write each atomically under ``output_dir``.

    Topic feeds of topics no longer in the snapshot are removed (a reader gets a 404
    rather than a feed frozen forever); ``read_snapshot(per_topic=..., kept_topics=...)``
    puts the newest stories of every configured topic in it, so those are the configured
    topics with no story left and automatic topics with no recent story.
    Files that did not change are not rewritten; a feed's updated time never goes back from
    what its files said (``render_feeds``).  Temporary files older than ten minutes
    (by ``snapshot.taken``), left by a process that died while writing, are removed.
    """
    removed = _remove_leftovers(output_dir, snapshot.taken)
    files = render_feeds(snapshot, settings, _read_published(output_dir))
    written, changed = [], []
    for relative, data in files.items():
        path = output_dir / relative
        with _on_file(path):
            if write_atomic(path, data):
                changed.append(path)
        written.append(path)
    topics_dir = output_dir / "topics"
    if topics_dir.is_dir():
        keep = {p.name for p in written if p.parent == topics_dir}
        with _on_file(topics_dir, "read"):
            paths = sorted(topics_dir.iterdir())
        for path in paths:
            if path.suffix.lstrip(".") in FEED_FORMATS and path.name not in keep and path.is_file():
                with _on_file(path, "remove"):
                    path.unlink()
                removed.append(path)
    return PublishResult(files=tuple(written), changed=tuple(changed), removed=tuple(removed))
