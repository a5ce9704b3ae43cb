"""How well the project groups real news into stories: B-cubed scores on labelled headlines.

    .venv/bin/python bench/quality.py [--seed N] [--batches N] [--feeds N] [--halves N] [--embeddings]

The data (bench/data/, see its README) is one day of the UCI News Aggregator data set:
3,907 headlines from ~1,600 sites, each labelled with the story the aggregator it came
from put it in.  The headlines go through the project as feeds would:

1. They are written as feed files, one per group of publishers (hostnames hashed into
   ``--feeds`` groups; RSS 2.0, Atom and JSON Feed in turn), and read back with
   ``aggregator.parse.parse_feed``.
2. The entries arrive in a shuffled order (the rows are bursts of one story at a time:
   in file order the order itself would give the answer away) in ``--batches`` polls.
   Each poll runs dedupe (``aggregator.dedupe``) on the new entries and then
   ``group_stories`` on everything seen so far, with the story ids of the previous poll.
3. After the last poll, the stories are scored against the gold labels: B-cubed precision,
   recall and F1 (per entry: the share of its story that is in its gold story, and the
   reverse, averaged).  The same entries grouped in one go (batch) are scored too, as well
   as how many entries changed story between polls (churn) and how many story ids lived on.

Duplicates: the data set has no duplicate labels.  As gold duplicate pairs we take pairs in
the same gold story whose titles are identical once normalized (case, punctuation, a
trailing "| Site" and "..." dropped): the same headline for the same event is a syndicated
copy.  Headline-only copies with different headlines cannot be told apart here.

``--halves N`` also estimates how the default settings generalize: the stories are split
in random halves N times, and each half is grouped and scored on its own (each half is an
unseen mix of stories; nothing is tuned on it).

``--embeddings`` runs all of the above a second time with the settings of
``stories: {method: embeddings}`` (``aggregator.embeddings``, the optional extra), after
embedding every entry once on its own to report what that costs (model load, time per
entry, peak memory), and ends with both methods' scores side by side.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aggregator import dedupe
from aggregator.parse import parse_feed
from aggregator.stories import StoryGrouping, StorySettings, bcubed, group_stories
from aggregator.topics import assign_topics
from aggregator.types import StoredEntry

DATA = Path(__file__).resolve().parent / "data" / "uci-news-2014-04-16.jsonl"
# Every poll happens after the day is over, so that each entry's own date is used.
POLL_TIME = datetime(2014, 4, 17, tzinfo=UTC)


def load_rows(path: Path = DATA) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def guid_of(row: Mapping[str, Any]) -> str:
    return f"tag:uci-news-aggregator,2014:{row['id']}"


def feed_files(rows: Sequence[Mapping[str, Any]], folder: Path, feeds: int) -> dict[str, Path]:
    """Write the rows as ``feeds`` feed files grouped by hostname; feed URL → file."""
    groups: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        bucket = int(hashlib.sha256(row["hostname"].encode()).hexdigest(), 16) % feeds
        groups[bucket].append(row)
    written = {}
    for bucket, members in sorted(groups.items()):
        kind = ("rss", "atom", "json")[bucket % 3]
        path = folder / f"publishers-{bucket:02d}.{kind if kind != 'rss' else 'xml'}"
        path.write_text(_render(kind, bucket, members), encoding="utf-8")
        written[f"https://bench.example/feeds/{path.name}"] = path
    return written


def _render(kind: str, bucket: int, rows: Sequence[Mapping[str, Any]]) -> str:
    title = f"Publishers group {bucket}"
    if kind == "json":
        items = [
            {
                "id": guid_of(r),
                "url": r["url_unescaped"],
                "title": r["title"],
                "date_published": r["published"],
                "authors": [{"name": r["publisher"]}],
            }
            for r in rows
        ]
        feed = {"version": "https://jsonfeed.org/version/1.1", "title": title, "items": items}
        return json.dumps(feed, ensure_ascii=False)
    if kind == "atom":
        entries = "".join(
            f"<entry><id>{escape(guid_of(r))}</id><title>{escape(r['title'])}</title>"
            f'<link href="{escape(r["url_unescaped"], {chr(34): "&quot;"})}"/>'
            f"<updated>{r['published']}</updated><author><name>{escape(r['publisher'])}</name></author></entry>"
            for r in rows
        )
        return (
            '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
            f"<id>urn:bench:{bucket}</id><title>{title}</title><updated>2014-04-17T00:00:00Z</updated>"
            f"{entries}</feed>"
        )
    items = "".join(
        f'<item><guid isPermaLink="false">{escape(guid_of(r))}</guid><title>{escape(r["title"])}</title>'
        f"<link>{escape(r['url_unescaped'])}</link>"
        f"<pubDate>{format_datetime(datetime.fromisoformat(r['published']))}</pubDate></item>"
        for r in rows
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{title}</title><link>https://bench.example/</link><description>bench</description>"
        f"{items}</channel></rss>"
    )


def read_entries(files: Mapping[str, Path]) -> dict[str, StoredEntry]:
    """Parse the feed files into stored entries keyed by the row id (through the guid)."""
    entries: dict[str, StoredEntry] = {}
    for url, path in files.items():
        content_type = "application/feed+json" if path.suffix == ".json" else "application/xml"
        for entry in parse_feed(path.read_bytes(), {"content-type": content_type}, url).entries:
            row_id = entry.guid.rsplit(":", 1)[-1]
            entries[row_id] = StoredEntry(
                id=row_id, feed_url=url, entry=entry, first_seen=POLL_TIME, last_updated=POLL_TIME
            )
    return entries


class Deduper:
    """``aggregator.dedupe`` across polls: one index, every verdict remembered."""

    def __init__(self) -> None:
        self.index = dedupe.DuplicateIndex()
        self.duplicate_of: dict[str, str | None] = {}

    def add(self, new: Sequence[StoredEntry]) -> None:
        # find_duplicates(entries, index) is the module's function; the index method is
        # what it calls (used while the function is not there yet).
        find = getattr(dedupe, "find_duplicates", None)
        result = find(new, self.index) if find is not None else self.index.add(new)
        for verdict in result.verdicts:
            self.duplicate_of[verdict.entry_id] = verdict.duplicate_of


_TITLE_NOISE = re.compile(r"\s*(?:\.\.\.|…)\s*$|\s+[|–-]\s+[^|–-]+$")


def normalized_title(title: str) -> str:
    return " ".join(re.findall(r"\w+", _TITLE_NOISE.sub("", title).casefold()))


def gold_duplicate_pairs(rows: Sequence[Mapping[str, Any]]) -> set[tuple[str, str]]:
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for row in rows:
        groups[(row["cluster"], normalized_title(row["title"]))].append(row["id"])
    return {(a, b) for ids in groups.values() for a in ids for b in ids if a < b}


def predicted_duplicate_pairs(duplicate_of: Mapping[str, str | None]) -> set[tuple[str, str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for entry_id, kept in duplicate_of.items():
        groups[kept or entry_id].append(entry_id)
    return {(a, b) for ids in groups.values() for a in ids for b in ids if a < b}


def score_line(name: str, scores: tuple[float, float, float], extra: str = "") -> str:
    p, r, f = scores
    return f"{name:<28} B-cubed P {p:.3f}  R {r:.3f}  F1 {f:.3f}{extra}"


def run_stream(
    order: Sequence[str], stored: Mapping[str, StoredEntry], batches: int, settings: StorySettings
) -> tuple[dict[str, str], Deduper, list[str], float]:
    """Feed the entries in ``order`` in ``batches`` polls; the final assignments and the log."""
    deduper = Deduper()
    seen: list[StoredEntry] = []
    previous: dict[str, str] = {}
    log = []
    elapsed = 0.0
    size = -(-len(order) // batches)
    for number in range(batches):
        new = [stored[i] for i in order[number * size : (number + 1) * size]]
        if not new:
            break
        started = time.perf_counter()
        deduper.add(new)
        seen.extend(new)
        current = [_with_duplicate(s, deduper.duplicate_of.get(s.id)) for s in seen]
        grouping = group_stories(current, previous, settings, now=POLL_TIME)
        elapsed += time.perf_counter() - started
        moved = sum(1 for k, v in previous.items() if grouping.assignments[k] != v)
        old_ids = set(previous.values())
        lived = len(old_ids & set(grouping.assignments.values()))
        log.append(
            f"  poll {number + 1:>2}: {len(seen):>5} entries, {len(grouping.stories):>4} stories;"
            f" {moved:>4} earlier entries changed story; {lived}/{len(old_ids)} story ids live on"
            f" ({time.perf_counter() - started:.2f} s)"
        )
        previous = dict(grouping.assignments)
    return previous, deduper, log, elapsed


def _with_duplicate(stored: StoredEntry, duplicate_of: str | None) -> StoredEntry:
    if stored.duplicate_of == duplicate_of:
        return stored
    return StoredEntry(
        id=stored.id,
        feed_url=stored.feed_url,
        entry=stored.entry,
        first_seen=stored.first_seen,
        last_updated=stored.last_updated,
        duplicate_of=duplicate_of,
    )


@dataclass
class Evaluation:
    """One grouping method's scores on the day: streamed, in one go, and on held-out halves."""

    name: str
    incremental: tuple[float, float, float]
    incremental_stories: int
    incremental_time: float
    batch: tuple[float, float, float]
    batch_stories: int
    batch_time: float
    halves: list[float] = field(default_factory=list)


