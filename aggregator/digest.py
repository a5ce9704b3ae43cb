"""What one newsletter issue contains, and its HTML (MJML) and plain-text renderings.

In: a ``Snapshot`` of stories (``aggregator.snapshot``: the same one the output feeds are
rendered from, so a story has the same headline, link, outlets and topics in both) and
the issue's window and filters.  Out: a frozen ``DigestIssue`` (the selection the email
and the archive page are both rendered from; it round-trips through JSON so a resumed
send renders the very same issue) and a ``RenderedDigest`` (subject, preheader, HTML,
text).  Pure: no clock, no files except the bundled templates, no network.

- A story is in the issue when it was first seen (its earliest copy) inside the window
  ``(start, end]``: windows follow each other, so nothing is missed.  A story first seen
  before the window is back, marked *updated* and listing what is new, when an article
  of its own joined it inside the window (an outlet's own report, not a syndicated copy
  of an article already there); one that only gains outlets carrying the same article is
  not sent twice.  A story no issue could carry because none of its copies had a link
  comes when a copy with one arrives, as a new story.  What a story is, which copy leads it
  and which outlets carried it is the snapshot's business, not this module's.
- Every string from a feed is cleaned (control, line-separator and bidi characters
  dropped) when the issue is frozen, and HTML-escaped when rendered: mjml-python
  escapes nothing and fails on a stray ``<``.  A story whose link is not an absolute
  http(s) URL is dropped with a warning; if MJML still rejects the document, the stories
  it rejects are found one by one and dropped, so one bad item never loses the issue.
- The HTML must stay under ``MAX_HTML_BYTES`` (Gmail clips messages at about 102 KB):
  stories that do not fit are left to the web archive behind a "+N more" link.  The
  layout is compact (one MJML section per topic, ~0.9 KB per story).
- Styles are written inline on the elements: mjml-python 1.4.2 does *not* inline
  ``<mj-style inline="inline">`` (tests/test_digest.py keeps checking that).
"""

from __future__ import annotations

import html
import importlib.resources
import json
import logging
import re
import textwrap
import unicodedata
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template
from typing import Any
from zoneinfo import ZoneInfo

from mjml import mjml2html

from aggregator import mail
from aggregator.config import NONCHARACTERS
from aggregator.snapshot import Snapshot, SnapshotStory, entry_time, kept_copy
from aggregator.types import StoredEntry
from aggregator.urls import without_password

log = logging.getLogger(__name__)

# The MJML templates live in the project's newsletters/ folder; an installed copy carries
# them as the package aggregator.newsletter_templates (see pyproject.toml).
_CHECKOUT_TEMPLATES = Path(__file__).resolve().parent.parent / "newsletters"
TEMPLATES: Traversable = (
    _CHECKOUT_TEMPLATES
    if (_CHECKOUT_TEMPLATES / "digest.mjml").is_file()
    else importlib.resources.files("aggregator.newsletter_templates")
)

# Gmail clips a message whose HTML exceeds about 102 KB; stay well below it.
MAX_HTML_BYTES = 90 * 1024
# Room kept for what is substituted per recipient (the unsubscribe URL) after rendering.
PER_RECIPIENT_MARGIN = 1024

# Rendered in place of the per-recipient unsubscribe URL; ``mail`` substitutes the real one
# in the HTML and the text, so the costly MJML rendering happens once per issue.  (Random:
# see ``mail.UNSUBSCRIBE_MARK``.)
UNSUBSCRIBE_MARK = mail.UNSUBSCRIBE_MARK

EXCERPT_CHARS = 240
HEADLINE_CHARS = 300  # a feed's title may be any length; one must not crowd out the issue
OUTLET_CHARS = 80  # an outlet is named by its feed's title, which the feed chooses
# Lists a story can make as long as it likes (a wire story carried by every feed, an event
# that drew dozens of reports since the last issue) are cut in the email and the archive
# alike: the first ones, then "and N others".  The issue keeps them whole (the subject's
# ranking counts every outlet).  (The digest shows no authors: only outlets.)
OTHER_OUTLETS_SHOWN = 4
NEW_ARTICLES_SHOWN = 5
OTHER_SECTION = "More stories"

# Characters that must never reach a template or a header: C0/C1 controls, line and
# paragraph separators, and bidi embeddings/overrides/isolates (which can make a title
# read differently from what it is).
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
# Noncharacters (U+FDD0..U+FDEF and the last two code points of every plane): MJML refuses
# them, so one in a title would cost its story its place in the email.
# Invisible characters that only hide text (zero-width space, word joiner, soft hyphen,
# Hangul and Mongolian fillers): a headline of nothing but these would be a link no one
# can see.  Joiners that shape scripts and emoji (ZWJ, ZWNJ) stay.
_INVISIBLE = "\u00ad\u115f\u1160\u180e\u200b\u2060\u3164\uffa0"
_UNSAFE = re.compile(
    f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ufeff{_BIDI}{_INVISIBLE}{NONCHARACTERS}]"
)
_SPACE = re.compile(r"\s+")
_TAG = re.compile(r"<[^>]*>")


