"""OPML 2.0 subscription lists, in and out, with folders mapped to topics.

In:  the bytes of an OPML file exported by a feed reader (Feedly, Inoreader, NetNewsWire,
     Miniflux, FreshRSS, Thunderbird, …).
Out: ``OpmlDocument``: the subscriptions it lists (feed URL, title, topics, site URL) and the
     outlines that had to be left out, each with why; or an ``OpmlError`` saying what is
     wrong and where.  The other way, ``render_opml`` turns configured feeds into OPML 2.0.

Readers agree on little beyond ``<outline xmlUrl=…>``: folders are outlines without an
``xmlUrl`` (any depth; the innermost folder names the topic), the OPML 2.0 ``category``
attribute (``"/News/World,/Tech"``: the last part of each path is a topic) is used by a
few, titles are in ``title`` or only in ``text``, attribute names vary in case, and one
feed may appear in several folders (Feedly): those are merged into one subscription with
every topic.  A reader's default folder (Miniflux "All", FreshRSS "Uncategorized")
is no topic.  ``feed://`` URLs are read as ``http://``.  Outlines nested inside a feed's
outline are feeds too, in the same folders (a feed's title names no topic).

One bad outline must not sink the import of the others: a URL feeds.yaml would refuse (over
``config.MAX_URL_BYTES``, a control character) is skipped with the reason and the outline's
line in the file, as is an outline that looks like a feed (``type="rss"``, ``xmlUrl=""``) but
has no URL to poll (pointing at its ``htmlUrl``, for ``feeds add``), and the characters
it refuses in a title or topic (control characters, noncharacters: ``config.check_text``)
are removed from them.

The file comes from elsewhere and is parsed as hostile: defusedxml with DTDs, entities and
external references forbidden (an OPML file needs none of them), and a size limit.
"""

from __future__ import annotations

import shlex
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from pydantic import ValidationError

from aggregator.config import FeedConfig, check_text
from aggregator.errors import AggregatorError
from aggregator.urls import canonical_url

if TYPE_CHECKING:
    from aggregator.configedit import ConfigDocument

MAX_OPML_BYTES = 10 * 1024 * 1024
# Folders readers put feeds in by default (Miniflux "All", FreshRSS "Uncategorized"): no topic.
DEFAULT_FOLDERS = frozenset({"all", "uncategorized", "uncategorised", "unfiled", "unsorted", "default"})
# Outline types readers give feeds (FreshRSS's scrapers too): one without a URL is reported, not dropped.
FEED_TYPES = frozenset(
    {"rss", "atom", "rdf", "feed", "json", "jsonfeed", "html+xpath", "xml+xpath", "json+dotnotation"}
)


class OpmlError(AggregatorError):
    """The file is not an OPML subscription list we can read; nothing was imported."""


@dataclass(frozen=True, slots=True)
class Subscription:
    """One feed listed in an OPML file."""

    url: str
    title: str | None = None
    topics: tuple[str, ...] = ()
    site_url: str | None = None


