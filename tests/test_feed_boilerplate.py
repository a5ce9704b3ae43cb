"""A feed's own boilerplate (a footer, "Comments", an alert's keyword) is the feed's, not the
article's: different posts that share it are neither copies nor one story, while syndicated
copies across feeds still collapse.

End to end, real feeds from the copied corpus (tests/feeds/corpus, see its README for source
and licence) are served by the loopback feed server and run through ``aggregator run --once``
into a real SQLite database; the rest drives ``aggregator.dedupe`` and
``aggregator.stories`` directly.
"""

from __future__ import annotations

import itertools
import json
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from aggregator import boilerplate
from aggregator.cli import app
from aggregator.dedupe import NOISE_ARTICLES, DuplicateIndex, MatchStage, find_duplicates, sign_entry
from aggregator.errors import ParseError
from aggregator.parse import parse_feed
from aggregator.stories import ComparedEntries, StorySettings, comparable_entries, group_stories
from aggregator.topics import assign_topics
from aggregator.types import Entry, StoredEntry
from tests.feedserver import FeedServer

SAMPLES = Path(__file__).parent / "feeds" / "corpus" / "feedjira" / "spec" / "sample_feeds"
JSON_FEED = "application/feed+json"
ATOM = "application/atom+xml"
T0 = datetime(2025, 8, 15, 6, 0, tzinfo=UTC)


def cli(config: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["--config", str(config), *args], catch_exceptions=False)


def run_once(tmp_path: Path, urls: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any], Path]:
    """``run --once`` over ``urls``: the export, the combined JSON Feed and the config path."""
    config = tmp_path / "feeds.yaml"
    lines = [
        "feeds:",
        *(f"  - url: {url}" for url in urls),
        'database: "sqlite:///db.sqlite"',
        "newsletters: []",
    ]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = cli(config, "run", "--once")
    assert result.exit_code == 0, result.output
    exported = cli(config, "export", "--format", "jsonl")
    assert exported.exit_code == 0, exported.output
    entries = [json.loads(line) for line in exported.stdout.splitlines()]
    combined = json.loads((tmp_path / "public" / "feed.json").read_text(encoding="utf-8"))
    return entries, combined, config


def by_title(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["title"]: e for e in entries}


# ------------------------------------------------------------------- end to end, real feeds


def test_posts_sharing_only_a_feed_footer_are_not_copies(tmp_path: Path, feed_server: FeedServer) -> None:
    # Luke Dorny's JSON feed: every post ends with the same ~450-character "Thank you for
    # reading via RSS …" footer; BIMA, Bloom and Creep add one or two lines of their own.
    feed_server.add_feed(
        "/luke.json", (SAMPLES / "json_feed_with_escaped_uris.json").read_bytes(), content_type=JSON_FEED
    )
    entries, combined, config = run_once(tmp_path, [feed_server.url("/luke.json")])

    assert [e["title"] for e in entries if e["duplicate_of"]] == []
    posts = by_title(entries)
    assert len({posts[title]["story"] for title in ("BIMA", "Bloom", "Creep")}) == 3
    # Five Lego posts with one caption between them: different posts (titles, URLs, photos).
    blocks = [e for e in entries if e["title"].endswith("Block")]
    assert len(blocks) == 5
    assert all(e["duplicate_of"] is None for e in blocks)
    # One item per story in the combined feed: each of the three posts is one.
    published = {item["title"] for item in combined["items"]}
    assert {"BIMA", "Bloom", "Creep"} <= published
    explained = cli(config, "explain", posts["Bloom"]["id"])
    assert explained.exit_code == 0, explained.output
    assert "kept: not a copy of another entry" in explained.stdout
    # The footer's words name no topic ("Luke / Thank / Read" did).
    topics = {topic for e in entries for topic in e["topics"]}
    assert not any(word in topic.split(" / ") for topic in topics for word in ("Thank", "Read", "you'd"))


def test_items_whose_body_is_only_comments_are_not_one_story(tmp_path: Path, feed_server: FeedServer) -> None:
    # Hacker News: every body is just "Comments"; titles of unrelated items share one word.
    feed_server.add_feed("/hn.xml", (SAMPLES / "RSSWithComments.xml").read_bytes())
    entries, _combined, _config = run_once(tmp_path, [feed_server.url("/hn.xml")])

    items = by_title(entries)
    assert len(items) == 30
    assert (
        items["A whole website in a single JavaScript file"]["story"]
        != items["You can do a lot with an empty file"]["story"]
    )
    ask = items["Ask HN: Share your personal site"]["story"]
    assert ask not in {e["story"] for e in entries if e["title"].startswith("Show HN")}
    sizes = [sum(1 for e in entries if e["story"] == story) for story in {e["story"] for e in entries}]
    assert max(sizes) <= 2