@dataclass(frozen=True, slots=True)
class DigestArticle:
    """An article that joined a story already reported before the issue's window."""

    outlet: str
    headline: str
    url: str  # absolute http(s)
    time: datetime  # its date (UTC)


@dataclass(frozen=True, slots=True)
class DigestStory:
    """One story as the issue shows it; every string is clean plain text (not yet escaped)."""

    # The snapshot's public id (``urn:uuid:…``, as in the output feeds).  Issues frozen by
    # earlier versions hold the story's key here instead: ids are compared, never shown.
    id: str
    headline: str
    url: str  # absolute http(s): the lead copy's canonical link (tracking parameters removed)
    outlets: tuple[str, ...]  # the lead copy's outlet first, then the others that carried it
    time: datetime  # when it was first reported (UTC): its earliest copy's date, not the lead's
    excerpt: str
    topics: tuple[str, ...]
    section: str
    # First seen before the window, back for the articles that joined it inside it.
    updated: bool = False
    # Those articles, earliest first (the lead's own link, shown as the headline, is not repeated).
    new_articles: tuple[DigestArticle, ...] = ()


@dataclass(frozen=True, slots=True)
class DigestIssue:
    """The frozen snapshot of one issue ``(newsletter, window)``; stories in display order."""

    newsletter: str
    title: str
    number: int
    window_start: datetime | None
    window_end: datetime
    frozen_at: datetime
    timezone: str
    lang: str
    stories: tuple[DigestStory, ...]

    @property
    def sections(self) -> tuple[tuple[str, tuple[DigestStory, ...]], ...]:
        order: dict[str, list[DigestStory]] = {}
        for story in self.stories:
            order.setdefault(story.section, []).append(story)
        return tuple((name, tuple(stories)) for name, stories in order.items())


@dataclass(frozen=True, slots=True)
class RenderedDigest:
    """One rendering of an issue.  ``shown`` stories are in the email, ``omitted`` only in the archive."""

    subject: str
    preheader: str
    html: str
    text: str
    shown: int
    omitted: int
    dropped: tuple[str, ...] = ()  # ids of stories MJML rejected


# ----------------------------------------------------------------------- cleaning


def clean_text(value: str, limit: int | None = None) -> str:
    """One line of plain text: unsafe characters dropped, whitespace collapsed, NFC."""
    text = _UNSAFE.sub("", unicodedata.normalize("NFC", value))
    text = _SPACE.sub(" ", text).strip()
    if limit is not None and len(text) > limit:
        cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
        text = cut.rstrip(" ,;:.-–—") + "…"
    return text


def _visible(text: str) -> str:
    """``text`` if a reader would see something of it (a letter, digit, mark of punctuation
    or symbol), else "" (only joiners or combining marks)."""
    return text if any(unicodedata.category(c)[0] in "LNPS" for c in text) else ""


def excerpt_of(text: str, summary_html: str = "", limit: int = EXCERPT_CHARS) -> str:
    """A short lead from the plain text, else from the summary with its tags removed."""
    source = text or html.unescape(_TAG.sub(" ", summary_html))
    return clean_text(source, limit)


# ----------------------------------------------------------------------- selection


