"""Near-duplicate detection across feeds: which stored entries are copies of one article,
and which copy of each group is kept.

In: ``StoredEntry`` records (new or changed ones) and a ``DuplicateIndex`` built from the
signatures stored for the entries seen before.  Out: a ``DedupeResult`` with a ``Verdict``
for every new entry and for every stored entry whose ``duplicate_of`` changed, plus the
signature bytes of the new entries for the store to keep.  Pure: no database, no clock;
the only state is the index object the caller passes in.

How two entries are matched (``_Matcher.match``; cheapest evidence first, and symmetric,
so that the groups do not depend on the order entries arrive in):

1. ``url``: the same canonical URL (a bare site root does not count);
   ``guid``: the same globally unique guid (a URL, ``tag:``/``urn:`` or long opaque id;
   "1234" style sequence numbers are per feed and do not count).
2. ``title``: the same normalized title, dated within ``title_window``.
   Stages 1 and 2 are vetoed when both entries have a body and the bodies disagree
   (containment below ``body_agreement``): recurring titles such as "Morning briefing"
   and feeds that link every item to one landing page stay apart.  Without a body on
   either side, a title only matches across different feeds.
3. ``content``: word 4-gram shingle sets of the bodies, boilerplate stripped (see
   ``aggregator.boilerplate``).  A pair matches when the sets are near-identical
   (Jaccard ≥ ``jaccard``), or when the smaller body is almost entirely contained in the
   larger (containment ≥ ``containment``) *and* both begin the same way (their leads
   overlap ≥ ``lead_overlap``).  The second rule catches a copy trimmed to its first
   paragraphs, while an article that quotes a few paragraphs of another stays apart: the
   quoting article as a whole is not contained in the quoted one, and a quotation that
   happens to contain all of a short article does not start where the article starts.
   Each feed's own boilerplate is left out of the shingle sets compared (see "Feed
   boilerplate" below).  And content alone never joins two entries of one feed that
   have different URLs and clearly different titles: a feed that gives several of its
   posts the same text (a series of photo posts with one caption, a post whose own text
   is one line above the feed's footer) has published different posts, not copies.
``pinned``: the user's ``pin_together`` pairs always match; ``pin_apart`` pairs never do
and are never put in one group (a chain through a third entry is cut).

Finding candidates stays flat per new entry as the store grows: URLs, guids and titles
are dictionary look-ups, and content candidates come from locality-sensitive hashing over
two kinds of keys kept in sorted NumPy arrays: 32 bands of 4 values of a 128-bin
one-permutation MinHash of the shingle set (finds pairs with Jaccard above about 0.5),
and 16 "lead anchors", hashes of the 8-word spans that start in the first 16 words
(finds a summary and its original, whose whole-text Jaccard is small).  Every candidate
pair is verified exactly on the stored shingle sets: hashing decides which pairs are
compared (a near-identical pair goes unseen about once in 5,000 at Jaccard 0.7, never
above 0.9 in practice), never whether a compared pair matches.

Why 4-word shingles: with 3 words, stock phrases ("said on Monday", "according to the")
give unrelated news articles a background similarity of several per cent; with 5, each
small edit breaks five shingles.  Four keeps unrelated articles near zero while a copy
with a handful of edits keeps containment above 0.95.  Why our own MinHash rather than
``datasketch.MinHash``: its 128 hash functions per shingle cost ~0.4 ms per article
(40 s per 100k entries) and ``MinHashLSH`` keeps a Python set per bucket (~1 GB per 100k
entries); one-permutation hashing (Li, Owen & Zhang 2012) with rotation densification
(Shrivastava & Li 2014) hashes each shingle once, vectorized over a whole batch.

Feed boilerplate: text that repeats across many entries of one feed (a footer such as
"Thank you for reading via RSS …", a sign-off, "Comments") is that feed's, not the
article's; the rules of ``aggregator.boilerplate`` only know the common phrasings.  So
each feed's boilerplate is learned from the entries at hand: the shingles found in at
least ``FEED_BOILERPLATE_SHARE`` of the feed's articles, and in at least
``FEED_BOILERPLATE_MIN`` of them (so that two posts of a two-entry feed are never taken
for its boilerplate).  Entries with the same URL and title count as one article, so that
a feed that lists one article three times does not make the article its own boilerplate.
A comparison leaves out the boilerplate of both entries' feeds (from both sets, so that a
copy carried by two feeds with two footers is compared on the article alone), and an
entry left with fewer than ``min_words`` words has no body.  Learning reads the feed's
latest ``NOISE_ARTICLES`` entries and is cached until they change; when a feed's
boilerplate changes, its entries whose shingles it touches are matched again, so the
groups still do not depend on the order entries arrive in.

Groups: the entries joined by matches form a group (union over the match graph, so the
result is the same whatever the arrival order).  The copy kept is the best member by
``kept_copy_rank``: full text over summary (judged by length: a body shorter than 90%
of the group's longest is a summary, whatever element carried it), then earliest date (``entry.date``, else
first seen), then first seen, then the user's per-feed priority (higher wins), then the
id.  Every other member is an alternate whose ``duplicate_of`` is the kept id: no chains,
and when a better copy arrives later the whole group is re-rooted onto it.
"""

from __future__ import annotations

import enum
import math
import operator
import re
import struct
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt

from aggregator.boilerplate import (
    FEED_BOILERPLATE_MIN,
    FEED_BOILERPLATE_SHARE,
    TRIGGER_WORDS,
    may_have_boilerplate,
    strip_boilerplate,
)
from aggregator.types import StoredEntry

__all__ = [
    "SIGNATURE_VERSION",
    "DedupeResult",
    "DedupeSettings",
    "DuplicateIndex",
    "MatchStage",
    "Signature",
    "Verdict",
    "find_duplicates",
    "kept_copy_rank",
    "normalize_title",
    "sign_entries",
    "sign_entry",
]

U32 = npt.NDArray[np.uint32]
U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]

# The signature format.  Changing any of these changes stored signatures: bump the version
# so that old ones are reported stale (``DuplicateIndex.stale_ids``) and signed again.  A
# change of the match rules that must undo stored verdicts bumps it too: every stale entry
# is signed and matched again.  2: feed boilerplate is left out, and content alone no
# longer joins two posts of one feed (groups stored by 1 held such posts as copies).
SIGNATURE_VERSION = 2
SHINGLE_WORDS = 4
LEAD_SHINGLES = 40  # the lead kept per entry: shingles of its first 43 words
ANCHOR_GAP = 4  # an anchor joins shingles i and i+4: an 8-word span
ANCHORS = 16  # anchors start at words 0..15
BINS = 128
BAND_ROWS = 4  # 32 bands of 4: P(candidate) is 0.87 at Jaccard 0.5, 0.9998 at 0.7
BANDS = BINS // BAND_ROWS
_MAGIC = b"AGD"
_HEADER = struct.Struct("<3sBqqIIHIIII")  # magic, version, date, first_seen, words, n, lead, 4 str lens
_NO_DATE = -(2**63)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_NO_SHINGLES = np.zeros(0, np.uint32)
# A feed's boilerplate is learned from its latest this many entries: enough to see a footer,
# and a busy feed's six months of entries would cost a sort of millions of shingles a cycle.
NOISE_ARTICLES = 200
# Unions of two feeds' boilerplate kept (a few hundred shingles each), before starting over.
_NOISE_PAIRS_KEPT = 4096

# Summaries are judged by their text, not by the element that carried it: many RSS feeds
# put the whole article in <description>, so ``has_full_text`` alone would call it a summary.
_FULL_TEXT_FRACTION = 0.9


class MatchStage(enum.StrEnum):
    """Which evidence put an entry in its group (stored as ``duplicate_stage``)."""

    PINNED = "pinned"
    URL = "url"
    GUID = "guid"
    TITLE = "title"
    CONTENT = "content"