@dataclass(frozen=True, slots=True)
class OpmlDocument:
    title: str | None
    subscriptions: tuple[Subscription, ...]
    # "outline 'X': why (FILE:LINE)", for outlines that look like feeds but cannot be imported
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What ``import_subscriptions`` did: feed URLs added, already present (by canonical URL)."""

    added: tuple[str, ...]
    present: tuple[str, ...]


def parse_opml(data: bytes, source: str) -> OpmlDocument:
    """Read an OPML file; ``source`` names it in errors (a path or URL)."""
    if len(data) > MAX_OPML_BYTES:
        raise OpmlError(f"cannot import {source}: larger than {MAX_OPML_BYTES // (1024 * 1024)} MiB")
    if not data.strip():
        raise OpmlError(f"cannot import {source}: the file is empty")
    root, lines = _parse_xml(data, source)
    if _local(root.tag) != "opml":
        raise OpmlError(f"cannot import {source}: the document is <{_local(root.tag)}>, not <opml>")
    body = next((child for child in root if _local(child.tag) == "body"), None)
    if body is None:
        raise OpmlError(f"cannot import {source}: no <body> in the <opml> document")
    title = _head_title(root)

    found: dict[str, Subscription] = {}  # keyed by canonical URL, in document order
    skipped: list[str] = []
    for outline, folders in _outlines(body, ()):
        attrs = {_local(key).lower(): value for key, value in outline.attrib.items()}
        raw_url = _clean(attrs.get("xmlurl"))
        name = _label(attrs.get("title")) or _label(attrs.get("text"))
        where = f"({source}:{lines[outline]})"
        if raw_url is None:
            if _looks_like_a_feed(attrs):
                skipped.append(f"outline {name or 'without a title'!r}: {_no_url(attrs)} {where}")
            continue
        url = _feed_url(raw_url)
        key = canonical_url(url) if url else None
        if url is None or key is None:
            skipped.append(f"outline {name or raw_url!r}: not an http(s) feed URL: {raw_url!r} {where}")
            continue
        refused = _url_problem(url)
        if refused is not None:
            skipped.append(f"outline {name or 'without a title'!r}: {refused} {where}")
            continue
        folder = [f for f in folders[-1:] if f.casefold() not in DEFAULT_FOLDERS]
        topics = _unique([*folder, *_categories(attrs.get("category"))])
        previous = found.get(key)
        if previous is not None:
            found[key] = Subscription(
                previous.url, previous.title, _unique([*previous.topics, *topics]), previous.site_url
            )
            continue
        found[key] = Subscription(
            url=url,
            title=name if name and name not in (raw_url, url) else None,
            topics=topics,
            site_url=_clean(attrs.get("htmlurl")),
        )
    return OpmlDocument(title, tuple(found.values()), tuple(skipped))


class _LineNumberingBuilder(ET.TreeBuilder):
    """The usual tree, and the line each element starts on: ElementTree keeps no positions,
    and a skipped outline must be findable in a file of hundreds."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[ET.Element, int] = {}
        self.current_line: Callable[[], int] = lambda: 0

    def start(self, tag: str, attrs: dict[str, str], /) -> ET.Element:
        element = super().start(tag, attrs)
        self.lines[element] = self.current_line()
        return element


