"""What a story looks like to a reader, frozen at one moment: the one source of every output.

In: ``StoredEntry`` records (the dedupe and story verdicts already on them), the stored
stories (``StoryRecord``: label, topics, members) when the story stage has run, each
feed's title, and ``now``.  Out: a ``Snapshot`` of ``SnapshotStory`` records, newest
first.  ``publish`` renders the output feeds from it and ``digest`` selects and renders a
newsletter issue from it, so the email and the feed say the same thing about a story:
the same id, headline, link, outlets, topics and dates.  Pure: no database, no clock;
``read_snapshot`` is the one function that reads a ``Store``.

What a story is here:

- entries that share ``entries.story`` form one story (the story stage's verdict);
- an entry with no story yet follows the copy it duplicates (``duplicate_of``), and a
  kept entry with no story is a story of its own, so the outputs work before (and
  without) the story stage;
- the lead, whose headline, link, content and authors the story shows, is chosen in this
  order: a copy with an http(s) link (a reader must be able to click through), a kept copy
  (``duplicate_of`` None) rather than a syndicated one, the copy whose headline the story
  stage chose as the story's label, the copy carried by the most outlets, one with full
  text, the earliest, the smallest id.  The same input always gives the same lead.
- the headline is the lead's title (the words the linked article carries), else the label;
- links are the canonical URLs the parse stage derived (tracking parameters removed),
  else the links as given, and only absolute http(s) URLs are links (``web_link``);
- an outlet is named by its feed's title, else the feed URL's host, else (a local file)
  the file's name without its extension: a local path is never published;
- an entry's date is the one its feed gave, but never after we first saw it (a future
  date is a mistake) nor before 1970 (0001-01-01 is Hugo's "no date"): those are when we
  first saw it;
- a headline (and the title of every other copy) is at most ``TITLE_CHARS`` characters,
  cut at a word with an ellipsis (``shorten``): a hostile feed's 5,000-character title
  must not fill a reader's screen.  What is stored keeps the whole title;
- only the entries of the feeds configured now (``feeds``) are shown: a feed removed from
  feeds.yaml leaves every output from the next snapshot on, though its entries stay stored
  (re-adding it brings them back).  Its copies still hold a story together, so a story it
  shared with a feed still configured keeps its id and is shown from that feed's copy; and
  they still count for when the story was first seen (the digest windows: an issue must not
  send a story again because the outlet that first carried it was removed) and for when it
  last changed (an entry's ``updated`` never goes back).  A story no configured feed
  carries is left out.

The id of a story in every output is ``urn:uuid:`` + a UUID5 of the story id (or, before
the story stage runs, of the lead's entry id): stable across runs and independent of where
the feeds are served from (``output.base_url`` may change; an Atom id must not).
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from urllib.parse import quote, unquote, urlsplit

from aggregator.types import StoredEntry
from aggregator.urls import without_userinfo

# Namespace of the UUID5 story ids; fixed forever, or every reader sees every story again.
STORY_NAMESPACE = uuid.UUID("6f1c1f0e-6a55-4c0e-9a53-3c1d6c0b7a11")

# How far back ``read_snapshot`` looks first; it looks further back (twice as far each
# time) only while that window holds fewer stories than asked for.
RECENT_WINDOW = timedelta(days=14)
# No entry is first seen before this (``first_seen`` is when this program saw it): a window
# reaching back here holds everything, whatever the counts say.
_BEFORE_ANY_ENTRY = datetime(1970, 1, 1, tzinfo=UTC)
# No news article is dated before this: an earlier date is a placeholder for none (Hugo
# writes 0001-01-01), and taken as given it would sink a new article below every other.
_EARLIEST_DATE = datetime(1970, 1, 1, tzinfo=UTC)
# What a local feed with no title and no usable file name is called.
LOCAL_FEED = "Local feed"
# The longest headline shown, in characters (the digest's HEADLINE_CHARS too): a headline
# cut here reads the same in the feed and in the email.
TITLE_CHARS = 300

# Never part of a link: C0/C1 controls, surrogates and non-characters (XML forbids them),
# line separators and bidi controls (they make a link read as something it is not).
_NOT_IN_LINK = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff"
    "\ud800-\udfff\ufffe\uffff]"
)
# What a link may hold unescaped (RFC 3986 reserved and unreserved, plus % of existing escapes).
_URL_SAFE = ":/?#[]@!$&'()*+,;=%-._~"


@dataclass(frozen=True, slots=True)
class Coverage:
    """One outlet's copy of a story: who carried it, where, under which headline."""

    entry_id: str
    feed_url: str
    outlet: str  # the feed's title, else its host, else its URL
    url: str | None  # an absolute http(s) link (``web_link``), or None
    title: str  # whitespace collapsed, ``shorten``ed
    date: datetime
    duplicate: bool  # a near-identical copy of another entry (syndication), not its own article