def corpus_feeds() -> list[tuple[str, bytes, str]]:
    """Every file of the corpus that reads as a feed with entries: (name, body, content type)."""
    feeds = []
    for path in sorted((SAMPLES.parent.parent.parent).rglob("*")):
        if not path.is_file() or path.suffix not in {".xml", ".json", ".rss", ".atom", ".rdf"}:
            continue
        kind = JSON_FEED if path.suffix == ".json" else "application/xml"
        try:
            parsed = parse_feed(
                path.read_bytes(), {"content-type": kind}, f"https://corpus.example/{path.name}"
            )
        except ParseError:
            continue
        if parsed.entries:
            feeds.append((f"{len(feeds)}-{path.name}", path.read_bytes(), kind))
    return feeds


def test_unrelated_items_of_one_feed_are_not_one_story_in_the_whole_corpus(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    # In a window of ~580 entries of ~50 feeds, the words every item of a feed repeats are
    # rare, and so heavy: Hacker News's "Comments" made 11 unrelated items one story, and a
    # Google Alert for "Slack" made 18 articles from different outlets one.
    urls = []
    for name, body, kind in corpus_feeds():
        feed_server.add_feed(f"/{name}", body, content_type=kind)
        urls.append(feed_server.url(f"/{name}"))
    entries, _combined, _config = run_once(tmp_path, urls)

    def sizes(feed_name: str) -> list[int]:
        items = [e for e in entries if e["feed"].endswith(feed_name)]
        return sorted(
            (sum(1 for e in items if e["story"] == s) for s in {e["story"] for e in items}), reverse=True
        )

    assert len(sizes("RSSWithComments.xml")) >= 28  # of 30
    assert sizes("RSSWithComments.xml")[0] <= 2
    # The insider sales may stay together, and so may the market-research releases (their
    # template shares "Global … Market … Report … Industry"), but not all that names Slack.
    assert sizes("google_alerts_atom.xml")[0] <= 10
    story_of = {e["title"]: e["story"] for e in entries if e["feed"].endswith("google_alerts_atom.xml")}
    wax = story_of[
        "Slack Wax Market 2019 Global Industry Growth, Historical Analysis, Size, Trends, Emerging ..."
    ]
    assert wax != story_of["Slack (NASDAQ:WORK) CEO Sells $53170714.63 in Stock"]
    # The copies across feeds are still folded: the same blog in Atom and in RSS.
    copies = [
        e for e in entries if e["duplicate_of"] and e["feed"].endswith(("large_atom.xml", "large_rss.xml"))
    ]
    assert len(copies) == 25


# ------------------------------------------------------------------- dedupe

OWN = [
    "Happy tenth birthday to the island art museum, which opened its doors on a rainy weekend.",
    "Just out doing some nature photography in the woods behind the house this morning.",
    "A dying plant on the porch, winter is here but some green remains on the vine still.",
    "New lens test: the hydrant across the road seems to float in the morning light today.",
    "The maples turned this week and the whole street is orange and red from end to end now.",
]
FOOTER = (
    "Thank you for reading via RSS (this is JSON). If you'd like to browse the site or give me "
    "feedback I'd love to hear it via email or via Mastodon. If you'd like to support my efforts to "
    "write about design, art, and the analog design world, please consider contributing to the "
    "coffee fund on Ko-fi or on buymeacoffee."
)
OTHER_FOOTER = (
    "Republished from a small photo blog by kind arrangement with its author. The views in this "
    "post are the author's own and do not reflect those of the weekly picture roundup or its editors."
)
LONG = (
    "The island ferry will run an extra sailing on weekday evenings from next month, the transit "
    "agency said, after commuters complained that the last boat left before most offices closed. "
    "The new sailing leaves the city terminal at a quarter to eight and returns an hour later."
)


def post(
    entry_id: str,
    text: str,
    *,
    feed: str = "https://luke.example/feed.json",
    title: str | None = None,
    url: str | None = None,
    hours: float = 0,
) -> StoredEntry:
    moment = T0 + timedelta(hours=hours)
    link = url or f"https://{feed.split('/')[2]}/updates/{entry_id}"
    entry = Entry(
        guid=link, url=link, canonical_url=link, title=title or entry_id.title(), published=moment, text=text
    )
    return StoredEntry(id=entry_id, feed_url=feed, entry=entry, first_seen=moment, last_updated=moment)


def footer_feed() -> list[StoredEntry]:
    return [
        post(f"p{n}", f"{own}\n{FOOTER}", title=f"Post {word}", hours=n)
        for n, (own, word) in enumerate(
            zip(OWN, ["Museum", "Bloom", "Creep", "Hydrant", "Maple"], strict=True)
        )
    ]


def together(index: DuplicateIndex, a: str, b: str) -> bool:
    return (index.duplicate_of(a) or a) == (index.duplicate_of(b) or b)


def test_a_footer_a_feed_repeats_is_left_out_and_copies_elsewhere_still_collapse() -> None:
    copy = post(
        "copy", f"{LONG}\n{OTHER_FOOTER}", feed="https://roundup.example/rss", title="Ferry adds a sailing"
    )
    original = post("long", f"{LONG}\n{FOOTER}", title="Evening ferry", hours=-1)
    index = DuplicateIndex()
    find_duplicates([*footer_feed(), original, copy], index)

    assert index.groups() == [("long", "copy")]  # the copy, carried with another footer
    verdict = {v.entry_id: v for v in find_duplicates([], index).verdicts}
    assert verdict == {}


def test_two_posts_of_a_small_feed_sharing_a_footer_stay_apart() -> None:
    # Two entries are too few to learn a footer from; each post's own text is one line, so
    # the footer makes them near-identical.  Their links and titles differ: two posts.
    bima = post("bima", f"Happy tenth birthday, island art museum.\n{FOOTER}", title="BIMA")
    bloom = post("bloom", f"Out doing some nature photography.\n{FOOTER}", title="Bloom")
    index = DuplicateIndex()
    find_duplicates([bima, bloom], index)
    assert not together(index, "bima", "bloom")
    # The same two texts carried by two feeds are still one article: the rule is per feed.
    elsewhere = post(
        "elsewhere", bima.entry.text, feed="https://roundup.example/rss", title="Museum turns ten"
    )
    find_duplicates([elsewhere], index)
    assert together(index, "bima", "elsewhere")


def test_a_reposted_text_under_a_numbered_title_is_still_a_copy() -> None:
    # "Quote #17703" and "Quote #17715": one kind of title, the same text twice.
    quote = LONG
    index = DuplicateIndex()
    find_duplicates(
        [post("q1", quote, title="Quote #17703"), post("q2", quote, title="Quote #17715", hours=2)], index
    )
    assert together(index, "q1", "q2")


def test_an_article_a_feed_lists_three_times_is_not_its_boilerplate() -> None:
    same = "https://luke.example/updates/ferry"
    repeats = [post(f"r{n}", LONG, title="Evening ferry", url=same, hours=n) for n in range(3)]
    index = DuplicateIndex()
    find_duplicates(
        [*repeats, post("other", OWN[0] + " " + OWN[1] + " " + OWN[2], title="Island notes")], index
    )
    assert together(index, "r0", "r1")
    assert together(index, "r0", "r2")


@st.composite
def arrivals(draw: st.DrawFn) -> list[list[StoredEntry]]:
    pool = [
        *footer_feed(),
        post("long", f"{LONG}\n{FOOTER}", title="Evening ferry", hours=-1),
        post(
            "copy",
            f"{LONG}\n{OTHER_FOOTER}",
            feed="https://roundup.example/rss",
            title="Ferry adds a sailing",
        ),
    ]
    entries = draw(st.permutations(pool))
    cuts = sorted(draw(st.lists(st.integers(1, len(pool) - 1), max_size=4, unique=True)))
    return [entries[a:b] for a, b in itertools.pairwise([0, *cuts, len(pool)])]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrivals())
