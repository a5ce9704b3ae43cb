"""Benchmark dedupe plus story grouping: time, peak memory and accuracy at 10k, 30k and 100k entries.

    .venv/bin/python bench/dedupe.py                  # 10000,30000,100000
    .venv/bin/python bench/dedupe.py --sizes 10000,30000
    .venv/bin/python bench/dedupe.py --events uniform   # events live along the whole stream
    .venv/bin/python bench/dedupe.py --sizes 10000 --feeds 40 --footers   # learned feed boilerplate
    .venv/bin/python bench/dedupe.py --sizes 10000 --rebuild-each-poll    # as the pipeline keeps the index

Each size runs in a child process of its own, so that its peak memory (ru_maxrss) is its own.
The corpus is synthetic but shaped like news (deterministic seed): articles of 300–800 words
in paragraphs of sentences, from a vocabulary of function words, a Zipf-distributed general
vocabulary and a per-event topic vocabulary (so that articles about one event share many
words, as real ones do).  Events are in the news for 12 hours to 4 days each, ~20 articles
apiece (see ``Events`` for the measurement behind it and ``--events uniform`` for the older
generator, whose events lived along the whole stream).  About 10% of the entries are
planted copies of an earlier article:

    exact       same title and body at another URL on another feed
    url         the same canonical URL on another feed (tracking parameters stripped by parse)
    retitled    a new headline over the same body
    summary     only the first one or two paragraphs, no full text (sometimes seen first)
    edited      an extra trailing line, a credit line and a few words changed
    agency      "CITY (Reuters) -" dateline and a copyright footer added

and some hard negatives that must stay apart: articles quoting two paragraphs of another,
a daily "Morning briefing" with the same title and a different body, and many articles about
each event.  The function words include some of the boilerplate trigger words ("read",
"share", "support", "members"), so the slower boilerplate check runs on a realistic share
of texts.  Entries are generated as a stream and arrive in polls of 1000 through one index,
as the pipeline would feed them (a summary sometimes arrives before its original, which
re-roots the group); after each poll's dedupe the stories are regrouped as the pipeline's
``group_into_stories`` does (``group_stories`` over every entry without a story or dated
within the window, then ``assign_topics``).  Entries arrive at 100,000 per 30 days, so a
full 3-day window holds ~10,000.  The signatures go to a scratch file as the store would keep them, and
then the index is rebuilt from that file, as after a restart.  Precision and recall count
pairs of entries put in one group.

``--footers`` ends every entry with a footer of its feed's own (two sentences, the same in all
of the feed's entries, a copy carrying the footer of the feed that carries it), so that every
feed has boilerplate to learn (``aggregator.dedupe``'s feed boilerplate); ``--feeds N`` (200)
sets how many feeds the entries come from: fewer feeds, more entries each.  Neither changes
the articles, so precision and recall stay comparable.  ``--rebuild-each-poll`` builds the
index from the stored signatures before every poll, as the pipeline's ``collapse_duplicates``
does (nothing learned is kept between polls); the rebuilds are timed apart from dedupe.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import resource
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aggregator.dedupe import DedupeSettings, DuplicateIndex, find_duplicates
from aggregator.stories import StorySettings, entry_time, group_stories
from aggregator.topics import assign_topics
from aggregator.types import Entry, StoredEntry

SEED = 20250815
BATCH = 1000
# Entries arrive at a steady rate: 100,000 in 30 days (~3,300 a day), so the 3-day story
# window holds ~10,000 entries once the stream is 3 days old.
SPACING = timedelta(days=30) / 100_000
RECENT = 3000  # copies are made of the last few thousand originals, as syndication is
FUNCTION_WORDS = [
    *[
        "the",
        "of",
        "and",
        "to",
        "a",
        "in",
        "that",
        "is",
        "was",
        "for",
        "on",
        "it",
        "with",
        "as",
        "he",
        "said",
        "by",
        "at",
        "from",
        "his",
        "an",
        "be",
        "has",
        "have",
    ],
    *[
        "are",
        "were",
        "but",
        "not",
        "this",
        "which",
        "they",
        "who",
        "had",
        "its",
        "their",
        "been",
        "will",
        "more",
        "after",
        "would",
        "also",
        "one",
    ],
    *[
        "than",
        "new",
        "two",
        "up",
        "about",
        "over",
        "into",
        "year",
        "there",
        "some",
        "could",
        "can",
        "other",
        "when",
        "last",
        "first",
        "people",
    ],
    *[
        "all",
        "we",
        "what",
        "her",
        "or",
        "so",
        "out",
        "no",
        "if",
        "just",
        "read",
        "share",
        "support",
        "members",
        "follow",
    ],
]
CITIES = ["LONDON", "WASHINGTON", "PARIS", "BERLIN", "TOKYO", "MOSCOW", "ANCHORAGE", "KYIV", "DELHI"]


@dataclass(frozen=True, slots=True)
class Article:
    label: int
    title: str
    paragraphs: list[str]
    date: datetime
    url: str


class Corpus:
    """A deterministic stream of news-like entries with planted copies."""

    def __init__(
        self, size: int, seed: int = SEED, events: str = "bursty", *, feeds: int = 200, footers: bool = False
    ) -> None:
        self.size = size
        self.rng = rng = np.random.default_rng(seed)
        syllables = ["ka", "lo", "mi", "ne", "ru", "ta", "shi", "vo", "den", "gar", "pel", "tor", "an", "is"]
        words: set[str] = set()
        while len(words) < 30000:
            n = int(rng.integers(2, 5))
            words.add("".join(syllables[int(i)] for i in rng.integers(0, len(syllables), n)))
        self.vocab = np.array(sorted(words))
        ranks = np.arange(1, len(self.vocab) + 1)
        self.vocab_p = 1 / ranks**1.05
        self.vocab_p /= self.vocab_p.sum()
        self.function = np.array(FUNCTION_WORDS)
        self.function_p = 1 / np.arange(1, len(self.function) + 1)
        self.function_p /= self.function_p.sum()
        # ~20 articles per event either way; see EVENTS for when they are written.
        self.events = Events(self, size, bursty=events == "bursty")
        self.feeds = [f"https://feed{i}.example/rss" for i in range(feeds)]
        # A generator of its own, so that the articles are the same with footers or without.
        self.footers = self.make_footers(np.random.default_rng(seed + 1)) if footers else {}
        self.start = datetime(2025, 1, 1, tzinfo=UTC)
        self.labels: dict[str, int] = {}  # entry id → the article it is a copy of (itself if original)
        self.kinds: Counter[str] = Counter()
        self.recent: deque[Article] = deque(maxlen=RECENT)
        self.count = 0

    def make_footers(self, rng: np.random.Generator) -> dict[str, str]:
        """Each feed's footer: two sentences of 20–30 words (not the boilerplate rules' words)."""
        footers = {}
        for feed in self.feeds:
            sentences = [
                " ".join(rng.choice(self.vocab[:5000], size=int(rng.integers(20, 31)))).capitalize() + "."
                for _ in range(2)
            ]
            footers[feed] = " ".join(sentences)
        return footers

    def topic(self) -> np.ndarray:
        return self.rng.choice(self.vocab, size=60, replace=False)

    def paragraphs(self, topic: np.ndarray, words: int) -> list[str]:
        rng = self.rng
        kinds = rng.random(words)
        out = np.where(
            kinds < 0.45,
            self.function[rng.choice(len(self.function), words, p=self.function_p)],
            np.where(
                kinds < 0.7,
                topic[rng.integers(0, len(topic), words)],
                self.vocab[rng.choice(len(self.vocab), words, p=self.vocab_p)],
            ),
        ).tolist()
        paragraphs, sentence, paragraph = [], [], []
        next_stop = int(rng.integers(8, 26))
        for w in out:
            sentence.append(w)
            if len(sentence) >= next_stop:
                paragraph.append(" ".join(sentence).capitalize() + ".")
                sentence = []
                next_stop = int(rng.integers(8, 26))
                if len(paragraph) >= 3 and rng.random() < 0.4:
                    paragraphs.append(" ".join(paragraph))
                    paragraph = []
        if sentence:
            paragraph.append(" ".join(sentence).capitalize() + ".")
        if paragraph:
            paragraphs.append(" ".join(paragraph))
        return paragraphs

    def title(self, topic: np.ndarray) -> str:
        return " ".join(self.rng.choice(topic, size=int(self.rng.integers(5, 10)))).capitalize()

    def entry(
        self,
        label: int,
        feed: str,
        article: Article,
        *,
        kind: str,
        full: bool = True,
        seen: datetime | None = None,
    ) -> StoredEntry:
        entry_id = f"e{self.count:07d}"
        self.count += 1
        entry = Entry(
            guid=article.url,
            url=article.url,
            canonical_url=article.url,
            title=article.title,
            published=article.date,
            content_html="<p>…</p>" if full else "",
            summary_html="" if full else "<p>…</p>",
            text="\n".join([*article.paragraphs, *([self.footers[feed]] if feed in self.footers else [])]),
        )
        first_seen = seen or article.date + timedelta(minutes=int(self.rng.integers(1, 90)))
        self.labels[entry_id] = label
        self.kinds[kind] += 1
        return StoredEntry(entry_id, feed, entry, first_seen, first_seen)

    def batches(self, size: int = BATCH) -> Iterator[list[StoredEntry]]:
        batch: list[StoredEntry] = []
        while self.count < self.size:
            batch.extend(self.next_entries())
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    def next_entries(self) -> list[StoredEntry]:
        rng, n = self.rng, self.count
        date = self.start + SPACING * n
        feed = self.feeds[int(rng.integers(0, len(self.feeds)))]
        roll = rng.random()
        if self.recent and roll < 0.085:
            return [self.copy(self.recent[int(rng.integers(0, len(self.recent)))], feed, roll / 0.085)]
        topic = self.events.pick(n)
        url = f"https://{feed[8:].split('/')[0]}/a/{n}"
        if roll < 0.095:
            # Same title every day, different body: must stay apart.
            body = self.paragraphs(topic, int(rng.integers(150, 300)))
            article = Article(n, "Morning briefing", body, date, url)
            return [self.entry(n, self.feeds[0], article, kind="briefing")]
        paragraphs = self.paragraphs(topic, int(rng.integers(300, 801)))
        kind = "original"
        if self.recent and roll < 0.105:
            # Quotes two paragraphs of an earlier article inside its own text: not a copy.
            quoted = self.recent[int(rng.integers(0, len(self.recent)))].paragraphs[1:3]
            paragraphs = [*paragraphs[:2], *quoted, *paragraphs[2:]]
            kind = "quoting"
        article = Article(n, self.title(topic), paragraphs, date, url)
        self.recent.append(article)
        out = []
        if roll > 0.985:
            # A summary seen an hour before the full text: the group is re-rooted later.
            take = 1 if len(paragraphs[0].split()) >= 40 else 2
            summary = Article(n, article.title, paragraphs[:take], date, f"https://early{n}.example/s")
            out.append(
                self.entry(n, feed, summary, kind="summary-first", full=False, seen=date - timedelta(hours=1))
            )
        out.append(self.entry(n, feed, article, kind=kind))
        return out

    def copy(self, original: Article, feed: str, r: float) -> StoredEntry:
        rng, n = self.rng, self.count
        date = original.date + timedelta(hours=float(rng.uniform(0, 24)))
        url = f"https://copy{n}.example/news/{n}"
        label, paragraphs = original.label, original.paragraphs
        if r < 0.2:
            return self.entry(label, feed, replace(original, date=date, url=url), kind="exact")
        if r < 0.3:
            return self.entry(label, feed, replace(original, date=date), kind="same-url")
        if r < 0.45:
            retitled = replace(original, title=self.title(self.topic()), date=date, url=url)
            return self.entry(label, feed, retitled, kind="retitled")
        if r < 0.7:
            take = 1 if len(paragraphs[0].split()) >= 40 else 2
            summary = replace(original, paragraphs=paragraphs[:take], date=date, url=url)
            return self.entry(label, feed, summary, kind="summary", full=False)
        if r < 0.88:
            edited = [p.split(" ") for p in paragraphs]
            for _ in range(3):
                para = edited[int(rng.integers(0, len(edited)))]
                para[int(rng.integers(0, len(para)))] = str(self.vocab[int(rng.integers(0, 30000))])
            lines = [" ".join(p) for p in edited]
            lines.append("Additional reporting from the regional desk is expected later today.")
            lines.append("This article was first published by The Example Ledger.")
            return self.entry(
                label, feed, replace(original, paragraphs=lines, date=date, url=url), kind="edited"
            )
        city = CITIES[int(rng.integers(0, len(CITIES)))]
        lines = [
            f"{city} (Reuters) - {paragraphs[0]}",
            *paragraphs[1:],
            "© 2025 Example Wire. All rights reserved.",
        ]
        return self.entry(label, feed, replace(original, paragraphs=lines, date=date, url=url), kind="agency")


class Events:
    """The events articles are written about, and which of them is in the news at a moment.

    ``bursty`` (the default): events are born at a steady rate (one per ~20 articles) and
    each stays in the news for a lifetime drawn log-uniformly between 12 hours and 4 days;
    an article is about one of the events live at its time.  An event then gets ~8 articles
    a day on average (~370 events in the news each day), at every stream length.  Measured
    on the real day in bench/data (UCI News Aggregator, 2014-04-16): every story had 6 to
    222 articles that day (median 57; the data set holds only articles its aggregator
    clustered, so one-off articles are missing there).  Not bursty (``--events uniform``,
    the generator before): size / 20 events, each in the news along the whole stream, so
    an event gets 6 articles a day in the 10k stream but 1.3 in the 100k one (2,260 events
    a day), and the sizes differ in the kind of news, not only in its length.
    """

    SHORTEST = timedelta(hours=12)
    LONGEST = timedelta(days=4)
    ARTICLES_PER_EVENT = 20

    def __init__(self, corpus: Corpus, size: int, *, bursty: bool) -> None:
        self.corpus = corpus
        self.bursty = bursty
        if not bursty:
            self.fixed = [corpus.topic() for _ in range(max(10, size // self.ARTICLES_PER_EVENT))]
            return
        self.live: list[tuple[float, np.ndarray]] = []  # (last article index, topic)
        # Start in the middle of the news: as many events live as the steady state holds.
        births_per_article = 1 / self.ARTICLES_PER_EVENT
        steady = int(births_per_article * self.mean_lifetime())
        for _ in range(max(1, steady)):
            self.live.append((self.lifetime() * float(corpus.rng.random()), corpus.topic()))

    def mean_lifetime(self) -> float:
        """In articles: the mean of the log-uniform lifetime."""
        low, high = self.SHORTEST / SPACING, self.LONGEST / SPACING
        return (high - low) / float(np.log(high / low))

    def lifetime(self) -> float:
        """A lifetime in articles, log-uniform between SHORTEST and LONGEST."""
        low, high = self.SHORTEST / SPACING, self.LONGEST / SPACING
        return float(np.exp(self.corpus.rng.uniform(np.log(low), np.log(high))))

    def pick(self, n: int) -> np.ndarray:
        """The topic vocabulary of an event live at article ``n``."""
        rng = self.corpus.rng
        if not self.bursty:
            return self.fixed[int(rng.integers(0, len(self.fixed)))]
        self.live = [(end, topic) for end, topic in self.live if end > n]
        if rng.random() < 1 / self.ARTICLES_PER_EVENT or not self.live:
            self.live.append((n + self.lifetime(), self.corpus.topic()))
        return self.live[int(rng.integers(0, len(self.live)))][1]


def pair_scores(groups: dict[str, str], labels: dict[str, int]) -> tuple[float, float, int, int]:
    """Pairwise precision and recall of predicted groups (entry → kept) against the labels."""

    def pairs(counter: Counter[object]) -> int:
        return sum(c * (c - 1) // 2 for c in counter.values())

    predicted = pairs(Counter(groups.values()))
    truth = pairs(Counter(labels.values()))
    both = pairs(Counter((groups[e], labels[e]) for e in labels))
    return (both / predicted if predicted else 1.0), (both / truth if truth else 1.0), predicted, truth


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


class Grouper:
    """Story grouping as ``pipeline.group_into_stories`` does it, after every poll.

    The pipeline hands ``group_stories`` every entry without a story or dated within the
    window, then ``assign_topics`` the stories, and stores each entry's story and its
    story's topics; the next poll's entries carry them in ``StoredEntry.story`` and
    ``StoredEntry.topics``.  Entries arrive nearly in date order
    (copies up to a day late), so the candidates are found from a moving start instead of
    scanning everything, as the store's date index would.  Entries behind that start can
    never be candidates again and are let go: the pipeline reads candidates from the store
    and holds no others (keeping all 100k texts here added ~0.5 GB that no run would hold).
    """

    def __init__(self) -> None:
        self.settings = StorySettings()
        self.entries: list[StoredEntry | None] = []
        self.position: dict[str, int] = {}
        self.start = 0
        self.seconds = 0.0
        self.cpu_seconds = 0.0  # process CPU time (all threads): less disturbed by other processes
        self.stories = 0
        self.regrouped: list[int] = []

    def add(self, batch: Sequence[StoredEntry], verdicts: Mapping[str, str | None], now: datetime) -> None:
        for stored in batch:
            self.position[stored.id] = len(self.entries)
            self.entries.append(stored)
        for entry_id, kept in verdicts.items():
            at = self.position[entry_id]
            current = self.entries[at]
            if current is not None and current.duplicate_of != kept:
                self.entries[at] = replace(current, duplicate_of=kept)
        since = now - self.settings.window
        margin = since - timedelta(days=2)  # no entry arrives more than a day after its date
        while self.start < len(self.entries):
            oldest = self.entries[self.start]
            if oldest is not None and entry_time(oldest) >= margin:
                break
            self.entries[self.start] = None
            self.start += 1
        started, started_cpu = time.perf_counter(), time.process_time()
        candidates = [
            e
            for e in self.entries[self.start :]
            if e is not None and (e.story is None or entry_time(e) >= since)
        ]
        grouping = group_stories(candidates, settings=self.settings, now=now)
        labelled = assign_topics(grouping.stories, candidates, compared=grouping.compared)
        self.seconds += time.perf_counter() - started
        self.cpu_seconds += time.process_time() - started_cpu
        self.stories = len(labelled)
        self.regrouped.append(len(candidates))
        # As Store.save_stories: each entry takes its story and its story's topics.
        topics = {story.id: story.topics for story in labelled}
        for entry_id, story_id in grouping.assignments.items():
            at = self.position[entry_id]
            current = self.entries[at]
            if current is not None and (current.story, current.topics) != (story_id, topics[story_id]):
                self.entries[at] = replace(current, story=story_id, topics=topics[story_id])


def run_one(
    size: int, events: str, feeds: int = 200, footers: bool = False, rebuild_each_poll: bool = False
) -> dict[str, object]:
    corpus = Corpus(size, events=events, feeds=feeds, footers=footers)
    index = DuplicateIndex(DedupeSettings())
    grouper = Grouper()
    duplicate_of: dict[str, str | None] = {}
    generating = deduping = deduping_cpu = rebuilding = 0.0
    with tempfile.TemporaryFile() as store:
        started = time.perf_counter()
        for batch in corpus.batches():
            generated, generated_cpu = time.perf_counter(), time.process_time()
            generating += generated - started
            if rebuild_each_poll and duplicate_of:
                store.seek(0)
                index = DuplicateIndex.from_stored(read_signatures(store), duplicate_of, DedupeSettings())
                rebuilt = time.perf_counter()
                rebuilding += rebuilt - generated
                generated, generated_cpu = rebuilt, time.process_time()
            result = find_duplicates(batch, index)
            started = time.perf_counter()
            deduping += started - generated
            deduping_cpu += time.process_time() - generated_cpu
            verdicts = {v.entry_id: v.duplicate_of for v in result.verdicts}
            duplicate_of.update(verdicts)
            for entry_id, blob in result.signatures.items():
                store.write(struct.pack("<8sI", entry_id.encode(), len(blob)) + blob)
            # The poll happens once the newest original of the batch has been seen.
            grouper.add(batch, verdicts, corpus.start + SPACING * corpus.count + timedelta(minutes=90))
            started = time.perf_counter()
        index_rss = rss_mb()
        groups = {e: index.duplicate_of(e) or e for e in corpus.labels}
        assert all(duplicate_of.get(e) == (None if k == e else k) for e, k in groups.items()), (
            "verdicts drifted"
        )
        precision, recall, predicted, truth = pair_scores(groups, corpus.labels)
        signature_bytes = store.tell()
        del index, groups
        gc.collect()

        store.seek(0)
        started = time.perf_counter()
        rebuilt = DuplicateIndex.from_stored(read_signatures(store), duplicate_of, DedupeSettings())
        again = find_duplicates([], rebuilt)
        rebuild = time.perf_counter() - started
        assert not again.verdicts, "a rebuilt index changed verdicts"
    return {
        "size": size,
        "events": events,
        "feeds": feeds,
        "footers": footers,
        "rebuild_each_poll": rebuild_each_poll,
        "rebuild_each_s": round(rebuilding, 2),
        "generate_s": round(generating, 1),
        "dedupe_s": round(deduping, 2),
        "group_s": round(grouper.seconds, 2),
        "total_s": round(deduping + grouper.seconds, 2),
        "dedupe_cpu_s": round(deduping_cpu, 2),
        "group_cpu_s": round(grouper.cpu_seconds, 2),
        "per_entry_us": round(deduping / size * 1e6),
        "rebuild_s": round(rebuild, 2),
        "index_rss_mb": round(index_rss),
        "peak_rss_mb": round(peak_rss_mb()),
        "signature_bytes_avg": round(signature_bytes / size),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "pairs_predicted": predicted,
        "pairs_true": truth,
        "regrouped_max": max(grouper.regrouped, default=0),
        "stories_last": grouper.stories,
        "kinds": dict(corpus.kinds),
    }


def read_signatures(store: IO[bytes]) -> Iterator[tuple[str, bytes]]:
    header = struct.Struct("<8sI")
    while chunk := store.read(header.size):
        entry_id, length = header.unpack(chunk)
        yield entry_id.decode(), store.read(length)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,30000,100000", help="comma-separated entry counts")
    parser.add_argument(
        "--events",
        choices=("bursty", "uniform"),
        default="bursty",
        help="when events are in the news: a few days each (default), or all along the stream (the old one)",
    )
    parser.add_argument("--feeds", type=int, default=200, help="how many feeds the entries come from (200)")
    parser.add_argument(
        "--footers", action="store_true", help="every feed ends its entries with a footer of its own"
    )
    parser.add_argument(
        "--rebuild-each-poll",
        action="store_true",
        help="build the index from the stored signatures before every poll, as the pipeline does",
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process: one size, JSON out
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.events, args.feeds, args.footers, args.rebuild_each_poll)))
        return
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                *("--one", str(size), "--events", args.events, "--feeds", str(args.feeds)),
                *(["--footers"] if args.footers else []),
                *(["--rebuild-each-poll"] if args.rebuild_each_poll else []),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode:
            sys.exit(f"bench/dedupe.py: size {size}: child failed:\n{child.stderr}")
        row = json.loads(child.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"{row['size']:>7} entries: dedupe {row['dedupe_s']:6.2f} s ({row['per_entry_us']} µs/entry), "
            f"grouping {row['group_s']:6.2f} s (up to {row['regrouped_max']} entries a poll, "
            f"{row['stories_last']} stories at the end), total {row['total_s']:6.2f} s "
            f"(CPU: dedupe {row['dedupe_cpu_s']:.2f} s, grouping {row['group_cpu_s']:.2f} s), "
            + (
                f"index rebuilt before each poll: {row['rebuild_each_s']:.2f} s in all, "
                if args.rebuild_each_poll
                else ""
            )
            + f"rebuild from signatures {row['rebuild_s']:.2f} s, peak RSS {row['peak_rss_mb']} MB "
            f"(with the index built {row['index_rss_mb']} MB), "
            f"signature {row['signature_bytes_avg']} B/entry, "
            f"precision {row['precision']:.4f}, recall {row['recall']:.4f} "
            f"({row['pairs_predicted']} pairs found, {row['pairs_true']} planted)",
            flush=True,
        )
        print(f"         planted: {row['kinds']}", flush=True)
    for a, b in itertools.pairwise(rows):
        ratios = ", ".join(
            f"{name} ×{b[key] / a[key]:.2f}"
            for name, key in (("dedupe", "dedupe_s"), ("grouping", "group_s"), ("total", "total_s"))
        )
        print(f"{a['size']} → {b['size']}: size ×{b['size'] / a['size']:.1f}, time: {ratios}")
    failed = [
        f"{r['size']}: {what}"
        for r in rows
        for what, bad in (
            ("precision < 0.99", r["precision"] < 0.99),
            ("recall < 0.95", r["recall"] < 0.95),
            ("peak memory > 1.5 GB", r["peak_rss_mb"] > 1536),
            ("dedupe over 30 s per 100k entries", r["dedupe_s"] > 30 * r["size"] / 100_000),
            ("dedupe and grouping over 60 s per 100k entries", r["total_s"] > 60 * r["size"] / 100_000),
        )
        if bad
    ]
    if failed:
        sys.exit("targets missed: " + "; ".join(failed))


if __name__ == "__main__":
    main()
