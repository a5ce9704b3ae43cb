"""Story grouping and topics: what a reader of the combined feed or the digest would notice.

Articles about one event from different outlets are one story, unrelated articles are not
in it, a story keeps its id while it goes on, the same input gives the same stories, each
story is labelled by a headline that says it, and topics follow the configured keywords.
The sample feeds (seeds/) and a slice of real labelled news (bench/data/) are the data.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from aggregator import stories as stories_module
from aggregator.parse import parse_feed
from aggregator.stories import Story, StorySettings, bcubed, group_stories, story_id_for, text_terms
from aggregator.topics import TopicRule, TopicSettings, assign_topics, keyword_pattern
from aggregator.types import Entry, StoredEntry

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2025, 8, 18, 12, 0, tzinfo=UTC)


def stored(
    entry_id: str,
    title: str,
    *,
    text: str = "",
    hours_ago: float = 1.0,
    feed: str = "https://a.example/feed",
    duplicate_of: str | None = None,
) -> StoredEntry:
    moment = NOW - timedelta(hours=hours_ago)
    entry = Entry(guid=entry_id, url=None, canonical_url=None, title=title, text=text, published=moment)
    return StoredEntry(
        id=entry_id,
        feed_url=feed,
        entry=entry,
        first_seen=moment,
        last_updated=moment,
        duplicate_of=duplicate_of,
    )


VOLCANO = [
    "Volcano erupts in Iceland, flights grounded across Europe",
    "Iceland volcano eruption forces airlines to cancel flights",
    "Ash cloud from Icelandic volcano grounds European flights",
    "Airlines cancel hundreds of flights as Iceland volcano erupts",
    "Iceland's Reykjanes volcano erupts again, ash reaches Europe",
    "European airspace closures as volcano in Iceland spews ash",
]
RATES = [
    "Central bank raises interest rates to fight inflation",
    "Interest rates rise again as central bank battles inflation",
    "Central bank lifts rates by half a point, inflation still high",
    "Mortgage holders hit as central bank raises interest rates",
    "Inflation prompts another central bank interest rate rise",
    "Central bank rate rise: what higher interest rates mean for you",
]


def two_events() -> list[StoredEntry]:
    entries = [stored(f"v{i}", title, hours_ago=10 - i) for i, title in enumerate(VOLCANO)]
    entries += [stored(f"r{i}", title, hours_ago=9.5 - i) for i, title in enumerate(RATES)]
    return entries


def story_sets(assignments: Mapping[str, str]) -> set[frozenset[str]]:
    by_story: dict[str, set[str]] = {}
    for entry_id, story in assignments.items():
        by_story.setdefault(story, set()).add(entry_id)
    return {frozenset(members) for members in by_story.values()}


def test_two_events_form_two_stories() -> None:
    grouping = group_stories(two_events(), {}, now=NOW)

    assert story_sets(grouping.assignments) == {
        frozenset(f"v{i}" for i in range(6)),
        frozenset(f"r{i}" for i in range(6)),
    }
    assert len(grouping.stories) == 2
    for story in grouping.stories:
        assert set(story.entry_ids) == {k for k, v in grouping.assignments.items() if v == story.id}


def test_same_input_same_stories_whatever_the_order() -> None:
    entries = two_events()
    first = group_stories(entries, {}, now=NOW)
    shuffled = entries[:]
    random.Random(7).shuffle(shuffled)
    second = group_stories(shuffled, {}, now=NOW)

    assert dict(first.assignments) == dict(second.assignments)
    assert first.stories == second.stories
    # A new story's id comes from its earliest member, so it can be predicted.
    assert {s.id for s in first.stories} == {story_id_for("v0"), story_id_for("r0")}


def test_stories_keep_their_ids_when_new_entries_arrive() -> None:
    entries = two_events()
    early = [e for e in entries if e.id in {"v0", "v1", "r0", "r1"}]
    first = group_stories(early, {}, now=NOW - timedelta(hours=5))
    # Ids that are not derived from these entries, as if made by an older version:
    # they must be carried over as they are.
    renamed = {old: f"legacy-{n}" for n, old in enumerate(sorted(set(first.assignments.values())))}
    previous = {entry_id: renamed[story] for entry_id, story in first.assignments.items()}
    newcomer = stored("q0", "Earthquake of magnitude 6 shakes northern Japan", hours_ago=0.5)

    second = group_stories([*entries, newcomer], previous, now=NOW)

    for entry_id, story in previous.items():
        assert second.assignments[entry_id] == story
    assert second.assignments["v5"] == previous["v0"]
    assert second.assignments["r5"] == previous["r0"]
    assert second.assignments["q0"] == story_id_for("q0")


def test_a_story_split_in_two_keeps_its_id_on_the_larger_part() -> None:
    entries = two_events()
    # A bad earlier grouping of the first few: most of the window is new, so it is all regrouped.
    previous = {e.id: "story-old" for e in entries if e.id in {"v0", "v1", "v2", "r0"}}

    grouping = group_stories(entries, previous, now=NOW)

    ids = set(grouping.assignments.values())
    assert len(ids) == 2
    assert "story-old" in ids
    # The other part gets a fresh id, never the old one again.
    assert len(ids - {"story-old"}) == 1


def test_a_few_new_entries_join_their_story_and_the_rest_stays_put() -> None:
    entries = two_events()
    first = group_stories([e for e in entries if e.id != "v5"], {}, now=NOW - timedelta(hours=1))
    previous = dict(first.assignments)
    newcomer = stored("q0", "Earthquake of magnitude 6 shakes northern Japan", hours_ago=0.5)

    # Two new entries in a window of thirteen: the existing stories are kept and reached.
    second = group_stories([*entries, newcomer], previous, now=NOW)

    for entry_id, story in previous.items():
        assert second.assignments[entry_id] == story
    assert second.assignments["v5"] == previous["v0"]
    assert second.assignments["q0"] == story_id_for("q0")
    volcano = next(s for s in second.stories if s.id == previous["v0"])
    assert volcano.entry_ids[-1] == "v5"


def test_a_story_split_by_mistake_is_mended_when_new_coverage_reaches_both_halves() -> None:
    entries = two_events()
    # An earlier run split the volcano story in two; the rates story is right.
    previous = {
        e.id: ("story-a" if e.id in {"v0", "v1", "v2"} else "story-b") for e in entries if e.id[0] == "v"
    }
    previous |= {e.id: "story-r" for e in entries if e.id[0] == "r"}
    unrelated = stored("q0", "Earthquake of magnitude 6 shakes northern Japan", hours_ago=0.5)
    bridge = stored("v9", "Iceland volcano erupts again, flights grounded across Europe", hours_ago=0.5)

    # Nothing new about the volcano: its two halves stay as they were.
    kept = group_stories([*entries, unrelated], previous, now=NOW)
    # A new article about it reaches both halves: they are clustered again together.
    mended = group_stories([*entries, bridge], previous, now=NOW)

    assert {kept.assignments[f"v{i}"] for i in range(6)} == {"story-a", "story-b"}
    assert len({mended.assignments[f"v{i}"] for i in (*range(6), 9)}) == 1
    assert {mended.assignments[f"r{i}"] for i in range(6)} == {"story-r"}


def test_nothing_new_changes_nothing() -> None:
    entries = two_events()
    first = group_stories(entries, {}, now=NOW)
    # Even a grouping the batch path would not make stays: only new entries are placed.
    previous = {**first.assignments, "r5": first.assignments["v0"]}

    again = group_stories(entries, previous, now=NOW)

    assert dict(again.assignments) == previous


def test_duplicates_follow_their_kept_copy() -> None:
    entries = two_events()
    # A syndicated copy with a useless headline still belongs with its original.
    copy = stored("copy", "Latest news", hours_ago=0.2, feed="https://b.example/feed", duplicate_of="v2")
    grouping = group_stories([*entries, copy], {}, now=NOW)

    assert grouping.assignments["copy"] == grouping.assignments["v2"]
    story = next(s for s in grouping.stories if s.id == grouping.assignments["v2"])
    assert "copy" in story.entry_ids
    assert story.label != "Latest news"


def test_a_story_keeps_its_id_when_its_original_arrives_after_a_copy() -> None:
    # The copy came first and made the story; then the wire original arrived and dedupe
    # made it the kept copy.  A new id would show subscribers the same story twice.
    copy = stored(
        "copy", "Leaders meet in Alaska for the summit", hours_ago=2, feed="https://paper.example/feed"
    )
    first = group_stories([copy], {}, now=NOW)
    original = stored(
        "orig", "Leaders meet in Alaska for the summit", hours_ago=3, feed="https://wire.example/feed"
    )
    stepped_back = replace(copy, duplicate_of="orig")

    second = group_stories([original, stepped_back], first.assignments, now=NOW)

    assert second.assignments["orig"] == first.assignments["copy"]
    assert second.assignments["copy"] == first.assignments["copy"]


def test_old_entries_keep_their_story_and_new_ones_are_grouped() -> None:
    old = stored("old", "Volcano erupts in Iceland, flights grounded", hours_ago=24 * 10)
    entries = [old, *two_events()]

    kept = group_stories(entries, {"old": "story-from-last-week"}, now=NOW)
    assert kept.assignments["old"] == "story-from-last-week"

    # Never grouped before (e.g. the first run over a feed's archive): grouped now.
    fresh = group_stories(entries, {}, now=NOW)
    assert fresh.assignments["old"] != fresh.assignments["r0"]


def test_story_dates_and_order() -> None:
    grouping = group_stories(two_events(), {}, now=NOW)
    for story in grouping.stories:
        assert story.first <= story.last
    assert [s.last for s in grouping.stories] == sorted((s.last for s in grouping.stories), reverse=True)


def test_label_is_the_most_central_headline() -> None:
    entries = [
        stored("a", "Apple unveils new iPhone", hours_ago=3),
        stored("b", "Apple unveils new iPhone with satellite messaging and longer battery", hours_ago=2),
        stored("c", "New iPhone gets satellite messaging", hours_ago=1.5),
        stored("d", "iPhone battery lasts longer, Apple says", hours_ago=1),
    ]
    grouping = group_stories(entries, {}, now=NOW)
    assert len(grouping.stories) == 1
    assert grouping.stories[0].label == "Apple unveils new iPhone with satellite messaging and longer battery"


def test_unrelated_articles_never_change_which_headline_labels_a_story() -> None:
    """Both members of a two-article story are equally central: the earliest labels it, run
    after run, however many unrelated articles (which move every word's weight) arrive."""
    glacier = [
        stored(
            "melt",
            "Greenland glacier melt speeds up sharply",
            text="Ice loss from Greenland's glaciers has sped up sharply this decade, satellite data show.",
            hours_ago=11,
            feed="https://one.example/feed",
        ),
        stored(
            "warn",
            "Melting of Greenland glaciers accelerates, researchers warn",
            text="Researchers warn that Greenland's glaciers melt faster than expected, satellite data show.",
            hours_ago=10.5,
            feed="https://two.example/feed",
        ),
    ]
    words = ["amber", "bridge", "cobalt", "dune", "ember", "falcon", "granite", "harbor", "iris", "juniper"]
    pick = random.Random(1)
    entries = list(glacier)
    grouping = group_stories(entries, {}, now=NOW)
    labels = []
    for run in range(12):
        entries += [
            stored(
                f"x{run}-{n}",
                " ".join(pick.choice(words) for _ in range(4)).capitalize(),
                text=" ".join(pick.choice(words) for _ in range(20)),
                hours_ago=5 - run / 10,
                feed=f"https://x{run}.example/feed",
            )
            for n in range(3)
        ]
        grouping = group_stories(entries, grouping.assignments, now=NOW)
        (story,) = [s for s in grouping.stories if "melt" in s.entry_ids]
        assert (story.id, story.entry_ids) == (story_id_for("melt"), ("melt", "warn"))
        labels.append(story.label)
    assert labels == ["Greenland glacier melt speeds up sharply"] * len(labels)


@pytest.mark.parametrize(
    ("story_of", "scores", "titled", "label_rows"),
    [
        ([0, 0], [0.5, 0.5 + 1e-7], [True, True], [0]),  # float32 rounding: a tie, the earliest wins
        ([0, 0], [0.5 + 1e-7, 0.5], [True, True], [0]),
        ([0, 0], [0.5, 0.501], [True, True], [1]),  # a real difference: the more central wins
        ([0, 0, 0], [0.9, 0.5, 0.5 + 1e-7], [False, True, True], [1]),  # an empty title never labels
        ([0, 0], [0.5, 0.9], [False, False], [1]),
        ([0, 1, 0, 1, 1], [0.7, 0.6, 0.7 + 1e-7, 0.6, 0.8], [True] * 5, [0, 4]),  # story by story
    ],
)
def test_central_rows_treat_float_noise_as_a_tie(
    story_of: list[int], scores: list[float], titled: list[bool], label_rows: list[int]
) -> None:
    rows = stories_module._central_rows(
        np.array(story_of, dtype=np.intp), np.array(scores, dtype=np.float32), np.array(titled)
    )
    assert rows.tolist() == label_rows


def test_empty_and_single_inputs() -> None:
    assert group_stories([], {}, now=NOW).stories == ()
    single = group_stories([stored("x", "A lone story")], {}, now=NOW)
    assert single.stories == (
        Story(
            id=story_id_for("x"),
            label="A lone story",
            entry_ids=("x",),
            first=NOW - timedelta(hours=1),
            last=NOW - timedelta(hours=1),
        ),
    )


def test_a_future_date_counts_as_first_seen() -> None:
    entry = stored("x", "From the future")
    future = replace(entry, entry=replace(entry.entry, published=NOW + timedelta(days=30)))
    story = group_stories([future], {}, now=NOW).stories[0]
    assert story.last == entry.first_seen


# --- the sample feeds -------------------------------------------------------------------


def seed_entries() -> tuple[list[StoredEntry], dict[str, str], dict[str, str]]:
    """The seed feeds through the real parser; (entries, gold story by id, copy_of by id)."""
    labels = json.loads((ROOT / "tests" / "seed_labels.json").read_text(encoding="utf-8"))
    entries = []
    for path in sorted({item["feed"] for item in labels["entries"]}):
        content_type = "application/feed+json" if path.endswith(".json") else "application/xml"
        parsed = parse_feed((ROOT / path).read_bytes(), {"content-type": content_type}, f"file:///{path}")
        for entry in parsed.entries:
            entry_id = f"{path}#{entry.guid}"
            seen = entry.date or NOW
            entries.append(StoredEntry(entry_id, path, entry, first_seen=seen, last_updated=seen))
    gold = {f"{item['feed']}#{item['guid']}": item["story"] for item in labels["entries"]}
    copies = {
        f"{item['feed']}#{item['guid']}": f"{item['copy_of']['feed']}#{item['copy_of']['guid']}"
        for item in labels["entries"]
        if item["copy_of"]
    }
    assert set(gold) == {e.id for e in entries}, "seed_labels.json and the seed feeds disagree"
    return entries, gold, copies


@pytest.mark.parametrize("with_duplicates", [False, True], ids=["copies-unmarked", "copies-marked"])
def test_seed_alaska_summit_is_one_story(with_duplicates: bool) -> None:
    entries, gold, copies = seed_entries()
    if with_duplicates:
        entries = [replace(e, duplicate_of=copies.get(e.id)) for e in entries]

    grouping = group_stories(entries, {}, now=NOW)

    alaska = {entry_id for entry_id, story in gold.items() if story == "alaska-summit"}
    alaska_stories = {grouping.assignments[i] for i in alaska}
    assert len(alaska_stories) == 1, "articles about the Alaska summit from several outlets split"
    (story_id,) = alaska_stories
    members = {entry_id for entry_id, story in grouping.assignments.items() if story == story_id}
    assert members == alaska, f"unrelated articles joined the summit story: {sorted(members - alaska)}"
    label = next(s.label for s in grouping.stories if s.id == story_id)
    assert "Alaska" in label or "Anchorage" in label or "Summit" in label
    # The two "Morning briefing" issues share a title but not their news.
    briefings = [i for i, story in gold.items() if story.startswith("briefing-")]
    assert grouping.assignments[briefings[0]] != grouping.assignments[briefings[1]]


# --- topics -----------------------------------------------------------------------------


def test_keyword_topics_match_whole_words_and_phrases() -> None:
    entries = [
        stored("a", "Arctic Council meets in Tromsø", text="Ministers discussed shipping lanes."),
        stored("b", "Startup raises money for C++ tools"),
        stored("c", "The ART of the deal", text="A book about the White\n House."),
    ]
    stories = tuple(
        Story(id=e.id, label=e.entry.title, entry_ids=(e.id,), first=NOW, last=NOW) for e in entries
    )
    rules = [
        TopicRule("Art", ("art",)),
        TopicRule("Programming", ("c++", "rust")),
        TopicRule("US politics", ("white house",)),
        TopicRule("Polar", ("arctic", "shipping lanes")),
        TopicRule("Empty", ()),
    ]

    with_topics = assign_topics(stories, entries, rules, settings=TopicSettings(automatic=False))

    assert [s.topics for s in with_topics] == [("Polar",), ("Programming",), ("Art", "US politics")]
    assert keyword_pattern([]) is None


def test_configured_topics_come_first_in_rule_order_then_feed_topics() -> None:
    grouping = group_stories(two_events(), {}, now=NOW)
    rules = [TopicRule("Travel", ("flights",)), TopicRule("Economy", ("inflation", "interest rates"))]
    feed_topics = {"https://a.example/feed": ("World",)}

    stories = assign_topics(grouping.stories, two_events(), rules, feed_topics=feed_topics)

    by_first = {s.entry_ids[0]: s.topics for s in stories}
    assert by_first["v0"][:2] == ("Travel", "World")
    assert by_first["r0"][:2] == ("Economy", "World")


def galaxy_stories() -> tuple[list[StoredEntry], tuple[Story, ...]]:
    """Two stories about Samsung Galaxy phones: what an automatic topic should join and name."""
    entries = [
        stored("g1", "Samsung Galaxy S5 goes on sale worldwide", hours_ago=40),
        stored("g2", "Samsung Galaxy S5 sales start strong", hours_ago=39),
        stored("n1", "Samsung Galaxy Note 4 to get a new design", hours_ago=10),
        stored("n2", "Samsung confirms Galaxy Note 4 redesign", hours_ago=9),
    ]
    stories = (Story("s5", "S5", ("g1", "g2"), NOW, NOW), Story("note", "Note", ("n1", "n2"), NOW, NOW))
    return entries, stories


def test_automatic_topics_are_named_by_shared_terms() -> None:
    galaxy_entries, galaxy = galaxy_stories()
    entries = [
        *galaxy_entries,
        stored("t1", "Storm floods coastal towns", hours_ago=5),
        stored("t2", "Coastal towns flooded after storm", hours_ago=4),
    ]
    stories = (*galaxy, Story("storm", "Storm", ("t1", "t2"), NOW, NOW))

    with_topics = {s.id: s.topics for s in assign_topics(stories, entries)}

    assert with_topics["s5"] == with_topics["note"]
    (name,) = with_topics["s5"]
    assert "Samsung" in name.split(" / ")
    assert "Galaxy" in name.split(" / ")
    assert with_topics["storm"] == ()
    # Stable: the same stories, the same name.
    assert {s.id: s.topics for s in assign_topics(stories, entries)} == with_topics


def test_automatic_topics_survive_the_term_table_being_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each story's summed term counts are remembered by term number; when a long-running
    # process forgets the term table (past MAX_TERMS), the numbers are reassigned and the
    # remembered sums must not be used with the new numbers.
    entries, stories = galaxy_stories()
    before = {s.id: s.topics for s in assign_topics(stories, entries)}
    assert before["s5"]
    assert before["s5"] == before["note"]
    monkeypatch.setattr(stories_module, "MAX_TERMS", 0)
    # Words met first this time get the low numbers the Samsung terms had.
    text_terms(["Zebra crossings return to Quito while llamas graze nearby"])
    monkeypatch.undo()
    assert {s.id: s.topics for s in assign_topics(stories, entries)} == before


# --- quality on real news ---------------------------------------------------------------


def test_quality_on_a_slice_of_labelled_news() -> None:
    """500 real headlines from 55 stories: a floor well under the full benchmark (0.87)."""
    lines = (ROOT / "bench" / "data" / "uci-news-2014-04-16.jsonl").read_text(encoding="utf-8").splitlines()
    rows = random.Random(0).sample([json.loads(line) for line in lines], 500)
    entries: Sequence[StoredEntry] = [
        replace(
            stored(row["id"], row["title"]),
            entry=Entry(
                guid=row["id"],
                url=row["url"],
                canonical_url=None,
                title=row["title"],
                published=datetime.fromisoformat(row["published"]),
            ),
        )
        for row in rows
    ]
    grouping = group_stories(entries, {}, StorySettings(window=timedelta(days=36500)), now=NOW)

    precision, recall, f1 = bcubed(grouping.assignments, {row["id"]: row["cluster"] for row in rows})
    assert f1 >= 0.75, (precision, recall, f1)


def test_bcubed() -> None:
    gold = {"a": "x", "b": "x", "c": "y"}
    assert bcubed(gold, gold) == (1.0, 1.0, 1.0)
    precision, recall, _ = bcubed({"a": "1", "b": "1", "c": "1"}, gold)
    assert precision == pytest.approx((2 / 3 + 2 / 3 + 1 / 3) / 3)
    assert recall == 1.0


def test_a_first_run_over_more_entries_than_fit_one_dense_block_groups_them() -> None:
    # A fresh store with a few thousand entries (30 feeds' archives) is clustered as one
    # part; above stories.DENSE_ROWS rows it takes the sparse path, which crashed with
    # "need at least one array to concatenate" when no part was small, on every run.
    rng = random.Random(7)
    words = [f"w{n}" for n in range(3000)]
    count = stories_module.DENSE_ROWS + 200
    entries = [
        stored(
            f"e{n}",
            " ".join(rng.sample(words, 8)),
            text=" ".join(rng.sample(words, 30)),
            hours_ago=(n % 60) + 0.5,
            feed=f"https://f{n % 30}.example/feed",
        )
        for n in range(count)
    ]
    entries += [stored(f"v{i}", title, hours_ago=0.2 + i / 10) for i, title in enumerate(VOLCANO)]
    grouping = group_stories(entries, {}, now=NOW)
    assert set(grouping.assignments) == {e.id for e in entries}
    volcano = {grouping.assignments[f"v{i}"] for i in range(len(VOLCANO))}
    assert len(volcano) == 1  # the one real event is still found among the noise