# Explanations prefer the strongest evidence: a pin, then the cheapest exact stages.
_STAGE_RANK = {
    MatchStage.PINNED: 0,
    MatchStage.URL: 1,
    MatchStage.GUID: 2,
    MatchStage.TITLE: 3,
    MatchStage.CONTENT: 4,
}


@dataclass(frozen=True, slots=True)
class DedupeSettings:
    """Thresholds and the user's choices.  Defaults are sound for news feeds.

    ``feed_priority`` maps a feed URL (as configured) to its priority when choosing the
    copy kept (higher wins; unlisted feeds are 0).  Pins are pairs of entry ids.
    """

    title_window: timedelta = timedelta(days=3)
    jaccard: float = 0.8  # near-identical bodies
    containment: float = 0.9  # the smaller body inside the larger one
    lead_overlap: float = 0.5  # ... and both begin the same way
    body_agreement: float = 0.5  # below this, bodies veto a url/guid/title match
    min_words: int = 25  # fewer words (after boilerplate) count as no body
    feed_priority: Mapping[str, int] = field(default_factory=dict, hash=False)
    pin_together: tuple[tuple[str, str], ...] = ()
    pin_apart: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for name in ("jaccard", "containment", "lead_overlap", "body_agreement"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"dedupe settings: {name}: must be in (0, 1], got {value}")
        if self.min_words < SHINGLE_WORDS:
            raise ValueError(f"dedupe settings: min_words: must be at least {SHINGLE_WORDS}")


# ------------------------------------------------------------------------- signatures


@dataclass(frozen=True, slots=True, eq=False)
class Signature:
    """What dedupe keeps about one entry: enough to match it without its text.

    ``shingles`` is the sorted set of 32-bit hashes of the body's word 4-grams (after
    boilerplate); ``lead`` the first ``LEAD_SHINGLES`` of them in text order.  Dates are
    microseconds since the epoch (UTC).  ``to_bytes`` is what the store persists (about
    4 bytes per word of body plus ~200).
    """

    feed_url: str
    guid: str
    url: str  # canonical URL, else the link, else ""
    title: str  # normalized
    date: int | None
    first_seen: int
    words: int
    lead: U32
    shingles: U32

    def to_bytes(self) -> bytes:
        strings = [s.encode() for s in (self.feed_url, self.guid, self.url, self.title)]
        header = _HEADER.pack(
            _MAGIC,
            SIGNATURE_VERSION,
            _NO_DATE if self.date is None else self.date,
            self.first_seen,
            self.words,
            len(self.shingles),
            len(self.lead),
            *(len(s) for s in strings),
        )
        return b"".join(
            [header, *strings, self.lead.astype("<u4").tobytes(), self.shingles.astype("<u4").tobytes()]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Signature:
        """The signature ``to_bytes`` wrote; ``ValueError`` for another version or a damaged blob."""
        if len(data) < _HEADER.size:
            raise ValueError(f"dedupe signature: {len(data)} bytes: too short")
        magic, version, date, first_seen, words, n, n_lead, *lengths = _HEADER.unpack_from(data)
        if magic != _MAGIC or version != SIGNATURE_VERSION:
            raise ValueError(f"dedupe signature: version {version}: this build reads {SIGNATURE_VERSION}")
        pos = _HEADER.size
        strings = []
        for length in lengths:
            strings.append(data[pos : pos + length].decode())
            pos += length
        if len(data) != pos + 4 * (n_lead + n):
            raise ValueError(f"dedupe signature: {len(data)} bytes: length does not match its header")
        lead = np.frombuffer(data, dtype="<u4", count=n_lead, offset=pos).astype(np.uint32)
        shingles = np.frombuffer(data, dtype="<u4", count=n, offset=pos + 4 * n_lead).astype(np.uint32)
        feed_url, guid, url, title = strings
        return cls(
            feed_url, guid, url, title, None if date == _NO_DATE else date, first_seen, words, lead, shingles
        )


def sign_entry(stored: StoredEntry) -> Signature:
    """The signature of one stored entry (its text is read here and nowhere later)."""
    return sign_entries([stored])[0]


def sign_entries(entries: Sequence[StoredEntry]) -> list[Signature]:
    """The signatures of many entries; hashing is vectorized over the whole batch, which
    is several times faster than one entry at a time."""
    signatures: list[Signature] = []
    for start in range(0, len(entries), _SIGN_CHUNK):
        chunk = entries[start : start + _SIGN_CHUNK]
        hashes = _word_hashes([_word_bytes(stored.entry.text) for stored in chunk])
        # Boilerplate: only texts whose trigger words (found among the hashes, for all texts
        # at once) could make up a rule, or with a "©", go through the sentence check.
        triggers = _trigger_words(hashes)
        stripped: dict[int, bytes] = {}
        for i, stored in enumerate(chunk):
            text = stored.entry.text
            present = triggers.get(i, set())
            if may_have_boilerplate(present) or ("©" in text and not text.isascii()):
                without = strip_boilerplate(text, present)
                if without is not text:
                    stripped[i] = _word_bytes(without)
        if stripped:
            for i, rehashed in zip(stripped, _word_hashes(list(stripped.values())), strict=True):
                hashes[i] = rehashed
        for stored, count, ordered in zip(chunk, map(len, hashes), _shingle_hashes(hashes), strict=True):
            entry = stored.entry
            signatures.append(
                Signature(
                    feed_url=stored.feed_url,
                    guid=entry.guid,
                    url=entry.canonical_url or entry.url or "",
                    title=normalize_title(entry.title),
                    date=None if entry.date is None else _micros(entry.date),
                    first_seen=_micros(stored.first_seen),
                    words=count,
                    lead=ordered[:LEAD_SHINGLES].copy(),
                    shingles=_unique(ordered),
                )
            )
    return signatures


_SIGN_CHUNK = 2048  # entries hashed together: ~30 MB of temporaries for news-length texts


def _unique(values: U32) -> U32:
    """Sorted distinct values (``np.unique`` hashes, which is several times slower here)."""
    ordered = np.sort(values)
    if len(ordered) < 2:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


def _micros(moment: datetime) -> int:
    if moment.tzinfo is None:  # records promise UTC; a naive one is read as UTC rather than refused
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


_WORD = re.compile(r"\w+")
# Titles: a leading label and a trailing " | Site name" say nothing about the article.
_TITLE_LABEL = re.compile(r"^\s*(?:breaking|update|updated|exclusive|watch|video)\s*[:|–—-]\s*", re.I)
_TITLE_SITE = re.compile(r"\s+\|\s+[^|]{1,40}$")


def normalize_title(title: str) -> str:
    """Case-folded words of a title, without a leading "BREAKING:" or a trailing "| Site"."""
    title = unicodedata.normalize("NFKC", title)
    title = _TITLE_SITE.sub("", _TITLE_LABEL.sub("", title))
    return " ".join(_WORD.findall(title.casefold()))


# Tokenizing works on UTF-8 bytes: a byte translation table and ``bytes.split`` are ~8x
# faster than ``re.findall(r"\w+")``, and tokenizing dominated the cost of signing.  The
# table lower-cases ASCII letters and turns ASCII punctuation into spaces; non-ASCII bytes
# (letters of other scripts) are left in their words.  Typographic punctuation is mapped to
# spaces first, so a copy with curly quotes or an en dash where the original had "'" or "-"
# gives the same words.  (Scripts written without spaces, such as Chinese, become one token
# per run of text: word shingles do not suit them, and such entries match on url, guid and
# title only.)
_ASCII_WORDS = bytes(
    (c if chr(c).isalnum() else 32) if c < 128 and c != 95 else c for c in range(256)
).translate(bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz"))
_TYPOGRAPHIC = tuple(
    ch.encode()
    for ch in "\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u2032\u2033\u00ab\u00bb"
    "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2026\u00a0\u2009\u200a\u202f\u00b7\u2022\u00a9"
)


def _word_bytes(text: str) -> bytes:
    """The text lower-cased, with ASCII punctuation and typographic marks turned into
    spaces, as UTF-8: its words are the runs of bytes between spaces."""
    if text.isascii():
        data = text.encode()
    else:
        # NFKC folds compatibility forms (ligatures, full-width letters) to plain ones.
        data = unicodedata.normalize("NFKC", text).lower().encode()
        for mark in _TYPOGRAPHIC:
            if mark in data:
                data = data.replace(mark, b" ")
    return data.translate(_ASCII_WORDS)


_K = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93], np.uint64)