def _parse_xml(data: bytes, source: str) -> tuple[ET.Element, dict[ET.Element, int]]:
    """What ``defusedxml.ElementTree.fromstring`` gives, with the same refusals (DTDs,
    entities, external references), and the line of every element; or why not, as an OpmlError."""
    builder = _LineNumberingBuilder()
    parser = SafeET.DefusedXMLParser(
        target=builder, forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    expat = parser.parser  # at each start tag, its line is expat's current one
    builder.current_line = lambda: expat.CurrentLineNumber
    try:
        parser.feed(data)
        return parser.close(), builder.lines
    except DefusedXmlException as exc:
        raise OpmlError(
            f"cannot import {source}: refused: it declares a DTD or entities ({type(exc).__name__}); "
            "OPML needs neither"
        ) from exc
    except ET.ParseError as exc:
        line, column = exc.position
        raise OpmlError(f"cannot import {source}:{line}:{column + 1}: not well-formed XML: {exc}") from exc
    except LookupError as exc:  # <?xml encoding="x-bogus"?>
        raise OpmlError(
            f"cannot import {source}: it declares an encoding Python does not know: {exc}"
        ) from exc


def _looks_like_a_feed(attrs: dict[str, str]) -> bool:
    """An outline meant as a feed: it has an ``xmlUrl`` (even empty) or a feed's type.
    Folders have neither, and are no feeds to report."""
    return "xmlurl" in attrs or (attrs.get("type") or "").strip().casefold() in FEED_TYPES


def _no_url(attrs: dict[str, str]) -> str:
    """Why a feed outline without a URL is skipped, and where its feed may be found."""
    why = "empty xmlUrl: nothing to poll" if "xmlurl" in attrs else "no xmlUrl: nothing to poll"
    site = _clean(attrs.get("htmlurl"))
    if site is None or _feed_url(site) != site or _url_problem(site) is not None:
        return why  # no http(s) page to look for its feed on
    return f"{why}; its htmlUrl is {site} — try `aggregator feeds add {shlex.quote(site)}` to find its feed"


def _head_title(root: ET.Element) -> str | None:
    head = next((child for child in root if _local(child.tag) == "head"), None)
    if head is None:
        return None
    title_node = next((child for child in head if _local(child.tag) == "title"), None)
    return _label(title_node.text) if title_node is not None else None


def render_opml(feeds: Sequence[FeedConfig], *, title: str, now: datetime) -> tuple[str, tuple[str, ...]]:
    """OPML 2.0 for the http(s) feeds, one folder per topic; and the URLs left out (local files).

    A feed with several topics is listed in each topic's folder, as Feedly does; importing
    the file merges them back into one feed with every topic.
    """
    opml = ET.Element("opml", version="2.0")
    head = ET.SubElement(opml, "head")
    ET.SubElement(head, "title").text = title
    ET.SubElement(head, "dateCreated").text = format_datetime(now, usegmt=True)
    ET.SubElement(head, "docs").text = "http://opml.org/spec2.opml"
    body = ET.SubElement(opml, "body")
    folders: dict[str, ET.Element] = {}
    left_out: list[str] = []
    for feed in feeds:
        if canonical_url(feed.url) is None:
            left_out.append(feed.url)
            continue
        parents = []
        for topic in feed.topics:
            if topic not in folders:
                folders[topic] = ET.SubElement(body, "outline", text=topic, title=topic)
            parents.append(folders[topic])
        # A topic named like a reader's default folder ("All") comes back from a folder as no
        # topic (see DEFAULT_FOLDERS): it is said as a category too, which is read as it is.
        named = [t for t in feed.topics if t.casefold() in DEFAULT_FOLDERS]
        name = feed.title or feed.url
        attributes = {"type": "rss", "text": name, "title": name, "xmlUrl": feed.url}
        if named:
            attributes["category"] = ",".join(f"/{t}" for t in named)
        for parent in parents or [body]:
            ET.SubElement(parent, "outline", attributes)
    ET.indent(opml, space="  ")
    text = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(opml, encoding="unicode") + "\n"
    return text, tuple(left_out)


def import_subscriptions(document: ConfigDocument, subscriptions: Iterable[Subscription]) -> ImportReport:
    """Add every subscription that is not already configured (same canonical URL) to ``document``.

    Feeds already present are left exactly as they are: importing the same file twice
    adds nothing and changes nothing.  The caller saves the document.
    """
    added, present = document.add_feeds((sub.url, sub.title, sub.topics) for sub in subscriptions)
    return ImportReport(tuple(added), tuple(present))


def _outlines(node: ET.Element, folders: tuple[str, ...]) -> Iterable[tuple[ET.Element, tuple[str, ...]]]:
    """Every ``<outline>`` under ``node`` with the names of the folders it sits in, in
    document order, including those nested inside a feed's outline (which names no folder).
    A stack, not recursion: folders nested thousands deep are no error."""
    stack: list[tuple[Iterator[ET.Element], tuple[str, ...]]] = [(iter(node), folders)]
    while stack:
        children, inside = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            continue
        if _local(child.tag) != "outline":
            continue
        yield child, inside
        if not len(child):
            continue
        attrs = {_local(key).lower(): value for key, value in child.attrib.items()}
        if attrs.get("xmlurl"):  # outlines inside a feed's: feeds too, in the same folders
            stack.append((iter(child), inside))
            continue
        name = _label(attrs.get("title")) or _label(attrs.get("text"))
        stack.append((iter(child), (*inside, name) if name else inside))


def _categories(value: str | None) -> list[str]:
    """OPML 2.0 ``category``: comma-separated slash-delimited paths; the last part of each is a topic."""
    if not value:
        return []
    topics = []
    for path in value.split(","):
        parts = [part.strip() for part in path.split("/") if part.strip()]
        if parts and (topic := _label(parts[-1])):
            topics.append(topic)
    return topics


def _url_problem(url: str) -> str | None:
    """Why feeds.yaml would refuse ``url`` (too long, a control character…), or None: the
    config's own checks, so that one such outline is skipped instead of failing the import."""
    try:
        FeedConfig(url=url)
    except ValidationError as exc:
        return "; ".join(str(error["msg"]).removeprefix("Value error, ") for error in exc.errors())
    return None


def _label(value: str | None) -> str | None:
    """A title or folder name as feeds.yaml accepts it: blanks collapsed, and the characters
    ``config.check_text`` refuses (control characters, noncharacters) removed."""
    text = _clean(value)  # first: NEL (U+0085) is a line break, so a blank, not a character to drop
    try:
        check_text(text or "")
    except ValueError:
        text = _clean("".join(char for char in text or "" if _writable(char)))
    return text


def _writable(char: str) -> bool:
    try:
        check_text(char)
    except ValueError:
        return False
    return True


def _feed_url(value: str) -> str | None:
    lowered = value.lower()
    if lowered.startswith("feed://"):
        return "http://" + value[len("feed://") :]
    if lowered.startswith("feed:http"):  # feed:https://example.org/rss
        return value[len("feed:") :]
    if lowered.startswith(("http://", "https://")):
        return value
    return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    text = " ".join(value.split())
    return text or None


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))