def select_stories(
    snapshot: Snapshot,
    *,
    window_start: datetime | None,
    window_end: datetime,
    topics: Sequence[str] = (),
    feeds: Sequence[str] = (),
    max_stories: int = 30,
    reported_after: datetime | None = None,
    copies: Mapping[str, StoredEntry] | None = None,
    sent: Collection[str] | None = None,
) -> tuple[DigestStory, ...]:
    """The stories of one issue, taken from ``snapshot``, in display order (sections, then newest first).

    With ``reported_after``, a story none of whose copies is dated after it is left out,
    however recently we first saw it: a feed added today brings its archive, which is not news.

    A story is in the issue when it was first seen inside ``(window_start, window_end]``
    (the snapshot must hold every story touched by the window whole: ``read_snapshot``
    with ``since=window_start`` does).  ``copies`` are the stored entries behind the
    snapshot's stories, by id (every one ``read_snapshot`` read): with them, a story first
    seen before the window is in the issue too, marked updated, when articles joined it
    inside the window (``new_articles``); without them, only stories first seen inside it.
    ``sent`` holds the ids of the stories earlier issues carried: an older story that is
    not among them (this newsletter's feeds or topics left it out then) is new to its
    readers, so it comes without the updated mark; without ``sent``, every one is marked.
    Such a story, left out before for want of a link, comes when a copy with a link
    arrives inside the window (``_left_out_for_its_link``).
    ``topics``/``feeds`` restrict the issue to stories in one of those topics or carried by
    one of those feeds (by URL as configured; an update, to articles from those feeds).
    The first ``max_stories`` by ``by_importance`` are kept: new stories first, most widely
    carried first, and updated ones in the places new stories leave.
    """
    wanted_topics, wanted_feeds = set(topics), set(feeds)
    arrivals: dict[str, datetime] | None = None  # worked out at the first older story
    chosen: list[DigestStory] = []
    for story in snapshot.stories:
        if story.first_seen > window_end:
            continue
        if wanted_topics and not wanted_topics.intersection(story.topics):
            continue
        if window_start is None or story.first_seen > window_start:  # new in this window
            if reported_after is not None and story.latest < reported_after:
                continue
            if wanted_feeds and not wanted_feeds.intersection(story.feed_urls):
                continue
            built = digest_story(story)
        else:  # reported before: back only for what joined it since, or for its first link
            if copies is None:
                continue
            if arrivals is None:
                arrivals = _arrivals(copies)
            arrived = new_articles(
                story,
                copies,
                window_start=window_start,
                window_end=window_end,
                reported_after=reported_after,
                feeds=wanted_feeds,
                arrivals=arrivals,
            )
            if not arrived and not _left_out_for_its_link(
                story,
                copies,
                sent=sent,
                window_start=window_start,
                window_end=window_end,
                reported_after=reported_after,
                feeds=wanted_feeds,
            ):
                continue
            built = digest_story(story)
            if arrived and built is not None and (sent is None or story.id in sent):
                listed = tuple(a for a in arrived if a.url != built.url)
                built = replace(built, updated=True, new_articles=listed)
        if built is not None:
            chosen.append(built)
    return _arrange(by_importance(chosen)[:max_stories], topics)


def new_articles(
    story: SnapshotStory,
    copies: Mapping[str, StoredEntry],
    *,
    window_start: datetime,
    window_end: datetime,
    reported_after: datetime | None = None,
    feeds: Collection[str] = (),
    arrivals: Mapping[str, datetime] | None = None,
) -> tuple[DigestArticle, ...]:
    """The articles of ``story`` that arrived inside ``(window_start, window_end]``, earliest first.

    An article is a kept copy (one that duplicates no other) with the copies that duplicate
    it; it arrived when the first of them was first seen (``arrivals``, from ``copies``
    when not given).  So a syndicated copy of an article already there is nothing new, nor
    is a fuller copy of it that became the kept one.  Left out: an article dated before
    ``reported_after`` (a feed's archive), one none of whose copies shown comes from
    ``feeds`` (when given), one with no http(s) link.
    """
    arrivals = _arrivals(copies) if arrivals is None else arrivals
    shown = {story.lead.id: (story.lead.feed_url, story.outlet, story.url, story.lead.entry.title)}
    shown.update((c.entry_id, (c.feed_url, c.outlet, c.url, c.title)) for c in story.coverage)
    carried: dict[str, list[str]] = {}  # article (its kept copy) → its copies shown
    for entry_id in shown.keys() & copies.keys():
        carried.setdefault(kept_copy(copies[entry_id], copies).id, []).append(entry_id)
    found: list[DigestArticle] = []
    for kept_id, shown_copies in carried.items():
        if not window_start < arrivals[kept_id] <= window_end:
            continue
        # Shown as its kept copy, or a copy of it when that one is hidden (a feed removed).
        face = kept_id if kept_id in shown else min(shown_copies)
        date = entry_time(copies[face])
        if reported_after is not None and date < reported_after:
            continue
        if feeds and not any(shown[i][0] in feeds for i in shown_copies):
            continue
        _feed, outlet, url, title = shown[face]
        url = url or next((shown[i][2] for i in sorted(shown_copies) if shown[i][2]), None)
        if url is None:
            continue
        headline = _visible(clean_text(title, HEADLINE_CHARS)) or url
        found.append(DigestArticle(clean_text(outlet, OUTLET_CHARS), headline, url, date.astimezone(UTC)))
    return tuple(sorted(found, key=lambda a: (a.time, a.headline.casefold(), a.url)))