def _mix(x: U64) -> U64:
    """SplitMix64's finalizer, elementwise: every output bit depends on every input bit."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


_WIDTH = 24  # bytes of a word that its hash reads
_LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [2**64 - 1], np.uint64)


def _word_hashes(texts: Sequence[bytes]) -> list[U64]:
    """Stable 64-bit hashes of the words of each ``_word_bytes`` text (not ``hash()``:
    signatures outlive the process), for all texts at once with no Python code per word.

    A word is hashed from its first 24 bytes, read as three little-endian 64-bit lanes
    straight out of the joined buffer.  (Words longer than 24 bytes that share those
    bytes hash alike, which costs nothing measurable.)
    """
    buffer = b" ".join(texts) + b" " * (_WIDTH + 8)
    data = np.frombuffer(buffer, np.uint8)
    edges = np.diff((data != 32).view(np.int8), prepend=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    lengths = np.flatnonzero(edges == -1)[: len(starts)] - starts
    # Every byte offset as the start of a (possibly unaligned) 64-bit little-endian word.
    lanes = np.ndarray((len(data) - 7,), dtype="<u8", buffer=buffer, strides=(1,))
    h = np.full(len(starts), _K[3], np.uint64)
    for k in range(_WIDTH // 8):
        lane = lanes[starts + 8 * k] & _LOW_BYTES[np.clip(lengths - 8 * k, 0, 8)]
        h = _mix(h ^ lane)
    # Text i owns the words that start inside its stretch of the buffer.
    ends = np.cumsum([len(t) + 1 for t in texts])
    return np.split(h, np.searchsorted(starts, ends[:-1]))


_TRIGGERS = sorted(TRIGGER_WORDS)
_TRIGGER_HASHES = _word_hashes([" ".join(_TRIGGERS).encode()])[0]
_TRIGGER_OF = dict(zip(_TRIGGER_HASHES.tolist(), _TRIGGERS, strict=True))


def _trigger_words(hashes: Sequence[U64]) -> dict[int, set[str]]:
    """For each text (by position) that has any, the boilerplate trigger words it contains."""
    if not hashes:
        return {}
    flat = np.concatenate(hashes)
    owner = np.repeat(np.arange(len(hashes)), list(map(len, hashes)))
    hit = np.isin(flat, _TRIGGER_HASHES)
    # One (text, word) pair per distinct trigger word of a text, not per occurrence.
    pairs = np.unique(np.stack([owner[hit].astype(np.uint64), flat[hit]]), axis=1)
    found: dict[int, set[str]] = {}
    for text, value in zip(pairs[0].tolist(), pairs[1].tolist(), strict=True):
        found.setdefault(text, set()).add(_TRIGGER_OF[value])
    return found


def _shingle_hashes(texts: Sequence[U64]) -> list[U32]:
    """For each text's word hashes, the 32-bit hashes of its word 4-grams in text order
    (one shingle for a text of one to three words, none for an empty one), all at once."""
    padded = [
        h
        if len(h) >= SHINGLE_WORDS or not len(h)
        else np.concatenate([h, np.zeros(SHINGLE_WORDS - len(h), np.uint64)])
        for h in texts
    ]
    counts = [len(h) for h in padded]
    if not any(counts):
        return [np.zeros(0, np.uint32) for _ in texts]
    h = np.concatenate(padded)
    n = len(h) - SHINGLE_WORDS + 1
    combined = h[:n] * _K[0]
    for i in range(1, SHINGLE_WORDS):
        combined = combined + h[i : i + n] * _K[i]
    shingles = (_mix(combined) >> np.uint64(32)).astype(np.uint32)
    # The shingles of text i start where its words start and stop 3 words before its end.
    out, start = [], 0
    for count in counts:
        out.append(shingles[start : start + count - SHINGLE_WORDS + 1] if count else np.zeros(0, np.uint32))
        start += count
    return out


# ------------------------------------------------------------------------- LSH keys

_EMPTY = np.uint64(1 << 32)  # above any 32-bit value: marks an empty bin
_BAND_SALT = np.arange(BANDS, dtype=np.uint64) * np.uint64(0x632BE59BD9B4E019)
_ANCHOR_SALT = np.uint64(0x8CB92BA72F3D8DD7)


def _band_keys(shingle_sets: Sequence[U32]) -> U64:
    """(n, BANDS) LSH band keys from a one-permutation MinHash of each shingle set."""
    n = len(shingle_sets)
    if n == 0:
        return np.zeros((0, BANDS), np.uint64)
    lengths = np.fromiter((len(s) for s in shingle_sets), dtype=np.int64, count=n)
    x = _mix(np.concatenate(shingle_sets).astype(np.uint64))
    slot = np.repeat(np.arange(n, dtype=np.int64) * BINS, lengths) + (x >> np.uint64(57)).astype(np.int64)
    sig = np.full(n * BINS, _EMPTY, np.uint64)
    np.minimum.at(sig, slot, x & np.uint64(0xFFFFFFFF))
    sig = _densify(sig.reshape(n, BINS))
    # A band's key hashes its 4 values and its position; equal keys mean equal bands.
    bands = sig.reshape(n, BANDS, BAND_ROWS)
    key = _BAND_SALT[np.newaxis, :].repeat(n, axis=0)
    for r in range(BAND_ROWS):
        key = _mix(key ^ bands[:, :, r])
    return key


def _densify(sig: U64) -> U64:
    """Fill each empty bin from the next non-empty one to its right (circularly), offset by
    the distance, so that short texts still have comparable values in every bin."""
    empty = sig == _EMPTY
    if not empty.any():
        return sig
    n = sig.shape[0]
    positions = np.arange(2 * BINS, dtype=np.int64)
    filled_at = np.where(np.concatenate([~empty, ~empty], axis=1), positions, 4 * BINS)
    next_filled = np.minimum.accumulate(filled_at[:, ::-1], axis=1)[:, ::-1][:, :BINS]
    rows_all_empty = next_filled[:, 0] >= 4 * BINS
    next_filled = np.where(next_filled >= 4 * BINS, 0, next_filled)
    distance = (next_filled - np.arange(BINS)).astype(np.uint64)
    donor = sig[np.arange(n)[:, None], next_filled % BINS]
    dense = (donor + distance * np.uint64(0x9E3779B1)) & np.uint64(0xFFFFFFFF)
    dense[rows_all_empty] = _EMPTY
    return np.where(empty, dense, sig)


def _anchor_keys(leads: Sequence[U32]) -> tuple[U64, npt.NDArray[np.bool_]]:
    """(n, ANCHORS) keys of the 8-word spans starting at words 0..15, and which exist."""
    n = len(leads)
    padded = np.zeros((n, ANCHORS + ANCHOR_GAP), np.uint64)
    valid = np.zeros((n, ANCHORS), np.bool_)
    for i, lead in enumerate(leads):
        m = min(len(lead), ANCHORS + ANCHOR_GAP)
        padded[i, :m] = lead[:m]
        valid[i, : max(0, m - ANCHOR_GAP)] = True
    keys = _mix(_mix(padded[:, :ANCHORS] ^ _ANCHOR_SALT) ^ padded[:, ANCHOR_GAP:])
    return keys, valid


class _Buckets:
    """LSH buckets: key → rows, as sorted arrays (12 bytes a key, versus ~300 for a dict of
    sets).  Keys live in a few sorted runs whose sizes at least double from newest to
    oldest (an LSM tree in miniature): a batch becomes a new run, and runs of similar size
    are merged, so each key is re-sorted O(log n) times and a query looks in O(log n) runs.
    """

    def __init__(self) -> None:
        self.runs: list[tuple[U64, npt.NDArray[np.int32]]] = []

    def insert(self, keys: U64, rows: npt.NDArray[np.int32]) -> None:
        if not len(keys):
            return
        order = np.argsort(keys, kind="stable")
        self.runs.append((keys[order], rows[order]))
        while len(self.runs) >= 2 and len(self.runs[-2][0]) <= 2 * len(self.runs[-1][0]):
            (k1, r1), (k2, r2) = self.runs.pop(), self.runs.pop()
            keys = np.concatenate([k2, k1])
            order = np.argsort(keys, kind="stable")
            self.runs.append((keys[order], np.concatenate([r2, r1])[order]))

    def query(self, keys: U64, rows: npt.NDArray[np.int32]) -> tuple[I64, I64]:
        """Every pair (row, other row) sharing a key, ``row`` from ``rows``."""
        # Sorted queries walk each run in order: several times faster than random probes.
        order = np.argsort(keys)
        keys, rows = keys[order], rows[order]
        found = [_gather(run_keys, run_rows, keys, rows) for run_keys, run_rows in self.runs]
        if not found:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate([a for a, _ in found]), np.concatenate([b for _, b in found])


def _gather(
    sorted_keys: U64, sorted_rows: npt.NDArray[np.int32], keys: U64, rows: npt.NDArray[np.int32]
) -> tuple[I64, I64]:
    lo = np.searchsorted(sorted_keys, keys, "left")
    counts = np.searchsorted(sorted_keys, keys, "right") - lo
    hit = counts > 0
    lo, counts, query = lo[hit], counts[hit], rows[hit]
    starts = lo - (np.cumsum(counts) - counts)
    positions = np.repeat(starts, counts) + np.arange(int(counts.sum()))
    return np.repeat(query, counts).astype(np.int64), sorted_rows[positions].astype(np.int64)


# ------------------------------------------------------------------------- verdicts


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether an entry is an alternate copy, of which kept entry, and why.

    ``duplicate_of`` is the kept copy's id (None: this entry is kept or stands alone).
    ``matched`` is the entry whose match put this one in the group (often the kept copy
    itself), ``stage`` the evidence and ``score`` its strength in [0, 1]; ``jaccard`` and
    ``containment`` are the body similarities when they were measured.
    """

    entry_id: str
    duplicate_of: str | None
    stage: MatchStage | None = None
    score: float = 0.0
    matched: str | None = None
    jaccard: float | None = None
    containment: float | None = None

    def describe(self) -> str:
        """One line for ``aggregator explain``."""
        if self.duplicate_of is None or self.stage is None:
            return "kept: not a copy of another entry"
        measured = ", ".join(
            f"{name} {value:.2f}"
            for name, value in (("containment", self.containment), ("jaccard", self.jaccard))
            if value is not None
        )
        why = {
            MatchStage.PINNED: "pinned together with",
            MatchStage.URL: "the same URL as",
            MatchStage.GUID: "the same guid as",
            MatchStage.TITLE: "the same title as",
            MatchStage.CONTENT: "a near-identical copy of",
        }[self.stage]
        line = f"{why} {self.matched} ({self.stage}{': ' + measured if measured else ''})"
        if self.matched != self.duplicate_of:
            line += f"; the copy kept is {self.duplicate_of}"
        return line


