"""A frozen snapshot of stories: what the output feeds (and the digests) are built from.

In: ``StoredEntry`` records (the dedupe and story verdicts already on them), the
``StoredStory`` records of the story stage when there are any, each feed's title, and
``now``.  Out: a ``Snapshot``: ``SnapshotStory`` records, newest first, each holding the
copy kept (``lead``) and every outlet that carried the story (``coverage``).  Pure: no
database, no clock; ``read_snapshot`` is the one helper that reads a ``Store``.

What a story is here:

- entries that share ``entries.story`` form one story (the story stage's verdict);
- an entry with no story yet follows the copy it duplicates (``duplicate_of``), and a
  kept entry with no story is a story of its own, so the output feed works before (and
  without) the story stage;
- the lead, whose title and content the story shows, is a kept copy (``duplicate_of`` is
  None): the one whose headline the story stage chose as the story's label, else the one
  carried by the most outlets, then one with full text, then the earliest, then the
  smallest id.  The same input always gives the same lead.
- links are the canonical URLs the parse stage derived (tracking parameters removed),
  else the links as given.

The id of a story in the output is ``urn:uuid:`` + a UUID5 of the story id (or, before
the story stage runs, of the lead's entry id): stable across runs and independent of where
the feed is served from (``output.base_url`` may change; an Atom id must not).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from aggregator.types import StoredEntry

# Namespace of the UUID5 story ids; fixed forever, or every reader sees every story again.
STORY_NAMESPACE = uuid.UUID("6f1c1f0e-6a55-4c0e-9a53-3c1d6c0b7a11")

# How far back ``read_snapshot`` looks first; it reads everything only when that window
# holds fewer stories than asked for (a quiet instance must not publish an empty feed).
RECENT_WINDOW = timedelta(days=14)


@dataclass(frozen=True, slots=True)
class Coverage:
    """One outlet's copy of a story: who carried it, where, under which headline."""

    entry_id: str
    feed_url: str
    outlet: str  # the feed's title, else its URL
    url: str | None
    title: str
    date: datetime
    duplicate: bool  # a near-identical copy of another entry (syndication), not its own article


@dataclass(frozen=True, slots=True)
class SnapshotStory:
    """One story as the outputs show it."""

    key: str  # the story id, or ``entry:<lead id>`` before the story stage ran
    id: str  # the public id: ``urn:uuid:…``, stable across runs
    lead: StoredEntry  # the copy whose title and content are shown
    outlet: str  # the lead's outlet
    coverage: tuple[Coverage, ...]  # every other copy, earliest first (the lead excluded)
    topics: tuple[str, ...]
    published: datetime  # the earliest date among the copies
    updated: datetime  # the last time anything shown about it changed
    latest: datetime  # the latest date among the copies: the order of the feed

    @property
    def title(self) -> str:
        return self.lead.entry.title

    @property
    def url(self) -> str | None:
        return _link(self.lead)

    @property
    def outlets(self) -> tuple[str, ...]:
        """Every outlet that carried the story, the lead's first, each once."""
        return tuple(dict.fromkeys([self.outlet, *(c.outlet for c in self.coverage)]))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The stories at one moment, newest first."""

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
    """An entry's date, but never later than when we first saw it (future dates are mistakes)."""
    date = stored.entry.date
    if date is None or date > stored.first_seen:
        return stored.first_seen
    return date


def build_snapshot(
    entries: Iterable[StoredEntry],
    feed_titles: Mapping[str, str],
    now: datetime,
    stories: Iterable[StoryRecord] = (),
) -> Snapshot:
    """Group ``entries`` into stories and freeze them, newest first (see the module docstring)."""
    by_id = {e.id: e for e in entries}
    story_of = {s.id: s for s in stories}
    groups: dict[str, list[StoredEntry]] = {}
    for stored in by_id.values():
        groups.setdefault(_group_key(stored, by_id), []).append(stored)
    built = [_story(key, members, story_of.get(key), feed_titles) for key, members in groups.items()]
    built.sort(key=lambda s: (s.latest, s.id), reverse=True)
    return Snapshot(taken=now, stories=tuple(built))


def _kept_copy(stored: StoredEntry, by_id: Mapping[str, StoredEntry]) -> StoredEntry:
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
    if stored.story is not None:
        return stored.story
    kept = _kept_copy(stored, by_id)
    return kept.story if kept.story is not None else f"entry:{kept.id}"


def _story(
    key: str, members: Sequence[StoredEntry], record: StoryRecord | None, feed_titles: Mapping[str, str]
) -> SnapshotStory:
    in_story = {m.id: m for m in members}
    carried = Counter(_kept_copy(m, in_story).id for m in members)
    candidates = [m for m in members if carried[m.id]]
    label = record.label if record is not None else None
    lead = min(
        candidates,
        key=lambda m: (
            m.entry.title != label,
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
            outlet=_outlet(m.feed_url, feed_titles),
            url=_link(m),
            title=m.entry.title,
            date=entry_time(m),
            duplicate=m.duplicate_of is not None,
        )
        for m in sorted(members, key=lambda m: (entry_time(m), m.id))
        if m.id != lead.id
    )
    dates = [entry_time(m) for m in members]
    updated = max(m.last_updated for m in members)
    if record is not None:
        updated = max(updated, record.updated)
    return SnapshotStory(
        key=key,
        id=public_id(key),
        lead=lead,
        outlet=_outlet(lead.feed_url, feed_titles),
        coverage=coverage,
        topics=topics,
        published=min(dates),
        updated=updated,
        latest=max(dates),
    )


def _link(stored: StoredEntry) -> str | None:
    # The canonical form drops tracking parameters (utm_*, fbclid) the parse stage recognised.
    return stored.entry.canonical_url or stored.entry.url


def _outlet(feed_url: str, feed_titles: Mapping[str, str]) -> str:
    return feed_titles.get(feed_url) or feed_url


class SnapshotSource(Protocol):
    """The reads ``read_snapshot`` makes (``store.Store`` has them)."""

    def entries_first_seen_since(self, since: datetime) -> list[StoredEntry]: ...
    def iter_entries(self, feed_urls: Sequence[str] | None = None) -> Iterable[StoredEntry]: ...
    def iter_stories(self) -> Iterable[StoryRecord]: ...


def read_snapshot(
    store: SnapshotSource, feed_titles: Mapping[str, str], now: datetime, *, at_least: int
) -> Snapshot:
    """The snapshot of the stored entries: recent ones, or all of them when that is not enough.

    ``at_least`` is how many stories the caller shows (``output.max_stories``).  The recent
    window is used only when it holds that many stories and every one of them is whole (no
    member, and no kept copy of a member, older than the window); otherwise every entry is
    read, so that a quiet instance never publishes a short feed or a story without its coverage.
    """
    stories = list(store.iter_stories())
    recent = store.entries_first_seen_since(now - RECENT_WINDOW)
    ids = {e.id for e in recent}
    members = {s.id: s.entry_ids for s in stories}
    whole = all(
        (e.duplicate_of is None or e.duplicate_of in ids)
        and (e.story is None or all(m in ids for m in members.get(e.story, ())))
        for e in recent
    )
    if whole:
        snapshot = build_snapshot(recent, feed_titles, now, stories)
        if len(snapshot.stories) >= at_least:
            return snapshot
    return build_snapshot(store.iter_entries(), feed_titles, now, stories)
