"""Who an entry is and which version of it: its id, and the digest of what the feed said.

In: a feed URL and a guid, or a parsed ``Entry``.  Out: ``entry_id`` (16 hex digits, stable
across runs, machines and databases) and ``content_hash`` (64 hex digits; a change means the
feed updated the entry), both over the entry as the store keeps it (``without_nul``).

Kept apart from ``store`` (which re-exports both) so that the parse worker processes can
hash the entries they parse without importing SQLAlchemy: hashing a cold poll's 35,000
entries costs about a second of CPU, which the worker processes can spend in parallel
instead of the parent's writer thread, which shares one core with the event loop.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from aggregator.types import Entry

__all__ = ["content_hash", "entry_hashes", "entry_id", "without_nul"]

_TEXT_FIELDS = ("guid", "url", "canonical_url", "title", "content_html", "summary_html", "text")

# What json.dumps(payload, ensure_ascii=False, separators=(",", ":")) uses, made once.
_HASH_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def entry_id(feed_url: str, guid: str) -> str:
    """The project's id of an entry: 16 hex digits of SHA-256 over ``feed_url``, NUL, ``guid``.

    Stable across runs, machines and databases (it is what ``export`` prints as ``id``).
    The NUL separator keeps ``("a", "bc")`` and ``("ab", "c")`` apart; 64 bits make an
    accidental collision negligible at any realistic number of entries.
    """
    digest = hashlib.sha256(f"{feed_url}\0{guid}".encode())
    return digest.hexdigest()[:16]


def content_hash(entry: Entry) -> str:
    """A digest of everything a feed said about an entry; a change means the entry was updated.

    Every field of ``Entry`` takes part, so the stored row always equals the latest
    version the feed served.
    """
    payload = [
        entry.guid,
        entry.url,
        entry.canonical_url,
        entry.title,
        entry.authors,  # tuples encode as JSON arrays, the same text as lists
        _iso(entry.published),
        _iso(entry.updated),
        entry.content_html,
        entry.summary_html,
        entry.text,
        [[e.url, e.type, e.length] for e in entry.enclosures],
        entry.categories,
    ]
    return hashlib.sha256(_HASH_JSON.encode(payload).encode()).hexdigest()


def without_nul(entry: Entry) -> Entry:
    """The entry without NUL characters, which PostgreSQL text cannot hold.

    Feeds do contain them (feedparser lets them through).  Dropped on every backend,
    before the id and content hash are computed, so both backends store the same thing.
    """
    changes = {
        name: value.replace("\0", "")
        for name in _TEXT_FIELDS
        if (value := getattr(entry, name)) is not None and "\0" in value
    }
    return replace(entry, **changes) if changes else entry


def entry_hashes(entries: Sequence[Entry]) -> tuple[str, ...]:
    """``content_hash`` of each entry as the store will keep it (``without_nul``), in order.

    What a parse worker sends along with a parsed feed, for ``Store.save_poll(hashes=...)``.
    """
    return tuple(content_hash(without_nul(entry)) for entry in entries)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()