@dataclass(frozen=True, slots=True)
class DedupeResult:
    """Verdicts to store (new entries, and stored ones whose ``duplicate_of`` changed) and the
    signature bytes of the new entries."""

    verdicts: tuple[Verdict, ...]
    signatures: Mapping[str, bytes]


@dataclass(frozen=True, slots=True)
class _Edge:
    stage: MatchStage
    score: float
    jaccard: float | None = None
    containment: float | None = None

    @property
    def strength(self) -> tuple[int, float]:
        return (_STAGE_RANK[self.stage], -self.score)


def kept_copy_rank(sig: Signature, longest_body: int, priority: int, entry_id: str) -> tuple[object, ...]:
    """Sort key of a group member: the smallest is the copy kept.

    Full text over summary (a body shorter than 90% of the group's longest is a summary),
    then the earliest date (``entry.date``, else first seen), then first seen, then the
    higher feed priority, then the id so that the choice never depends on order.
    """
    summary = sig.words < _FULL_TEXT_FRACTION * longest_body
    date = sig.first_seen if sig.date is None else sig.date
    return (summary, date, sig.first_seen, -priority, entry_id)


def _is_global_guid(guid: str) -> bool:
    # A URL, tag: or urn: is unique across feeds; so, in practice, is a long opaque id
    # (a UUID).  Short ids ("1234", "post-17") are per-feed sequence numbers.
    return ":" in guid or len(guid) >= 24


def _is_article_url(url: str) -> bool:
    if not url:
        return False
    parts = urlsplit(url)
    return bool(parts.path.strip("/") or parts.query)


class _Matcher:
    """The symmetric match rule between two signatures, with the user's pins.

    ``noise`` gives what a comparison of an entry of one feed with an entry of another (or
    the same) leaves out: the boilerplate shingles of both feeds, sorted.
    """

    def __init__(self, settings: DedupeSettings, noise: Callable[[str, str], U32]) -> None:
        self.settings = settings
        self.apart = {_pair(a, b) for a, b in settings.pin_apart}
        self.together = {_pair(a, b) for a, b in settings.pin_together} - self.apart
        self.window = settings.title_window // timedelta(microseconds=1)
        self.noise = noise

    def match(self, id_a: str, a: Signature, id_b: str, b: Signature) -> _Edge | None:
        pair = _pair(id_a, id_b)
        if pair in self.apart:
            return None
        if pair in self.together:
            return _Edge(MatchStage.PINNED, 1.0)
        return self._evidence(a, b)

    def _evidence(self, a: Signature, b: Signature) -> _Edge | None:
        """The strongest evidence that two unpinned entries are one article, if any."""
        s = self.settings
        body_a, body_b = self._bodies(a, b)
        if body_a.words < s.min_words or body_b.words < s.min_words:
            stage = self._exact_stage(a, b, (body_a.words, body_b.words))
            return None if stage is None else _Edge(stage, 1.0)
        jaccard, containment = _similarity(body_a.shingles, body_b.shingles)
        if containment >= s.body_agreement:
            stage = self._exact_stage(a, b, (body_a.words, body_b.words))
            if stage is not None:
                score = containment if stage is MatchStage.TITLE else 1.0
                return _Edge(stage, score, jaccard, containment)
        if _other_post_of_one_feed(a, b):
            return None
        if jaccard >= s.jaccard:
            return _Edge(MatchStage.CONTENT, jaccard, jaccard, containment)
        trimmed = containment >= s.containment and _lead_overlap(body_a.lead, body_b.lead) >= s.lead_overlap
        return _Edge(MatchStage.CONTENT, containment, jaccard, containment) if trimmed else None

    def _bodies(self, a: Signature, b: Signature) -> tuple[_Body, _Body]:
        """The two bodies without the boilerplate of either entry's feed."""
        noise = self.noise(a.feed_url, b.feed_url)
        return _Body.of(a, noise), _Body.of(b, noise)

    def _exact_stage(self, a: Signature, b: Signature, words: tuple[int, int]) -> MatchStage | None:
        """URL, guid or title, once the bodies (if both have one) are known to agree.

        ``words``: the two bodies' lengths, feed boilerplate left out.
        """
        has_body = [count >= self.settings.min_words for count in words]
        bodies = all(has_body)
        # One link for two items of one feed, with no bodies to compare, is more likely the
        # page they all point at (a podcast's show page, changelog#v1.2) than one article.
        if a.url == b.url and _is_article_url(a.url) and (bodies or a.feed_url != b.feed_url):
            return MatchStage.URL
        if a.guid == b.guid and _is_global_guid(a.guid):
            return MatchStage.GUID
        if (
            a.title == b.title
            and _is_telling_title(a.title)
            and abs(_date(a) - _date(b)) <= self.window
            # A title alone, with no body on either side, could be a recurring one.
            and (any(has_body) or a.feed_url != b.feed_url)
        ):
            return MatchStage.TITLE
        return None