def evaluate(
    name: str,
    settings: StorySettings,
    *,
    order: Sequence[str],
    stored: Mapping[str, StoredEntry],
    gold: Mapping[str, str],
    args: argparse.Namespace,
) -> tuple[Evaluation, Deduper, list[StoredEntry], StoryGrouping]:
    """Score ``settings`` streamed in polls and in one go; print the poll log and the scores."""
    final, deduper, log, elapsed = run_stream(order, stored, args.batches, settings)
    print(
        f"\n[{name}] incremental: {args.batches} polls of the shuffled stream (seed {args.seed}), dedupe on"
    )
    print("\n".join(log))
    incremental = bcubed(final, gold)
    n_stories = len(set(final.values()))
    print(score_line("stories, incremental", incremental, f"  ({n_stories} stories, {elapsed:.1f} s in all)"))

    started = time.perf_counter()
    everything = [_with_duplicate(stored[i], deduper.duplicate_of.get(i)) for i in order]
    batch = group_stories(everything, {}, settings, now=POLL_TIME)
    batch_time = time.perf_counter() - started
    batch_scores = bcubed(batch.assignments, gold)
    print(score_line("stories, batch", batch_scores, f"  ({len(batch.stories)} stories, {batch_time:.1f} s)"))
    result = Evaluation(name, incremental, n_stories, elapsed, batch_scores, len(batch.stories), batch_time)
    return result, deduper, everything, batch