@dataclass(frozen=True, slots=True)
class SnapshotStory:
    """One story as every output shows it."""

    key: str  # the story id, or ``entry:<lead id>`` before the story stage ran
    id: str  # the public id: ``urn:uuid:…``, stable across runs
    headline: str  # the lead's title (whitespace collapsed, ``shorten``ed), else the story's label
    label: str | None  # the story stage's label, None before it ran
    lead: StoredEntry  # the copy whose headline, link, content and authors are shown
    outlet: str  # the lead's outlet
    coverage: tuple[Coverage, ...]  # every other copy, earliest first (the lead excluded)
    topics: tuple[str, ...]
    published: datetime  # the earliest date among the copies shown: when it was first reported
    updated: datetime  # the last time anything about it changed (hidden copies included: never goes back)
    latest: datetime  # the latest date among the copies shown: the order of the feed
    first_seen: datetime  # when we first saw any copy (hidden ones included): the digest windows go by this

    @property
    def url(self) -> str | None:
        """The lead's link, an absolute http(s) URL, or None."""
        return web_link(_link(self.lead))

    @property
    def outlets(self) -> tuple[str, ...]:
        """Every outlet that carried the story, the lead's first, then by date, each once."""
        return tuple(dict.fromkeys([self.outlet, *(c.outlet for c in self.coverage)]))

    @property
    def feed_urls(self) -> tuple[str, ...]:
        """Every feed (as configured) that carried the story, the lead's first, each once."""
        return tuple(dict.fromkeys([self.lead.feed_url, *(c.feed_url for c in self.coverage)]))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The stories at one moment, newest first (by ``latest``, then id)."""

    taken: datetime
    stories: tuple[SnapshotStory, ...]

    @property
    def topics(self) -> tuple[str, ...]:
        """Every topic of the snapshot, sorted case-insensitively."""
        names = {t for s in self.stories for t in s.topics}
        return tuple(sorted(names, key=lambda t: (t.casefold(), t)))

    def newest(self, count: int) -> tuple[SnapshotStory, ...]:
        return self.stories[:count]

    def in_topic(self, topic: str) -> tuple[SnapshotStory, ...]:
        return tuple(s for s in self.stories if topic in s.topics)

    def first_seen_in(self, start: datetime | None, end: datetime) -> tuple[SnapshotStory, ...]:
        """Stories first seen inside ``(start, end]``: a story that gains coverage later is not new again."""
        return tuple(
            s for s in self.stories if s.first_seen <= end and (start is None or s.first_seen > start)
        )


class StoryRecord(Protocol):
    """What the snapshot needs of a stored story (``store.StoredStory`` has it)."""

    @property
    def id(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def topics(self) -> tuple[str, ...]: ...
    @property
    def updated(self) -> datetime: ...
    @property
    def entry_ids(self) -> tuple[str, ...]: ...


def public_id(key: str) -> str:
    """The id a story has in every output: ``urn:uuid:`` and a UUID5 of its key."""
    return uuid.uuid5(STORY_NAMESPACE, key).urn


def entry_time(stored: StoredEntry) -> datetime:
    """An entry's date, but never later than when we first saw it (future dates are mistakes)
    nor before 1970 (placeholders for no date): for those, when we first saw it."""
    date = stored.entry.date
    if date is None or date > stored.first_seen or date < _EARLIEST_DATE:
        return stored.first_seen
    return date


def web_link(value: str | None) -> str | None:
    """``value`` as a link safe to put in any attribute, or None when it is not absolute http(s).

    Characters that could change how the link reads are dropped; anything else outside
    RFC 3986 is percent-escaped (``https://x.example/ü path`` → ``…/%C3%BC%20path``).  A user
    name and password are dropped: an article's link never needs them, and one that has
    them took them from a private feed's URL.
    """
    if not value:
        return None
    value = _NOT_IN_LINK.sub("", value.strip())
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. an unbalanced "[" in the host
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return quote(without_userinfo(value), safe=_URL_SAFE)


def build_snapshot(
    entries: Iterable[StoredEntry],
    feed_titles: Mapping[str, str],
    now: datetime,
    stories: Iterable[StoryRecord] = (),
    *,
    feeds: Collection[str] | None = None,
) -> Snapshot:
    """Group ``entries`` into stories and freeze them, newest first (see the module docstring).

    ``feeds`` are the feed URLs configured now (as in feeds.yaml, enabled or not); the
    entries of any other feed hold stories together but are not shown, and a story with
    none of theirs is left out.  None shows every feed.
    """
    by_id = {e.id: e for e in entries}
    story_of = {s.id: s for s in stories}
    shown = None if feeds is None else frozenset(feeds)
    # Grouped with every entry, shown or not: a story keeps its key (its public id) when the
    # feed of the copy it was keyed on is removed.
    groups: dict[str, list[StoredEntry]] = {}
    for stored in by_id.values():
        groups.setdefault(_group_key(stored, by_id), []).append(stored)
    built = []
    for key, members in groups.items():
        visible = members if shown is None else [m for m in members if m.feed_url in shown]
        if visible:
            built.append(_story(key, visible, members, story_of.get(key), feed_titles))
    built.sort(key=lambda s: (s.latest, s.id), reverse=True)
    return Snapshot(taken=now, stories=tuple(built))


def kept_copy(stored: StoredEntry, by_id: Mapping[str, StoredEntry]) -> StoredEntry:
    """Follow ``duplicate_of`` to the copy kept (a cycle or a missing target stops the walk)."""
    seen = {stored.id}
    current = stored
    while current.duplicate_of is not None and current.duplicate_of in by_id:
        if current.duplicate_of in seen:
            break
        seen.add(current.duplicate_of)
        current = by_id[current.duplicate_of]
    return current


def _group_key(stored: StoredEntry, by_id: Mapping[str, StoredEntry]) -> str:
    # A copy goes where its kept copy is: the story stage may have given a late copy (its kept
    # copy older than the stage's window) a story of its own, and the feed would then carry
    # the one article twice.
    kept = kept_copy(stored, by_id)
    if kept.story is not None:
        return kept.story
    return stored.story if stored.story is not None else f"entry:{kept.id}"


def _headline(title: str) -> str:
    return " ".join(title.split())


def shorten(text: str, limit: int = TITLE_CHARS) -> str:
    """``text`` if it has at most ``limit`` characters, else cut to fit with "…": at the last
    space, unless that throws away more than half (a title of one long word, or without
    spaces, as Chinese and Japanese are written), trailing punctuation dropped.  Never
    longer than ``limit``."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]  # room for the ellipsis
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-–—") + "…"


def _story(
    key: str,
    members: Sequence[StoredEntry],
    every: Sequence[StoredEntry],
    record: StoryRecord | None,
    feed_titles: Mapping[str, str],
) -> SnapshotStory:
    """The story of ``members`` (the copies shown); ``every`` adds the hidden ones (of feeds
    no longer configured), which count only for ``updated`` and ``first_seen``."""
    in_story = {m.id: m for m in members}
    # How many copies each kept copy stands for; a copy that is someone's duplicate counts 0.
    carried = Counter(kept_copy(m, in_story).id for m in members)
    label = _headline(record.label) if record is not None else None
    lead = min(
        members,
        key=lambda m: (
            web_link(_link(m)) is None,
            not carried[m.id],
            _headline(m.entry.title) != label,
            -carried[m.id],
            not m.entry.has_full_text,
            entry_time(m),
            m.id,
        ),
    )
    if record is not None and record.topics:
        topics = tuple(record.topics)
    else:
        topics = tuple(dict.fromkeys(t for m in members for t in m.topics))
    coverage = tuple(
        Coverage(
            entry_id=m.id,
            feed_url=m.feed_url,
            outlet=outlet_name(m.feed_url, feed_titles),
            url=web_link(_link(m)),
            title=shorten(_headline(m.entry.title)),
            date=entry_time(m),
            duplicate=m.duplicate_of is not None,
        )
        for m in sorted(members, key=lambda m: (entry_time(m), m.id))
        if m.id != lead.id
    )
    dates = [entry_time(m) for m in members]
    updated = max(m.last_updated for m in every)
    if record is not None:
        updated = max(updated, record.updated)
    return SnapshotStory(
        key=key,
        id=public_id(key),
        headline=shorten(_headline(lead.entry.title) or label or ""),
        label=label,
        lead=lead,
        outlet=outlet_name(lead.feed_url, feed_titles),
        coverage=coverage,
        topics=topics,
        published=min(dates),
        updated=updated,
        latest=max(dates),
        first_seen=min(m.first_seen for m in every),
    )


def _link(stored: StoredEntry) -> str | None:
    # The canonical form drops tracking parameters (utm_*, fbclid) the parse stage recognised.
    return stored.entry.canonical_url or stored.entry.url


def outlet_name(feed_url: str, feed_titles: Mapping[str, str]) -> str:
    """How a reader knows a feed: its title, else the host it comes from, else its file's name.

    A local feed (a ``file:`` URL or a path) is named by its file name without the
    extension (``seeds/dispatch.rdf`` → ``dispatch``), never by its path: the outlet is
    published, and ``/home/alice/private/…`` is nobody's business.
    """
    title = feed_titles.get(feed_url)
    if title and title.strip():
        return title
    try:
        parts = urlsplit(feed_url)
        host = parts.hostname
    except ValueError:
        return LOCAL_FEED
    if host:
        return host
    # Both separators: a Windows path ("C:\\feeds\\x.xml") reads as scheme "c" and a path.
    file_name = re.split(r"[/\\]", unquote(parts.path))[-1]
    stem = file_name.rpartition(".")[0] if "." in file_name else file_name
    return stem.strip() or LOCAL_FEED


# ----------------------------------------------------------------------- reading a store


class StoredStoryRecord(StoryRecord, Protocol):
    """A stored story as ``read_snapshot`` reads it (``store.StoredStory`` is one)."""

    @property
    def first_seen(self) -> datetime: ...


class SnapshotSource(Protocol):
    """The reads ``read_snapshot`` makes (``store.Store`` has them)."""

    def entries_first_seen_since(self, since: datetime) -> list[StoredEntry]: ...
    def get_entries(self, ids: Iterable[str]) -> list[StoredEntry]: ...
    def entry_counts(self) -> dict[str, int]: ...
    def iter_stories(self) -> Iterable[StoredStoryRecord]: ...


def read_snapshot(
    store: SnapshotSource,
    feed_titles: Mapping[str, str],
    now: datetime,
    *,
    at_least: int = 0,
    since: datetime | None = None,
    per_topic: int = 0,
    kept_topics: Collection[str] = (),
    feeds: Collection[str] | None = None,
) -> Snapshot:
    """The snapshot of the stored entries first seen since ``since`` (default: the last two weeks).

    Every story touched by the window is read whole (its older members and the copies its
    duplicates point to, by id), so a story's lead, coverage and first-seen time are the
    same whatever window it was read through: the digest selects by first-seen time.

    ``at_least`` is how many stories the caller shows (``output.max_stories``).  While the
    window holds fewer stories than that which are certainly newer than everything outside
    it, it reaches twice as far back, until it holds every entry: a quiet instance still
    publishes a full feed, and a busy one never reads its whole history.

    ``per_topic`` is how many stories a topic feed shows.  A topic in the window with fewer
    than that, and a topic of ``kept_topics`` (the configured ones) with fewer or none, get
    their newest other stories (by when each was first seen) read by id, up to that many in
    all: a quiet configured topic keeps its feed and its older stories.  An automatic topic
    with no story in the window is left out (its feed goes): they come and go with the
    news, and filling every one ever named read the whole history at every publish.  The
    stories added are all older than the window, so the newest ``at_least`` stay the newest.

    ``feeds`` are the feeds configured now (``build_snapshot``): the stories of feeds removed
    from feeds.yaml are not shown and do not count towards ``at_least``.  (A quiet topic's
    older stories are chosen before their feeds are known: one whose feeds were all removed
    is read and not shown, and the topic shows fewer than ``per_topic``.)
    """
    records = list(store.iter_stories())
    members = {s.id: s.entry_ids for s in records}
    start = since if since is not None else now - RECENT_WINDOW
    reach = max(now - start, RECENT_WINDOW)
    total: int | None = None
    while True:
        recent = store.entries_first_seen_since(start)
        entries = _whole_stories(store, recent, members)
        snapshot = build_snapshot(entries, feed_titles, now, records, feeds=feeds)
        # Stories outside the window have every date before ``start`` (an entry's date is never
        # after its first sighting), so those dated at or after it are the true newest.
        if at_least <= 0 or sum(1 for s in snapshot.stories if s.latest >= start) >= at_least:
            break
        if total is None:
            total = sum(store.entry_counts().values())
        if len(recent) >= total or start <= _BEFORE_ANY_ENTRY:
            break  # the window holds every entry: this is all there is
        reach *= 2
        start = now - reach
    if per_topic > 0 and (older := _quiet_topic_entries(store, snapshot, records, per_topic, kept_topics)):
        everything = _whole_stories(store, entries + older, members)
        snapshot = build_snapshot(everything, feed_titles, now, records, feeds=feeds)
    return snapshot


def _quiet_topic_entries(
    store: SnapshotSource,
    snapshot: Snapshot,
    records: Sequence[StoredStoryRecord],
    per_topic: int,
    kept_topics: Collection[str],
) -> list[StoredEntry]:
    """The entries of the stories each topic in ``snapshot`` or in ``kept_topics`` lacks to
    show ``per_topic``: its newest stored stories by first sighting, read by id (at most
    ``per_topic`` a topic)."""
    wanting = dict.fromkeys({*snapshot.topics, *kept_topics}, per_topic)
    for story in snapshot.stories:
        for topic in set(story.topics) & wanting.keys():
            wanting[topic] -= 1
    hungry = {t for t, n in wanting.items() if n > 0}
    shown = {s.key for s in snapshot.stories}
    ids: list[str] = []
    for record in sorted(records, key=lambda r: (r.first_seen, r.id), reverse=True):
        if not hungry:
            break
        if record.id in shown or hungry.isdisjoint(record.topics):
            continue
        ids += record.entry_ids
        for topic in set(record.topics):
            wanting[topic] -= 1
            if wanting[topic] <= 0:
                hungry.discard(topic)
    return store.get_entries(ids) if ids else []


def _whole_stories(
    store: SnapshotSource, entries: list[StoredEntry], members: Mapping[str, Sequence[str]]
) -> list[StoredEntry]:
    """``entries`` plus every entry their stories and duplicate links lead to, read by id."""
    have = {e.id: e for e in entries}
    fresh = entries
    while fresh:
        wanted: set[str] = set()
        for stored in fresh:
            if stored.duplicate_of is not None:
                wanted.add(stored.duplicate_of)
            if stored.story is not None:
                wanted.update(members.get(stored.story, ()))
        wanted.difference_update(have)
        if not wanted:
            break
        fresh = [e for e in store.get_entries(sorted(wanted)) if e.id not in have]
        have.update((e.id, e) for e in fresh)
    return list(have.values())