@dataclass(frozen=True, slots=True)
class _Body:
    """What of a signature's body is compared: its shingles and lead without feed boilerplate,
    and its length in words less one per shingle left out."""

    shingles: U32
    lead: U32
    words: int

    @classmethod
    def of(cls, sig: Signature, noise: U32) -> _Body:
        """``sig``'s body without the shingles in ``noise`` (sorted, distinct).

        Every comparison with a feed that has boilerplate asks this twice, so it searches
        the sorted arrays by bisection: ``np.setdiff1d`` and ``np.isin`` sort both sides
        again, which made such a comparison ~10 times as slow as the similarity itself.
        """
        if not len(noise) or not len(sig.shingles):
            return cls(sig.shingles, sig.lead, sig.words)
        if len(noise) < len(sig.shingles):  # search the smaller array's values in the larger
            kept = np.ones(len(sig.shingles), np.bool_)
            kept[_positions_in(sig.shingles, noise)] = False
        else:
            kept = ~_is_in(sig.shingles, noise)
        shingles = sig.shingles[kept]
        if len(shingles) == len(sig.shingles):
            return cls(sig.shingles, sig.lead, sig.words)
        lead = sig.lead[~_is_in(sig.lead, noise)]
        return cls(shingles, lead, max(0, sig.words - (len(sig.shingles) - len(shingles))))


def _is_in(values: U32, members: U32) -> npt.NDArray[np.bool_]:
    """Which of ``values`` are among ``members`` (sorted, not empty), by binary search."""
    at = np.searchsorted(members, values)
    np.minimum(at, len(members) - 1, out=at)
    found: npt.NDArray[np.bool_] = members[at] == values
    return found


def _positions_in(values: U32, members: U32) -> npt.NDArray[np.intp]:
    """Where in ``values`` (sorted, distinct, not empty) the ``members`` (sorted, distinct)
    are, ascending: those of them it holds."""
    at = np.searchsorted(values, members)
    np.minimum(at, len(values) - 1, out=at)
    held: npt.NDArray[np.intp] = at[values[at] == members]
    return held


def _other_post_of_one_feed(a: Signature, b: Signature) -> bool:
    """Whether two entries are different posts of one feed by their links and titles.

    Two URLs and two titles that share less than half their words: the feed published two
    posts, whatever their text (their own text may be one line, or a caption they share).
    A feed that republishes a post under a new URL keeps most of its title.
    """
    if a.feed_url != b.feed_url or not a.url or not b.url or a.url == b.url:
        return False
    words_a, words_b = _title_words(a.title), _title_words(b.title)
    if not words_a or not words_b:
        return False  # nothing to tell them apart by: the text decides
    return 2 * len(words_a & words_b) < min(len(words_a), len(words_b))


# Words too common to tell two titles apart; numbers are left out too ("Quote #17703" and
# "Quote #17715" are one kind of title, and a reposted quote is a copy).
_TITLE_FILLER = frozenset(
    "a an and are as at be by for from has have how in is it its of on or that the this to was "  # noqa: SIM905
    "what when where who why will with".split()
)


def _title_words(title: str) -> frozenset[str]:
    """The telling words of a normalized title."""
    return frozenset(w for w in title.split() if w not in _TITLE_FILLER and not w.isdigit())


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def _date(sig: Signature) -> int:
    return sig.first_seen if sig.date is None else sig.date


def _is_telling_title(title: str) -> bool:
    # "Update", "Video", "Untitled": too short to say two entries are one article.
    return title.count(" ") >= 2 or len(title) >= 20


def _similarity(a: U32, b: U32) -> tuple[float, float]:
    """Exact Jaccard and containment of the smaller set in the larger."""
    if not len(a) or not len(b):
        return 0.0, 0.0
    common = len(np.intersect1d(a, b, assume_unique=True))
    return common / (len(a) + len(b) - common), common / min(len(a), len(b))