def score_halves(
    settings: StorySettings, everything: Sequence[StoredEntry], gold: Mapping[str, str], splits: int
) -> list[float]:
    """B-cubed F1 of each half of ``splits`` random splits of the gold stories, grouped alone."""
    results = []
    stories = sorted(set(gold.values()))
    for split in range(splits):
        chosen = set(random.Random(1000 + split).sample(stories, len(stories) // 2))
        for half in (chosen, set(stories) - chosen):
            subset = [e for e in everything if gold[e.id] in half]
            grouping = group_stories(subset, {}, settings, now=POLL_TIME)
            results.append(bcubed(grouping.assignments, {e.id: gold[e.id] for e in subset})[2])
    return results


def print_duplicates(deduper: Deduper, rows: Sequence[Mapping[str, Any]], gold: Mapping[str, str]) -> None:
    predicted = predicted_duplicate_pairs(deduper.duplicate_of)
    truth = gold_duplicate_pairs([r for r in rows if r["id"] in deduper.duplicate_of])
    hits = len(predicted & truth)
    precision = hits / len(predicted) if predicted else float("nan")
    recall = hits / len(truth) if truth else float("nan")
    purity = sum(gold[a] == gold[b] for a, b in predicted) / len(predicted) if predicted else float("nan")
    print(
        f"\nduplicates: {len(predicted)} pairs predicted, {len(truth)} gold pairs"
        f" (same story, same normalized title): pairwise P {precision:.3f}  R {recall:.3f};"
        f" predicted pairs within one gold story: {purity:.3f}"
    )


def print_topics_and_stories(
    name: str, batch: StoryGrouping, everything: Sequence[StoredEntry], rows: Sequence[Mapping[str, Any]]
) -> None:
    started = time.perf_counter()
    with_topics = assign_topics(batch.stories, everything)
    category = {r["id"]: r["category"] for r in rows}
    members: dict[str, list[str]] = defaultdict(list)
    for story in with_topics:
        for topic in story.topics:
            members[topic].extend(story.entry_ids)
    pure = sum(Counter(category[i] for i in ids).most_common(1)[0][1] for ids in members.values())
    total = sum(len(ids) for ids in members.values())
    print(
        f"\n[{name}] topics (automatic, batch stories): {len(members)} topics over"
        f" {sum(1 for s in with_topics if s.topics)} of {len(with_topics)} stories;"
        f" purity against the data set's 4 categories {pure / total if total else float('nan'):.3f}"
        f" ({time.perf_counter() - started:.2f} s)"
    )
    for topic, ids in sorted(members.items(), key=lambda item: -len(item[1]))[:8]:
        print(f"  {len(ids):>4} entries  {topic}")
    print(f"\n[{name}] largest stories (batch): size, label")
    for story in sorted(batch.stories, key=lambda s: (-len(s.entry_ids), s.id))[:8]:
        print(f"  {len(story.entry_ids):>4}  {story.label}")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def embedding_settings(entries: Sequence[StoredEntry]) -> StorySettings | None:
    """The embeddings method's settings with every entry already embedded, and what that cost.

    Embedding first, apart from grouping, so that the cost is measured on its own (the
    grouping runs after it find every text in the cache, as a long-running process would
    after its first cycle).  None, with the reason printed, when the extra is missing.
    """
    from aggregator import embeddings  # noqa: PLC0415 -- the optional extra

    try:
        settings = embeddings.story_settings()
    except embeddings.EmbeddingsUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    encoder = embeddings.shared_encoder()
    before = peak_rss_mb()
    started = time.perf_counter()
    encoder.load()
    loaded = time.perf_counter() - started
    after_load = peak_rss_mb()
    texts = [embeddings.embedding_text(s.entry) for s in entries]
    started = time.perf_counter()
    encoder.encode(texts)
    took = time.perf_counter() - started
    print(
        f"\nembeddings: model loaded in {loaded:.1f} s (peak RSS {before:.0f} -> {after_load:.0f} MB);"
        f" {len(texts)} entries embedded in {took:.1f} s ({1000 * took / max(len(texts), 1):.1f} ms each,"
        f" {torch_threads()} threads), peak RSS {peak_rss_mb():.0f} MB"
    )
    return settings


def torch_threads() -> int:
    import torch  # noqa: PLC0415 -- the optional extra

    return int(torch.get_num_threads())


def print_comparison(results: Sequence[Evaluation]) -> None:
    print("\nside by side (B-cubed F1; precision / recall in brackets)")
    print(f"  {'':<22}" + "".join(f"{r.name:>26}" for r in results))

    def line(label: str, cells: Sequence[str]) -> None:
        print(f"  {label:<22}" + "".join(f"{cell:>26}" for cell in cells))

    line(
        "incremental",
        [f"{r.incremental[2]:.3f} ({r.incremental[0]:.3f}/{r.incremental[1]:.3f})" for r in results],
    )
    line("batch", [f"{r.batch[2]:.3f} ({r.batch[0]:.3f}/{r.batch[1]:.3f})" for r in results])
    line("stories (incr./batch)", [f"{r.incremental_stories} / {r.batch_stories}" for r in results])
    line("grouping s (incr./batch)", [f"{r.incremental_time:.1f} / {r.batch_time:.1f}" for r in results])
    if all(r.halves for r in results):
        line(
            f"halves ({len(results[0].halves)}): mean (min)",
            [f"{statistics.mean(r.halves):.3f} ({min(r.halves):.3f})" for r in results],
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1, help="shuffles the arrival order (default 1)")
    parser.add_argument("--batches", type=int, default=10, help="polls the stream is cut into (default 10)")
    parser.add_argument("--feeds", type=int, default=24, help="feed files the publishers are spread over")
    parser.add_argument("--halves", type=int, default=0, help="also score N random halves of the stories")
    parser.add_argument("--data", type=Path, default=DATA, help="labelled JSON lines (default: bench/data)")
    parser.add_argument(
        "--embeddings",
        action="store_true",
        help="also group with sentence embeddings (needs aggregator[embeddings]) and compare",
    )
    args = parser.parse_args(argv)

    rows = load_rows(args.data)
    gold = {r["id"]: r["cluster"] for r in rows}
    print(f"data: {args.data.name}: {len(rows)} headlines, {len(set(gold.values()))} gold stories")

    with tempfile.TemporaryDirectory(prefix="aggregator-quality-") as tmp:
        started = time.perf_counter()
        files = feed_files(rows, Path(tmp), args.feeds)
        stored = read_entries(files)
        took = time.perf_counter() - started
        print(f"feeds: {len(files)} files, {len(stored)} entries read with parse_feed ({took:.1f} s)")
    missing = set(gold) - set(stored)
    if missing:
        print(f"warning: {len(missing)} rows did not come back from the feeds, e.g. {sorted(missing)[:3]}")

    order = sorted(stored)
    random.Random(args.seed).shuffle(order)
    methods: list[tuple[str, StorySettings]] = [("lexical", StorySettings())]
    if args.embeddings:
        settings = embedding_settings([stored[i] for i in order])
        if settings is None:
            return 2
        methods.append(("embeddings", settings))

    results = []
    for number, (name, settings) in enumerate(methods):
        result, deduper, everything, batch = evaluate(
            name, settings, order=order, stored=stored, gold=gold, args=args
        )
        if number == 0:
            print_duplicates(deduper, rows, gold)  # dedupe does not depend on the grouping method
        print_topics_and_stories(name, batch, everything, rows)
        if args.halves:
            result.halves = score_halves(settings, everything, gold, args.halves)
            print(
                f"\n[{name}] generalization: {args.halves} random splits of the gold stories in halves,"
                " each half grouped alone"
            )
            print(
                f"  F1 over {len(result.halves)} halves: mean {statistics.mean(result.halves):.3f},"
                f" min {min(result.halves):.3f}, max {max(result.halves):.3f}"
            )
        results.append(result)
    if len(results) > 1:
        print_comparison(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