def test_groups_do_not_depend_on_when_the_footer_was_learned(batches: list[list[StoredEntry]]) -> None:
    # Early on the feed has too few posts to call the footer boilerplate, and its posts match
    # each other; the posts that teach it must undo those matches, whatever the order.
    index = DuplicateIndex()
    for batch in batches:
        find_duplicates(batch, index)
    assert sorted(index.groups()) == [("long", "copy")]
    entries = [e for batch in batches for e in batch]
    state = {e.id: index.duplicate_of(e.id) for e in entries}
    rebuilt = DuplicateIndex.from_stored([(e.id, sign_entry(e).to_bytes()) for e in entries], state)
    assert find_duplicates([], rebuilt).verdicts == ()


def test_a_copy_of_a_post_across_feeds_still_matches_on_content() -> None:
    first = post("first", f"{LONG}\n{FOOTER}", title="Evening ferry")
    copy = post("second", LONG, feed="https://roundup.example/rss", title="Ferry timetable changes")
    verdicts = {v.entry_id: v for v in find_duplicates([first, copy], DuplicateIndex()).verdicts}
    assert verdicts["second"].duplicate_of == "first"
    assert verdicts["second"].stage is MatchStage.CONTENT


def changing_footer_feed(count: int) -> list[StoredEntry]:
    """A feed that changes its footer halfway through ``count`` posts, and a daily photo post
    whose own text is one line: two of those match on their title only while the footer is
    not yet, or no longer, the feed's boilerplate (their bodies then agree)."""
    words = ["ferry", "island", "harbour", "council", "market", "museum", "garden", "river", "bridge"]
    posts = []
    for n in range(count):
        footer = FOOTER if n < count // 2 else OTHER_FOOTER
        if n % 10 == 3:
            own, title = f"Today: the {words[n % len(words)]} at dawn.", "Photo of the day"
        else:
            pick = random.Random(n).choices(words, k=30)
            own, title = " ".join(pick).capitalize() + ".", f"Notes on the {pick[0]} and the {pick[1]} {n}"
        posts.append(post(f"c{n:03d}", f"{own}\n{footer}", title=title, hours=n))
    return posts