def _left_out_for_its_link(
    story: SnapshotStory,
    copies: Mapping[str, StoredEntry],
    *,
    sent: Collection[str] | None,
    window_start: datetime,
    window_end: datetime,
    reported_after: datetime | None,
    feeds: Collection[str],
) -> bool:
    """Whether ``story``, first seen before the window, is new to this newsletter's readers
    for want of a link: no earlier issue carried it (``sent``; without it, nobody can say)
    and none of its copies first seen before the window had an http(s) link (so
    ``digest_story`` left it out of every earlier issue), and a copy first seen inside
    ``(window_start, window_end]`` has one.  With ``feeds``, a copy from one of them must
    have been there before: a story those feeds did not carry was not left out for its link.
    Dated before ``reported_after``, it is a feed's archive, as a new story would be."""
    if sent is None or story.id in sent:
        return False
    if reported_after is not None and story.latest < reported_after:
        return False
    links = {story.lead.id: story.url, **{c.entry_id: c.url for c in story.coverage}}
    seen = {entry_id: copies[entry_id] for entry_id in links.keys() & copies.keys()}
    before = [i for i, stored in seen.items() if stored.first_seen <= window_start]
    inside = [i for i, stored in seen.items() if window_start < stored.first_seen <= window_end]
    if not before or any(links[i] for i in before):
        return False
    if feeds and not any(seen[i].feed_url in feeds for i in before):
        return False
    return any(links[i] for i in inside)


def _arrivals(copies: Mapping[str, StoredEntry]) -> dict[str, datetime]:
    """Kept copy id → when the first of its copies (itself included) was first seen."""
    first: dict[str, datetime] = {}
    for stored in copies.values():
        kept = kept_copy(stored, copies).id
        if kept not in first or stored.first_seen < first[kept]:
            first[kept] = stored.first_seen
    return first


def digest_story(story: SnapshotStory) -> DigestStory | None:
    """How a snapshot story reads in an issue: every string cleaned; None when it has no http(s) link."""
    if story.url is None:
        # Named as the operator knows it (outlet, feed, headline), not by its internal key.
        log.warning(
            "digest: story %r from %s (%s) left out: none of its entries has an http(s) link;"
            " it goes in the next issue once a copy with one arrives",
            story.headline,
            story.outlet,
            without_password(story.lead.feed_url),
        )
        return None
    lead = story.lead.entry
    outlets = (clean_text(name, OUTLET_CHARS) for name in story.outlets)
    return DigestStory(
        id=story.id,
        headline=_visible(clean_text(story.headline, HEADLINE_CHARS)) or story.url,
        url=story.url,
        outlets=tuple(dict.fromkeys(name for name in outlets if name)),
        time=story.published.astimezone(UTC),
        excerpt=excerpt_of(lead.text, lead.summary_html),
        topics=tuple(clean_text(t) for t in story.topics),
        section="",
    )


def _arrange(stories: Sequence[DigestStory], wanted: Sequence[str]) -> tuple[DigestStory, ...]:
    """Give each story one section and order sections, then stories newest first."""
    placed: list[DigestStory] = []
    for story in stories:
        section = next((t for t in story.topics if not wanted or t in wanted), OTHER_SECTION)
        placed.append(replace(story, section=section))
    counts: dict[str, int] = {}
    for story in placed:
        counts[story.section] = counts.get(story.section, 0) + 1
    if wanted:
        rank = {name: index for index, name in enumerate(wanted)}
        order = sorted(counts, key=lambda n: (rank.get(n, len(rank)), n))
    else:
        order = sorted(counts, key=lambda n: (n == OTHER_SECTION, -counts[n], n))
    position = {name: index for index, name in enumerate(order)}
    # Newest first; among stories reported at the same minute, the more widely carried first.
    placed.sort(
        key=lambda s: (position[s.section], -s.time.timestamp(), -len(s.outlets), s.headline.casefold(), s.id)
    )
    return tuple(placed)


# ----------------------------------------------------------------------- JSON


def issue_to_json(issue: DigestIssue) -> str:
    """The snapshot as JSON (stored with the issue; a resumed send renders exactly this)."""
    data: dict[str, Any] = {
        "newsletter": issue.newsletter,
        "title": issue.title,
        "number": issue.number,
        "window_start": _iso(issue.window_start),
        "window_end": _iso(issue.window_end),
        "frozen_at": _iso(issue.frozen_at),
        "timezone": issue.timezone,
        "lang": issue.lang,
        "stories": [_story_json(s) for s in issue.stories],
    }
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


def _story_json(story: DigestStory) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": story.id,
        "headline": story.headline,
        "url": story.url,
        "outlets": list(story.outlets),
        "time": _iso(story.time),
        "excerpt": story.excerpt,
        "topics": list(story.topics),
        "section": story.section,
    }
    if story.updated:  # only then: a story as earlier versions stored it stays byte for byte
        data["updated"] = True
        data["new_articles"] = [
            {"outlet": a.outlet, "headline": a.headline, "url": a.url, "time": _iso(a.time)}
            for a in story.new_articles
        ]
    return data