def _frequent_shingles(sets: Sequence[U32], sides: Sequence[int], needs: Sequence[int | None]) -> list[U32]:
    """For each side ``s``, the shingles found in at least ``needs[s]`` (None: no shingle) of
    the ``sets`` (each sorted, distinct) that are on that side (``sides``, one per set: bit
    ``1 << s``), sorted.

    Sets on several sides (most of them, when the sides are one feed's rows before and after
    a batch) are read once.  Votes are counted by their low bits first: a shingle's bucket
    holds at least its own votes, so only the few shingles in buckets full enough for a side
    are sorted (sorting all was most of the cost).  Enough buckets that one holds an eighth
    of the lowest need on average.  A slice of votes at a time: arrays this size are
    recycled by the allocator, where a whole window's (hundreds of kB) cost fresh pages on
    every call, about half of the time.
    """
    lowest = min((need for need in needs if need is not None), default=None)
    if lowest is None:
        return [_NO_SHINGLES] * len(needs)
    grouped: dict[int, list[U32]] = {}
    for shingles, on in zip(sets, sides, strict=True):
        grouped.setdefault(on, []).append(shingles)
    total = sum(len(shingles) for shingles in sets)
    bits = min(16, max(10, (8 * total // lowest).bit_length()))
    low = np.uint32((1 << bits) - 1)
    slices = {on: _vote_slices(group) for on, group in grouped.items()}
    counts = {on: np.zeros(1 << bits, np.intp) for on in slices}
    for on, votes in slices.items():
        for values in votes:
            counts[on] += np.bincount((values & low).astype(np.intp), minlength=1 << bits)
    full = np.zeros(1 << bits, np.bool_)
    for bit, need in enumerate(needs):
        if need is not None:
            full |= (
                sum((counts[on] for on in counts if on >> bit & 1), start=np.zeros(1 << bits, np.intp))
                >= need
            )
    # Each group's candidates, with the number of its sets that hold each.
    held = {
        on: _tally(
            np.sort(np.concatenate([values[full[(values & low).astype(np.intp)]] for values in votes]))
        )
        for on, votes in slices.items()
    }
    found = []
    for bit, need in enumerate(needs):
        mine = [held[on] for on in held if on >> bit & 1]
        if need is None or not mine:
            found.append(_NO_SHINGLES)
            continue
        candidates, times = mine[0]
        if len(mine) > 1:
            merged = np.concatenate([c for c, _ in mine])
            order = np.argsort(merged, kind="stable")
            candidates, times = _tally(merged[order], np.concatenate([t for _, t in mine])[order])
        found.append(candidates[times >= need])
    return found


_VOTE_SLICE = 16384  # votes counted at once: 128 kB of bucket numbers, which malloc recycles


def _vote_slices(sets: Sequence[U32]) -> list[U32]:
    """``sets`` joined into arrays of about ``_VOTE_SLICE`` values (a longer set is one)."""
    slices: list[U32] = []
    start = size = 0
    for end, shingles in enumerate(sets, 1):
        size += len(shingles)
        if size >= _VOTE_SLICE or end == len(sets):
            slices.append(np.concatenate(sets[start:end]))
            start, size = end, 0
    return slices


def _tally(values: U32, weights: npt.NDArray[np.intp] | None = None) -> tuple[U32, npt.NDArray[np.intp]]:
    """The distinct values of ``values`` (sorted) and how many times each is there (or the
    sum of its ``weights``)."""
    if not len(values):
        return values, np.zeros(0, np.intp)
    starts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
    if weights is None:
        return values[starts], np.diff(np.append(starts, len(values)))
    return values[starts], np.add.reduceat(weights, starts)


def _lead_overlap(a: U32, b: U32) -> float:
    a, b = _unique(a), _unique(b)
    if not len(a) or not len(b):
        return 0.0
    return len(np.intersect1d(a, b, assume_unique=True)) / min(len(a), len(b))


# ------------------------------------------------------------------------- the index


class DuplicateIndex:
    """Every known entry's signature and group, indexed for finding candidates.

    Build it from the store with ``from_stored`` (or empty with ``DuplicateIndex(settings)``),
    then pass it to ``find_duplicates`` once per batch of new entries; it keeps itself up to
    date, so a long-running process can keep one index across cycles.
    """

    def __init__(self, settings: DedupeSettings | None = None) -> None:
        self.settings = settings or DedupeSettings()
        self._matcher = _Matcher(self.settings, self._comparison_noise)
        self._ids: list[str] = []
        self._sigs: list[Signature] = []
        self._alive: list[bool] = []
        self._row_of: dict[str, int] = {}
        self._kept: list[int] = []  # the kept row of each row's group (itself when kept)
        self._members: dict[int, list[int]] = {}  # kept row → rows, for groups of two or more
        # Rows by key as tuples, not lists: a tuple of ints is dropped from the garbage
        # collector's watch, and these are most of the index's objects (three per entry):
        # every full collection in a process that keeps the index walked them all.
        self._by_url: dict[str, tuple[int, ...]] = {}
        self._by_guid: dict[str, tuple[int, ...]] = {}
        self._by_title: dict[str, tuple[int, ...]] = {}
        # A feed's live rows with a body (one dict per feed, not per entry, in the order they
        # came; each row's first sighting and id, which choose the latest), its boilerplate
        # once learned, and two feeds' boilerplate together once a comparison needed it:
        # (the first feed's, the second's, their union), by the feeds in order.
        self._by_feed: dict[str, dict[int, tuple[int, str]]] = {}
        self._noise: dict[str, U32] = {}
        self._noise_pairs: dict[tuple[str, str], tuple[U32, U32, U32]] = {}
        self._buckets = _Buckets()
        self._dirty: set[int] = set()  # rows whose stored group must be settled again
        self._reroot: set[int] = set()  # kept rows of stored groups that have a better copy
        self.stale_ids: tuple[str, ...] = ()

    # -- building

    @classmethod
    def from_stored(
        cls,
        signatures: Iterable[tuple[str, bytes]],
        duplicate_of: Mapping[str, str | None],
        settings: DedupeSettings | None = None,
    ) -> DuplicateIndex:
        """The index of stored entries: ``(entry id, signature bytes)`` pairs and the stored
        ``duplicate_of`` of each (missing ids count as kept).

        Signatures of another format version are skipped and listed in ``stale_ids``: pass
        those entries to ``find_duplicates`` with the new ones to sign them again.  A stored
        group that no longer holds together (its kept copy is gone, or a chain) is settled
        again by the next ``find_duplicates``.
        """
        index = cls(settings)
        stale: list[str] = []
        rows: list[int] = []
        for entry_id, data in signatures:
            try:
                sig = Signature.from_bytes(data)
            except ValueError:
                stale.append(entry_id)
                continue
            rows.append(index._append(entry_id, sig))
        index.stale_ids = tuple(stale)
        index._index_content(rows, query=False)
        for row in rows:
            target = duplicate_of.get(index._ids[row])
            if target is None:
                continue
            kept = index._row_of.get(target)
            if kept is None or duplicate_of.get(target) is not None or kept == row:
                index._dirty.add(row)  # kept copy gone, or a chain: settle it again
                continue
            index._kept[row] = kept
            index._members.setdefault(kept, [kept]).append(row)
        # A feed priority set since the groups were stored can make another copy the best.
        index._reroot = {kept for kept, members in index._members.items() if index._best(members) != kept}
        return index

    def __len__(self) -> int:
        return len(self._row_of)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._row_of

    def duplicate_of(self, entry_id: str) -> str | None:
        """The kept copy of ``entry_id``'s group, or None when it is kept or alone."""
        row = self._row_of[entry_id]
        kept = self._kept[row]
        return None if kept == row else self._ids[kept]

    def groups(self) -> list[tuple[str, ...]]:
        """Every group of two or more, kept id first, then the alternates sorted."""
        return [
            (self._ids[kept], *sorted(self._ids[m] for m in members if m != kept))
            for kept, members in self._members.items()
        ]

    def signature(self, entry_id: str) -> Signature:
        return self._sigs[self._row_of[entry_id]]

    def _append(self, entry_id: str, sig: Signature) -> int:
        row = len(self._ids)
        old = self._row_of.get(entry_id)
        if old is not None:
            self._alive[old] = False
            self._leave_feed(old)
        self._ids.append(entry_id)
        self._sigs.append(sig)
        self._alive.append(True)
        self._kept.append(row)
        self._row_of[entry_id] = row
        if len(sig.shingles):  # a row without a body teaches its feed nothing
            self._by_feed.setdefault(sig.feed_url, {})[row] = (sig.first_seen, entry_id)
            self._noise.pop(sig.feed_url, None)
        if _is_article_url(sig.url):
            self._by_url[sig.url] = (*self._by_url.get(sig.url, ()), row)
        if _is_global_guid(sig.guid):
            self._by_guid[sig.guid] = (*self._by_guid.get(sig.guid, ()), row)
        if _is_telling_title(sig.title):
            self._by_title[sig.title] = (*self._by_title.get(sig.title, ()), row)
        return row

    def _index_content(
        self, rows: Sequence[int], *, insert: bool = True, query: bool = True
    ) -> tuple[I64, I64]:
        """Add the rows' LSH keys (if ``insert``); return the pairs of rows that share a key
        with them (if ``query``)."""
        floor = max(1, self.settings.min_words - SHINGLE_WORDS + 1)
        rows = [r for r in rows if len(self._sigs[r].shingles) >= floor]
        keys, key_rows = [np.zeros(0, np.uint64)], [np.zeros(0, np.int32)]
        # In slices: hashing a whole store at once would hold ~40 bytes per shingle at the peak.
        for start in range(0, len(rows), 2048):
            chunk = rows[start : start + 2048]
            bands = _band_keys([self._sigs[r].shingles for r in chunk])
            anchors, valid = _anchor_keys([self._sigs[r].lead for r in chunk])
            row_array = np.asarray(chunk, np.int32)
            keys += [bands.ravel(), anchors[valid]]
            key_rows += [np.repeat(row_array, BANDS), np.repeat(row_array, valid.sum(axis=1))]
        all_keys, all_rows = np.concatenate(keys), np.concatenate(key_rows)
        if insert:  # first, so that the rows of one batch find each other
            self._buckets.insert(all_keys, all_rows)
        if not query:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return self._buckets.query(all_keys, all_rows)

    # -- matching

    def add(self, new_entries: Iterable[StoredEntry]) -> DedupeResult:
        """Sign and match ``new_entries`` (new, or changed since signed), settle every group
        they touch, and return the verdicts that changed.  See ``find_duplicates``."""
        signatures: dict[str, bytes] = {}
        new_rows: list[int] = []
        batch = list(new_entries)
        feeds = sorted(
            {s.feed_url for s in batch}
            | {self._sigs[self._row_of[s.id]].feed_url for s in batch if s.id in self._row_of}
        )
        # Each touched feed's boilerplate before the batch, to find the entries whose
        # comparisons the batch changes: known, none (no rows yet), or learned below from
        # the rows it would be learned from now, together with the boilerplate after.
        noise_before: dict[str, U32] = {}
        unknown: dict[str, list[int]] = {}
        for feed in feeds:
            if feed in self._noise:
                noise_before[feed] = self._noise[feed]
            elif feed not in self._by_feed:
                noise_before[feed] = _NO_SHINGLES
            else:
                unknown[feed] = self._noise_rows(feed)
        for stored, sig in zip(batch, sign_entries(batch), strict=True):
            old = self._row_of.get(stored.id)
            if old is not None:
                self._retire(old)
            new_rows.append(self._append(stored.id, sig))
            signatures[stored.id] = sig.to_bytes()
        # A later row of the same id replaces an earlier one in this batch.
        new_rows = [r for r in new_rows if self._alive[r]]
        for feed, rows_before in unknown.items():
            noise_before[feed], self._noise[feed] = self._learn_noise(rows_before, self._noise_rows(feed))
        self._recheck_noise(noise_before, set(new_rows))

        # Stored rows whose group must be settled again look for matches as new ones do.
        dirty = sorted(r for r in self._dirty if self._alive[r])
        self._dirty.clear()
        groups, must_split = self._join(new_rows, dirty)
        verdicts: dict[str, Verdict] = {}
        new_set = set(new_rows)
        forced = new_set.union(dirty)  # dirty: the store may hold a verdict the index does not
        for component in groups.sets():
            rows = sorted({m for g in component for m in self._members_of(g)}, key=self._ids.__getitem__)
            full = any(g in must_split for g in component) or self._holds_apart_pair(rows)
            before = {row: self.duplicate_of(self._ids[row]) for row in rows if row not in new_set}
            for row, verdict in self._settle(rows, full):
                if row in forced or verdict.duplicate_of != before[row]:
                    verdicts[verdict.entry_id] = verdict
        return DedupeResult(tuple(verdicts[k] for k in sorted(verdicts)), signatures)

    def _join(self, new_rows: list[int], dirty: list[int]) -> tuple[_UnionFind, set[int]]:
        """Which stored groups the new and dirty rows join together (by matches and pins),
        and which groups must be split (an apart pin inside, or a dirty member)."""
        groups = _UnionFind()
        for row in (*new_rows, *dirty):
            groups.add(self._kept[row])
        for x, y in self._candidates(new_rows, dirty):  # sorted: skipping joined pairs is deterministic
            gx, gy = self._kept[x], self._kept[y]
            if groups.find(gx) == groups.find(gy):
                continue
            if self._matcher.match(self._ids[x], self._sigs[x], self._ids[y], self._sigs[y]) is not None:
                groups.union(gx, gy)
        must_split = {self._kept[r] for r in dirty}
        for pin_a, pin_b in (*self.settings.pin_together, *self.settings.pin_apart):
            ra, rb = self._row_of.get(pin_a), self._row_of.get(pin_b)
            if ra is None or rb is None:
                continue
            ka, kb = self._kept[ra], self._kept[rb]
            groups.add(ka)
            groups.add(kb)
            if _pair(pin_a, pin_b) in self._matcher.together:
                groups.union(ka, kb)
        for kept in self._reroot:
            if self._alive[kept]:
                groups.add(kept)
        self._reroot.clear()
        return groups, must_split

    def _candidates(self, new_rows: list[int], dirty: list[int]) -> list[tuple[int, int]]:
        """Pairs of live rows worth comparing: same URL, guid or title (within the window),
        or sharing an LSH key; each pair once, sorted."""
        pairs: set[tuple[int, int]] = set()
        window = self._matcher.window
        for row in (*new_rows, *dirty):
            sig = self._sigs[row]
            near = [*self._by_url.get(sig.url, ()), *self._by_guid.get(sig.guid, ())]
            near.extend(
                r
                for r in self._by_title.get(sig.title, ())
                if abs(_date(self._sigs[r]) - _date(sig)) <= window
            )
            pairs.update((min(row, r), max(row, r)) for r in near if r != row)
        a, b = self._index_content(new_rows, insert=True)
        c, d = self._index_content(dirty, insert=False)
        a, b = np.concatenate([a, c]), np.concatenate([b, d])
        keep = a != b
        lo, hi = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
        pairs.update(zip(lo.tolist(), hi.tolist(), strict=True))
        alive = self._alive
        return sorted(p for p in pairs if alive[p[0]] and alive[p[1]])

    def _feed_noise(self, feed: str) -> U32:
        """The feed's boilerplate shingles, sorted (see the module docstring), learned once
        per change of the feed's entries."""
        known = self._noise.get(feed)
        if known is None:
            known = self._noise[feed] = self._learn_noise(self._noise_rows(feed))[0]
        return known

    def _comparison_noise(self, feed_a: str, feed_b: str) -> U32:
        """What a comparison of an entry of ``feed_a`` with one of ``feed_b`` leaves out: the
        boilerplate of both (sorted).  The union of two feeds' is made once per change of
        either, not once per comparison."""
        noise_a = self._feed_noise(feed_a)
        if feed_b == feed_a:
            return noise_a
        noise_b = self._feed_noise(feed_b)
        if not len(noise_a) or not len(noise_b):
            return noise_b if len(noise_b) else noise_a
        if feed_b < feed_a:
            feed_a, feed_b, noise_a, noise_b = feed_b, feed_a, noise_b, noise_a
        known = self._noise_pairs.get((feed_a, feed_b))
        # A feed learned again has a new array; the entry holds the old one, so ``is`` is sound.
        if known is not None and known[0] is noise_a and known[1] is noise_b:
            return known[2]
        if len(self._noise_pairs) >= _NOISE_PAIRS_KEPT:
            self._noise_pairs.clear()
        union = np.union1d(noise_a, noise_b)
        self._noise_pairs[feed_a, feed_b] = (noise_a, noise_b, union)
        return union

    def _noise_rows(self, feed: str) -> list[int]:
        """The rows a feed's boilerplate is learned from: its latest ``NOISE_ARTICLES`` with
        a body (the latest first seen, then by id: what the feed says now)."""
        rows = self._by_feed.get(feed, {})
        if len(rows) <= NOISE_ARTICLES:
            return list(rows)
        return [row for row, _ in sorted(rows.items(), key=operator.itemgetter(1))[-NOISE_ARTICLES:]]

    def _learn_noise(self, *windows: Sequence[int]) -> list[U32]:
        """The boilerplate learned from each window of one feed's rows (``_noise_rows``): the
        shingles in at least ``FEED_BOILERPLATE_SHARE`` (and ``FEED_BOILERPLATE_MIN``) of
        its articles; entries with one URL and one title are one article.

        Two windows (the feed's rows before a batch and after it) share most articles, so
        they are counted together: each article once, with a bit for each window it is in.
        """
        sides: dict[tuple[int, ...], int] = {}  # an article's rows → its windows, as bits
        needs: list[int | None] = []
        for bit, rows in enumerate(windows):
            articles: dict[tuple[str, str], tuple[int, ...]] = {}
            for row in rows:
                sig = self._sigs[row]
                article = (sig.url, sig.title)
                articles[article] = (*articles.get(article, ()), row)
            if len(articles) < FEED_BOILERPLATE_MIN:
                needs.append(None)  # too few to learn from
                continue
            needs.append(max(FEED_BOILERPLATE_MIN, math.ceil(FEED_BOILERPLATE_SHARE * len(articles))))
            for members in articles.values():
                # One article in both windows is one key, whatever order each lists its rows in.
                key = members if len(members) == 1 else tuple(sorted(members))
                sides[key] = sides.get(key, 0) | 1 << bit
        if not sides:
            return [_NO_SHINGLES] * len(windows)
        sets = [
            self._sigs[rows[0]].shingles
            if len(rows) == 1
            else _unique(np.concatenate([self._sigs[r].shingles for r in rows]))
            for rows in sides
        ]
        return _frequent_shingles(sets, list(sides.values()), needs)

    def _recheck_noise(self, before: Mapping[str, U32], new_rows: set[int]) -> None:
        """Settle again the stored entries whose comparisons changed with their feed's
        boilerplate: those holding a shingle that became, or stopped being, boilerplate."""
        for feed, old in before.items():
            changed = np.setxor1d(old, self._feed_noise(feed), assume_unique=True)
            if not len(changed):
                continue
            rows = [r for r in self._by_feed.get(feed, ()) if r not in new_rows]
            # Searched together, a slice of rows at a time: a busy feed's history is long.
            for start in range(0, len(rows), 2048):
                chunk = rows[start : start + 2048]
                shingles = [self._sigs[r].shingles for r in chunk]
                found = _is_in(np.concatenate(shingles), changed)
                firsts = np.cumsum([0, *map(len, shingles[:-1])])
                touched = np.logical_or.reduceat(found, firsts)
                self._dirty.update(row for row, hit in zip(chunk, touched.tolist(), strict=True) if hit)

    def _holds_apart_pair(self, rows: list[int]) -> bool:
        ids = {self._ids[r] for r in rows}
        return any(a in ids and b in ids for a, b in self._matcher.apart)

    def _members_of(self, group: int) -> list[int]:
        return [m for m in self._members.get(group, [group]) if self._alive[m]]

    def _retire(self, row: int) -> None:
        """An entry changed: its old row leaves the index, and the rest of its group is
        taken apart and settled again (it may no longer hold together)."""
        self._alive[row] = False
        self._leave_feed(row)
        del self._row_of[self._ids[row]]
        for member in self._members.pop(self._kept[row], [row]):
            self._kept[member] = member
            if self._alive[member]:
                self._dirty.add(member)

    def _leave_feed(self, row: int) -> None:
        """A row is no longer live: its feed no longer learns from it, nor looks at it again."""
        feed = self._sigs[row].feed_url
        rows = self._by_feed.get(feed, {})
        if row in rows:
            del rows[row]
            if not rows:
                del self._by_feed[feed]
            self._noise.pop(feed, None)

    def _settle(self, rows: list[int], full: bool) -> list[tuple[int, Verdict]]:
        """Regroup ``rows`` (a closed set: no match leads out of it), choose each group's kept
        copy, record the groups in the index, and return every row's verdict.

        ``full`` compares every pair and cuts the groups along the user's apart pins; it is
        needed when a pin or a changed entry may split a stored group.  Otherwise the rows
        are known to be connected, and only the comparisons needed to explain each member
        are made (usually one per member: with the kept copy).
        """
        cache: dict[tuple[int, int], _Edge | None] = {}

        def edge(x: int, y: int) -> _Edge | None:
            key = (x, y) if x < y else (y, x)
            if key not in cache:
                cache[key] = self._matcher.match(self._ids[x], self._sigs[x], self._ids[y], self._sigs[y])
            return cache[key]

        subgroups = self._split(rows, edge) if full else [rows]
        settled: list[tuple[int, int, tuple[int, _Edge] | None]] = []
        for members in subgroups:
            kept = self._best(members)
            parents = self._explain(kept, members, edge)
            if parents is None:
                if full:
                    raise RuntimeError(f"dedupe: group of {self._ids[kept]}: a joined group is not connected")
                return self._settle(rows, full=True)  # a stored group no longer holds together
            settled.extend((m, kept, parents.get(m)) for m in members)

        for old in {self._kept[r] for r in rows}:
            self._members.pop(old, None)
        for members in subgroups:
            if len(members) > 1:
                kept = self._best(members)
                self._members[kept] = list(members)
        out = []
        for row, kept, link in settled:
            self._kept[row] = kept
            if link is None:
                out.append((row, Verdict(self._ids[row], None)))
                continue
            parent, e = link
            verdict = Verdict(
                entry_id=self._ids[row],
                duplicate_of=self._ids[kept],
                stage=e.stage,
                score=round(e.score, 4),
                matched=self._ids[parent],
                jaccard=None if e.jaccard is None else round(e.jaccard, 4),
                containment=None if e.containment is None else round(e.containment, 4),
            )
            out.append((row, verdict))
        return out

    def _best(self, members: Sequence[int]) -> int:
        longest = max(self._sigs[m].words for m in members)
        priority = self.settings.feed_priority
        return min(
            members,
            key=lambda m: kept_copy_rank(
                self._sigs[m], longest, priority.get(self._sigs[m].feed_url, 0), self._ids[m]
            ),
        )

    def _split(self, rows: list[int], edge: Callable[[int, int], _Edge | None]) -> list[list[int]]:
        """Connected groups of ``rows`` that never hold both ends of an apart pin.

        Matches are joined strongest first (pins, then url, guid, title, content by
        score, then ids), and a join that would bring an apart pair together is skipped:
        the weakest link of a chain is the one cut.
        """
        found = []
        for i, x in enumerate(rows):
            for y in rows[i + 1 :]:
                e = edge(x, y)
                if e is not None:
                    found.append((e.strength, self._ids[x], self._ids[y], x, y))
        found.sort()
        apart: dict[int, set[int]] = {}
        for a, b in self._matcher.apart:
            ra, rb = self._row_of.get(a), self._row_of.get(b)
            if ra is not None and rb is not None:
                apart.setdefault(ra, set()).add(rb)
                apart.setdefault(rb, set()).add(ra)
        sets = _UnionFind()
        members: dict[int, set[int]] = {r: {r} for r in rows}
        for r in rows:
            sets.add(r)
        for *_, x, y in found:
            rx, ry = sets.find(x), sets.find(y)
            if rx == ry:
                continue
            if any(apart.get(m, set()) & members[ry] for m in members[rx]):
                continue
            joined = members.pop(rx) | members.pop(ry)
            members[sets.union(rx, ry)] = joined
        return [sorted(group, key=self._ids.__getitem__) for group in sets.sets()]

    def _explain(
        self, kept: int, members: list[int], edge: Callable[[int, int], _Edge | None]
    ) -> dict[int, tuple[int, _Edge]] | None:
        """For each member but the kept copy, the member it matched on its shortest path to
        the kept copy (strongest match first), or None when some member is unreachable."""
        parents: dict[int, tuple[int, _Edge]] = {}
        frontier = [kept]
        waiting = [m for m in members if m != kept]
        while waiting:
            layer: dict[int, tuple[int, _Edge]] = {}
            for m in waiting:
                for p in frontier:
                    e = edge(p, m)
                    if e is not None and (m not in layer or e.strength < layer[m][1].strength):
                        layer[m] = (p, e)
            if not layer:
                return None
            parents.update(layer)
            frontier = [m for m in waiting if m in layer]
            waiting = [m for m in waiting if m not in layer]
        return parents


class _UnionFind:
    """Disjoint sets of ints (path halving; the smaller id becomes the root, for determinism)."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def add(self, x: int) -> None:
        self.parent.setdefault(x, x)

    def find(self, x: int) -> int:
        self.add(x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, x: int, y: int) -> int:
        rx, ry = self.find(x), self.find(y)
        root, child = (rx, ry) if rx <= ry else (ry, rx)
        self.parent[child] = root
        return root

    def sets(self) -> list[list[int]]:
        out: dict[int, list[int]] = {}
        for x in self.parent:
            out.setdefault(self.find(x), []).append(x)
        return list(out.values())


def find_duplicates(new_entries: Iterable[StoredEntry], index: DuplicateIndex) -> DedupeResult:
    """Match ``new_entries`` against ``index`` (and each other) and settle the groups they touch.

    ``new_entries`` are entries not yet in the index, or stored entries whose text or
    metadata changed (they replace their old signature, and their old group is re-checked;
    it may split).  The index is updated in place.  The result holds a verdict for every
    new entry and for every entry whose ``duplicate_of`` changed, including every member of
    a group re-rooted onto a better copy, and the signature bytes of the new entries.
    Running it again on the same entries changes nothing, and the final groups and kept
    copies do not depend on the order or the batches in which entries arrive.
    """
    return index.add(new_entries)
