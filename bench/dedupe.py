"""Benchmark near-duplicate detection: time, peak memory and accuracy at 10k, 30k and 100k entries.

    .venv/bin/python bench/dedupe.py                  # 10000,30000,100000
    .venv/bin/python bench/dedupe.py --sizes 10000,30000

Each size runs in a child process of its own, so that its peak memory (ru_maxrss) is its own.
The corpus is synthetic but shaped like news (deterministic seed): articles of 300–800 words
in paragraphs of sentences, from a vocabulary of function words, a Zipf-distributed general
vocabulary and a per-event topic vocabulary (so that articles about one event share many
words, as real ones do).  About 10% of the entries are planted copies of an earlier article:

    exact       same title and body at another URL on another feed
    url         the same canonical URL on another feed (tracking parameters stripped by parse)
    retitled    a new headline over the same body
    summary     only the first one or two paragraphs, no full text (sometimes seen first)
    edited      an extra trailing line, a credit line and a few words changed
    agency      "CITY (Reuters) -" dateline and a copyright footer added

and some hard negatives that must stay apart: articles quoting two paragraphs of another,
a daily "Morning briefing" with the same title and a different body, and many articles about
each event.  Entries arrive in first-seen order in polls of 1000 through one index, as
the pipeline would feed them; then the index is rebuilt from the serialized signatures, as
after a restart.  Precision and recall count pairs of entries put in one group.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aggregator.dedupe import DedupeSettings, DuplicateIndex, find_duplicates  # noqa: E402
from aggregator.types import Entry, StoredEntry  # noqa: E402

SEED = 20250815
BATCH = 1000
FUNCTION_WORDS = (
    "the of and to a in that is was for on it with as he said by at from his an be has have "
    "are were but not this which they who had its their been will more after would also one "
    "than new two up about over into year there some could can other when last first people "
    "all we what her or so out no if just"
).split()
CITIES = ["LONDON", "WASHINGTON", "PARIS", "BERLIN", "TOKYO", "MOSCOW", "ANCHORAGE", "KYIV", "DELHI"]


@dataclass(frozen=True, slots=True)
class Planted:
    entries: list[StoredEntry]
    labels: dict[str, int]  # entry id → the article it is a copy of (itself for originals)
    kinds: Counter[str]


class Corpus:
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        syllables = ["ka", "lo", "mi", "ne", "ru", "ta", "shi", "vo", "den", "gar", "pel", "tor", "an", "is"]
        words = set()
        while len(words) < 30000:
            n = int(rng.integers(2, 5))
            words.add("".join(syllables[int(i)] for i in rng.integers(0, len(syllables), n)))
        self.vocab = np.array(sorted(words))
        ranks = np.arange(1, len(self.vocab) + 1)
        self.vocab_p = 1 / ranks**1.05
        self.vocab_p /= self.vocab_p.sum()
        self.function = np.array(FUNCTION_WORDS)
        fr = np.arange(1, len(self.function) + 1)
        self.function_p = 1 / fr
        self.function_p /= self.function_p.sum()

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


def make_corpus(size: int, seed: int = SEED) -> Planted:
    rng = np.random.default_rng(seed)
    corpus = Corpus(rng)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    feeds = [f"https://feed{i}.example/rss" for i in range(200)]
    entries: list[StoredEntry] = []
    labels: dict[str, int] = {}
    kinds: Counter[str] = Counter()
    originals: list[tuple[int, str, list[str], datetime, str]] = []  # label, title, paragraphs, date, url
    topics = [corpus.topic() for _ in range(max(10, size // 20))]  # ~20 articles per event

    def add(label: int, feed: str, title: str, paragraphs: list[str], date: datetime, url: str, *,
            full: bool = True, seen: datetime | None = None, kind: str = "original") -> None:
        entry_id = f"e{len(entries):07d}"
        text = "\n".join(paragraphs)
        entry = Entry(
            guid=url, url=url, canonical_url=url, title=title, published=date,
            content_html="<p>…</p>" if full else "", summary_html="" if full else "<p>…</p>", text=text,
        )
        first_seen = seen or date + timedelta(minutes=int(rng.integers(1, 90)))
        entries.append(StoredEntry(entry_id, feed, entry, first_seen, first_seen))
        labels[entry_id] = label
        kinds[kind] += 1

    while len(entries) < size:
        n = len(entries)
        date = start + timedelta(minutes=3 * n)
        roll = rng.random()
        if originals and roll < 0.10:
            label, title, paragraphs, odate, ourl = originals[int(rng.integers(max(0, len(originals) - 3000),
                                                                               len(originals)))]
            feed = feeds[int(rng.integers(0, len(feeds)))]
            cdate = odate + timedelta(hours=float(rng.uniform(0, 24)))
            curl = f"https://copy{n}.example/news/{n}"
            r = roll / 0.10
            if r < 0.2:
                add(label, feed, title, paragraphs, cdate, curl, kind="exact")
            elif r < 0.3:
                add(label, feed, title, paragraphs, cdate, ourl, kind="url")
            elif r < 0.45:
                add(label, feed, corpus.title(corpus.topic()), paragraphs, cdate, curl, kind="retitled")
            elif r < 0.7:
                take = 1 if len(paragraphs[0].split()) >= 40 else 2
                early = rng.random() < 0.3  # the summary is seen before the full text
                seen = odate - timedelta(hours=1) if early else None
                add(label, feed, title, paragraphs[:take], odate if early else cdate, curl, full=False,
                    seen=seen, kind="summary")
            elif r < 0.88:
                edited = [p.split(" ") for p in paragraphs]
                for _ in range(3):
                    para = edited[int(rng.integers(0, len(edited)))]
                    para[int(rng.integers(0, len(para)))] = str(corpus.vocab[int(rng.integers(0, 30000))])
                lines = [" ".join(p) for p in edited]
                lines.append("Additional reporting from the regional desk is expected later today.")
                lines.append("This article was first published by The Example Ledger.")
                add(label, feed, title, lines, cdate, curl, kind="edited")
            else:
                city = CITIES[int(rng.integers(0, len(CITIES)))]
                lines = [f"{city} (Reuters) - {paragraphs[0]}", *paragraphs[1:],
                         "© 2025 Example Wire. All rights reserved."]
                add(label, feed, title, lines, cdate, curl, kind="agency")
            continue
        label = n
        feed = feeds[int(rng.integers(0, len(feeds)))]
        url = f"https://{feed[8:].split('/')[0]}/a/{n}"
        topic = topics[int(rng.integers(0, len(topics)))]
        words = int(rng.integers(300, 801))
        if originals and roll < 0.11:
            # Quotes two paragraphs of an earlier article inside its own text: not a copy.
            _, _, quoted, _, _ = originals[int(rng.integers(0, len(originals)))]
            own = corpus.paragraphs(topic, words)
            paragraphs = [*own[:2], *quoted[1:3], *own[2:]]
            kind = "quoting"
        elif roll < 0.12:
            paragraphs = corpus.paragraphs(topic, int(rng.integers(150, 300)))
            title = "Morning briefing"
            add(label, feeds[0], title, paragraphs, date, url, kind="briefing")
            originals.append((label, title, paragraphs, date, url))
            continue
        else:
            paragraphs = corpus.paragraphs(topic, words)
            kind = "original"
        title = corpus.title(topic)
        add(label, feed, title, paragraphs, date, url, kind=kind)
        originals.append((label, title, paragraphs, date, url))
    entries.sort(key=lambda e: (e.first_seen, e.id))
    return Planted(entries, labels, kinds)


def pair_scores(groups: dict[str, str], labels: dict[str, int]) -> tuple[float, float, int, int]:
    """Pairwise precision and recall of predicted groups (entry → kept) against the labels."""

    def pairs(counter: Counter[object]) -> int:
        return sum(c * (c - 1) // 2 for c in counter.values())

    predicted = pairs(Counter(groups.values()))
    truth = pairs(Counter(labels.values()))
    both = pairs(Counter((groups[e], labels[e]) for e in labels))
    return (both / predicted if predicted else 1.0), (both / truth if truth else 1.0), predicted, truth


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(size: int) -> dict[str, object]:
    t0 = time.perf_counter()
    planted = make_corpus(size)
    generated = time.perf_counter() - t0
    base_rss = rss_mb()
    index = DuplicateIndex(DedupeSettings())
    signatures: dict[str, bytes] = {}
    duplicate_of: dict[str, str | None] = {}
    t0 = time.perf_counter()
    for start in range(0, len(planted.entries), BATCH):
        result = find_duplicates(planted.entries[start : start + BATCH], index)
        signatures.update(result.signatures)
        duplicate_of.update((v.entry_id, v.duplicate_of) for v in result.verdicts)
    elapsed = time.perf_counter() - t0
    peak_rss = rss_mb()

    groups = {e.id: index.duplicate_of(e.id) or e.id for e in planted.entries}
    assert all(duplicate_of.get(e) == (None if k == e else k) for e, k in groups.items()), "verdicts drifted"
    precision, recall, predicted, truth = pair_scores(groups, planted.labels)

    t0 = time.perf_counter()
    rebuilt = DuplicateIndex.from_stored(signatures.items(), duplicate_of, DedupeSettings())
    again = find_duplicates([], rebuilt)
    rebuild = time.perf_counter() - t0
    assert not again.verdicts, "a rebuilt index changed verdicts"
    return {
        "size": size,
        "generate_s": round(generated, 1),
        "dedupe_s": round(elapsed, 2),
        "per_entry_us": round(elapsed / size * 1e6),
        "rebuild_s": round(rebuild, 2),
        "base_rss_mb": round(base_rss),
        "peak_rss_mb": round(max(peak_rss, rss_mb())),
        "signature_bytes_avg": round(sum(map(len, signatures.values())) / len(signatures)),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "pairs_predicted": predicted,
        "pairs_true": truth,
        "kinds": dict(planted.kinds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,30000,100000", help="comma-separated entry counts")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process: one size, JSON out
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one)))
        return
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        child = subprocess.run(
            [sys.executable, __file__, "--one", str(size)], capture_output=True, text=True, check=False
        )
        if child.returncode:
            sys.exit(f"bench/dedupe.py: size {size}: child failed:\n{child.stderr}")
        row = json.loads(child.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"{row['size']:>7} entries: dedupe {row['dedupe_s']:6.2f} s ({row['per_entry_us']} µs/entry), "
            f"rebuild from signatures {row['rebuild_s']:.2f} s, peak RSS {row['peak_rss_mb']} MB "
            f"(corpus alone {row['base_rss_mb']} MB), signature {row['signature_bytes_avg']} B/entry, "
            f"precision {row['precision']:.4f}, recall {row['recall']:.4f} "
            f"({row['pairs_predicted']} pairs found, {row['pairs_true']} planted)",
            flush=True,
        )
        print(f"         planted: {row['kinds']}", flush=True)
    for a, b in zip(rows, rows[1:], strict=False):
        ratio = b["dedupe_s"] / a["dedupe_s"]
        print(f"{a['size']} → {b['size']}: size ×{b['size'] / a['size']:.1f}, time ×{ratio:.2f}")
    failed = [
        f"{r['size']}: {what}"
        for r in rows
        for what, bad in (
            ("precision < 0.99", r["precision"] < 0.99),
            ("recall < 0.95", r["recall"] < 0.95),
            ("peak memory > 1.5 GB", r["peak_rss_mb"] > 1536),
            ("over 30 s per 100k entries", r["dedupe_s"] > 30 * r["size"] / 100_000),
        )
        if bad
    ]
    if failed:
        sys.exit("targets missed: " + "; ".join(failed))


if __name__ == "__main__":
    main()
