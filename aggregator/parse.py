"""Feed bytes in, normalized entries out.

In: the response body (bytes), the response headers (lower-cased names; the charset in
``content-type`` counts) and the final URL after redirects (the base for relative links,
without its user, password and query, which may be secrets: ``_document_base``).
Out: a ``ParsedFeed`` whose entries carry sanitized HTML with absolute links, clean text,
aware UTC dates and stable guids.  Raises ``ParseError`` for bytes that are not a feed,
naming the feeds an HTML page advertises.  Never fetches anything.

Three readers produce one intermediate shape (``_RawFeed``), and one normalizer turns it
into records, so every format gets the same cleaning:

- JSON Feed 1.0/1.1: ``aggregator.jsonfeed`` (feedparser has no JSON parser);
- the fast path: ``fastfeedparser`` (a native core over lxml; with the cleaning below, ~3x
  faster than feedparser per feed), used only for well-formed RSS 2.0 and Atom 1.0 documents whose every entry
  field it reads the way feedparser would (``_read_fast`` says when it declines, and why).
  fastfeedparser ignores ``xml:base``, so ``_BaseScope`` computes the bases feedparser
  would, and the fast path resolves links and content against them;
- feedparser 6 for everything else: malformed XML, RSS 0.9x/1.0, odd encodings, DTDs.
  It gets a ``BytesIO``, never the bytes themselves: given bytes, feedparser first tries
  them as a *file name* and would read a local file.

Rules a reader of the output should know:

- guid: the feed's id, else the entry link, else ``sha256:`` + hash of title and text.
- content_html is the article body when the feed gave one (``content:encoded``, Atom
  ``content``, JSON ``content_html``/``content_text``).  An RSS description alone is a
  summary (``summary_html``), unless its text is longer than ``FULL_TEXT_MIN_CHARS``: a
  description that long *is* the article, so it becomes content_html and summary_html
  stays empty.  A summary that merely repeats the content is dropped.  A Media RSS caption
  (``media:description``) is neither, unless the item has no other text: then the first
  caption is its summary (``_keep_media_captions_apart``).
- text is the plain text of content (else summary), one paragraph a line, derived from
  the sanitized HTML (``_text_of``).
- Whitespace before the XML declaration is removed before parsing (a silent repair), and a
  UTF-8 byte order mark and a declaration that contradict each other are reconciled
  (``_settle_byte_order_mark``).  An HTTP charset that contradicts the declaration yields to
  it when the bytes decode with it, and valid UTF-8 under a single-byte charset is read as
  UTF-8, each with a warning naming what was wrong (``_settle_charset``).
- Dates are aware UTC, to the second.  A date written as a bare number (``1518478934``) is
  Unix time, read alike in every format, and ignored when implausible
  (``jsonfeed.bare_number_date``): feedparser would misread it as an ordinal date.
- A valid feed with no items parses, with the warning "the feed has no entries".
- No entry is dropped for age or count.
- An entry repeated in one feed (the same guid twice) counts once: its first occurrence.

Periodic polls mostly see entries they have already stored.  Each raw entry therefore gets
a source key, and ``parse_feed(..., known=...)`` takes the keys stored for the feed: an
entry whose key is known is not cleaned again but listed in ``ParsedFeed.unchanged``.
Cleaning (sanitizing, plain text, URLs, hashing) is most of the cost of a parse, so a feed
that gained two entries costs two entries' cleaning, not forty.  On feedparser's path the
key (``source_key``) is a digest of everything the normalizer reads from the raw entry (its
fields, its base URL, and ``NORMALIZER_VERSION``).  On the fast path it is a digest of the
item's bytes and of what their reading depends on (``_item_keys``), so that a known item
is not even read: half the cost of a changed feed whose other items are known.
Bump ``NORMALIZER_VERSION`` whenever the normalizer's output changes for the same input
(a new sanitizer rule, or a fast-path reader that reads an item differently), so that
every stored entry is cleaned again on its next poll.
"""

from __future__ import annotations

import codecs
import hashlib
import html
import io
import re
import xml.parsers.expat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from html.parser import HTMLParser
from itertools import chain
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

import fastfeedparser
import feedparser
import nh3

# feedparser's own URL joining, so that the fast path resolves links exactly as feedparser does
# (the corpus test would catch a feedparser release that renamed them).
from feedparser.urls import _urljoin as _feedparser_urljoin
from feedparser.urls import make_safe_absolute_uri

from aggregator.errors import ParseError
from aggregator.jsonfeed import JsonFeed, bare_number_date, is_bare_number, read_json_feed
from aggregator.types import Enclosure, Entry, ParsedFeed
from aggregator.urls import canonical_url, query_holds_secret, without_userinfo

__all__ = ["FULL_TEXT_MIN_CHARS", "NORMALIZER_VERSION", "parse_feed", "source_key"]

# Guids (with the feed's URL, which feeds.yaml keeps under the same bound) and canonical URLs
# are indexed; PostgreSQL refuses an index entry over about 2,700 bytes, so a longer guid
# is stored as its hash (as stable as the guid itself).
MAX_INDEXED_BYTES = 1024

# Part of every source key: bump it when the normalizer's output changes for the same input.
NORMALIZER_VERSION = "4"

# An RSS description with more text than this is the full article, not a teaser.
FULL_TEXT_MIN_CHARS = 1500
# A <ttl> beyond a week is a typo or a joke; polling ignores it rather than sleep for months.
_MAX_TTL_MINUTES = 7 * 24 * 60

# --- HTML sanitizing ----------------------------------------------------------------------