def test_groups_do_not_depend_on_when_a_moving_window_taught_the_footer() -> None:
    # The boilerplate is learned from the feed's latest NOISE_ARTICLES posts: as the window
    # moves past the change of footer, the old footer stops being boilerplate and the new one
    # becomes it, and the entries holding either are matched again.  Batch by batch into one
    # index, into an index rebuilt from the stored signatures before each batch (as every
    # cycle does), or all at once: the same groups.  One post changes on the way.
    entries = changing_footer_feed(NOISE_ARTICLES + 140)
    changed = post(
        "c007", "A corrected caption for the harbour photograph.\n" + FOOTER, title="Photo of the day"
    )
    batches = [entries[start : start + 60] for start in range(0, len(entries), 60)]
    batches[3].append(changed)

    kept = DuplicateIndex()
    for batch in batches:
        find_duplicates(batch, kept)
    stored: dict[str, bytes] = {}
    state: dict[str, str | None] = {}
    for batch in batches:
        fresh = {e.id for e in batch}
        rebuilt = DuplicateIndex.from_stored(
            [(i, b) for i, b in stored.items() if i not in fresh],
            {i: d for i, d in state.items() if i not in fresh},
        )
        result = find_duplicates(batch, rebuilt)
        stored |= result.signatures
        state |= {v.entry_id: v.duplicate_of for v in result.verdicts}
    at_once = DuplicateIndex()
    find_duplicates([*[e for e in entries if e.id != "c007"], changed], at_once)

    groups = sorted(at_once.groups())
    assert groups  # old photo posts match once their footer is no longer boilerplate
    assert sorted(kept.groups()) == groups
    assert {i: kept.duplicate_of(i) for i in state} == state
    assert {i: at_once.duplicate_of(i) for i in state} == state


def test_a_cycle_learns_each_feeds_boilerplate_once() -> None:
    # Each cycle builds the index from the stored signatures, so nothing is learned yet: the
    # boilerplate before the batch (to find the entries it changes) and after it are learned
    # in one count per feed, not one each (about 2 ms apiece for a feed of 250 posts).
    class Counting(DuplicateIndex):
        learned = 0

        def _learn_noise(self, *args: Any) -> Any:
            Counting.learned += 1
            return super()._learn_noise(*args)

    entries = changing_footer_feed(60)
    other = [
        post(f"o{n}", f"{LONG} {n}\n{OTHER_FOOTER}", feed="https://roundup.example/rss") for n in range(5)
    ]
    stored = [(e.id, sign_entry(e).to_bytes()) for e in [*entries[:50], *other[:4]]]
    index = Counting.from_stored(stored, {})
    find_duplicates([*entries[50:], other[4]], index)
    assert Counting.learned == 2  # two feeds


# ------------------------------------------------------------------- stories


