"""The frozen records that cross module boundaries.

Every stage takes and returns these; nothing library-specific (``httpx.Response``,
``FeedParserDict``, SQLAlchemy rows) leaves the module that produced it.  All
datetimes are timezone-aware UTC; all collections are tuples so that records stay
hashable and immutable.

What a feed gave us (``Entry``) is a different type from what we keep about it
(``StoredEntry``: its project id, when we first saw it, its duplicate and story).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta


class FeedStatus(enum.StrEnum):
    """The health of a feed as ``aggregator status`` shows it (a DESIGN.md contract)."""

    OK = "ok"
    NOT_MODIFIED = "not_modified"
    ERROR = "error"
    RETIRED = "retired"
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class Enclosure:
    url: str
    type: str | None = None
    length: int | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """One item as a feed gave it, normalized by ``parse``.

    ``content_html`` and ``summary_html`` are already sanitized with absolute links;
    ``text`` is the plain-text form (title excluded) that dedupe compares.
    """

    guid: str
    url: str | None
    canonical_url: str | None
    title: str
    authors: tuple[str, ...] = ()
    published: datetime | None = None
    updated: datetime | None = None
    content_html: str = ""
    summary_html: str = ""
    text: str = ""
    enclosures: tuple[Enclosure, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def date(self) -> datetime | None:
        """The date to sort and window by: published, else updated (RSS 1.0 often has only that)."""
        return self.published or self.updated

    @property
    def has_full_text(self) -> bool:
        """Whether the feed carried the article body, not only a summary."""
        return bool(self.content_html)


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """What ``parse_feed`` returns: the feed's own metadata and its entries."""

    title: str
    link: str | None
    format: str  # e.g. "rss20", "atom10", "rss10", "json11"
    entries: tuple[Entry, ...]
    ttl: timedelta | None = None  # RSS <ttl>
    warnings: tuple[str, ...] = ()  # e.g. "not well-formed XML (line 3): ..." for a feed still accepted
    # One per entry, in order: a digest of the entry as the feed wrote it, before cleaning
    # (``parse.source_key``).  The store keeps it, so that the next parse of the feed can
    # skip normalizing an entry the feed still writes the same way.
    source_keys: tuple[str, ...] = ()
    # Guids of the entries left out of ``entries`` because their source key was among the
    # ``known`` ones given to ``parse_feed``: stored already, exactly as they would come out.
    unchanged: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FeedState:
    """What the store remembers about polling one feed; input to ``fetch`` and ``polling``."""

    url: str  # as configured in feeds.yaml
    status: FeedStatus = FeedStatus.NEVER
    fetch_url: str | None = None  # a permanent redirect's target once confirmed, else None
    etag: str | None = None
    last_modified: str | None = None
    last_fetch: datetime | None = None
    last_unconditional_fetch: datetime | None = None
    next_check: datetime | None = None
    http_status: int | None = None
    error_count: int = 0
    last_error: str | None = None
    redirect_target: str | None = None  # a permanent redirect seen but not yet confirmed
    redirect_count: int = 0  # consecutive polls that saw the same permanent redirect
    title: str | None = None
    ttl: timedelta | None = None  # the RSS <ttl> of the last body parsed: a 304 has none of its own
    # The parser's warnings about the last body parsed (a feed accepted despite broken XML,
    # a wrong charset), joined with "; " and capped (``polling.warning_text``); None when it
    # parsed cleanly.  Kept by a 304 (the same body) and by an error, like ``ttl``.
    last_warning: str | None = None


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What one fetch of one feed produced.  Failure is data, not an exception.

    ``body`` is set only for a 200 with a body within limits; ``error`` names what
    went wrong in words a person can act on.
    """

    url: str  # the feed as configured
    requested_url: str  # what was actually requested (a confirmed redirect target, a file path)
    final_url: str  # after redirects; the base URL for parsing
    status: FeedStatus
    fetched_at: datetime
    http_status: int | None = None
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-cased names
    etag: str | None = None
    last_modified: str | None = None
    error: str | None = None
    conditional: bool = False  # validators were sent
    permanent_redirect: str | None = None  # target of a 301/308 on the first hop
    retry_after: datetime | None = None
    cache_max_age: timedelta | None = None  # from Cache-Control max-age or Expires
    elapsed: timedelta = timedelta(0)


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """An entry as the store keeps it: the project's id plus what we learned about it."""

    id: str  # the project's id, stable across runs: derived from (feed url, guid)
    feed_url: str  # the feed as configured
    entry: Entry
    first_seen: datetime
    last_updated: datetime
    duplicate_of: str | None = None
    story: str | None = None
    topics: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """One feed's result of a poll cycle, for summaries and logs."""

    url: str
    status: FeedStatus
    new_entries: int = 0
    updated_entries: int = 0
    error: str | None = None
    notice: str | None = None  # e.g. "feeds.yaml:7: moved permanently to …; update the url"
    moved_to: str | None = None  # the new address of a feed whose permanent redirect was adopted


@dataclass(frozen=True, slots=True)
class PollSummary:
    outcomes: tuple[PollOutcome, ...]
    started: datetime
    finished: datetime

    def count(self, status: FeedStatus) -> int:
        return sum(1 for o in self.outcomes if o.status is status)

    @property
    def new_entries(self) -> int:
        return sum(o.new_entries for o in self.outcomes)

    @property
    def updated_entries(self) -> int:
        return sum(o.updated_entries for o in self.outcomes)

    @property
    def failed(self) -> int:
        return self.count(FeedStatus.ERROR) + self.count(FeedStatus.RETIRED)


@dataclass(frozen=True, slots=True)
class DuplicateEvidence:
    """Why an entry is (or is not) an alternate copy: what the dedupe stage found, as stored.

    ``duplicate_of`` is the kept copy (None: the entry is kept or stands alone); ``matched``
    the entry whose match put it in the group (often the kept copy itself); ``stage`` the
    evidence (``url``, ``guid``, ``title``, ``content`` or ``pinned``) and ``score`` its
    strength; ``jaccard`` and ``containment`` the body similarities when they were measured.
    """

    entry_id: str
    duplicate_of: str | None
    stage: str | None = None
    score: float | None = None
    matched: str | None = None
    jaccard: float | None = None
    containment: float | None = None


@dataclass(frozen=True, slots=True)
class AgedEntry:
    """A stored entry neither first seen nor changed since a retention cutoff: what pruning
    may remove (``story``: its story when read, for counting the stories it would empty)."""

    id: str
    feed_url: str
    guid: str
    story: str | None = None


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What one retention run removed (or, with ``dry_run``, would remove).

    ``cutoff``: entries stored and unchanged since before it were candidates; ``held_by``
    names the newsletter whose next issue moved it earlier (None: ``max_age`` alone).
    ``removed``: ``(feed url, entries)`` per feed that lost any, in config order.
    ``kept_copies``: candidates kept because a copy of the same article is newer.
    """

    cutoff: datetime
    held_by: str | None
    removed: tuple[tuple[str, int], ...] = ()
    stories: int = 0  # stories left with no entry, removed with them
    kept_copies: int = 0
    dry_run: bool = False

    @property
    def entries(self) -> int:
        return sum(count for _, count in self.removed)