def issue_from_json(text: str) -> DigestIssue:
    data = json.loads(text)
    return DigestIssue(
        newsletter=data["newsletter"],
        title=data["title"],
        number=data["number"],
        window_start=_parse_iso(data["window_start"]),
        window_end=_required_iso(data["window_end"]),
        frozen_at=_required_iso(data["frozen_at"]),
        timezone=data["timezone"],
        lang=data["lang"],
        stories=tuple(
            DigestStory(
                id=s["id"],
                headline=s["headline"],
                url=s["url"],
                outlets=tuple(s["outlets"]),
                time=_required_iso(s["time"]),
                excerpt=s["excerpt"],
                topics=tuple(s["topics"]),
                section=s["section"],
                # Issues frozen before updates were shown have neither key.
                updated=s.get("updated", False),
                new_articles=tuple(
                    DigestArticle(a["outlet"], a["headline"], a["url"], _required_iso(a["time"]))
                    for a in s.get("new_articles", ())
                ),
            )
            for s in data["stories"]
        ),
    )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _parse_iso(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _required_iso(value: str) -> datetime:
    return datetime.fromisoformat(value)


# ----------------------------------------------------------------------- rendering


@cache
def _template(name: str) -> Template:
    return Template(TEMPLATES.joinpath(name).read_text(encoding="utf-8"))


def _e(text: str) -> str:
    return html.escape(text, quote=True)


# Python has no table of which languages are written right to left, nor does any dependency.
# Scripts (ISO 15924, lower case) written right to left that a newsletter may be in:
_RTL_SCRIPTS = frozenset(
    {
        "adlm",
        "arab",
        "aran",
        "hebr",
        "mand",
        "nkoo",
        "rohg",
        "samr",
        "syrc",
        "syre",
        "syrj",
        "syrn",
        "thaa",
        "yezi",
    }
)
# Languages whose usual script (CLDR's likely subtags) is one of them, for a tag that names
# no script: Arabic and its varieties, Aramaic, Baluchi, Central and Southern Kurdish,
# Dhivehi, Persian and Dari, Gilaki, Hebrew (and its old code iw), Kashmiri, Northern Luri,
# Mazanderani, N'Ko, Western Punjabi, Pashto, Sindhi, Saraiki, Syriac, Uyghur, Urdu and
# Yiddish (and ji).  Hausa and Kurdish (ku) are usually Latin: ha-Arab, ku-Arab say otherwise.
_RTL_LANGUAGES = frozenset(
    {
        "ar", "arc", "arz", "ary", "bal", "ckb", "dv", "fa", "glk", "he", "iw", "ji", "ks", "lrc",
        "mzn", "nqo", "pnb", "prs", "ps", "sd", "sdh", "skr", "syr", "ug", "ur", "yi",
    }
)  # fmt: skip


def text_direction(lang: str) -> str:
    """``"rtl"`` or ``"ltr"``: the direction of the script a BCP 47 language tag (``ar``,
    ``fa-IR``, ``ku-Arab``, ``sd-Deva``; ``_`` taken for ``-``) is written in.

    Its script subtag decides when it has one, else its primary language; anything unknown
    is left to right."""
    subtags = re.split(r"[-_]", lang.strip().lower())
    for subtag in subtags[1:]:
        if len(subtag) == 1:  # a singleton (x-…, u-…): only extensions follow
            break
        if len(subtag) == 4 and subtag.isalpha():  # the script (a variant is 5-8, or digit+3)
            return "rtl" if subtag in _RTL_SCRIPTS else "ltr"
    return "rtl" if subtags[0] in _RTL_LANGUAGES else "ltr"


@dataclass(frozen=True, slots=True)
class _Direction:
    """What the templates say about the direction of a digest's language."""

    dir: str  # the document's: <html dir>, MJML sections and columns
    align: str  # its text's side: MJML's mj-text align (left or right; some clients know no "start")
    # On the blocks of fixed English words (the dateline, a story's "also in: … first
    # reported 14 Aug 2025", the footer, "+3 more stories …"): in a right-to-left document
    # those read in the wrong order without it ("August 2025 · issue 1 · 6 stories 18").
    # Nothing in a left-to-right one, whose HTML is then what it always was.
    english: str

    @staticmethod
    def of(lang: str) -> _Direction:
        if text_direction(lang) == "rtl":
            return _Direction("rtl", "right", ' dir="ltr"')
        return _Direction("ltr", "left", "")


def format_time(moment: datetime, timezone: str) -> str:
    """``18 Aug 2025, 14:00 CEST`` in the newsletter's time zone."""
    local = moment.astimezone(ZoneInfo(timezone))
    return f"{local.day} {local:%b %Y, %H:%M} {local.tzname()}"


def _dateline(issue: DigestIssue) -> str:
    local = issue.frozen_at.astimezone(ZoneInfo(issue.timezone))
    count = len(issue.stories)
    return f"{local.day} {local:%B %Y} · issue {issue.number} · {stories_phrase(count)}"


def stories_phrase(count: int) -> str:
    """``"1 story"``, ``"3 stories"``: as the dateline, the archive index and the CLI say it."""
    return f"{count} stor{'y' if count == 1 else 'ies'}"


UPDATED = "Updated"  # the mark of a story reported before, back for new articles
NEW_ARTICLES = "New"
FIRST_REPORTED = "first reported"  # as the front page says it


def _meta(
    story: DigestStory, timezone: str, isolate: Callable[[str], str], mark: Callable[[str], str] = str
) -> str:
    """``[Updated · ]outlet · also in: others · [first reported ]date``, each outlet passed
    through ``isolate``, the mark through ``mark``."""
    parts = [mark(UPDATED)] if story.updated else []
    if story.outlets:
        parts.append(isolate(story.outlets[0]))
        others = story.outlets[1:]
        if others:
            named = ", ".join(isolate(o) for o in others[:OTHER_OUTLETS_SHOWN])
            parts.append(f"also in: {named}{_and_others(len(others) - OTHER_OUTLETS_SHOWN, 'other')}")
    parts.append(_date_phrase(story, timezone))
    return " · ".join(parts)


def _date_phrase(story: DigestStory, timezone: str) -> str:
    """The story's date, ``first reported …`` when other outlets carried it.

    The date is the story's (its earliest copy: the output feeds' published date, and what
    orders the issue), not the linked article's: beside other outlets it may be another
    article's, days before the one linked, so it says what it is, as the front page does."""
    when = format_time(story.time, timezone)
    return f"{FIRST_REPORTED} {when}" if len(story.outlets) > 1 else when


def _and_others(count: int, noun: str) -> str:
    """`` and 3 others`` after a list cut short by ``count`` items, "" when nothing was cut."""
    return f" and {count} {noun}{'' if count == 1 else 's'}" if count > 0 else ""


def _rtl(text: str) -> bool:
    return any(unicodedata.bidirectional(c) in ("R", "AL") for c in text)


# Right-to-left feed text beside left-to-right words is isolated, or the bidi algorithm
# reorders the line around it: "الجزيرة · 18 Aug" read as "18 · الجزيرة Aug".  Only text
# that holds right-to-left letters: the rest stays as it was, byte for byte.
def _isolated_html(text: str) -> str:
    return f"<bdi>{_e(text)}</bdi>" if _rtl(text) else _e(text)


def _isolated_text(text: str) -> str:
    return f"\u2068{text}\u2069" if _rtl(text) else text  # FIRST STRONG ISOLATE … POP


def subject_of(issue: DigestIssue) -> str:
    """``Title: lead headline (+N more)``, one line, at most about 150 characters."""
    title = clean_text(issue.title)
    if not issue.stories:
        return title
    lead = clean_text(by_importance(issue.stories)[0].headline, 110)
    more = len(issue.stories) - 1
    return f"{title}: {lead}" + (f" (+{more} more)" if more else "")


def preheader_of(issue: DigestIssue) -> str:
    """The line inboxes show after the subject: the next most widely carried headlines."""
    return clean_text(" · ".join(s.headline for s in by_importance(issue.stories)[1:6]) or issue.title, 140)


def by_importance(stories: Sequence[DigestStory]) -> list[DigestStory]:
    """``stories`` new ones first, then most widely carried, then newest: which an issue
    keeps (``max_stories``), what the subject names first and what an email too big for
    every story keeps (the display order is by section).

    A story back as updated comes after every new one however widely carried: its readers
    have had it already, and an old story that gained outlets must not take the place of
    today's news, nor the subject line."""
    return sorted(
        stories, key=lambda s: (s.updated, -len(s.outlets), -s.time.timestamp(), s.headline.casefold(), s.id)
    )


def _story_html(story: DigestStory, timezone: str) -> str:
    return _template("story.html").substitute(
        url=_e(story.url),
        headline=_e(story.headline),
        meta=_meta(story, timezone, _isolated_html, lambda m: f"<strong>{_e(m)}</strong>"),  # escaped
        excerpt=_e(story.excerpt),
        new=_new_articles_html(story, timezone),
    )


def _english_lines(story_html: str, direction: _Direction) -> str:
    """A story's HTML with its lines of fixed English words (its ``m`` blocks: "also in: …
    first reported …", the new articles) marked left to right when the digest is not; as
    it is otherwise.  Feed text in it is escaped (``"`` is ``&quot;``): only the markup of
    ``story.html`` and ``_new_articles_html`` matches."""
    if not direction.english:
        return story_html
    return story_html.replace('<div class="m" ', f'<div class="m"{direction.english} ')


def _new_articles_html(story: DigestStory, timezone: str) -> str:
    """What joined an updated story, one line each; "" for any other story (the story's
    HTML is then what it always was)."""
    if not story.new_articles:
        return ""
    lines = "".join(
        f'<div dir="auto">{NEW_ARTICLES}: <a href="{_e(a.url)}" dir="auto" style="color:#0550ae">'
        f"{_e(a.headline)}</a> ({_isolated_html(a.outlet)}, {_e(format_time(a.time, timezone))})</div>"
        for a in story.new_articles[:NEW_ARTICLES_SHOWN]
    )
    if more := _more_articles(story):
        lines += f"<div>{_e(more)}</div>"
    return f'<div class="m" style="color:#59636e;font-size:13px;margin:4px 0 0">{lines}</div>'


def _more_articles(story: DigestStory) -> str:
    """``+7 more new articles`` under the new articles shown, "" when all are."""
    more = len(story.new_articles) - NEW_ARTICLES_SHOWN
    return f"+{more} more new article{'' if more == 1 else 's'}" if more > 0 else ""


def _document(
    issue: DigestIssue, shown: Sequence[DigestStory], omitted: int, archive_url: str, unsubscribe_url: str
) -> str:
    direction = _Direction.of(issue.lang)
    sections = []
    order: dict[str, list[DigestStory]] = {}
    for story in shown:
        order.setdefault(story.section, []).append(story)
    for name, stories in order.items():
        body = "".join(_english_lines(_story_html(s, issue.timezone), direction) for s in stories)
        sections.append(_template("section.mjml").substitute(topic=_e(name), stories=body))
    more = ""
    if omitted:
        label = f"+{omitted} more stor{'y' if omitted == 1 else 'ies'} in the web archive →"
        more = _template("more.mjml").substitute(
            url=_e(archive_url), label=_e(label), english=direction.english
        )
    title = clean_text(issue.title)
    footer = (
        f"You receive {_e(title)} because you subscribed to it. "
        f'<a href="{_e(archive_url)}" style="color:#59636e">View in a browser</a> · '
        f'<a href="{_e(unsubscribe_url)}" style="color:#59636e">Unsubscribe</a>'
    )
    if direction.english:  # mj-text takes no dir of its own
        footer = f"<div{direction.english}>{footer}</div>"
    return _template("digest.mjml").substitute(
        lang=_e(issue.lang),
        dir=direction.dir,
        align=direction.align,
        english=direction.english,
        title=_e(title),
        preheader=_e(preheader_of(issue)),
        dateline=_e(_dateline(issue)),
        sections="".join(sections),
        more=more,
        footer=footer,
    )


def _mjml(document: str) -> str:
    # fonts={}: no <link> to Google Fonts (a tracking request and a slower first paint).
    return str(mjml2html(document, fonts={}, disable_comments=True))


# The plain-text part is wrapped for mail clients that show it as it is (RFC 5322 asks for
# at most 78 characters a line); two characters are left for the isolates ``_wrapped``
# may add around a line break.
TEXT_COLUMNS = 76
_LINK_WORD = re.compile(r"\W*https?://", re.IGNORECASE)
_FSI, _PDI = "\u2068", "\u2069"


class _TextWrapper(textwrap.TextWrapper):
    """A word too long for a line is cut, unless it is a link: that stays whole, on a line
    of its own (a link cut in two leads nowhere)."""

    def _handle_long_word(
        self, reversed_chunks: list[str], cur_line: list[str], cur_len: int, width: int
    ) -> None:
        if not _LINK_WORD.match(reversed_chunks[-1]):
            super()._handle_long_word(reversed_chunks, cur_line, cur_len, width)
        elif not cur_line:
            cur_line.append(reversed_chunks.pop())


def _wrapped(text: str, first: str = "", rest: str = "") -> list[str]:
    """``text`` (one line) wrapped at ``TEXT_COLUMNS``, the first line after ``first`` and the
    others after ``rest``.  An isolate (``_isolated_text``) a line break cuts is closed at the
    end of the line and opened again on the next: each line is a paragraph to the bidi
    algorithm, and an isolate does not reach past it."""
    wrapper = _TextWrapper(TEXT_COLUMNS, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False)
    lines = []
    still_open = 0
    for index, line in enumerate(wrapper.wrap(text) or [first.rstrip()]):
        indent = first if index == 0 else rest
        body = _FSI * still_open + line[len(indent) :]
        still_open = body.count(_FSI) - body.count(_PDI)
        lines.append(indent + body + _PDI * still_open)
    return lines


def render_text(
    issue: DigestIssue, shown: Sequence[DigestStory], omitted: int, archive_url: str, unsubscribe_url: str
) -> str:
    """The plain-text part, from the same snapshot (not by stripping the HTML).

    Wrapped at ``TEXT_COLUMNS`` with a hanging indent under each bullet; a link is never
    cut: one too long for a line has a line of its own."""
    title = clean_text(issue.title)
    heading = _wrapped(title)
    lines = [*heading, "=" * max(len(line) for line in heading), _dateline(issue), ""]
    current = None
    for story in shown:
        if story.section != current:
            current = story.section
            lines += [*_wrapped(story.section.upper()), ""]
        lines += _wrapped(_isolated_text(story.headline), "* ", "  ")
        lines.append(f"  {story.url}")
        lines += _wrapped(_meta(story, issue.timezone, _isolated_text), "  ", "  ")
        if story.excerpt:
            lines += _wrapped(_isolated_text(story.excerpt), "  ", "  ")
        for article in story.new_articles[:NEW_ARTICLES_SHOWN]:
            outlet = _isolated_text(article.outlet)
            when = format_time(article.time, issue.timezone)
            said = f"{NEW_ARTICLES}: {_isolated_text(article.headline)} ({outlet}, {when})"
            lines += _wrapped(said, "  ", "    ")
            lines.append(f"    {article.url}")
        if more := _more_articles(story):
            lines.append(f"  {more}")
        lines.append("")
    if omitted:
        lines += [*_wrapped(f"+{omitted} more in the web archive: {archive_url}"), ""]
    lines += [
        "-- ",
        *_wrapped(f"You receive {title} because you subscribed to it."),
        *_wrapped(f"View in a browser: {archive_url}"),
        # On a line of its own: ``mail`` puts each reader's URL, longer than the mark, here.
        "Unsubscribe:",
        unsubscribe_url,
        "",
    ]
    return "\n".join(lines)


def render_digest(
    issue: DigestIssue,
    *,
    archive_url: str,
    unsubscribe_url: str = UNSUBSCRIBE_MARK,
    max_bytes: int | None = MAX_HTML_BYTES,
) -> RenderedDigest:
    """Render an issue; with ``max_bytes``, show only the stories that fit and link the rest.

    ``unsubscribe_url`` defaults to ``UNSUBSCRIBE_MARK`` for ``mail`` to replace per
    recipient; the archive passes a URL without any personal token.
    """
    dropped: list[str] = []
    html_text = _render_dropping_bad(issue, archive_url, unsubscribe_url, dropped)
    if dropped:
        # A story MJML rejects is in no part of the message: not the subject, not the preheader.
        issue = replace(issue, stories=tuple(s for s in issue.stories if s.id not in dropped))
    stories = list(issue.stories)
    shown = len(stories)
    kept = stories
    if max_bytes is not None:
        budget = max_bytes - PER_RECIPIENT_MARGIN
        size = len(html_text.encode())
        if size > budget:
            base = len(_mjml(_document(issue, [], 1, archive_url, unsubscribe_url)).encode())
            ranked = by_importance(stories)
            while size > budget and shown > 0:
                per_story = max(1.0, (size - base) / shown)
                shown = max(0, min(shown - 1, int((budget - base) / per_story)))
                # The least carried go to the archive, not the last sections: the top story
                # must not be cut for being in "More stories".
                keep = {s.id for s in ranked[:shown]}
                kept = [s for s in stories if s.id in keep]
                html_text = _mjml(_document(issue, kept, len(stories) - shown, archive_url, unsubscribe_url))
                size = len(html_text.encode())
    omitted = len(stories) - shown
    text = render_text(issue, kept, omitted, archive_url, unsubscribe_url)
    return RenderedDigest(
        subject=subject_of(issue),
        preheader=preheader_of(issue),
        html=html_text,
        text=text,
        shown=shown,
        omitted=omitted,
        dropped=tuple(dropped),
    )


def _render_dropping_bad(
    issue: DigestIssue, archive_url: str, unsubscribe_url: str, dropped: list[str]
) -> str:
    try:
        return _mjml(_document(issue, issue.stories, 0, archive_url, unsubscribe_url))
    except ValueError as exc:
        # Find the stories MJML rejects on their own, drop them, and render the rest.
        for story in issue.stories:
            try:
                _mjml(_document(issue, [story], 0, archive_url, unsubscribe_url))
            except ValueError as story_exc:
                log.warning(
                    "digest %s #%d: story dropped: %r: MJML rejected it: %s",
                    issue.newsletter,
                    issue.number,
                    story.headline,
                    story_exc,
                )
                dropped.append(story.id)
        remaining = tuple(s for s in issue.stories if s.id not in dropped)
        if len(remaining) == len(issue.stories):
            raise ValueError(f"rendering digest {issue.newsletter} #{issue.number}: {exc}") from exc
        return _mjml(_document(replace(issue, stories=remaining), remaining, 0, archive_url, unsubscribe_url))