_ALLOWED_TAGS = frozenset(
    {
        *("p", "br", "hr", "div", "span", "a", "img", "figure", "figcaption", "picture"),
        *("em", "strong", "b", "i", "u", "s", "del", "ins", "mark", "small", "sub", "sup"),
        *("q", "cite", "abbr", "dfn", "time", "kbd", "samp", "var", "code", "pre", "blockquote"),
        *("ul", "ol", "li", "dl", "dt", "dd"),
        *("h1", "h2", "h3", "h4", "h5", "h6"),
        *("table", "caption", "thead", "tbody", "tfoot", "tr", "th", "td", "colgroup", "col"),
    }
)
_ALLOWED_ATTRIBUTES = {
    "*": {"title", "lang"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "blockquote": {"cite"},
    "q": {"cite"},
    "abbr": {"title"},
    "time": {"datetime"},
    "ol": {"start", "reversed", "type"},
    "td": {"colspan", "rowspan", "headers"},
    "th": {"colspan", "rowspan", "headers", "scope"},
    "col": {"span"},
    "colgroup": {"span"},
}
_URL_SCHEMES = frozenset({"http", "https", "mailto"})
_LINK_REL = "noopener noreferrer nofollow"
# Elements whose text is not article text at all: dropped with their content.
_DROP_WITH_CONTENT = frozenset({"script", "style", "template", "noscript", "iframe", "object", "svg", "math"})


@lru_cache(maxsize=16)
def _cleaner(base: str) -> nh3.Cleaner:
    """A sanitizer that also makes relative links absolute against ``base``.

    One per base URL (a feed's entries nearly always share one; building costs ~6 µs).
    Few are kept: each holds about 12 KB outside Python's heap, and the base changes
    with every feed, so 256 of them (3 MB a parse worker) bought nothing but memory.
    A base that is not http(s), e.g. a ``file:`` feed, must not leak local paths into
    published HTML, so relative links are removed there instead.
    """
    relative: Literal["deny"] | tuple[Literal["rewrite_with_base"], str] = (
        ("rewrite_with_base", base) if base.startswith(("http://", "https://")) else "deny"
    )
    return nh3.Cleaner(
        tags=set(_ALLOWED_TAGS),
        clean_content_tags=set(_DROP_WITH_CONTENT),
        attributes={k: set(v) for k, v in _ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(_URL_SCHEMES),
        link_rel=_LINK_REL,
        strip_comments=True,
        url_relative=relative,
    )


# Strips every tag (keeping text) for titles, authors and categories.
_TEXT_CLEANER = nh3.Cleaner(tags=set(), clean_content_tags=set(_DROP_WITH_CONTENT), attributes={})

# Characters no field should carry: C0 controls but tab and newline, DEL and C1, the
# Unicode line/paragraph separators (they break JSON-in-JS and many terminals) and bidi
# embeddings/overrides/isolates (they can make a title display as something else).
_CONTROL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufffe\uffff]")
# In sanitized HTML (see ``_text_of``): a block element's tag, which starts a new line, and any tag.
_BLOCK_TAG_RE = re.compile(
    r"</?(?:p|div|br|hr|li|dt|dd|h[1-6]|blockquote|pre|tr|table|ul|ol|dl|figure|figcaption)\b[^>]*>"
)
# A table cell's tag, which keeps its words apart from the next cell's ("Arsenal 2", not "Arsenal2").
_CELL_TAG_RE = re.compile(r"</?t[dh]\b[^>]*>")
_TAG_RE = re.compile(r"<[^>]*>")
_WHITESPACE_RE = re.compile(r"\s+")


def _clean_str(value: str) -> str:
    return _CONTROL_RE.sub("", value)


# Formatting elements the HTML parser opens again in every new block while they are open
# ("reconstruct the active formatting elements"): n left open before m paragraphs make n×m
# elements (2,000 <b> then 2,000 <p>, 83 kB of HTML, became 78 MB and a 1.2 GB process).
_FORMATTING_TAGS = "a|b|big|code|em|font|i|nobr|s|small|strike|strong|tt|u"
_FORMATTING_START_RE = re.compile(rf"<(?:{_FORMATTING_TAGS})[\s/>]", re.IGNORECASE)
_FORMATTING_END_RE = re.compile(rf"</(?:{_FORMATTING_TAGS})\s*>", re.IGNORECASE)
# A fragment that leaves more than MAX_LEFT_OPEN of them open, with enough tags after them
# to re-open them MAX_REOPENED_ELEMENTS times, is kept as text: real articles leave a few open.
MAX_LEFT_OPEN = 64
MAX_REOPENED_ELEMENTS = 100_000
# Nesting deeper than this makes the parse quadratic (5,000 nested lists: 0.3 s, 16,000:
# 4 s), so such a fragment is kept as text too; real articles nest a few dozen levels.  It
# is measured only on fragments with more than DEPTH_CHECK_TAGS tags (a Python loop).
MAX_DEPTH = 1_000
DEPTH_CHECK_TAGS = 5_000
_TAG_TOKEN_RE = re.compile(r"<(/?)([A-Za-z][\w:-]*)")
# Elements that never hold others open: void ones, and those a parser closes by itself
# when the next one starts (an unclosed <p> or <li> per paragraph nests nothing).  A "/>"
# closes nothing in HTML (<div/> opens a div), so it is not looked at.
_NOT_NESTING = frozenset({
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track",
    "wbr", "p", "li", "dt", "dd", "tr", "td", "th", "thead", "tbody", "tfoot", "option", "optgroup", "rb",
    "rt", "rp", "colgroup", "caption",
})  # fmt: skip


def sanitize_html(fragment: str, base: str) -> str:
    """Allowlist-sanitize an HTML fragment and make its links absolute against ``base``."""
    if not fragment.strip():
        return ""
    if _amplifies(fragment):
        # Keep the words, not the markup: the parser would build far more than it was given.
        fragment = _text_as_html(html.unescape(_TAG_RE.sub(" ", fragment)))
    return _clean_str(_cleaner(base).clean(_clean_str(fragment))).strip()


def _amplifies(fragment: str) -> bool:
    tags = fragment.count("<")  # a C-level count; the regexes below run on the rare large ones
    if tags <= MAX_LEFT_OPEN or tags * tags <= MAX_REOPENED_ELEMENTS:
        return False
    left_open = len(_FORMATTING_START_RE.findall(fragment)) - len(_FORMATTING_END_RE.findall(fragment))
    if left_open > MAX_LEFT_OPEN and left_open * tags > MAX_REOPENED_ELEMENTS:
        return True
    return tags > DEPTH_CHECK_TAGS and _nesting_depth(fragment) > MAX_DEPTH


def _nesting_depth(fragment: str) -> int:
    """How deep the elements of ``fragment`` nest at most, as written: an end tag closes an
    element only when one of its name is open (a stray ``</span>`` closes nothing)."""
    open_by_name: dict[str, int] = {}
    depth = deepest = 0
    for closing, tag in _TAG_TOKEN_RE.findall(fragment):
        name = tag.lower()
        if name in _NOT_NESTING:
            continue
        if not closing:
            open_by_name[name] = open_by_name.get(name, 0) + 1
            depth += 1
            deepest = max(deepest, depth)
        elif open_by_name.get(name):
            open_by_name[name] -= 1
            depth -= 1
    return deepest


def _text_of(sanitized: str) -> str:
    """Plain text of ``sanitize_html`` output: one block a line, whitespace collapsed, entities decoded.

    Two C-level regex passes and a split, not a second HTML parse: the sanitizer's serializer
    escapes every ``<``, ``>`` and ``&`` in text *and* attribute values, so in its output each
    ``<`` opens a tag and each ``>`` closes one, and the only entities are its own escapes.
    Elements dropped with their content (``<script>``…) are already gone, and so are control
    characters (``sanitize_html`` removed them; tags and those escapes cannot bring any back).
    """
    if not sanitized:
        return ""
    text = html.unescape(_TAG_RE.sub("", _CELL_TAG_RE.sub(" ", _BLOCK_TAG_RE.sub("\n", sanitized))))
    # Per line, ``split()`` collapses every run of whitespace (U+00A0 included) and trims.
    return "\n".join(filter(None, (" ".join(line.split()) for line in text.split("\n"))))


# In a title, a "<" that opens a tag of an HTML element (a whole tag, up to its ">"), a
# namespaced or custom one (Word's <o:p>, <x-card>), a comment, a declaration or a PI is
# markup; any other "<" is text: "Vec<T>", "a<b is fine", "Option<std::string>", "<3".
_HTML_ELEMENTS = (
    "a|abbr|acronym|address|applet|area|article|aside|audio|b|base|basefont|bdi|bdo|bgsound|big|blink"
    "|blockquote|body|br|button|canvas|caption|center|cite|code|col|colgroup|data|datalist|dd|del"
    "|details|dfn|dialog|dir|div|dl|dt|em|embed|fieldset|figcaption|figure|font|footer|form|frame"
    "|frameset|h[1-6]|head|header|hgroup|hr|html|i|iframe|img|input|ins|kbd|label|legend|li|link|main"
    "|map|mark|marquee|math|menu|meta|meter|nav|nobr|noembed|noframes|noscript|object|ol|optgroup"
    "|option|output|p|param|picture|plaintext|pre|progress|q|rb|rp|rt|rtc|ruby|s|samp|script|search"
    "|section|select|slot|small|source|span|strike|strong|style|sub|summary|sup|svg|table|tbody|td"
    "|template|textarea|tfoot|th|thead|time|title|tr|track|tt|u|ul|var|video|wbr|xmp"
)
_TITLE_TAG_RE = re.compile(
    rf"<(?!/?(?:{_HTML_ELEMENTS})\b[^<>]*>|/?[A-Za-z][\w.]*(?:-[\w.-]*|:(?!:)[\w.-]+)(?![\w.:-])[^<>]*>|!|\?)",
    re.IGNORECASE,
)


def _clean_title(value: str | None) -> str:
    """Titles are treated as HTML whatever the feed says (feeds double-escape them freely),
    except that a ``<`` that opens no tag (``_TITLE_TAG_RE``) stays text."""
    if not value:
        return ""
    if "<" in value or "&" in value:
        value = html.unescape(_TEXT_CLEANER.clean(_TITLE_TAG_RE.sub("&lt;", value)))
    return _WHITESPACE_RE.sub(" ", _clean_str(value)).strip()


def _text_as_html(text: str) -> str:
    """Plain text as HTML: escaped, blank lines as paragraph breaks."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    return "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)


# --- the intermediate shape every reader produces -----------------------------------------


@dataclass(frozen=True, slots=True)
class _Body:
    """A piece of HTML-ish content as a feed gave it."""

    value: str
    is_html: bool  # False: plain text, escape before use
    base: str  # the base URL for its relative links: the xml:base in scope, else the document URL


@dataclass(frozen=True, slots=True)
class _RawEntry:
    id: str | None
    link: str | None
    title: str | None
    authors: tuple[str, ...]
    published: datetime | None
    updated: datetime | None
    content: _Body | None
    summary: _Body | None
    enclosures: tuple[tuple[str, str | None, str | int | None], ...]  # (href, type, length)
    categories: tuple[str, ...]
    base: str
    # The fast path's source key (``_item_keys``): a digest of the item's bytes, not of
    # these fields.  None: ``source_key`` of the fields.
    key: str | None = None


@dataclass(frozen=True, slots=True)
class _KnownItem:
    """An item the fast path found among the known source keys, so did not read at all."""

    key: str


@dataclass(frozen=True, slots=True)
class _RawFeed:
    format: str
    title: str | None
    link: str | None
    ttl: str | None
    entries: tuple[_RawEntry | _KnownItem, ...]
    warnings: tuple[str, ...]


# --- the entry point ----------------------------------------------------------------------


def parse_feed(
    body: bytes,
    headers: Mapping[str, str],
    url: str,
    *,
    fast: bool = True,
    known: Mapping[str, str] | None = None,
) -> ParsedFeed:
    """Parse feed bytes into a ``ParsedFeed``; ``ParseError`` when the bytes are not a feed.

    ``headers`` are the response headers with lower-cased names; ``url`` is the final URL
    (relative links resolve against it).  ``fast=False`` forces feedparser, which the
    corpus test uses to check the fast path against it.  ``known`` maps the source keys
    stored for this feed to their entries' guids: those entries are not normalized again
    but listed in ``unchanged`` (see the module docstring).
    """
    if not body or not body.strip():
        raise ParseError("empty response")
    content_type = headers.get("content-type", "")
    stripped = body.lstrip(b" \t\r\n")
    if stripped.startswith(b"<?xml"):
        # A blank line before the XML declaration (a stray newline in a PHP template) is the
        # commonest way real feeds are malformed; it hides nothing, so repair it silently.
        body = stripped
    if body.startswith(codecs.BOM_UTF8):
        body = _settle_byte_order_mark(body)
    known = known or {}
    base = _document_base(url)
    if _looks_like_json(body, content_type):
        raw = _from_json_feed(read_json_feed(body), base)  # its errors leave the URL to the caller
    else:
        body, content_type, settled = _settle_charset(body, content_type)
        raw = (_read_fast(body, content_type, base, known) if fast else None) or _read_feedparser(
            body, content_type, url, base
        )
        if settled:
            raw = replace(raw, warnings=(settled, *raw.warnings))
    return _normalize(raw, base, known)


def _document_base(url: str) -> str:
    """The base URL the document's own URL gives its relative links: ``url`` without its user
    name and password, and without its query when that holds a credential (``?token=``).

    A feed URL may hold secrets (``https://user:password@host/feed?token=…``), and every
    link resolved against it is published.  Only a reference to the document itself
    (``#comments``, an empty ``href``) would take the query; such a link needs no token.
    An ordinary query stays: it picks the document (``index.php?format=rss``), and the
    guid of an entry that has only such a link is made from it.  An ``xml:base`` the feed
    gives is its own public statement and is followed as given.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # no URL at all: better no base than one that may hold a secret
        return ""
    secret_query = query_holds_secret(parts.query)
    if "@" not in parts.netloc and not secret_query:
        return url  # nothing to remove: as given, so that source keys and guids stay as they were
    kept = parts._replace(query="" if secret_query else parts.query, fragment="")
    return without_userinfo(urlunsplit(kept))


def _settle_byte_order_mark(body: bytes) -> bytes:
    """A UTF-8 byte order mark before an XML declaration of another encoding: one of them is
    wrong, and each parser believed another (fastfeedparser the declaration; feedparser the
    mark, then, failing, Windows-1252).  Bytes that are valid UTF-8 are UTF-8 (a template's
    declaration left unchanged), and the declaration is made to say so; otherwise the mark
    goes (an editor's, or a script's before a feed in another encoding)."""
    declared = _XML_ENCODING_RE.match(body[3:256])
    if declared is None or _codec(declared.group(1).decode("ascii")) == "utf-8":
        return body
    try:
        body[3:].decode("utf-8")
    except UnicodeDecodeError:
        return body[3:]
    start, end = declared.span(1)
    return body[: start + 3] + b"utf-8" + body[end + 3 :]


def _settle_charset(body: bytes, content_type: str) -> tuple[bytes, str, str | None]:
    """The body and content type to read, and a warning, when the HTTP charset, the XML
    declaration and the bytes do not agree.

    RFC 3023 (and feedparser) let the HTTP charset win, but a server's charset is mostly a
    default for the whole site (Apache's ``AddDefaultCharset ISO-8859-1``) while the
    declaration was written with the document: a KOI8-R feed served as ISO-8859-1 read as
    ``ðÅÒ×ÁÑ``.  So the declaration wins when the bytes decode with it (no declaration is
    UTF-8, as XML says), and the header is kept only when they do not (a Windows-1251 feed
    that declares nothing).  Before that, bytes that are valid UTF-8 with something beyond
    ASCII are UTF-8 whatever single-byte encoding a header or the declaration names:
    real text in such an encoding is practically never valid UTF-8 (a Cyrillic or accented
    letter is a UTF-8 lead byte, and must be followed by symbols 0x80 to 0xBF, not by
    another letter), whereas UTF-8 under a template's old declaration is common (``â‚¬``).
    Text that is all ASCII reads alike in any of them: nothing to settle or say.
    """
    http = _HTTP_CHARSET_RE.search(content_type)
    declared = _XML_ENCODING_RE.match(body)
    declared_codec = _codec(declared.group(1).decode("ascii")) if declared else "utf-8"
    http_codec = _codec(http.group(1)) if http else declared_codec
    if (http_codec == declared_codec and not _single_byte(declared_codec)) or body.isascii():
        return body, content_type, None
    media_type = content_type.split(";", 1)[0].strip()  # without its charset: the declaration says
    header = f"the server's Content-Type says charset={http.group(1)}" if http else ""
    if declared and _single_byte(declared_codec) and _decodes(body, "utf-8"):
        start, end = declared.span(1)
        said, fix = f"the feed declares {declared.group(1).decode('ascii')}", "its XML declaration"
        if http and http_codec != "utf-8":
            said, fix = f"{header} and {said}", "both"
        warning = f"{said}, but its text is UTF-8; read as UTF-8: the site should fix {fix}"
        return body[:start] + b"utf-8" + body[end:], media_type, warning
    if (
        http_codec == declared_codec
        or not _ascii_compatible(declared_codec)
        or not _decodes(body, declared_codec)
        or (_single_byte(http_codec) and _single_byte(declared_codec) and http_codec not in _SITE_DEFAULTS)
    ):
        # A declaration read in ASCII bytes that names UTF-16 (or the like) is wrong itself.
        # Between two single-byte encodings the bytes cannot tell, and a header naming one
        # that is no site-wide default (windows-1251 against a declared iso-8859-1) was set
        # for this feed: the header wins, as RFC 3023 says.
        return body, content_type, None
    used = declared.group(1).decode("ascii") if declared else "UTF-8"
    said = f"the feed declares {used}" if declared else "the feed is UTF-8 (it declares no other encoding)"
    return body, media_type, f"{header} but {said}; read as {used}: the site should fix its header"


# The charsets servers give every document by default (Apache's AddDefaultCharset, old
# Latin-1 defaults), whatever each one is: a declaration in the feed says more.
_SITE_DEFAULTS = frozenset({"iso8859-1", "ascii", "cp1252"})


@lru_cache(maxsize=64)
def _single_byte(codec: str) -> bool:
    """Whether ``codec`` is an ASCII-compatible encoding of one byte a character (Latin-1,
    Windows-125x, KOI8-R…): each byte past ASCII is one character, none starts a sequence."""
    return (
        codec != "utf-8"
        and _ascii_compatible(codec)
        and len(bytes(range(128, 256)).decode(codec, "replace")) == 128
    )


@lru_cache(maxsize=64)
def _ascii_compatible(codec: str) -> bool:
    try:
        return bytes(range(128)).decode(codec, "replace") == bytes(range(128)).decode("ascii")
    except LookupError:
        return False


def _decodes(body: bytes, codec: str) -> bool:
    try:
        body.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def _looks_like_json(body: bytes, content_type: str) -> bool:
    head = body[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"{"):
        return True
    media_type = content_type.split(";", 1)[0].strip().lower()
    # A JSON content type over a body that opens like XML is a misconfigured server: trust the bytes.
    return media_type in ("application/feed+json", "application/json") and not head.startswith(b"<")


# --- normalization ------------------------------------------------------------------------


def _normalize(raw: _RawFeed, url: str, known: Mapping[str, str]) -> ParsedFeed:
    warnings = list(raw.warnings)
    entries: list[Entry] = []
    keys: list[str] = []
    unchanged: list[str] = []
    seen: set[str] = set()
    for raw_entry in raw.entries:
        if isinstance(raw_entry, _KnownItem):  # found in known by the fast path, so not read
            guid = known[raw_entry.key]
        else:
            key = raw_entry.key or source_key(raw_entry)
            stored = known.get(key)
            if stored is None:
                entry = _normalize_entry(raw_entry)
                if entry.guid not in seen:
                    entries.append(entry)
                    keys.append(key)
                seen.add(entry.guid)
                continue
            guid = stored
        if guid not in seen:
            unchanged.append(guid)
        seen.add(guid)
    if not raw.entries:
        warnings.append("the feed has no entries")
    ttl = None
    if raw.ttl is not None:
        try:
            minutes = int(raw.ttl.strip())
        except ValueError:
            minutes = 0
        if 0 < minutes <= _MAX_TTL_MINUTES:
            ttl = timedelta(minutes=minutes)
        else:
            warnings.append(f"ignored <ttl> {raw.ttl.strip()[:40]!r}: not a number of minutes up to a week")
    return ParsedFeed(
        title=_clean_title(raw.title),
        link=_absolute_http(raw.link, url),
        format=raw.format,
        entries=tuple(entries),
        ttl=ttl,
        warnings=tuple(_clean_str(w) for w in dict.fromkeys(warnings)),
        source_keys=tuple(keys),
        unchanged=tuple(unchanged),
    )


def source_key(raw: _RawEntry) -> str:
    """32 hex digits over everything ``_normalize_entry`` reads from ``raw``, and the version.

    Each field goes in with its length in front, so no text inside a field (a NUL, a
    separator) can pass for a boundary between two fields; None is told from "" by a
    length of -1.
    """
    digest = hashlib.blake2b(digest_size=16)
    parts = [
        NORMALIZER_VERSION,
        raw.id,
        raw.link,
        raw.title,
        *_body_fields(raw.content),
        *_body_fields(raw.summary),
        raw.base,
        None if raw.published is None else raw.published.isoformat(),
        None if raw.updated is None else raw.updated.isoformat(),
        str(len(raw.authors)),
        *raw.authors,
        str(len(raw.categories)),
        *raw.categories,
    ]
    for href, kind, length in raw.enclosures:
        parts += (href, kind, None if length is None else str(length))
    digest.update(_length_prefixed(parts).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _length_prefixed(parts: Iterable[str | None]) -> str:
    """Each part with its length in front, so no text inside a part can pass for a boundary
    between two; None is told from "" by a length of -1."""
    return "".join("-1:" if part is None else f"{len(part)}:{part}" for part in parts)


def _body_fields(body: _Body | None) -> tuple[str | None, str | None, str | None]:
    if body is None:
        return (None, None, None)
    return (body.value, "html" if body.is_html else "text", body.base)


def _normalize_entry(raw: _RawEntry) -> Entry:
    content_html = _body_html(raw.content)
    summary = raw.summary
    if summary and raw.content and summary.value.strip() == raw.content.value.strip():
        summary = None  # feedparser copies content into an absent summary; that is not a summary
    summary_html = _body_html(summary)
    text = _text_of(content_html or summary_html)
    if not content_html and len(text) > FULL_TEXT_MIN_CHARS:
        content_html, summary_html = summary_html, ""  # a description this long is the article
    title = _clean_title(raw.title)
    link = _absolute_http(raw.link, raw.base)
    guid = _clean_str(raw.id or "").strip() or link
    if not guid:
        guid = "sha256:" + hashlib.sha256(f"{title}\n{text}".encode()).hexdigest()
    elif len(encoded := guid.encode("utf-8", "surrogatepass")) > MAX_INDEXED_BYTES:
        guid = "sha256:" + hashlib.sha256(encoded).hexdigest()
    canonical = canonical_url(link) if link else None
    return Entry(
        guid=guid,
        url=link,
        # An index entry has a size limit (PostgreSQL: about 2,700 bytes); such a URL is no
        # article's, and matching copies by it is not worth failing the feed's write for.
        canonical_url=canonical
        if canonical is None or len(canonical.encode()) <= MAX_INDEXED_BYTES
        else None,
        title=title,
        authors=_unique_texts(raw.authors),
        published=raw.published,
        updated=raw.updated,
        content_html=content_html,
        summary_html=summary_html,
        text=text,
        enclosures=_enclosures(raw.enclosures, raw.base),
        categories=_unique_texts(raw.categories),
    )


def _body_html(body: _Body | None) -> str:
    if body is None:
        return ""
    fragment = body.value if body.is_html else _text_as_html(body.value)
    return sanitize_html(fragment, body.base)


def _absolute_http(link: str | None, base: str) -> str | None:
    """``link`` resolved against ``base`` when the result is http(s); anything else is None."""
    if not link:
        return None
    link = _clean_str(link).strip()
    try:
        absolute = urljoin(base, link)
        scheme = urlsplit(absolute).scheme.lower()
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return None
    return absolute if scheme in ("http", "https") else None


def _unique_texts(values: Iterable[str]) -> tuple[str, ...]:
    cleaned = (_clean_title(v) for v in values)
    return tuple(dict.fromkeys(v for v in cleaned if v))


def _enclosures(raw: Iterable[tuple[str, str | None, str | int | None]], base: str) -> tuple[Enclosure, ...]:
    found: dict[str, Enclosure] = {}
    for href, mime, length in raw:
        link = _absolute_http(href, base)
        if not link or link in found:
            continue
        size: int | None
        try:
            size = int(str(length).strip()) if length not in (None, "") else None
        except ValueError:
            size = None
        mime_type = _clean_str(mime).strip() if mime else None
        found[link] = Enclosure(url=link, type=mime_type or None, length=size if size and size > 0 else None)
    return tuple(found.values())


# --- JSON Feed ----------------------------------------------------------------------------


def _from_json_feed(doc: JsonFeed, url: str) -> _RawFeed:
    entries = []
    for item in doc.items:
        content = None
        if item.content_html:
            content = _Body(item.content_html, is_html=True, base=url)
        elif item.content_text:
            content = _Body(item.content_text, is_html=False, base=url)
        entries.append(
            _RawEntry(
                id=item.id,
                # The item's own URL, else its external URL (also when the own one is no link).
                link=next((u for u in (item.url, item.external_url) if _absolute_http(u, url)), item.url),
                title=item.title,
                authors=item.authors,
                published=item.date_published,
                updated=item.date_modified,
                content=content,
                summary=_Body(item.summary, is_html=False, base=url) if item.summary else None,
                enclosures=tuple((a.url, a.mime_type, a.size_in_bytes) for a in item.attachments),
                categories=item.tags,
                base=url,
            )
        )
    return _RawFeed(
        format=doc.format,
        title=doc.title,
        link=doc.home_page_url,
        ttl=None,
        entries=tuple(entries),
        warnings=doc.warnings,
    )


# --- feedparser ---------------------------------------------------------------------------


def _start_media_caption(parser: Any, attrs_d: dict[str, str]) -> None:
    # The type and base feedparser gave a caption read as a description (HTML unless it says
    # otherwise), so that an entry whose only text is a caption reads as it did before;
    # captions do not nest, so one pending at a time is enough.
    kind = parser.map_content_type(attrs_d.get("type", "text/html"))
    parser.aggregator_caption = {"type": kind, "base": parser.baseuri}
    parser.push("media_description", 1)


def _end_media_caption(parser: Any) -> None:
    value = parser.pop("media_description")
    caption = getattr(parser, "aggregator_caption", None)
    if value is not None and caption is not None:
        parser._get_context().setdefault("media_captions", []).append({**caption, "value": value})
    parser.aggregator_caption = None


def _keep_media_captions_apart() -> None:
    """Make feedparser keep each ``media:description`` under ``media_captions``, a list of
    details (value, type, base), instead of reading it as the entry's description.

    feedparser reads a ``media:description`` (a photo's or video's caption, inside
    ``media:content`` or ``media:group``, or beside them) as another ``<description>``:
    after the item's own description it files the first caption as the *content* (the
    article), and later ones into ``summary_detail``; before the description, the caption
    becomes the summary and the article the content.  A HuffPost item came out as a
    138-character caption with its 3,595-character article gone.  Which is which cannot be
    told from feedparser's result, so its two parser classes (used by nothing but
    ``feedparser.parse``) get handlers that keep captions apart; ``_entry_from_feedparser``
    takes one only for an entry that has no other text.
    """
    # What is replaced must be there as this was written against (feedparser 6.0: the Media
    # RSS namespace's handlers, reached by name): a release that routed captions otherwise
    # would make them the article again, silently.  Fail at import instead.
    media = feedparser.namespaces.mediarss.Namespace
    if not (
        callable(getattr(media, "_start_media_description", None))
        and callable(getattr(media, "_end_media_description", None))
    ):
        raise ImportError(
            f"feedparser {feedparser.__version__} has no Media RSS description handlers to replace:"
            " aggregator.parse was written for feedparser 6.0; pin it (pip install 'feedparser<6.1')"
        )
    for parser_class in (feedparser.api.StrictFeedParser, feedparser.api.LooseFeedParser):
        if not issubclass(parser_class, media):
            raise ImportError(
                f"feedparser {feedparser.__version__}: {parser_class.__name__} reads no Media RSS"
            )
        parser_class._start_media_description = _start_media_caption
        parser_class._end_media_description = _end_media_caption


_keep_media_captions_apart()


def _feedparser_parse(body: bytes, response_headers: dict[str, str]) -> Any:
    return feedparser.parse(
        io.BytesIO(body),  # never the bytes: feedparser would try them as a file name
        response_headers=response_headers,
        sanitize_html=False,  # nh3 does it, ~10x faster
        resolve_relative_uris=False,  # nh3 does it while sanitizing
    )


def _parser_failed(exc: Exception) -> ParseError:
    return ParseError(f"not a feed: the parser failed: {type(exc).__name__}: {exc}")


_CHAR_REF_RE = re.compile(rb"&#(?:[xX]([0-9a-fA-F]+)|([0-9]+));")


def _repair_char_refs(body: bytes) -> bytes:
    """Numeric character references as Python can read them: a UTF-16 pair of references
    becomes the one character it encodes, and a lone half or a number past U+10FFFF
    becomes U+FFFD.  Other references are left as they are."""
    out: list[bytes] = []
    position = 0
    pending: tuple[int, int] | None = None  # a high half waiting for its low half: (number, end)

    for found in _CHAR_REF_RE.finditer(body):
        digits = found.group(1) or found.group(2)
        number = int(digits, 16 if found.group(1) else 10) if len(digits) <= 12 else 0x110000
        if pending is not None and found.start() == pending[1] and 0xDC00 <= number <= 0xDFFF:
            combined = 0x10000 + ((pending[0] - 0xD800) << 10) + (number - 0xDC00)
            out.append(b"&#x%X;" % combined)
            pending = None
            position = found.end()
            continue
        if pending is not None:
            out.append(b"&#xFFFD;")  # a high half with no low half after it
            pending = None
        out.append(body[position : found.start()])
        position = found.end()
        if 0xD800 <= number <= 0xDBFF:
            pending = (number, found.end())
        elif 0xDC00 <= number <= 0xDFFF or number > 0x10FFFF:
            out.append(b"&#xFFFD;")
        else:
            out.append(found.group())
    if pending is not None:
        out.append(b"&#xFFFD;")
    out.append(body[position:])
    return b"".join(out)


def _read_feedparser(body: bytes, content_type: str, url: str, base: str) -> _RawFeed:
    """``base`` (``_document_base``) resolves the document's links; ``url`` those of the feeds
    an HTML page advertises (which keep its user and password: they may be added to feeds.yaml)."""
    # Without a content type feedparser warns "no Content-type specified" (every file: feed
    # would); application/xml makes it read the XML declaration, as it would for a server.
    response_headers = {"content-location": base, "content-type": "application/xml"}
    if content_type:
        # RFC 3023 says text/xml without a charset is US-ASCII, and feedparser obeys, which
        # turns every UTF-8 feed served that way into a "declared as us-ascii" warning.  Real
        # servers mean "see the XML declaration", which is what application/xml says.
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type.startswith("text/") and "charset" not in content_type.lower():
            content_type = "application/xml"
        response_headers["content-type"] = content_type
    try:
        result = _feedparser_parse(body, response_headers)
    except (UnicodeError, ValueError, OverflowError) as exc:
        # A character reference Python cannot turn into a character fails the whole feed
        # inside feedparser: UTF-16 halves (&#55357;&#56832;, as some CMSs write an emoji),
        # or numbers past U+10FFFF.  Read it again with those references repaired.
        repaired = _repair_char_refs(body)
        if repaired == body:
            raise _parser_failed(exc) from exc
        try:
            result = _feedparser_parse(repaired, response_headers)
        except Exception as again:
            raise _parser_failed(again) from again
    except Exception as exc:  # feedparser is a large, loose parser; no input may crash a poll
        raise _parser_failed(exc) from exc
    version = str(result.get("version") or "")
    raw_entries = list(result.get("entries") or [])
    problem = _bozo_message(result, body, content_type)
    if not raw_entries and not version:
        raise ParseError(
            _not_a_feed_message(body, content_type, url, problem), _advertised(body, content_type, url)
        )
    warnings = [problem] if problem else []
    if not version:
        warnings.append(f"unrecognized feed format; read {len(raw_entries)} entries anyway")
    feed = result.get("feed") or {}
    entries = tuple(_entry_from_feedparser(e, base) for e in raw_entries)
    return _RawFeed(
        format=version or "unknown",
        title=_opt_str(feed.get("title")),
        link=_opt_str(feed.get("link")),
        ttl=_opt_str(feed.get("ttl")),
        entries=entries,
        warnings=tuple(warnings),
    )


def _bozo_message(result: Any, body: bytes, content_type: str) -> str | None:
    if not result.get("bozo"):
        return None
    exc = result.get("bozo_exception")
    if exc is None:
        return None
    if isinstance(exc, feedparser.CharacterEncodingOverride):
        return _encoding_override_message(
            body, content_type, str(result.get("encoding") or "another encoding")
        )
    line = getattr(exc, "getLineNumber", None)
    message = getattr(exc, "getMessage", None)
    if callable(line) and callable(message):  # a SAX error from the strict XML pass
        return f"not well-formed XML (line {line()}): {message()}"
    return str(exc) or type(exc).__name__


def _encoding_override_message(body: bytes, content_type: str, used: str) -> str:
    """What was wrong when feedparser read the text in ``used``, not the encoding it was told.

    feedparser says "document declared as utf-8" also when only the server's Content-Type
    said so; the operator then finds the right declaration in the file and cannot act.
    """
    http = _HTTP_CHARSET_RE.search(content_type)
    declared = _XML_ENCODING_RE.match(body)
    declared_charset = declared.group(1).decode("ascii") if declared else None
    said = []
    if http:
        said.append(f"the server's Content-Type says charset={http.group(1)}")
    if declared_charset:
        said.append(f"the feed declares {declared_charset}")
    elif not http:
        said.append("the feed declares no encoding (so UTF-8)")
    if len(said) == 2 and _codec(declared_charset or "") != _codec(http.group(1) if http else ""):
        return f"{' and '.join(said)}, but its text is in neither; read as {used}"
    return f"{' and '.join(said)}, but its text is not in that encoding; read as {used}"


def _entry_from_feedparser(e: Any, url: str) -> _RawEntry:
    contents = [c for c in (e.get("content") or []) if _opt_str(c.get("value"))]
    # Several <content> elements are alternatives; prefer an HTML one.
    contents.sort(key=lambda c: 0 if _is_html_type(c.get("type")) else 1)
    summary = _fp_summary(e, url)
    if not contents and summary is None:
        # No text but captions (a video's description in media:group): the first one, as a
        # summary, is better than nothing; beside the item's own text a caption is never read.
        summary = next((c for c in (e.get("media_captions") or []) if _opt_str(c.get("value"))), None)
    try:
        raw_enclosures = e["enclosures"]  # feedparser computes this key from rel=enclosure links
    except KeyError:
        raw_enclosures = []
    return _RawEntry(
        id=_opt_str(e.get("id")),
        link=_opt_str(e.get("link")),
        title=_opt_str(e.get("title")),
        authors=tuple(
            name
            for a in (e.get("authors") or [])
            if (name := _opt_str(a.get("name")) or _opt_str(a.get("email")))
        ),
        published=_fp_date(e, "published"),
        updated=_fp_date(e, "updated"),
        content=_fp_body(contents[0], url) if contents else None,
        summary=_fp_body(summary, url) if summary and _opt_str(summary.get("value")) else None,
        enclosures=tuple(
            (href, _opt_str(enc.get("type")), _opt_str(enc.get("length")))
            for enc in raw_enclosures
            if (href := _opt_str(enc.get("href")))
        ),
        categories=tuple(
            term
            for t in (e.get("tags") or [])
            if (term := _opt_str(t.get("term")) or _opt_str(t.get("label")))
        ),
        base=url,
    )


def _fp_summary(e: Any, url: str) -> Any:
    """The entry's summary as a detail (value, type, base), or None.

    ``e.summary`` is the description-like element nearest the entry, but feedparser sets
    ``summary_detail`` from every one it reads, however deeply nested: when their values
    differ, the detail is another element's, and its type and base do not apply.
    """
    value = e.get("summary")
    if not _opt_str(value):
        return None
    detail = e.get("summary_detail")
    if detail and detail.get("value") == value:
        return detail
    return {"value": value, "type": "text/html", "base": url}


def _fp_body(detail: Any, url: str) -> _Body:
    return _Body(
        value=str(detail.get("value") or ""),
        is_html=_is_html_type(detail.get("type")),
        base=_opt_str(detail.get("base")) or url,
    )


def _is_html_type(mime: object) -> bool:
    return not isinstance(mime, str) or mime in ("text/html", "application/xhtml+xml", "html", "xhtml")


def _fp_date(e: Any, field: str) -> datetime | None:
    """The entry's ``published`` or ``updated`` date: feedparser's reading (``*_parsed``) of
    the element's text, except that a bare number is Unix time (``bare_number_date``), which
    feedparser misreads as an ordinal date (``1518478934``: 2015-07-03).

    feedparser keeps the text and its reading of the same element (the last of those it
    files under the field: ``pubDate``, ``dc:date``, Atom ``updated``…).  ``dict.get``, not
    ``e.get``: FeedParserDict answers a missing "updated" with "published" (and a
    DeprecationWarning); an entry that gave only a publication date was not updated.
    """
    text = dict.get(e, field)
    if isinstance(text, str) and is_bare_number(stripped := text.strip()):
        return bare_number_date(stripped)
    return _struct_to_datetime(dict.get(e, f"{field}_parsed"))


def _struct_to_datetime(value: object) -> datetime | None:
    """feedparser's ``*_parsed`` (a UTC ``time.struct_time``) to an aware datetime."""
    try:
        return datetime(*value[:6], tzinfo=UTC) if value else None  # type: ignore[index, misc]
    except (TypeError, ValueError, OverflowError):
        return None


def _opt_str(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


# --- not a feed: say what it is -----------------------------------------------------------

_ROOT_RE = re.compile(rb"<([A-Za-z_][\w.:-]*)")
_PROLOG_RE = re.compile(rb"\s*(?:<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>]*>|\s)*", re.DOTALL | re.IGNORECASE)


def _looks_like_html(body: bytes, content_type: str) -> bool:
    head = body[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head[:512]:
        return True
    return content_type.split(";", 1)[0].strip().lower() in ("text/html", "application/xhtml+xml")


def _not_a_feed_message(body: bytes, content_type: str, url: str, problem: str | None) -> str:
    """What the body is instead of a feed.  It does not name the URL: every caller shows the
    message after the feed's URL (``feeds.yaml:LINE: URL: …``, ``cannot subscribe to URL: …``,
    a status row), and the URL here, the final one, may hold a password or a token."""
    if body.startswith(b"\x1f\x8b"):
        return (
            "not a feed: the body is still gzip-compressed after decoding (compressed twice, "
            "or a .gz file served without Content-Encoding: gzip); the site must fix its server"
        )
    if _looks_like_html(body, content_type):
        advertised = _advertised(body, content_type, url)
        if advertised:
            return f"not a feed: it is an HTML page; it advertises these feeds: {', '.join(advertised)}"
        return "not a feed: it is an HTML page and advertises no feed (no <link rel=alternate>)"
    prolog = _PROLOG_RE.match(body[:4096].lstrip(b"\xef\xbb\xbf"))
    rest = body[prolog.end() if prolog else 0 :]
    root = _ROOT_RE.match(rest)
    if root:
        name = root.group(1).decode("ascii", "replace")
        return f"not a feed: the document is <{name}>, not RSS, Atom, RDF or JSON Feed"
    text = rest.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text and not text.startswith(b"<"):
        # No markup at all (a plain-text error page, a script's output): expat's line of its
        # syntax error points nowhere, how the body begins says what it is.
        begins = " ".join(_clean_str(text[:80].decode("utf-8", "replace")).split())[:40].rstrip()
        return f"not a feed: neither XML nor JSON: it begins {begins!r}"
    why = problem or "no XML element found"
    return f"not a feed: {why}"


_FEED_TYPES = frozenset(
    {"application/rss+xml", "application/atom+xml", "application/feed+json", "application/rdf+xml"}
)


class _FeedLinkFinder(HTMLParser):
    """Collects ``<link rel=alternate type=feed>`` hrefs and ``<base href>`` from an HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: (v or "") for k, v in attrs}
        if tag == "base" and self.base is None and found.get("href"):
            self.base = found["href"]
        elif tag == "link" and found.get("href"):
            rels = found.get("rel", "").lower().split()
            if "alternate" in rels and found.get("type", "").strip().lower() in _FEED_TYPES:
                self.hrefs.append(found["href"])

    handle_startendtag = handle_starttag


def _advertised(body: bytes, content_type: str, url: str) -> tuple[str, ...]:
    """The feed URLs an HTML page advertises, absolute, in page order."""
    if b"<link" not in body and b"<LINK" not in body:
        return ()
    finder = _FeedLinkFinder()
    head = body[: 512 * 1024]
    try:
        finder.feed(head.decode(_html_charset(head, content_type), "replace"))
        finder.close()
    except Exception:  # html.parser is lenient, but a hostile page must not crash a poll
        return ()
    base = _absolute_http(finder.base, url) or url
    links = (_absolute_http(h, base) for h in finder.hrefs)
    return tuple(dict.fromkeys(link for link in links if link))


_HTTP_CHARSET_RE = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)  # in Content-Type
_META_CHARSET_RE = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9._:-]+)""", re.IGNORECASE)


def _html_charset(body: bytes, content_type: str) -> str:
    """The page's encoding as HTML says to find it: a byte order mark, the HTTP charset, a
    ``<meta charset>`` (or ``http-equiv``) in the first 1024 bytes, else UTF-8."""
    if body.startswith(b"\xef\xbb\xbf"):
        return "utf-8"
    if body.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    http = _HTTP_CHARSET_RE.search(content_type)
    meta = _META_CHARSET_RE.search(body[:1024])
    for found in (http.group(1) if http else None, meta.group(1).decode("ascii") if meta else None):
        if found:
            try:
                return codecs.lookup(found).name
            except LookupError:
                continue  # a charset Python does not know: try the next clue
    return "utf-8"


# --- the fast path ------------------------------------------------------------------------

_RSS_ITEM_START_RE = re.compile(rb"<item[\s>]")
_RSS_ITEM_END_RE = re.compile(rb"</item\s*>")
_ATOM_ENTRY_START_RE = re.compile(rb"<entry[\s>]")
_ATOM_ENTRY_END_RE = re.compile(rb"</entry\s*>")
_DATE_TAG_RE = re.compile(
    rb"<([\w.-]+:)?(pubdate|date|published|updated|issued|modified|lastbuilddate|created)[\s>/]",
    re.IGNORECASE,
)
# Each check below is one C-level scan of the whole body, so each pattern starts with a
# literal: the regex engine then skips ahead with a fast search instead of trying every byte.
# C1 controls as UTF-8 bytes, or as character references (&#128; to &#159;, &#x80; to &#x9f;)
_C1_BYTES_RE = re.compile(rb"\xc2[\x80-\x9f]")
_C1_REFS_RE = re.compile(rb"&#(?:0*1(?:2[89]|[34]\d|5\d)|[xX]0*[89][0-9a-fA-F]);")
_LINE_SEPARATOR_RE = re.compile(rb"\xe2\x80[\xa8\xa9]")  # U+2028, U+2029
_DTD_RE = re.compile(rb"<!(?:doctype|entity)", re.IGNORECASE)
# Searched in the lower-cased body, as feedparser lower-cases attribute names and types: a
# ``base`` attribute (xml:base, or a bare base, which feedparser honours too), and XHTML text.
_BASE_ATTR_RE = re.compile(rb"base\s*=")
_XHTML_TYPE_RE = re.compile(rb"""type\s*=\s*["'](?:xhtml|application/xhtml\+xml)["']""")
_XML_ENCODING_RE = re.compile(rb"""^<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_ATOM_NS = "http://www.w3.org/2005/Atom"
_CONTENT_NS = "http://purl.org/rss/1.0/modules/content/"


class _Decline(Exception):
    """The fast path would not read this document the way feedparser does."""


def _read_fast(
    body: bytes, content_type: str, url: str, known: Mapping[str, str] | None = None
) -> _RawFeed | None:
    """Read the document with fastfeedparser, or return None to let feedparser do it.

    It declines (returns None) unless everything below holds, because each is a case
    where it reads a document differently from feedparser, or reads it at all where
    feedparser would warn:

    - the document is well-formed XML (expat, ~0.3 ms on 200 kB): malformed documents go
      to feedparser, which recovers and names the error and its line in a warning;
    - no DTD or entity declarations, no U+2028/2029 (fastfeedparser turns them into
      newlines), no C1 controls (feedparser maps them to Windows-1252 characters), no
      text feedparser reads back as UTF-8 (``_misread_bytes``, ``_misread_refs``), no
      ``type="xhtml"`` text (fastfeedparser reads an XHTML title as empty and keeps the
      wrapping ``<div>`` of XHTML content), and an HTTP charset, if any, that agrees with
      the XML declaration;
    - ``xml:base`` only where ``_BaseScope`` follows it: on the feed (``<feed>``, ``<rss>``,
      ``<channel>``), on an entry, or on an entry's content or summary.  fastfeedparser
      ignores xml:base, so the bases are computed here, as feedparser computes them, and
      links and the relative URLs inside content resolve against them;
    - every permalink guid and Atom id is absolute (feedparser resolves relative ones);
    - no entry has several authors (fastfeedparser keeps one), nor a summary from another
      namespace (``itunes:summary``, ``media:description``: feedparser reads them);
    - the root is ``<rss version="2.0">`` or an Atom 1.0 ``<feed>``;
    - fastfeedparser does not raise and finds as many items as the document holds;
    - each item's dates come only from ``pubDate`` (RSS) or ``published``/``updated``
      (Atom), and fastfeedparser read every one of them from its element's text, as
      feedparser reads it, or none that is a bare number (``_fast_dates``).  It otherwise
      fills ``published`` from ``updated``, from ``dc:date`` or even from a guid that
      parses as a date, where feedparser leaves it empty.
    """
    try:
        root, bases = _check_document(body, content_type, url)
        parsed = fastfeedparser.parse(body)
        fmt = "atom10" if root == f"{_ATOM_NS} feed" else "rss20"
        return _fast_feed(parsed, body, fmt, url, bases, known or {})
    except _Decline:
        return None
    except Exception:  # fastfeedparser raises on ~5% of real feeds; feedparser reads those
        return None


def _check_document(body: bytes, content_type: str, url: str) -> tuple[str, _BaseScope | None]:
    """The root element's name, and the xml:base scopes when the document has any base attribute."""
    if _DTD_RE.search(body):
        raise _Decline("DTD")
    if _LINE_SEPARATOR_RE.search(body):
        raise _Decline("U+2028/2029, which fastfeedparser turns into newlines")
    _check_characters(body, content_type)
    lowered = body.lower()
    if _XHTML_TYPE_RE.search(lowered):
        raise _Decline("XHTML text")
    expat = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    root: list[tuple[str, dict[str, str]]] = []
    scope = _BaseScope(url) if _BASE_ATTR_RE.search(lowered) else None

    def first_element(name: str, attrs: dict[str, str]) -> None:
        root.append((name, attrs))
        if scope is None:
            expat.StartElementHandler = None  # one Python call per document, not per element
        else:
            expat.StartElementHandler = scope.start
            expat.EndElementHandler = scope.end
            scope.start(name, attrs)

    expat.StartElementHandler = first_element
    try:
        expat.Parse(body, True)
    except (xml.parsers.expat.ExpatError, ValueError, LookupError) as exc:
        raise _Decline("not well-formed") from exc
    if not root:
        raise _Decline("no root element")
    if scope is not None and scope.unsupported:
        raise _Decline(scope.unsupported)
    name, attrs = root[0]
    if name == "rss" and attrs.get("version", "").strip() == "2.0":
        return name, scope
    if name == f"{_ATOM_NS} feed":
        return name, scope
    raise _Decline(f"root {name!r} is not RSS 2.0 or Atom 1.0")


def _check_characters(body: bytes, content_type: str) -> None:
    """``_Decline`` when feedparser would read some characters otherwise: C1 controls, an HTTP
    charset that overrides the declaration, UTF-8 read as Latin-1 (as bytes or as references)."""
    # One scan for references to U+0080..U+00FF (most feeds have none, many a few &#160;),
    # then the two ways feedparser reads some of them otherwise than fastfeedparser.
    latin_1_refs = _LATIN_1_REF_RE.search(body) is not None
    if _C1_BYTES_RE.search(body) or (latin_1_refs and _C1_REFS_RE.search(body)):
        raise _Decline("C1 controls, which feedparser maps to their Windows-1252 characters")
    declared = _XML_ENCODING_RE.match(body)
    declared_charset = declared.group(1).decode().lower() if declared else "utf-8"
    http_charset = _HTTP_CHARSET_RE.search(content_type)
    codec = _codec(declared_charset)
    if http_charset and _codec(http_charset.group(1)) != codec:
        raise _Decline("HTTP charset overrides the XML declaration")
    misread = _misread_bytes(codec)
    if misread is not None:
        # Its matches are bytes past ASCII, which are few in a single-byte encoding: search
        # those alone first (a regex without a literal to skip to scans at ~5 ms a MB).
        high = body if codec == "utf-8" else body.translate(None, _ASCII_BYTES)
        if misread.search(high) and misread.search(body):
            raise _Decline("text feedparser reads back as UTF-8, or C1 controls in a Latin encoding")
    if latin_1_refs and _misread_refs(body, codec):
        raise _Decline("character references feedparser reads back as UTF-8")


# Element names as expat gives them (namespace URI, a space, the local name).
_XML_BASE = "http://www.w3.org/XML/1998/namespace base"
_FEED_ELEMENTS = frozenset({f"{_ATOM_NS} feed", "rss", "channel"})
_ENTRY_ELEMENTS = frozenset({f"{_ATOM_NS} entry", "item"})
_BODY_ELEMENTS = frozenset(
    {f"{_ATOM_NS} content", f"{_ATOM_NS} summary", "description", f"{_CONTENT_NS} encoded"}
)


@dataclass(frozen=True, slots=True)
class _EntryBases:
    entry: str  # for the entry's links
    bodies: dict[str, str]  # a content/summary element's name -> the base of its relative URLs


class _BaseScope:
    """The base URI in scope at the feed, at each entry and at each entry's content and summary.

    Expat start/end handlers, used only on documents that have a base attribute.  The base
    is computed at every element exactly as feedparser computes it (``make_safe_absolute_uri``
    of the parent's base and the element's ``xml:base``, falling back to the parent's when
    the result is not a safe URI), so both paths resolve the same links the same way.
    ``unsupported`` says why the fast path must decline: a base attribute anywhere else
    (on a ``<link>``, inside XHTML content, a bare ``base=``…), or nested entries.
    """

    def __init__(self, url: str) -> None:
        self._stack = [url]
        self._entry_depth = 0  # depth of the open entry element, 0 outside entries
        self.feed = url
        self.entries: list[_EntryBases] = []
        self.unsupported = "" if url else "a base attribute and no document URL"

    def start(self, name: str, attrs: dict[str, str]) -> None:
        parent = self._stack[-1]
        given = None
        for key, value in attrs.items():
            if key == _XML_BASE:
                given = value
            elif key.rpartition(" ")[2].lower() == "base":
                self.unsupported = f"attribute {key!r}"
        base = _next_base(parent, given or parent)
        self._stack.append(base)
        depth = len(self._stack)
        if name in _ENTRY_ELEMENTS:
            if self._entry_depth:
                self.unsupported = "an entry inside an entry"
            self._entry_depth = depth
            self.entries.append(_EntryBases(base, {}))
        elif depth == self._entry_depth + 1 and name in _BODY_ELEMENTS:
            bodies = self.entries[-1].bodies
            if bodies.setdefault(name, base) != base:
                self.unsupported = f"two {name!r} with different bases"
        elif name in _FEED_ELEMENTS and not self._entry_depth:
            self.feed = base
        elif given:
            self.unsupported = f"xml:base on {name!r}"

    def end(self, name: str) -> None:
        if len(self._stack) == self._entry_depth:
            self._entry_depth = 0
        self._stack.pop()


@lru_cache(maxsize=256)
def _next_base(parent: str, given: str) -> str:
    """feedparser's rule: the element's base joined to its parent's, if that is a safe URI."""
    return make_safe_absolute_uri(parent, given) or parent


def _codec(charset: str) -> str:
    try:
        return _python_codec_name(charset.strip().lower())
    except LookupError:
        return charset


@lru_cache(maxsize=64)
def _python_codec_name(charset: str) -> str:
    return codecs.lookup(charset).name


_ASCII_BYTES = bytes(range(128))
# "é" written as UTF-8, read as Latin-1 and written as UTF-8 again: U+00C2 to U+00F4, then
# U+0080 to U+00BF, as UTF-8 ("Ã©").  Starts with a literal, so the scan is a fast search.
_UTF8_AS_LATIN_1_RE = re.compile(rb"\xc3[\x82-\xb4]\xc2[\x80-\xbf]")


@lru_cache(maxsize=64)
def _misread_bytes(codec: str) -> re.Pattern[bytes] | None:
    """Bytes that feedparser reads otherwise than fastfeedparser in a document in ``codec``.

    feedparser reads the text of every element that is all Latin-1 *back* as UTF-8 when it
    can (``Ã©`` is ``é``: UTF-8 once read as Latin-1, or UTF-8 bytes in a document said to be
    Latin-1 or Windows-1252, both common), and maps C1 controls to their Windows-1252
    characters (bytes 0x80 to 0x9f of a feed said to be ISO-8859-1 are nearly always
    Windows-1252 quotes and dashes).  fastfeedparser keeps the mojibake and the C1
    controls, which ``_clean_str`` then removes.  (The same text as character references:
    ``_misread_refs``.)  None: no such bytes in this encoding.
    """
    if codec == "utf-8":
        return _UTF8_AS_LATIN_1_RE
    patterns = []
    try:
        if b"\x85".decode(codec, "replace") == "\x85":
            patterns.append(rb"[\x80-\x9f]")
        if b"\xc3\xa9".decode(codec, "replace") == "\u00c3\u00a9":
            patterns.append(rb"[\xc2-\xf4][\x80-\xbf]")
    except LookupError:  # no such codec: expat refuses the document
        return None
    return re.compile(b"|".join(patterns)) if patterns else None


# A character reference to U+0080..U+00FF, in bytes (one scan of every document, in
# ``_check_characters``) and in text (``_misread_refs``); a literal first: each is a fast search.
_LATIN_1_REF_RE = re.compile(
    rb"&#(?:[xX]0*[89a-fA-F][0-9a-fA-F]|0*(?:12[89]|1[3-9][0-9]|2[0-4][0-9]|25[0-5]));"
)
_LATIN_1_REF_TEXT_RE = re.compile(
    r"&#(?:[xX]0*([89a-fA-F][0-9a-fA-F])|0*(12[89]|1[3-9][0-9]|2[0-4][0-9]|25[0-5]));"
)


def _misread_refs(body: bytes, codec: str) -> bool:
    """Whether the document has UTF-8 read as Latin-1 written with character references: a
    character that starts a UTF-8 sequence (U+00C2 to U+00F4) and the characters that
    continue it (U+0080 to U+00BF), one of them at least a reference (``&#195;&#169;``).

    feedparser reads the text of every element that is all Latin-1 back as UTF-8, whatever the
    document's encoding and however it wrote the characters (``_misread_bytes`` finds the
    text written as bytes): ``Caf&#195;&#169;`` is "Café" to it, "CafÃ©" to fastfeedparser.
    Only whole sequences count, so that "été&#160;!" (é must be followed by two) stays on the
    fast path.  The text is decoded once, so a neighbour written as a character is read in the
    document's encoding; each reference then costs a look at the few characters around it.
    """
    try:
        text = body.decode(codec, "replace")
    except LookupError:  # no such codec: expat refuses the document
        return False
    refs = {found.start(): found for found in _LATIN_1_REF_TEXT_RE.finditer(text)}
    ends = {found.end(): found for found in refs.values()}

    def after(position: int) -> tuple[int, int]:
        """The code point written at ``position`` (a reference or a character), and where it ends."""
        found = refs.get(position)
        if found is not None:
            return _ref_number(found), found.end()
        return (ord(text[position]), position + 1) if position < len(text) else (-1, position)

    for found in refs.values():
        # The reference is the lead of a sequence, or one of its one to three continuations.
        position = found.start()
        for _ in range(4):
            number, end = after(position)
            if 0xC2 <= number <= 0xF4:
                length = 2 if number < 0xE0 else 3 if number < 0xF0 else 4
                for _ in range(length - 1):
                    number, end = after(end)
                    if not 0x80 <= number <= 0xBF:
                        break
                else:
                    if end >= found.end():
                        return True
                break
            if not 0x80 <= number <= 0xBF or position == 0:
                break
            before = ends.get(position)
            position = before.start() if before is not None else position - 1
    return False


def _ref_number(found: re.Match[str]) -> int:
    hex_digits, decimal = found.groups()
    return int(hex_digits, 16) if hex_digits else int(decimal)


def _fast_feed(  # noqa: PLR0917 -- private; the pieces _read_fast has at hand
    parsed: Any, body: bytes, fmt: str, url: str, scope: _BaseScope | None, known: Mapping[str, str]
) -> _RawFeed:
    start, end, read = (
        (_ATOM_ENTRY_START_RE, _ATOM_ENTRY_END_RE, _fast_atom_entry)
        if fmt == "atom10"
        else (_RSS_ITEM_START_RE, _RSS_ITEM_END_RE, _fast_rss_entry)
    )
    items = _chunks(body, start, end)
    entries = list(parsed.get("entries") or [])
    if len(items) != len(entries):
        raise _Decline("item count differs")
    markup = _RSS_MARKUP if fmt == "rss20" else _ATOM_MARKUP
    if markup.text_child.search(_outside_cdata(body[: body.find(items[0])] if items else body)):
        raise _Decline("markup inside a text element of the feed")
    for chunk in items:
        _check_item_markup(chunk, markup)
    if scope is None:
        bases = [_EntryBases(url, {})] * len(entries)
    elif len(scope.entries) == len(entries):
        bases = scope.entries
    else:
        raise _Decline("entry count differs from expat's")
    keys = _item_keys(body, fmt, url, start, items, bases)
    feed = parsed.get("feed") or {}
    ttl = None
    if fmt == "rss20":
        found = re.search(rb"<ttl>\s*([^<]{0,40}?)\s*</ttl>", body[: body.find(b"<item")] if items else body)
        ttl = found.group(1).decode("utf-8", "replace") if found else None
    return _RawFeed(
        format=fmt,
        title=_opt_str(feed.get("title")),
        link=_resolve(_opt_str(feed.get("link")), scope.feed if scope else url),
        ttl=ttl,
        entries=tuple(
            _KnownItem(key) if key in known else read(e, chunk, url, b, key)
            for e, chunk, b, key in zip(entries, items, bases, keys, strict=True)
        ),
        warnings=(),
    )


# Namespace declarations, which give an item's prefixes their meaning from outside it.
_XMLNS_RE = re.compile(rb"""\sxmlns(?::[\w.-]+)?\s*=\s*(?:"[^"]*"|'[^']*')""")
_FASTFEEDPARSER_VERSION = str(getattr(fastfeedparser, "__version__", ""))


def _item_keys(  # noqa: PLR0917 -- private; the pieces _fast_feed has at hand
    body: bytes, fmt: str, url: str, start: re.Pattern[bytes], items: list[bytes], bases: list[_EntryBases]
) -> list[str]:
    """The fast path's source key of each item: a digest of its bytes and of what else its
    reading depends on, so that a known item need not be read at all (``_KnownItem``).

    Reading an item (fastfeedparser's fields, then ``_fast_rss_entry``/``_fast_atom_entry``)
    depends on nothing but the item's bytes and: the format, the namespace declarations
    around it (in the document before the first item; those inside it are in its bytes),
    the declared encoding, the document URL and the xml:base bases of the item and of its
    content and summary, fastfeedparser's version and ``NORMALIZER_VERSION``.  The feed's
    own elements (title, dates) are left out: they change whenever an item is added, and
    fastfeedparser reads items without them.  Keys from feedparser's path (``source_key``)
    are digests of fields instead, so a feed that switches paths has its entries cleaned
    once more, nothing worse.
    """
    first = start.search(body)
    head = body[: first.start()] if first else body
    declared = _XML_ENCODING_RE.match(body)
    context = [
        "fast",
        NORMALIZER_VERSION,
        _FASTFEEDPARSER_VERSION,
        fmt,
        url,
        declared.group(1).decode("ascii").lower() if declared else "",
        *sorted({d.strip().decode("utf-8", "surrogateescape") for d in _XMLNS_RE.findall(head)}),
    ]
    document = hashlib.blake2b(_length_prefixed(context).encode("utf-8", "surrogatepass"), digest_size=16)
    keys = []
    for chunk, item_bases in zip(items, bases, strict=True):
        digest = document.copy()
        bodies = chain.from_iterable(sorted(item_bases.bodies.items()))
        digest.update(_length_prefixed([item_bases.entry, *bodies]).encode("utf-8", "surrogatepass"))
        digest.update(b"%d:" % len(chunk))
        digest.update(chunk)
        keys.append(digest.hexdigest())
    return keys


@dataclass(frozen=True, slots=True)
class _Markup:
    """What, in one item (or the feed's head), fastfeedparser reads otherwise than feedparser."""

    # A text element (title, summary, content) holding an element, a comment or a processing
    # instruction: fastfeedparser reads only the text before it.  Matched outside CDATA.
    text_child: re.Pattern[bytes]
    # An element feedparser reads and fastfeedparser does not, found by its literal part first.
    other: tuple[bytes, re.Pattern[bytes]] | None
    once: tuple[re.Pattern[bytes], ...]  # elements that must not appear twice: each parser takes another


_RSS_MARKUP = _Markup(
    text_child=re.compile(rb"<(?:title|description|content:encoded)(?:\s[^>]*)?(?<!/)>[^<]*<(?!/)"),
    other=(b":link", re.compile(rb"<[\w.-]+:link[\s>/]")),  # atom:link: feedparser's entry link
    once=(re.compile(rb"<link[\s>/]"), re.compile(rb"<guid[\s>/]")),  # the first, or the last
)
_ATOM_MARKUP = _Markup(
    text_child=re.compile(rb"<(?:title|summary|content)(?:\s[^>]*)?(?<!/)>[^<]*<(?!/)"),
    other=None,  # links: see _check_atom_links
    once=(),
)


def _outside_cdata(chunk: bytes) -> bytes:
    """``chunk`` without its CDATA sections (whose text cannot hide markup); ``_Decline`` when
    one does not end in it: a ``</item>`` inside a CDATA section cut the item short."""
    if b"<![CDATA[" not in chunk:
        return chunk
    parts, position = [], 0
    while (opened := chunk.find(b"<![CDATA[", position)) != -1:
        closed = chunk.find(b"]]>", opened + 9)
        if closed == -1:
            raise _Decline("an item end tag inside a CDATA section")
        parts.append(chunk[position:opened])
        position = closed + 3
    parts.append(chunk[position:])
    return b"".join(parts)


def _check_item_markup(chunk: bytes, markup: _Markup) -> None:
    """``_Decline`` when the item holds markup the two parsers read differently (see ``_Markup``),
    or was cut short by a ``</item>`` inside a CDATA section or a comment.

    Every item of every feed read passes here, so each test is a literal search first, on
    the item's bytes outside CDATA (about 10 µs for a 3 kB item).
    """
    text = _outside_cdata(chunk)
    if b"<!--" in text and text.count(b"<!--") != text.count(b"-->"):
        raise _Decline("an item end tag inside a comment")
    if markup.text_child.search(text):
        raise _Decline("markup inside a text element")
    if markup.other is not None and markup.other[0] in text and markup.other[1].search(text):
        raise _Decline("an element only feedparser reads")
    for element in markup.once:
        found = element.search(text)
        if found and element.search(text, found.end()):
            raise _Decline("an element given twice")


def _chunks(body: bytes, start: re.Pattern[bytes], end: re.Pattern[bytes]) -> list[bytes]:
    r"""Each item's bytes, from ``<item`` to the first ``</item>`` after it.

    The same matches as ``<item[\s>].*?</item\s*>`` with DOTALL, found ~10x faster: two
    literal-prefixed searches per item instead of a lazy match tried at every byte.
    """
    found = []
    position = 0
    while (opened := start.search(body, position)) and (closed := end.search(body, opened.end())):
        found.append(body[opened.start() : closed.end()])
        position = closed.end()
    return found


def _resolve(link: str | None, base: str) -> str | None:
    """A link as feedparser resolves it against the xml:base in scope (``_normalize`` then
    resolves the result against the document URL, as it does on the feedparser path)."""
    return _feedparser_urljoin(base, link) if link else link


# The date forms both parsers read alike (checked against feedparser on the corpus and in
# tests): RFC 822 with a numeric, UTC or US zone, ISO 8601 with ``Z`` or ``±hh:mm``.  Any other
# (``-08:00`` in an RFC 822 date, zone names, no zone) goes to feedparser, whose reading
# is the reference even where it is wrong (it reads ``CEST`` as UTC).
_PLAIN_DATE_RE = re.compile(
    rb"\s*(?:(?:([A-Za-z]{3}),\s*)?(\d{1,2})\s+([A-Za-z]{3})\s+(\d{4})\s+(\d{2}):(\d{2})(?::(\d{2}))?"
    rb"\s+([+-]\d{4}|GMT|UTC|UT|Z|[ECMP][SD]T)"
    rb"|(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))\s*"
)
# As feedparser's RFC 822 reader has them (``feedparser.datetimes.rfc822``).
_DAY_NAMES = frozenset({b"mon", b"tue", b"wed", b"thu", b"fri", b"sat", b"sun"})
_MONTHS = {
    name: number
    for number, name in enumerate(
        (b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec"), 1
    )
}
_ZONE_MINUTES = {
    **dict.fromkeys((b"GMT", b"UTC", b"UT", b"Z", b"+0000", b"-0000", b"+00:00", b"-00:00"), 0),
    **{b"EDT": -240, b"EST": -300, b"CDT": -300, b"CST": -360, b"MDT": -360, b"MST": -420},
    **{b"PDT": -420, b"PST": -480},
}


def _plain_date(found: re.Match[bytes]) -> datetime | None:
    """The date ``_PLAIN_DATE_RE`` matched, read the way feedparser reads it: None where it
    reads none (no such weekday, month, day or time: a leap second, 30 February, 25:00)."""
    groups = found.groups()
    if groups[1] is not None:  # RFC 822
        weekday, day, month_name, year, hour, minute, second, zone = groups[:8]
        month = _MONTHS.get(month_name.lower())
        if month is None or (weekday is not None and weekday.lower() not in _DAY_NAMES):
            return None
    else:  # ISO 8601
        year, month_digits, day, hour, minute, second, zone = groups[8:]
        month = int(month_digits)
    offset = _ZONE_MINUTES.get(zone)
    if offset is None:  # ±hhmm or ±hh:mm
        offset = int(zone[1:3]) * 60 + int(zone[-2:])
        if zone[:1] == b"-":
            offset = -offset
    try:
        stamp = datetime(int(year), month, int(day), int(hour), int(minute), int(second or 0), tzinfo=UTC)
        return stamp - timedelta(minutes=offset) if offset else stamp
    except (ValueError, OverflowError):  # no such date, or beyond year 1 to 9999 in UTC
        return None


def _fast_dates(e: Any, chunk: bytes, allowed: Mapping[bytes, str]) -> dict[str, datetime | None]:
    """The entry's dates as feedparser's path gives them, or ``_Decline``.

    Each date fastfeedparser gives must be the one its element's text says (``_plain_date``):
    where it cannot read that text, it takes a date from elsewhere (an Atom <updated>, an
    RSS guid that reads as a date, "2025-01-02T03:04:05Z") where feedparser reads none.
    A bare number (Unix time), which fastfeedparser does not read at all, is read here as on
    feedparser's path (``_fp_date``), when fastfeedparser took no date from elsewhere.
    """
    dates: dict[str, datetime | None] = {"published": None, "updated": None}
    for found in _DATE_TAG_RE.finditer(chunk):
        prefix, name = found.groups()
        field = allowed.get(name.lower())
        if prefix or field is None:
            raise _Decline(f"date element {name!r}")
        opened = chunk.find(b">", found.end() - 1)
        closed = chunk.find(b"<", opened)
        text = chunk[opened + 1 : closed].strip().decode("latin-1")  # only ASCII digits count
        if is_bare_number(text):
            if e.get(field) is not None:
                raise _Decline(f"{field} not from its element")
            dates[field] = bare_number_date(text)
            continue
        plain = _PLAIN_DATE_RE.fullmatch(chunk, opened + 1, closed)
        if not plain:
            raise _Decline(f"a {field} date in a form the parsers read differently")
        value = _plain_date(plain)
        if value is None or not _same_instant(e.get(field), value):
            raise _Decline(f"{field} not parsed, or not from its element")
        dates[field] = value
    return dates


def _same_instant(given: object, value: datetime) -> bool:
    """Whether fastfeedparser's ISO 8601 text ``given`` is the date ``value``, to the second."""
    if not isinstance(given, str):
        return False
    try:
        if datetime.fromisoformat(given) == value:  # nearly always; 0.2 µs, _iso_to_datetime 1.2 µs
            return True
    except ValueError:
        return False
    return _iso_to_datetime(given) == value  # a fraction of a second, or no zone


def _iso_to_datetime(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).replace(microsecond=0)


_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _check_absolute_id(value: str) -> None:
    """feedparser resolves a relative permalink guid (and Atom id) against the base URL, and
    lower-cases the scheme of an absolute one."""
    scheme = _SCHEME_RE.match(value)
    if not scheme:
        raise _Decline("relative guid")
    if scheme.group() != scheme.group().lower():
        raise _Decline("upper-case scheme in a guid")


_RSS_DATES = {b"pubdate": "published"}
_ATOM_DATES = {b"published": "published", b"updated": "updated"}


def _fast_common(e: Any, chunk: bytes, author_re: re.Pattern[bytes]) -> dict[str, Any]:
    authors = tuple(
        name
        for a in (e.get("authors") or [])
        if (name := _opt_str(a.get("name")) or _opt_str(a.get("email")))
    ) or ((author,) if (author := _opt_str(e.get("author"))) else ())
    if len(authors) > 1 or len(author_re.findall(chunk)) > 1:
        raise _Decline("several authors")  # fastfeedparser keeps the first, feedparser all
    if author_re is _RSS_AUTHOR_RE:
        authors = tuple(filter(None, map(_rss_author_name, authors)))
    return {
        "title": _opt_str(e.get("title")),
        "authors": authors,
        "categories": tuple(
            term
            for t in (e.get("tags") or [])
            if (term := _opt_str(t.get("term")) or _opt_str(t.get("label")))
        ),
    }


_ATOM_AUTHOR_RE = re.compile(rb"<author[\s>]")
_RSS_AUTHOR_RE = re.compile(rb"<(?:author|[\w.-]+:creator)[\s>]")
# feedparser's e-mail pattern for an RSS <author> (``_sync_author_detail``), kept as it is.
_AUTHOR_EMAIL_RE = re.compile(
    r"(([a-zA-Z0-9\_\-\.\+]+)@((\[[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.)|(([a-zA-Z0-9\-]+\.)+))"
    r"([a-zA-Z]{2,4}|[0-9]{1,3})(\]?))(\?subject=\S+)?"
)


def _rss_author_name(author: str) -> str | None:
    """An RSS author as feedparser reads it: ``jo@x.example (Jo)`` is Jo; an e-mail alone is itself."""
    if "@" not in author:
        return author  # no e-mail address to find (and the search takes quadratic time)
    if len(author) > 1024:
        raise _Decline("an author too long for the e-mail search")  # feedparser, in a worker
    found = _AUTHOR_EMAIL_RE.search(author)
    if not found:
        return author
    email = found.group(0)
    name = author.replace(email, "").replace("()", "").replace("<>", "").replace("&lt;&gt;", "").strip()
    if name.startswith("("):
        name = name[1:]
    if name.endswith(")"):
        name = name[:-1]
    return name.strip() or email


_PREFIXED_SUMMARY_RE = re.compile(rb"<[\w.-]+:(?:summary|description)[\s>/]")


def _check_prefixed_summary(chunk: bytes) -> None:
    """feedparser reads ``itunes:summary`` as the summary (or, after another summary, as the
    content), and a ``media:description`` as the summary of an item that has no other text
    (``_keep_media_captions_apart``); fastfeedparser ignores them."""
    if (b":summary" in chunk or b":description" in chunk) and _PREFIXED_SUMMARY_RE.search(chunk):
        raise _Decline("itunes:summary, media:description or the like")


def _fast_rss_entry(e: Any, chunk: bytes, url: str, bases: _EntryBases, key: str) -> _RawEntry:
    _check_prefixed_summary(chunk)
    dates = _fast_dates(e, chunk, _RSS_DATES)
    has_guid = re.search(rb"<guid[\s>]", chunk) is not None
    guid = _opt_str(e.get("id")) if has_guid else None
    link = _opt_str(e.get("link")) if re.search(rb"<link[\s>]", chunk) else None
    if guid and not re.search(rb"<guid[^>]*isPermaLink\s*=\s*[\"']false", chunk, re.I):
        _check_absolute_id(guid)
        if link is None:
            link = guid  # feedparser's rule: a permalink guid is the link when there is no <link>
    content = None
    if re.search(rb"<content:encoded[\s>]", chunk):
        contents = e.get("content") or []
        value = _opt_str(contents[0].get("value")) if contents else None
        base = bases.bodies.get(f"{_CONTENT_NS} encoded", bases.entry)
        content = _Body(value, is_html=True, base=base) if value else None
    description = _opt_str(e.get("description")) if re.search(rb"<description[\s>]", chunk) else None
    summary_base = bases.bodies.get("description", bases.entry)
    return _RawEntry(
        id=guid,
        link=_resolve(link, bases.entry),
        published=dates["published"],
        updated=dates["updated"],
        content=content,
        summary=_Body(description, is_html=True, base=summary_base) if description else None,
        # feedparser leaves <enclosure url> as given: _normalize resolves it against the document URL
        enclosures=tuple(
            (href, _enclosure_type(enc.get("type"), None), enc.get("length"))
            for enc in (e.get("enclosures") or [])
            if (href := _opt_str(enc.get("url")) or _opt_str(enc.get("href")))
        ),
        base=url,
        key=key,
        **_fast_common(e, chunk, _RSS_AUTHOR_RE),
    )


def _atom_text_type(chunk: bytes, element: bytes) -> str | None:
    """The ``type`` of an entry's <summary>/<content>: None when absent from the entry."""
    found = re.search(rb"<" + element + rb"(\s[^>]*)?/?>", chunk)
    if not found:
        return None
    declared = re.search(rb"""\stype\s*=\s*["']([^"']*)["']""", found.group(1) or b"")
    return declared.group(1).decode("ascii", "replace").lower() if declared else "text"


_ATOM_LINK_RE = re.compile(rb"<link\b([^>]*)>")
_REL_RE = re.compile(rb"""\srel\s*=\s*["']\s*([^"']*?)\s*["']""")
_TYPE_RE = re.compile(rb"""\stype\s*=\s*["']\s*([^"']*?)\s*["']""")


def _check_atom_links(chunk: bytes) -> None:
    """The two parsers pick an entry's link alike only when it is plain: one link that is
    ``rel="alternate"`` (a web page) or has no ``rel`` (then first), beside links with a
    ``rel`` of their own (Blogger's self, edit, replies; enclosures).  Otherwise (none, two,
    a ``rel``-less link after others, an alternate PDF) they differ: feedparser reads it."""
    links = _ATOM_LINK_RE.findall(chunk)
    if not links:
        return
    rels = [rel.group(1).lower() if (rel := _REL_RE.search(attributes)) else None for attributes in links]
    candidates = [index for index, rel in enumerate(rels) if rel in (None, b"alternate")]
    if len(candidates) != 1 or (rels[candidates[0]] is None and candidates[0] != 0):
        raise _Decline("entry links the parsers pick from differently")
    kind = _TYPE_RE.search(links[candidates[0]])
    if kind is not None and kind.group(1).lower() not in (b"text/html", b"application/xhtml+xml"):
        raise _Decline("an alternate link that is no web page")


def _fast_atom_entry(e: Any, chunk: bytes, url: str, bases: _EntryBases, key: str) -> _RawEntry:
    _check_prefixed_summary(chunk)
    _check_atom_links(chunk)
    dates = _fast_dates(e, chunk, _ATOM_DATES)
    entry_id = _opt_str(e.get("id")) if re.search(rb"<id[\s>]", chunk) else None
    if entry_id:
        _check_absolute_id(entry_id)
    content = None
    content_type = _atom_text_type(chunk, b"content")
    contents = e.get("content") or []
    if content_type is not None and contents:
        value = str(contents[0].get("value") or "")
        if value.strip():
            base = bases.bodies.get(f"{_ATOM_NS} content", bases.entry)
            content = _Body(value, is_html=content_type != "text", base=base)
    summary = None
    summary_type = _atom_text_type(chunk, b"summary")
    description = _opt_str(e.get("description"))
    if summary_type is not None and description:
        base = bases.bodies.get(f"{_ATOM_NS} summary", bases.entry)
        summary = _Body(description, is_html=summary_type != "text", base=base)
    entry_link = _opt_str(e.get("link"))
    if entry_link is None and entry_id and not _ATOM_LINK_RE.search(chunk):
        entry_link = entry_id  # feedparser's rule: an id is the link of an entry with no <link>
    enclosures = [link for link in (e.get("links") or []) if link.get("rel") == "enclosure"]
    return _RawEntry(
        id=entry_id,
        link=_resolve(entry_link, bases.entry),
        published=dates["published"],
        updated=dates["updated"],
        content=content,
        summary=summary,
        enclosures=tuple(
            (
                _feedparser_urljoin(bases.entry, str(link["href"])),
                _enclosure_type(link.get("type"), "text/html"),
                length,
            )
            for link, length in zip(enclosures, _enclosure_lengths(chunk, len(enclosures)), strict=True)
            if _opt_str(link.get("href"))
        ),
        base=url,
        key=key,
        **_fast_common(e, chunk, _ATOM_AUTHOR_RE),
    )


def _enclosure_type(value: object, default: str | None) -> str | None:
    """feedparser lower-cases every ``type`` attribute, and gives an Atom link without one text/html."""
    given = _opt_str(value)
    return given.lower() if given else default


_ATOM_ENCLOSURE_TAG_RE = re.compile(rb"""<link[^>]*\srel\s*=\s*["']enclosure["'][^>]*>""", re.IGNORECASE)
_LENGTH_ATTR_RE = re.compile(rb"""\slength\s*=\s*(?:"([^"]*)"|'([^']*)')""")


def _enclosure_lengths(chunk: bytes, count: int) -> list[str | None]:
    """The ``length`` of each Atom enclosure link, which fastfeedparser does not keep."""
    if not count:
        return []
    tags = _ATOM_ENCLOSURE_TAG_RE.findall(chunk)
    if len(tags) != count:
        raise _Decline("enclosure links differ")
    lengths = (_LENGTH_ATTR_RE.search(tag) for tag in tags)
    return [
        (found.group(1) or found.group(2)).decode("utf-8", "replace") if found else None for found in lengths
    ]