def test_a_grouping_holds_its_entries_and_nothing_else_does() -> None:
    # The entries as compared (their feed's footer left out) go from the grouping to its
    # topics with the grouping itself: no module-wide copy keeps a cycle's window alive for
    # the life of the process, or is shared by two groupings running at once.
    entries = footer_feed()
    held = [sys.getrefcount(e) for e in entries]
    grouping = group_stories(entries, {}, now=T0 + timedelta(hours=6))
    assign_topics(grouping.stories, entries)
    del grouping
    assert [sys.getrefcount(e) for e in entries] == held


def test_topics_read_the_entries_as_grouped() -> None:
    entries = [*footer_feed(), *changing_footer_feed(12)]
    grouping = group_stories(entries, {}, now=T0 + timedelta(hours=12))
    assert grouping.compared.reuse(entries, 60) == comparable_entries(entries)
    with_compared = assign_topics(grouping.stories, entries, compared=grouping.compared)
    assert with_compared == assign_topics(grouping.stories, entries)


def test_entries_as_compared_are_reused_only_for_the_very_records_grouped() -> None:
    entries = footer_feed()
    compared = ComparedEntries.of(entries)
    assert compared.reuse(entries, 60) == comparable_entries(entries)
    assert [e.text for e in compared.compared] == OWN
    copies = [StoredEntry(e.id, e.feed_url, e.entry, e.first_seen, e.last_updated) for e in entries]
    assert copies == entries
    assert compared.reuse(copies, 60) is None  # equal records may have come from elsewhere
    assert compared.reuse(entries[::-1], 60) is None
    assert compared.reuse(entries[:4], 60) is None
    assert compared.reuse(entries, 40) is None  # another lead learns other terms


def test_comparable_entries_drop_a_learned_footer_and_leave_small_feeds_alone() -> None:
    entries = footer_feed()
    compared = comparable_entries(entries)
    assert [e.text for e in compared] == OWN
    small = entries[:2]
    assert [e.text for e in comparable_entries(small)] == [e.entry.text for e in small]
    assert boilerplate.FEED_BOILERPLATE_MIN == 3


def test_an_alert_keyword_in_every_entry_of_a_feed_is_left_out() -> None:
    titles = [f"Acme {word} report number {n}" for n, word in enumerate("abcdefghijkl")]
    entries = [post(f"a{n}", "", feed="https://alerts.example/acme", title=t) for n, t in enumerate(titles)]
    compared = comparable_entries(entries)
    assert all("Acme" not in e.title for e in compared)
    assert all("report" not in e.title for e in compared)  # also in every one of them


def test_one_shared_title_word_makes_no_story() -> None:
    now = T0 + timedelta(hours=6)
    entries = [
        post("js", "", feed="https://hn.example/rss", title="A whole website in a single JavaScript file"),
        post("empty", "", feed="https://hn.example/rss", title="You can do a lot with an empty file"),
    ]
    grouping = group_stories(entries, {}, now=now)
    assert grouping.assignments["js"] != grouping.assignments["empty"]
    # With the check off (as before), the one word was enough.
    loose = group_stories(entries, {}, StorySettings(single_word_support=0), now=now)
    assert loose.assignments["js"] == loose.assignments["empty"]


def test_a_headline_sharing_one_word_with_a_big_story_stays_in_it() -> None:
    # "Easter" alone ties the last headline to the story, but six others say it too.
    now = T0 + timedelta(hours=12)
    titles = [
        *(f"Easter weekend {what}" for what in ("traffic warning", "egg hunts", "church services")),
        *(f"Easter weekend {what}" for what in ("weather forecast", "shop hours", "rail works")),
        "Chocolate prices rise ahead of Easter",
    ]
    entries = [
        post(f"e{n}", "", feed=f"https://f{n}.example/rss", title=t, hours=n) for n, t in enumerate(titles)
    ]
    others = [
        post(f"o{n}", "", feed="https://other.example/rss", title=f"Council {word} vote on {thing} delayed")
        for n, (word, thing) in enumerate(
            itertools.product(["budget", "housing", "transport"], ["plan", "fund"])
        )
    ]
    grouping = group_stories([*entries, *others], {}, now=now)
    easter = {grouping.assignments[e.id] for e in entries}
    assert len(easter) == 1
    assert grouping.assignments["e6"] in easter


@pytest.mark.parametrize("count", [1, 2])
def test_a_feed_too_small_to_learn_from_keeps_its_text(count: int) -> None:
    entries = footer_feed()[:count]
    assert [e.text for e in comparable_entries(entries)] == [e.entry.text for e in entries]
